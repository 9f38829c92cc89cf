"""Storage: SQLAlchemy models, the engine with its SQLite/PostgreSQL settings, the
repository (the only code that touches SQL) and Alembic migrations."""
