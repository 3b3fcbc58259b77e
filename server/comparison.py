"""Comparing runs: what differs between them, what can be matched, and one normalisation for all of them.

Runs are matched by name, never by position: classes by label name, samples by sample name (an id or a label
index is a position in one run's dataset or model output, which differs between runs). Scores are only comparable
when the runs share their classes, their model and their dataset; every difference found is reported in words so
the page can say why a delta is not coloured.

The comprehensive score of every run is computed with one normalisation: each metric within its declared range, an
open end of a range filled with the extreme value over all compared runs (not per run), so the same raw value gets
the same normalised value in every column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from xaiboard.store import Summary

from . import scoring
from .security import ApiError

# Below this share of a run's samples found in every other run, the runs are scored on different data.
MIN_SHARED_FRACTION = 0.9
MAX_NAMES_SHOWN = 5


@dataclass(frozen=True)
class Run:
    """What a comparison reads of one summary."""

    row: Mapping[str, Any]  # the summary's line in the list (id, name, path, status, num_samples)
    table: Mapping[str, Any]  # scoring.score_table
    labels: Mapping[int, str]  # label index -> class name
    sample_names: Mapping[int, str]  # sample id -> sample name
    model_class: Optional[str] = None
    num_parameters: Optional[int] = None
    image_size: tuple[Optional[int], Optional[int]] = (None, None)  # height, width


def read_run(row: Mapping[str, Any], table: Mapping[str, Any], sample_names: Mapping[int, str],
             summary: Summary) -> Run:
    """A run as compared: its list row, score table and sample names with its classes and model from ``summary``."""
    run = summary.run()
    return Run(row=row, table=table, labels=summary.label_names(), sample_names=sample_names,
               model_class=run.model_class, num_parameters=run.num_parameters,
               image_size=(run.image_height, run.image_width))


def _finite(value: Optional[float]) -> bool:
    return value is not None and math.isfinite(value)


def _unique_by_name(items: Mapping[int, str]) -> dict[str, int]:
    """Name -> id for the names that occur once (a repeated name cannot be matched)."""
    seen: dict[str, int] = {}
    repeated = set()
    for key, name in items.items():
        if name in seen:
            repeated.add(name)
        seen[name] = key
    return {name: key for name, key in seen.items() if name not in repeated}


def _matched(items: Sequence[Mapping[int, str]]) -> list[dict[str, Any]]:
    """Names present once in every mapping, ordered as in the first, with each mapping's key for the name."""
    unique = [_unique_by_name(run) for run in items]
    if not unique:
        return []
    common = set(unique[0]).intersection(*unique[1:])
    ordered = sorted(common, key=lambda name: unique[0][name])
    return [{"name": name, "ids": [run[name] for run in unique]} for name in ordered]


def shared_samples(names: list[dict[int, str]]) -> list[dict[str, Any]]:
    """Samples present in every run, matched by name; names that repeat within a run are left out. Ordered as in
    the first run."""
    return _matched(names)


def matched_classes(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Classes every run has, by name: ``[{"name", "indexes": [index in each run]}]``, in the first run's order."""
    return [{"name": m["name"], "indexes": m["ids"]} for m in _matched([run.labels for run in runs])]


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_NAMES_SHOWN])
    return shown + (f" and {len(items) - MAX_NAMES_SHOWN:,} more" if len(items) > MAX_NAMES_SHOWN else "")


def _model_text(run: Run) -> str:
    model = run.model_class or "an unnamed model"
    return model + (f" ({run.num_parameters:,} parameters)" if run.num_parameters is not None else "")


