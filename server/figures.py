"""Plotly figures of a summary's scores, built with plotly's Python API and sent to the browser as figure JSON.

plotly is imported on first use so that starting the server stays fast.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from . import palette
from .security import ApiError

NAMES = ("per-class-explainer", "per-class-metric", "radar", "distributions", "timings")
# Metrics colour the bars of one explainer's chart; explainers always take their colours from :mod:`.palette`.
METRIC_COLORS = ["#364fc7", "#e8590c", "#2b8a3e", "#c92a2a", "#5f3dc4", "#0c8599", "#a61e4d", "#5c940d"]
STAGE_COLOR = "#868e96"
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
SORTS = ("score", "count", "name")
ORDERS = ("desc", "asc")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_OFFSET = 10**12


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 15}},
        "template": "plotly_white",
        "font": {"family": FONT, "size": 12, "color": "#1f2937"},
        "margin": {"l": 56, "r": 16, "t": 48, "b": 48},
        "height": 340,
        "colorway": METRIC_COLORS,
        # on the right, outside the plot: a legend above or below runs into the title or the axis labels
        "legend": {"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"},
        "hoverlabel": {"font": {"family": FONT}},
    }
    layout.update(extra)
    return layout


def text(value: str) -> str:
    """Plotly renders a few HTML tags in text (``<b>``, ``<a>``...): names from datasets must show as typed."""
    return html.escape(str(value), quote=False)


def _arrow(metric: Mapping[str, Any]) -> str:
    return f"{text(metric['name'])} {'↑' if metric['higher_is_better'] else '↓'}"


def paging(args: Mapping[str, str]) -> dict[str, Any]:
    """The per-class charts' ``sort``, ``order``, ``offset`` and ``limit``; a bad value is a 400 naming it."""
    from . import params

    sort = args.get("sort") or "count"
    if sort not in SORTS:
        raise ApiError(400, f"sort must be one of {', '.join(SORTS)}, got {sort[:40]!r}")
    order = args.get("order") or ("asc" if sort == "name" else "desc")
    if order not in ORDERS:
        raise ApiError(400, f"order must be desc or asc, got {order[:40]!r}")
    return {"sort": sort, "order": order, "offset": params.integer(args, "offset", 0, MAX_OFFSET),
            "limit": max(1, params.integer(args, "limit", DEFAULT_LIMIT, MAX_LIMIT))}


def cache_key(name: str, args: Mapping[str, str]) -> tuple:
    """What a figure depends on besides the table, validated (so bad values fail before any work)."""
    chosen = tuple(sorted((k, v) for k, v in args.items() if k in ("explainer", "metric")))
    if name.startswith("per-class"):
        return (name, chosen, tuple(paging(args).items()))
    return (name, chosen)


