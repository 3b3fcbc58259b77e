"""Colormap lookup tables (256 x RGB uint8) built in numpy from each map's defining control points.

The perceptual maps (viridis, inferno, magma) are interpolated from 17 evenly spaced reference colours of the
published tables, jet from its piecewise-linear channel segments, RdBu from ColorBrewer's 11 classes. Building them
here keeps matplotlib out of the server; ``tests/test_server_render.py`` checks them against matplotlib when present.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SIZE = 256

_STOPS: dict[str, list[str]] = {
    "viridis": ["#440154", "#48186a", "#472d7b", "#424086", "#3b528b", "#33638d", "#2c728e", "#26828e", "#21918c",
                "#1fa088", "#28ae80", "#3fbc73", "#5ec962", "#84d44b", "#addc30", "#d8e219", "#fde725"],
    "inferno": ["#000004", "#0b0724", "#210c4a", "#3d0965", "#57106e", "#71196e", "#8a226a", "#a32c61", "#bc3754",
                "#d24644", "#e45a31", "#f1731d", "#f98e09", "#fcac11", "#f9cb35", "#f2ea69", "#fcffa4"],
    "magma": ["#000004", "#0a0822", "#1d1147", "#36106b", "#51127c", "#6a1c81", "#832681", "#9c2e7f", "#b73779",
              "#d0416f", "#e75263", "#f56b5c", "#fc8961", "#fea772", "#fec488", "#fde2a3", "#fcfdbf"],
    # ColorBrewer RdBu reversed: blue for negative, white at zero, red for positive relevance.
    "RdBu": ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d",
             "#b2182b", "#67001f"],
    "gray": ["#000000", "#ffffff"],
}

# matplotlib's definition of jet: per channel, (position, value) breakpoints joined linearly.
_JET_SEGMENTS = {
    "red": [(0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)],
    "green": [(0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0), (1.0, 0.0)],
    "blue": [(0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)],
}

NAMES = ("inferno", "viridis", "magma", "jet", "gray", "RdBu")
DIVERGING = "RdBu"


def _from_stops(colors: list[str]) -> np.ndarray:
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colors], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(colors))
    x = np.linspace(0.0, 1.0, SIZE)
    return np.stack([np.interp(x, positions, rgb[:, k]) for k in range(3)], axis=1)


def _from_segments(segments: dict[str, list[tuple[float, float]]]) -> np.ndarray:
    x = np.linspace(0.0, 1.0, SIZE)
    channels = []
    for channel in ("red", "green", "blue"):
        positions, values = zip(*segments[channel])
        channels.append(np.interp(x, positions, values) * 255.0)
    return np.stack(channels, axis=1)


@lru_cache(maxsize=None)
def table(name: str) -> np.ndarray:
    """The 256x3 uint8 lookup table of a colormap; KeyError for an unknown name."""
    if name == "jet":
        values = _from_segments(_JET_SEGMENTS)
    else:
        values = _from_stops(_STOPS[name])
    lut = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def apply(name: str, values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (any shape) to RGB uint8 (shape + (3,))."""
    index = np.clip(np.rint(np.nan_to_num(values) * (SIZE - 1)), 0, SIZE - 1).astype(np.intp)
    return table(name)[index]
