"""What the diagnostics cost at ImageNet size: Integrated Gradients' path and the faithfulness curves.

On the pretrained EfficientNet-Lite0 (224 x 224, 1000 classes) and the photos demo's photos, side by side in one
process, alternating so that other work on the machine hits every variant alike, fastest of ``--repeats``, with
freed memory kept for the next pass as the runner keeps it:

* ``captum``: Captum's ``IntegratedGradients.attribute`` called bare (same steps, internal batch and baseline);
* ``maps``: xaiboard's ``IntegratedGradients.explain_with_delta`` (the maps and deltas only);
* ``maps + path``: ``explain_with_path``, which also records the target probability and the mean |gradient| at
  every alpha (what the runner stores);
* ``InsertionAUC`` / ``DeletionAUC``: ``evaluate`` against ``evaluate_with_curves`` (the curves kept).

Prints seconds per pair and the ratios; the goal for the path is under 5% over the maps. The path's stored size per
pair is printed too.

Usage: python bench/diagnostics_cost.py [--pairs N] [--repeats R] [--steps S]
"""

from __future__ import annotations

import os
import sys

if "torch" not in sys.modules:  # an application: passive OpenMP waits, as the demo does
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402
from captum.attr import IntegratedGradients as CaptumIntegratedGradients  # noqa: E402

from xaiboard.runner.allocator import keep_freed_memory  # noqa: E402
from xaiboard.runner.benchmarks import Faithfulness  # noqa: E402
from xaiboard.runner.efficientnet import load_pretrained  # noqa: E402
from xaiboard.runner.explainers import Gradient, IntegratedGradients  # noqa: E402
from xaiboard.runner.photos import photos  # noqa: E402
from xaiboard.store import arrays  # noqa: E402


def fastest(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    best = {name: float("inf") for name in variants}
    for _ in range(repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=32)
    args = parser.parse_args()
    keep_freed_memory()  # as the runner does: without it page faults dominate passes at 224 and blur the ratios
    torch.manual_seed(0)
    network = load_pretrained()
    data = photos()
    inputs = torch.stack([item["image"] for item in data.items[:args.pairs]])
    with torch.no_grad():
        targets = network(inputs).argmax(dim=1)
    explainer = IntegratedGradients(network, n_steps=args.steps, delta_tolerance=1.0)
    captum = CaptumIntegratedGradients(network)
    softmax = lambda logits: logits.softmax(dim=1)  # noqa: E731
    ig = fastest({
        "captum": lambda: captum.attribute(inputs.clone().requires_grad_(), baselines=0.0, target=targets,
                                           n_steps=args.steps, internal_batch_size=explainer.batch_size,
                                           return_convergence_delta=True),
        "maps": lambda: explainer.explain_with_delta(inputs, targets),
        "maps + path": lambda: explainer.explain_with_path(inputs, targets, softmax),
    }, args.repeats)
    maps = Gradient(network).explain(inputs, targets)
    curves = {}
    for metric in ("InsertionAUC", "DeletionAUC"):
        benchmark = Faithfulness(metric, steps=32)
        curves[metric] = fastest({
            "score": lambda: benchmark.evaluate(network, inputs, targets, maps),
            "score + curve": lambda: benchmark.evaluate_with_curves(network, inputs, targets, maps),
        }, args.repeats)
    _, _, path = explainer.explain_with_path(inputs, targets, softmax)
    stored = sum(len(arrays.encode_vector(v)) for v in (path.alphas, path.probabilities[0], path.gradients[0]))
    curve = benchmark.evaluate_with_curves(network, inputs, targets, maps)[1]
    curve_bytes = len(arrays.encode_vector(curve[0].numpy()))
    per_pair = {name: seconds / args.pairs for name, seconds in ig.items()}
    print(f"EfficientNet-Lite0, 224 x 224, 1000 classes, {args.pairs} pairs, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, fastest of {args.repeats}")
    print(f"{'Integrated Gradients':<24}{'s/pair':>9}{'vs captum':>11}{'vs maps':>9}")
    for name, seconds in per_pair.items():
        print(f"  {name:<22}{seconds:9.3f}{seconds / per_pair['captum']:11.3f}{seconds / per_pair['maps']:9.3f}")
    print(f"  path overhead: {100 * (per_pair['maps + path'] / per_pair['maps'] - 1):+.1f}% of the maps' time "
          f"(goal < 5%); stored {stored} bytes per pair")
    for metric, timing in curves.items():
        ratio = timing["score + curve"] / timing["score"]
        print(f"{metric:<24}{timing['score'] / args.pairs:9.3f} s/pair; with its curve {ratio:.3f}x; "
              f"stored {curve_bytes} bytes per pair and explainer")


if __name__ == "__main__":
    main()
