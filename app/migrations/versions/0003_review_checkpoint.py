"""high-risk review checkpoint: suggestions held back from the EHR until a clinician signs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 06:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_card", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_for_review", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("issued_card", schema=None) as batch_op:
        batch_op.drop_column("held_for_review")
