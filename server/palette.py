"""One colour per explainer, the same on every page and in every run: the built-in explainers have fixed colours,
other names get one of the remaining colours chosen by a stable hash of the name (not by position, which differs
between runs and between pages that show a subset)."""

from __future__ import annotations

import hashlib

BUILT_IN = {
    "Gradient": "#4c6ef5",
    "InputXGradient": "#f76707",
    "IntegratedGradients": "#2f9e44",
    "SmoothGrad": "#e03131",
    "GuidedBackprop": "#7048e8",
    "Deconvolution": "#1098ad",
    "DeepLift": "#d6336c",
    "GradCAM": "#5c940d",
    "GuidedGradCAM": "#f59f00",
    "Occlusion": "#495057",
    "RISE": "#a61e4d",
    "Random": "#adb5bd",
}
# no greens: two built-ins (IntegratedGradients, GradCAM) are green, and a variant such as
# IntegratedGradients[blur] shown beside them must not look like one of them
OTHERS = ["#0b7285", "#862e9c", "#e8590c", "#364fc7", "#e64980", "#c2255c", "#5f3dc4", "#3bc9db", "#1864ab",
          "#d9480f", "#343a40", "#9c36b5"]


def explainer_color(name: str) -> str:
    """The colour of an explainer: fixed for the built-in names, hashed from the name for the others."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
    return OTHERS[digest % len(OTHERS)]


def explainer_colors(names: list[str]) -> dict[str, str]:
    """Colours for the explainers shown together; a hashed colour taken twice is replaced by the next free one,
    so one chart never shows two explainers in one colour."""
    taken: set[str] = set()
    colors: dict[str, str] = {}
    for name in sorted(names, key=lambda n: (n not in BUILT_IN, n)):
        color = explainer_color(name)
        if color in taken:
            free = [c for c in OTHERS + list(BUILT_IN.values()) if c not in taken]
            color = free[0] if free else color
        taken.add(color)
        colors[name] = color
    return colors