def differences(runs: Sequence[Run], classes: Sequence[Mapping[str, Any]], shared: int) -> list[dict[str, str]]:
    """What makes the runs' scores incomparable, each as ``{"kind", "message"}``; empty when nothing differs."""
    if len(runs) < 2:
        return []
    found = []
    names = [run.row["name"] for run in runs]
    matched = {c["name"] for c in classes}
    if any(len(run.labels) != len(matched) for run in runs):
        only = [[name for _, name in sorted(run.labels.items()) if name not in matched] for run in runs]
        parts = [f"{name} has {len(run.labels):,}" + (f" (only here: {_names(extra)})" if extra else "")
                 for name, run, extra in zip(names, runs, only)]
        found.append({"kind": "classes", "message": f"Classes differ: {len(matched):,} classes by name in every "
                                                    f"run; " + "; ".join(parts) + "."})
    models = {(run.model_class, run.num_parameters) for run in runs}
    if len(models) > 1:
        found.append({"kind": "model", "message": "Models differ: " + "; ".join(
            f"{_model_text(run)} in {name}" for name, run in zip(names, runs)) + "."})
    low = [(name, len(run.sample_names)) for name, run in zip(names, runs)
           if run.sample_names and shared / len(run.sample_names) < MIN_SHARED_FRACTION]
    if low and not shared:
        found.append({"kind": "dataset", "message": "Datasets differ: no sample is in every run (samples are matched "
                                                    "by name)."})
    elif low:
        parts = [f"{shared:,} of {count:,} samples of {name} ({shared / count:.0%})" for name, count in low]
        found.append({"kind": "dataset", "message": "Datasets differ: only " + "; ".join(parts)
                                                    + " are in every run (samples are matched by name)."})
    sizes = {run.image_size for run in runs if None not in run.image_size}
    if len(sizes) > 1:
        found.append({"kind": "dataset", "message": "Image sizes differ: " + "; ".join(
            f"{run.image_size[1]}×{run.image_size[0]} in {name}" for name, run in zip(names, runs)
            if None not in run.image_size) + "."})
    declared: dict[str, set] = {}
    for run in runs:
        for metric in run.table["metrics"]:
            declared.setdefault(metric["name"], set()).add((metric["higher_is_better"], tuple(metric["range"])))
    changed = sorted(name for name, kinds in declared.items() if len(kinds) > 1)
    if changed:
        found.append({"kind": "metrics", "message": f"Metrics declared differently (direction or range): "
                                                    f"{_names(changed)}."})
    return found


