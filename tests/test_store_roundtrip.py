"""Everything written through SummaryWriter reads back through Summary, maps within 1/65535 of their range."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from conftest import CLASSES, EXPLAINERS, start_summary, synthetic_batch
from xaiboard.store import QueryError, Summary, SummaryError, SummaryWriter


@pytest.fixture
def written(tmp_path):
    directory = tmp_path / "run"
    writer = start_summary(directory, 8)
    writer.register_metric("PointingGame", True, (0.0, 1.0), "macro", {"tolerance": 15})
    batch = synthetic_batch(range(8))
    writer.write_batch(batch)
    writer.close("complete")
    return directory, batch


def test_run_and_labels(written):
    directory, _ = written
    with Summary.open(directory) as summary:
        run = summary.run()
        assert (run.status, run.progress_done, run.progress_total) == ("complete", 8, 8)
        assert (run.task, run.activation, run.threshold, run.model_class, run.num_parameters) == (
            "single-label", "softmax", 0.5, "TinyNet", 123)
        assert run.config == {"batch_size": 4}
        assert [label.name for label in summary.labels()] == CLASSES
        assert [e.name for e in summary.explainers()] == EXPLAINERS
        metrics = {m.name: m for m in summary.metrics()}
        assert metrics["InsertionAUC"].higher_is_better and metrics["InsertionAUC"].range == (0.0, 1.0)
        assert metrics["PointingGame"].aggregation == "macro"
        assert metrics["PointingGame"].config == {"tolerance": 15}


def test_samples_images_boxes_masks(written):
    directory, batch = written
    with Summary.open(directory) as summary:
        for record in batch.samples:
            assert np.array_equal(summary.image(record.id), record.image)
            assert summary.ground_truth(record.id) == list(record.ground_truth)
            (box,) = summary.boxes(record.id)
            assert (box.label_index, box.x, box.y, box.width, box.height) == (record.ground_truth[0], 3, 2, 6, 5)
            masks = summary.masks(record.id)
            assert list(masks) == list(record.masks)
            assert np.array_equal(masks[record.ground_truth[0]], record.masks[record.ground_truth[0]])
        assert summary.image_data(999) is None and summary.image(999) is None and summary.sample(999) is None


def test_predictions(written):
    directory, batch = written
    with Summary.open(directory) as summary:
        stored = summary.predictions()
        assert len(stored) == len(batch.predictions)
        by_key = {(p.sample_id, p.label_index): p for p in batch.predictions}
        for sample_id in range(8):
            for view in summary.predictions(sample_id):
                expected = by_key[(sample_id, view.label_index)]
                assert view.prob == pytest.approx(expected.prob)
                assert (view.ground_truth, view.type) == (expected.ground_truth, expected.type)
                assert (view.sd, view.lower, view.upper) == pytest.approx((expected.sd, expected.lower, expected.upper))


def test_maps_within_precision(written):
    directory, batch = written
    with Summary.open(directory) as summary:
        for record in batch.saliency:
            decoded = summary.saliency_map(record.sample_id, record.label_index, record.explainer)
            span = record.map.max() - record.map.min()
            assert decoded.dtype == np.float32 and decoded.shape == record.map.shape
            assert np.abs(decoded - record.map).max() <= span / 65535 + 1e-6
            row = summary.saliency_record(record.sample_id, record.label_index, record.explainer)
            assert (row.seconds, row.delta) == (record.seconds, record.delta)
            assert (row.height, row.width) == (16, 16) and row.encoding in ("q16", "png16")
            if row.encoding == "png16":
                picture = Image.open(io.BytesIO(row.data))
                assert (picture.format, picture.mode, picture.size) == ("PNG", "I;16", (16, 16)), "a 16-bit PNG"


def test_constant_map_round_trips(tmp_path):
    writer = start_summary(tmp_path / "c", 1)
    batch = synthetic_batch(range(1))
    for record in batch.saliency:
        record.map = np.full((16, 16), 2.5)
    writer.write_batch(batch)
    writer.close("complete")
    with Summary.open(tmp_path / "c") as summary:
        record = batch.saliency[0]
        assert np.all(summary.saliency_map(0, record.label_index, record.explainer) == 2.5)


def test_scores_nan_is_null_and_aggregates(written):
    directory, batch = written
    with Summary.open(directory) as summary:
        rows = summary.scores(metric="InsertionAUC")
        assert len(rows) == len(batch.scores)
        expected = {(s.explainer, s.sample_id, s.label_index): s.value for s in batch.scores}
        for explainer, _metric, sample_id, label, value in rows:
            want = expected[(explainer, sample_id, label)]
            assert (value is None) if math.isnan(want) else value == pytest.approx(want)
        for aggregate in summary.aggregates():
            values = [s.value for s in batch.scores if s.explainer == aggregate.explainer and not math.isnan(s.value)]
            assert aggregate.value == pytest.approx(np.mean(values))
            assert aggregate.count == len(values)
            for per_class in aggregate.per_class:
                class_values = [s.value for s in batch.scores if s.explainer == aggregate.explainer
                                and s.label_index == per_class.label_index and not math.isnan(s.value)]
                assert per_class.count == len(class_values)
                if class_values:
                    assert per_class.mean == pytest.approx(np.mean(class_values))
        values = summary.score_values("Gradient", "InsertionAUC")
        assert np.isfinite(values).all() and len(values) == sum(
            1 for s in batch.scores if s.explainer == "Gradient" and not math.isnan(s.value))


def test_macro_aggregation_is_mean_of_class_means(tmp_path):
    from xaiboard.store import ScoreRecord

    writer = start_summary(tmp_path / "m", 8)
    writer.register_metric("PointingGame", True, (0.0, 1.0), "macro")
    batch = synthetic_batch(range(8))
    batch.scores = [ScoreRecord("Gradient", "PointingGame", i, i % 4, 1.0 if i % 4 == 0 else 0.0) for i in range(8)]
    batch.scores += [ScoreRecord("Gradient", "PointingGame", i, 1, 1.0) for i in (4, 6)]
    writer.write_batch(batch)
    writer.close("complete")
    with Summary.open(tmp_path / "m") as summary:
        (aggregate,) = summary.aggregates()
        # class 0: [1, 1], class 1: [0, 0, 1, 1], classes 2 and 3: [0, 0] -> macro 0.375 (micro would be 0.4)
        assert aggregate.value == pytest.approx(0.375)
        assert aggregate.count == 10


def test_sample_filters_and_sorts(written):
    directory, batch = written
    explained = [p for p in batch.predictions if p.type is not None]
    with Summary.open(directory) as summary:
        page = summary.samples(limit=3)
        assert page.total == 8 and [s.id for s in page.samples] == [0, 1, 2]
        fp = summary.samples(types=["FP"], limit=100)
        assert {s.id for s in fp.samples} == {p.sample_id for p in explained if p.type == "FP"}
        label = summary.samples(labels=[1], types=["TP", "FN"], limit=100)
        assert {s.id for s in label.samples} == {p.sample_id for p in explained if p.label_index == 1 and p.ground_truth}
        by_prob = summary.samples(sort="-prob", limit=100)
        top = {s: max(p.prob for p in explained if p.sample_id == s) for s in range(8)}
        assert [s.id for s in by_prob.samples] == sorted(top, key=lambda s: (-top[s], s))
        assert [s.name for s in summary.samples(sort="-name", limit=100).samples] == sorted(
            (s.name for s in batch.samples), reverse=True)
        by_score = summary.samples(sort="-score:Gradient:InsertionAUC", limit=100).samples
        best = {}
        for s in batch.scores:
            if s.explainer == "Gradient" and not math.isnan(s.value):
                best[s.sample_id] = max(best.get(s.sample_id, -1), s.value)
        assert [s.id for s in by_score][: len(best)] == sorted(best, key=lambda s: (-best[s], s))
        sample = by_prob.samples[0]
        assert all(set(label.explainers) == set(EXPLAINERS) for label in sample.labels)
        assert len(summary.sample(0).labels) == len(CLASSES)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"labels": [9]}, "unknown label 9"),
        ({"types": ["XX"]}, "unknown prediction type"),
        ({"sort": "size"}, "unknown sort key"),
        ({"sort": "score:Nope:InsertionAUC"}, "unknown explainer 'Nope'"),
        ({"sort": "score:Gradient:Nope"}, "unknown metric 'Nope'"),
        ({"offset": -1}, "must not be negative"),
    ],
)
def test_bad_queries_say_what_is_wrong(written, kwargs, message):
    with Summary.open(written[0]) as summary, pytest.raises(QueryError, match=message):
        summary.samples(**kwargs)


def test_create_refuses_existing_summary_unless_overwrite(written):
    directory, _ = written
    with pytest.raises(SummaryError, match="already holds a summary"):
        SummaryWriter.create(directory)
    SummaryWriter.create(directory, overwrite=True).close("complete")
    with Summary.open(directory) as summary:
        assert summary.counts()["num_samples"] == 0


def test_failures_are_recorded(make_summary):
    with Summary.open(make_summary(failures=2)) as summary:
        failures = summary.failures()
        assert [(f.sample_id, f.stage, f.message) for f in failures] == [
            (0, "explainer:GradCAM", "boom"), (1, "explainer:GradCAM", "boom")]
        assert summary.overview()["num_failures"] == 2
