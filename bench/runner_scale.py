"""The runner at ImageNet size: the photos demo's settings timed against bare Captum calls, side by side in one run.

The pretrained EfficientNet-Lite0 (224 x 224, 1000 classes) on the first ``--samples`` photos of the photos demo.
For each of the demo's explainers, with its input-scaled defaults:

* runner: ``ImageClassificationRunner.run()`` end to end with that explainer alone (validation pass, the plan with
  its timing passes, prediction passes, label selection, the explainer, map encoding, SQLite commits);
* bare: the forward pass that predicts the photos plus the library call on the same (image, label) pairs with the
  same parameters (Captum's ``Saliency``, ``LayerGradCam``, ``IntegratedGradients``, ``NoiseTunnel``,
  ``Occlusion``; for RISE, which Captum lacks, the masked forward passes alone), nothing stored.

ratio = runner / bare (goal: at most 1.1). First, the effect of keeping freed memory (:mod:`xaiboard.runner.allocator`,
which the runner applies to CPU runs): milliseconds per image of forward and forward+backward passes, 32 images a
pass (the explainers' default at 224), with glibc's default malloc settings and with the runner's, each in its
own process. Then the whole demo configuration without benchmarks: the plan's
estimate against the time taken, seconds until the first sample is visible to a reader of the summary (what
``xaiboard ls`` and the dashboard see), and the summary's bytes per sample by table (SQLite ``dbstat``).
Benchmarks' seconds per pair are in every summary (``Summary.score_timings()``).

    python bench/runner_scale.py [--samples 3] [--skip-expensive]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr import LayerGradCam, NoiseTunnel, Saliency
from captum.attr import Occlusion as CaptumOcclusion

from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.efficientnet import MEAN, STD, load_pretrained
from xaiboard.runner.photos import photos
from xaiboard.runner.photos_demo import photo_explainers, photos_runner
from xaiboard.store import Summary


PASS_TIMING = """
import json, sys, time, torch
from xaiboard.runner.allocator import keep_freed_memory
from xaiboard.runner.efficientnet import load_pretrained
kept = keep_freed_memory()
network = load_pretrained()
x = torch.randn(32, 3, 224, 224)
def best(step):
    step()
    times = []
    for _ in range(3):
        started = time.perf_counter(); step(); times.append(time.perf_counter() - started)
    return min(times) / x.shape[0] * 1000
def forward():
    with torch.no_grad():
        network(x)
def backward():
    inputs = x.clone().requires_grad_(True)
    torch.autograd.grad(network(inputs)[:, 0].sum(), inputs)
