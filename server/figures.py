"""Plotly figures of a summary's scores, built with plotly's Python API and sent to the browser as figure JSON.

plotly is imported on first use so that starting the server stays fast.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any

from .security import ApiError

NAMES = ("per-class-explainer", "per-class-metric", "radar", "distributions", "timings")
COLORS = ["#4c6ef5", "#f76707", "#2f9e44", "#e03131", "#7048e8", "#1098ad", "#d6336c", "#5c940d", "#845ef7",
          "#e8590c", "#495057", "#f59f00"]
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        "template": "plotly_white",
        "font": {"family": FONT, "size": 12, "color": "#1f2937"},
        "margin": {"l": 56, "r": 16, "t": 48, "b": 48},
        "height": 340,
        "colorway": COLORS,
        "legend": {"orientation": "h", "y": -0.2, "x": 0},
        "hoverlabel": {"font": {"family": FONT}},
    }
    layout.update(extra)
    return layout


def text(value: str) -> str:
    """Plotly renders a few HTML tags in text (``<b>``, ``<a>``...): names from datasets must show as typed."""
    return html.escape(str(value), quote=False)


def _arrow(metric: Mapping[str, Any]) -> str:
    return f"{text(metric['name'])} {'↑' if metric['higher_is_better'] else '↓'}"


def build(name: str, table: Mapping[str, Any], args: Mapping[str, str]) -> dict[str, Any]:
    """The figure ``name`` as a plain dict (``{"data": [...], "layout": {...}}``) for ``Plotly.newPlot``."""
    import plotly.graph_objects as go

    from . import params

    metrics = {m["name"]: m for m in table["metrics"]}
    rows = {(row["explainer"], row["metric"]): row for row in table["scores"]}
    labels = [text(label["name"]) for label in table["labels"]]
    figure = go.Figure()

    def per_class(row: Mapping[str, Any] | None) -> list:
        values = {c["index"]: c["value"] for c in row["per_class"]} if row else {}
        return [values.get(label["index"]) for label in table["labels"]]

    if name == "per-class-explainer":
        explainer = params.one_of(args, "explainer", table["explainers"], "explainer")
        for metric in table["metrics"]:
            figure.add_bar(name=_arrow(metric), x=labels, y=per_class(rows.get((explainer, metric["name"]))))
        figure.update_layout(_layout(f"{text(explainer)}: every metric per class", barmode="group",
                                     yaxis={"title": {"text": "mean score"}}))
    elif name == "per-class-metric":
        metric_name = params.one_of(args, "metric", list(metrics), "metric")
        for explainer in table["explainers"]:
            figure.add_bar(name=text(explainer), x=labels, y=per_class(rows.get((explainer, metric_name))))
        figure.update_layout(_layout(f"{_arrow(metrics[metric_name])}: every explainer per class", barmode="group",
                                     yaxis={"title": {"text": text(metric_name)}}))
    elif name == "radar":
        theta = [_arrow(m) for m in table["metrics"]]
        for explainer in table["explainers"]:
            r = [rows.get((explainer, m["name"]), {}).get("normalized") for m in table["metrics"]]
            figure.add_scatterpolar(name=text(explainer), r=r + r[:1], theta=theta + theta[:1], fill="toself",
                                    opacity=0.65, connectgaps=True)
        figure.update_layout(_layout("Normalised scores (1 = best)",
                                     polar={"radialaxis": {"range": [0, 1], "tickvals": [0, 0.5, 1]}}))
    elif name == "distributions":
        metric_name = params.one_of(args, "metric", list(metrics), "metric")
        for explainer in table["explainers"]:
            row = rows.get((explainer, metric_name))
            if not row or not row["distribution"]["counts"]:
                continue
            edges, counts = row["distribution"]["edges"], row["distribution"]["counts"]
            centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
            figure.add_bar(name=text(explainer), x=centers, y=counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])],
                           opacity=0.6)
        figure.update_layout(_layout(f"Distribution of {_arrow(metrics[metric_name])} per sample", barmode="overlay",
                                     xaxis={"title": {"text": text(metric_name)}},
                                     yaxis={"title": {"text": "samples × labels"}}))
    elif name == "timings":
        # Where time goes per explained (sample, label): the map, then each benchmark on it (stacked).
        maps = {t["explainer"]: t["seconds"] for t in table["timings"]}
        benchmarks = table.get("score_timings", [])
        order = [e for e in table["explainers"] if e in maps or any(b["explainer"] == e for b in benchmarks)]
        x = [text(e) for e in order]
        figure.add_bar(name="explaining", x=x, y=[(maps.get(e) or 0.0) * 1000 for e in order],
                       marker={"color": COLORS[0]})
        per_metric = {(b["explainer"], b["metric"]): b["mean_seconds"] for b in benchmarks}
        for i, metric in enumerate(dict.fromkeys(b["metric"] for b in benchmarks), 1):
            figure.add_bar(name=text(metric), x=x, y=[(per_metric.get((e, metric)) or 0.0) * 1000 for e in order],
                           marker={"color": COLORS[i % len(COLORS)]})
        figure.update_layout(_layout("Mean time per explained pair: the map, then each benchmark", barmode="stack",
                                     yaxis={"title": {"text": "milliseconds"}}))
    else:
        raise ApiError(404, f"unknown figure {name[:60]!r} (figures are {', '.join(NAMES)})")
    return json.loads(figure.to_json())
