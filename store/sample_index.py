"""How pages of samples are answered: an in-memory index of a summary's explained predictions, maps, ground truth
and boxes, filtered, grouped and sorted with numpy. One grouping query over the whole predictions table per page
and the queries that build a page's samples were most of a request's time on large summaries; the index reads
each column once (the ``*_columns`` queries) and then answers every page without SQL.

:meth:`xaiboard.store.Summary.samples` is this index; the summary rebuilds it when its database file changes.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .errors import QueryError
from .models import PREDICTION_TYPES
from .views import BoxView, PredictionView, SamplePage, SampleView

if TYPE_CHECKING:
    from .summary import Summary

ORDERS_KEPT = 32
_versions = itertools.count()
SORT_HELP = ("use prob, uncertainty, name, id, delta (Integrated Gradients' relative convergence delta) or "
             "score:<explainer>:<metric>, with a leading - for descending")


def _group_max(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sorted ``keys`` and the largest defined value of each (NaN when none is defined), as SQL's
    ``MAX`` ignores NULL. ``keys`` must be sorted."""
    if keys.size == 0:
        return keys, values
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[starts], np.fmax.reduceat(values, starts)


class SampleIndex:
    """Filter and sort the samples of one version of a summary."""

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.version = next(_versions)  # tells apart the indexes of successive versions of one summary
        samples = summary.sample_columns()
        self.ids = samples["id"]
        # Unfiltered pages sort by the highest value over all of a sample's labels (stored with the sample).
        self.max_prob = samples["max_prob"]
        self.max_sd = samples["max_sd"]
        _, self.name_rank = np.unique(samples["name"], return_inverse=True)  # dense: equal names tie
        self.width, self.height, self.names = samples["width"], samples["height"], samples["name"]
        predictions = summary.explained_columns()
        self.p_sample = predictions["sample_id"]
        self.p_label = predictions["label_index"]
        self.p_type = predictions["type"]
        self.p_prob = predictions["prob"]
        self.p_sd = predictions["sd"]
        self.p_truth, self.p_lower, self.p_upper = predictions["ground_truth"], predictions["lower"], predictions["upper"]
        # (sample, label) as one sortable number, to find a score's prediction by binary search
        self.pair_base = max(len(summary.label_names()), int(self.p_label.max(initial=0)) + 1)
        self.p_pair = self.p_sample * self.pair_base + self.p_label
        self.maps = summary.saliency_columns()
        self.truth = summary.ground_truth_columns()
        self.boxes = summary.box_columns()
        self.label_names = summary.label_names()
        self._scores: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        self._deltas: dict[str, np.ndarray] | None = None
        # The ordered ids of the last filters and sorts: paging through one view re-uses its order.
        self._orders: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _score(self, explainer: str, metric: str) -> dict[str, np.ndarray]:
        key = (explainer, metric)
        if key not in self._scores:
            scores = self.summary.score_columns(explainer, metric)  # QueryError when unknown
            scores["pair"] = scores["sample_id"] * self.pair_base + scores["label_index"]
            self._scores[key] = scores
        return self._scores[key]

    def _delta(self) -> dict[str, np.ndarray]:
        if self._deltas is None:
            deltas = self.summary.delta_columns()
            deltas["pair"] = deltas["sample_id"] * self.pair_base + deltas["label_index"]
            self._deltas = deltas
        return self._deltas

    def _matching(self, pairs: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Which (sample, label) ``pairs`` are explained predictions kept by the filter ``mask`` (all explained
        ones when None): both columns are ordered by (sample, label), so a binary search finds each."""
        if not len(self.p_pair):
            return np.zeros(pairs.shape, dtype=bool)
        position = np.clip(np.searchsorted(self.p_pair, pairs), 0, len(self.p_pair) - 1)
        found = self.p_pair[position] == pairs
        return found & mask[position] if mask is not None else found

    def _key_of(self, ids: np.ndarray, per_sample: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Values for ``ids`` from (sorted sample ids, value) pairs; NaN for samples without one."""
        keys, values = per_sample
        position = np.searchsorted(keys, ids)
        position = np.clip(position, 0, max(len(keys) - 1, 0))
        found = keys[position] == ids if len(keys) else np.zeros(len(ids), dtype=bool)
        return np.where(found, values[position] if len(keys) else np.nan, np.nan)

    def query(self, labels: Sequence[int], types: Sequence[str], sort: str, offset: int, limit: int,
              truth: Sequence[int] = (), unconverged: bool = False) -> tuple[int, list[int]]:
        """(total, ids of the page) for the arguments of :meth:`Summary.samples`."""
        known = self.label_names
        for label in [*labels, *truth]:
            if label not in known:
                raise QueryError(f"unknown label {label} (labels are 0..{len(known) - 1})")
        for kind in types:
            if kind not in PREDICTION_TYPES:
                raise QueryError(f"unknown prediction type {kind!r} (types are {', '.join(PREDICTION_TYPES)})")
        if offset < 0 or limit < 0:
            raise QueryError("offset and limit must not be negative")
        key = (tuple(sorted(set(labels))), tuple(sorted(set(types))), sort, tuple(sorted(set(truth))),
               bool(unconverged))
        with self._lock:
            ordered_ids = self._orders.get(key)
            if ordered_ids is not None:
                self._orders.move_to_end(key)
        if ordered_ids is None:
            ordered_ids = self._order(list(key[0]), list(key[1]), sort, bool(unconverged))
            if truth:
                ordered_ids = ordered_ids[np.isin(ordered_ids, self._with_truth(key[3]))]
            with self._lock:
                self._orders[key] = ordered_ids
                while len(self._orders) > ORDERS_KEPT:
                    self._orders.popitem(last=False)
        return len(ordered_ids), [int(i) for i in ordered_ids[offset:offset + limit]]

    def _with_truth(self, truth: Sequence[int]) -> np.ndarray:
        """The samples whose ground truth holds one of ``truth``: from the ground-truth rows and the predictions
        flagged as ground truth, as a sample's view marks them."""
        from_rows = self.truth["sample_id"][_member(self.truth["label_index"], truth)]
        flagged = self.p_sample[self.p_truth & _member(self.p_label, truth)]
        return np.union1d(from_rows, flagged)

    def _order(self, labels: list[int], types: list[str], sort: str, unconverged: bool = False) -> np.ndarray:
        """Every matching sample id in display order; ``unconverged``: only samples with a matching pair whose
        Integrated Gradients missed its explainer's tolerance."""
        descending = sort.startswith("-")
        name = sort[1:] if descending else sort
        filtered = bool(labels or types)
        if filtered:
            mask = np.ones(self.p_sample.shape, dtype=bool)
            if labels:
                mask &= _member(self.p_label, labels)
            if types:
                mask &= _member(self.p_type, [PREDICTION_TYPES.index(t) for t in types])
            matched = self.p_sample[mask]
            candidates, probs = _group_max(matched, self.p_prob[mask])
            _, sds = _group_max(matched, self.p_sd[mask])
        else:
            mask = None
            candidates, probs, sds = self.ids, self.max_prob, self.max_sd
        if unconverged:
            deltas = self._delta()
            over = deltas["over"] & self._matching(deltas["pair"], mask)
            keep = np.isin(candidates, deltas["sample_id"][over])
            candidates, probs, sds = candidates[keep], probs[keep], sds[keep]

        if name == "prob":
            key = probs
        elif name == "uncertainty":
            key = sds
        elif name == "id":
            key = candidates.astype(np.float64)
        elif name == "name":
            key = self.name_rank[np.searchsorted(self.ids, candidates)].astype(np.float64)
        elif name == "delta" or (name.startswith("score:") and name.count(":") == 2):
            if name == "delta":  # the worst relative delta over the matching pairs and Integrated Gradients
                values = self._delta()
            else:
                _, explainer, metric = name.split(":")
                values = self._score(explainer, metric)
            keep = self._matching(values["pair"], mask) if filtered else np.ones(values["pair"].shape, dtype=bool)
            key = self._key_of(candidates, _group_max(values["sample_id"][keep], values["value"][keep]))
        else:
            raise QueryError(f"unknown sort key {sort!r} ({SORT_HELP})")
        missing = np.isnan(key)
        ordered = np.where(missing, 0.0, -key if descending else key)
        return candidates[np.lexsort((candidates, ordered, missing))]

    def page(self, labels: Sequence[int], types: Sequence[str], sort: str, offset: int, limit: int,
             truth: Sequence[int] = (), unconverged: bool = False) -> SamplePage:
        """The page :meth:`Summary.samples` returns."""
        total, ids = self.query(list(labels), list(types), sort, offset, limit, list(truth), unconverged)
        return SamplePage(total, self.views(ids))

    def views(self, ids: Sequence[int]) -> list[SampleView]:
        """The samples as :meth:`Summary.samples` shows them: explained labels by probability, highest first, each
        with the explainers that have a map for it; boxes in the order written. Gathers a page's rows with a few
        array operations and converts them to Python values once."""
        if not len(ids):
            return []
        wanted = np.asarray(ids, dtype=np.int64)
        rows = np.searchsorted(self.ids, wanted).tolist()
        p = _gather(self.p_sample, wanted)
        labels = self.p_label[p.index].tolist()
        probs = self.p_prob[p.index].tolist()
        truths = self.p_truth[p.index].tolist()
        types = self.p_type[p.index].tolist()
        sds, lowers, uppers = (_python(a[p.index]) for a in (self.p_sd, self.p_lower, self.p_upper))
        m = _gather(self.maps["sample_id"], wanted)
        map_labels, map_names = self.maps["label_index"][m.index].tolist(), self.maps["explainer"][m.index].tolist()
        t = _gather(self.truth["sample_id"], wanted)
        truth_labels = self.truth["label_index"][t.index].tolist()
        b = _gather(self.boxes["sample_id"], wanted)
        box_columns = [self.boxes[key][b.index].tolist() for key in ("label_index", "x", "y", "width", "height")]
        views = []
        for k, sample_id in enumerate(ids):
            truth = set(truth_labels[t.starts[k]:t.stops[k]])
            explainers: dict[int, list[str]] = {}
            for j in range(m.starts[k], m.stops[k]):
                explainers.setdefault(map_labels[j], []).append(map_names[j])
            predictions = []
            for j in sorted(range(p.starts[k], p.stops[k]), key=lambda j: -probs[j]):
                label = labels[j]
                predictions.append(PredictionView(
                    label, self.label_names.get(label, str(label)), probs[j], truths[j] or label in truth,
                    PREDICTION_TYPES[types[j]], sds[j], lowers[j], uppers[j], tuple(explainers.get(label, ())),
                    int(sample_id),
                ))
            boxes = tuple(BoxView(*(column[j] for column in box_columns)) for j in range(b.starts[k], b.stops[k]))
            row = rows[k]
            views.append(SampleView(int(sample_id), self.names[row], int(self.width[row]), int(self.height[row]),
                                    tuple(predictions), boxes))
        return views


def _member(values: np.ndarray, wanted: Sequence[int]) -> np.ndarray:
    """``np.isin`` for small non-negative codes (labels, types) by a lookup table: no sort of the column."""
    table = np.zeros(int(max(values.max(initial=0), max(wanted, default=0))) + 1, dtype=bool)
    table[np.asarray(wanted, dtype=np.int64)] = True
    return table[values]


class _Gathered:
    """For each wanted id, where its rows run in the gathered ``index`` (``starts[k]:stops[k]``)."""

    def __init__(self, index: np.ndarray, starts: list[int], stops: list[int]) -> None:
        self.index, self.starts, self.stops = index, starts, stops


def _gather(sorted_ids: np.ndarray, wanted: np.ndarray) -> _Gathered:
    """The rows of a sorted id column that belong to ``wanted`` ids, grouped per id in the order of ``wanted``."""
    lo = np.searchsorted(sorted_ids, wanted, "left")
    hi = np.searchsorted(sorted_ids, wanted, "right")
    counts = hi - lo
    stops = np.cumsum(counts)
    starts = stops - counts
    index = np.repeat(lo - starts, counts) + np.arange(int(stops[-1]) if len(stops) else 0)
    return _Gathered(index, starts.tolist(), stops.tolist())


def _python(values: np.ndarray) -> list:
    """Floats with None where NaN (NULL in the database)."""
    return [None if v != v else v for v in values.tolist()]
