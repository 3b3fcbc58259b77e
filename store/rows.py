"""Turning a :class:`~xaiboard.store.Batch` of records into the rows the writer inserts: validation, encoding of
images, maps and probability vectors, and the per-sample sort columns.

Predictions are compacted here: a sample's probabilities go into one vector row (from its
:class:`ProbabilityRecord`, or built from its prediction records when it has none), and only explained labels (and
ground-truth ones) keep a ``predictions`` row. At ImageNet scale that is 1-2 rows per sample instead of 1,000.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Optional

import numpy as np

from . import arrays, codec
from .models import PREDICTION_TYPES
from .records import Batch, LayerRecord, PredictionRecord, ProbabilityRecord

Row = dict[str, Any]


def finite_or_none(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _vector(values: Optional[np.ndarray], length: int, what: str, sample_id: int) -> Optional[np.ndarray]:
    """A float32 copy of a 1-D vector (of ``length`` values unless it is negative); None stays None."""
    if values is None:
        return None
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"sample {sample_id}: {what} must be a 1-D vector indexed by label, got shape {array.shape}")
    if length >= 0 and array.shape[0] != length:
        raise ValueError(f"sample {sample_id}: {what} has {array.shape[0]} values, the probabilities {length}")
    return array.astype(np.float32)


class _Vectors:
    """One sample's vectors while they are assembled (probs, and sd/lower/upper when present)."""

    def __init__(self, record: Optional[ProbabilityRecord], records: list[PredictionRecord], num_labels: int,
                 sample_id: int) -> None:
        if record is not None:
            self.probs = _vector(record.probs, -1, "probs", sample_id)
            assert self.probs is not None
            length = self.probs.shape[0]
            self.spread = {name: _vector(getattr(record, name), length, name, sample_id)
                           for name in ("sd", "lower", "upper")}
        else:
            length = max([num_labels] + [r.label_index + 1 for r in records])
            self.probs = np.full(length, np.nan, dtype=np.float32)
            self.spread = {name: (np.full(length, np.nan, dtype=np.float32)
                                  if any(getattr(r, name) is not None for r in records) else None)
                           for name in ("sd", "lower", "upper")}
            for r in records:
                self.set(r, overwrite=True)

    def set(self, record: PredictionRecord, overwrite: bool = False) -> None:
        """Put a record's values into the vectors (where they have none, unless ``overwrite``)."""
        label = record.label_index
        if label >= self.probs.shape[0]:
            grow = label + 1 - self.probs.shape[0]
            self.probs = np.concatenate([self.probs, np.full(grow, np.nan, np.float32)])
            self.spread = {k: None if v is None else np.concatenate([v, np.full(grow, np.nan, np.float32)])
                           for k, v in self.spread.items()}
        if overwrite or not math.isfinite(self.probs[label]):
            self.probs[label] = record.prob
            for name, vector in self.spread.items():
                value = finite_or_none(getattr(record, name))
                if vector is not None and value is not None:
                    vector[label] = value

    def row(self, sample_id: int) -> Row:
        blobs = {name: (arrays.encode_vector(v) if v is not None and np.isfinite(v).any() else None)
                 for name, v in self.spread.items()}
        return {"sample_id": sample_id, "encoding": arrays.VECTOR_ENCODING,
                "num_labels": int(np.isfinite(self.probs).sum()), "probs": arrays.encode_vector(self.probs), **blobs}


