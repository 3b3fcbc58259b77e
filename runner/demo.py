"""``xaiboard demo``: train a small CNN in seconds, explain and score its test images, serve the dashboard.

``digits``: scikit-learn's bundled handwritten digits upsampled to 32x32, softmax, every explainer and benchmark.
``shapes``: synthetic multi-label images of coloured shapes with exact boxes and masks, sigmoid head; with
``model="vit"`` a small Vision Transformer instead of the CNN (attention rollout beside Grad-CAM, the attention
heads and an attention intervention kept; see :mod:`.vit`).
``photos``: the pretrained EfficientNet-Lite0 on real photos at 224 x 224 with 1000 ImageNet classes (no training;
see :mod:`.photos_demo`). The demo is deterministic for a seed; its parameters (RISE masks, IG steps, SmoothGrad samples, Occlusion window, benchmark
steps) are chosen so the whole run takes a minute or two on two CPU cores.
"""

from __future__ import annotations

import os
import sys

# The demo is an application, so it may configure the process: OpenMP threads that busy-wait between the many small
# kernels of a small CNN slow it down many times over on a machine that runs other work too.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from .datasets import DemoData, digits, shapes  # noqa: E402
from .explainers import (  # noqa: E402
    RISE,
    Deconvolution,
    DeepLift,
    GradCAM,
    Gradient,
    GuidedBackprop,
    GuidedGradCAM,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    RandomMap,
    SmoothGrad,
)
from .models import SmallCNN, train_classifier  # noqa: E402
from .runner import ImageClassificationRunner  # noqa: E402

DATASETS = ("digits", "shapes", "photos")
MODELS = ("cnn", "vit")
IMAGE_SIZE = {"digits": 32, "shapes": 32}
EPOCHS = {"digits": 6, "shapes": 4}
#: the ViT demo: 8 x 8 patches of the 32 x 32 images (a 4 x 4 grid), trained on more images than the CNN needs
#: (a transformer has no convolution's prior): test F1 0.91 after about a minute on one CPU thread
VIT_TRAIN = 8000
VIT_PATCH = 8
VIT_EPOCHS = 20
VIT_LR = 3e-3
#: the CNN's layers whose feature maps (the 16 most active channels) and filters the demo keeps
CNN_LAYERS = ["features.conv1", "features.conv2", "features.conv3"]
INSIDE_TOP_K = 16
#: the ViT demo's attention intervention: pre-softmax scores times 3 in every layer (a sharper softmax)
VIT_SCALE = 3.0


def _say(message: str) -> None:
    print(message, flush=True)


