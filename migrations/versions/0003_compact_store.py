"""Compact store: probability vectors per sample, maps at their own resolution with an encoding, no thumbnails,
benchmark time per score.

- ``probabilities``: one row per sample with float32 vectors of every label's probability (and sd/lower/upper),
  built from the ``predictions`` rows; then the rows of labels that are neither explained nor ground truth are
  deleted (at ImageNet scale 998 of 1,000 rows per sample).
- ``saliency``: ``map_png`` becomes ``data`` (the last column), with ``encoding`` (``png16`` for the maps already
  there, which stay as they are) and the map's ``height``/``width``, read from the PNG headers.
- ``samples``: ``image_png`` becomes ``image`` (the last column; photos may now be WebP or JPEG); the unused
  ``thumbnail_png`` is dropped.
- ``scores``: a nullable ``seconds``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:12:40
"""

from __future__ import annotations

import math

import numpy as np
import sqlalchemy as sa
from alembic import op

from xaiboard.store import arrays, codec

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CHUNK = 500
SPREAD = ("sd", "lower", "upper")


def _chunks(ids: list[int]):
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _fill_probabilities(bind: sa.Connection) -> None:
    """One vector row per sample from its prediction rows, NaN for labels without a row."""
    num_labels = bind.execute(sa.text("SELECT COUNT(*) FROM labels")).scalar_one()
    ids = list(bind.execute(sa.text("SELECT DISTINCT sample_id FROM predictions ORDER BY sample_id")).scalars())
    select = sa.text("SELECT sample_id, label_index, prob, sd, lower, upper FROM predictions "
                     "WHERE sample_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    insert = sa.text("INSERT INTO probabilities (sample_id, encoding, num_labels, probs, sd, lower, upper) "
                     "VALUES (:sample_id, :encoding, :num_labels, :probs, :sd, :lower, :upper)")
    for chunk in _chunks(ids):
        rows_of: dict[int, list[tuple]] = {sample_id: [] for sample_id in chunk}
        for row in bind.execute(select, {"ids": chunk}):
            rows_of[row[0]].append(tuple(row[1:]))
        values = []
        for sample_id, rows in rows_of.items():
            length = max([num_labels] + [row[0] + 1 for row in rows])
            vectors = {name: np.full(length, np.nan, dtype=np.float32) for name in ("probs", *SPREAD)}
            for label, *numbers in rows:
                for name, number in zip(("probs", *SPREAD), numbers):
                    if number is not None and math.isfinite(number):
                        vectors[name][label] = number
            values.append({
                "sample_id": sample_id, "encoding": arrays.VECTOR_ENCODING,
                "num_labels": int(np.isfinite(vectors["probs"]).sum()),
                **{name: (arrays.encode_vector(v) if name == "probs" or np.isfinite(v).any() else None)
                   for name, v in vectors.items()},
            })
        bind.execute(insert, values)


def _fill_map_shapes(bind: sa.Connection) -> None:
    """Each PNG map's height and width from the IHDR chunk at bytes 16-23 of the file."""
    rows = bind.execute(sa.text(
        "SELECT sample_id, label_index, explainer_id, substr(data, 1, 24) FROM saliency WHERE height IS NULL")).all()
    update = sa.text("UPDATE saliency SET height = :height, width = :width "
                     "WHERE sample_id = :s AND label_index = :l AND explainer_id = :e")
    values = []
    for sample_id, label_index, explainer_id, head in rows:
        height, width = arrays.png_shape(bytes(head))
        values.append({"height": height, "width": width, "s": sample_id, "l": label_index, "e": explainer_id})
        if len(values) >= 10 * CHUNK:
            bind.execute(update, values)
            values = []
    if values:
        bind.execute(update, values)


# Large blobs last (columns are ordered by their names before the batch renames them).
SALIENCY_ORDER = ("sample_id", "label_index", "explainer_id", "encoding", "height", "width", "vmin", "vmax",
                  "seconds", "delta", "map_png")
SAMPLES_ORDER = ("id", "name", "width", "height", "max_prob", "max_sd", "image_png")


