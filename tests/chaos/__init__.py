"""Chaos testing: real server and worker processes, SIGKILLs under load, and a checker
comparing what every party saw with the database (``scripts/chaos``)."""
