"""PNG encoding of what the store keeps: display images, 16-bit relevance maps and 1-bit masks.

Maps are stored losslessly enough to re-score: a map is scaled to 0..65535 between its raw min and max, so decoding
gives back every value within (max - min) / 65535 / 2.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

MAP_LEVELS = 65535
THUMBNAIL_SIZE = 128


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_image(image: np.ndarray) -> bytes:
    """Encode an HxW, HxWx1 or HxWx3 uint8 array (or floats in [0, 1]) as PNG."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"an image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}")
    return _png(Image.fromarray(array))


def encode_thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> bytes | None:
    """A PNG no larger than ``size`` on its long side, or None when the image is already that small."""
    array = np.asarray(image)
    if max(array.shape[:2]) <= size:
        return None
    picture = Image.open(io.BytesIO(encode_image(array)))
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    return _png(picture)


def decode_image(data: bytes) -> np.ndarray:
    """Decode a PNG into an HxWx3 uint8 array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def encode_map(relevance: np.ndarray) -> tuple[bytes, float, float]:
    """Encode an HxW float map as a 16-bit grayscale PNG; returns the PNG and the raw (min, max)."""
    values = np.asarray(relevance, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"a relevance map must be HxW, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("a relevance map must be finite (it holds NaN or inf)")
    vmin, vmax = float(values.min()), float(values.max())
    span = vmax - vmin
    if span > 0:
        levels = np.rint((values - vmin) / span * MAP_LEVELS).astype(np.uint16)
    else:
        levels = np.zeros(values.shape, dtype=np.uint16)
    return _gray16_png(levels), vmin, vmax


def _gray16_png(levels: np.ndarray) -> bytes:
    """A 16-bit grayscale PNG written directly: no per-row filter search, one zlib pass at level 1.

    The runner encodes every map it computes; this is about three times faster than Pillow's encoder for the
    same (standard) file, a few percent larger.
    """
    height, width = levels.shape
    rows = np.zeros((height, 1 + 2 * width), dtype=np.uint8)  # each row: filter type 0, then big-endian samples
    rows[:, 1:] = levels.astype(">u2").view(np.uint8).reshape(height, 2 * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)  # bit depth 16, grayscale, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 1))
            + chunk(b"IEND", b""))


def decode_map(data: bytes, vmin: float, vmax: float) -> np.ndarray:
    """Decode a map written by :func:`encode_map` back to float32 values in [vmin, vmax]."""
    levels = np.asarray(Image.open(io.BytesIO(data))).astype(np.float64)
    return (vmin + levels / MAP_LEVELS * (vmax - vmin)).astype(np.float32)


def encode_mask(mask: np.ndarray) -> bytes:
    """Encode an HxW boolean mask as a 1-bit PNG."""
    array = np.asarray(mask).astype(bool)
    if array.ndim != 2:
        raise ValueError(f"a mask must be HxW, got shape {array.shape}")
    return _png(Image.fromarray(array))


def decode_mask(data: bytes) -> np.ndarray:
    """Decode a mask PNG into an HxW boolean array."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("1")).astype(bool)
