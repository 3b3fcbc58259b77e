"""Reading a user's dataset: item formats, conversion to tensors and the validation pass that refuses bad input.

Accepted items: ``image``, ``(image, labels)``, ``(image, labels, boxes)`` or a mapping with ``image``, ``labels``
(or ``label``), ``boxes``, ``masks``, ``name`` and ``display``. Images are C x H x W tensors or arrays (uint8 is
scaled to [0, 1]) or PIL images; ``transform`` is applied to every image first. ``labels`` are class indices;
``boxes[i] = (x, y, width, height)`` in input pixels (x is the column) belongs to ``labels[i]``; ``masks`` maps a label
to an H x W boolean mask.

Sample ids are dataset indices (map-style datasets, DataLoaders over them) or positions in iteration order (other
iterables), which is what lets a resumed run skip the samples already written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

FINITE_CHECK_CHUNK = 256


class InvalidInputError(ValueError):
    """Bad input found before any work started; the message names the item and what is wrong."""


@dataclass
class Item:
    """One sample, converted: ``image`` is C x H x W float32 on the CPU."""

    id: int
    image: Tensor
    labels: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    name: str = ""
    display: Optional[np.ndarray] = None

    @property
    def ground_truth(self) -> list[int]:
        """The distinct ground-truth labels in the order given."""
        return list(dict.fromkeys(self.labels))


@dataclass(frozen=True)
class DataSpec:
    """What the validation pass learned: how many items and their common image shape."""

    count: int
    channels: int
    height: int
    width: int


def _where(index: int, name: Optional[str] = None) -> str:
    return f"item {index}" + (f" ({name!r})" if name and name != str(index) else "")


def _is_pil(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(value, Image.Image)


def to_image_tensor(image: Any, where: str) -> Tensor:
    """A C x H x W float32 CPU tensor from a tensor, an array (C x H x W) or a PIL image (H x W x C)."""
    if _is_pil(image):
        array = np.asarray(image)
        image = torch.from_numpy(array.copy())
        image = image.unsqueeze(0) if image.dim() == 2 else image.permute(2, 0, 1)
    elif isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, Tensor):
        raise InvalidInputError(f"{where}: the image must be a C x H x W tensor or array, or a PIL image, "
                                f"got {type(image).__name__}")
    if image.dim() != 3:
        hint = " (add the channel dimension with image.unsqueeze(0))" if image.dim() == 2 else ""
        raise InvalidInputError(f"{where}: the image must be C x H x W, got shape {tuple(image.shape)}{hint}")
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif image.dtype == torch.bool:
        image = image.float()
    elif not image.is_floating_point():
        raise InvalidInputError(f"{where}: the image must hold floats (or uint8), got {image.dtype}")
    return image.detach().to(device="cpu", dtype=torch.float32)


def _label(value: Any, where: str) -> int:
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool:
        return int(value.item())
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    raise InvalidInputError(f"{where}: labels must be integer class indices, got {value!r}"
                            + (" (for a multi-hot vector pass vector.nonzero() indices)"
                               if isinstance(value, (float, Tensor, np.floating)) else ""))


def parse_labels(labels: Any, where: str) -> list[int]:
    if labels is None:
        return []
    if isinstance(labels, (Tensor, np.ndarray)):
        array = labels if isinstance(labels, Tensor) else torch.from_numpy(np.asarray(labels))
        if array.is_floating_point() or array.dtype == torch.bool:
            raise InvalidInputError(f"{where}: labels must be integer class indices, got a {array.dtype} "
                                    "tensor (for a multi-hot vector pass vector.nonzero() indices)")
        return [int(v) for v in array.reshape(-1).tolist()]
    if isinstance(labels, (str, bytes)):
        raise InvalidInputError(f"{where}: labels must be integer class indices, got the string {labels!r}")
    if isinstance(labels, Sequence):
        return [_label(v, where) for v in labels]
    return [_label(labels, where)]


def parse_boxes(boxes: Any, where: str) -> list[tuple[float, float, float, float]]:
    if boxes is None:
        return []
    if isinstance(boxes, (Tensor, np.ndarray)):
        array = np.asarray(boxes.detach().cpu() if isinstance(boxes, Tensor) else boxes, dtype=np.float64)
        if array.size == 0:
            return []
        if array.ndim != 2 or array.shape[1] != 4:
            raise InvalidInputError(f"{where}: boxes must be n x 4 (x, y, width, height), got shape {array.shape}")
        return [tuple(float(v) for v in row) for row in array]  # type: ignore[misc]
    if not isinstance(boxes, Sequence) or isinstance(boxes, (str, bytes)):
        raise InvalidInputError(f"{where}: boxes must be a sequence of (x, y, width, height), got {boxes!r}")
    result = []
    for box in boxes:
        try:
            values = [float(v) for v in (box.tolist() if isinstance(box, (Tensor, np.ndarray)) else box)]
        except (TypeError, ValueError):
            raise InvalidInputError(f"{where}: a box must be (x, y, width, height) numbers, got {box!r}") from None
        if len(values) != 4:
            raise InvalidInputError(f"{where}: a box must be (x, y, width, height), got {box!r}")
        result.append(tuple(values))
    return result  # type: ignore[return-value]


def parse_masks(masks: Any, where: str) -> dict[int, np.ndarray]:
    if masks is None:
        return {}
    if not isinstance(masks, Mapping):
        raise InvalidInputError(f"{where}: masks must map a label to an H x W mask, got {type(masks).__name__}")
    result = {}
    for label, mask in masks.items():
        label = _label(label, where)
        array = np.asarray(mask.detach().cpu() if isinstance(mask, Tensor) else mask)
        if array.dtype != np.bool_:
            if not np.isin(array, (0, 1)).all():
                raise InvalidInputError(f"{where}: the mask of label {label} must be boolean (or 0/1)")
            array = array.astype(bool)
        result[label] = array
    return result


def parse_display(display: Any, where: str) -> Optional[np.ndarray]:
    """An H x W or H x W x 3 uint8 array from an array, a tensor (C x H x W or H x W x C) or a PIL image."""
    if display is None:
        return None
    if _is_pil(display):
        display = display.convert("RGB") if display.mode not in ("L", "RGB") else display
        array = np.asarray(display)
    elif isinstance(display, Tensor):
        array = display.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[2] not in (1, 3):
            array = array.transpose(1, 2, 0)
    else:
        array = np.asarray(display)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise InvalidInputError(f"{where}: display must be an H x W or H x W x 3 image, got shape {array.shape}")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise InvalidInputError(f"{where}: display holds NaN or inf")
        array = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
    return array


def parse_item(raw: Any, index: int, transform: Optional[Callable[[Any], Any]] = None) -> Item:
    """Turn one dataset item into an :class:`Item`; raises :class:`InvalidInputError` naming the item."""
    where = _where(index)
    name = None
    labels = boxes = masks = display = None
    if isinstance(raw, Mapping):
        if "image" not in raw:
            raise InvalidInputError(f"{where}: a mapping item needs an 'image' key (it has {', '.join(map(str, raw))})")
        image = raw["image"]
        labels = raw.get("labels", raw.get("label"))
        boxes, masks, display, name = raw.get("boxes"), raw.get("masks"), raw.get("display"), raw.get("name")
    elif isinstance(raw, (tuple, list)):
        if not 1 <= len(raw) <= 3:
            raise InvalidInputError(f"{where}: a tuple item must be (image,), (image, labels) or "
                                    f"(image, labels, boxes), got {len(raw)} elements")
        image, labels, boxes = (list(raw) + [None, None])[:3]
    else:
        image = raw
    name = str(index) if name is None else str(name)
    where = _where(index, name)
    if transform is not None:
        image = transform(image)
    return Item(
        id=index,
        image=to_image_tensor(image, where),
        labels=parse_labels(labels, where),
        boxes=parse_boxes(boxes, where),
        masks=parse_masks(masks, where),
        name=name,
        display=parse_display(display, where),
    )


def check_item(item: Item, num_classes: int, shape: tuple[int, int, int]) -> None:
    """Raise :class:`InvalidInputError` when the item disagrees with the classes or the common image shape."""
    where = _where(item.id, item.name)
    channels, height, width = shape
    if item.image.shape[0] != channels:
        raise InvalidInputError(f"{where}: the image has {item.image.shape[0]} channels, expected {channels} "
                                f"like item 0 (shape {tuple(item.image.shape)})")
    if tuple(item.image.shape[1:]) != (height, width):
        raise InvalidInputError(f"{where}: the image is {item.image.shape[1]}x{item.image.shape[2]}, expected "
                                f"{height}x{width} like item 0 (resize in a transform)")
    for label in item.labels:
        if not 0 <= label < num_classes:
            raise InvalidInputError(f"{where}: label {label} is out of range for {num_classes} classes "
                                    f"(0..{num_classes - 1})")
    if len(item.boxes) > len(item.labels):
        raise InvalidInputError(f"{where}: {len(item.boxes)} boxes but {len(item.labels)} labels; boxes[i] "
                                "belongs to labels[i], so every box needs a label")
    for i, (x, y, w, h) in enumerate(item.boxes):
        box = f"box {i} (x={x:g}, y={y:g}, width={w:g}, height={h:g})"
        if not all(np.isfinite((x, y, w, h))):
            raise InvalidInputError(f"{where}: {box} is not finite")
        if w <= 0 or h <= 0:
            raise InvalidInputError(f"{where}: {box} must have a positive width and height")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise InvalidInputError(f"{where}: {box} lies outside the {height}x{width} image (x is the column)")
    for label, mask in item.masks.items():
        if label not in item.labels:
            raise InvalidInputError(f"{where}: a mask is given for label {label}, which is not a label of the item")
        if mask.shape != (height, width):
            raise InvalidInputError(f"{where}: the mask of label {label} is {mask.shape}, expected ({height}, {width})")
    if item.display is not None and item.display.shape[:2] != (height, width):
        raise InvalidInputError(f"{where}: display is {item.display.shape[:2]}, expected ({height}, {width})")


def _uncollate(batch: Any) -> list[Any]:
    """Split a batch a DataLoader collated back into items (tensors along dim 0, lists by position)."""
    if isinstance(batch, Tensor):
        return list(batch.unbind(0))
    if isinstance(batch, Mapping):
        columns = {key: _uncollate(value) for key, value in batch.items()}
        sizes = {len(v) for v in columns.values()}
        if len(sizes) != 1:
            raise InvalidInputError("a DataLoader batch has fields of different lengths; use a collate_fn that "
                                    "keeps per-sample lists")
        return [{key: column[i] for key, column in columns.items()} for i in range(sizes.pop())]
    if isinstance(batch, (tuple, list)):
        if batch and all(isinstance(v, (Tensor, list, tuple, Mapping)) for v in batch):
            columns = [_uncollate(value) if isinstance(value, (Tensor, Mapping)) else list(value) for value in batch]
            sizes = {len(c) for c in columns}
            if len(sizes) == 1:
                return [tuple(column[i] for column in columns) for i in range(sizes.pop())]
        raise InvalidInputError("cannot split a DataLoader batch into items; pass the dataset itself or a "
                                "DataLoader with batch_size=None")
    raise InvalidInputError(f"cannot split a DataLoader batch of type {type(batch).__name__} into items")


class DataSource:
    """Uniform access to a Dataset, DataLoader or iterable: every item with its id, skipping ids on request.

    A DataLoader over a map-style dataset is read through that dataset (the runner batches itself, so ids are
    dataset indices even with ``shuffle=True``). A one-shot iterator is read into memory once, since the runner
    reads the data twice (validation, then the run).
    """

    def __init__(self, data: Any, transform: Optional[Callable[[Any], Any]] = None) -> None:
        self.transform = transform
        self._collated = False
        if isinstance(data, DataLoader):
            if not isinstance(data.dataset, IterableDataset):
                data = data.dataset
            else:
                self._collated = data.batch_size is not None
        if isinstance(data, (str, bytes)) or not (
            hasattr(data, "__getitem__") and hasattr(data, "__len__") or isinstance(data, Iterable)
        ):
            raise InvalidInputError(f"data must be a Dataset, DataLoader or iterable of items, got {type(data).__name__}")
        self._indexed = hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(
            data, (IterableDataset, Mapping))
        if not self._indexed and not isinstance(data, DataLoader) and iter(data) is data:
            data = list(data)
            self._indexed = not self._collated
        self.data = data
        self.description = type(data).__name__

    def __len__(self) -> int:
        if self._indexed:
            return len(self.data)
        return sum(1 for _ in self._raw())

    def _raw(self) -> Iterator[Any]:
        if self._collated:
            for batch in self.data:
                yield from _uncollate(batch)
        else:
            yield from self.data

    def items(self, skip: Optional[set[int]] = None) -> Iterator[Item]:
        """Every item whose id is not in ``skip``, parsed, in id order."""
        skip = skip or set()
        if self._indexed:
            for index in range(len(self.data)):
                if index not in skip:
                    yield parse_item(self.data[index], index, self.transform)
        else:
            for index, raw in enumerate(self._raw()):
                if index not in skip:
                    yield parse_item(raw, index, self.transform)

    def validate(self, num_classes: int) -> DataSpec:
        """Read every item once and refuse the first bad one (shape, NaN/inf pixels, labels, boxes, masks)."""
        shape: Optional[tuple[int, int, int]] = None
        pending: list[Item] = []
        count = 0
        for item in self.items():
            if shape is None:
                shape = tuple(item.image.shape)  # type: ignore[assignment]
            check_item(item, num_classes, shape)  # type: ignore[arg-type]
            pending.append(item)
            count += 1
            if len(pending) == FINITE_CHECK_CHUNK:
                _check_finite(pending)
                pending = []
        _check_finite(pending)
        if shape is None:
            raise InvalidInputError("the data holds no items")
        return DataSpec(count, *shape)


def _check_finite(items: list[Item]) -> None:
    if not items:
        return
    finite = torch.isfinite(torch.stack([item.image for item in items])).flatten(1).all(1)
    if not bool(finite.all()):
        bad = items[int((~finite).nonzero()[0, 0])]
        raise InvalidInputError(f"{_where(bad.id, bad.name)}: the image holds NaN or inf pixels")
