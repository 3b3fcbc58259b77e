"""Encoding of the pictures the store keeps: display images and 1-bit masks (maps are in :mod:`.arrays`).

The display image is only shown, never scored (scores are recomputed from maps), so photos may be stored lossy:
an image at least :data:`LOSSY_MIN_SIDE` pixels on each side is stored as WebP (or JPEG where Pillow lacks WebP)
at quality :data:`LOSSY_QUALITY` when that is at most :data:`LOSSY_MAX_RATIO` of its PNG's size, saves at least
:data:`LOSSY_MIN_SAVING` bytes, and its PSNR against the original is at least :data:`LOSSY_MIN_PSNR` dB.
Everything else (digits, CIFAR, synthetic shapes, drawings with flat colours) stays an exact PNG, which also keeps
its pixels crisp when enlarged. A 224 x 224
photo is about 90 KB as PNG and 12-15 KB as WebP at about 37 dB.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image, features

LOSSY_MIN_SIDE = 64
LOSSY_QUALITY = 90
LOSSY_MIN_PSNR = 35.0
LOSSY_MAX_RATIO = 0.5
LOSSY_MIN_SAVING = 4096

_MIMETYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def _png(image: Image.Image, level: int = 1) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def _as_uint8(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"an image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")
    return array


def encode_image(image: np.ndarray) -> bytes:
    """Encode an HxW, HxWx1, HxWx3 or HxWx4 uint8 array (or floats in [0, 1]) as PNG."""
    return _png(Image.fromarray(_as_uint8(image)))


@lru_cache(maxsize=1)
def lossy_formats() -> tuple[str, ...]:
    """The lossy formats this Pillow writes, best first."""
    return ("WEBP", "JPEG") if features.check("webp") else ("JPEG",)


def encode_lossy(picture: Image.Image, fmt: str, quality: int = LOSSY_QUALITY) -> bytes:
    """A picture as WebP or JPEG (4:4:4 chroma) at ``quality``."""
    buffer = io.BytesIO()
    if fmt == "WEBP":
        picture.save(buffer, format="WEBP", quality=quality, method=4)
    else:
        picture.save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def psnr(reference: np.ndarray, data: bytes) -> float:
    """Peak signal-to-noise ratio in dB of an encoded image against the RGB array it was made from."""
    decoded = decode_image(data).astype(np.float64)
    error = float(np.mean((decoded - reference.astype(np.float64)) ** 2))
    return float("inf") if error == 0 else float(10.0 * np.log10(255.0**2 / error))


def encode_display_image(image: np.ndarray, lossy: bool = True) -> bytes:
    """The display image as stored: PNG, or WebP/JPEG for photos where that is much smaller (module docstring)."""
    array = _as_uint8(image)
    picture = Image.fromarray(array)
    png = _png(picture)
    if not lossy or min(array.shape[:2]) < LOSSY_MIN_SIDE or len(png) <= LOSSY_MIN_SAVING:
        return png
    rgb = array if array.ndim == 3 and array.shape[2] == 3 else np.asarray(picture.convert("RGB"))
    if array.ndim == 3 and array.shape[2] == 4 and array[:, :, 3].min() < 255:
        return png  # transparency: neither lossy format is worth it here
    best = png
    source = Image.fromarray(rgb)
    for fmt in lossy_formats():
        data = encode_lossy(source, fmt)
        small_enough = len(data) <= min(LOSSY_MAX_RATIO * len(png), len(png) - LOSSY_MIN_SAVING)
        if small_enough and len(data) < len(best) and psnr(rgb, data) >= LOSSY_MIN_PSNR:
            best = data
    return best


def image_format(data: bytes) -> str:
    """``PNG``, ``JPEG`` or ``WEBP``, from the first bytes of an encoded image."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    raise ValueError("unknown image format")


def image_mimetype(data: bytes) -> str:
    """The content type to serve an encoded image with."""
    return _MIMETYPES[image_format(data)]


def decode_image(data: bytes) -> np.ndarray:
    """Decode a PNG, JPEG or WebP into an HxWx3 uint8 array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def encode_mask(mask: np.ndarray) -> bytes:
    """Encode an HxW boolean mask as a 1-bit PNG."""
    array = np.asarray(mask).astype(bool)
    if array.ndim != 2:
        raise ValueError(f"a mask must be HxW, got shape {array.shape}")
    return _png(Image.fromarray(array))


def decode_mask(data: bytes) -> np.ndarray:
    """Decode a mask PNG into an HxW boolean array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("1")).astype(bool)
