"""Table definitions. These classes never leave the ``db`` package: the repository turns
rows into the frozen records of ``db.records``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of every stageconfig table."""


class ProviderConfigRow(Base):
    """One row per stage: the plan's columns plus revision, status_reason and options."""

    __tablename__ = "provider_configs"

    stage_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    provider_kind: Mapped[str] = mapped_column(String(32))
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(256))
    models_cache: Mapped[list[str]] = mapped_column(JSON, default=list)
    models_cache_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the service adds to the plan's columns:
    revision: Mapped[int] = mapped_column(BigInteger)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    status_cause: Mapped[str | None] = mapped_column(String(32))
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    api_key_fingerprint: Mapped[str] = mapped_column(String(16), default="")
    # Ordered fallback routes (issue 16), each with its key encrypted like the primary's.
    fallbacks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class ApiKeyRow(Base):
    """Every key ever saved, encrypted, never deleted."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    provider_kind: Mapped[str] = mapped_column(String(32))
    stage_type: Mapped[str] = mapped_column(String(16))
    api_key_encrypted: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128), default="")

    __table_args__ = (Index("ix_api_keys_provider_created", "provider_kind", "id"),)


class RevisionLogRow(Base):
    """One row per change: the revision, who, why, a masked diff and the resulting state
    (with the key as a reference to ``api_keys``), enough to resume watches and roll back."""

    __tablename__ = "revision_log"

    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    stage_type: Mapped[str] = mapped_column(String(16), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(32))
    diff: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Who receives this revision while a rollout runs (issue 15): "all", "canary" (the
    # rollout's cohort) or "stable" (everyone outside it).
    audience: Mapped[str] = mapped_column(String(16), default="all")
    rollout_id: Mapped[int | None] = mapped_column(Integer)


class RevisionCounterRow(Base):
    """The global revision head, a single row. Writers lock it (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: UPDATE's row lock), so revision order is also commit order: a watcher
    never sees revision N+1 committed before N."""

    __tablename__ = "revision_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    head: Mapped[int] = mapped_column(BigInteger, default=0)


class ServiceStateRow(Base):
    """Small named values the service keeps: the encryption canary, for one."""

    __tablename__ = "service_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class JobRunRow(Base):
    """One row per run of a periodic job and period; the unique key makes a second
    replica's attempt at the same period fail instead of running twice."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(Text, default="")