def merged_metrics(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Every metric of any run by name, declared as in the first run that has it."""
    metrics: dict[str, dict[str, Any]] = {}
    for run in runs:
        for metric in run.table["metrics"]:
            metrics.setdefault(metric["name"], dict(metric))
    return metrics


def joint_bounds(runs: Sequence[Run], metrics: Mapping[str, Mapping[str, Any]]
                 ) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """Per metric, the span it is normalised within: the declared range, an open end filled with the extreme of
    the values of every explainer in every compared run."""
    values: dict[str, list[Optional[float]]] = {name: [] for name in metrics}
    for run in runs:
        for row in run.table["scores"]:
            values.setdefault(row["metric"], []).append(row["value"])
    return {name: scoring.metric_bounds(metric, values[name]) for name, metric in metrics.items()}


def normalisation(metrics: Mapping[str, Mapping[str, Any]],
                  bounds: Mapping[str, tuple[Optional[float], Optional[float]]]) -> list[dict[str, Any]]:
    """How each metric was put on [0, 1], for the page to state under the table."""
    rows = []
    for name, metric in metrics.items():
        lo, hi = metric["range"]
        rows.append({"metric": name, "higher_is_better": metric["higher_is_better"], "range": [lo, hi],
                     "bounds": list(bounds[name]),
                     "observed": not (_finite(lo) and _finite(hi))})
    return rows


def normalised_values(run: Run, metrics: Mapping[str, Mapping[str, Any]],
                      bounds: Mapping[str, tuple[Optional[float], Optional[float]]]
                      ) -> dict[tuple[str, str], Optional[float]]:
    """(explainer, metric) -> the run's value normalised with the joint bounds."""
    return {(row["explainer"], row["metric"]): scoring.normalise(row["value"], *bounds[row["metric"]],
                                                                 metrics[row["metric"]]["higher_is_better"])
            for row in run.table["scores"]}


def comprehensive(runs: Sequence[Run], metrics: Mapping[str, Mapping[str, Any]],
                  bounds: Mapping[str, tuple[Optional[float], Optional[float]]]) -> list[dict[str, Optional[float]]]:
    """Per run, per explainer, the equal-weight mean of the jointly normalised values."""
    weights = {name: 1.0 for name in metrics}
    result = []
    for run in runs:
        normalised: dict[str, dict[str, Optional[float]]] = {e: {} for e in run.table["explainers"]}
        for (explainer, metric), value in normalised_values(run, metrics, bounds).items():
            normalised.setdefault(explainer, {})[metric] = value
        result.append({e: scoring.comprehensive(values, weights) for e, values in normalised.items()})
    return result


def score_rows(runs: Sequence[Run], explainers: Sequence[str], metrics: Mapping[str, Mapping[str, Any]],
               bounds: Mapping[str, tuple[Optional[float], Optional[float]]]) -> list[dict[str, Any]]:
    """One row per explainer and metric any run has: each run's value, count and jointly normalised value."""
    cells = [{(r["explainer"], r["metric"]): r for r in run.table["scores"]} for run in runs]
    normalised = [normalised_values(run, metrics, bounds) for run in runs]
    rows = []
    for explainer in explainers:
        for metric in metrics:
            found = [c.get((explainer, metric)) for c in cells]
            if any(found):
                rows.append({"explainer": explainer, "metric": metric,
                             "values": [c["value"] if c else None for c in found],
                             "counts": [c["count"] if c else 0 for c in found],
                             "normalized": [n.get((explainer, metric)) for n in normalised]})
    return rows


def per_class(runs: Sequence[Run], classes: Sequence[Mapping[str, Any]], metric: str, explainer: str
              ) -> list[dict[str, Any]]:
    """The per-class values of one explainer and metric for the classes every run has (by name) and at least one
    run scored, in the first run's class order."""
    values = []
    for run in runs:
        row = next((r for r in run.table["scores"] if r["explainer"] == explainer and r["metric"] == metric), None)
        values.append({c["index"]: c for c in row["per_class"]} if row else {})
    rows = []
    for cls in classes:
        found = [v.get(index) for v, index in zip(values, cls["indexes"])]
        if any(found):
            rows.append({"name": cls["name"], "indexes": cls["indexes"],
                         "values": [c["value"] if c else None for c in found],
                         "counts": [c["count"] if c else 0 for c in found]})
    return rows


def _pick(value: Optional[str], known: Sequence[str], what: str) -> Optional[str]:
    if value is None or value == "":
        return known[0] if known else None
    if value not in known:
        raise ApiError(400, f"unknown {what} {value[:60]!r} (the compared runs have: {', '.join(known) or 'none'})")
    return value


def compare(runs: Sequence[Run], metric: Optional[str] = None, explainer: Optional[str] = None,
            max_shared: int = 500) -> dict[str, Any]:
    """The comparison of ``runs`` as the page shows it, JSON-ready. ``metric`` and ``explainer`` choose the
    per-class rows (the first of each when absent); an unknown one is an ApiError 400."""
    explainers = list(dict.fromkeys(e for run in runs for e in run.table["explainers"]))
    metrics = merged_metrics(runs)
    bounds = joint_bounds(runs, metrics)
    classes = matched_classes(runs)
    shared = shared_samples([dict(run.sample_names) for run in runs])
    found = differences(runs, classes, len(shared))
    chosen_metric = _pick(metric, list(metrics), "metric")
    chosen_explainer = _pick(explainer, explainers, "explainer")
    return {
        "summaries": [{**{key: run.row[key] for key in ("id", "name", "path", "status", "num_samples")},
                       "model": {"class": run.model_class, "num_parameters": run.num_parameters},
                       "image_size": list(run.image_size), "num_classes": len(run.labels)} for run in runs],
        "comparable": not any(d["kind"] in ("classes", "model", "dataset") for d in found),
        "differences": found,
        "explainers": explainers,
        "metrics": list(metrics.values()),
        "table": score_rows(runs, explainers, metrics, bounds),
        "comprehensive": comprehensive(runs, metrics, bounds),
        "normalisation": normalisation(metrics, bounds),
        "classes": {"matched": len(classes), "counts": [len(run.labels) for run in runs]},
        "per_class": {"metric": chosen_metric, "explainer": chosen_explainer,
                      "rows": per_class(runs, classes, chosen_metric, chosen_explainer)
                      if chosen_metric and chosen_explainer else []},
        "shared_samples": {"total": len(shared), "samples": shared[:max_shared]},
    }
