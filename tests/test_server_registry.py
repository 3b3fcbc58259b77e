"""The server's registry over a base directory, and the synthetic base directory the server tests share.

``write_base_dir`` writes, through the store API, what a team's run folder looks like: two finished runs over the
same samples (one with uncertainty), a run still being written, a corrupt database and a symlink leading out of the
base directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from xaiboard.server.registry import Registry, file_signature, summary_id
from xaiboard.store import (
    Batch,
    BoxRecord,
    FailureRecord,
    PredictionRecord,
    SaliencyRecord,
    SampleRecord,
    ScoreRecord,
    SummaryWriter,
)

CLASSES = ["circle", "square", "triangle", "<b>cross</b>", "ring"]
METRICS = [  # name, higher is better, range, aggregation
    ("InsertionAUC", True, (0.0, 1.0), "mean"),
    ("DeletionAUC", False, (0.0, 1.0), "mean"),
    ("PointingGame", True, (0.0, 1.0), "macro"),
    ("MaxSensitivity", False, (0.0, None), "mean"),
]
SIZE = 24
OUTSIDE_NAME = "RUN-OUTSIDE-THE-BASE-DIR"


@dataclass
class Written:
    """What was written into one summary, to check what the server shows against."""

    directory: Path
    explainers: list[str]
    types: dict[tuple[int, int], str] = field(default_factory=dict)  # (sample, label) -> TP/FN/FP/TN
    probs: dict[tuple[int, int], float] = field(default_factory=dict)
    sd: dict[tuple[int, int], float] = field(default_factory=dict)
    scores: dict[tuple[str, str, int, int], float] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    maps: dict[tuple[int, int, str], np.ndarray] = field(default_factory=dict)
    images: dict[int, np.ndarray] = field(default_factory=dict)


def draw(kind: int, rng: np.random.Generator, size: int = SIZE) -> tuple[np.ndarray, tuple[int, int]]:
    """A light image with a dark shape of class ``kind`` at a random place; returns it and the shape's centre."""
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = (int(v) for v in rng.integers(7, size - 7, 2))
    dist = np.hypot(yy - cy, xx - cx)
    shape = [dist < 5, (abs(yy - cy) < 5) & (abs(xx - cx) < 5), (yy - cy > -5) & (abs(xx - cx) < (yy - cy + 5) / 2) & (yy - cy < 5),
             (abs(yy - cy) < 2) & (abs(xx - cx) < 6) | (abs(xx - cx) < 2) & (abs(yy - cy) < 6),
             (dist < 6) & (dist > 3)][kind % 5]
    image = np.full((size, size, 3), 235, dtype=np.float64) + rng.normal(0, 6, (size, size, 3))
    colour = np.array([[40, 70, 160], [160, 60, 40], [40, 130, 60], [120, 40, 140], [30, 30, 30]][kind % 5])
    image[shape] = colour
    return np.clip(image, 0, 255).astype(np.uint8), (cy, cx)


