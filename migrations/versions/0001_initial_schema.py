"""Initial schema: run, labels, samples with ground truth, boxes and masks, predictions, explainers, metrics,
saliency maps, scores and failures.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 03:49:19.221875
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('explainers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('failures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=128), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('traceback', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('failures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_failures_sample_id'), ['sample_id'], unique=False)

    op.create_table('labels',
    sa.Column('index', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('index')
    )
    op.create_table('metrics',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('higher_is_better', sa.Boolean(), nullable=False),
    sa.Column('range_min', sa.Float(), nullable=True),
    sa.Column('range_max', sa.Float(), nullable=True),
    sa.Column('aggregation', sa.String(length=16), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('progress_done', sa.Integer(), nullable=False),
    sa.Column('progress_total', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('task', sa.String(length=16), nullable=False),
    sa.Column('activation', sa.String(length=64), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('top_k', sa.Integer(), nullable=True),
    sa.Column('image_height', sa.Integer(), nullable=True),
    sa.Column('image_width', sa.Integer(), nullable=True),
    sa.Column('model_class', sa.String(length=255), nullable=True),
    sa.Column('num_parameters', sa.Integer(), nullable=True),
    sa.Column('device', sa.String(length=64), nullable=True),
    sa.Column('versions', sa.JSON(), nullable=False),
    sa.Column('uncertainty', sa.JSON(), nullable=True),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('samples',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('image_png', sa.LargeBinary(), nullable=False),
    sa.Column('thumbnail_png', sa.LargeBinary(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_samples_name'), ['name'], unique=False)

    op.create_table('boxes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('label_index', sa.Integer(), nullable=False),
    sa.Column('x', sa.Float(), nullable=False),
    sa.Column('y', sa.Float(), nullable=False),
    sa.Column('width', sa.Float(), nullable=False),
    sa.Column('height', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['label_index'], ['labels.index'], ),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('boxes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_boxes_sample_id'), ['sample_id'], unique=False)

    op.create_table('ground_truth',
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('label_index', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['label_index'], ['labels.index'], ),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sample_id', 'label_index')
    )
    op.create_table('masks',
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('label_index', sa.Integer(), nullable=False),
    sa.Column('mask_png', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['label_index'], ['labels.index'], ),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sample_id', 'label_index')
    )
    op.create_table('predictions',
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('label_index', sa.Integer(), nullable=False),
    sa.Column('prob', sa.Float(), nullable=False),
    sa.Column('ground_truth', sa.Boolean(), nullable=False),
    sa.Column('type', sa.String(length=2), nullable=True),
    sa.Column('sd', sa.Float(), nullable=True),
    sa.Column('lower', sa.Float(), nullable=True),
    sa.Column('upper', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['label_index'], ['labels.index'], ),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sample_id', 'label_index')
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index('ix_predictions_label_sd', ['label_index', 'sd'], unique=False)
        batch_op.create_index('ix_predictions_label_type_prob', ['label_index', 'type', 'prob'], unique=False)
        batch_op.create_index('ix_predictions_type', ['type'], unique=False)

    op.create_table('saliency',
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('label_index', sa.Integer(), nullable=False),
    sa.Column('explainer_id', sa.Integer(), nullable=False),
    sa.Column('map_png', sa.LargeBinary(), nullable=False),
    sa.Column('vmin', sa.Float(), nullable=False),
    sa.Column('vmax', sa.Float(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('delta', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['explainer_id'], ['explainers.id'], ),
    sa.ForeignKeyConstraint(['label_index'], ['labels.index'], ),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('sample_id', 'label_index', 'explainer_id')
    )
    with op.batch_alter_table('saliency', schema=None) as batch_op:
        batch_op.create_index('ix_saliency_explainer', ['explainer_id'], unique=False)

    op.create_table('scores',
    sa.Column('explainer_id', sa.Integer(), nullable=False),
    sa.Column('metric_id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('label_index', sa.Integer(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['explainer_id'], ['explainers.id'], ),
    sa.ForeignKeyConstraint(['label_index'], ['labels.index'], ),
    sa.ForeignKeyConstraint(['metric_id'], ['metrics.id'], ),
    sa.ForeignKeyConstraint(['sample_id'], ['samples.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('explainer_id', 'metric_id', 'sample_id', 'label_index')
    )
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.create_index('ix_scores_metric_explainer_value', ['metric_id', 'explainer_id', 'value'], unique=False)
        batch_op.create_index('ix_scores_sample', ['sample_id'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('scores', schema=None) as batch_op:
        batch_op.drop_index('ix_scores_sample')
        batch_op.drop_index('ix_scores_metric_explainer_value')

    op.drop_table('scores')
    with op.batch_alter_table('saliency', schema=None) as batch_op:
        batch_op.drop_index('ix_saliency_explainer')

    op.drop_table('saliency')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_predictions_type')
        batch_op.drop_index('ix_predictions_label_type_prob')
        batch_op.drop_index('ix_predictions_label_sd')

    op.drop_table('predictions')
    op.drop_table('masks')
    op.drop_table('ground_truth')
    with op.batch_alter_table('boxes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_boxes_sample_id'))

    op.drop_table('boxes')
    with op.batch_alter_table('samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_samples_name'))

    op.drop_table('samples')
    op.drop_table('run')
    op.drop_table('metrics')
    op.drop_table('labels')
    with op.batch_alter_table('failures', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_failures_sample_id'))

    op.drop_table('failures')
    op.drop_table('explainers')

