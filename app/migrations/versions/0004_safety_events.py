"""safety events reported against issued cards

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 06:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "safety_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_uuid", text(), nullable=False),
        sa.Column("model_id", text(), nullable=False),
        sa.Column("model_version", text(), nullable=False),
        sa.Column("patient_id", text(), nullable=False),
        sa.Column("encounter_id", text(), nullable=True),
        sa.Column("category", text(), nullable=False),
        sa.Column("severity", text(), nullable=False),
        sa.Column("description", text(), nullable=False),
        sa.Column("reporter", text(), nullable=False),
        sa.Column("card_shown_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["card_uuid"], ["issued_card.uuid"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("safety_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_safety_event_card_uuid"), ["card_uuid"], unique=False)
        batch_op.create_index(batch_op.f("ix_safety_event_detected_at"), ["detected_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_safety_event_model_id"), ["model_id"], unique=False)


def downgrade() -> None:
    op.drop_table("safety_event")
