"""sign-ins, refused sign-ins and session ends, for the ledger and the write-back

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "sign_in_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action", text(), nullable=False),
        sa.Column("refused", sa.Boolean(), nullable=False),
        sa.Column("reason", text(), nullable=True),
        sa.Column("fhir_user", text(), nullable=True),
        sa.Column("role", text(), nullable=True),
        sa.Column("ehr", text(), nullable=True),
        sa.Column("session", text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sign_in_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_in_event_occurred_at"), ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_table("sign_in_event")
