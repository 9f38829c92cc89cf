"""Run as a subprocess by test_fork.py: a ConfigClient across os.fork().

    python fork_script.py TARGET NEW_MODEL started|unstarted

Prints one line per milestone (``<who> ready <model>``, ``forked``, ``<who> converged
<revision> <pid>``); the test changes VOICE to NEW_MODEL after ``forked`` and expects
every process that runs the client to converge on it.
"""

from __future__ import annotations

import os
import sys
import time

from stageconfig import ConfigClient, StageType


def converge(client: ConfigClient, who: str, model: str) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if client.get(StageType.VOICE).model == model:
            print(who, "converged", client.applied_revision, os.getpid(), flush=True)
            return 0
        time.sleep(0.02)
    print(who, "timeout", client.state, client.last_error, flush=True)
    return 1


def main() -> int:
    target, model, mode = sys.argv[1:4]
    client = ConfigClient(target)  # module-level style: built before the fork
    if mode == "started":
        client.wait_ready(10)
        print("parent ready", client.get(StageType.VOICE).model, flush=True)
    pid = os.fork()
    if pid == 0:
        # The child uses the inherited client as is: it notices the new pid.
        status = 1
        try:
            if mode == "unstarted":
                client.start()
            client.wait_ready(10)
            print("child ready", client.get(StageType.VOICE).model, flush=True)
            status = converge(client, "child", model)
            client.close()
        finally:
            os._exit(status)
    print("forked", flush=True)
    status = converge(client, "parent", model) if mode == "started" else 0
    _, child_status = os.waitpid(pid, 0)
    client.close()
    return status or os.waitstatus_to_exitcode(child_status)


if __name__ == "__main__":
    sys.exit(main())
