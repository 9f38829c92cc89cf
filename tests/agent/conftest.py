"""The agent tests use the client tests' real server (a thread-run StageConfigApp)."""

from tests.client.conftest import cache_key, server

__all__ = ["cache_key", "server"]
