"""Whole columns of a summary as numpy arrays, for the sample index (one query each)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from .models import PREDICTION_TYPES, Box, Explainer, GroundTruth, Prediction, Sample, Saliency, Score


class ColumnQueries:
    """Mixed into :class:`~xaiboard.store.Summary`: needs its ``engine`` and name lookups."""

    engine: Engine

    def _explainer_id(self, name: str) -> int:
        raise NotImplementedError

    def _metric_id(self, name: str) -> int:
        raise NotImplementedError

    def _columns(self, query: Any, kinds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Run ``query`` and return its columns as arrays named and typed by ``kinds`` (``float``: NaN for NULL)."""
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        columns = list(zip(*rows)) if rows else [()] * len(kinds)
        result = {}
        for (name, kind), values in zip(kinds.items(), columns):
            if kind is float:
                result[name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            elif kind is object:
                result[name] = np.empty(len(values), dtype=object)
                result[name][:] = values
            else:
                result[name] = np.array(values, dtype=kind)
        return result

    def sample_columns(self) -> dict[str, np.ndarray]:
        """Every sample's ``id``, ``name``, ``width``, ``height``, ``max_prob`` and ``max_sd`` (NaN where NULL) as
        arrays ordered by id: what :meth:`samples` filters and sorts on without a filter."""
        return self._columns(
            select(Sample.id, Sample.name, Sample.width, Sample.height, Sample.max_prob, Sample.max_sd)
            .order_by(Sample.id),
            {"id": np.int64, "name": object, "width": np.int64, "height": np.int64, "max_prob": float,
             "max_sd": float})

    def explained_columns(self) -> dict[str, np.ndarray]:
        """Every explained prediction's ``sample_id``, ``label_index``, ``type`` (index into PREDICTION_TYPES),
        ``prob``, ``ground_truth``, ``sd``, ``lower`` and ``upper`` (NaN where NULL), ordered by sample then label."""
        columns = self._columns(
            select(Prediction.sample_id, Prediction.label_index, Prediction.type, Prediction.prob,
                   Prediction.ground_truth, Prediction.sd, Prediction.lower, Prediction.upper)
            .where(Prediction.type.is_not(None))
            .order_by(Prediction.sample_id, Prediction.label_index),
            {"sample_id": np.int64, "label_index": np.int64, "type": object, "prob": float, "ground_truth": bool,
             "sd": float, "lower": float, "upper": float})
        code = {kind: i for i, kind in enumerate(PREDICTION_TYPES)}
        columns["type"] = np.array([code[kind] for kind in columns["type"]], dtype=np.int8)
        return columns

    def saliency_columns(self) -> dict[str, np.ndarray]:
        """Which maps exist: ``sample_id``, ``label_index`` and ``explainer`` (name), ordered by sample, label and
        explainer registration."""
        return self._columns(
            select(Saliency.sample_id, Saliency.label_index, Explainer.name)
            .join(Explainer, Explainer.id == Saliency.explainer_id)
            .order_by(Saliency.sample_id, Saliency.label_index, Saliency.explainer_id),
            {"sample_id": np.int64, "label_index": np.int64, "explainer": object})

    def ground_truth_columns(self) -> dict[str, np.ndarray]:
        """Every ground-truth label: ``sample_id`` and ``label_index``, ordered by sample then label."""
        return self._columns(
            select(GroundTruth.sample_id, GroundTruth.label_index)
            .order_by(GroundTruth.sample_id, GroundTruth.label_index),
            {"sample_id": np.int64, "label_index": np.int64})

    def box_columns(self) -> dict[str, np.ndarray]:
        """Every box: ``sample_id``, ``label_index``, ``x``, ``y``, ``width``, ``height``, ordered by sample and then
        the order they were written in."""
        return self._columns(
            select(Box.sample_id, Box.label_index, Box.x, Box.y, Box.width, Box.height)
            .order_by(Box.sample_id, Box.id),
            {"sample_id": np.int64, "label_index": np.int64, "x": float, "y": float, "width": float,
             "height": float})

    def score_columns(self, explainer: str, metric: str) -> dict[str, np.ndarray]:
        """The scores of one explainer and metric: ``sample_id``, ``label_index`` and ``value`` (NaN where NULL),
        ordered by sample then label."""
        return self._columns(
            select(Score.sample_id, Score.label_index, Score.value)
            .where(Score.explainer_id == self._explainer_id(explainer), Score.metric_id == self._metric_id(metric))
            .order_by(Score.sample_id, Score.label_index),
            {"sample_id": np.int64, "label_index": np.int64, "value": float})
