"""Tables of fleet truth (issue 14): each client's latest report and its task outcomes
in time buckets. Like ``db.models``, these classes never leave the ``db`` package."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stageconfig_server.db.models import Base


class FleetClientRow(Base):
    """One row per client_id: its latest report (stages as JSON) and the highest
    sequence counted, the idempotency key's memory."""

    __tablename__ = "fleet_clients"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    client_version: Mapped[str] = mapped_column(String(64))
    applied_revision: Mapped[int] = mapped_column(BigInteger)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    report_interval_seconds: Mapped[int] = mapped_column(Integer)
    last_report_time: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    stages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class FleetOutcomeRow(Base):
    """Task outcomes of one client, stage and revision summed over one time bucket."""

    __tablename__ = "fleet_outcomes"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    stage_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    succeeded: Mapped[int] = mapped_column(BigInteger)
    failed: Mapped[int] = mapped_column(BigInteger)
    retried: Mapped[int] = mapped_column(BigInteger)
    failures_by_cause: Mapped[dict[str, int]] = mapped_column(JSON)
    duration_buckets: Mapped[list[int]] = mapped_column(JSON)

    __table_args__ = (Index("ix_fleet_outcomes_bucket_start", "bucket_start"),)
