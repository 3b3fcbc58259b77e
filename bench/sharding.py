"""Scaling from one process to several with torchrun, at ImageNet size: the pretrained EfficientNet-Lite0
(224 x 224, 1000 classes) on the photos demo's photos, Gradient, Grad-CAM and Integrated Gradients with insertion
AUC, explained by one process with N threads and by ``torchrun --nproc-per-node=N`` with one thread per rank (the
same cores), side by side in one run. Prints each wall time (launch and model load included), the speed-up, and
checks that the shards, read as one run, hold the single run's samples, maps and scores.

On a CPU the ranks share the machine's cores and memory bandwidth, so the speed-up measures the overhead of
sharding (what one GPU per rank would scale), not more compute.

Usage: python bench/sharding.py [--processes N] [--photos P]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def worker(out: Path, photos_count: int) -> None:
    """The run every process executes (the script under torchrun is this file with --worker)."""
    import torch

    from xaiboard.runner.benchmarks import Faithfulness
    from xaiboard.runner.efficientnet import EfficientNetLite0, MEAN, STD, load_pretrained
    from xaiboard.runner.explainers import GradCAM, Gradient, IntegratedGradients
    from xaiboard.runner.photos import photos
    from xaiboard.runner import ImageClassificationRunner

    torch.manual_seed(0)
    network = load_pretrained()
    data = photos()
    runner = ImageClassificationRunner(out, network, data.items[:photos_count], data.classes, mean=list(MEAN),
                                       std=list(STD), device="cpu", batch_size=4)
    runner.register_saliency([Gradient(network), GradCAM(network, EfficientNetLite0.gradcam_layer),
                              IntegratedGradients(network, n_steps=8)], [Faithfulness("InsertionAUC", steps=8)])
    runner.run(progress=False).close()


def timed(command: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore", "OMP_WAIT_POLICY": "PASSIVE"}
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.photos)
        return
    base = Path(tempfile.mkdtemp(prefix="xaiboard-sharding-"))
    script = [str(Path(__file__).resolve()), "--photos", str(args.photos), "--worker"]
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    single = timed([sys.executable, *script, str(base / "single")], threads=args.processes)
    sharded = timed([torchrun, "--standalone", f"--nproc-per-node={args.processes}", *script, str(base / "sharded")],
                    threads=1)
    single_rows, sharded_rows = stored_rows(base / "single"), stored_rows(base / "sharded")  # the shards as one
    shutil.rmtree(base, ignore_errors=True)
    print(f"{args.photos} photos at 224 x 224, EfficientNet-Lite0, 3 explainers + InsertionAUC")
    print(f"  1 process, {args.processes} threads:         {single:7.1f} s")
    print(f"  torchrun, {args.processes} ranks x 1 thread:    {sharded:7.1f} s")
    print(f"  speed-up: {single / sharded:.2f}x")
    print(f"  rows: {len(single_rows['maps'])} maps and {len(single_rows['scores'])} scores in one process; "
          f"{compare_rows(single_rows, sharded_rows)}")


def stored_rows(directory: Path) -> dict[str, dict]:
    """Samples, predictions, maps and scores of a summary (a sharded one read as one run)."""
    from xaiboard.store import Summary

    with Summary.open(directory) as summary:
        maps = {(s, label.label_index, e): summary.saliency_map(s, label.label_index, e)
                for s in summary.sample_ids() for label in summary.sample(s).labels for e in label.explainers}
        return {"samples": summary.sample_names(), "maps": maps,
                "predictions": {(p.sample_id, p.label_index): (p.prob, p.type) for p in summary.predictions()},
                "scores": {row[:4]: row[4] for row in summary.scores()}}


def compare_rows(expected: dict[str, dict], got: dict[str, dict]) -> str:
    """Whether the sharded run holds the same rows, and how far its values are from the single run's."""
    if any(expected[key].keys() != got[key].keys() for key in expected):
        return "the sharded run holds OTHER rows"
    if expected["samples"] != got["samples"]:
        return "the sharded run names its samples differently"
    if any(expected["predictions"][k][1] != v[1] for k, v in got["predictions"].items()):
        return "the sharded run's TP/FP/FN/TN differ"
    map_error = max(float(np.abs(got["maps"][k] - v).max() / (np.ptp(v) or 1.0)) for k, v in expected["maps"].items())
    score_error = max((abs(got["scores"][k] - v) for k, v in expected["scores"].items()
                       if v is not None and got["scores"][k] is not None), default=0.0)
    return (f"the same rows in the shards; largest map difference {map_error:.1e} of the map's range, "
            f"largest score difference {score_error:.1e}")

if __name__ == "__main__":
    main()
