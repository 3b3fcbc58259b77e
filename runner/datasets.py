"""Demo datasets made in code, no download: scikit-learn's bundled handwritten digits (upsampled) and synthetic
multi-label images of coloured shapes with exact boxes and masks.

Both return a :class:`DemoData`: training tensors for :func:`xaiboard.runner.models.train_classifier` and test
items in the runner's mapping format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

SHAPE_CLASSES = ["circle", "square", "triangle", "cross"]
#: unlabelled look-alikes drawn now and then, so that the model can be fooled (false positives) as on real data
DISTRACTORS = ["ring", "diamond"]
DISTRACTOR_RATE = 0.25


@dataclass
class DemoData:
    classes: list[str]
    train_inputs: Tensor
    train_targets: Tensor
    test_items: list[dict[str, Any]]
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None

    def test_tensors(self) -> tuple[Tensor, list[list[int]]]:
        """The test images stacked, and their label lists (to measure accuracy)."""
        return torch.stack([item["image"] for item in self.test_items]), [item["labels"] for item in self.test_items]


def digits(size: int = 32, test_fraction: float = 0.3, seed: int = 0) -> DemoData:
    """The 1797 8x8 digits of scikit-learn upsampled (bilinear) to ``size`` x ``size``, normalised with the training
    mean and std; a stratified split. Each test item carries the digit's ink as the mask of its label."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    targets = torch.from_numpy(bunch.target.astype(np.int64))
    indices = np.arange(len(targets))
    train_idx, test_idx = train_test_split(indices, test_size=test_fraction, random_state=seed,
                                           stratify=bunch.target)
    mean, std = float(images[train_idx].mean()), float(images[train_idx].std())
    normalised = (images - mean) / std
    test_items = [
        {
            "image": normalised[i],
            "labels": [int(targets[i])],
            "masks": {int(targets[i]): (images[i, 0] > 0.3).numpy()},
            "name": f"digit-{int(i):04d}",
        }
        for i in test_idx
    ]
    return DemoData([str(d) for d in range(10)], normalised[train_idx], targets[train_idx], test_items, [mean], [std])


def _shape_mask(kind: str, size: int, image_size: int, row: int, col: int) -> np.ndarray:
    """A boolean image_size x image_size mask of one shape whose bounding square starts at (row, col)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    centre = (size - 1) / 2
    if kind == "circle":
        local = (rows - centre) ** 2 + (cols - centre) ** 2 <= (size / 2) ** 2
    elif kind == "square":
        local = np.ones((size, size), dtype=bool)
    elif kind == "triangle":
        local = np.abs(cols - centre) <= (rows + 1) / size * size / 2
    elif kind == "ring":
        distance = (rows - centre) ** 2 + (cols - centre) ** 2
        local = (distance <= (size / 2) ** 2) & (distance >= (0.3 * size) ** 2)
    elif kind == "diamond":
        local = np.abs(rows - centre) + np.abs(cols - centre) <= size / 2
    elif kind == "cross":
        bar = max(2, size // 3)
        low = (size - bar) // 2
        local = ((rows >= low) & (rows < low + bar)) | ((cols >= low) & (cols < low + bar))
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    mask = np.zeros((image_size, image_size), dtype=bool)
    mask[row:row + size, col:col + size] = local
    return mask


def _shapes_image(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, list[int], list[tuple], dict]:
    image = rng.normal(0.15, 0.08, (image_size, image_size, 3)).clip(0, 1)
    taken = np.zeros((image_size, image_size), dtype=bool)
    labels: list[int] = []
    boxes: list[tuple[float, float, float, float]] = []
    masks: dict[int, np.ndarray] = {}
    for _ in range(int(rng.integers(1, 4))):
        for _attempt in range(30):
            size = int(rng.integers(image_size // 6, image_size // 3 + 1))
            row, col = (int(v) for v in rng.integers(0, image_size - size + 1, 2))
            if not taken[max(0, row - 1):row + size + 1, max(0, col - 1):col + size + 1].any():
                break
        else:
            continue
        distractor = rng.random() < DISTRACTOR_RATE
        label = int(rng.integers(len(DISTRACTORS) if distractor else len(SHAPE_CLASSES)))
        kind = DISTRACTORS[label] if distractor else SHAPE_CLASSES[label]
        mask = _shape_mask(kind, size, image_size, row, col)
        taken[row:row + size, col:col + size] = True
        hue = rng.uniform(0.25, 1.0, 3)
        hue[rng.integers(3)] = 1.0
        image[mask] = hue
        if distractor:
            continue
        ys, xs = np.nonzero(mask)
        labels.append(label)
        boxes.append((float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)))
        masks[label] = masks.get(label, np.zeros_like(mask)) | mask
    return image, labels, boxes, masks


def shapes(n_train: int = 3000, n_test: int = 400, size: int = 40, seed: int = 0) -> DemoData:
    """Images with one to three coloured shapes (circle, square, triangle, cross; colours random, so the class is
    the form) on a noisy background, multi-label targets, exact boxes (tight bounds of the drawn pixels) and masks;
    a quarter of the shapes are unlabelled look-alikes (ring, diamond). Inputs are in [0, 1]."""
    rng = np.random.default_rng(seed)
    train_images, train_targets, test_items = [], [], []
    for index in range(n_train + n_test):
        image, labels, boxes, masks = _shapes_image(rng, size)
        tensor = torch.from_numpy(image.transpose(2, 0, 1).astype(np.float32))
        if index < n_train:
            target = torch.zeros(len(SHAPE_CLASSES))
            target[labels] = 1.0
            train_images.append(tensor)
            train_targets.append(target)
        else:
            test_items.append({"image": tensor, "labels": labels, "boxes": boxes, "masks": masks,
                               "name": f"shapes-{index - n_train:04d}"})
    return DemoData(list(SHAPE_CLASSES), torch.stack(train_images), torch.stack(train_targets), test_items)
