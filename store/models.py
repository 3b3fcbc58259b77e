"""SQLAlchemy models of a summary database: what one run of the runner wrote.

The schema is versioned by the Alembic revisions in ``xaiboard.migrations``; change a model here only together with
a new revision there (``tests/test_migrations.py`` checks that both agree).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

PREDICTION_TYPES = ("TP", "FN", "FP", "TN")
RUN_STATUSES = ("running", "complete", "failed", "interrupted")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Run(Base):
    """The single row describing the run: status, progress, the model and the full configuration."""

    __tablename__ = "run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="running")
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    task: Mapped[str] = mapped_column(String(16), default="single-label")
    activation: Mapped[str] = mapped_column(String(64), default="softmax")
    threshold: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    top_k: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    image_height: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    image_width: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    model_class: Mapped[Optional[str]] = mapped_column(String(255), nullable=True)
    num_parameters: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    device: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    uncertainty: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)


class Label(Base):
    """A class of the model, by output index."""

    __tablename__ = "labels"

    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255))


class Sample(Base):
    """One explained input. ``id`` is its position in the dataset; a sample row exists only once all of its
    predictions, maps and scores are written (the runner commits a batch at a time). ``image`` is the display image
    as PNG, or WebP/JPEG for photos (see :mod:`xaiboard.store.codec`); it is the last column so that reading the
    others never pages through it."""

    __tablename__ = "samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(255), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    max_prob: Mapped[Optional[float]] = mapped_column(Float, nullable=True, index=True)
    max_sd: Mapped[Optional[float]] = mapped_column(Float, nullable=True, index=True)
    image: Mapped[bytes] = mapped_column(LargeBinary)


class GroundTruth(Base):
    """A ground-truth label of a sample."""

    __tablename__ = "ground_truth"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"), primary_key=True)


class Box(Base):
    """A bounding box of a ground-truth label, in input pixels; ``x`` is the column, ``y`` the row."""

    __tablename__ = "boxes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), index=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"))
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)


class Mask(Base):
    """A segmentation mask of a ground-truth label, as a 1-bit PNG at input resolution."""

    __tablename__ = "masks"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"), primary_key=True)
    mask_png: Mapped[bytes] = mapped_column(LargeBinary)


class Prediction(Base):
    """An explained label of a sample (``type`` TP/FN/FP/TN) with its probability and, when it was computed, the
    MC-dropout uncertainty ``sd``/``lower``/``upper``. Only explained labels (and ground-truth ones, which the
    runner always explains) have a row; every label's probability is in the sample's :class:`Probabilities`."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_label_type_prob", "label_index", "type", "prob"),
        Index("ix_predictions_type", "type"),
        Index("ix_predictions_label_sd", "label_index", "sd"),
    )

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"), primary_key=True)
    prob: Mapped[float] = mapped_column(Float)
    ground_truth: Mapped[bool] = mapped_column(Boolean, default=False)
    type: Mapped[Optional[str]] = mapped_column(String(2), nullable=True)
    sd: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    lower: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    upper: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class Probabilities(Base):
    """Every label's probability of one sample (and with uncertainty its sd and 95% interval bounds) as float32
    vectors indexed by label, in ``encoding`` ``f32z`` (see :mod:`xaiboard.store.arrays`); NaN where a label has no
    value. ``num_labels`` counts the labels that have one."""

    __tablename__ = "probabilities"
    # counts() sums num_labels from this index instead of reading every row's vectors
    __table_args__ = (Index("ix_probabilities_num_labels", "num_labels"),)

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    encoding: Mapped[str] = mapped_column(String(16))
    num_labels: Mapped[int] = mapped_column(Integer)
    probs: Mapped[bytes] = mapped_column(LargeBinary)
    sd: Mapped[Optional[bytes]] = mapped_column(LargeBinary, nullable=True)
    lower: Mapped[Optional[bytes]] = mapped_column(LargeBinary, nullable=True)
    upper: Mapped[Optional[bytes]] = mapped_column(LargeBinary, nullable=True)


