"""Diagnostics behind the maps and scores: Integrated Gradients' path per pair and the perturbation curves.

Only adds tables, so summaries at 0003 are read as they are (they simply have no diagnostics); writing to one
still needs ``xaiboard upgrade``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ig_paths",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("label_index", sa.Integer(), nullable=False),
        sa.Column("explainer_id", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("output_gap", sa.Float(), nullable=True),
        sa.Column("relative_delta", sa.Float(), nullable=True),
        sa.Column("steps_needed", sa.Integer(), nullable=True),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("alphas", sa.LargeBinary(), nullable=False),
        sa.Column("probabilities", sa.LargeBinary(), nullable=False),
        sa.Column("gradients", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["explainer_id"], ["explainers.id"]),
        sa.ForeignKeyConstraint(["label_index"], ["labels.index"]),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sample_id", "label_index", "explainer_id"),
    )
    op.create_index("ix_ig_paths_explainer_delta", "ig_paths", ["explainer_id", "relative_delta"], unique=False)
    op.create_table(
        "curves",
        sa.Column("explainer_id", sa.Integer(), nullable=False),
        sa.Column("metric_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("label_index", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["explainer_id"], ["explainers.id"]),
        sa.ForeignKeyConstraint(["label_index"], ["labels.index"]),
        sa.ForeignKeyConstraint(["metric_id"], ["metrics.id"]),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("explainer_id", "metric_id", "sample_id", "label_index"),
    )
    op.create_index("ix_curves_sample", "curves", ["sample_id", "label_index"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_curves_sample", table_name="curves")
    op.drop_table("curves")
    op.drop_index("ix_ig_paths_explainer_delta", table_name="ig_paths")
    op.drop_table("ig_paths")
