"""``stageconfig-server``: serve, migrate, import the legacy env, rotate keys.

stageconfig-server [serve]            run the gRPC server (SIGTERM/SIGINT: graceful)
stageconfig-server migrate            apply database migrations and exit
stageconfig-server import-env [--dry-run]
stageconfig-server rotate-keys
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys

from pydantic import ValidationError

from stageconfig_server.app import StageConfigApp
from stageconfig_server.db.engine import create_engine
from stageconfig_server.db.migrate import upgrade_to_head
from stageconfig_server.errors import SecretMismatch, StorageUnavailable, UnsafeConfiguration
from stageconfig_server.maintenance import import_env, rotate_keys
from stageconfig_server.settings import LegacySettings, Settings

log = logging.getLogger("stageconfig")

SHUTDOWN_GRACE_SECONDS = 5.0
"""The least time in-flight calls get to finish after SIGTERM."""
SHUTDOWN_COMMIT_MARGIN_SECONDS = 5.0
"""On top of the provider bound: resolving the key before and the commit after."""


def shutdown_grace(settings: Settings) -> float:
    """How long SIGTERM lets unary calls in flight finish.

    An UpdateConfig spends up to the provider timeout (+2 s outer bound) asking the
    provider before it commits; a shorter grace would cancel an admin's update that a
    slow provider is holding, although it was about to be stored. Watch streams do not
    wait for it: the broadcaster ends them first.
    """
    return max(
        SHUTDOWN_GRACE_SECONDS,
        settings.provider_timeout_seconds + 2.0 + SHUTDOWN_COMMIT_MARGIN_SECONDS,
    )


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request URL at INFO; keep provider chatter at WARNING.
    for noisy in ("httpx", "httpcore", "openai", "google_genai", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def _serve(settings: Settings) -> None:
    app = await StageConfigApp.start(settings)
    # What exists now (imported modules, the app) lives as long as the process: freeze
    # it, so the collector's full passes scan only what came later. Unfrozen, each full
    # pass walked ~200k objects for ~100 ms of stalled event loop, the fan-out's tail
    # (scripts/bench: p99 at 1,000 watchers about a third lower frozen).
    gc.collect()
    gc.freeze()
    # A young generation of 10,000 allocations instead of 700: with thousands of
    # streams, young passes kept finding deliveries in flight and promoting them, which
    # made the older generations' passes frequent and long (scripts/bench: server CPU per
    # delivery at 5,000 watchers about a fifth lower).
    gc.set_threshold(10_000, 10, 10)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Announce readiness only once SIGTERM means "graceful stop", not "die at once".
    print(f"stageconfig listening on {app.target}", flush=True)
    await stop.wait()
    grace = shutdown_grace(settings)
    log.info("shutting down (grace %.0f s)", grace)
    await app.stop(grace)


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    print("database is at the newest schema")


async def _import_env(settings: Settings, dry_run: bool) -> int:
    lines = await import_env(settings, LegacySettings(), dry_run)
    for line in lines:
        print(line)
    return 1 if any(line.action.startswith("failed") for line in lines) else 0


async def _rotate(settings: Settings) -> None:
    count = await rotate_keys(settings)
    print(
        f"re-encrypted {count} values with the current ADMIN_SECRET_KEY; "
        "ADMIN_SECRET_KEY_PREVIOUS can now be dropped"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``stageconfig-server`` console script."""
    parser = argparse.ArgumentParser(prog="stageconfig-server", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the gRPC server (default)")
    sub.add_parser("migrate", help="apply database migrations")
    imp = sub.add_parser("import-env", help="import the legacy env settings into the database")
    imp.add_argument("--dry-run", action="store_true", help="print what would be imported")
    sub.add_parser("rotate-keys", help="re-encrypt stored keys with the current secret")
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"stageconfig: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "import-env":
            return asyncio.run(_import_env(settings, args.dry_run))
        elif args.command == "rotate-keys":
            asyncio.run(_rotate(settings))
        else:
            asyncio.run(_serve(settings))
    except SecretMismatch as exc:
        print(f"stageconfig: refusing to start: {exc.message}", file=sys.stderr)
        return 3
    except UnsafeConfiguration as exc:
        print(f"stageconfig: refusing to start: {exc.message}", file=sys.stderr)
        return 2
    except StorageUnavailable as exc:
        print(f"stageconfig: {exc.message}", file=sys.stderr)
        return 4
    except OSError as exc:
        print(f"stageconfig: {exc}", file=sys.stderr)
        return 5
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
