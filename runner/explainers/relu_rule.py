"""Which activations of a network escape the guided-backpropagation / deconvolution ReLU rule.

Captum's ``GuidedBackprop`` and ``Deconvolution`` (and so ``GuidedGradCam``) override the gradient only at
``torch.nn.ReLU`` modules (``isinstance(module, nn.ReLU)``). A ReLU called as a function (``F.relu``,
``torch.relu``, ``x.relu()``, in-place variants) and every other activation module (``nn.ReLU6``, ``nn.LeakyReLU``,
``nn.GELU``, ``nn.SiLU``, ``nn.Hardswish``, ...) keep their plain gradient, so the map there is the ordinary
gradient and nothing says so. :func:`unguided_activations` finds them by running one forward pass under a
``TorchFunctionMode`` that records activation calls and the module that made each one.

Limits: it sees the path the given input takes (data-dependent branches may hide others), calls inside TorchScript,
C++ extensions or custom ``autograd.Function`` s are invisible, and a ReLU written as ``clamp(min=0)`` or
``torch.maximum(x, 0)`` is not recognised as an activation.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .base import eval_mode

#: function names (``F.*``, ``torch.*`` and tensor methods) that count as activations
ACTIVATIONS = frozenset({
    "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "rrelu", "rrelu_", "prelu",
    "elu", "elu_", "selu", "selu_", "celu", "celu_", "gelu", "silu", "mish", "hardswish", "hardsigmoid", "softplus",
    "threshold", "threshold_",
})


class _Recorder(TorchFunctionMode):
    """Records (function name, innermost module) for every activation call not made by an ``nn.ReLU`` module."""

    def __init__(self, stack: list[nn.Module]) -> None:
        super().__init__()
        self.stack = stack
        self.found: list[tuple[str, Optional[nn.Module]]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in ACTIVATIONS:
            module = self.stack[-1] if self.stack else None
            if not isinstance(module, nn.ReLU):
                self.found.append((name, module))
        return func(*args, **(kwargs or {}))


def unguided_activations(network: nn.Module, inputs: Tensor) -> dict[str, int]:
    """The activations that the ReLU rule does not reach, as {place: calls} in call order (places such as
    ``"relu() in the forward of features (Block)"`` or ``"features.act (ReLU6)"``); empty when every activation is
    an ``nn.ReLU`` module. Runs one forward pass of ``inputs`` in eval mode without autograd."""
    names = {id(module): name for name, module in network.named_modules()}
    stack: list[nn.Module] = []

    def enter(module: nn.Module, _inputs: Any) -> None:
        stack.append(module)

    def leave(_module: nn.Module, _inputs: Any, _output: Any) -> None:
        if stack:
            stack.pop()

    handles = []
    for module in network.modules():
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave, always_call=True))
    recorder = _Recorder(stack)
    try:
        with eval_mode(network), torch.no_grad(), recorder:
            network(inputs)
    finally:
        for handle in handles:
            handle.remove()
    seen: dict[str, int] = {}
    for function, module in recorder.found:
        label = names.get(id(module), "") if module is not None else ""
        kind = type(module).__name__ if module is not None else type(network).__name__
        if module is not None and _is_activation_module(module):
            text = f"{label or 'the network'} ({kind})"
        else:
            text = f"{function}() in the forward of {label or 'the network'} ({kind})"
        seen[text] = seen.get(text, 0) + 1
    return seen


def _is_activation_module(module: nn.Module) -> bool:
    """Whether the module is a leaf activation (``nn.ReLU6``, ``nn.GELU`` ...) rather than a block calling one."""
    return type(module).__module__ == "torch.nn.modules.activation" and not any(True for _ in module.children())


def relu_rule_warning(method: str, explainer_name: str, network: nn.Module, places: dict[str, int]) -> str:
    """The warning text for the ``places`` found by :func:`unguided_activations`."""
    named = [place + (f" x{calls}" if calls > 1 else "") for place, calls in places.items()]
    shown = ", ".join(named[:6]) + (f" and {len(named) - 6} more" if len(named) > 6 else "")
    total = sum(places.values())
    return (f"{explainer_name}: the {method} ReLU rule applies only to torch.nn.ReLU modules, and "
            f"{type(network).__name__} has {total} other activation{'s' if total != 1 else ''}: {shown}; there "
            "the map follows the plain gradient (a ReLU called as a function is guided once it is an nn.ReLU "
            "module)")


class ReluRuleCheck:
    """Mixin of the explainers built on Captum's modified-ReLU gradients: one warning per instance (at ``check``
    or the first call) when the network has activations the rule does not reach."""

    #: the rule's name in the warning
    relu_rule: str = "guided backpropagation"
    network: nn.Module
    name: str

    def check(self, inputs: Tensor) -> None:
        super().check(inputs)  # type: ignore[misc]
        self._check_relu_rule(inputs)

    def _first_call(self, inputs: Tensor) -> None:
        super()._first_call(inputs)  # type: ignore[misc]
        self._check_relu_rule(inputs)

    def _check_relu_rule(self, inputs: Tensor) -> None:
        key = "relu-rule"
        if key in self._warned or getattr(self, "_relu_checked", False):  # type: ignore[attr-defined]
            return
        self._relu_checked = True
        places = unguided_activations(self.network, inputs[:1].detach())
        if places:
            self._warn_once(key, relu_rule_warning(self.relu_rule, self.name, self.network, places))  # type: ignore
