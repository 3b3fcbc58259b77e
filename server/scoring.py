"""The evaluation table of a summary: per explainer and metric the overall value, per-class values, count,
a normalised value for the comprehensive score, and a histogram of the per-sample values.

Normalising puts every metric on [0, 1] with 1 the best: ``(v - lo) / (hi - lo)`` within the metric's declared
range (or, when the range is open, the span of the explainers' values), inverted for lower-is-better metrics. The
comprehensive score of an explainer is the weighted mean of its normalised values with the weights normalised to
sum to 1 over the metrics it has a value for.

A metric's best explainer is only named when it beats the runner-up by more than the noise of the two means:
``best - second > 2 * sqrt(sem_best**2 + sem_second**2)``, with ``sem`` the standard error of the mean of the
per-sample values. Differences in the fourth decimal of two noisy means say nothing, and exact ties name nobody.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from xaiboard.store import Summary

BINS = 20
SIGNIFICANCE = 2.0  # standard errors of the difference a best value must lead the runner-up by


def _finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


def metric_bounds(metric: Mapping[str, Any], values: Sequence[Optional[float]]) -> tuple[Optional[float],
                                                                                          Optional[float]]:
    """The span a metric is normalised within: its declared range, completed by the observed values."""
    lo, hi = metric["range"]
    observed = [v for v in values if _finite(v)]
    if not _finite(lo):
        lo = min(observed) if observed else None
    if not _finite(hi):
        hi = max(observed) if observed else None
    return lo, hi


def normalise(value: Optional[float], lo: Optional[float], hi: Optional[float], higher_is_better: bool
              ) -> Optional[float]:
    """A value on [0, 1] where 1 is the best; None when undefined."""
    if not _finite(value) or lo is None or hi is None:
        return None
    if hi <= lo:
        return 1.0
    scaled = min(1.0, max(0.0, (value - lo) / (hi - lo)))  # type: ignore[operator]
    return scaled if higher_is_better else 1.0 - scaled


def comprehensive(normalised: Mapping[str, Optional[float]], weights: Mapping[str, float]) -> Optional[float]:
    """Weighted mean of the defined normalised values; None when no metric with a positive weight is defined."""
    total = sum(weights.get(name, 0.0) for name, value in normalised.items() if value is not None)
    if total <= 0:
        return None
    return sum(weights.get(name, 0.0) * value for name, value in normalised.items() if value is not None) / total


def _histogram(values: np.ndarray, lo: Optional[float], hi: Optional[float]) -> dict[str, Any]:
    if values.size == 0:
        return {"edges": [], "counts": []}
    low = lo if _finite(lo) else float(values.min())
    high = hi if _finite(hi) else float(values.max())
    low, high = min(low, float(values.min())), max(high, float(values.max()))  # type: ignore[type-var]
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(values, bins=BINS, range=(low, high))
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def standard_error(values: np.ndarray) -> Optional[float]:
    """The standard error of the mean of the finite ``values``; None with fewer than two."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return None
    return float(np.std(finite, ddof=1) / math.sqrt(finite.size))


def best_explainers(table: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per metric: the explainer that is best by more than ``SIGNIFICANCE`` standard errors of the difference
    to the runner-up (``explainer`` None when none is), with the numbers that decided it."""
    result = {}
    for metric in table["metrics"]:
        rows = [r for r in table["scores"] if r["metric"] == metric["name"] and _finite(r["value"])]
        rows.sort(key=lambda r: r["value"], reverse=metric["higher_is_better"])
        decision: dict[str, Any] = {"explainer": None, "runner_up": None, "difference": None, "threshold": None}
        if len(rows) >= 2:
            first, second = rows[0], rows[1]
            difference = abs(first["value"] - second["value"])
            decision.update(runner_up=second["explainer"], difference=difference)
            if first["sem"] is not None and second["sem"] is not None:
                threshold = SIGNIFICANCE * math.sqrt(first["sem"] ** 2 + second["sem"] ** 2)
                decision["threshold"] = threshold
                if difference > threshold and difference > 0:
                    decision["explainer"] = first["explainer"]
        result[metric["name"]] = decision
    return result


def score_table(summary: Summary) -> dict[str, Any]:
    """Everything the evaluation page needs, JSON-ready (one SQL query per explainer and metric pair at most)."""
    names = summary.label_names()
    explainers = [e.name for e in summary.explainers()]
    metrics = [
        {"name": m.name, "higher_is_better": m.higher_is_better, "range": list(m.range), "aggregation": m.aggregation}
        for m in summary.metrics()
    ]
    aggregates = {(a.explainer, a.metric): a for a in summary.aggregates()}
    bounds = {
        m["name"]: metric_bounds(m, [aggregates[(e, m["name"])].value for e in explainers
                                     if (e, m["name"]) in aggregates])
        for m in metrics
    }
    scores = []
    for explainer in explainers:
        for metric in metrics:
            aggregate = aggregates.get((explainer, metric["name"]))
            if aggregate is None:
                continue
            lo, hi = bounds[metric["name"]]
            values = summary.score_values(explainer, metric["name"])
            scores.append({
                "explainer": explainer,
                "metric": metric["name"],
                "value": aggregate.value,
                "count": aggregate.count,
                "sem": standard_error(values),
                "normalized": normalise(aggregate.value, lo, hi, metric["higher_is_better"]),
                "per_class": [
                    {"index": c.label_index, "name": names.get(c.label_index, str(c.label_index)), "value": c.mean,
                     "count": c.count}
                    for c in aggregate.per_class
                ],
                "distribution": _histogram(values, *metric["range"]),
            })
    timings = summary.explainer_timings()
    score_timings = summary.score_timings()
    table = {
        "explainers": explainers,
        "metrics": metrics,
        "labels": [{"index": index, "name": name} for index, name in names.items()],
        "scores": scores,
        "timings": [{"explainer": e, **timings[e]} for e in explainers if e in timings],
        # where benchmark time went: mean and total seconds per scored pair, per explainer and metric
        "score_timings": [{"explainer": e, "metric": m, **t} for (e, m), t in score_timings.items()
                          if t["count"]],
    }
    table["best"] = best_explainers(table)
    return table


def comprehensive_scores(table: Mapping[str, Any], weights: Mapping[str, float] | None = None
                         ) -> dict[str, Optional[float]]:
    """Per explainer, the comprehensive score with ``weights`` (equal weights when None)."""
    metric_names = [m["name"] for m in table["metrics"]]
    weights = weights if weights is not None else {name: 1.0 for name in metric_names}
    normalised: dict[str, dict[str, Optional[float]]] = {e: {} for e in table["explainers"]}
    for row in table["scores"]:
        normalised[row["explainer"]][row["metric"]] = row["normalized"]
    return {explainer: comprehensive(values, weights) for explainer, values in normalised.items()}


def _cell(value: Any) -> Any:
    """Spreadsheet-safe text: names from datasets must not start a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def table_csv(table: Mapping[str, Any], weights: Mapping[str, float] | None = None) -> str:
    """The explainer x metric table as CSV, one row per explainer, with the comprehensive score last."""
    metric_names = [m["name"] for m in table["metrics"]]
    values = {(row["explainer"], row["metric"]): row["value"] for row in table["scores"]}
    overall = comprehensive_scores(table, weights)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["explainer", *(_cell(m) for m in metric_names), "comprehensive"])
    for explainer in table["explainers"]:
        writer.writerow([_cell(explainer), *(_cell(values.get((explainer, m))) for m in metric_names),
                         _cell(overall[explainer])])
    return buffer.getvalue()
