"""Stop a server whose model sync is inside a database call, then let ``asyncio.run``
end — the way ``stageconfig-server serve`` ends after SIGTERM. Run as a process by
``test_graceful_shutdown.py``; exits 0 when it got to the end.

    python -m tests.faults.stop_during_sync DB_PATH

Another connection holds SQLite's write lock, so the sync's ``BEGIN IMMEDIATE`` is
certainly in flight (its connection checked out of the pool) when the server stops and
cancels it; the lock is released a moment later, as a busy writer would.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

from tests.faults.conftest import wait_until
from tests.support.servers import start_app

LOCK_RELEASED_AFTER_SECONDS = 0.5


async def main(db_path: Path) -> None:
    """Start, wedge the sync in a database call, stop."""
    app = await start_app(db_path, None, run_sync=False)
    locker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    await app.sync.start()  # a fresh database: the sync is due and runs at once
    pool: Any = app.engine.pool
    await wait_until(lambda: pool.checkedout() > 0, 10, "the sync inside BEGIN IMMEDIATE")
    threading.Timer(LOCK_RELEASED_AFTER_SECONDS, locker.rollback).start()
    await app.stop(grace=1)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
    print("stopped and exited", flush=True)
