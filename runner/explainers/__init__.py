"""Saliency explainers: thin, batched wrappers over Captum (and RISE, our own), one relevance map per (image, label).

Every explainer takes the network first, documents how it reduces attributions to one map (higher = more evidence
for the label), records its full configuration, states its cost per pair with ``passes(image_shape)`` and can be
rebound to another network with ``with_network``. ``explain_with_delta(..., native=True)`` keeps maps at the
method's own grid (GradCAM's layer); :func:`to_input_size` brings them to the input size exactly as ``native=False``.
"""

from .attention_rollout import AttentionRollout
from .base import Explainer, resolve_layer, to_input_size
from .deconvolution import Deconvolution
from .deeplift import DeepLift
from .gradcam import GradCAM
from .gradient import Gradient
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .random_map import RandomMap
from .rise import RISE
from .smoothgrad import SmoothGrad

__all__ = [
    "AttentionRollout", "Deconvolution", "DeepLift", "Explainer", "GradCAM", "Gradient", "GuidedBackprop",
    "GuidedGradCAM", "InputXGradient", "IntegratedGradients", "Occlusion", "RISE", "RandomMap", "SmoothGrad",
    "resolve_layer", "to_input_size",
]
