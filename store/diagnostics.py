"""Diagnostics of a summary's maps and scores: Integrated Gradients' path per pair and the perturbation curves
behind the faithfulness scores. Summaries written before schema 0004 have none and answer empty."""

from __future__ import annotations

from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from .arrays import decode_vector
from .models import Curve, Explainer, IntegratedGradientsPath, Metric, Score
from .views import CurveView, PathView

DIAGNOSTICS_REVISION = "0004"


class DiagnosticQueries:
    """Mixed into :class:`~xaiboard.store.Summary`: needs its sessions and its schema revision."""

    revision: str

    def _session(self) -> Session:
        raise NotImplementedError

    @property
    def has_diagnostics(self) -> bool:
        """Whether the file's schema has the diagnostics tables (an older summary opens without them)."""
        return self.revision >= DIAGNOSTICS_REVISION

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

    def relative_deltas(self) -> list[tuple[int, int, str, Optional[float]]]:
        """(sample, label, explainer, relative delta) of every stored path: what the browser sorts and filters by."""
        if not self.has_diagnostics:
            return []
        path = IntegratedGradientsPath
        with self._session() as session:
            return [tuple(row) for row in session.execute(
                select(path.sample_id, path.label_index, Explainer.name, path.relative_delta)
                .join(Explainer, Explainer.id == path.explainer_id)
                .order_by(path.sample_id, path.label_index, path.explainer_id)
            ).all()]

