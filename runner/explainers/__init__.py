"""Saliency explainers: thin, batched wrappers over Captum (and RISE, our own), one relevance map per (image, label).

Every explainer takes the network first, documents how it reduces attributions to one map (higher = more evidence
for the label), records its full configuration and can be rebound to another network with ``with_network``.
"""

from .base import Explainer, resolve_layer
from .deconvolution import Deconvolution
from .deeplift import DeepLift
from .gradcam import GradCAM
from .gradient import Gradient
from .guided_backprop import GuidedBackprop
from .guided_gradcam import GuidedGradCAM
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .occlusion import Occlusion
from .rise import RISE
from .smoothgrad import SmoothGrad

__all__ = [
    "Deconvolution", "DeepLift", "Explainer", "GradCAM", "Gradient", "GuidedBackprop", "GuidedGradCAM",
    "InputXGradient", "IntegratedGradients", "Occlusion", "RISE", "SmoothGrad", "resolve_layer",
]
