"""Bad input is refused before any work, with one message naming the item and what is wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nets import TinyNet
from xaiboard.runner import ImageClassificationRunner, InvalidInputError
from xaiboard.runner.data import DataSource
from xaiboard.runner.explainers import GradCAM, Gradient, Occlusion

CLASSES = ["cat", "dog", "bird", "fish"]
SIZE = 12


def good_items(count: int = 4) -> list[dict]:
    return [{"image": torch.rand((3, SIZE, SIZE)), "labels": [i % 4], "boxes": [(1, 1, 3, 3)]}
            for i in range(count)]


def with_item(index: int, **fields) -> list[dict]:
    items = good_items()
    items[index] = {**items[index], **fields}
    return items


def nan_image() -> torch.Tensor:
    image = torch.rand((3, SIZE, SIZE))
    image[1, 4, 7] = math.nan
    return image


DATA_CASES = {
    "image of the wrong rank": (with_item(1, image=torch.rand((SIZE, SIZE))),
                                r"item 1: the image must be C x H x W, got shape \(12, 12\) \(add the channel "
                                r"dimension with image.unsqueeze\(0\)\)"),
    "NaN pixel": (with_item(3, image=nan_image()), r"item 3: the image holds NaN or inf pixels"),
    "inf pixel": (with_item(0, image=torch.full((3, SIZE, SIZE), math.inf)), r"item 0: the image holds NaN or inf"),
    "label out of range": (with_item(1, labels=[7]), r"item 1: label 7 is out of range for 4 classes \(0..3\)"),
    "negative label": (with_item(1, labels=-1), r"item 1: label -1 is out of range"),
    "float labels": (with_item(2, labels=torch.tensor([0.0, 1.0, 0.0, 0.0])),
                     r"item 2: labels must be integer class indices, got a torch.float32 tensor \(for a multi-hot "
                     r"vector pass vector.nonzero\(\) indices\)"),
    "box outside the image": (with_item(2, boxes=[(10, 0, 5, 3)]),
                              r"item 2: box 0 \(x=10, y=0, width=5, height=3\) lies outside the 12x12 image "
                              r"\(x is the column\)"),
    "box with zero width": (with_item(0, boxes=[(1, 1, 0, 3)]),
                            r"item 0: box 0 \(x=1, y=1, width=0, height=3\) must have a positive width and height"),
    "box with negative height": (with_item(0, boxes=[(1, 1, 2, -3)]), r"must have a positive width and height"),
    "boxes without labels": (with_item(1, labels=[1], boxes=[(1, 1, 3, 3), (2, 2, 3, 3)]),
                             r"item 1: 2 boxes but 1 labels; boxes\[i\] belongs to labels\[i\]"),
    "malformed box": (with_item(1, boxes=[(1, 2, 3)]), r"item 1: a box must be \(x, y, width, height\)"),
    "mask of the wrong size": (with_item(1, masks={1: np.ones((4, 4), dtype=bool)}),
                               r"item 1: the mask of label 1 is \(4, 4\), expected \(12, 12\)"),
    "mask of a label the item lacks": (with_item(1, masks={3: np.ones((SIZE, SIZE), dtype=bool)}),
                                       r"item 1: a mask is given for label 3, which is not a label of the item"),
    "mapping without image": (with_item(2, image=None) and [good_items()[0], {"labels": [1]}],
                              r"item 1: a mapping item needs an 'image' key"),
    "tuple of four": ([(torch.rand((3, SIZE, SIZE)), 0, [], "extra")], r"item 0: a tuple item must be"),
    "string image": ([("not an image", 0)], r"item 0: the image must be a C x H x W tensor or array, got str"),
    "PIL image without a transform": ([(Image.new("RGB", (SIZE, SIZE)), 0)],
                                      r"item 0: the image is a PIL image \(RGB, 12x12\); pass transform= to the "
                                      r"runner, a function that turns it into the normalised C x H x W tensor"),
    "H x W x C array": ([(np.zeros((SIZE, SIZE, 3), dtype=np.uint8), 0)],
                        r"item 0: the image is an H x W x C array \(12, 12, 3\); pass transform="),
    "named item": ([{"image": torch.rand((3, SIZE, SIZE)), "labels": [9], "name": "cat_003.jpg"}],
                   r"item 0 \('cat_003.jpg'\): label 9 is out of range"),
    "empty data": ([], r"the data holds no items"),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_is_refused_before_anything_is_written(tmp_path, case):
    items, message = DATA_CASES[case]
    net = TinyNet(batchnorm=False, dropout=None)
    runner = ImageClassificationRunner(tmp_path / "run", net, items, CLASSES)
    runner.register_saliency([Gradient(net)])
    with pytest.raises(InvalidInputError, match=message):
        runner.run(progress=False)
    assert not (tmp_path / "run").exists()


def runner_with(tmp_path, **kwargs):
    net = kwargs.pop("network", None) or TinyNet(batchnorm=False, dropout=None)
    classes = kwargs.pop("classes", CLASSES)
    return ImageClassificationRunner(tmp_path / "run", net, good_items(), classes, **kwargs)


ARGUMENT_CASES = {
    "classes count differs from the outputs": (
        lambda tmp: runner_with(tmp, classes=["cat", "dog", "bird"]).run(progress=False),
        r"the model has 4 outputs but 3 classes were given"),
    "unknown activation": (lambda tmp: runner_with(tmp, activation_fn="softmx"),
                           r"unknown activation 'softmx': use 'softmax', 'sigmoid' or a callable"),
    "threshold above one": (lambda tmp: runner_with(tmp, threshold=1.5), r"threshold must be a probability"),
    "top_k beyond the classes": (lambda tmp: runner_with(tmp, top_k=9), r"top_k must be an integer in 1..4"),
    "batch size zero": (lambda tmp: runner_with(tmp, batch_size=0), r"batch_size must be a positive integer"),
    "mean without std": (lambda tmp: runner_with(tmp, mean=[0.5, 0.5, 0.5]), r"give both mean and std"),
    "mean of the wrong length": (
        lambda tmp: runner_with(tmp, mean=[0.5, 0.5], std=[0.2, 0.2]).run(progress=False),
        r"mean has 2 values but the images have 3 channels"),
    "repeated class names": (lambda tmp: runner_with(tmp, classes=["cat", "dog", "cat", "fish"]),
                             r"class names must be unique; repeated: 'cat'"),
    "model that cannot take the images": (
        lambda tmp: runner_with(tmp, network=nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(),
                                                          nn.LazyLinear(4))).run(progress=False),
        r"the model fails on item 0 \(image shape \(3, 12, 12\)\): RuntimeError"),
    "layer name that does not exist": (lambda tmp: GradCAM(TinyNet(batchnorm=False, dropout=None), "features.conv3"),
                                       r"layer 'features.conv3' does not exist in TinyNet \(close names: "
                                       r"features.conv2, features.conv1"),
    "layer without feature maps": (
        lambda tmp: _register(runner_with(tmp), lambda net: GradCAM(net, "fc")).run(progress=False),
        r"GradCAM: layer 'fc' must output N x C x h x w feature maps, it outputs shape \(1, 4\)"),
    "occlusion window larger than the images": (
        lambda tmp: _register(runner_with(tmp), lambda net: Occlusion(net, window=20)).run(progress=False),
        r"Occlusion: window \(20, 20\) is larger than the 12x12 images"),
    "two explainers with one name": (
        lambda tmp: _register(runner_with(tmp), lambda net: Gradient(net), lambda net: Gradient(net)),
        r"two explainers are named 'Gradient'; pass name=... to tell them apart"),
    "explainer of another network": (
        lambda tmp: runner_with(tmp).register_saliency([Gradient(TinyNet(batchnorm=False, dropout=None))]),
        r"explainer 'Gradient' was built for another network than the runner's; use explainer.with_network"),
    "benchmark lacking the interface": (
        lambda tmp: runner_with(tmp).register_saliency([], [object()]),
        r"benchmark 'object' lacks name, higher_is_better, range"),
    "data that is not iterable": (lambda tmp: ImageClassificationRunner(tmp / "run", TinyNet(batchnorm=False, dropout=None), 42, CLASSES),
                                  r"data must be a Dataset, DataLoader or iterable of items, got int"),
}


def _register(runner, *makers):
    runner.register_saliency([make(runner.network) for make in makers])
    return runner


@pytest.mark.parametrize("case", sorted(ARGUMENT_CASES))
def test_bad_arguments_are_refused_with_their_message(tmp_path, case):
    action, message = ARGUMENT_CASES[case]
    with pytest.raises(ValueError, match=message):
        action(tmp_path)
    assert not (tmp_path / "run").exists()


def test_validation_reads_every_item_and_reports_the_first_bad_one_only_after_the_good_ones():
    items = good_items(600)
    items[517] = {**items[517], "image": nan_image()}
    with pytest.raises(InvalidInputError, match=r"^item 517: the image holds NaN or inf pixels$"):
        DataSource(items).validate(len(CLASSES))
    spec = DataSource(good_items(600)).validate(len(CLASSES))
    assert (spec.count, spec.channels, spec.height, spec.width) == (600, 3, SIZE, SIZE)
