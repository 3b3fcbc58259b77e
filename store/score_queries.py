"""Benchmark scores of a summary: per pair, per explainer and metric, aggregated per class and overall, and the
time the benchmarks spent."""

from __future__ import annotations

from collections import defaultdict
from typing import Optional

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import Explainer, Metric, Score
from .views import Aggregate, ClassAggregate


class ScoreQueries:
    """Mixed into :class:`~xaiboard.store.Summary`: needs its sessions and name lookups."""

    def _session(self) -> Session:
        raise NotImplementedError

    def _explainer_id(self, name: str) -> int:
        raise NotImplementedError

    def _metric_id(self, name: str) -> int:
        raise NotImplementedError

    def score_timings(self) -> dict[tuple[str, str], dict[str, Optional[float]]]:
        """Per (explainer, metric): ``mean_seconds`` and ``total_seconds`` the benchmark spent on the scored pairs
        and how many pairs were timed (``count``; pairs written without a time are left out), to show where time
        goes."""
        with self._session() as session:
            rows = session.execute(
                select(Explainer.name, Metric.name, func.avg(Score.seconds), func.sum(Score.seconds),
                       func.count(Score.seconds))
                .join(Explainer, Explainer.id == Score.explainer_id)
                .join(Metric, Metric.id == Score.metric_id)
                .group_by(Score.explainer_id, Score.metric_id)
                .order_by(Score.explainer_id, Score.metric_id)
            ).all()
        return {(e, m): {"mean_seconds": mean, "total_seconds": total, "count": n} for e, m, mean, total, n in rows}

    def scores(
        self, explainer: str | None = None, metric: str | None = None, sample_id: int | None = None
    ) -> list[tuple[str, str, int, int, Optional[float]]]:
        """Per-pair scores as (explainer, metric, sample_id, label_index, value); value None where undefined."""
        query = (
            select(Explainer.name, Metric.name, Score.sample_id, Score.label_index, Score.value)
            .join(Explainer, Explainer.id == Score.explainer_id)
            .join(Metric, Metric.id == Score.metric_id)
            .order_by(Score.explainer_id, Score.metric_id, Score.sample_id, Score.label_index)
        )
        if explainer is not None:
            query = query.where(Score.explainer_id == self._explainer_id(explainer))
        if metric is not None:
            query = query.where(Score.metric_id == self._metric_id(metric))
        if sample_id is not None:
            query = query.where(Score.sample_id == sample_id)
        with self._session() as session:
            return [tuple(row) for row in session.execute(query).all()]  # type: ignore[misc]

    def score_values(self, explainer: str, metric: str, label_index: int | None = None) -> np.ndarray:
        """The defined values of one explainer and metric (for histograms), optionally of one label."""
        query = select(Score.value).where(
            Score.explainer_id == self._explainer_id(explainer),
            Score.metric_id == self._metric_id(metric),
            Score.value.is_not(None),
        )
        if label_index is not None:
            query = query.where(Score.label_index == label_index)
        with self._session() as session:
            return np.fromiter(session.execute(query).scalars(), dtype=np.float64)

    def aggregates(self) -> list[Aggregate]:
        """Per explainer and metric: the mean of the defined values per class, and overall either the mean of all
        defined values (``mean`` metrics) or the mean of the class means (``macro`` metrics, e.g. PointingGame)."""
        with self._session() as session:
            rows = session.execute(
                select(Explainer.name, Metric.name, Metric.aggregation, Score.label_index,
                       func.avg(Score.value), func.count(Score.value))
                .join(Explainer, Explainer.id == Score.explainer_id)
                .join(Metric, Metric.id == Score.metric_id)
                .group_by(Score.explainer_id, Score.metric_id, Score.label_index)
                .order_by(Score.explainer_id, Score.metric_id, Score.label_index)
            ).all()
        grouped: dict[tuple[str, str], list[ClassAggregate]] = defaultdict(list)
        aggregation_of: dict[str, str] = {}
        for explainer, metric, aggregation, label_index, mean, count in rows:
            grouped[(explainer, metric)].append(ClassAggregate(label_index, mean, count))
            aggregation_of[metric] = aggregation
        result = []
        for (explainer, metric), per_class in grouped.items():
            defined = [c for c in per_class if c.count > 0 and c.mean is not None]
            count = sum(c.count for c in defined)
            if not defined:
                value = None
            elif aggregation_of[metric] == "macro":
                value = float(np.mean([c.mean for c in defined]))
            else:
                value = sum(c.mean * c.count for c in defined) / count  # type: ignore[operator]
            result.append(Aggregate(explainer, metric, value, count, per_class))
        return result
