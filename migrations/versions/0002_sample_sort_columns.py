"""Sample sort columns: each sample's highest probability and uncertainty, so unfiltered sorts use an index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:49:20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_prob", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("max_sd", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_samples_max_prob"), ["max_prob"], unique=False)
        batch_op.create_index(batch_op.f("ix_samples_max_sd"), ["max_sd"], unique=False)
    # Fill the new columns for the samples already written.
    op.execute(
        "UPDATE samples SET "
        "max_prob = (SELECT MAX(prob) FROM predictions p WHERE p.sample_id = samples.id), "
        "max_sd = (SELECT MAX(sd) FROM predictions p WHERE p.sample_id = samples.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_samples_max_sd"))
        batch_op.drop_index(batch_op.f("ix_samples_max_prob"))
        batch_op.drop_column("max_sd")
        batch_op.drop_column("max_prob")
