"""Every benchmark inside the runner: the per-pair scores it stores and the aggregates the summary reads back."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.benchmarks import (
    ClassSensitivity,
    Faithfulness,
    Localization,
    Randomization,
    Robustness,
    Sparseness,
)
from xaiboard.runner.explainers import Gradient

CLASSES = ["ring", "bar", "dot"]
SIZE = 12


class GradientXInput:
    """Gradient x input summed over channels, written here so the test does not rest on the project's explainers."""

    def __init__(self, network: torch.nn.Module, name: str = "GradientXInput") -> None:
        self.network = network
        self.name = name

    def explain(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = inputs.detach().clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(self.network(x).gather(1, targets[:, None]).sum(), x)
        return (gradient * x).sum(1).detach()

    __call__ = explain

    def explain_with_delta(self, inputs: torch.Tensor, targets: torch.Tensor):
        return self.explain(inputs, targets), None

    def config(self) -> dict:
        return {"class": "GradientXInput"}

    def with_network(self, network: torch.nn.Module) -> "GradientXInput":
        return GradientXInput(network, self.name)


def make_items(count: int = 10) -> list[dict]:
    """Images with a bright square at a known place; the square's box belongs to the first label."""
    generator = torch.Generator().manual_seed(0)
    items = []
    for index in range(count):
        image = torch.rand(1, SIZE, SIZE, generator=generator) * 0.2
        x, y = (index * 3) % 8, (index * 5) % 8
        image[0, y : y + 4, x : x + 4] += 1.0
        labels = [index % 3] if index % 4 else [index % 3, (index + 1) % 3]  # some samples have two labels
        boxes = [(float(x), float(y), 4.0, 4.0)] + ([(0.0, 0.0, 3.0, 3.0)] if len(labels) == 2 else [])
        items.append({"image": image, "labels": labels, "boxes": boxes, "name": f"sample_{index}"})
    return items


def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, len(CLASSES)),
    )


def test_runner_stores_every_benchmark_score_and_the_aggregates_are_their_means(tmp_path) -> None:
    network = tiny_cnn()
    items = make_items()
    explainers = [GradientXInput(network), Gradient(network)]
    benchmarks = [
        Faithfulness("InsertionAUC", steps=10),
        Faithfulness("DeletionAUC", steps=10),
        Faithfulness("NaiveFaithfulness", steps=8),
        Localization("PointingGame", tolerance=3),
        Localization("IoSR"),
        Robustness(n_samples=3),
        ClassSensitivity(),
        Sparseness(),
        Randomization(),
    ]
    runner = ImageClassificationRunner(tmp_path / "run", network=network, data=items, classes=CLASSES, top_k=2,
                                       batch_size=4, device="cpu")
    runner.register_saliency(explainers, benchmarks)
    summary = runner.run(progress=False)
    try:
        assert summary.run().status == "complete"
        assert summary.failures() == []

        # every benchmark registered with its direction, range, aggregation and configuration
        metrics = {m.name: m for m in summary.metrics()}
        assert list(metrics) == [b.name for b in benchmarks]
        for bench in benchmarks:
            stored = metrics[bench.name]
            assert stored.higher_is_better == bench.higher_is_better
            assert tuple(stored.range) == tuple(bench.range)
            assert stored.aggregation == bench.aggregation
            assert stored.config == bench.config()

        # the explained pairs, and those a localization benchmark scores (ground truth with a box)
        explained = set()
        localized = set()
        for index, item in enumerate(items):
            for prediction in summary.predictions(index, explained_only=True):
                explained.add((index, prediction.label_index))
            localized |= {(index, label) for label in item["labels"]}
        assert localized <= explained and len(explained) > len(localized)

        scores = summary.scores()
        stored: dict[tuple[str, str], dict[tuple[int, int], float | None]] = defaultdict(dict)
        for explainer, metric, sample_id, label, value in scores:
            stored[(explainer, metric)][(sample_id, label)] = value
        for explainer in explainers:
            for bench in benchmarks:
                values = stored[(explainer.name, bench.name)]
                assert set(values) == (localized if bench.requires_masks else explained), (explainer.name, bench.name)
                low, high = bench.range
                for value in values.values():
                    assert value is None or (low - 1e-6 <= value and (high is None or value <= high + 1e-6))

        # deterministic scores recomputed pair by pair from the explainer's map
        for explainer in explainers:
            for (sample_id, label) in sorted(explained):
                image = items[sample_id]["image"][None]
                target = torch.tensor([label])
                saliency = explainer.explain(image, target)
                for bench in (benchmarks[1], benchmarks[7]):  # DeletionAUC, Sparseness
                    expected = float(bench.evaluate(network, image, target, saliency)[0])
                    assert stored[(explainer.name, bench.name)][(sample_id, label)] == pytest.approx(expected,
                                                                                                     abs=1e-5)
                if (sample_id, label) in localized:
                    x, y, w, h = items[sample_id]["boxes"][items[sample_id]["labels"].index(label)]
                    mask = torch.zeros(1, SIZE, SIZE, dtype=torch.bool)
                    mask[0, int(y) : int(y + h), int(x) : int(x + w)] = True
                    expected = float(benchmarks[3].evaluate(network, image, target, saliency, masks=mask)[0])
                    value = stored[(explainer.name, "PointingGame")][(sample_id, label)]
                    assert (value is None and math.isnan(expected)) or value == expected

        # the aggregates the summary reads back are the means of the stored values
        aggregates = {(a.explainer, a.metric): a for a in summary.aggregates()}
        assert set(aggregates) == {(e.name, b.name) for e in explainers for b in benchmarks}
        for (explainer_name, metric), values in stored.items():
            per_class: dict[int, list[float]] = defaultdict(list)
            for (_, label), value in values.items():
                if value is not None:
                    per_class[label].append(value)
            class_means = {label: sum(v) / len(v) for label, v in per_class.items()}
            aggregate = aggregates[(explainer_name, metric)]
            read_back = {c.label_index: c.mean for c in aggregate.per_class if c.count}
            assert read_back.keys() == class_means.keys()
            for label, mean in class_means.items():
                assert read_back[label] == pytest.approx(mean, abs=1e-9)
            every = [value for v in per_class.values() for value in v]
            if metrics[metric].aggregation == "macro":
                expected = sum(class_means.values()) / len(class_means)
            else:
                expected = sum(every) / len(every)
            assert aggregate.count == len(every)
            assert aggregate.value == pytest.approx(expected, abs=1e-9), (explainer_name, metric)
        # the macro mean differs from the plain mean here, so the PointingGame check above tells them apart
        pointing = stored[("GradientXInput", "PointingGame")]
        hits = [v for v in pointing.values() if v is not None]
        assert abs(aggregates[("GradientXInput", "PointingGame")].value - sum(hits) / len(hits)) > 1e-3
    finally:
        summary.close()
