"""A throwaway PostgreSQL database per test, on the machine's server (trust auth).

``STAGECONFIG_TEST_PG_ADMIN_DSN`` points at a maintenance database the tests may
create databases from (default: the local server's ``postgres`` database).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

ADMIN_DSN = os.environ.get(
    "STAGECONFIG_TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@asynccontextmanager
async def temporary_database() -> AsyncIterator[str]:
    """Create a fresh database; yield its SQLAlchemy URL; drop it afterwards."""
    name = f"stageconfig_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = ADMIN_DSN.rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"
    finally:
        admin = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
