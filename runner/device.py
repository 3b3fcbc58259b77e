"""How a run uses its device: the precision explainers and benchmarks compute in, pinned host memory for the copies
to a GPU, and on a GPU passes sized by the memory one image's forward and backward pass takes there.

``precision``: ``"fp32"`` (the default), or ``"bf16"`` / ``"fp16"`` for ``torch.autocast`` around every explainer and
benchmark call (CPU or CUDA; fp16 mainly on CUDA). Predictions, probabilities and uncertainty stay in float32, so
labels, TP/FP/FN/TN and the stored probabilities do not depend on it. What bf16 changes, measured against fp32 on
the digits CNN (``tests/test_device.py`` asserts these bounds):

* per pair, insertion and deletion AUC within 0.005 and sparseness within 0.02 (:data:`PAIR_TOLERANCE`);
* localization metrics depend on where a map's top pixels are, which bf16 reorders among near ties: per pair a
  pointing-game hit can flip, so only their means are bounded (:data:`MEAN_TOLERANCE`: 0.1 pointing game, 0.05 IoSR);
* Grad-CAM maps correlate above 0.999 with fp32's; pixel-gradient maps (Gradient, Integrated Gradients) only above
  0.85 (median 0.95): bf16 keeps 8 bits of mantissa, so use it for faithfulness scores and Grad-CAM, and fp32 when
  the pixel maps themselves are the result. Integrated Gradients' convergence delta grows accordingly.

fp16 keeps 10 bits of mantissa and stays within the same bounds (on the CPU its pixel-gradient maps correlate above
0.98 with fp32's); on a GPU, fp16 autocast can overflow in networks with large activations, which bf16 cannot.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Optional

import torch
from torch import Tensor, nn

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: the largest |score(bf16) - score(fp32)| of one pair, for metrics whose per-pair score is stable
PAIR_TOLERANCE = {"InsertionAUC": 0.005, "DeletionAUC": 0.005, "Sparseness": 0.02}
#: the largest difference of an explainer's mean score, for metrics that flip per pair on near ties
MEAN_TOLERANCE = {"PointingGame": 0.1, "IoSR": 0.05}
#: the smallest correlation of a bf16 map with the fp32 map, by explainer class
MAP_CORRELATION = {"GradCAM": 0.999, "Gradient": 0.85, "IntegratedGradients": 0.85}
#: share of the free GPU memory a pass may take; the rest stays for the network's own buffers and the allocator
GPU_MEMORY_SHARE = 0.5
MAX_GPU_IMAGES = 1024

_measured: dict[tuple, int] = {}


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """``torch.autocast`` at ``precision`` on ``device``'s type, or nothing for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(inputs: Tensor, device: torch.device) -> Tensor:
    """The inputs on ``device``; to a GPU through pinned memory, so the copy runs asynchronously."""
    if device.type == "cuda" and inputs.device.type == "cpu":
        return inputs.pin_memory().to(device, non_blocking=True)
    return inputs.to(device)


def gpu_batch_size(network: nn.Module, inputs: Tensor) -> Optional[int]:
    """On a CUDA device, how many images of this shape one pass may take: :data:`GPU_MEMORY_SHARE` of the free
    memory over the peak memory of one image's forward and input-gradient pass, measured once per network, device
    and shape (inside the caller's autocast, so it is measured at the run's precision); None elsewhere."""
    if inputs.device.type != "cuda":
        return None
    key = (id(network), inputs.device, tuple(inputs.shape[1:]), torch.get_autocast_dtype("cuda")
           if torch.is_autocast_enabled("cuda") else None)
    if key not in _measured:
        device = inputs.device
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        probe = inputs[:1].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            output = network(probe)
            torch.autograd.grad(output[:, 0].sum(), probe)
        torch.cuda.synchronize(device)
        peak = max(1, torch.cuda.max_memory_allocated(device) - before)
        free, _total = torch.cuda.mem_get_info(device)
        _measured[key] = max(1, min(MAX_GPU_IMAGES, int(GPU_MEMORY_SHARE * free / peak)))
    return _measured[key]
