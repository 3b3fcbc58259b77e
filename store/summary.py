"""The reader of a summary directory: ``Summary.open(path)`` and typed queries for the server, the CLI and tests.

The queries are grouped by what they read: pages of samples (:mod:`.pages`), scores (:mod:`.score_queries`) and
whole columns for the server's index (:mod:`.columns`); this module has the rest.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from . import arrays, codec
from .columns import ColumnQueries
from .diagnostics import DiagnosticQueries
from .internals import InternalQueries
from .database import check_revision, current_revision, db_path, open_readonly, shard_dirs, writable_engine
from .errors import NotASummaryError, QueryError
from .models import (
    PREDICTION_TYPES,
    Box,
    Explainer,
    Failure,
    GroundTruth,
    Label,
    Mask,
    Metric,
    Prediction,
    Probabilities,
    Run,
    Sample,
    Saliency,
    Score,
)
from .pages import SORT_KEYS, SampleQueries
from .predictions import merge, vectors_of
from .records import ProbabilityRecord
from .score_queries import ScoreQueries
from .views import (
    BoxView,
    ExplainerView,
    FailureView,
    LabelView,
    MetricView,
    PredictionView,
    RunView,
)

__all__ = ["QueryError", "SORT_KEYS", "Summary", "iso"]


class Summary(SampleQueries, ScoreQueries, ColumnQueries, DiagnosticQueries, InternalQueries):
    """An opened summary directory. Read-only by default; cheap to keep open (one small connection pool)."""

    def __init__(self, path: Path, engine: Engine, revision: str) -> None:
        self.path = path
        self.engine = engine
        self.revision = revision
        self._labels: Optional[list[LabelView]] = None
        self._explainer_ids: Optional[dict[str, int]] = None
        self._metric_ids: Optional[dict[str, int]] = None
        self._index = None
        self._index_lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, readonly: bool = True) -> "Summary":
        """Open a summary directory. Raises a :class:`~xaiboard.store.SummaryError` with a one-line reason when the
        directory is not a readable summary at this xaiboard's schema revision."""
        path = Path(path)
        if readonly and not db_path(path).is_file() and shard_dirs(path):
            from .shards import sharded_engine

            engine = sharded_engine(path)
            revision = current_revision(engine)
            assert revision is not None
            check_revision(revision, path, reading=True)
        elif readonly:
            engine, revision = open_readonly(path)
        else:
            if not db_path(path).is_file():
                raise NotASummaryError(f"{path} holds no {db_path(path).name}: not a summary directory")
            engine = writable_engine(db_path(path))
            revision = current_revision(engine)
            assert revision is not None
            check_revision(revision, path)
        return cls(path, engine, revision)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Summary":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _session(self) -> Session:
        return Session(self.engine)

    # -- run-level facts -----------------------------------------------------------------------------------------

    def run(self) -> RunView:
        """The run: status, progress, model, configuration. Not cached: a live run changes."""
        with self._session() as session:
            run = session.scalars(select(Run)).one()
            return RunView(**{c: getattr(run, c) for c in RunView.__dataclass_fields__})

    def labels(self) -> list[LabelView]:
        if self._labels is None:
            with self._session() as session:
                rows = session.execute(select(Label.index, Label.name).order_by(Label.index)).all()
            self._labels = [LabelView(index, name) for index, name in rows]
        return self._labels

    def label_names(self) -> dict[int, str]:
        return {label.index: label.name for label in self.labels()}

    def explainers(self) -> list[ExplainerView]:
        with self._session() as session:
            rows = session.execute(select(Explainer.name, Explainer.config).order_by(Explainer.id)).all()
        return [ExplainerView(name, config) for name, config in rows]

    def metrics(self) -> list[MetricView]:
        with self._session() as session:
            rows = session.scalars(select(Metric).order_by(Metric.id)).all()
            return [
                MetricView(m.name, m.higher_is_better, (m.range_min, m.range_max), m.aggregation, m.config)
                for m in rows
            ]

    def counts(self) -> dict[str, int]:
        """How many of each kind the summary holds; ``num_predictions`` counts the (sample, label) probabilities it
        answers, explained or not."""
        with self._session() as session:
            def count(model: Any) -> int:
                return session.execute(select(func.count()).select_from(model)).scalar_one()

            return {
                "num_samples": count(Sample),
                "num_predictions": session.execute(
                    select(func.coalesce(func.sum(Probabilities.num_labels), 0))).scalar_one(),
                "num_saliency_maps": count(Saliency),
                "num_scores": count(Score),
                "num_failures": count(Failure),
                **self.diagnostic_counts(session),
                **self.internal_counts(session),
            }

    def num_samples(self) -> int:
        with self._session() as session:
            return session.execute(select(func.count()).select_from(Sample)).scalar_one()

    def label_counts(self) -> dict[int, dict[str, int]]:
        """Per label, how many explained predictions of each type (TP/FN/FP/TN); every label and type present."""
        counts = {label.index: {t: 0 for t in PREDICTION_TYPES} for label in self.labels()}
        with self._session() as session:
            rows = session.execute(
                select(Prediction.label_index, Prediction.type, func.count())
                .where(Prediction.type.is_not(None))
                .group_by(Prediction.label_index, Prediction.type)
            ).all()
        for label_index, kind, n in rows:
            counts.setdefault(label_index, {t: 0 for t in PREDICTION_TYPES})[kind] = n
        return counts

    def failures(self, limit: int | None = None) -> list[FailureView]:
        with self._session() as session:
            query = select(Failure).order_by(Failure.id)
            if limit is not None:
                query = query.limit(limit)
            return [
                FailureView(f.sample_id, f.stage, f.message, f.traceback, f.created_at)
                for f in session.scalars(query)
            ]

    def explainer_timings(self) -> dict[str, dict[str, Optional[float]]]:
        """Per explainer: mean seconds per map, mean |IG convergence delta| where recorded, and the map count."""
        with self._session() as session:
            rows = session.execute(
                select(Explainer.name, func.avg(Saliency.seconds), func.avg(func.abs(Saliency.delta)), func.count())
                .join(Explainer, Explainer.id == Saliency.explainer_id)
                .group_by(Explainer.name)
            ).all()
        return {name: {"seconds": s, "delta": d, "count": n} for name, s, d, n in rows}

    # -- name lookups --------------------------------------------------------------------------------------------

    def _explainer_id(self, name: str) -> int:
        if self._explainer_ids is None or name not in self._explainer_ids:
            with self._session() as session:
                self._explainer_ids = dict(session.execute(select(Explainer.name, Explainer.id)).all())
        if name not in self._explainer_ids:
            known = ", ".join(self._explainer_ids) or "none"
            raise QueryError(f"unknown explainer {name!r} (this summary has: {known})")
        return self._explainer_ids[name]

    def _metric_id(self, name: str) -> int:
        if self._metric_ids is None or name not in self._metric_ids:
            with self._session() as session:
                self._metric_ids = dict(session.execute(select(Metric.name, Metric.id)).all())
        if name not in self._metric_ids:
            known = ", ".join(self._metric_ids) or "none"
            raise QueryError(f"unknown metric {name!r} (this summary has: {known})")
        return self._metric_ids[name]

    def _check_labels(self, labels: Sequence[int]) -> None:
        known = self.label_names()
        for label in labels:
            if label not in known:
                raise QueryError(f"unknown label {label} (labels are 0..{len(known) - 1})")

    def sample_ids(self) -> list[int]:
        with self._session() as session:
            return list(session.execute(select(Sample.id).order_by(Sample.id)).scalars())

    def sample_names(self) -> dict[int, str]:
        with self._session() as session:
            return dict(session.execute(select(Sample.id, Sample.name)).all())

    def image_data(self, sample_id: int) -> Optional[bytes]:
        """The display image as stored: PNG, or WebP/JPEG for photos (:func:`codec.image_mimetype` tells which);
        None if unknown."""
        with self._session() as session:
            return session.execute(select(Sample.image).where(Sample.id == sample_id)).scalar_one_or_none()

    def image(self, sample_id: int) -> Optional[np.ndarray]:
        """The display image as an HxWx3 uint8 array; None if unknown."""
        data = self.image_data(sample_id)
        return None if data is None else codec.decode_image(data)

    def ground_truth(self, sample_id: int) -> list[int]:
        with self._session() as session:
            return sorted(session.execute(
                select(GroundTruth.label_index).where(GroundTruth.sample_id == sample_id)).scalars())

    def boxes(self, sample_id: int) -> list[BoxView]:
        with self._session() as session:
            rows = session.scalars(select(Box).where(Box.sample_id == sample_id).order_by(Box.id)).all()
            return [BoxView(b.label_index, b.x, b.y, b.width, b.height) for b in rows]

    def masks(self, sample_id: int) -> dict[int, np.ndarray]:
        with self._session() as session:
            rows = session.execute(select(Mask.label_index, Mask.mask_png).where(Mask.sample_id == sample_id)).all()
        return {label: codec.decode_mask(data) for label, data in rows}

    def predictions(self, sample_id: int | None = None, explained_only: bool = False) -> list[PredictionView]:
        """Every label's prediction of one sample or of all samples, ordered by sample then label (only the
        explained labels with ``explained_only``). Unexplained labels have ``type`` None and come from the
        sample's probability vectors (float32)."""
        names = self.label_names()
        query = select(Prediction).order_by(Prediction.sample_id, Prediction.label_index)
        vector_query = select(Probabilities).order_by(Probabilities.sample_id)
        if sample_id is not None:
            query = query.where(Prediction.sample_id == sample_id)
            vector_query = vector_query.where(Probabilities.sample_id == sample_id)
        if explained_only:
            query = query.where(Prediction.type.is_not(None))
        with self._session() as session:
            rows_of: dict[int, list[Prediction]] = defaultdict(list)
            for row in session.scalars(query):
                rows_of[row.sample_id].append(row)
            if explained_only:
                vectors: dict[int, ProbabilityRecord] = {}
            else:
                vectors = {row.sample_id: vectors_of(row) for row in session.scalars(vector_query)}
        return [view for sample in sorted(set(rows_of) | set(vectors))
                for view in merge(sample, rows_of.get(sample, []), vectors.get(sample), names)]

    def probabilities(self, sample_id: int) -> Optional[ProbabilityRecord]:
        """A sample's vectors indexed by label (``probs``, and ``sd``/``lower``/``upper`` with uncertainty; NaN
        where a label has no value) as float32, without the explained rows' float64 values; None if unknown."""
        with self._session() as session:
            row = session.get(Probabilities, sample_id)
            return None if row is None else vectors_of(row)

    # -- saliency ------------------------------------------------------------------------------------------------

    def saliency_record(self, sample_id: int, label_index: int, explainer: str) -> Optional[Saliency]:
        """The stored row of a map (``data`` in ``encoding``, ``height``/``width``, raw ``vmin``/``vmax``,
        ``seconds``, ``delta``), or None."""
        explainer_id = self._explainer_id(explainer)
        with self._session() as session:
            row = session.get(Saliency, (sample_id, label_index, explainer_id))
            if row is not None:
                session.expunge(row)
            return row

    def saliency_map(self, sample_id: int, label_index: int, explainer: str, full_size: bool = False
                     ) -> Optional[np.ndarray]:
        """The relevance map as float32 at the resolution the explainer produced it (e.g. 7 x 7 for Grad-CAM),
        within (max - min) / 65535 / 2 of the values written at the default precision; None if absent.

        ``full_size=True`` gives it at the sample's image size instead, upsampled bilinearly with half-pixel
        centres as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` does
        (:func:`xaiboard.store.arrays.upsample`): the map the benchmarks scored.
        """
        row = self.saliency_record(sample_id, label_index, explainer)
        if row is None:
            return None
        relevance = arrays.decode_map(row.data, row.encoding, row.vmin, row.vmax, row.height, row.width)
        if full_size:
            with self._session() as session:
                size = session.execute(select(Sample.height, Sample.width).where(Sample.id == sample_id)).one()
            relevance = arrays.upsample(relevance, (size[0], size[1]))
        return relevance

    # -- overview ------------------------------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """A JSON-ready description of the summary (``xaiboard info --json``, the server's list rows)."""
        run = self.run()
        return {
            "name": run.name,
            "path": str(self.path),
            "status": run.status,
            "progress": {"done": run.progress_done, "total": run.progress_total},
            "revision": self.revision,
            "created_at": iso(run.created_at),
            "updated_at": iso(run.updated_at),
            "task": run.task,
            "activation": run.activation,
            "threshold": run.threshold,
            "top_k": run.top_k,
            "model_class": run.model_class,
            "num_parameters": run.num_parameters,
            "device": run.device,
            "versions": run.versions,
            "uncertainty": run.uncertainty,
            "error": run.error,
            **self.counts(),
            "explainers": [e.name for e in self.explainers()],
            "metrics": [m.name for m in self.metrics()],
            "labels": [label.name for label in self.labels()],
        }

def iso(moment: Any) -> Optional[str]:
    """A stored (naive UTC) time as ISO 8601 with a ``Z``."""
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"
