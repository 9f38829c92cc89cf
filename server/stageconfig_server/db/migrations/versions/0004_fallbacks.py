"""Fallback routes and key pools (issue 16): a stage's ordered fallback routes.

Revision ID: 0004_fallbacks
Revises: 0003_rollouts
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_fallbacks"
down_revision = "0003_rollouts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Each route: provider_kind, api_key_id (api_keys), api_key_encrypted, fingerprint,
    # model, options, status, status_reason, status_cause, models_cache.
    op.add_column(
        "provider_configs",
        sa.Column("fallbacks", sa.JSON(), nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    with op.batch_alter_table("provider_configs") as batch:
        batch.drop_column("fallbacks")
