"""Rendering stored relevance maps as heatmap or overlay tiles (Pillow + numpy).

A map stored at a coarser grid than its image (Grad-CAM's 7 x 7 layer grid) is first brought to the image's size
by the bilinear upsampling the benchmarks scored it at (:func:`xaiboard.store.arrays.upsample`). It is then reduced
to values in [0, 1] according to ``sign`` (which relevance to show), coloured with a colormap, and optionally
blended over the display image with an opacity ``alpha``, at the size it is shown. Rendering is deterministic, so a
tile can be cached by the parameters that produced it. Display images keep their stored format (PNG, or WebP/JPEG for photos) when resized.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

from xaiboard.store import arrays, codec

from . import colormaps

SIGNS = ("positive", "negative", "absolute", "all")
MAX_SIZE = 1024
RENDER_VERSION = "3"
TILE_QUALITY = 85


class RenderError(ValueError):
    """A rendering parameter is out of range (the API answers 400 with the message)."""


@dataclass(frozen=True)
class RenderOptions:
    """How to draw a map: over the image or alone, its opacity, colormap, which sign, and the output size."""

    overlay: bool = False
    alpha: float = 0.5
    cmap: str = "inferno"
    sign: str = "absolute"
    size: Optional[int] = None

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> "RenderOptions":
        """Read ``overlay``, ``alpha``, ``cmap``, ``sign`` and ``size`` from query arguments; RenderError if bad."""
        overlay_text = args.get("overlay", "0").strip().lower()
        if overlay_text not in ("0", "1", "true", "false", "yes", "no", ""):
            raise RenderError(f"overlay must be 0 or 1, got {overlay_text!r}")
        overlay = overlay_text in ("1", "true", "yes")
        try:
            alpha = float(args.get("alpha", "0.5"))
        except ValueError:
            raise RenderError(f"alpha must be a number between 0 and 1, got {args.get('alpha')!r}") from None
        if not 0.0 <= alpha <= 1.0:  # also rejects NaN
            raise RenderError(f"alpha must be between 0 and 1, got {args.get('alpha')!r}")
        sign = args.get("sign", "absolute")
        if sign not in SIGNS:
            raise RenderError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
        default_cmap = colormaps.DIVERGING if sign == "all" else "inferno"
        cmap = args.get("cmap", default_cmap)
        if cmap not in colormaps.NAMES:
            raise RenderError(f"cmap must be one of {', '.join(colormaps.NAMES)}, got {cmap!r}")
        size_text = args.get("size")
        size = None
        if size_text not in (None, ""):
            if not size_text.isdigit() or not 8 <= int(size_text) <= MAX_SIZE:
                raise RenderError(f"size must be an integer from 8 to {MAX_SIZE}, got {size_text!r}")
            size = int(size_text)
        return cls(overlay, round(alpha, 3), cmap, sign, size)

    def key(self) -> tuple:
        return (self.overlay, self.alpha, self.cmap, self.sign, self.size)


def normalise(relevance: np.ndarray, sign: str) -> np.ndarray:
    """Reduce a map to [0, 1]: ``positive``/``negative`` keep one sign scaled by its largest magnitude, ``absolute``
    shows |r| / max |r|, ``all`` puts zero at 0.5 with -max|r| at 0 and +max|r| at 1."""
    r = np.asarray(relevance, dtype=np.float64)
    if sign == "positive":
        values = np.clip(r, 0.0, None)
    elif sign == "negative":
        values = np.clip(-r, 0.0, None)
    elif sign == "absolute":
        values = np.abs(r)
    elif sign == "all":
        scale = float(np.abs(r).max(initial=0.0))
        return np.full(r.shape, 0.5) if scale <= 0 else 0.5 + 0.5 * r / scale
    else:
        raise RenderError(f"sign must be one of {', '.join(SIGNS)}, got {sign!r}")
    top = float(values.max(initial=0.0))
    return np.zeros(r.shape) if top <= 0 else values / top


def _target_size(width: int, height: int, size: Optional[int]) -> tuple[int, int]:
    """The long side at ``size``, never above the native size: enlarging on the server only multiplies the bytes
    (a 32 px digit at 256 px is 64 times the pixels); browsers enlarge small images themselves, crisply."""
    if size is None or size >= max(width, height):
        return width, height
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize_image(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    if image.size == target:
        return image
    return image.resize(target, Image.Resampling.LANCZOS)


def _resize_values(values: np.ndarray, target: tuple[int, int]) -> np.ndarray:
    if (values.shape[1], values.shape[0]) == target:
        return values
    resized = Image.fromarray(values.astype(np.float32), mode="F").resize(target, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def render_image(data: bytes, size: Optional[int] = None) -> bytes:
    """The display image as stored, resized so its long side is ``size`` when given (in the same format)."""
    if size is None:
        return data
    image = Image.open(io.BytesIO(data))
    fmt = image.format
    image = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    resized = _resize_image(image, _target_size(image.width, image.height, size))
    if fmt in ("WEBP", "JPEG"):
        return codec.encode_lossy(resized.convert("RGB"), fmt)
    return png_bytes(resized)


def render_saliency(relevance: np.ndarray, image: Optional[bytes], options: RenderOptions,
                    image_size: Optional[tuple[int, int]] = None) -> bytes:
    """A map as a coloured heatmap, or blended over the display image (PNG/WebP/JPEG bytes) when
    ``options.overlay``. A map smaller than the image (or than ``image_size`` = (height, width), for a heatmap) is
    upsampled to it first. The tile takes the image's kind of encoding: WebP over a photo stored lossy (a 256 px
    overlay is a few KB instead of 70 KB of PNG), an exact PNG over a PNG (digits keep crisp pixels) or alone."""
    lossy = image is not None and codec.image_format(image) in ("WEBP", "JPEG")
    picture = Image.open(io.BytesIO(image)).convert("RGB") if options.overlay and image is not None else None
    if picture is not None:
        image_size = (picture.height, picture.width)
    if image_size is not None:
        relevance = arrays.upsample(relevance, image_size)
    values = normalise(relevance, options.sign)
    if picture is not None:
        target = _target_size(picture.width, picture.height, options.size)
        base = np.asarray(_resize_image(picture, target), dtype=np.float64)
        heat = colormaps.apply(options.cmap, _resize_values(values, target)).astype(np.float64)
        blended = (1.0 - options.alpha) * base + options.alpha * heat
        tile = Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    else:
        target = _target_size(values.shape[1], values.shape[0], options.size)
        tile = Image.fromarray(colormaps.apply(options.cmap, _resize_values(values, target)))
    return encode_tile(tile, lossy)


def encode_tile(tile: Image.Image, lossy: bool, size: Optional[int] = None) -> bytes:
    """A rendered tile, its long side brought down to ``size`` when given: WebP when it shows a photo stored lossy,
    an exact PNG otherwise."""
    tile = _resize_image(tile, _target_size(tile.width, tile.height, size))
    return codec.encode_lossy(tile, "WEBP", TILE_QUALITY) if lossy else png_bytes(tile)


def colorbar(cmap: str, width: int = 256, height: int = 12) -> bytes:
    """A horizontal colour bar of a colormap (low on the left), for legends."""
    if cmap not in colormaps.NAMES:
        raise RenderError(f"cmap must be one of {', '.join(colormaps.NAMES)}, got {cmap!r}")
    row = colormaps.apply(cmap, np.linspace(0.0, 1.0, width))
    return png_bytes(Image.fromarray(np.repeat(row[None, :, :], height, axis=0)))
