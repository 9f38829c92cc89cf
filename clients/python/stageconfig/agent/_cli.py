"""The ``stageconfig-agent`` command line.

::

    STAGECONFIG_TOKEN=… STAGECONFIG_CACHE_KEY=… stageconfig-agent \\
        --target config-a:50051,config-b:50051 --cache-path /var/lib/stageconfig/lkg.json

Secrets never go on the command line (``ps`` shows it to every user): the token comes
from ``STAGECONFIG_TOKEN``, the last-known-good file's key from
``STAGECONFIG_CACHE_KEY``, and TLS material from files (``--ca/--cert/--key``) or, when a
supervisor passes it, from ``STAGECONFIG_AGENT_CA_PEM`` / ``_CERT_PEM`` / ``_KEY_PEM``.
SIGTERM and SIGINT stop the agent cleanly (the workers turn STALE at once and keep
serving the last snapshot).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from stageconfig._options import TimingOptions
from stageconfig._segment import DEFAULT_SLOT_CAPACITY
from stageconfig.agent._service import Agent, AgentOptions, describe
from stageconfig.tls import TlsConfig

_PEM_ENV = ("STAGECONFIG_AGENT_CA_PEM", "STAGECONFIG_AGENT_CERT_PEM", "STAGECONFIG_AGENT_KEY_PEM")


def parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    p = argparse.ArgumentParser(
        prog="stageconfig-agent",
        description="One WatchConfig stream per host, shared with every worker process "
        "through memory (docs/agent.md).",
    )
    p.add_argument(
        "--target",
        default=os.environ.get("STAGECONFIG_TARGET"),
        help="host:port of the server, or several replicas separated by commas "
        "(default: STAGECONFIG_TARGET)",
    )
    p.add_argument(
        "--cache-path",
        type=Path,
        default=os.environ.get("STAGECONFIG_CACHE_PATH") or None,
        help="the encrypted last-known-good file (key: STAGECONFIG_CACHE_KEY)",
    )
    p.add_argument("--client-id", help="the name ListWatchers shows for the agent")
    p.add_argument("--tls", action="store_true", help="TLS with the system's roots")
    p.add_argument("--ca", type=Path, help="PEM of the CA the server's certificate chains to")
    p.add_argument("--cert", type=Path, help="client certificate (mTLS)")
    p.add_argument("--key", type=Path, help="client key (mTLS)")
    p.add_argument("--timing", default="{}", help="TimingOptions fields as JSON")
    p.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where the segment lives (default: STAGECONFIG_AGENT_DIR or /dev/shm)",
    )
    p.add_argument("--heartbeat-seconds", type=float, default=0.25)
    p.add_argument("--stale-after-seconds", type=float, default=3.0)
    p.add_argument("--slot-bytes", type=int, default=DEFAULT_SLOT_CAPACITY)
    p.add_argument("--lock-wait-seconds", type=float, default=5.0)
    p.add_argument("--status", action="store_true", help="say whether an agent runs; exit")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _tls(args: argparse.Namespace) -> TlsConfig | None:
    pems = [os.environ.get(name) for name in _PEM_ENV]
    if any(pems):
        ca, cert, key = (p.encode() if p else None for p in pems)
        return TlsConfig(root_certificates=ca, client_certificate=cert, client_key=key)
    if args.ca or args.cert or args.key:
        return TlsConfig.from_files(ca=args.ca, cert=args.cert, key=args.key)
    return TlsConfig() if args.tls else None


def options_from(args: argparse.Namespace) -> AgentOptions:
    """The agent's options from parsed arguments and the environment."""
    targets = tuple(t.strip() for t in (args.target or "").split(",") if t.strip())
    if not targets:
        raise SystemExit("stageconfig-agent: --target (or STAGECONFIG_TARGET) is required")
    return AgentOptions(
        targets=targets,
        token=os.environ.get("STAGECONFIG_TOKEN") or None,
        cache_path=args.cache_path,
        cache_key=os.environ.get("STAGECONFIG_CACHE_KEY") or None,
        client_id=args.client_id,
        tls=_tls(args),
        timing=TimingOptions(**json.loads(args.timing)),
        directory=args.dir,
        heartbeat_seconds=args.heartbeat_seconds,
        stale_after_seconds=args.stale_after_seconds,
        slot_bytes=args.slot_bytes,
        lock_wait_seconds=args.lock_wait_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; the exit code."""
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    options = options_from(args)
    if args.status:
        print(describe(options.targets, options.directory))
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return Agent(options).run(stop)
