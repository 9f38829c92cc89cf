"""Shared test harness: real servers (in-process on port 0, or as subprocesses)."""