def prediction_rows(batch: Batch, num_labels: int) -> tuple[list[Row], list[Row], dict[int, tuple[Any, Any]]]:
    """The ``predictions`` rows, the ``probabilities`` rows and, per sample, its highest probability and sd."""
    given: dict[int, ProbabilityRecord] = {}
    for record in batch.probabilities:
        if record.sample_id in given:
            raise ValueError(f"sample {record.sample_id} has two probability records")
        given[record.sample_id] = record
    records_of: dict[int, list[PredictionRecord]] = defaultdict(list)
    for p in batch.predictions:
        if p.type is not None and p.type not in PREDICTION_TYPES:
            raise ValueError(f"prediction type must be one of {PREDICTION_TYPES}, got {p.type!r}")
        if p.label_index < 0:
            raise ValueError(f"sample {p.sample_id}: label index {p.label_index} is negative")
        records_of[p.sample_id].append(p)
    prediction_rows: list[Row] = []
    vector_rows: list[Row] = []
    maxima: dict[int, tuple[Any, Any]] = {}
    for sample_id in sorted(set(given) | set(records_of)):
        records = records_of.get(sample_id, [])
        kept = [r for r in records if r.type is not None or r.ground_truth]
        vectors = _Vectors(given.get(sample_id), records, num_labels, sample_id)
        for r in kept:
            vectors.set(r)
        vector_rows.append(vectors.row(sample_id))
        # The sort columns are the maxima of what the reader answers: a row's value where it has one.
        probs = vectors.probs.astype(np.float64)
        sd = None if vectors.spread["sd"] is None else vectors.spread["sd"].astype(np.float64)
        for r in kept:
            probs[r.label_index] = r.prob
            if sd is not None:
                sd[r.label_index] = np.nan if finite_or_none(r.sd) is None else r.sd
        if sd is None:
            max_sd = max((v for v in (finite_or_none(r.sd) for r in kept) if v is not None), default=None)
        else:
            max_sd = float(np.nanmax(sd)) if np.isfinite(sd).any() else None
        max_prob = float(np.nanmax(probs)) if np.isfinite(probs).any() else None
        maxima[sample_id] = (max_prob, max_sd)
        prediction_rows += [
            {"sample_id": sample_id, "label_index": r.label_index, "prob": float(r.prob),
             "ground_truth": bool(r.ground_truth), "type": r.type, "sd": finite_or_none(r.sd),
             "lower": finite_or_none(r.lower), "upper": finite_or_none(r.upper)}
            for r in kept
        ]
    return prediction_rows, vector_rows, maxima


def sample_rows(batch: Batch, maxima: dict[int, tuple[Any, Any]], lossy_images: bool
                ) -> tuple[list[Row], list[Row], list[Row], list[Row]]:
    """The ``samples``, ``ground_truth``, ``boxes`` and ``masks`` rows."""
    samples, truth, boxes, masks = [], [], [], []
    for s in batch.samples:
        height, width = np.asarray(s.image).shape[:2]
        max_prob, max_sd = maxima.get(s.id, (None, None))
        samples.append({"id": s.id, "name": str(s.name), "width": int(width), "height": int(height),
                        "max_prob": max_prob, "max_sd": max_sd,
                        "image": codec.encode_display_image(s.image, lossy=lossy_images)})
        truth += [{"sample_id": s.id, "label_index": int(i)} for i in dict.fromkeys(s.ground_truth)]
        boxes += [{"sample_id": s.id, "label_index": b.label_index, "x": b.x, "y": b.y, "width": b.width,
                   "height": b.height} for b in s.boxes]
        masks += [{"sample_id": s.id, "label_index": int(i), "mask_png": codec.encode_mask(m)}
                  for i, m in s.masks.items()]
    return samples, truth, boxes, masks


def saliency_rows(batch: Batch, explainer_id: Callable[[str], int], map_bits: int) -> list[Row]:
    """The ``saliency`` rows: each map quantised to ``map_bits`` and in its smaller encoding."""
    rows = []
    for m in batch.saliency:
        encoded = arrays.encode_map(m.map, map_bits)
        rows.append({"sample_id": m.sample_id, "label_index": m.label_index, "explainer_id": explainer_id(m.explainer),
                     "encoding": encoded.encoding, "height": encoded.height, "width": encoded.width,
                     "vmin": encoded.vmin, "vmax": encoded.vmax, "seconds": finite_or_none(m.seconds),
                     "delta": finite_or_none(m.delta), "data": encoded.data})
    return rows


def score_rows(batch: Batch, explainer_id: Callable[[str], int], metric_id: Callable[[str], int]) -> list[Row]:
    return [{"explainer_id": explainer_id(s.explainer), "metric_id": metric_id(s.metric), "sample_id": s.sample_id,
             "label_index": s.label_index, "value": finite_or_none(s.value), "seconds": finite_or_none(s.seconds)}
            for s in batch.scores]


