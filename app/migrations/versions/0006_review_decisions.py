"""review decisions on held high-risk drafts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "review_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("card_uuid", text(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("outcome", text(), nullable=False),
        sa.Column("suggestion_uuid", text(), nullable=False),
        sa.Column("reviewer", text(), nullable=False),
        sa.Column("text", text(), nullable=True),
        sa.Column("text_sha256", text(), nullable=True),
        sa.Column("edited", sa.Boolean(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["card_uuid"], ["issued_card.uuid"]),
        sa.ForeignKeyConstraint(["decision_id"], ["card_decision.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("card_uuid"),
    )


def downgrade() -> None:
    op.drop_table("review_decision")
