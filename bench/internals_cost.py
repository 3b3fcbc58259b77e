"""What looking inside the network costs at ImageNet size, against the bare forward pass, side by side in one run.

* The pretrained EfficientNet-Lite0 (224 x 224, 1000 classes) on the photos demo's photos: the recorder of
  ``register_internals`` with the photos demo's three layers and top 8 channels (filters are stored once per run
  and not timed).
* A ViT-S/16-sized ``SmallViT`` (224 x 224, 16 x 16 patches, 384 wide, 12 blocks of 6 heads, 1000 classes; random
  weights: no pretrained ViT ships in a package) whose attention is the fused ``scaled_dot_product_attention``: the
  forward under ``capture_attention`` (weights computed from q and k), the recorder with ``attention=True`` and with
  the temperature intervention (one more pass), and ``AttentionRollout`` beside ``Gradient``.

Variants alternate within each repeat so other work on the machine hits them alike; fastest of ``--repeats``.
Prints seconds per image, the ratio to the bare forward pass, and the array bytes each sample adds to the summary
(before the store's compression).

Usage: python bench/internals_cost.py [--images N] [--repeats R]
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

from xaiboard.runner.allocator import keep_freed_memory  # noqa: E402
from xaiboard.runner.efficientnet import load_pretrained  # noqa: E402
from xaiboard.runner.explainers import AttentionRollout, Gradient  # noqa: E402
from xaiboard.runner.internals.attention import capture_attention  # noqa: E402
from xaiboard.runner.internals.recorder import InternalsRecorder  # noqa: E402
from xaiboard.runner.photos import photos  # noqa: E402
from xaiboard.runner.photos_demo import INSIDE_LAYERS, INSIDE_TOP_K  # noqa: E402
from xaiboard.runner.vit import SmallViT  # noqa: E402


def fastest(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    best = {name: float("inf") for name in variants}
    for _ in range(repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1)


def bare(network: torch.nn.Module, inputs: torch.Tensor) -> Callable[[], object]:
    def call() -> object:
        with torch.no_grad():
            return network(inputs)
    return call


def captured(network: torch.nn.Module, inputs: torch.Tensor) -> Callable[[], object]:
    def call() -> object:
        with torch.no_grad(), capture_attention(network) as record:
            network(inputs)
        return record
    return call


def stored_bytes(records) -> int:
    """Array bytes the records hold (feature map codes with their per-channel numbers, attention as float16,
    intervened probabilities as float32)."""
    total = 0
    for r in records.feature_maps:
        total += r.codes.nbytes + r.channels.nbytes + r.low.nbytes + r.high.nbytes + r.means.nbytes
    total += sum(r.maps.size * 2 for r in records.attention)
    total += sum(r.probs.size * 4 for r in records.interventions)
    return total


def report(title: str, times: dict[str, float], images: int, reference: str) -> None:
    print(title)
    print(f"  {'':<34}{'s/image':>9}{'x forward':>11}")
    for name, seconds in times.items():
        print(f"  {name:<34}{seconds / images:9.3f}{seconds / times[reference]:11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()
    torch.manual_seed(0)
    data = photos()
    inputs = torch.stack([item["image"] for item in data.items[:args.images]])
    ids = list(range(len(inputs)))
    print(f"{len(inputs)} images of 224 x 224, 1000 classes, {torch.get_num_threads()} threads, "
          f"fastest of {args.repeats}\n")

    cnn = load_pretrained()
    features = InternalsRecorder(cnn, layers=INSIDE_LAYERS, top_k=INSIDE_TOP_K)
    times = fastest({"forward": bare(cnn, inputs),
                     f"feature maps (3 layers, top {INSIDE_TOP_K})": lambda: features.record(inputs, ids, softmax)},
                    args.repeats)
    report("EfficientNet-Lite0 (pretrained)", times, len(inputs), "forward")
    kept = features.record(inputs, ids, softmax)
    print(f"  stored per image: {stored_bytes(kept) / len(inputs) / 1024:.1f} KB of feature maps "
          f"({', '.join(INSIDE_LAYERS)})\n")

    vit = SmallViT(1000, image_size=224, patch=16, dim=384, depth=12, heads=6, mlp_ratio=4.0).eval()
    for parameter in vit.parameters():
        parameter.requires_grad_(False)
    unit = (inputs - inputs.amin()) / (inputs.amax() - inputs.amin())  # SmallViT expects [0, 1]
    with torch.no_grad():
        targets = vit(unit).argmax(dim=1)
    attention = InternalsRecorder(vit, attention=True)
    intervened = InternalsRecorder(vit, attention=True, scale=3.0)
    rollout, gradient = AttentionRollout(vit), Gradient(vit)
    times = fastest({
        "forward (fused attention)": bare(vit, unit),
        "forward under capture_attention": captured(vit, unit),
        "attention maps (recorder)": lambda: attention.record(unit, ids, softmax),
        "attention maps + intervention x3": lambda: intervened.record(unit, ids, softmax),
        "AttentionRollout maps": lambda: rollout.explain(unit, targets),
        "Gradient maps": lambda: gradient.explain(unit, targets),
    }, args.repeats)
    report("ViT-S/16-sized SmallViT (random weights)", times, len(unit), "forward (fused attention)")
    kept = intervened.record(unit, ids, softmax)
    record = captured(vit, unit)()
    held = sum(w.numel() * w.element_size() for w in record.weights)
    print(f"  stored per image: {stored_bytes(kept) / len(unit) / 1024:.1f} KB (12 layers x 6 heads x 14 x 14 "
          f"attention in float16, 1000 intervened probabilities)")
    print(f"  held while capturing: {held / 2**20:.1f} MB of attention weights for {len(unit)} images "
          f"({held / len(unit) / 2**20:.2f} MB per image, freed after the group)")


if __name__ == "__main__":
    main()
