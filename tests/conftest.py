"""Shared fixtures: synthetic summaries written through the store API (no torch needed), and a dashboard client over
a module's ``base`` folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from xaiboard.server import create_app
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

CLASSES = ["cat", "dog", "bird", "fish"]
EXPLAINERS = ["Gradient", "GradCAM"]


def synthetic_batch(sample_ids: range, seed: int = 0, size: int = 16) -> Batch:
    """A batch with every kind of row: samples with boxes and masks, predictions of every type, maps, scores."""
    rng = np.random.default_rng(seed + sample_ids.start)
    batch = Batch()
    for sample_id in sample_ids:
        truth = sample_id % len(CLASSES)
        mask = np.zeros((size, size), dtype=bool)
        mask[2:7, 3:9] = True
        batch.samples.append(
            SampleRecord(
                id=sample_id,
                name=f"img_{sample_id:04d}.png",
                image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                ground_truth=[truth],
                boxes=[BoxRecord(truth, 3, 2, 6, 5)],
                masks={truth: mask},
            )
        )
        probs = rng.dirichlet(np.ones(len(CLASSES)))
        predicted = int(probs.argmax())
        for label in range(len(CLASSES)):
            is_truth, is_predicted = label == truth, label == predicted
            kind = {(True, True): "TP", (True, False): "FN", (False, True): "FP"}.get((is_truth, is_predicted))
            batch.predictions.append(
                PredictionRecord(sample_id, label, float(probs[label]), is_truth, kind,
                                 sd=0.05, lower=max(0.0, probs[label] - 0.1), upper=min(1.0, probs[label] + 0.1))
            )
            if kind is None:
                continue
            for explainer in EXPLAINERS:
                batch.saliency.append(
                    SaliencyRecord(sample_id, label, explainer, rng.normal(size=(size, size)), seconds=0.01,
                                   delta=0.001 if explainer == "Gradient" else None)
                )
                value = float(rng.random()) if sample_id % 5 else float("nan")
                batch.scores.append(ScoreRecord(explainer, "InsertionAUC", sample_id, label, value))
    return batch


def photo(size: int = 224, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image: smooth colour regions, edges and fine texture, so it compresses like a photo (PNG
    about 3 bytes per pixel, WebP/JPEG far less), not like a drawing."""
    from xaiboard.store.arrays import upsample

    rng = np.random.default_rng(seed)
    channels = [upsample(rng.uniform(30, 220, (5, 5)), (size, size)) for _ in range(3)]
    yy, xx = np.mgrid[0:size, 0:size]
    disc = (yy - size * 0.55) ** 2 + (xx - size * 0.45) ** 2 < (size * 0.25) ** 2
    image = np.stack(channels, axis=2) + rng.normal(0, 3, (size, size, 3))
    image[disc] = image[disc] * 0.4 + np.array([200.0, 60.0, 40.0]) * 0.6
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def start_summary(directory: Path, total: int) -> SummaryWriter:
    writer = SummaryWriter.create(directory, name=directory.name)
    writer.set_labels(CLASSES)
    for explainer in EXPLAINERS:
        writer.register_explainer(explainer, {"class": explainer})
    writer.register_metric("InsertionAUC", True, (0.0, 1.0), "mean", {"steps": 10})
    writer.update_run(task="single-label", activation="softmax", threshold=0.5, progress_total=total,
                      image_height=16, image_width=16, model_class="TinyNet", num_parameters=123, device="cpu",
                      config={"batch_size": 4})
    return writer


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models: a second CPU thread only adds synchronisation (and spins on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_summary(tmp_path: Path) -> Callable[..., Path]:
    """Write a finished synthetic summary with ``n`` samples in batches of 4; returns its directory."""

    def make(name: str = "run", n: int = 12, status: str = "complete", failures: int = 1) -> Path:
        directory = tmp_path / name
        writer = start_summary(directory, n)
        for start in range(0, n, 4):
            batch = synthetic_batch(range(start, min(start + 4, n)))
            writer.write_batch(batch)
        writer.record_failures([FailureRecord(i, "explainer:GradCAM", "boom") for i in range(failures)])
        writer.close(status)
        return directory

    return make


@pytest.fixture(scope="module")
def client(base):
    """A test client of the dashboard over the module's ``base`` folder of summaries."""
    app = create_app(base, reload_interval=0)
    yield app.test_client()
    app.extensions["xaiboard.registry"].close()


@pytest.fixture(scope="module")
def ids(client) -> dict[str, str]:
    """Summary ids by their path below ``base``."""
    return {row["path"]: row["id"] for row in client.get("/api/v1/summaries").get_json()["summaries"]}