def write_summary(directory: Path, n: int, explainers: list[str], uncertainty: bool, seed: int,
                  close: bool = True, total: int | None = None, name: str | None = None
                  ) -> tuple[Written, SummaryWriter]:
    """A summary with ``n`` samples written in batches of 8; predictions of every type, maps, scores, boxes."""
    rng = np.random.default_rng(seed)
    written = Written(directory, explainers)
    writer = SummaryWriter.create(directory, name=name or directory.name)
    writer.set_labels(CLASSES)
    for explainer in explainers:
        writer.register_explainer(explainer, {"class": explainer, "steps": 8})
    for name, higher, value_range, aggregation in METRICS:
        writer.register_metric(name, higher, value_range, aggregation, {"note": name})
    writer.update_run(task="single-label", activation="softmax", threshold=0.5, top_k=2, progress_total=total or n,
                      image_height=SIZE, image_width=SIZE, model_class="TinyNet", num_parameters=4242, device="cpu",
                      uncertainty={"method": "mc-dropout", "samples": 10} if uncertainty else None,
                      config={"batch_size": 8, "seed": seed})
    img_rng = np.random.default_rng(1234)  # same images in every summary: the runs share their samples
    for start in range(0, n, 8):
        batch = Batch()
        for sample_id in range(start, min(start + 8, n)):
            truth = sample_id % len(CLASSES)
            image, (cy, cx) = draw(truth, img_rng)
            name = f"shape_{sample_id:03d}.png"
            written.names[sample_id] = name
            written.images[sample_id] = image
            batch.samples.append(SampleRecord(sample_id, name, image, [truth], [BoxRecord(truth, cx - 5, cy - 5, 10, 10)]))
            wrong = sample_id % 4 == 1
            predicted = (truth + 1) % len(CLASSES) if wrong else truth
            extra = (truth + 2) % len(CLASSES) if sample_id % 4 == 2 else None
            ranked = np.sort(rng.dirichlet(np.ones(len(CLASSES)) * 0.3))[::-1]  # the predicted label ranks first
            others = [k for k in rng.permutation(len(CLASSES)) if k != predicted]
            p = np.empty(len(CLASSES))
            p[[predicted, *others]] = ranked
            for label in range(len(CLASSES)):
                is_truth, is_pred = label == truth, label == predicted
                kind = {(True, True): "TP", (True, False): "FN", (False, True): "FP"}.get((is_truth, is_pred))
                if kind is None and label == extra:
                    kind = "TN"
                sd = float(rng.uniform(0.01, 0.2)) if uncertainty else None
                batch.predictions.append(PredictionRecord(
                    sample_id, label, float(p[label]), is_truth, kind, sd,
                    max(0.0, p[label] - 2 * sd) if sd else None, min(1.0, p[label] + 2 * sd) if sd else None))
                written.probs[(sample_id, label)] = float(p[label])
                if sd is not None:
                    written.sd[(sample_id, label)] = sd
                if kind is None:
                    continue
                written.types[(sample_id, label)] = kind
                yy, xx = np.mgrid[0:SIZE, 0:SIZE]
                for e, explainer in enumerate(explainers):
                    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (3 + e) ** 2))
                    relevance = blob - 0.3 * np.roll(blob, 7, axis=1) + rng.normal(0, 0.02, blob.shape)
                    written.maps[(sample_id, label, explainer)] = relevance
                    batch.saliency.append(SaliencyRecord(sample_id, label, explainer, relevance, seconds=0.01 * (e + 1)))
                    for metric, higher, _, _ in METRICS:
                        value = float(rng.uniform(0.1, 0.9)) + 0.05 * e
                        if metric == "PointingGame":
                            value = float(sample_id % 3 != 0)
                        if metric == "DeletionAUC" and sample_id % 7 == 3:
                            value = float("nan")
                        batch.scores.append(ScoreRecord(explainer, metric, sample_id, label, value,
                                                        seconds=0.001 * (e + 1)))
                        if value == value:
                            written.scores[(explainer, metric, sample_id, label)] = value
        batch.failures.append(FailureRecord(start, "benchmark:MaxSensitivity", "model returned NaN"))
        writer.write_batch(batch)
    if close:
        writer.close("complete")
    return written, writer


@dataclass
class BaseDir:
    root: Path
    outside: Path
    run_a: Written
    run_b: Written
    live: Written
    live_writer: SummaryWriter
    ids: dict[str, str]


