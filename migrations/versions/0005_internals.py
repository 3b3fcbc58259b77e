"""Inside the model: the layers looked inside of (with Conv2d filters), per sample the feature maps and the
per-head attention over the patch grid, and the probabilities under an attention intervention.

Only adds tables, so summaries at 0003 and 0004 are read as they are (they simply have nothing of this);
writing to one still needs ``xaiboard upgrade``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "internal_layers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=True),
        sa.Column("filter_mode", sa.String(length=16), nullable=True),
        sa.Column("filter_shape", sa.JSON(), nullable=True),
        sa.Column("filter_low", sa.Float(), nullable=True),
        sa.Column("filter_high", sa.Float(), nullable=True),
        sa.Column("filters", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "feature_maps",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("layer_id", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("kept", sa.Integer(), nullable=False),
        sa.Column("channel_index", sa.LargeBinary(), nullable=False),
        sa.Column("low", sa.LargeBinary(), nullable=False),
        sa.Column("high", sa.LargeBinary(), nullable=False),
        sa.Column("means", sa.LargeBinary(), nullable=False),
        sa.Column("codes", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["layer_id"], ["internal_layers.id"]),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sample_id", "layer_id"),
    )
    op.create_table(
        "attention_maps",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("layer_id", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["layer_id"], ["internal_layers.id"]),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sample_id", "layer_id"),
    )
    op.create_table(
        "interventions",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("probs", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sample_id"),
    )


def downgrade() -> None:
    op.drop_table("interventions")
    op.drop_table("attention_maps")
    op.drop_table("feature_maps")
    op.drop_table("internal_layers")