def prepare(dataset: str, seed: int, model: str = "cnn") -> tuple[DemoData, nn.Module, str]:
    """The demo's data and its trained network (on the CPU, channels-last: oneDNN runs it several times faster)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown demo dataset {dataset!r}: use {' or '.join(DATASETS)}")
    if model == "vit":
        return _prepare_vit(seed)
    torch.manual_seed(seed)
    if dataset == "digits":
        data = digits(size=IMAGE_SIZE[dataset], seed=seed)
        network = SmallCNN(len(data.classes), channels=1, width=16)
        loss: Callable[..., torch.Tensor] = nn.functional.cross_entropy
        activation = "softmax"
    else:
        data = shapes(n_train=2000, n_test=400, size=IMAGE_SIZE[dataset], seed=seed)
        network = SmallCNN(len(data.classes), channels=3, width=16)
        loss = nn.functional.binary_cross_entropy_with_logits
        activation = "sigmoid"
    network = network.to(memory_format=torch.channels_last)
    started = time.perf_counter()
    train_classifier(network, data.train_inputs, data.train_targets, epochs=EPOCHS[dataset], loss=loss, seed=seed,
                     lr=5e-3, batch_size=32)
    _say(f"trained {type(network).__name__} on {len(data.train_inputs)} {dataset} images in "
         f"{time.perf_counter() - started:.1f} s: {describe_accuracy(network, data, activation)}")
    return data, network, activation


def _prepare_vit(seed: int) -> tuple[DemoData, nn.Module, str]:
    from .vit import SmallViT, train_vit

    torch.manual_seed(seed)
    data = shapes(n_train=VIT_TRAIN, n_test=400, size=IMAGE_SIZE["shapes"], seed=seed)
    network = SmallViT(len(data.classes), image_size=IMAGE_SIZE["shapes"], patch=VIT_PATCH)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this small a network trains faster on one thread, and to the weights the tests check
    try:
        train_vit(network, data.train_inputs, data.train_targets, seed=seed, epochs=VIT_EPOCHS, lr=VIT_LR)
    finally:
        torch.set_num_threads(threads)
    _say(f"trained {type(network).__name__} on {len(data.train_inputs)} shapes images in "
         f"{time.perf_counter() - started:.1f} s: {describe_accuracy(network, data, 'sigmoid')}")
    return data, network, "sigmoid"


@torch.no_grad()
def describe_accuracy(network: nn.Module, data: DemoData, activation: str) -> str:
    """Test accuracy (single-label) or exact-match accuracy and F1 (multi-label)."""
    inputs, labels = data.test_tensors()
    logits = network(inputs)
    if activation == "softmax":
        accuracy = (logits.argmax(1) == torch.tensor([l[0] for l in labels])).float().mean()
        return f"test accuracy {100 * float(accuracy):.1f}%"
    predicted = logits.sigmoid() >= 0.5
    truth = torch.zeros_like(predicted)
    for row, row_labels in enumerate(labels):
        truth[row, row_labels] = True
    exact = (predicted == truth).all(1).float().mean()
    f1 = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    return f"test exact-match accuracy {100 * float(exact):.1f}%, F1 {float(f1):.3f}"


def demo_explainers(network: nn.Module, activation: str, seed: int) -> list[Any]:
    """Every explainer, with parameters sized for 32x32 images and a small CNN; Integrated Gradients twice, from a
    black (zero) and a white baseline, so the browser can compare them, the first also finding its steps needed;
    and a random map, the chance level every method should beat."""
    layer = SmallCNN.gradcam_layer
    return [
        Gradient(network),
        GuidedBackprop(network),
        Deconvolution(network),
        GradCAM(network, layer),
        GuidedGradCAM(network, layer),
        IntegratedGradients(network, n_steps=16, search_steps=128),
        IntegratedGradients(network, n_steps=16, baseline="white", name="IntegratedGradients[white]"),
        DeepLift(network),
        InputXGradient(network),
        SmoothGrad(network, n_samples=8, stdev=0.3 if activation == "softmax" else 0.1, seed=seed),
        Occlusion(network, window=8, stride=6),
        RISE(network, n_masks=128, grid=4, activation=activation, seed=seed),
        RandomMap(network, seed=seed),
    ]


def vit_explainers(network: nn.Module, seed: int) -> list[Any]:
    """The ViT demo's explainers: attention rollout against gradient methods and Grad-CAM on the patch grid (the
    pointing game on the shapes' boxes judges them), and a random map as the chance level."""
    from .explainers import AttentionRollout

    return [
        AttentionRollout(network),
        GradCAM(network, type(network).gradcam_layer),
        Gradient(network),
        IntegratedGradients(network, n_steps=16),
        SmoothGrad(network, n_samples=8, stdev=0.1, seed=seed),
        RandomMap(network, seed=seed),
    ]


