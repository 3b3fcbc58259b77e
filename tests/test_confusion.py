"""The confusion of ground truth and top-1 prediction: counts checked against the written data (each sample's
ground truth and the argmax of its probability vector), the matrix cap, the API route and multi-label runs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import imagenet_like
from xaiboard.server import create_app
from xaiboard.server.confusion import confusion
from xaiboard.store import Batch, PredictionRecord, SampleRecord, Summary, SummaryWriter


def write_multi_label(directory):
    """A one-sample multi-label run: two labels predicted at once."""
    writer = SummaryWriter.create(directory, name=directory.name)
    writer.set_labels(["cat", "dog"])
    writer.update_run(task="multi-label", activation="sigmoid", threshold=0.5, progress_total=1)
    writer.write_batch(Batch(samples=[SampleRecord(0, "a.png", np.zeros((4, 4, 3), np.uint8), [0, 1])],
                             predictions=[PredictionRecord(0, 0, 0.9, True, "TP"),
                                          PredictionRecord(0, 1, 0.8, True, "TP")]))
    writer.close("complete")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("confusion")
    imagenet_like.write(root / "imagenet")
    write_multi_label(root / "multi")
    return root


@pytest.fixture(scope="module")
def summary(written):
    with Summary.open(written / "imagenet") as opened:
        yield opened


def expected_counts(summary: Summary) -> Counter:
    """(truth, top-1) per sample, from the sample's ground truth and its probability vector."""
    counts = Counter()
    for sample_id in summary.sample_ids():
        (truth,) = summary.ground_truth(sample_id)
        counts[(truth, int(np.argmax(summary.probabilities(sample_id).probs)))] += 1
    return counts


def test_confusion_matches_the_written_data(summary):
    counts = expected_counts(summary)
    data = confusion(summary, "single-label")
    names = imagenet_like.class_names()
    assert data["available"] and data["task"] == "single-label" and data["message"] is None
    assert data["num_samples"] == 24 and data["num_unmatched"] == 0
    correct = sum(n for (t, p), n in counts.items() if t == p)
    assert data["correct"] == correct and data["accuracy"] == pytest.approx(correct / 24)
    assert correct < 24  # some samples are mistaken for the next class
    truths = Counter()
    for (t, _), n in counts.items():
        truths[t] += n
    assert [d["index"] for d in data["diagonal"]] == sorted(imagenet_like.TRUTH_CLASSES)
    for row in data["diagonal"]:
        assert (row["correct"], row["total"]) == (counts[(row["index"], row["index"])], truths[row["index"]])
        assert row["name"] == names[row["index"]]
    errors = sorted(((t, p, n) for (t, p), n in counts.items() if t != p), key=lambda x: (-x[2], x[0], x[1]))
    assert [(p["truth"], p["predicted"], p["count"]) for p in data["pairs"]] == errors
    assert all(p["truth_name"] == names[p["truth"]] and p["predicted_name"] == names[p["predicted"]]
               for p in data["pairs"])
    for (t, p), _ in counts.items():  # mistakes go to the next class with samples
        if t != p:
            following = imagenet_like.TRUTH_CLASSES[(imagenet_like.TRUTH_CLASSES.index(t) + 1) % 12]
            assert p == following
    matrix = data["matrix"]
    involved = sorted({c for pair in counts for c in pair})
    assert matrix["classes"] == involved and matrix["total_classes"] == len(involved) and matrix["left_out"] == 0
    for i, t in enumerate(matrix["classes"]):
        assert matrix["counts"][i] == [counts[(t, p)] for p in matrix["classes"]]
    assert sum(map(sum, matrix["counts"])) == 24


def test_the_matrix_is_capped_to_the_classes_with_most_samples_and_errors(summary):
    counts = expected_counts(summary)
    data = confusion(summary, "single-label", limit=4)
    matrix = data["matrix"]
    assert len(matrix["classes"]) == 4 and matrix["classes"] == sorted(matrix["classes"])
    weight = Counter()
    for (t, p), n in counts.items():
        weight[t] += n
        if t != p:
            weight[t] += n
            weight[p] += n
    cutoff = min(weight[c] for c in matrix["classes"])
    assert all(weight[c] <= cutoff for c in weight if c not in matrix["classes"])
    shown = set(matrix["classes"])
    assert matrix["left_out"] == sum(n for (t, p), n in counts.items() if t not in shown or p not in shown)
    assert len(data["pairs"]) == data["pairs_total"]  # pairs are not capped by the matrix


def test_api_route_and_multi_label_runs(written):
    client = create_app(written, reload_interval=0).test_client()
    rows = {row["name"]: row["id"] for row in client.get("/api/v1/summaries").get_json()["summaries"]}
    data = client.get(f"/api/v1/summaries/{rows['imagenet']}/confusion?limit=5").get_json()
    assert data["available"] and len(data["matrix"]["classes"]) == 5
    assert client.get(f"/api/v1/summaries/{rows['imagenet']}/confusion?limit=x").status_code == 400
    response = client.get(f"/api/v1/summaries/{rows['multi']}/confusion")
    assert response.status_code == 200
    multi = response.get_json()
    assert multi["available"] is False and multi["task"] == "multi-label"
    assert "not available for multi-label runs" in multi["message"]
    assert "matrix" not in multi