def _per_class(figure: Any, table: Mapping[str, Any], traces: list[tuple[str, Mapping[str, Any], str]],
               metrics: Mapping[str, Mapping[str, Any]], args: Mapping[str, str]
               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Horizontal grouped bars, one row per class with scores, sorted and paged; returns the paging ``meta`` and
    the layout that fits the rows.

    ``traces`` are (legend name, score row, colour). Sorting by score uses each class's mean normalised value
    (1 = best, so lower-is-better metrics count inverted), which keeps "best first" meaningful across metrics."""
    from . import scoring

    page = paging(args)
    names = {label["index"]: label["name"] for label in table["labels"]}
    values: list[dict[int, tuple[float, int]]] = []
    for _, row, _ in traces:
        values.append({c["index"]: (c["value"], c["count"]) for c in row["per_class"]
                       if c["value"] is not None and c["count"]})
    classes = sorted(set().union(*values)) if values else []
    normalised: dict[int, list[float]] = {c: [] for c in classes}
    for (_, row, _), per_class in zip(traces, values):
        metric = metrics[row["metric"]]
        lo, hi = scoring.metric_bounds(metric, [v for v, _ in per_class.values()])
        for index, (value, _) in per_class.items():
            scaled = scoring.normalise(value, lo, hi, metric["higher_is_better"])
            if scaled is not None:
                normalised[index].append(scaled)
    counts = {c: max(v[c][1] for v in values if c in v) for c in classes}
    keys = {
        "score": lambda c: sum(normalised[c]) / len(normalised[c]) if normalised[c] else float("-inf"),
        "count": lambda c: counts[c],
        "name": lambda c: names.get(c, str(c)).casefold(),
    }
    ordered = sorted(classes, key=lambda c: names.get(c, str(c)).casefold())  # ties read alphabetically
    ordered.sort(key=keys[page["sort"]], reverse=page["order"] == "desc")
    total, limit = len(ordered), page["limit"]
    offset = min(page["offset"], max(0, (total - 1) // limit * limit))
    shown = ordered[offset:offset + limit]
    repeated = {n for n, k in Counter(names.get(c, str(c)) for c in shown).items() if k > 1}
    ticks = [text(names.get(c, str(c))) + (f" (#{c})" if names.get(c, str(c)) in repeated else "") for c in shown]
    for (label, _, color), per_class in zip(traces, values):
        figure.add_bar(name=label, orientation="h", y=ticks, x=[per_class.get(c, (None, 0))[0] for c in shown],
                       customdata=[per_class.get(c, (None, 0))[1] for c in shown], marker={"color": color},
                       hovertemplate="%{y}<br>%{fullData.name}: %{x:.4g} · %{customdata} values<extra></extra>")
    meta = {"total": total, "offset": offset, "limit": limit, "sort": page["sort"], "order": page["order"],
            "shown": len(shown), "classes": shown}
    return meta, _per_class_layout(len(shown), len(traces))


def _per_class_layout(rows: int, traces: int) -> dict[str, Any]:
    """Rows tall enough for one readable bar per trace; names on the left, the value axis and its title on top
    next to the title, the legend on the right (never over the names)."""
    row_height = max(28, round(5.5 * traces + 12))
    top, bottom = 96, 16
    plot = max(row_height * max(1, rows), 20 * traces)
    height = top + plot + bottom
    return {
        "height": height, "barmode": "group", "bargap": 0.18, "bargroupgap": 0.04,
        "margin": {"l": 12, "r": 12, "t": top, "b": bottom},
        "title": {"y": 1 - 12 / height, "yanchor": "top"},
        "yaxis": {"autorange": "reversed", "automargin": True, "type": "category", "ticks": "", "ticklabelstandoff": 6},
        "xaxis": {"side": "top", "automargin": True, "zerolinecolor": "#adb5bd", "title": {"standoff": 6}},
        "legend": {"orientation": "v", "x": 1.01, "xanchor": "left", "y": 1, "yanchor": "top", "traceorder": "normal"},
        # every other row on a light band, so each class's group of bars reads as one
        "shapes": [{"type": "rect", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": i - 0.5, "y1": i + 0.5,
                    "fillcolor": "#f1f3f5", "line": {"width": 0}, "layer": "below"} for i in range(1, rows, 2)],
    }


def _title(title: str, meta: Mapping[str, Any]) -> str:
    if not meta["total"]:
        return f"{title} · no class has scores yet"
    first, last = meta["offset"] + 1, meta["offset"] + meta["shown"]
    return f"{title} · classes {first}–{last} of {meta['total']}"


def _alpha(color: str, opacity: float) -> str:
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {opacity})"


def build(name: str, table: Mapping[str, Any], args: Mapping[str, str]) -> dict[str, Any]:
    """The figure ``name`` as a plain dict (``{"data": [...], "layout": {...}}``) for ``Plotly.newPlot``; the
    per-class figures add ``meta`` with their paging (``total`` classes with scores, ``offset``, ``limit``...)."""
    import plotly.graph_objects as go

    from . import params

    metrics = {m["name"]: m for m in table["metrics"]}
    rows = {(row["explainer"], row["metric"]): row for row in table["scores"]}
    colors = palette.explainer_colors(list(table["explainers"]))
    figure = go.Figure()
    meta = None

    if name == "per-class-explainer":
        explainer = params.one_of(args, "explainer", table["explainers"], "explainer")
        traces = [(_arrow(m), rows[(explainer, m["name"])], METRIC_COLORS[i % len(METRIC_COLORS)])
                  for i, m in enumerate(table["metrics"]) if (explainer, m["name"]) in rows]
        meta, layout = _per_class(figure, table, traces, metrics, args)
        figure.update_layout(_layout(_title(f"{text(explainer)}: every metric per class", meta)))
        figure.update_layout(layout, xaxis_title_text="mean score per class")
    elif name == "per-class-metric":
        metric_name = params.one_of(args, "metric", list(metrics), "metric")
        traces = [(text(e), rows[(e, metric_name)], colors[e]) for e in table["explainers"]
                  if (e, metric_name) in rows]
        meta, layout = _per_class(figure, table, traces, metrics, args)
        lo, hi = metrics[metric_name]["range"]
        figure.update_layout(_layout(_title(f"{_arrow(metrics[metric_name])}: every explainer per class", meta)))
        figure.update_layout(layout, xaxis_title_text=f"mean {text(metric_name)} per class")
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            figure.update_xaxes(range=[lo, hi])
    elif name == "radar":
        theta = [_arrow(m) for m in table["metrics"]]
        for explainer in table["explainers"]:
            r = [rows.get((explainer, m["name"]), {}).get("normalized") for m in table["metrics"]]
            figure.add_scatterpolar(name=text(explainer), r=r + r[:1], theta=theta + theta[:1], fill="toself",
                                    connectgaps=True, line={"color": colors[explainer]},
                                    fillcolor=_alpha(colors[explainer], 0.12))
        figure.update_layout(_layout("Normalised scores (1 = best)",
                                     polar={"radialaxis": {"range": [0, 1], "tickvals": [0, 0.5, 1]},
                                            "domain": {"x": [0.04, 0.8]}}))
    elif name == "distributions":
        metric_name = params.one_of(args, "metric", list(metrics), "metric")
        for explainer in table["explainers"]:
            row = rows.get((explainer, metric_name))
            if not row or not row["distribution"]["counts"]:
                continue
            edges, counts = row["distribution"]["edges"], row["distribution"]["counts"]
            centers = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
            figure.add_bar(name=text(explainer), x=centers, y=counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])],
                           opacity=0.6, marker={"color": colors[explainer]})
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
                       marker={"color": STAGE_COLOR})
        per_metric = {(b["explainer"], b["metric"]): b["mean_seconds"] for b in benchmarks}
        for i, metric in enumerate(dict.fromkeys(b["metric"] for b in benchmarks)):
            figure.add_bar(name=text(metric), x=x, y=[(per_metric.get((e, metric)) or 0.0) * 1000 for e in order],
                           marker={"color": METRIC_COLORS[i % len(METRIC_COLORS)]})
        figure.update_layout(_layout("Mean time per explained pair: the map, then each benchmark", barmode="stack",
                                     yaxis={"title": {"text": "milliseconds"}}))
    else:
        raise ApiError(404, f"unknown figure {name[:60]!r} (figures are {', '.join(NAMES)})")
    result = json.loads(figure.to_json())
    if meta is not None:
        result["meta"] = meta
    return result