def demo_benchmarks(image_size: int, seed: int) -> list[Any]:
    """Every benchmark, with parameters sized for the demo's images."""
    from .benchmarks import ClassSensitivity, Faithfulness, Localization, Randomization, Robustness, Sparseness

    return [
        Faithfulness("InsertionAUC", steps=16),
        Faithfulness("DeletionAUC", steps=16),
        Faithfulness("NaiveFaithfulness", steps=16),
        # 15 px is the pointing game's tolerance at 224x224; scaled to the demo's image size
        Localization("PointingGame", tolerance=max(1.0, round(15 * image_size / 224))),
        Localization("IoSR"),
        Robustness(n_samples=2, seed=seed),
        ClassSensitivity(),
        Sparseness(),
        Randomization(),
    ]


def run_demo(
    dataset: str = "digits",
    model: str = "cnn",
    samples: int = 300,
    out: str | Path = "xaiboard-runs",
    serve: bool = True,
    seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 8080,
    progress: bool = True,
) -> Path:
    """Train (or, for photos, load the pretrained model), explain ``samples`` test images into ``out/<dataset>``
    (``out/shapes-vit`` for the ViT; started over each time) and, with ``serve``, serve the dashboard over
    ``out``. Returns the summary directory."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown demo dataset {dataset!r}: use {', '.join(DATASETS)}")
    if model not in MODELS or (model == "vit" and dataset != "shapes"):
        raise ValueError(f"unknown demo model {model!r} for {dataset}: the ViT is trained on shapes only; use "
                         "--dataset shapes --model vit")
    summary_dir = Path(out) / (dataset if model == "cnn" else f"{dataset}-{model}")
    runner = _photos_runner(summary_dir, samples, seed) if dataset == "photos" else _trained_runner(
        dataset, model, samples, summary_dir, seed)
    started = time.perf_counter()
    with runner.run(overwrite=True, progress=progress) as summary:
        counts = summary.counts()
    _say(f"explained {counts['num_samples']} images in {time.perf_counter() - started:.1f} s: "
         f"{counts['num_saliency_maps']} maps, {counts['num_scores']} scores, {counts['num_failures']} failures")
    _say(f"summary: {summary_dir.resolve()}")
    if not serve:
        _print_info(summary_dir)
        return summary_dir
    from xaiboard.server.serving import serve as serve_dashboard

    serve_dashboard(str(out), host=host, port=port, reload_interval=5.0)
    return summary_dir


def _trained_runner(dataset: str, model: str, samples: int, summary_dir: Path,
                    seed: int) -> ImageClassificationRunner:
    data, network, activation = prepare(dataset, seed, model)
    items = data.test_items[:samples]
    if samples > len(items):
        _say(f"the {dataset} test set has {len(items)} images; explaining all of them")
    runner = ImageClassificationRunner(
        summary_dir, network, items, data.classes, activation_fn=activation, threshold=0.5, mean=data.mean,
        std=data.std, batch_size=64, device="cpu",
        name=f"{dataset} demo (seed {seed})" if model == "cnn" else f"{dataset} demo, Vision Transformer (seed {seed})",
    )
    benchmarks = demo_benchmarks(IMAGE_SIZE[dataset], seed)
    if model == "vit":
        runner.register_saliency(vit_explainers(network, seed), benchmarks)
        runner.register_internals(layers=["patch_embed"], attention=True, scale=VIT_SCALE)
    else:
        runner.register_saliency(demo_explainers(network, activation, seed), benchmarks)
        runner.register_internals(layers=CNN_LAYERS, top_k=INSIDE_TOP_K)
    runner.register_uncertainty(n_samples=10)
    return runner


def _photos_runner(summary_dir: Path, samples: int, seed: int) -> ImageClassificationRunner:
    from .photos_demo import photos_runner

    runner = photos_runner(summary_dir, samples, seed)
    _say(f"loaded the pretrained EfficientNet-Lite0; explaining {len(runner.source)} photos at 224x224")
    return runner


def _print_info(summary_dir: Path) -> None:
    """What ``xaiboard info`` says about the summary."""
    from xaiboard.server.cli import info_command

    info_command.main([str(summary_dir)], prog_name="xaiboard info", standalone_mode=False)
