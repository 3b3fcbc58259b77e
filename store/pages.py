"""Pages of samples: the filtered, sorted lists the browser shows and the views of single samples."""

from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Optional

from sqlalchemy import Engine, and_, bindparam, case, func, select
from sqlalchemy.orm import Session

from .errors import QueryError
from .models import PREDICTION_TYPES, Box, Explainer, GroundTruth, Prediction, Probabilities, Sample, Saliency, Score
from .predictions import merge, vectors_of
from .views import BoxView, PredictionView, SamplePage, SampleView

SORT_KEYS = ("prob", "uncertainty", "name", "id")


class SampleQueries:
    """Mixed into :class:`~xaiboard.store.Summary`: needs its engine, sessions, label names and name lookups."""

    engine: Engine

    def _session(self) -> Session:
        raise NotImplementedError

    def label_names(self) -> dict[int, str]:
        raise NotImplementedError

    def _check_labels(self, labels: Sequence[int]) -> None:
        raise NotImplementedError

    def _explainer_id(self, name: str) -> int:
        raise NotImplementedError

    def _metric_id(self, name: str) -> int:
        raise NotImplementedError

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
            vectors = {} if explained_only else {
                row.sample_id: vectors_of(row) for row in session.execute(queries["vectors"], parameters)}
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
        if explained_only:
            for p in predictions:
                labels_of[p.sample_id].append(
                    PredictionView(
                        p.label_index, names.get(p.label_index, str(p.label_index)), p.prob,
                        p.ground_truth or p.label_index in truth_of[p.sample_id], p.type, p.sd, p.lower, p.upper,
                        tuple(explainers_of[(p.sample_id, p.label_index)]), p.sample_id,
                    )
                )
        else:
            rows_of: dict[int, list[Any]] = defaultdict(list)
            for p in predictions:
                rows_of[p.sample_id].append(p)
            mapped: dict[int, dict[int, tuple[str, ...]]] = defaultdict(dict)
            for (sample_id, label_index), explainers in explainers_of.items():
                mapped[sample_id][label_index] = tuple(explainers)
            for sample_id in ids:
                merged = merge(sample_id, rows_of[sample_id], vectors.get(sample_id), names, truth_of[sample_id],
                               mapped[sample_id])
                labels_of[sample_id] = sorted(merged, key=lambda view: (-view.prob, view.label_index))
        boxes_of: dict[int, list[BoxView]] = defaultdict(list)
        for b in boxes:
            boxes_of[b.sample_id].append(BoxView(b.label_index, b.x, b.y, b.width, b.height))
        return [
            SampleView(sample_id, name, width, height, tuple(labels_of[sample_id]), tuple(boxes_of[sample_id]))
            for sample_id, name, width, height in rows
        ]

    def samples_by_id(self, ids: Sequence[int], explained_only: bool = True) -> list[SampleView]:
        """The samples with these ids, in the given order (unknown ids left out), as :meth:`samples` builds them."""
        with self.engine.connect() as connection:
            rows = connection.execute(_samples_by_id_query(), {"ids": list(ids)}).all()
            by_id = {row[0]: row for row in rows}
            return self._sample_views([by_id[i] for i in ids if i in by_id], explained_only, connection)


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
        "vectors": select(Probabilities).where(Probabilities.sample_id.in_(ids)),
        "maps": select(Saliency.sample_id, Saliency.label_index, Explainer.name)
        .join(Explainer, Explainer.id == Saliency.explainer_id)
        .where(Saliency.sample_id.in_(ids))
        .order_by(Explainer.id),
        "boxes": select(Box.sample_id, Box.label_index, Box.x, Box.y, Box.width, Box.height)
        .where(Box.sample_id.in_(ids)).order_by(Box.id),
        "truth": select(GroundTruth.sample_id, GroundTruth.label_index).where(GroundTruth.sample_id.in_(ids)),
    }
