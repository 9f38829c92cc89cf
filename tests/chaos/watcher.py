"""One chaos worker: a real ``ConfigClient`` in its own OS process, recording everything it
applies to a JSON-lines file for the checker.

    python -m tests.chaos.watcher --target HOST:PORT[,HOST:PORT…] --out FILE --id N

Records (one JSON object a line, flushed as written, so nothing is lost if the checker
reads while the worker runs):

- ``ready``: the client reached READY for the first time;
- ``state``: a state transition (``previous``, ``state``, ``target``);
- ``change``: a change event as listeners see it — the revision the client is at and
  its whole held state (every stage's revision, provider, model, status, and the
  fingerprint of the plaintext key it holds, computed here from the key itself);
- ``revision``: the applied revision moved (sampled every few ms: heartbeats move it
  without a change event), with each stage's config revision at that moment;
- ``final``: on SIGTERM, the revision and state the worker ends on.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from stageconfig import (
    ConfigChangeEvent,
    ConfigClient,
    ConfigSnapshot,
    NotReadyError,
    StateChange,
    TimingOptions,
)
from stageconfig_server.crypto import fingerprint

SAMPLE_SECONDS = 0.005


def held(client: ConfigClient) -> ConfigSnapshot | None:
    """The client's snapshot, or None before the first one."""
    try:
        return client.snapshot()
    except NotReadyError:
        return None


def describe(snapshot: ConfigSnapshot) -> dict[str, list[Any]]:
    """Every held stage as ``[revision, provider, model, status, key fingerprint]``."""
    return {
        str(stage): [
            config.revision,
            str(config.provider_kind),
            config.model,
            str(config.status),
            fingerprint(config.api_key),
        ]
        for stage, config in sorted(snapshot.configs.items())
    }


class Recorder:
    """Writes records from the client's threads, one line at a time."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        """Append one record and flush it."""
        line = json.dumps({"kind": kind, "t": time.time(), **fields})
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def main(argv: list[str] | None = None) -> int:
    """Watch until SIGTERM, recording every applied revision."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, help="host:port, comma-separated replicas")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--id", default="0")
    args = parser.parse_args(argv)
    # The client logs each interruption ("reconnecting in …"); the checker counts them.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda _sig, _frame: done.set())
    with args.out.open("a", encoding="utf-8") as out:
        recorder = Recorder(out)
        client = ConfigClient(
            args.target,
            client_id=f"chaos-watcher-{args.id}",
            # Quick reconnects: the checker kills servers every few seconds.
            timing=TimingOptions(backoff_initial_seconds=0.05, backoff_max_seconds=0.5),
        )
        ready = threading.Event()

        def on_state(change: StateChange) -> None:
            recorder.write(
                "state",
                previous=str(change.previous),
                state=str(change.state),
                target=client.target,
                error=str(change.error) if change.error else "",
            )
            if str(change.state) == "READY" and not ready.is_set():
                ready.set()
                recorder.write("ready")

        def on_change(event: ConfigChangeEvent) -> None:
            recorder.write(
                "change",
                revision=event.revision,
                source=str(event.source),
                configs=describe(event.snapshot),
            )

        client.on_state(on_state)
        client.on_change(on_change)
        client.start()
        last = -1
        # The sampler runs on the main thread: it also notices SIGTERM (done) at once.
        while not done.wait(SAMPLE_SECONDS):
            current = held(client)
            if current is not None and current.revision != last:
                last = current.revision
                recorder.write(
                    "revision",
                    revision=current.revision,
                    stages={str(s): c.revision for s, c in sorted(current.configs.items())},
                )
        final = held(client)
        recorder.write(
            "final",
            revision=final.revision if final is not None else 0,
            configs=describe(final) if final is not None else {},
            state=str(client.state),
            target=client.target,
        )
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
