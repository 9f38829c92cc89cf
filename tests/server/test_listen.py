"""Who may listen on the server's port."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.servers import start_app


async def test_a_second_server_on_the_same_sqlite_database_cannot_share_its_port(
    tmp_path: Path,
) -> None:
    # grpc binds with SO_REUSEPORT by default; on SQLite a second process has no change
    # feed, so silently sharing the port would split workers across diverging views.
    first = await start_app(tmp_path / "stageconfig.db", None)
    try:
        with pytest.raises(OSError, match="could not bind"):
            await start_app(tmp_path / "stageconfig.db", None, STAGECONFIG_ADDRESS=first.target)
    finally:
        await first.stop()