def path_rows(batch: Batch, explainer_id: Callable[[str], int]) -> list[Row]:
    """The ``ig_paths`` rows: the three path vectors of each record, checked to have one value per alpha."""
    rows = []
    for p in batch.paths:
        alphas = np.asarray(p.alphas, dtype=np.float32).reshape(-1)
        vectors = [np.asarray(v, dtype=np.float32).reshape(-1) for v in (p.probabilities, p.gradients)]
        if any(v.shape != alphas.shape for v in vectors):
            raise ValueError(f"path of sample {p.sample_id}, label {p.label_index}: {alphas.size} alphas but "
                             f"{vectors[0].size} probabilities and {vectors[1].size} gradients")
        rows.append({"sample_id": p.sample_id, "label_index": p.label_index, "explainer_id": explainer_id(p.explainer),
                     "steps": int(alphas.size), "output_gap": finite_or_none(p.output_gap),
                     "relative_delta": finite_or_none(p.relative_delta),
                     "steps_needed": None if p.steps_needed is None else int(p.steps_needed),
                     "encoding": arrays.VECTOR_ENCODING, "alphas": arrays.encode_vector(alphas),
                     "probabilities": arrays.encode_vector(vectors[0]), "gradients": arrays.encode_vector(vectors[1])})
    return rows


def curve_rows(batch: Batch, explainer_id: Callable[[str], int], metric_id: Callable[[str], int]) -> list[Row]:
    return [{"explainer_id": explainer_id(c.explainer), "metric_id": metric_id(c.metric), "sample_id": c.sample_id,
             "label_index": c.label_index, "encoding": arrays.VECTOR_ENCODING,
             "values": arrays.encode_vector(np.asarray(c.values, dtype=np.float32).reshape(-1))}
            for c in batch.curves]


#: how a feature map's codes are packed, by the runner's encoding of them
CODE_PACKING = {"uint8": "u8z", "float16": "f16z"}


def layer_row(layer: LayerRecord) -> Row:
    """The ``internal_layers`` row of a layer; the filters as an ``f16z`` array with their shape and scale."""
    row: Row = {"name": layer.name, "kind": layer.kind, "channels": int(layer.channels), "height": int(layer.height),
                "width": int(layer.width), "tokens": None if layer.tokens is None else int(layer.tokens),
                "filter_mode": None, "filter_shape": None, "filter_low": None, "filter_high": None, "filters": None}
    if layer.filters is not None:
        filters = np.asarray(layer.filters, dtype=np.float32)
        row.update(filter_mode=layer.filter_mode, filter_shape=list(filters.shape),
                   filter_low=float(filters.min()), filter_high=float(filters.max()),
                   filters=arrays.encode_packed(filters, "f16z"))
    return row


def feature_map_rows(batch: Batch, layer_id: Callable[[str], int]) -> list[Row]:
    rows = []
    for f in batch.feature_maps:
        codes = np.asarray(f.codes)
        if codes.ndim != 3 or not all(np.asarray(v).shape == (codes.shape[0],)
                                      for v in (f.channels, f.low, f.high, f.means)):
            raise ValueError(f"feature maps of sample {f.sample_id}, layer {f.layer!r}: codes {codes.shape} do not "
                             "match one index, low, high and mean per channel")
        rows.append({"sample_id": f.sample_id, "layer_id": layer_id(f.layer), "encoding": f.encoding,
                     "kept": int(codes.shape[0]), "channel_index": arrays.encode_vector(f.channels),
                     "low": arrays.encode_vector(f.low), "high": arrays.encode_vector(f.high),
                     "means": arrays.encode_vector(f.means),
                     "codes": arrays.encode_packed(codes, CODE_PACKING[f.encoding])})
    return rows


def attention_rows(batch: Batch, layer_id: Callable[[str], int]) -> list[Row]:
    return [{"sample_id": a.sample_id, "layer_id": layer_id(a.layer), "encoding": "f16z",
             "data": arrays.encode_packed(np.asarray(a.maps, dtype=np.float32), "f16z")} for a in batch.attention]


def intervention_rows(batch: Batch, num_labels: int) -> list[Row]:
    rows = []
    for i in batch.interventions:
        probs = _vector(i.probs, num_labels, "intervention probabilities", i.sample_id)
        rows.append({"sample_id": i.sample_id, "encoding": arrays.VECTOR_ENCODING,
                     "probs": arrays.encode_vector(probs)})
    return rows
