"""The reader of a summary directory: ``Summary.open(path)`` and typed queries for the server, the CLI and tests."""

from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext
from functools import lru_cache
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from sqlalchemy import Engine, and_, bindparam, case, func, select
from sqlalchemy.orm import Session

from . import codec
from .database import open_readonly, writable_engine, db_path, current_revision, check_revision
from .errors import NotASummaryError
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
    Run,
    Sample,
    Saliency,
    Score,
)
from .views import (
    Aggregate,
    BoxView,
    ClassAggregate,
    ExplainerView,
    FailureView,
    LabelView,
    MetricView,
    PredictionView,
    RunView,
    SamplePage,
    SampleView,
)

SORT_KEYS = ("prob", "uncertainty", "name", "id")


class QueryError(ValueError):
    """A query parameter names something the summary does not have (a label, type, explainer or sort key)."""


class Summary:
    """An opened summary directory. Read-only by default; cheap to keep open (one small connection pool)."""

    def __init__(self, path: Path, engine: Engine, revision: str) -> None:
        self.path = path
        self.engine = engine
        self.revision = revision
        self._labels: Optional[list[LabelView]] = None
        self._explainer_ids: Optional[dict[str, int]] = None
        self._metric_ids: Optional[dict[str, int]] = None

    @classmethod
    def open(cls, path: str | Path, readonly: bool = True) -> "Summary":
        """Open a summary directory. Raises a :class:`~xaiboard.store.SummaryError` with a one-line reason when the
        directory is not a readable summary at this xaiboard's schema revision."""
        path = Path(path)
        if readonly:
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
        """How many rows of each kind the summary holds."""
        with self._session() as session:
            def count(model: Any) -> int:
                return session.execute(select(func.count()).select_from(model)).scalar_one()

            return {
                "num_samples": count(Sample),
                "num_predictions": count(Prediction),
                "num_saliency_maps": count(Saliency),
                "num_scores": count(Score),
                "num_failures": count(Failure),
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

    # -- samples -------------------------------------------------------------------------------------------------

    def samples(
        self,
        labels: Sequence[int] | None = None,
        types: Sequence[str] | None = None,
        sort: str = "id",
        offset: int = 0,
        limit: int = 50,
    ) -> SamplePage:
        """A page of samples whose explained labels match the filters, sorted.

        A sample matches when one of its explained labels is in ``labels`` (if given) with a type in ``types`` (if
        given). Sort keys: ``prob``, ``uncertainty`` (the highest over the matching labels), ``name``, ``id`` and
        ``score:<explainer>:<metric>`` (the highest score over the matching labels; samples without one come last);
        a leading ``-`` sorts descending.
        """
        labels = list(labels or [])
        types = list(types or [])
        self._check_labels(labels)
        for kind in types:
            if kind not in PREDICTION_TYPES:
                raise QueryError(f"unknown prediction type {kind!r} (types are {', '.join(PREDICTION_TYPES)})")
        if offset < 0 or limit < 0:
            raise QueryError("offset and limit must not be negative")
        descending = sort.startswith("-")
        key_name = sort[1:] if descending else sort

        conditions = [Prediction.type.is_not(None)]
        if labels:
            conditions.append(Prediction.label_index.in_(labels))
        if types:
            conditions.append(Prediction.type.in_(types))
        filtered = bool(labels or types)

        query = select(Sample.id, Sample.name, Sample.width, Sample.height)
        if filtered:
            matching = (
                select(
                    Prediction.sample_id.label("sample_id"),
                    func.max(Prediction.prob).label("prob"),
                    func.max(Prediction.sd).label("sd"),
                )
                .where(*conditions)
                .group_by(Prediction.sample_id)
                .subquery()
            )
            query = query.join(matching, matching.c.sample_id == Sample.id)
            prob_key, sd_key = matching.c.prob, matching.c.sd
        else:
            prob_key, sd_key = Sample.max_prob, Sample.max_sd
        count_query = select(func.count()).select_from(query.subquery())

        if key_name == "prob":
            key = prob_key
        elif key_name == "uncertainty":
            key = sd_key
        elif key_name == "name":
            key = Sample.name
        elif key_name == "id":
            key = Sample.id
        elif key_name.startswith("score:") and key_name.count(":") == 2:
            _, explainer, metric = key_name.split(":")
            scores = select(Score.sample_id.label("sample_id"), func.max(Score.value).label("value")).where(
                Score.explainer_id == self._explainer_id(explainer), Score.metric_id == self._metric_id(metric)
            )
            if filtered:
                scores = scores.join(
                    Prediction,
                    and_(Prediction.sample_id == Score.sample_id, Prediction.label_index == Score.label_index),
                ).where(*conditions)
            score_table = scores.group_by(Score.sample_id).subquery()
            query = query.outerjoin(score_table, score_table.c.sample_id == Sample.id)
            key = score_table.c.value
        else:
            raise QueryError(
                f"unknown sort key {sort!r} (use prob, uncertainty, name, id or score:<explainer>:<metric>,"
                " with a leading - for descending)"
            )
        order = [case((key.is_(None), 1), else_=0), key.desc() if descending else key.asc(), Sample.id]
        page = query.order_by(*order).offset(offset).limit(limit)
        with self._session() as session:
            total = session.execute(count_query).scalar_one()
            rows = session.execute(page).all()
        return SamplePage(total, self._sample_views(rows, explained_only=True))

    def sample(self, sample_id: int) -> Optional[SampleView]:
        """One sample with every label (explained or not), its boxes and which maps exist; None if unknown."""
        with self._session() as session:
            rows = session.execute(
                select(Sample.id, Sample.name, Sample.width, Sample.height).where(Sample.id == sample_id)
            ).all()
        views = self._sample_views(rows, explained_only=False)
        return views[0] if views else None

    def _sample_views(self, rows: Sequence[Any], explained_only: bool, connection: Any = None) -> list[SampleView]:
        ids = [row[0] for row in rows]
        if not ids:
            return []
        names = self.label_names()
        queries = _view_queries()
        parameters = {"ids": ids}
        # Plain Core execution on one connection of statements built once: without the ORM session's and the
        # statement construction's per-query cost, which dominated pages of samples.
        with self.engine.connect() if connection is None else nullcontext(connection) as session:
            predictions = session.execute(
                queries["explained" if explained_only else "predictions"], parameters).all()
            maps = session.execute(queries["maps"], parameters).all()
            boxes = session.execute(queries["boxes"], parameters).all()
            truth = session.execute(queries["truth"], parameters).all()
        explainers_of: dict[tuple[int, int], list[str]] = defaultdict(list)
        for sample_id, label_index, explainer in maps:
            explainers_of[(sample_id, label_index)].append(explainer)
        truth_of = defaultdict(set)
        for sample_id, label_index in truth:
            truth_of[sample_id].add(label_index)
        labels_of: dict[int, list[PredictionView]] = defaultdict(list)
        for p in predictions:
            labels_of[p.sample_id].append(
                PredictionView(
                    p.label_index, names.get(p.label_index, str(p.label_index)), p.prob,
                    p.ground_truth or p.label_index in truth_of[p.sample_id], p.type, p.sd, p.lower, p.upper,
                    tuple(explainers_of[(p.sample_id, p.label_index)]),
                )
            )
        boxes_of: dict[int, list[BoxView]] = defaultdict(list)
        for b in boxes:
            boxes_of[b.sample_id].append(BoxView(b.label_index, b.x, b.y, b.width, b.height))
        return [
            SampleView(sample_id, name, width, height, tuple(labels_of[sample_id]), tuple(boxes_of[sample_id]))
            for sample_id, name, width, height in rows
        ]

    def sample_ids(self) -> list[int]:
        with self._session() as session:
            return list(session.execute(select(Sample.id).order_by(Sample.id)).scalars())

    def sample_names(self) -> dict[int, str]:
        with self._session() as session:
            return dict(session.execute(select(Sample.id, Sample.name)).all())

    def image_png(self, sample_id: int, thumbnail: bool = False) -> Optional[bytes]:
        """The display image as PNG (a thumbnail when asked and the image is large); None if unknown."""
        with self._session() as session:
            row = session.execute(
                select(Sample.image_png, Sample.thumbnail_png).where(Sample.id == sample_id)
            ).first()
        if row is None:
            return None
        return row[1] if thumbnail and row[1] is not None else row[0]

    def image(self, sample_id: int) -> Optional[np.ndarray]:
        data = self.image_png(sample_id)
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
        """Predictions of one sample or of all samples, ordered by sample then label."""
        names = self.label_names()
        query = select(Prediction).order_by(Prediction.sample_id, Prediction.label_index)
        if sample_id is not None:
            query = query.where(Prediction.sample_id == sample_id)
        if explained_only:
            query = query.where(Prediction.type.is_not(None))
        with self._session() as session:
            return [
                PredictionView(p.label_index, names.get(p.label_index, str(p.label_index)), p.prob, p.ground_truth,
                               p.type, p.sd, p.lower, p.upper)
                for p in session.scalars(query)
            ]

    # -- saliency ------------------------------------------------------------------------------------------------

    def saliency_record(self, sample_id: int, label_index: int, explainer: str) -> Optional[Saliency]:
        """The stored row of a map (PNG, raw min/max, seconds, delta), or None."""
        explainer_id = self._explainer_id(explainer)
        with self._session() as session:
            row = session.get(Saliency, (sample_id, label_index, explainer_id))
            if row is not None:
                session.expunge(row)
            return row

    def saliency_map(self, sample_id: int, label_index: int, explainer: str) -> Optional[np.ndarray]:
        """The relevance map as float32 HxW, within (max - min) / 65535 of the values written; None if absent."""
        row = self.saliency_record(sample_id, label_index, explainer)
        return None if row is None else codec.decode_map(row.map_png, row.vmin, row.vmax)

    # -- scores --------------------------------------------------------------------------------------------------

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

    # -- columns for in-memory indexes ---------------------------------------------------------------------------

    def samples_by_id(self, ids: Sequence[int], explained_only: bool = True) -> list[SampleView]:
        """The samples with these ids, in the given order (unknown ids left out), as :meth:`samples` builds them."""
        with self.engine.connect() as connection:
            rows = connection.execute(_samples_by_id_query(), {"ids": list(ids)}).all()
            by_id = {row[0]: row for row in rows}
            return self._sample_views([by_id[i] for i in ids if i in by_id], explained_only, connection)

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


@lru_cache(maxsize=1)
def _samples_by_id_query() -> Any:
    return select(Sample.id, Sample.name, Sample.width, Sample.height).where(
        Sample.id.in_(bindparam("ids", expanding=True)))


@lru_cache(maxsize=1)
def _view_queries() -> dict[str, Any]:
    """The statements :meth:`Summary._sample_views` runs, built once, with the sample ids as one expanding
    parameter ``ids``."""
    ids = bindparam("ids", expanding=True)
    predictions = select(
        Prediction.sample_id, Prediction.label_index, Prediction.prob, Prediction.ground_truth, Prediction.type,
        Prediction.sd, Prediction.lower, Prediction.upper,
    ).where(Prediction.sample_id.in_(ids))
    order = (Prediction.sample_id, Prediction.prob.desc())
    return {
        "predictions": predictions.order_by(*order),
        "explained": predictions.where(Prediction.type.is_not(None)).order_by(*order),
        "maps": select(Saliency.sample_id, Saliency.label_index, Explainer.name)
        .join(Explainer, Explainer.id == Saliency.explainer_id)
        .where(Saliency.sample_id.in_(ids))
        .order_by(Explainer.id),
        "boxes": select(Box.sample_id, Box.label_index, Box.x, Box.y, Box.width, Box.height)
        .where(Box.sample_id.in_(ids)).order_by(Box.id),
        "truth": select(GroundTruth.sample_id, GroundTruth.label_index).where(GroundTruth.sample_id.in_(ids)),
    }


def iso(moment: Any) -> Optional[str]:
    """A stored (naive UTC) time as ISO 8601 with a ``Z``."""
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"
