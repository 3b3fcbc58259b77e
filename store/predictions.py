"""Answering every label's probability from the compact layout: a sample's vector row plus its explained rows.

A summary keeps ``predictions`` rows only for explained labels; the rest of a sample's labels are in its
``probabilities`` row. :func:`merge` puts both together into the :class:`PredictionView` per label that the
reader answered when every label had a row: an explained label's row wins, the others come from the vectors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional

import numpy as np

from . import arrays
from .records import ProbabilityRecord
from .views import PredictionView

SPREAD = ("sd", "lower", "upper")


def vectors_of(row: Any) -> ProbabilityRecord:
    """The decoded vectors of a ``probabilities`` row (anything with its columns as attributes)."""
    decoded = {name: (None if getattr(row, name) is None else arrays.decode_vector(getattr(row, name), row.encoding))
               for name in ("probs", *SPREAD)}
    return ProbabilityRecord(row.sample_id, **decoded)


def _value(vector: Optional[list[float]], label: int) -> Optional[float]:
    if vector is None or label >= len(vector):
        return None
    value = vector[label]
    return None if value != value else value


def merge(sample_id: int, rows: Iterable[Any], vectors: Optional[ProbabilityRecord], names: Mapping[int, str],
          truth: frozenset[int] | set[int] = frozenset(),
          explainers_of: Optional[Mapping[int, tuple[str, ...]]] = None) -> list[PredictionView]:
    """Every label of one sample that has a probability, ordered by label: explained ``rows`` (objects with the
    ``predictions`` columns as attributes) as stored, the other labels from ``vectors``. ``truth`` adds ground-truth
    flags and ``explainers_of`` the explainers with a map, per label."""
    explainers_of = explainers_of or {}
    by_label = {row.label_index: row for row in rows}
    views: dict[int, PredictionView] = {}
    for label, row in by_label.items():
        views[label] = PredictionView(label, names.get(label, str(label)), row.prob,
                                      bool(row.ground_truth) or label in truth, row.type, row.sd, row.lower,
                                      row.upper, tuple(explainers_of.get(label, ())), sample_id)
    if vectors is not None:
        probs = vectors.probs.tolist()
        spread = {name: (None if getattr(vectors, name) is None else getattr(vectors, name).tolist())
                  for name in SPREAD}
        for label in np.flatnonzero(np.isfinite(vectors.probs)).tolist():
            if label not in views:
                views[label] = PredictionView(label, names.get(label, str(label)), probs[label], label in truth,
                                              None, _value(spread["sd"], label), _value(spread["lower"], label),
                                              _value(spread["upper"], label), tuple(explainers_of.get(label, ())),
                                              sample_id)
    return [views[label] for label in sorted(views)]