def upgrade() -> None:
    op.create_table(
        "probabilities",
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=16), nullable=False),
        sa.Column("num_labels", sa.Integer(), nullable=False),
        sa.Column("probs", sa.LargeBinary(), nullable=False),
        sa.Column("sd", sa.LargeBinary(), nullable=True),
        sa.Column("lower", sa.LargeBinary(), nullable=True),
        sa.Column("upper", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["sample_id"], ["samples.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sample_id"),
    )
    with op.batch_alter_table("probabilities", schema=None) as batch_op:
        batch_op.create_index("ix_probabilities_num_labels", ["num_labels"], unique=False)
    bind = op.get_bind()
    _fill_probabilities(bind)
    op.execute("DELETE FROM predictions WHERE type IS NULL AND ground_truth = 0")

    with op.batch_alter_table("samples", schema=None, partial_reordering=[SAMPLES_ORDER]) as batch_op:
        batch_op.drop_column("thumbnail_png")
        batch_op.alter_column("image_png", new_column_name="image", existing_type=sa.LargeBinary(),
                              existing_nullable=False)

    with op.batch_alter_table("saliency", schema=None, partial_reordering=[SALIENCY_ORDER]) as batch_op:
        batch_op.alter_column("map_png", new_column_name="data", existing_type=sa.LargeBinary(),
                              existing_nullable=False)
        batch_op.add_column(sa.Column("encoding", sa.String(length=16), nullable=False, server_default="png16"))
        batch_op.add_column(sa.Column("height", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("width", sa.Integer(), nullable=True))
    _fill_map_shapes(bind)

    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seconds", sa.Float(), nullable=True))


def _restore_prediction_rows(bind: sa.Connection) -> None:
    """A row (type NULL) for every label that has a probability but no row, from the vectors."""
    ids = list(bind.execute(sa.text("SELECT sample_id FROM probabilities ORDER BY sample_id")).scalars())
    vectors = sa.text("SELECT sample_id, encoding, probs, sd, lower, upper FROM probabilities "
                      "WHERE sample_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    present = sa.text("SELECT sample_id, label_index FROM predictions WHERE sample_id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True))
    insert = sa.text("INSERT INTO predictions (sample_id, label_index, prob, ground_truth, type, sd, lower, upper) "
                     "VALUES (:sample_id, :label_index, :prob, 0, NULL, :sd, :lower, :upper)")
    for chunk in _chunks(ids):
        have = set(map(tuple, bind.execute(present, {"ids": chunk}).all()))
        values = []
        for sample_id, encoding, *blobs in bind.execute(vectors, {"ids": chunk}):
            decoded = [None if blob is None else arrays.decode_vector(blob, encoding).tolist() for blob in blobs]
            for label, prob in enumerate(decoded[0]):
                if prob == prob and (sample_id, label) not in have:
                    spread = [None if v is None or label >= len(v) or v[label] != v[label] else v[label]
                              for v in decoded[1:]]
                    values.append({"sample_id": sample_id, "label_index": label, "prob": prob,
                                   "sd": spread[0], "lower": spread[1], "upper": spread[2]})
        if values:
            bind.execute(insert, values)


def _maps_to_png(bind: sa.Connection) -> None:
    """Re-encode every map that is not a 16-bit PNG as one (what revision 0002 reads)."""
    rows = bind.execute(sa.text("SELECT sample_id, label_index, explainer_id FROM saliency "
                                "WHERE encoding != 'png16'")).all()
    read = sa.text("SELECT data, encoding, height, width, vmin, vmax FROM saliency "
                   "WHERE sample_id = :s AND label_index = :l AND explainer_id = :e")
    write = sa.text("UPDATE saliency SET data = :data, encoding = 'png16' "
                    "WHERE sample_id = :s AND label_index = :l AND explainer_id = :e")
    for s, l, e in rows:
        key = {"s": s, "l": l, "e": e}
        data, encoding, height, width, vmin, vmax = bind.execute(read, key).one()
        values = arrays.decode_map(data, encoding, vmin, vmax, height, width)
        levels, _, _ = arrays.quantise(values, 16)
        bind.execute(write, {**key, "data": arrays.encode_levels_png(levels)})


def _images_to_png(bind: sa.Connection) -> None:
    """Re-encode display images stored as WebP/JPEG as PNG (revision 0002 serves every image as PNG)."""
    ids = bind.execute(sa.text("SELECT id FROM samples WHERE substr(image, 1, 4) != X'89504E47'")).scalars().all()
    for sample_id in ids:
        data = bind.execute(sa.text("SELECT image FROM samples WHERE id = :i"), {"i": sample_id}).scalar_one()
        png = codec.encode_image(codec.decode_image(data))
        bind.execute(sa.text("UPDATE samples SET image = :d WHERE id = :i"), {"d": png, "i": sample_id})


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("scores", schema=None) as batch_op:
        batch_op.drop_column("seconds")

    _maps_to_png(bind)
    with op.batch_alter_table("saliency", schema=None) as batch_op:
        batch_op.drop_column("width")
        batch_op.drop_column("height")
        batch_op.drop_column("encoding")
        batch_op.alter_column("data", new_column_name="map_png", existing_type=sa.LargeBinary(),
                              existing_nullable=False)

    _images_to_png(bind)
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.alter_column("image", new_column_name="image_png", existing_type=sa.LargeBinary(),
                              existing_nullable=False)
        batch_op.add_column(sa.Column("thumbnail_png", sa.LargeBinary(), nullable=True))

    _restore_prediction_rows(bind)
    with op.batch_alter_table("probabilities", schema=None) as batch_op:
        batch_op.drop_index("ix_probabilities_num_labels")
    op.drop_table("probabilities")
