"""The benchmark harness behind ``scripts/bench`` (not shipped with the packages).

One orchestrating process (``__main__``) starts every server itself on loopback — the
stageconfig server, a bare grpc.aio server answering a pre-built message of the same
size (the floor of the stack), and etcd — then drives each scenario with client
processes (``workers``) and writes a markdown report (``report``).

Modules: ``stats`` (percentiles), ``machine`` (what the run ran on), ``processes``
(the servers as child processes), ``bare`` (the floor server), ``wire`` (method names
and messages shared by the client processes), ``workers`` (client-process entry
points), ``scenarios`` (the five scenarios), ``report`` (the table and the README).
"""
