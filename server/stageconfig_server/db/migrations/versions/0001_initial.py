"""Initial schema: provider_configs, api_keys, revision_log, revision_counter,
service_state, job_runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("provider_kind", sa.String(32), nullable=False),
        sa.Column("stage_type", sa.String(16), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_api_keys_provider_created", "api_keys", ["provider_kind", "id"])
    op.create_table(
        "provider_configs",
        sa.Column("stage_type", sa.String(16), primary_key=True),
        sa.Column("provider_kind", sa.String(32), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("models_cache", sa.JSON(), nullable=False),
        sa.Column("models_cache_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("status_cause", sa.String(32), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("api_key_fingerprint", sa.String(16), nullable=False),
    )
    op.create_table(
        "revision_log",
        sa.Column("revision", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("stage_type", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_revision_log_stage_type", "revision_log", ["stage_type"])
    counter = op.create_table(
        "revision_counter",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("head", sa.BigInteger(), nullable=False),
    )
    # The single row exists from the start, so writers only ever UPDATE it and queue
    # on its row lock instead of racing to create it.
    op.bulk_insert(counter, [{"id": 1, "head": 0}])
    op.create_table(
        "service_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("period", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False, server_default=""),
    )


def downgrade() -> None:
    for table in (
        "job_runs",
        "service_state",
        "revision_counter",
        "revision_log",
        "provider_configs",
        "api_keys",
    ):
        op.drop_table(table)
