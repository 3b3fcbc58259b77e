"""Pages of samples: the filtered, sorted lists the browser shows (answered by the sample index) and the full
view of one sample."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import Engine, bindparam, select

from .database import file_signature
from .models import Box, Explainer, GroundTruth, Prediction, Probabilities, Sample, Saliency
from .predictions import merge, vectors_of
from .sample_index import SampleIndex
from .views import BoxView, SamplePage, SampleView

SORT_KEYS = ("prob", "uncertainty", "name", "id", "delta")


class SampleQueries:
    """Mixed into :class:`~xaiboard.store.Summary`: needs its path, engine and label names."""

    path: Path
    engine: Engine
    _index: Optional[tuple[Any, SampleIndex]]
    _index_lock: threading.Lock

    def label_names(self) -> dict[int, str]:
        raise NotImplementedError

    def samples(
        self,
        labels: Sequence[int] | None = None,
        types: Sequence[str] | None = None,
        sort: str = "id",
        offset: int = 0,
        limit: int = 50,
        truth: Sequence[int] | None = None,
        unconverged: bool = False,
    ) -> SamplePage:
        """A page of samples whose explained labels match the filters, sorted.

        A sample matches when one of its explained labels is in ``labels`` (if given) with a type in ``types`` (if
        given), and its ground truth holds one of ``truth`` (if given); ``unconverged`` keeps only samples with a
        matching label whose Integrated Gradients' relative delta exceeds its explainer's tolerance. Sort keys:
        ``prob``, ``uncertainty`` (the highest over the matching labels), ``name``, ``id``, ``delta`` (the worst
        relative convergence delta over the matching labels and Integrated Gradients explainers) and
        ``score:<explainer>:<metric>`` (the highest score over the matching labels); samples without a value
        come last; a leading ``-`` sorts descending. Each sample lists its explained labels by probability,
        highest first.
        """
        return self.sample_index().page(list(labels or []), list(types or []), sort, offset, limit,
                                        list(truth or []), unconverged)

    def sample_index(self) -> SampleIndex:
        """The index that answers :meth:`samples` for the database as it is now: built on first use and again
        after the file changed (a live run), so each version's columns are read once."""
        signature = file_signature(self.path)
        with self._index_lock:
            if self._index is None or self._index[0] != signature:
                self._index = (signature, SampleIndex(self))  # type: ignore[arg-type]
            return self._index[1]

    def sample(self, sample_id: int) -> Optional[SampleView]:
        """One sample with every label (explained or not, highest probability first), its boxes and which maps
        exist; None if unknown."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(Sample.id, Sample.name, Sample.width, Sample.height).where(Sample.id == sample_id)).first()
            if row is None:
                return None
            queries = _view_queries()
            parameters = {"id": sample_id}
            predictions = connection.execute(queries["predictions"], parameters).all()
            vector = connection.execute(queries["vectors"], parameters).first()
            maps = connection.execute(queries["maps"], parameters).all()
            boxes = connection.execute(queries["boxes"], parameters).all()
            truth = {label for (label,) in connection.execute(queries["truth"], parameters)}
        mapped: dict[int, list[str]] = defaultdict(list)
        for label_index, explainer in maps:
            mapped[label_index].append(explainer)
        merged = merge(sample_id, predictions, vectors_of(vector) if vector is not None else None,
                       self.label_names(), truth, {label: tuple(names) for label, names in mapped.items()})
        labels = sorted(merged, key=lambda view: (-view.prob, view.label_index))
        return SampleView(row.id, row.name, row.width, row.height, tuple(labels),
                          tuple(BoxView(b.label_index, b.x, b.y, b.width, b.height) for b in boxes))


@lru_cache(maxsize=1)
def _view_queries() -> dict[str, Any]:
    """The statements :meth:`Summary.sample` runs, built once, with the sample's id as the parameter ``id``."""
    sample = bindparam("id")
    return {
        "predictions": select(
            Prediction.sample_id, Prediction.label_index, Prediction.prob, Prediction.ground_truth, Prediction.type,
            Prediction.sd, Prediction.lower, Prediction.upper,
        ).where(Prediction.sample_id == sample).order_by(Prediction.prob.desc()),
        "vectors": select(Probabilities).where(Probabilities.sample_id == sample),
        "maps": select(Saliency.label_index, Explainer.name)
        .join(Explainer, Explainer.id == Saliency.explainer_id)
        .where(Saliency.sample_id == sample)
        .order_by(Explainer.id),
        "boxes": select(Box.label_index, Box.x, Box.y, Box.width, Box.height)
        .where(Box.sample_id == sample).order_by(Box.id),
        "truth": select(GroundTruth.label_index).where(GroundTruth.sample_id == sample),
    }
