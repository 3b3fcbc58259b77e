"""The JSON of a pair's diagnostics: Integrated Gradients' path per IG explainer with a verdict in plain words,
and the perturbation curves of every explainer, grouped by metric, for the zoom view's two panels."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from xaiboard.store import Summary

#: the alphas whose images the panel shows
IMAGE_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_TOLERANCE = 0.05
#: |F(x) - F(baseline)| below this (output units) is too small to judge the integral by
SMALL_GAP = 1e-3
#: explainer classes whose curves are references, not methods (drawn dashed)
REFERENCE_CLASSES = frozenset({"RandomMap"})


def _floats(values: Any) -> list[Optional[float]]:
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values, dtype=np.float64)]


def percent(value: float) -> str:
    """A share in words: 0.3%, 12%, <0.1%."""
    share = 100 * value
    if share < 0.1:
        return "<0.1%"
    return f"{share:.1f}%" if share < 10 else f"{share:.0f}%"


def verdict(relative: Optional[float], gap: Optional[float], tolerance: float, steps: int,
            steps_needed: Optional[int], searched: bool) -> tuple[str, Optional[bool]]:
    """A sentence on completeness and whether the integral converged (None: cannot be judged)."""
    if relative is None or gap is None:
        return "No convergence delta was stored for this pair.", None
    if abs(gap) < SMALL_GAP:
        return (f"F(x) and F(baseline) barely differ ({gap:.2g}), so the sum of attributions cannot judge the "
                "integral.", None)
    if relative <= tolerance:
        text = (f"The sum of attributions matches F(x) − F(baseline) within {percent(relative)} "
                f"(tolerance {percent(tolerance)}): the integral converged with {steps} steps.")
        converged = True
    else:
        text = (f"The sum of attributions misses F(x) − F(baseline) by {percent(relative)} (tolerance "
                f"{percent(tolerance)}): {steps} steps were not enough; the map is not a faithful integral.")
        converged = False
    if searched:
        text += (f" {steps_needed} steps were enough." if steps_needed is not None
                 else " No step count tried was enough.")
    return text, converged


def path_json(summary: Summary, sample_id: int, label_index: int, configs: dict[str, dict[str, Any]],
              colors: dict[str, str], image_url: Callable[[str, float], str]) -> list[dict[str, Any]]:
    """One entry per IG explainer that kept a path for the pair, with the URLs of its images along the path."""
    entries = []
    for path in summary.paths(sample_id, label_index):
        config = configs.get(path.explainer, {})
        tolerance = float(config.get("delta_tolerance", DEFAULT_TOLERANCE))
        searched = config.get("search_steps") is not None
        text, converged = verdict(path.relative_delta, path.output_gap, tolerance, path.steps, path.steps_needed,
                                  searched)
        baseline = config.get("baseline", "zero")
        drawable = not isinstance(baseline, dict)
        entries.append({
            "explainer": path.explainer,
            "color": colors.get(path.explainer),
            "baseline": baseline if drawable else "tensor",
            "method": config.get("method"),
            "steps": path.steps,
            "alphas": _floats(path.alphas),
            "probabilities": _floats(path.probabilities),
            "gradients": _floats(path.gradients),
            "output_gap": path.output_gap,
            "relative_delta": path.relative_delta,
            "tolerance": tolerance,
            "converged": converged,
            "steps_needed": path.steps_needed,
            "searched": searched,
            "verdict": text,
            "images": [{"alpha": alpha, "url": image_url(path.explainer, alpha)} for alpha in IMAGE_ALPHAS]
            if drawable else [],
        })
    return entries


def curves_json(summary: Summary, sample_id: int, label_index: int, configs: dict[str, dict[str, Any]],
                colors: dict[str, str]) -> list[dict[str, Any]]:
    """Per metric with curves: its direction, the x of each point and every explainer's curve with its score."""
    metrics = {m.name: m for m in summary.metrics()}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for curve in summary.curves(sample_id, label_index):
        grouped.setdefault(curve.metric, []).append({
            "explainer": curve.explainer,
            "color": colors.get(curve.explainer),
            "reference": configs.get(curve.explainer, {}).get("class") in REFERENCE_CLASSES,
            "values": _floats(curve.values),
            "score": curve.score,
        })
    result = []
    for name, entries in grouped.items():
        points = max(len(e["values"]) for e in entries)
        naive = name == "NaiveFaithfulness"
        metric = metrics.get(name)
        result.append({
            "metric": name,
            "higher_is_better": metric.higher_is_better if metric else True,
            "x": list(range(points)) if naive else [k / (points - 1) for k in range(points)],
            "x_title": "band replaced (0: the image)" if naive else (
                "fraction of pixels inserted" if name == "InsertionAUC" else "fraction of pixels deleted"),
            "area": not naive,
            "curves": entries,
        })
    return result
