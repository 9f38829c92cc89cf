"""``stageconfig-agent``: one WatchConfig stream per host, shared with every worker
process of the host through memory.

The agent runs a ConfigClient (tokens, TLS, failover between targets, resume,
heartbeats, STALE, the encrypted last-known-good file — everything a direct client
has) and publishes every snapshot it applies into a RAM-only segment (``_segment``)
that worker processes read with ``stageconfig.attach`` (``AttachedClient``: no grpc,
no thread). Worker processes report through the agent's datagram socket; the agent
sends each process's report to the server as its own ReportStatus (``_relay``).

- ``stageconfig-agent --target host:port …`` / ``python -m stageconfig.agent``: the
  command (``_cli``), standalone (docs/agent.md has a systemd unit) or started by
  ``setup_stageconfig(app, per_host=True)``;
- ``launcher.AgentSupervisor``: how a Celery parent starts the agent as a separate
  process, attaches to one already running, and restarts it when it dies (imports no
  grpc).

This package's ``__init__`` imports nothing heavy: the launcher runs in processes
that must not import grpc.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """The ``stageconfig-agent`` command (see ``stageconfig.agent._cli``)."""
    from stageconfig.agent._cli import main as run

    return run(argv)


__all__ = ["main"]
