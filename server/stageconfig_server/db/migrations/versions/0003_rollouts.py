"""Safe rollouts (issue 15): the rollouts table, and an audience on each revision-log
entry so a resuming watcher replays only its own side of a rollout.

Revision ID: 0003_rollouts
Revises: 0002_fleet
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rollouts"
down_revision = "0002_fleet"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("stage_type", sa.String(16), nullable=False),
        # The stage while the rollout runs, NULL once it ended: the unique index makes a
        # second running rollout of one stage impossible, on SQLite and PostgreSQL alike.
        sa.Column("running_stage", sa.String(16), nullable=True, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("stable_revision", sa.BigInteger(), nullable=False),
        sa.Column("candidate_revision", sa.BigInteger(), nullable=False),
        sa.Column("end_revision", sa.BigInteger(), nullable=True),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("client_ids", sa.JSON(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=True),
        # The candidate in the shape of a revision-log state (key as an api_keys id).
        sa.Column("candidate", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(128), nullable=False, server_default=""),
        sa.Column("decision", sa.Text(), nullable=False, server_default=""),
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
    )
    op.create_index("ix_rollouts_stage_type", "rollouts", ["stage_type", "id"])
    # "all" (everyone), "canary" (a rollout's cohort) or "stable" (everyone outside it).
    op.add_column(
        "revision_log",
        sa.Column("audience", sa.String(16), nullable=False, server_default="all"),
    )
    op.add_column("revision_log", sa.Column("rollout_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revision_log") as batch:
        batch.drop_column("rollout_id")
        batch.drop_column("audience")
    op.drop_table("rollouts")
