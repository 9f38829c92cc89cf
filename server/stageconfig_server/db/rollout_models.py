"""The rollouts table (issue 15). Like ``db.models``, these classes never leave the
``db`` package."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stageconfig_server.db.models import Base


class RolloutRow(Base):
    """One row per rollout, running or ended. ``running_stage`` holds the stage while the
    rollout runs and NULL after: its unique constraint allows one running rollout per
    stage, and an ending is a compare-and-set on it, so replicas decide once."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage_type: Mapped[str] = mapped_column(String(16))
    running_stage: Mapped[str | None] = mapped_column(String(16), unique=True)
    state: Mapped[str] = mapped_column(String(16))
    stable_revision: Mapped[int] = mapped_column(BigInteger)
    candidate_revision: Mapped[int] = mapped_column(BigInteger)
    end_revision: Mapped[int | None] = mapped_column(BigInteger)
    percent: Mapped[int] = mapped_column(Integer)
    client_ids: Mapped[list[str]] = mapped_column(JSON)
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    candidate: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_by: Mapped[str] = mapped_column(String(128))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_by: Mapped[str] = mapped_column(String(128), default="")
    decision: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_rollouts_stage_type", "stage_type", "id"),)
