"""One explanation run, written once for every way it is launched: ``python tests/shard_run.py OUT`` (one process)
or ``torchrun --nproc-per-node=2 tests/shard_run.py OUT`` (each rank its share, in shards), the same script with no
code change. ``--slow S`` makes every forward pass sleep S seconds, so a test can kill a rank mid-run."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from torch import nn

from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.benchmarks import Faithfulness, Localization
from xaiboard.runner.explainers import Gradient, IntegratedGradients, RandomMap

CLASSES = ["red", "green", "blue"]
SAMPLES = 14
SIZE = 16


class SlowNet(nn.Module):
    """A small CNN whose forward pass can be slowed down."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.fc = nn.Linear(16, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.fc(self.features(x).flatten(1))


def items() -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    made = []
    for i in range(SAMPLES):
        image = 0.2 * torch.rand(3, SIZE, SIZE, generator=generator)
        image[i % 3, 4:10, 5:12] = 1.0
        made.append({"image": image, "labels": [i % 3], "boxes": [(5.0, 4.0, 7.0, 6.0)], "name": f"square-{i:02d}"})
    return made


def run(out: Path, slow: float = 0.0) -> None:
    """The run, as this process's place (the environment's RANK and WORLD_SIZE) makes it."""
    torch.manual_seed(0)
    network = SlowNet(slow).eval()
    rank = os.environ.get("RANK", "single")
    (out.parent / f"pid-{rank}").write_text(str(os.getpid()))
    runner = ImageClassificationRunner(out, network, items(), CLASSES, device="cpu", batch_size=4, top_k=2)
    runner.register_saliency([Gradient(network), IntegratedGradients(network, n_steps=8), RandomMap(network, seed=1)],
                             [Faithfulness("InsertionAUC", steps=8), Localization("PointingGame", tolerance=1)])
    runner.run(progress=False).close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--slow", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run(args.out, args.slow)


if __name__ == "__main__":
    main()
