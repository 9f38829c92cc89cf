"""Fakes that tests use instead of patching: real servers speaking real wire formats."""

from tests.fakes.provider_server import FakeProviders, RecordedRequest

__all__ = ["FakeProviders", "RecordedRequest"]