def write_base_dir(root: Path, outside: Path, n: int = 40) -> BaseDir:
    """The base directory of the server tests (see the module docstring); ``outside`` must not be below ``root``."""
    run_a, _ = write_summary(root / "shapes" / "run-a", n, ["Gradient", "GradCAM"], uncertainty=True, seed=1)
    run_b, _ = write_summary(root / "shapes" / "run-b", n, ["Gradient", "IntegratedGradients"], uncertainty=False,
                             seed=2)
    live, live_writer = write_summary(root / "live", 3, ["Gradient"], uncertainty=False, seed=3, close=False,
                                      total=10)
    (root / "broken").mkdir()
    (root / "broken" / "xaiboard.db").write_bytes(b"SQLite format 3\x00" + os.urandom(300))
    write_summary(outside / "secret-run", 4, ["Gradient"], uncertainty=False, seed=4, name=OUTSIDE_NAME)
    (root / "escape").symlink_to(outside / "secret-run", target_is_directory=True)
    ids = {name: summary_id(name) for name in ("shapes/run-a", "shapes/run-b", "live", "broken")}
    return BaseDir(root, outside, run_a, run_b, live, live_writer, ids)


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` with its size and modification time (to prove the server wrote nothing)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            state[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return state


# -- tests of the registry ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> BaseDir:
    data = write_base_dir(tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("outside"), n=12)
    yield data
    data.live_writer.close("interrupted")


def test_ids_are_url_safe_stable_and_distinct():
    assert summary_id("shapes/run-a") == summary_id("shapes/run-a")
    assert summary_id("shapes/run-a") != summary_id("shapes-run-a")
    for path in ("shapes/run-a", ".", "ünïcode/∂ir", "a b/../c", "x" * 300):
        identifier = summary_id(path)
        assert identifier.replace("-", "").isalnum() and identifier.isascii() and len(identifier) <= 60


def test_scan_finds_good_running_and_broken_summaries_but_not_the_symlink_out(base):
    registry = Registry(base.root, reload_interval=0)
    registry.scan()
    entries = {entry.path: entry for entry in registry.entries()}
    assert sorted(entries) == ["broken", "live", "shapes/run-a", "shapes/run-b"]
    assert entries["broken"].summary is None and "cannot read" in entries["broken"].error
    live = entries["live"].row()
    assert (live["status"], live["progress"], live["num_samples"]) == ("running", {"done": 3, "total": 10}, 3)
    run_a = entries["shapes/run-a"].row()
    assert run_a["status"] == "complete" and run_a["num_samples"] == 12 and run_a["error"] is None
    assert run_a["explainers"] == ["Gradient", "GradCAM"] and len(run_a["metrics"]) == 4
    registry.close()


def test_rescan_sees_new_changed_and_removed_summaries(tmp_path):
    root = tmp_path / "base"
    write_summary(root / "one", 4, ["Gradient"], uncertainty=False, seed=0)
    registry = Registry(root, reload_interval=0.2)
    registry.scan()
    registry.start()
    try:
        _, writer = write_summary(root / "two", 2, ["Gradient"], uncertainty=False, seed=1, close=False, total=8)
        deadline = time.time() + 10
        while time.time() < deadline and registry.get(summary_id("two")) is None:
            time.sleep(0.05)
        two = registry.get(summary_id("two"))
        assert two is not None and two.row()["progress"] == {"done": 2, "total": 8}
        signature = file_signature(root / "two")
        writer.write_batch(Batch(samples=[SampleRecord(5, "late.png", np.zeros((4, 4), np.uint8))]))
        assert file_signature(root / "two") != signature
        assert two.row()["progress"]["done"] == 3  # the row follows the file without waiting for a re-scan
        writer.close("complete")
        assert two.row()["status"] == "complete"
        SummaryWriter.remove(root / "one")
        deadline = time.time() + 10
        while time.time() < deadline and registry.get(summary_id("one")) is not None:
            time.sleep(0.05)
        assert registry.get(summary_id("one")) is None
    finally:
        registry.close()


def test_overwritten_summary_is_reopened(tmp_path):
    root = tmp_path / "base"
    write_summary(root / "run", 4, ["Gradient"], uncertainty=False, seed=0)
    registry = Registry(root, reload_interval=0)
    registry.scan()
    entry = registry.get(summary_id("run"))
    token = entry.token
    assert entry.row()["explainers"] == ["Gradient"]
    SummaryWriter.remove(root / "run")
    write_summary(root / "run", 2, ["GradCAM"], uncertainty=False, seed=0)
    assert entry.row()["explainers"] == ["GradCAM"] and entry.row()["num_samples"] == 2
    assert entry.token != token  # image URLs change, so long browser caching stays correct
    registry.close()


def test_database_linking_out_of_the_base_dir_is_ignored(tmp_path):
    root, outside = tmp_path / "base", tmp_path / "outside"
    write_summary(outside / "run", 2, ["Gradient"], uncertainty=False, seed=0)
    (root / "sneaky").mkdir(parents=True)
    (root / "sneaky" / "xaiboard.db").symlink_to(outside / "run" / "xaiboard.db")
    registry = Registry(root, reload_interval=0)
    registry.scan()
    assert registry.entries() == []
    registry.close()


def test_registry_never_writes_into_the_base_dir(base):
    before = tree_state(base.root)
    registry = Registry(base.root, reload_interval=0)
    registry.scan()
    for entry in registry.entries():
        entry.row()
    registry.close()
    after = tree_state(base.root)
    live = {k for k in before if k.startswith("live")}
    assert {k: v for k, v in after.items() if k not in live} == {k: v for k, v in before.items() if k not in live}