class Explainer(Base):
    """A registered explainer and its full configuration."""

    __tablename__ = "explainers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Metric(Base):
    """A registered benchmark: its direction, range, aggregation (``mean`` or ``macro`` over classes) and config."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    higher_is_better: Mapped[bool] = mapped_column(Boolean, default=True)
    range_min: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    range_max: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    aggregation: Mapped[str] = mapped_column(String(16), default="mean")
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Saliency(Base):
    """One relevance map at the resolution its explainer produced (``height`` x ``width``, e.g. Grad-CAM's layer
    grid), quantised between the raw ``vmin``/``vmax`` and encoded as ``encoding`` says (``png16``, ``q16``...; see
    :mod:`xaiboard.store.arrays`). The blob ``data`` is the last column, so timings are read without paging
    through maps."""

    __tablename__ = "saliency"
    __table_args__ = (Index("ix_saliency_explainer", "explainer_id"),)

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"), primary_key=True)
    explainer_id: Mapped[int] = mapped_column(ForeignKey("explainers.id"), primary_key=True)
    encoding: Mapped[str] = mapped_column(String(16), server_default="png16")
    height: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    width: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    vmin: Mapped[float] = mapped_column(Float)
    vmax: Mapped[float] = mapped_column(Float)
    seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    delta: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Score(Base):
    """One benchmark value per (explainer, metric, sample, label); NULL where the score is undefined (NaN).
    ``seconds`` is the time the benchmark spent on the pair (its call's time divided by the pairs it scored)."""

    __tablename__ = "scores"
    __table_args__ = (
        Index("ix_scores_metric_explainer_value", "metric_id", "explainer_id", "value"),
        Index("ix_scores_sample", "sample_id"),
    )

    explainer_id: Mapped[int] = mapped_column(ForeignKey("explainers.id"), primary_key=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("metrics.id"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"), primary_key=True)
    value: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class IntegratedGradientsPath(Base):
    """What Integrated Gradients saw along its path for one (sample, label, explainer): the interpolation points
    ``alphas`` (0 = the baseline, 1 = the input), the target's probability and the mean |gradient| over the input at
    each of them (``f32z`` vectors, see :mod:`xaiboard.store.arrays`), the output gap F(x) - F(baseline) in the
    network's output units, ``relative_delta`` = |convergence delta| / (|gap| + 1e-3), and, when the run searched
    for it, the fewest steps that brought the relative delta under the explainer's tolerance."""

    __tablename__ = "ig_paths"
    __table_args__ = (Index("ix_ig_paths_explainer_delta", "explainer_id", "relative_delta"),)

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"), primary_key=True)
    explainer_id: Mapped[int] = mapped_column(ForeignKey("explainers.id"), primary_key=True)
    steps: Mapped[int] = mapped_column(Integer)
    output_gap: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    relative_delta: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    steps_needed: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    encoding: Mapped[str] = mapped_column(String(16))
    alphas: Mapped[bytes] = mapped_column(LargeBinary)
    probabilities: Mapped[bytes] = mapped_column(LargeBinary)
    gradients: Mapped[bytes] = mapped_column(LargeBinary)


class Curve(Base):
    """The perturbation curve behind one score (InsertionAUC, DeletionAUC, NaiveFaithfulness): the target's
    probability at every step, as an ``f32z`` vector; NaN where a step was not evaluated."""

    __tablename__ = "curves"
    __table_args__ = (Index("ix_curves_sample", "sample_id", "label_index"),)

    explainer_id: Mapped[int] = mapped_column(ForeignKey("explainers.id"), primary_key=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("metrics.id"), primary_key=True)
    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    label_index: Mapped[int] = mapped_column(ForeignKey("labels.index"), primary_key=True)
    encoding: Mapped[str] = mapped_column(String(16))
    values: Mapped[bytes] = mapped_column(LargeBinary)


class InternalLayer(Base):
    """A layer looked inside of, once per run: ``kind`` ``features`` (a layer's N x C x h x w output: ``channels``
    x ``height`` x ``width``) or ``attention`` (``channels`` heads over a ``height`` x ``width`` patch grid of
    ``tokens`` tokens). A Conv2d layer also keeps its filters in display form (``filters``: an ``f16z`` array of
    ``filter_shape``, one picture per output filter, ``filter_mode`` ``rgb`` or ``mean`` over its inputs, with the
    common scale ``filter_low``..``filter_high``)."""

    __tablename__ = "internal_layers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    channels: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    filter_mode: Mapped[Optional[str]] = mapped_column(String(16), nullable=True)
    filter_shape: Mapped[Optional[list[int]]] = mapped_column(JSON, nullable=True)
    filter_low: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    filter_high: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    filters: Mapped[Optional[bytes]] = mapped_column(LargeBinary, nullable=True)


class FeatureMap(Base):
    """One sample's feature maps of one layer: ``kept`` channels (all, or the top-k by mean activation), their
    indices, per-channel min and max and mean activation (``f32z`` vectors) and the maps themselves (``codes``:
    zlib of kept x h x w values, ``uint8`` quantised between each channel's min and max, or ``float16``)."""

    __tablename__ = "feature_maps"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("internal_layers.id"), primary_key=True)
    encoding: Mapped[str] = mapped_column(String(16))
    kept: Mapped[int] = mapped_column(Integer)
    channel_index: Mapped[bytes] = mapped_column(LargeBinary)
    low: Mapped[bytes] = mapped_column(LargeBinary)
    high: Mapped[bytes] = mapped_column(LargeBinary)
    means: Mapped[bytes] = mapped_column(LargeBinary)
    codes: Mapped[bytes] = mapped_column(LargeBinary)


class AttentionMap(Base):
    """One sample's attention in one layer, per head, over the layer's patch grid: the class token's attention to
    each patch (or, without a class token, the mean attention each patch receives), an ``f16z`` array of heads x
    rows x columns."""

    __tablename__ = "attention_maps"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("internal_layers.id"), primary_key=True)
    encoding: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Intervention(Base):
    """Every label's probability of one sample with the run's attention intervention applied (the run's
    configuration says which factor and layers): beside the stored probabilities, the prediction change."""

    __tablename__ = "interventions"

    sample_id: Mapped[int] = mapped_column(ForeignKey("samples.id", ondelete="CASCADE"), primary_key=True)
    encoding: Mapped[str] = mapped_column(String(16))
    probs: Mapped[bytes] = mapped_column(LargeBinary)


class Failure(Base):
    """An error on one sample (or the whole run when ``sample_id`` is NULL) that the run recorded and went past."""

    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sample_id: Mapped[Optional[int]] = mapped_column(Integer, nullable=True, index=True)
    stage: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    traceback: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
