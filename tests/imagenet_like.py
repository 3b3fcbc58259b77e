"""A summary shaped like an ImageNet run: 1,000 classes of which a handful have samples, 224 x 224 photo-like
images, top-3 explained labels per sample, the 11 built-in explainers and six metrics with per-class scores.

Written through the store API (no torch), in a few seconds, for the tests of the dashboard at real scale. Scores
are made so that comparisons mean something: ``GradCAM`` is clearly best on ``PointingGame``, and two explainers
tie on ``Sparseness``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import photo
from xaiboard.store import Batch, PredictionRecord, ProbabilityRecord, SaliencyRecord, SampleRecord, ScoreRecord
from xaiboard.store import SummaryWriter, BoxRecord
from xaiboard.store.arrays import upsample

NUM_CLASSES = 1000
SIZE = 224
TOP_K = 3
EXPLAINERS = ["Gradient", "InputXGradient", "IntegratedGradients", "SmoothGrad", "GuidedBackprop",
              "Deconvolution", "DeepLift", "GradCAM", "GuidedGradCAM", "Occlusion", "RISE"]
# name, higher is better, range
METRICS = [("PointingGame", True, (0.0, 1.0)), ("InsertionAUC", True, (0.0, 1.0)), ("DeletionAUC", False, (0.0, 1.0)),
           ("NaiveFaithfulness", True, (-1.0, 1.0)), ("MaxSensitivity", False, (0.0, None)),
           ("Sparseness", True, (0.0, 1.0))]
# The classes that have samples: scattered over the 1,000, as a validation subset would be.
TRUTH_CLASSES = [1, 12, 88, 207, 281, 340, 417, 504, 610, 724, 817, 948]


def class_names() -> list[str]:
    """1,000 distinct names; the ones with samples read like ImageNet's."""
    special = {1: "goldfish", 12: "house finch", 88: "macaw", 207: "golden retriever", 281: "tabby cat",
               340: "zebra", 417: "balloon", 504: "coffee mug", 610: "jersey, T-shirt", 724: "pirate ship",
               817: "sports car", 948: "Granny Smith"}
    return [special.get(i, f"class {i:03d}") for i in range(NUM_CLASSES)]


def write(directory: Path, n: int = 24, seed: int = 0) -> Path:
    """Write the finished summary into ``directory`` (created) and return it."""
    rng = np.random.default_rng(seed)
    writer = SummaryWriter.create(directory, name=directory.name)
    writer.set_labels(class_names())
    for explainer in EXPLAINERS:
        writer.register_explainer(explainer, {"class": explainer})
    for name, higher, value_range in METRICS:
        writer.register_metric(name, higher, value_range, "mean", {})
    writer.update_run(task="single-label", activation="softmax", threshold=None, top_k=TOP_K, progress_total=n,
                      image_height=SIZE, image_width=SIZE, model_class="EfficientNetLite0",
                      num_parameters=4_652_008, device="cpu", config={"map_bits": 12})
    batch = Batch()
    for sample_id in range(n):
        truth = TRUTH_CLASSES[sample_id % len(TRUTH_CLASSES)]
        logits = rng.normal(0, 1.5, NUM_CLASSES)
        confused = TRUTH_CLASSES[(sample_id + 1) % len(TRUTH_CLASSES)]
        logits[truth] += 9.0 if sample_id % 3 else 5.0
        logits[confused] += 0.0 if sample_id % 3 else 7.0  # every third sample is mistaken for the next class
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = [int(i) for i in np.argsort(-probs)[:TOP_K]]
        explained = list(dict.fromkeys(top + [truth]))
        box = BoxRecord(truth, 40, 50, 120, 110)
        batch.samples.append(SampleRecord(sample_id, f"ILSVRC2012_val_{sample_id + 1:08d}.JPEG",
                                          photo(SIZE, seed + sample_id), ground_truth=[truth], boxes=[box]))
        batch.probabilities.append(ProbabilityRecord(sample_id, probs.astype(np.float32)))
        for label in explained:
            is_truth, is_top = label == truth, label == top[0]
            kind = "TP" if is_truth and is_top else "FN" if is_truth else "FP" if is_top else "TN"
            batch.predictions.append(PredictionRecord(sample_id, label, float(probs[label]), is_truth, kind))
            for e, explainer in enumerate(EXPLAINERS):
                coarse = rng.random((7, 7))
                coarse[2:5, 1:5] += 2.0 if explainer == "GradCAM" else 0.3
                relevance = coarse if explainer == "GradCAM" else upsample(coarse, (SIZE, SIZE))
                batch.saliency.append(SaliencyRecord(sample_id, label, explainer, relevance, seconds=0.05 * (e + 1)))
                for metric, _, _ in METRICS:
                    batch.scores.append(ScoreRecord(explainer, metric, sample_id, label,
                                                    _score(rng, explainer, metric)))
    writer.write_batch(batch)
    writer.close("complete")
    return directory


def _score(rng: np.random.Generator, explainer: str, metric: str) -> float:
    if metric == "PointingGame":
        return float(rng.random() < (0.95 if explainer == "GradCAM" else 0.4))
    if metric == "Sparseness" and explainer in ("Gradient", "InputXGradient"):
        return 0.5  # an exact tie
    if metric == "MaxSensitivity":
        return float(rng.gamma(2.0, 0.05))
    if metric == "NaiveFaithfulness":
        return float(np.clip(rng.normal(0.2, 0.3), -1, 1))
    return float(rng.uniform(0.1, 0.9))
