"""Diagnostics of a summary's maps and scores: Integrated Gradients' path per pair and the perturbation curves
behind the faithfulness scores. Summaries written before schema 0004 have none and answer empty."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .arrays import decode_vector
from .models import Curve, Explainer, IntegratedGradientsPath, Metric, Score
from .views import CurveView, PathView

DIAGNOSTICS_REVISION = "0004"
#: the tolerance of an explainer whose configuration states none (IntegratedGradients' default)
DEFAULT_TOLERANCE = 0.05


class DiagnosticQueries:
    """Mixed into :class:`~xaiboard.store.Summary`: needs its sessions and its schema revision."""

    revision: str

    def _session(self) -> Session:
        raise NotImplementedError

    @property
    def has_diagnostics(self) -> bool:
        """Whether the file's schema has the diagnostics tables (an older summary opens without them)."""
        return self.revision >= DIAGNOSTICS_REVISION

    def diagnostic_counts(self, session: Session) -> dict[str, int]:
        """How many Integrated Gradients paths and perturbation curves the summary holds (0 before schema 0004)."""
        if not self.has_diagnostics:
            return {"num_ig_paths": 0, "num_curves": 0}
        count = lambda model: session.execute(select(func.count()).select_from(model)).scalar_one()  # noqa: E731
        return {"num_ig_paths": count(IntegratedGradientsPath), "num_curves": count(Curve)}

    def paths(self, sample_id: int, label_index: int) -> list[PathView]:
        """Integrated Gradients' path of each explainer that kept one for the pair, in registration order."""
        if not self.has_diagnostics:
            return []
        path = IntegratedGradientsPath
        with self._session() as session:
            rows = session.execute(
                select(Explainer.name, path)
                .join(Explainer, Explainer.id == path.explainer_id)
                .where(path.sample_id == sample_id, path.label_index == label_index)
                .order_by(path.explainer_id)
            ).all()
            return [PathView(name, row.steps, decode_vector(row.alphas, row.encoding),
                             decode_vector(row.probabilities, row.encoding), decode_vector(row.gradients, row.encoding),
                             row.output_gap, row.relative_delta, row.steps_needed)
                    for name, row in rows]

    def curves(self, sample_id: int, label_index: int) -> list[CurveView]:
        """Every stored perturbation curve of the pair with the score it integrates to, by metric then explainer."""
        if not self.has_diagnostics:
            return []
        with self._session() as session:
            rows = session.execute(
                select(Explainer.name, Metric.name, Curve.encoding, Curve.values, Score.value)
                .join(Explainer, Explainer.id == Curve.explainer_id)
                .join(Metric, Metric.id == Curve.metric_id)
                .outerjoin(Score, (Score.explainer_id == Curve.explainer_id) & (Score.metric_id == Curve.metric_id)
                           & (Score.sample_id == Curve.sample_id) & (Score.label_index == Curve.label_index))
                .where(Curve.sample_id == sample_id, Curve.label_index == label_index)
                .order_by(Curve.metric_id, Curve.explainer_id)
            ).all()
        return [CurveView(explainer, metric, decode_vector(values, encoding), score)
                for explainer, metric, encoding, values, score in rows]

    def delta_columns(self) -> dict[str, Any]:
        """Every stored path's ``sample_id``, ``label_index`` and ``relative_delta`` (NaN where NULL), and whether
        it is ``over`` its explainer's ``delta_tolerance``, ordered by sample then label: what the browser sorts
        and filters by."""
        empty = {"sample_id": np.zeros(0, np.int64), "label_index": np.zeros(0, np.int64),
                 "value": np.zeros(0), "over": np.zeros(0, bool)}
        if not self.has_diagnostics:
            return empty
        path = IntegratedGradientsPath
        with self._session() as session:
            tolerance = {row.id: float((row.config or {}).get("delta_tolerance", DEFAULT_TOLERANCE))
                         for row in session.scalars(select(Explainer))}
            rows = session.execute(
                select(path.sample_id, path.label_index, path.explainer_id, path.relative_delta)
                .order_by(path.sample_id, path.label_index, path.explainer_id)
            ).all()
        if not rows:
            return empty
        sample_ids, labels, explainers, values = zip(*rows)
        value = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        limit = np.array([tolerance.get(e, DEFAULT_TOLERANCE) for e in explainers])
        return {"sample_id": np.array(sample_ids, np.int64), "label_index": np.array(labels, np.int64),
                "value": value, "over": value > limit}
