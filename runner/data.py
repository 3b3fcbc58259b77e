"""Reading a user's dataset: item formats, conversion to tensors and the validation pass that refuses bad input.

Accepted items: ``image``, ``(image, labels)``, ``(image, labels, boxes)`` or a mapping with ``image``, ``labels``
(or ``label``), ``boxes``, ``masks``, ``name`` and ``display``. Images are C x H x W tensors or arrays (uint8 is
scaled to [0, 1]), as the model takes them; ``transform`` is applied to every image first and must produce one. A
PIL image or an H x W x C array is refused: the model would see unnormalised pixels in the wrong layout.
``labels`` are class indices; ``boxes[i] = (x, y, width, height)`` in input pixels (x is the column) belongs to
``labels[i]``; ``masks`` maps a label to an H x W boolean mask.

Sample ids are dataset indices (map-style datasets, DataLoaders over them) or positions in iteration order (other
iterables), which is what lets a resumed run skip the samples already written; the data's :class:`Fingerprint`
(count, names, a hash of the first images) tells whether a resumed run still reads the same data.

An item that cannot be read (the dataset or the transform raises, e.g. a broken file) or whose image does not have
the shape of the others (a grayscale photo in an RGB dataset) becomes a :class:`BadItem`: that sample's failure,
recorded while the run goes on. Wrong labels, boxes or masks are mistakes in the data's description and stop the
run before any work.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

FINITE_CHECK_CHUNK = 256
#: images hashed into the fingerprint
FINGERPRINT_ITEMS = 4


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
class BadItem:
    """An item that cannot be explained (unreadable, or an image of another shape): recorded as its failure."""

    id: int
    name: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Fingerprint:
    """What identifies the data a run read: the item count, a hash of the names and of the first images."""

    count: int
    names: str
    head: str

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "names": self.names, "head": self.head}

    def differences(self, stored: Optional[Mapping[str, Any]]) -> list[str]:
        """What changed since ``stored`` (an :meth:`as_dict` of the earlier run), in words; empty when nothing did
        or when the earlier run kept no fingerprint."""
        if not stored:
            return []
        changed = []
        if stored.get("count") != self.count:
            changed.append(f"{stored.get('count')} items then, {self.count} now")
        if stored.get("names") != self.names:
            changed.append("the sample names changed")
        if stored.get("head") != self.head:
            changed.append(f"the first {FINGERPRINT_ITEMS} images changed")
        return changed


@dataclass(frozen=True)
class DataSpec:
    """What the validation pass learned: how many items, their common image shape, which items cannot be used and
    the data's fingerprint."""

    count: int
    channels: int
    height: int
    width: int
    bad: tuple[BadItem, ...] = ()
    fingerprint: Optional[Fingerprint] = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


def _where(index: int, name: Optional[str] = None) -> str:
    return f"item {index}" + (f" ({name!r})" if name and name != str(index) else "")


def _is_pil(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(value, Image.Image)


TRANSFORM_HINT = ("pass transform= to the runner, a function that turns it into the normalised C x H x W tensor "
                  "the model takes (resize, crop, to a tensor, normalise with the model's mean and std)")


def to_image_tensor(image: Any, where: str) -> Tensor:
    """A C x H x W float32 CPU tensor from a tensor or an array in C x H x W layout."""
    if _is_pil(image):
        raise InvalidInputError(f"{where}: the image is a PIL image ({image.mode}, {image.width}x{image.height}); "
                                + TRANSFORM_HINT)
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] in (1, 3, 4) and image.shape[0] not in (1, 3, 4):
            raise InvalidInputError(f"{where}: the image is an H x W x C array {image.shape}; " + TRANSFORM_HINT)
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, Tensor):
        raise InvalidInputError(f"{where}: the image must be a C x H x W tensor or array, got "
                                f"{type(image).__name__}; " + TRANSFORM_HINT)
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


