"""Plain records the runner hands to the writer, one per row it will write (numpy arrays, no torch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class BoxRecord:
    """A box of a ground-truth label in input pixels: ``x`` is the column and ``y`` the row of its top-left corner."""

    label_index: int
    x: float
    y: float
    width: float
    height: float


@dataclass
class SampleRecord:
    """One input: ``image`` is the display image (HxW or HxWx3, uint8 or floats in [0, 1])."""

    id: int
    name: str
    image: np.ndarray
    ground_truth: Sequence[int] = ()
    boxes: Sequence[BoxRecord] = ()
    masks: Mapping[int, np.ndarray] = field(default_factory=dict)


@dataclass
class ProbabilityRecord:
    """Every label's probability of one sample, indexed by label (NaN: no value), and with uncertainty the same
    vectors of sd and 95% interval bounds. Stored as float32, once per sample."""

    sample_id: int
    probs: np.ndarray
    sd: Optional[np.ndarray] = None
    lower: Optional[np.ndarray] = None
    upper: Optional[np.ndarray] = None


@dataclass
class PredictionRecord:
    """An explained label (``type`` TP/FN/FP/TN) with its probability. Labels that are not explained need no
    record when the sample has a :class:`ProbabilityRecord`; a record with ``type`` None only feeds the sample's
    probability vector (built from its records when no ProbabilityRecord is given)."""

    sample_id: int
    label_index: int
    prob: float
    ground_truth: bool = False
    type: Optional[str] = None
    sd: Optional[float] = None
    lower: Optional[float] = None
    upper: Optional[float] = None


@dataclass
class SaliencyRecord:
    """One relevance map (HxW floats, higher = more evidence) of an explainer for a (sample, label), at the
    resolution the explainer produced it (e.g. Grad-CAM's layer grid); the store keeps that shape."""

    sample_id: int
    label_index: int
    explainer: str
    map: np.ndarray
    seconds: Optional[float] = None
    delta: Optional[float] = None


@dataclass
class ScoreRecord:
    """One benchmark value; NaN or inf is stored as NULL (undefined for that pair). ``seconds``: the time the
    benchmark spent on this pair."""

    explainer: str
    metric: str
    sample_id: int
    label_index: int
    value: float
    seconds: Optional[float] = None


@dataclass
class PathRecord:
    """Integrated Gradients' path diagnostics of one (sample, label): at each interpolation point ``alphas``
    (0 = baseline, 1 = input) the target's probability and the mean |gradient| over the input; the output gap
    F(x) - F(baseline); ``relative_delta`` = |convergence delta| / (|gap| + 1e-3); the fewest steps that were
    enough, when searched."""

    sample_id: int
    label_index: int
    explainer: str
    alphas: np.ndarray
    probabilities: np.ndarray
    gradients: np.ndarray
    output_gap: Optional[float] = None
    relative_delta: Optional[float] = None
    steps_needed: Optional[int] = None


@dataclass
class CurveRecord:
    """The perturbation curve behind one score: the target's probability at every step of the benchmark."""

    explainer: str
    metric: str
    sample_id: int
    label_index: int
    values: np.ndarray


@dataclass
class LayerRecord:
    """A layer looked inside of (once per run): ``kind`` ``features`` (``channels`` x ``height`` x ``width``
    outputs) or ``attention`` (``channels`` heads over a ``height`` x ``width`` patch grid of ``tokens`` tokens);
    a Conv2d layer also hands its filters in display form (out x kh x kw, or out x kh x kw x 3 with ``rgb``)."""

    name: str
    kind: str
    channels: int
    height: int
    width: int
    tokens: Optional[int] = None
    filters: Optional[np.ndarray] = None
    filter_mode: Optional[str] = None


@dataclass
class FeatureMapRecord:
    """One sample's kept channels of a layer: ``codes`` K x h x w (uint8 between each channel's ``low`` and
    ``high``, or float16), ``channels`` their indices, ``means`` their mean activations."""

    sample_id: int
    layer: str
    codes: np.ndarray
    channels: np.ndarray
    low: np.ndarray
    high: np.ndarray
    means: np.ndarray
    encoding: str = "uint8"


@dataclass
class AttentionMapRecord:
    """One sample's per-head attention over a layer's patch grid (heads x rows x columns)."""

    sample_id: int
    layer: str
    maps: np.ndarray


@dataclass
class InterventionRecord:
    """Every label's probability of one sample with the run's attention intervention applied."""

    sample_id: int
    probs: np.ndarray


@dataclass
class FailureRecord:
    """An error on a sample (``sample_id`` None: on the run) that was recorded instead of stopping the run."""

    sample_id: Optional[int]
    stage: str
    message: str
    traceback: Optional[str] = None


@dataclass
class Batch:
    """Everything written for a group of samples, committed in one transaction."""

    samples: list[SampleRecord] = field(default_factory=list)
    predictions: list[PredictionRecord] = field(default_factory=list)
    probabilities: list[ProbabilityRecord] = field(default_factory=list)
    saliency: list[SaliencyRecord] = field(default_factory=list)
    scores: list[ScoreRecord] = field(default_factory=list)
    paths: list[PathRecord] = field(default_factory=list)
    curves: list[CurveRecord] = field(default_factory=list)
    feature_maps: list[FeatureMapRecord] = field(default_factory=list)
    attention: list[AttentionMapRecord] = field(default_factory=list)
    interventions: list[InterventionRecord] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
