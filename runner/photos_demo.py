"""The photos demo: the pretrained EfficientNet-Lite0 explained on real photos at 224 x 224, 1000 classes.

Six explainers with the defaults that scale with the input (Grad-CAM on the head's 7 x 7 grid, Gradient,
Integrated Gradients, SmoothGrad, Occlusion, RISE) and the benchmarks that mean something on photos with measured
boxes, on a seeded subset of the photos (Robustness, the most expensive metric, explains every pair again
``n_samples`` times); every photo gets its maps. ``bench/runner_scale.py`` times these same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from torch import nn

from .efficientnet import MEAN, STD, EfficientNetLite0, load_pretrained
from .explainers import RISE, GradCAM, Gradient, IntegratedGradients, Occlusion, RandomMap, SmoothGrad
from .photos import photos
from .runner import ImageClassificationRunner

#: photos scored by every benchmark (the rest get maps and predictions only)
BENCHMARK_SAMPLES = 6
#: layers whose feature maps and filters the demo keeps: the stem's RGB 3 x 3 filters at 112 x 112, and two
#: depthwise 5 x 5 layers at 28 x 28 and 7 x 7; the 8 most active channels of each (about 90 kB per photo)
INSIDE_LAYERS = ["stem.conv", "blocks.3.depthwise.conv", "blocks.11.depthwise.conv"]
INSIDE_TOP_K = 8


def photo_explainers(network: nn.Module, seed: int = 0) -> list[Any]:
    """The demo's explainers, each with its input-scaled default cost; Integrated Gradients from the zero input (the
    mean colour) and from a blurred copy, to compare baselines; a random map as the chance level."""
    return [
        GradCAM(network, EfficientNetLite0.gradcam_layer),
        Gradient(network),
        IntegratedGradients(network),
        IntegratedGradients(network, baseline="blur", name="IntegratedGradients[blur]"),
        SmoothGrad(network, n_samples=16, seed=seed),
        Occlusion(network),
        RISE(network, seed=seed),
        RandomMap(network, seed=seed),
    ]


def photo_benchmarks(seed: int = 0) -> list[Any]:
    """Faithfulness, localization on the measured boxes, sparseness and (on a subset) robustness."""
    from .benchmarks import Faithfulness, Localization, Robustness, Sparseness

    return [
        Faithfulness("InsertionAUC", steps=32),
        Faithfulness("DeletionAUC", steps=32),
        Localization("PointingGame", tolerance=15),
        Localization("IoSR"),
        Sparseness(),
        Robustness(n_samples=2, seed=seed),
    ]


def photos_runner(summary_dir: str | Path, samples: Optional[int] = None, seed: int = 0,
                  network: Optional[nn.Module] = None, name: Optional[str] = None) -> ImageClassificationRunner:
    """A runner over the photos (the first ``samples`` of them) with the demo's explainers and benchmarks."""
    network = network if network is not None else load_pretrained()
    data = photos()
    items = data.items[:samples] if samples else data.items
    runner = ImageClassificationRunner(summary_dir, network, items, data.classes, activation_fn="softmax",
                                       mean=list(MEAN), std=list(STD), batch_size=8, device="cpu",
                                       name=name or "photos demo: EfficientNet-Lite0 (pretrained)")
    runner.register_saliency(photo_explainers(network, seed), photo_benchmarks(seed),
                             benchmark_samples=BENCHMARK_SAMPLES, seed=seed)
    runner.register_internals(layers=INSIDE_LAYERS, top_k=INSIDE_TOP_K)
    return runner