print(json.dumps({"kept": kept, "forward": best(forward), "backward": best(backward)}))
"""


def allocator_effect() -> None:
    rows = {}
    for label, value in (("glibc defaults", "system"), ("runner's setting", "")):
        env = {**os.environ, "XAIBOARD_MALLOC": value}
        done = subprocess.run([sys.executable, "-c", PASS_TIMING], env=env, capture_output=True, text=True, check=True)
        rows[label] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{'malloc':<18}{'fwd ms/img':>11}{'fwd+bwd ms/img':>16}")
    for label, row in rows.items():
        print(f"{label:<18}{row['forward']:>11.1f}{row['backward']:>16.1f}", flush=True)
    before, after = rows["glibc defaults"], rows["runner's setting"]
    print(f"{'speed-up':<18}{before['forward'] / after['forward']:>10.2f}x{before['backward'] / after['backward']:>15.2f}x\n")


def make_runner(directory: Path, network: torch.nn.Module, items: list[dict], classes: list[str],
                explainers: list[Any]) -> ImageClassificationRunner:
    runner = ImageClassificationRunner(directory, network, items, classes, activation_fn="softmax", mean=list(MEAN),
                                       std=list(STD), batch_size=8, device="cpu")
    runner.register_saliency(explainers)
    return runner


def explained_pairs(directory: Path, explainer: str) -> list[tuple[int, int]]:
    with Summary.open(directory) as summary:
        return [(s, p.label_index) for s in summary.sample_ids() for p in summary.sample(s).labels
                if explainer in p.explainers]


def bare_call(explainer: Any, network: torch.nn.Module) -> Callable[[torch.Tensor, torch.Tensor], Any]:
    """The library call an explainer wraps, with the parameters it resolved for 224 x 224."""
    name = type(explainer).__name__
    if name == "Gradient":
        return lambda x, t: Saliency(network).attribute(x, target=t, abs=True)
    if name == "GradCAM":
        return lambda x, t: LayerGradCam(network, explainer.layer).attribute(x, target=t, relu_attributions=True)
    if name == "IntegratedGradients":
        return lambda x, t: CaptumIG(network).attribute(x, target=t, n_steps=explainer.n_steps,
                                                        internal_batch_size=explainer.batch_size,
                                                        return_convergence_delta=True)
    if name == "SmoothGrad":
        return lambda x, t: NoiseTunnel(Saliency(network)).attribute(
            x, nt_type="smoothgrad", nt_samples=explainer.n_samples, stdevs=explainer.stdev, target=t,
            nt_samples_batch_size=max(1, explainer.batch_size // x.shape[0]))
    if name == "Occlusion":
        window, stride = explainer.resolve(224, 224)
        return lambda x, t: CaptumOcclusion(network).attribute(
            x, sliding_window_shapes=(3, *window), strides=(3, *stride), target=t,
            perturbations_per_eval=max(1, explainer.batch_size // x.shape[0]))
    if name == "RISE":
        n_masks, _ = explainer.resolve(224, 224)
        masks = torch.rand(explainer.batch_size, 1, 224, 224)

        def masked_passes(x: torch.Tensor, t: torch.Tensor) -> None:
            with torch.no_grad():
                for image in x:
                    for start in range(0, n_masks, explainer.batch_size):
                        count = min(explainer.batch_size, n_masks - start)
                        network(image[None] * masks[:count]).softmax(1)
        return masked_passes
    raise ValueError(f"no bare call for {name}")


def time_bare(explainer: Any, network: torch.nn.Module, images: torch.Tensor,
              pairs: list[tuple[int, int]]) -> float:
    call = bare_call(explainer, network)
    started = time.perf_counter()
    with torch.no_grad():
        network(images).softmax(1)
    inputs = images[[s for s, _ in pairs]].clone().requires_grad_(True)
    call(inputs, torch.tensor([label for _, label in pairs]))
    return time.perf_counter() - started


def compare_explainers(network: torch.nn.Module, items: list[dict], classes: list[str], workdir: Path,
                       skip: set[str]) -> None:
    images = torch.stack([item["image"] for item in items])
    started = time.perf_counter()
    make_runner(workdir / "none", network, items, classes, []).run(progress=False).close()
    fixed = time.perf_counter() - started
    started = time.perf_counter()
    with torch.no_grad():
        network(images).softmax(1)
    forward = time.perf_counter() - started
    print(f"the runner without explainers (validation, plan with its timing passes, predictions, commits): "
          f"{fixed:.2f} s, the bare prediction pass {forward:.2f} s")
    print("ratio: runner / bare; marginal: (runner - runner without explainers) / (bare - bare prediction pass)")
    print(f"{'explainer':<22}{'pairs':>6}{'runner s':>10}{'bare s':>9}{'ratio':>7}{'marginal':>9}{'s/pair':>8}")
    for index, explainer in enumerate(photo_explainers(network)):
        if explainer.name in skip:
            continue
        directory = workdir / f"alone-{index}"
        time_bare(explainer, network, images[:1], [(0, 0)])  # warm-up: the passes' memory is allocated once
        started = time.perf_counter()
        make_runner(directory, network, items, classes, [explainer]).run(progress=False).close()
        runner_seconds = time.perf_counter() - started
        pairs = explained_pairs(directory, explainer.name)
        bare_seconds = time_bare(explainer, network, images, pairs)
        marginal = (runner_seconds - fixed) / max(1e-9, bare_seconds - forward)
        print(f"{explainer.name:<22}{len(pairs):>6}{runner_seconds:>10.2f}{bare_seconds:>9.2f}"
              f"{runner_seconds / bare_seconds:>7.2f}{marginal:>9.2f}{runner_seconds / len(pairs):>8.2f}", flush=True)


def watch_first_sample(directory: Path, started: float, seen: dict[str, float]) -> None:
    """Open the summary as a reader would until it shows one finished sample."""
    while "first" not in seen:
        try:
            with Summary.open(directory) as summary:
                if summary.run().progress_done:
                    seen["first"] = time.perf_counter() - started
        except Exception:  # noqa: BLE001 - not created yet
            pass
        time.sleep(0.1)


def table_bytes(database: Path) -> dict[str, int]:
    """Bytes of every table with its indexes (SQLite's dbstat)."""
    with sqlite3.connect(database) as connection:
        index_of = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
        sizes: dict[str, int] = {}
        for name, size in connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = index_of.get(name, name)
            sizes[table] = sizes.get(table, 0) + size
    return sizes


def whole_demo(network: torch.nn.Module, samples: int, workdir: Path) -> None:
    """The photos demo itself (its explainers, benchmarks and subset) on the first ``samples`` photos."""
    directory = workdir / "demo"
    runner = photos_runner(directory, samples=samples, network=network)
    estimate = runner.plan().total_seconds
    seen: dict[str, float] = {}
    started = time.perf_counter()
    watcher = threading.Thread(target=watch_first_sample, args=(directory, started, seen), daemon=True)
    watcher.start()
    summary = runner.run(progress=False)
    took = time.perf_counter() - started
    watcher.join(timeout=1)
    with summary:
        first_seconds = sample_seconds(directory / "xaiboard.db", summary.sample_ids()[0])
        print(f"\nthe photos demo on {samples} photos (explainers, benchmarks on a subset of "
              f"{runner.benchmark_samples}):")
        print(f"  plan estimated {estimate:.1f} s, took {took:.1f} s (estimate / actual {estimate / took:.2f})")
        print(f"  first sample visible to a reader after {seen.get('first', float('nan')):.1f} s; that sample's "
              f"maps and scores took {first_seconds:.1f} s")
        print(f"  {'explainer':<22}{'s/pair':>8}   {'benchmark':<14}{'s/pair (mean over explainers)':>30}")
        explainers = summary.explainer_timings()
        by_metric: dict[str, list[float]] = {}
        for (_, metric), timing in summary.score_timings().items():
            if timing["mean_seconds"] is not None:
                by_metric.setdefault(metric, []).append(timing["mean_seconds"])
        rows = max(len(explainers), len(by_metric))
        names, metrics = list(explainers), list(by_metric)
        for i in range(rows):
            left = f"{names[i]:<22}{explainers[names[i]]['seconds']:>8.2f}" if i < len(names) else " " * 30
            right = f"{metrics[i]:<14}{sum(by_metric[metrics[i]]) / len(by_metric[metrics[i]]):>30.2f}" \
                if i < len(metrics) else ""
            print(f"  {left}   {right}")
    sizes = table_bytes(directory / "xaiboard.db")
    total = (directory / "xaiboard.db").stat().st_size
    print(f"  summary: {total / samples / 1024:.0f} KB per sample; by table (KB per sample, 4 KB pages):")
    for table, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if size / samples >= 2048:
            print(f"    {table:<24}{size / samples / 1024:>8.1f}")


def sample_seconds(database: Path, sample_id: int) -> float:
    """Seconds the explainers and benchmarks spent on one sample (the ``seconds`` columns of the tables)."""
    with sqlite3.connect(database) as connection:
        return sum(connection.execute(f"SELECT COALESCE(SUM(seconds), 0) FROM {table} WHERE sample_id = ?",
                                      (sample_id,)).fetchone()[0] for table in ("saliency", "scores"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=3, help="photos to explain (of 12)")
    parser.add_argument("--skip-expensive", action="store_true", help="leave Occlusion and RISE out")
    args = parser.parse_args()
    torch.manual_seed(0)
    network = load_pretrained()
    data = photos()
    items = data.items[:args.samples]
    skip = {"Occlusion", "RISE"} if args.skip_expensive else set()
    print(f"EfficientNet-Lite0, {len(items)} photos of 3x224x224, 1000 classes, {torch.get_num_threads()} threads",
          flush=True)
    allocator_effect()
    with tempfile.TemporaryDirectory() as workdir:
        compare_explainers(network, items, data.classes, Path(workdir), skip)
        whole_demo(network, args.samples, Path(workdir))


if __name__ == "__main__":
    main()
