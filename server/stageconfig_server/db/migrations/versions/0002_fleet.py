"""Fleet truth (issue 14): fleet_clients and fleet_outcomes.

Revision ID: 0002_fleet
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_fleet"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_clients",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("client_version", sa.String(64), nullable=False),
        sa.Column("applied_revision", sa.BigInteger(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("report_interval_seconds", sa.Integer(), nullable=False),
        sa.Column("last_report_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
    )
    op.create_index(
        "ix_fleet_clients_last_report_time", "fleet_clients", ["last_report_time"]
    )
    op.create_table(
        "fleet_outcomes",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("stage_type", sa.String(16), primary_key=True),
        sa.Column("revision", sa.BigInteger(), primary_key=True),
        sa.Column("bucket_start", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("succeeded", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("retried", sa.BigInteger(), nullable=False),
        sa.Column("failures_by_cause", sa.JSON(), nullable=False),
        sa.Column("duration_buckets", sa.JSON(), nullable=False),
    )
    op.create_index("ix_fleet_outcomes_bucket_start", "fleet_outcomes", ["bucket_start"])


def downgrade() -> None:
    op.drop_table("fleet_outcomes")
    op.drop_table("fleet_clients")
