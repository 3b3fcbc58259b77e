"""InsertionAUC and DeletionAUC: our batched implementation against a straightforward per-step loop.

A small CNN at 64 x 64 scores 64 (image, label, map) triples with 50 steps. The loop below is what a reference
implementation does: for every image and every step, perturb a copy of the image and run one forward pass. Both
must give the same scores to 1e-5; the script prints both times and the speed-up (goal: at least 5x on CPU).
The two run alternately, and the speed-up compares the fastest run of each (the least disturbed by other work on
the machine), with the ratio of the medians beside it.

Both do the same number of forward images, so the speed-up is what batching buys: per-call overhead and thread
synchronisation amortised over a batch, channels-last convolutions, endpoints evaluated once. With one CPU thread a
batch-1 forward of this CNN is already efficient and the gap is smaller than with several threads.

    python bench/metrics_speed.py [--images 64] [--size 64] [--steps 50] [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
from scipy import ndimage

from xaiboard.runner.benchmarks import Faithfulness


def small_cnn(classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, classes),
    ).eval()


def gradient_maps(network: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """|gradient| x input summed over channels: realistic maps with structure and few ties."""
    x = inputs.clone().requires_grad_(True)
    network(x).gather(1, targets[:, None]).sum().backward()
    return (x.grad * inputs).sum(1).abs().detach()


def loop_auc(network, inputs, targets, saliency, steps: int, insertion: bool) -> torch.Tensor:
    """The straightforward way: one perturbed copy and one forward pass per step per image."""
    _, channels, height, width = inputs.shape
    pixels = height * width
    scores = []
    for image, target, relevance in zip(inputs, targets, saliency):
        if insertion:  # start from a Gaussian blur (11 px kernel, sigma 5, edges replicated), reveal the image
            start = torch.from_numpy(np.stack([
                ndimage.gaussian_filter(channel.double().numpy(), sigma=5.0, mode="nearest", truncate=1.0)
                for channel in image
            ])).float()
            source = image
        else:  # start from the image, delete to zero
            start, source = image, torch.zeros_like(image)
        # most relevant first; equal values keep row-major order
        order = np.argsort(-relevance.flatten().numpy(), kind="stable")
        curve = []
        for k in range(steps + 1):
            count = math.floor(k * pixels / steps + 0.5)
            chosen = order[:count]
            rows, columns = chosen // width, chosen % width
            perturbed = start.clone()
            perturbed[:, rows, columns] = source[:, rows, columns]
            with torch.no_grad():
                probability = torch.softmax(network(perturbed[None]), dim=1)[0, target]
            curve.append(float(probability))
        trapezoid = getattr(np, "trapezoid", None) or np.trapz
        scores.append(trapezoid(curve, dx=1.0 / steps))
    return torch.tensor(scores, dtype=torch.float64)


def alternate(first, second, repeat: int):
    """Run the two actions alternately ``repeat`` times each (so both see the same machine load); returns the
    times of each and their last results."""
    times: tuple[list[float], list[float]] = ([], [])
    results = [None, None]
    for _ in range(repeat):
        for slot, action in enumerate((first, second)):
            start = time.perf_counter()
            results[slot] = action()
            times[slot].append(time.perf_counter() - start)
    return times, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    network = small_cnn()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(args.images, 3, args.size, args.size, generator=generator)
    targets = torch.randint(0, 10, (args.images,), generator=generator)
    saliency = gradient_maps(network, inputs, targets)
    forwards = args.images * (args.steps + 1)
    print(f"{args.images} images {args.size}x{args.size}, {args.steps} steps ({forwards} forward images per metric), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeat} alternating runs each")
    print(f"{'metric':<14}{'loop min s':>11}{'ours min s':>11}{'speed-up':>10}{'(medians)':>11}{'max |diff|':>12}")
    worst = math.inf
    for metric in ("InsertionAUC", "DeletionAUC"):
        bench = Faithfulness(metric, steps=args.steps)
        insertion = metric == "InsertionAUC"
        (loop_times, our_times), (expected, scores) = alternate(
            lambda: loop_auc(network, inputs, targets, saliency, args.steps, insertion),
            lambda: bench.evaluate(network, inputs, targets, saliency),
            args.repeat,
        )
        difference = float((scores.double() - expected).abs().max())
        if difference > 1e-5:
            raise SystemExit(f"{metric}: the two implementations differ by {difference:.2e} (> 1e-5)")
        speedup = min(loop_times) / min(our_times)
        median_speedup = statistics.median(loop_times) / statistics.median(our_times)
        worst = min(worst, speedup)
        print(f"{metric:<14}{min(loop_times):>11.2f}{min(our_times):>11.2f}{speedup:>9.1f}x{median_speedup:>10.1f}x"
              f"{difference:>12.1e}")
    print(f"scores agree to 1e-5; smallest speed-up {worst:.1f}x (fastest run of each; goal >= 5x)")


if __name__ == "__main__":
    main()
