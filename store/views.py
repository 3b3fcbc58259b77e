"""Typed, read-only results of :class:`xaiboard.store.Summary` queries (what the server turns into JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional


@dataclass(frozen=True)
class RunView:
    name: str
    status: str
    progress_done: int
    progress_total: Optional[int]
    created_at: datetime
    updated_at: datetime
    task: str
    activation: str
    threshold: Optional[float]
    top_k: Optional[int]
    image_height: Optional[int]
    image_width: Optional[int]
    model_class: Optional[str]
    num_parameters: Optional[int]
    device: Optional[str]
    versions: dict[str, Any]
    uncertainty: Optional[dict[str, Any]]
    config: dict[str, Any]
    error: Optional[str]


@dataclass(frozen=True)
class LabelView:
    index: int
    name: str


@dataclass(frozen=True)
class ExplainerView:
    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class MetricView:
    name: str
    higher_is_better: bool
    range: tuple[Optional[float], Optional[float]]
    aggregation: str
    config: dict[str, Any]


@dataclass(frozen=True)
class BoxView:
    label_index: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class PredictionView:
    """One label of a sample: its probability, whether it is ground truth, its type, and the maps stored for it."""

    label_index: int
    name: str
    prob: float
    ground_truth: bool
    type: Optional[str]
    sd: Optional[float]
    lower: Optional[float]
    upper: Optional[float]
    explainers: tuple[str, ...] = ()
    sample_id: Optional[int] = None


@dataclass(frozen=True)
class SampleView:
    id: int
    name: str
    width: int
    height: int
    labels: tuple[PredictionView, ...]
    boxes: tuple[BoxView, ...] = ()


@dataclass(frozen=True)
class SamplePage:
    total: int
    samples: list[SampleView]


@dataclass(frozen=True)
class ClassAggregate:
    label_index: int
    mean: Optional[float]
    count: int


@dataclass(frozen=True)
class Aggregate:
    """A metric of an explainer over the summary: the overall value, the per-class means and how many values."""

    explainer: str
    metric: str
    value: Optional[float]
    count: int
    per_class: list[ClassAggregate] = field(default_factory=list)


@dataclass(frozen=True)
class FailureView:
    sample_id: Optional[int]
    stage: str
    message: str
    traceback: Optional[str]
    created_at: datetime


@dataclass(frozen=True)
class PathView:
    """Integrated Gradients' path of one pair: per alpha the target's probability and the mean |gradient|."""

    explainer: str
    steps: int
    alphas: Any
    probabilities: Any
    gradients: Any
    output_gap: Optional[float]
    relative_delta: Optional[float]
    steps_needed: Optional[int]


@dataclass(frozen=True)
class CurveView:
    """A perturbation curve (the target's probability per step) and the score stored for it."""

    explainer: str
    metric: str
    values: Any
    score: Optional[float]


@dataclass(frozen=True)
class LayerView:
    """A layer looked inside of: ``kind`` ``features`` (channels x height x width) or ``attention`` (heads over a
    height x width patch grid); ``filter_mode`` is set when its filters are stored."""

    name: str
    kind: str
    channels: int
    height: int
    width: int
    tokens: Optional[int]
    filter_mode: Optional[str]


@dataclass(frozen=True)
class FilterView:
    """A Conv2d layer's filters in display form (out x kh x kw, or x 3 with ``mode`` rgb) and their common scale."""

    layer: str
    mode: str
    display: Any
    low: float
    high: float


@dataclass(frozen=True)
class FeatureMapView:
    """One sample's kept channels of a layer: ``maps`` K x h x w float32 (decoded), their channel indices, min,
    max and mean activation, and how many channels the layer has."""

    layer: str
    encoding: str
    channels: Any
    low: Any
    high: Any
    means: Any
    maps: Any
    total_channels: int
