"""Pages of samples (``Summary.samples``, answered by the store's sample index) against a plain-Python reading of
what was written: which samples match the label, type and ground-truth filters, in which order, and that a live
summary's pages follow its writes."""

from __future__ import annotations

import itertools
import math

import pytest

from test_server_registry import CLASSES, Written, write_base_dir, write_summary
from xaiboard.store import Batch, PredictionRecord, QueryError, SampleRecord, Summary

SORTS = ["id", "-id", "prob", "-prob", "uncertainty", "-uncertainty", "name", "-name", "score:GradCAM:InsertionAUC",
         "-score:GradCAM:InsertionAUC", "score:Gradient:DeletionAUC", "-score:Gradient:DeletionAUC",
         "score:Gradient:PointingGame", "-score:GradCAM:MaxSensitivity"]
FILTERS = [((), (), ()), ((1,), (), ()), ((), ("FP",), ()), ((0, 3), ("FN", "TN"), ()), ((2,), ("TP",), ()),
           ((4,), ("TN",), ()), ((), ("TP", "FN", "FP", "TN"), ()), ((1, 2, 3), (), ()), ((), (), (2,)),
           ((3,), ("FP",), (2,)), ((), ("TP",), (0, 4))]


def expected_ids(written: Written, labels, types, truth, sort: str) -> list[int]:
    """The order the page must show, computed from the written rows one sample at a time: by the highest value
    over the matching labels, or over all labels when nothing filters."""
    descending = sort.startswith("-")
    key_name = sort.lstrip("-")
    keyed = []
    for sample_id in sorted(written.names):
        matching = [label for (s, label), kind in written.types.items() if s == sample_id
                    and (not labels or label in labels) and (not types or kind in types)]
        if not matching or (truth and sample_id % len(CLASSES) not in truth):
            continue
        filtered = bool(labels or types)
        every = [label for (s, label) in written.probs if s == sample_id]  # unfiltered: over all labels
        if key_name == "id":
            key = float(sample_id)
        elif key_name == "name":
            key = float(sorted(written.names.values()).index(written.names[sample_id]))
        elif key_name == "prob":
            key = max(written.probs[(sample_id, label)] for label in (matching if filtered else every))
        elif key_name == "uncertainty":
            values = [written.sd[(sample_id, label)] for label in (matching if filtered else every)
                      if (sample_id, label) in written.sd]
            key = max(values) if values else math.nan
        else:
            _, explainer, metric = key_name.split(":")
            values = [written.scores[(explainer, metric, sample_id, label)] for label in matching
                      if (explainer, metric, sample_id, label) in written.scores]
            key = max(values) if values else math.nan
        keyed.append((math.isnan(key), 0.0 if math.isnan(key) else (-key if descending else key), sample_id))
    return [sample_id for _, _, sample_id in sorted(keyed)]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    data = write_base_dir(tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("outside"), n=37)
    yield data
    data.live_writer.close("interrupted")


@pytest.mark.parametrize("name", ["run_a", "run_b", "live"])
def test_pages_match_what_was_written(base, name):
    written = getattr(base, name)
    with Summary.open(written.directory) as summary:
        sorts = [s for s in SORTS if "GradCAM" not in s or "GradCAM" in written.explainers]
        for (labels, types, truth), sort in itertools.product(FILTERS, sorts):
            expected = expected_ids(written, labels, types, truth, sort)
            page = summary.samples(labels, types, sort, 0, 200, truth)
            assert page.total == len(expected), (labels, types, truth, sort)
            assert [s.id for s in page.samples] == expected, (labels, types, truth, sort)
            assert [s.id for s in summary.samples(labels, types, sort, 5, 7, truth).samples] == expected[5:12]


def test_a_page_lists_each_samples_explained_labels_by_probability(base):
    with Summary.open(base.run_a.directory) as summary:
        for sample in summary.samples(limit=200).samples:
            explained = {label: kind for (s, label), kind in base.run_a.types.items() if s == sample.id}
            assert {label.label_index: label.type for label in sample.labels} == explained
            probs = [label.prob for label in sample.labels]
            assert probs == sorted(probs, reverse=True)
            for label in sample.labels:
                assert label.explainers == tuple(base.run_a.explainers)
                assert label.ground_truth == (label.label_index == sample.id % len(CLASSES))
            assert [b.label_index for b in sample.boxes] == [sample.id % len(CLASSES)]


def test_bad_queries_are_refused_with_a_reason(base):
    with Summary.open(base.run_a.directory) as summary:
        for args, message in ((([99], [], "id"), "unknown label 99"), (([], ["XX"], "id"), "unknown prediction type"),
                              (([], [], "bogus"), "unknown sort key"), (([], [], "score:Nope:InsertionAUC"), "Nope"),
                              (([], [], "score:Gradient:Nope"), "Nope"), (([], [], "score:Gradient"), "sort key")):
            with pytest.raises(QueryError, match=message):
                summary.samples(*args)
        with pytest.raises(QueryError, match="unknown label 77"):
            summary.samples(truth=[77])
        with pytest.raises(QueryError, match="negative"):
            summary.samples(offset=-1)


def test_a_live_summary_pages_what_was_written_since_it_was_opened(tmp_path):
    written, writer = write_summary(tmp_path / "live", 5, ["Gradient"], uncertainty=False, seed=7, close=False)
    with Summary.open(written.directory) as summary:
        assert summary.samples(limit=100).total == 5
        batch = Batch()
        batch.samples.append(SampleRecord(5, "late.png", written.images[0], [1]))
        batch.predictions.append(PredictionRecord(5, 1, 0.99, True, "TP"))
        writer.write_batch(batch)
        page = summary.samples(sort="-prob", limit=100)
        assert page.total == 6 and page.samples[0].name == "late.png"
        assert [s.id for s in summary.samples(truth=[1], limit=100).samples] == [1, 5]
    writer.close("complete")
