"""Compact blobs of the arrays the store keeps: relevance maps and per-sample probability vectors.

**Maps** are quantised to ``2**bits - 1`` levels between their raw min and max (``bits`` is 16 unless the writer
is told otherwise), so decoding gives back every value within ``(max - min) / (2**bits - 1) / 2``. The levels are
then stored losslessly in one of two encodings, named in the ``encoding`` column (the writer uses ``q``: on the
3,483 maps of the digits and photos demos PNG was never smaller, and trying it tripled the encoding time):

- ``png<bits>``: a standard 16-bit grayscale PNG of the levels, written by Pillow with its adaptive row filters
  (``png16`` is also what summaries before schema 0003 hold, unfiltered).
- ``q<bits>``: one predictor byte, then a zlib stream. Predictor 0 keeps the levels, 1 takes the difference to the
  left neighbour, 2 to the one above, 3 the planar prediction ``left + above - above-left`` (differences modulo
  2**16). The residuals ``r`` (read as int16) are zigzag-mapped to ``(r << 1) ^ (r >> 15)`` (except with
  predictor 0), and the stream holds the high bytes of every value in row-major order, then the low bytes. The
  shape is in the row's ``height``/``width``. Predictor 0 suits maps that are pixel noise (gradients), 3 smooth ones
  (RISE, Occlusion); the writer takes the one with the smallest estimated size.

Neither is lossy JPEG. A map is stored at the resolution the explainer produced (e.g. Grad-CAM's 7 x 7 layer grid);
:func:`upsample` brings it to the image size the way ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` does.

**Probability vectors** (encoding ``f32z``): little-endian float32 values, byte-shuffled (the first byte of every
value, then the second, ...), zlib-compressed; NaN marks a label without a value.

**Packed arrays** (feature maps, attention, filters; encodings ``u8z`` and ``f16z``): uint8 or little-endian
float16 values in C order, byte-shuffled like the vectors, zlib-compressed; the shape is stored beside them.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image

MAP_BITS = 16
VECTOR_ENCODING = "f32z"
ZLIB_LEVEL = 6
PREDICTORS = ("none", "left", "up", "plane")


@dataclass(frozen=True)
class EncodedMap:
    """A map as stored: the blob, how it is encoded, the raw min/max that undo the scaling and its shape."""

    data: bytes
    encoding: str
    vmin: float
    vmax: float
    height: int
    width: int


def check_bits(bits: int) -> int:
    """``bits`` as an int when it is a valid map precision (2 to 16), else ValueError."""
    if not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= 16:
        raise ValueError(f"map bits must be an integer from 2 to 16, got {bits!r}")
    return int(bits)


def quantise(relevance: np.ndarray, bits: int = MAP_BITS) -> tuple[np.ndarray, float, float]:
    """An HxW float map as uint16 levels ``0 .. 2**bits - 1`` between its raw min and max, and that (min, max)."""
    bits = check_bits(bits)
    values = np.asarray(relevance, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"a relevance map must be a non-empty HxW array, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("a relevance map must be finite (it holds NaN or inf)")
    vmin, vmax = float(values.min()), float(values.max())
    span = vmax - vmin
    if span > 0:
        levels = np.rint((values - vmin) * ((2**bits - 1) / span)).astype(np.uint16)
    else:
        levels = np.zeros(values.shape, dtype=np.uint16)
    return levels, vmin, vmax


def dequantise(levels: np.ndarray, bits: int, vmin: float, vmax: float) -> np.ndarray:
    """Levels back to float32 values in [vmin, vmax]."""
    scale = (vmax - vmin) / (2**bits - 1)
    return (vmin + levels.astype(np.float64) * scale).astype(np.float32)


def _residuals(levels: np.ndarray, predictor: int) -> np.ndarray:
    zero = np.uint16(0)
    if predictor == 0:
        return levels
    if predictor == 1:
        residual = np.diff(levels, axis=1, prepend=zero)
    elif predictor == 2:
        residual = np.diff(levels, axis=0, prepend=zero)
    else:
        residual = np.diff(np.diff(levels, axis=1, prepend=zero), axis=0, prepend=zero)
    return (residual << np.uint16(1)) ^ (zero - (residual >> np.uint16(15)))  # zigzag: small magnitudes stay small


def _levels_from(residuals: np.ndarray, predictor: int) -> np.ndarray:
    if predictor == 0:
        return residuals
    residual = (residuals >> np.uint16(1)) ^ (np.uint16(0) - (residuals & np.uint16(1)))
    if predictor == 1:
        return np.cumsum(residual, axis=1, dtype=np.uint16)
    if predictor == 2:
        return np.cumsum(residual, axis=0, dtype=np.uint16)
    return np.cumsum(np.cumsum(residual, axis=0, dtype=np.uint16), axis=1, dtype=np.uint16)


def _planes(values: np.ndarray) -> np.ndarray:
    """uint16 values as their high bytes followed by their low bytes."""
    return np.ascontiguousarray((values.reshape(-1)[None, :] >> np.array([[8], [0]], np.uint16)).astype(np.uint8))


def _estimated_bits(planes: np.ndarray) -> float:
    """The order-0 entropy of both byte planes: what zlib's Huffman stage gets close to on these data."""
    total = 0.0
    for plane in planes:
        counts = np.bincount(plane, minlength=256)
        p = counts[counts > 0] / plane.size
        total -= float((counts[counts > 0] * np.log2(p)).sum())
    return total


