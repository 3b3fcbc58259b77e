"""The images along Integrated Gradients' path, drawn from the stored display image and the explainer's baseline.

The runner interpolates in the network's input space, ``baseline + alpha * (x - baseline)``; the normalisation
``(pixel - mean) / std`` is affine per channel, so the same interpolation between the display image and the
baseline *as a display image* shows exactly those inputs (up to the display's clamping to [0, 1]). The baseline is
rebuilt from the explainer's stored configuration and the run's ``mean``/``std``:

- ``zero``: the input 0, i.e. the mean colour when the inputs are normalised, black otherwise;
- ``black``/``white``: black/white; a number: that input value seen through the normalisation;
- ``blur``: a Gaussian blur of the display image (``blur_sigma``, default a tenth of the image size; Pillow's
  blur, which approximates the runner's separable kernel at the borders);
- ``uniform``: the runner's seeded noise image, scaled between the input's min and max (the input is recovered
  from the display image, so a photo stored lossy gives a near copy);
- a tensor baseline is not stored, so it cannot be drawn (:class:`PathImageError`).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from PIL import Image, ImageFilter

from xaiboard.store import codec

from .render import encode_tile


class PathImageError(ValueError):
    """The baseline cannot be drawn (e.g. a tensor given by the user)."""


def uniform_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The runner's ``"uniform"`` baseline noise (``runner.explainers.baselines.uniform_noise``; a test keeps both
    equal without the server importing torch)."""
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _normalisation(run_config: dict[str, Any], channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    mean, std = run_config.get("mean"), run_config.get("std")
    if mean is None or std is None:
        return None
    mean_array = np.resize(np.asarray(mean, dtype=np.float64), channels)
    std_array = np.resize(np.asarray(std, dtype=np.float64), channels)
    return mean_array, std_array


def baseline_image(image: np.ndarray, explainer_config: dict[str, Any], run_config: dict[str, Any],
                   channels: int) -> np.ndarray:
    """The baseline as a display image (H x W x 3 floats in [0, 1]) for a display image ``image`` of the same
    shape, from the explainer's ``baseline``, ``blur_sigma`` and ``seed`` and the run's normalisation."""
    baseline = explainer_config.get("baseline", "zero")
    norm = _normalisation(run_config, channels)

    def shown(value: float | np.ndarray) -> np.ndarray:
        """Input values (one per channel) as display colours."""
        values = np.resize(np.asarray(value, dtype=np.float64), channels)
        if norm is not None:
            values = values * norm[1] + norm[0]
        colour = np.resize(values, 3) if channels != 3 else values
        return np.broadcast_to(np.clip(colour, 0, 1), image.shape).copy()

    if baseline == "zero":
        return shown(0.0)
    if baseline == "black":
        return np.zeros_like(image)
    if baseline == "white":
        return np.ones_like(image)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return shown(float(baseline))
    if baseline == "blur":
        sigma = explainer_config.get("blur_sigma") or max(image.shape[:2]) / 10
        picture = Image.fromarray(np.rint(image * 255).astype(np.uint8))
        return np.asarray(picture.filter(ImageFilter.GaussianBlur(float(sigma))), dtype=np.float64) / 255
    if baseline == "uniform":
        height, width = image.shape[:2]
        pixels = image[..., :channels] if channels == 3 else image.mean(axis=2, keepdims=True)
        inputs = (pixels - norm[0]) / norm[1] if norm is not None else pixels
        noise = uniform_noise(int(explainer_config.get("seed", 0)), (channels, height, width)).transpose(1, 2, 0)
        values = inputs.min() + noise * (inputs.max() - inputs.min())
        if norm is not None:
            values = values * norm[1] + norm[0]
        values = np.clip(values, 0, 1)
        return np.repeat(values, 3, axis=2) if channels == 1 else values
    raise PathImageError(f"the baseline {baseline!r} was given as a tensor and is not stored: it cannot be drawn")


def render_path_image(data: bytes, alpha: float, explainer_config: dict[str, Any], run_config: dict[str, Any],
                      size: Optional[int] = None) -> bytes:
    """The path point ``baseline + alpha * (image - baseline)`` as an image, in the stored image's kind of
    encoding (WebP over a photo stored lossy, PNG otherwise), long side at most ``size``."""
    image = codec.decode_image(data).astype(np.float64) / 255
    channels = int((run_config.get("image_shape") or [3])[0])
    baseline = baseline_image(image, explainer_config, run_config, channels)
    point = baseline + float(alpha) * (image - baseline)
    tile = Image.fromarray(np.clip(np.rint(point * 255), 0, 255).astype(np.uint8))
    return encode_tile(tile, codec.image_format(data) in ("WEBP", "JPEG"), size)
