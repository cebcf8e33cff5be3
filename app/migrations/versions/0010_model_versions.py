"""model versions: promotion acts, the engine latency of each card set, the approver's name

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "model_promotion",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("act", text(), nullable=False),
        sa.Column("proposal", sa.Integer(), nullable=True),
        sa.Column("model_id", text(), nullable=False),
        sa.Column("model_version", text(), nullable=False),
        sa.Column("from_version", text(), nullable=True),
        sa.Column("by", text(), nullable=False),
        sa.Column("by_name", text(), nullable=True),
        sa.Column("role", text(), nullable=False),
        sa.Column("reason", text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_promotion", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_promotion_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_model_promotion_proposal"), ["proposal"], unique=False)
    with op.batch_alter_table("model_change", schema=None) as batch_op:
        batch_op.add_column(sa.Column("approver_name", text(), nullable=True))
    with op.batch_alter_table("card_set", schema=None) as batch_op:
        batch_op.add_column(sa.Column("latency_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("failure", text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("card_set", schema=None) as batch_op:
        batch_op.drop_column("failure")
        batch_op.drop_column("latency_ms")
    with op.batch_alter_table("model_change", schema=None) as batch_op:
        batch_op.drop_column("approver_name")
    op.drop_table("model_promotion")