def encode_levels_q(levels: np.ndarray) -> bytes:
    """The ``q`` blob of HxW uint16 levels: the predictor with the smallest estimated size, then zlib."""
    best: Optional[tuple[float, int, np.ndarray]] = None
    for predictor in (0, 1, 3) if min(levels.shape) > 1 else (0, 1):
        planes = _planes(_residuals(levels, predictor))
        cost = _estimated_bits(planes)
        if best is None or cost < best[0]:
            best = (cost, predictor, planes)
    assert best is not None
    return bytes([best[1]]) + zlib.compress(best[2].tobytes(), ZLIB_LEVEL)


def decode_levels_q(data: bytes, height: int, width: int) -> np.ndarray:
    """HxW uint16 levels from a ``q`` blob."""
    predictor = data[0]
    if predictor >= len(PREDICTORS):
        raise ValueError(f"unknown map predictor {predictor}")
    planes = np.frombuffer(zlib.decompress(data[1:]), dtype=np.uint8).reshape(2, height * width)
    residuals = (planes[0].astype(np.uint16) << np.uint16(8)) | planes[1]
    return _levels_from(residuals.reshape(height, width), predictor)


def encode_levels_png(levels: np.ndarray) -> bytes:
    """A standard 16-bit grayscale PNG of the levels (Pillow's adaptive row filters)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(levels, dtype=np.uint16)).save(buffer, format="PNG", compress_level=ZLIB_LEVEL)
    return buffer.getvalue()


def decode_levels_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.uint16)


def encode_map(relevance: np.ndarray, bits: int = MAP_BITS, try_png: bool = False) -> EncodedMap:
    """Quantise a map (see the module docstring) as a ``q`` blob; with ``try_png``, the smaller of that and PNG."""
    levels, vmin, vmax = quantise(relevance, bits)
    data, encoding = encode_levels_q(levels), f"q{bits}"
    if try_png:
        png = encode_levels_png(levels)
        if len(png) < len(data):
            data, encoding = png, f"png{bits}"
    return EncodedMap(data, encoding, vmin, vmax, int(levels.shape[0]), int(levels.shape[1]))


def _split_encoding(encoding: str) -> tuple[str, int]:
    for family in ("png", "q"):
        if encoding.startswith(family) and encoding[len(family):].isdigit():
            return family, check_bits(int(encoding[len(family):]))
    raise ValueError(f"unknown map encoding {encoding!r}")


def decode_levels(data: bytes, encoding: str, height: Optional[int] = None, width: Optional[int] = None
                  ) -> np.ndarray:
    """The stored uint16 levels of a map (``height``/``width`` are needed for ``q`` blobs)."""
    family, _ = _split_encoding(encoding)
    if family == "png":
        return decode_levels_png(data)
    if height is None or width is None:
        raise ValueError(f"a {encoding} map needs its height and width")
    return decode_levels_q(data, height, width)


def decode_map(data: bytes, encoding: str, vmin: float, vmax: float, height: Optional[int] = None,
               width: Optional[int] = None) -> np.ndarray:
    """A stored map back to float32 HxW values at its own resolution."""
    _, bits = _split_encoding(encoding)
    return dequantise(decode_levels(data, encoding, height, width), bits, vmin, vmax)


def png_shape(data: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's header, without decoding it."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def _source_index(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output position along one axis: the two input positions and the weight of the second, with
    half-pixel centres (``align_corners=False``): ``src = (dst + 0.5) * in / out - 0.5``, clamped to the edges."""
    source = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
    source = np.clip(source, 0.0, size_in - 1)
    low = np.floor(source).astype(np.intp)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, source - low


def upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxW map to ``size`` = (height, width) by bilinear interpolation with half-pixel centres, as
    ``F.interpolate(x, size, mode="bilinear", align_corners=False)`` does (float32 out); a map already of that size
    comes back unchanged."""
    array = np.asarray(values)
    height, width = int(size[0]), int(size[1])
    if array.shape == (height, width):
        return array
    if array.ndim != 2 or height < 1 or width < 1:
        raise ValueError(f"cannot resize a map of shape {array.shape} to {size}")
    array = array.astype(np.float64)
    r0, r1, fr = _source_index(array.shape[0], height)
    c0, c1, fc = _source_index(array.shape[1], width)
    rows = array[r0] * (1.0 - fr)[:, None] + array[r1] * fr[:, None]
    return (rows[:, c0] * (1.0 - fc) + rows[:, c1] * fc).astype(np.float32)


def encode_vector(values: np.ndarray) -> bytes:
    """A 1-D array as an ``f32z`` blob (see the module docstring)."""
    array = np.asarray(values, dtype="<f4")
    if array.ndim != 1:
        raise ValueError(f"a probability vector must be 1-D, got shape {array.shape}")
    shuffled = np.ascontiguousarray(array.view(np.uint8).reshape(-1, 4).T)
    return zlib.compress(shuffled.tobytes(), ZLIB_LEVEL)


def decode_vector(data: bytes, encoding: str = VECTOR_ENCODING) -> np.ndarray:
    """An ``f32z`` blob back to a float32 array."""
    if encoding != VECTOR_ENCODING:
        raise ValueError(f"unknown vector encoding {encoding!r}")
    raw = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    return np.ascontiguousarray(raw.reshape(4, -1).T).view("<f4").reshape(-1).astype(np.float32)


#: the packed-array encodings and their value types
PACKED = {"u8z": "<u1", "f16z": "<f2"}


def encode_packed(values: np.ndarray, encoding: str) -> bytes:
    """An array of any shape as a ``u8z`` or ``f16z`` blob (see the module docstring)."""
    array = np.ascontiguousarray(np.asarray(values).astype(PACKED[encoding])).reshape(-1)
    width = array.dtype.itemsize
    shuffled = np.ascontiguousarray(array.view(np.uint8).reshape(-1, width).T)
    return zlib.compress(shuffled.tobytes(), ZLIB_LEVEL)


def decode_packed(data: bytes, encoding: str, shape: tuple[int, ...]) -> np.ndarray:
    """A ``u8z`` or ``f16z`` blob back to its array (uint8 or float16) of ``shape``."""
    if encoding not in PACKED:
        raise ValueError(f"unknown array encoding {encoding!r}")
    dtype = np.dtype(PACKED[encoding])
    raw = np.frombuffer(zlib.decompress(data), dtype=np.uint8)
    values = np.ascontiguousarray(raw.reshape(dtype.itemsize, -1).T).view(dtype).reshape(-1)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"a {encoding} blob of {values.size} values cannot have shape {tuple(shape)}")
    return values.reshape(shape)
