"""Runner throughput: samples/s of ``ImageClassificationRunner`` and its overhead over the bare explainer passes.

For a small CNN and a ResNet-like model at 64x64, and two sets of explainers (cheap gradient methods, where the
runner's own work weighs most, and path/perturbation methods), it times side by side in one process:

* runner: ``ImageClassificationRunner.run()`` end to end into a fresh summary directory (validation pass,
  prediction forward passes, label selection, explainers, PNG encoding, SQLite transactions, progress);
* bare passes: the same explainers called on the same (image, label) pairs in the same batches, with the inputs
  and targets prepared beforehand, nothing stored.

ratio = runner time / bare time (goal: at most 1.5 on the CPU). Each measurement is repeated and the fastest run
of each kind is kept, alternating the two so that other work on the machine hits both alike. The CPU-time ratio
(process CPU seconds, all threads) is printed too: on a machine shared with other work it moves much less than wall
time, while wall time shows what the runner's writer thread hides behind the explainers.

Usage: python bench/runner_throughput.py [--samples N] [--repeats R] [--batch-size B]
"""

from __future__ import annotations

import os
import sys

if "torch" not in sys.modules:  # an application: passive OpenMP waits, as the demo does
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import torch  # noqa: E402

from xaiboard.runner import ImageClassificationRunner  # noqa: E402
from xaiboard.runner.explainers import (  # noqa: E402
    RISE,
    GradCAM,
    Gradient,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    SmoothGrad,
)
from xaiboard.runner.models import ResNetLike, SmallCNN  # noqa: E402
from xaiboard.store import Summary  # noqa: E402

SIZE = 64
CLASSES = [f"class {i}" for i in range(10)]


def gradient_set(network: torch.nn.Module, layer: str) -> list[Any]:
    return [Gradient(network), InputXGradient(network), GuidedBackprop(network), GradCAM(network, layer)]


def path_set(network: torch.nn.Module, layer: str) -> list[Any]:
    return [IntegratedGradients(network, n_steps=16), SmoothGrad(network, n_samples=8),
            Occlusion(network, window=16, stride=8), RISE(network, n_masks=128, grid=4)]


def make_data(samples: int, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((samples, 3, SIZE, SIZE), generator=generator)
    labels = torch.randint(0, len(CLASSES), (samples,), generator=generator)
    return [(images[i], int(labels[i])) for i in range(samples)]


def time_runner(network: torch.nn.Module, data: list, explainers: list[Any], batch_size: int,
                directory: Path) -> tuple[float, float, Summary]:
    """Wall and CPU seconds of a whole run, and its summary."""
    shutil.rmtree(directory, ignore_errors=True)
    runner = ImageClassificationRunner(directory, network, data, CLASSES, batch_size=batch_size, device="cpu")
    runner.register_saliency(explainers)
    start, cpu = time.perf_counter(), time.process_time()
    summary = runner.run(progress=False)
    return time.perf_counter() - start, time.process_time() - cpu, summary


def explained_pairs(summary: Summary) -> dict[int, list[int]]:
    """The (sample, label) pairs the runner explained, read back from its summary."""
    pairs: dict[int, list[int]] = {}
    for sample_id in summary.sample_ids():
        pairs[sample_id] = [p.label_index for p in summary.predictions(sample_id) if p.type is not None]
    return pairs


def bare_passes(data: list, pairs: dict[int, list[int]], explainers: list[Any],
                batch_size: int) -> Callable[[], tuple[float, float]]:
    """A timer of the same explainer calls on the same pairs and batches, inputs prepared beforehand."""
    calls = []
    ids = sorted(pairs)
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        inputs = torch.stack([data[i][0] for i in batch for _ in pairs[i]])
        targets = torch.tensor([label for i in batch for label in pairs[i]])
        calls.append((inputs, targets))

    def run() -> tuple[float, float]:
        begin, cpu = time.perf_counter(), time.process_time()
        for inputs, targets in calls:
            for explainer in explainers:
                explainer.explain_with_delta(inputs, targets)
        return time.perf_counter() - begin, time.process_time() - cpu

    return run


def measure(name: str, network: torch.nn.Module, layer: str, make_explainers: Callable[..., list[Any]],
            samples: int, batch_size: int, repeats: int, workdir: Path) -> dict[str, float]:
    network.eval()
    data = make_data(samples)
    explainers = make_explainers(network, layer)
    runner_times, runner_cpu, bare_times, bare_cpu = [], [], [], []
    pairs: dict[int, list[int]] = {}
    for repeat in range(repeats):
        seconds, cpu, summary = time_runner(network, data, explainers, batch_size, workdir / f"{name}-{repeat}")
        with summary:
            pairs = pairs or explained_pairs(summary)
            maps = summary.counts()["num_saliency_maps"]
        runner_times.append(seconds)
        runner_cpu.append(cpu)
        seconds, cpu = bare_passes(data, pairs, explainers, batch_size)()
        bare_times.append(seconds)
        bare_cpu.append(cpu)
    runner_best, bare_best = min(runner_times), min(bare_times)
    return {"samples": samples, "pairs": sum(len(v) for v in pairs.values()), "maps": maps,
            "runner_s": runner_best, "bare_s": bare_best, "samples_per_s": samples / runner_best,
            "ratio": runner_best / bare_best, "cpu_ratio": min(runner_cpu) / min(bare_cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    models = [
        ("SmallCNN", SmallCNN(len(CLASSES), channels=3, width=16), SmallCNN.gradcam_layer),
        ("ResNetLike", ResNetLike(len(CLASSES), channels=3, width=16), ResNetLike.gradcam_layer),
    ]
    sets = [("gradients", gradient_set), ("path+perturbation", path_set)]
    print(f"runner throughput at {SIZE}x{SIZE}, batch size {args.batch_size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"{'model':<11} {'explainers':<18} {'samples':>7} {'maps':>6} {'runner s':>9} {'bare s':>8} "
          f"{'samples/s':>10} {'ratio':>6} {'cpu ratio':>9}")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, network, layer in models:
            for set_name, make in sets:
                samples = args.samples if set_name == "gradients" else max(16, args.samples // 4)
                row = measure(f"{model_name}-{set_name}", network, layer, make, samples, args.batch_size,
                              args.repeats, Path(tmp))
                ratios.append(row["ratio"])
                print(f"{model_name:<11} {set_name:<18} {row['samples']:>7} {row['maps']:>6} {row['runner_s']:>9.2f} "
                      f"{row['bare_s']:>8.2f} {row['samples_per_s']:>10.1f} {row['ratio']:>6.2f} {row['cpu_ratio']:>9.2f}",
                      flush=True)
    print(f"worst ratio {max(ratios):.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