def shape_problem(item: Item, shape: tuple[int, int, int]) -> Optional[str]:
    """Why the item's image cannot go with the others (another channel count or size), or None."""
    channels, height, width = shape
    if item.image.shape[0] != channels:
        return (f"the image has {item.image.shape[0]} channels, expected {channels} like the first item (shape "
                f"{tuple(item.image.shape)}; convert grayscale images to RGB in the transform)")
    if tuple(item.image.shape[1:]) != (height, width):
        return (f"the image is {item.image.shape[1]}x{item.image.shape[2]}, expected {height}x{width} like the "
                "first item (resize in a transform)")
    return None


def check_item(item: Item, num_classes: int, shape: tuple[int, int, int]) -> None:
    """Raise :class:`InvalidInputError` when the item's labels, boxes or masks are wrong (its image has the
    common shape: see :func:`shape_problem`)."""
    where = _where(item.id, item.name)
    _, height, width = shape
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

    def items(self, skip: Optional[set[int]] = None,
              shape: Optional[tuple[int, int, int]] = None) -> Iterator[Union[Item, BadItem]]:
        """Every item whose id is not in ``skip``, parsed, in id order; one that cannot be read, or whose image
        does not have ``shape``, as a :class:`BadItem`. Errors of the input's form (a PIL image without a
        transform) are raised: they concern every item."""
        skip = skip or set()
        if self._indexed:
            for index in range(len(self.data)):
                if index not in skip:
                    yield self._parse(lambda index=index: self.data[index], index, shape)
        else:
            for index, raw in enumerate(self._raw()):
                if index not in skip:
                    yield self._parse(lambda raw=raw: raw, index, shape)

    def _parse(self, read: Callable[[], Any], index: int,
               shape: Optional[tuple[int, int, int]]) -> Union[Item, BadItem]:
        try:
            item = parse_item(read(), index, self.transform)
        except InvalidInputError:
            raise
        except Exception as error:  # noqa: BLE001 - a broken file or a failing transform is that sample's failure
            return BadItem(index, str(index), f"reading the item failed: {type(error).__name__}: {error}",
                           traceback.format_exc())
        problem = shape_problem(item, shape) if shape is not None else None
        return BadItem(item.id, item.name, problem) if problem else item

    def validate(self, num_classes: int) -> DataSpec:
        """Read every item once: refuse wrong labels, boxes, masks or NaN/inf pixels; set aside the items that
        cannot be read or do not have the first good item's shape; fingerprint the data."""
        shape: Optional[tuple[int, int, int]] = None
        pending: list[Item] = []
        bad: list[BadItem] = []
        names = hashlib.sha256()
        head = hashlib.sha256()
        count = hashed = 0
        for item in self.items():
            count += 1
            names.update(f"{item.id}:{item.name}\n".encode())
            if isinstance(item, BadItem):
                bad.append(item)
                continue
            if shape is None:
                shape = tuple(item.image.shape)  # type: ignore[assignment]
            problem = shape_problem(item, shape)  # type: ignore[arg-type]
            if problem:
                bad.append(BadItem(item.id, item.name, problem))
                continue
            check_item(item, num_classes, shape)  # type: ignore[arg-type]
            if hashed < FINGERPRINT_ITEMS:
                head.update(item.image.numpy().tobytes())
                hashed += 1
            pending.append(item)
            if len(pending) == FINITE_CHECK_CHUNK:
                _check_finite(pending)
                pending = []
        _check_finite(pending)
        if shape is None:
            if bad:
                raise InvalidInputError(f"no item of the data can be used; {_where(bad[0].id, bad[0].name)}: "
                                        f"{bad[0].message}")
            raise InvalidInputError("the data holds no items")
        fingerprint = Fingerprint(count, names.hexdigest()[:16], head.hexdigest()[:16])
        return DataSpec(count, *shape, bad=tuple(bad), fingerprint=fingerprint)


def _check_finite(items: list[Item]) -> None:
    if not items:
        return
    finite = torch.isfinite(torch.stack([item.image for item in items])).flatten(1).all(1)
    if not bool(finite.all()):
        bad = items[int((~finite).nonzero()[0, 0])]
        raise InvalidInputError(f"{_where(bad.id, bad.name)}: the image holds NaN or inf pixels")
