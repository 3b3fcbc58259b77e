"""One self-contained HTML file of a summary, to send to someone who has no dashboard: ``xaiboard export``.

The file holds the run's overview, the evaluation table and charts (plotly.js inlined from the installed plotly
package, as shipped), and a gallery of samples with their maps as ``data:`` URIs. It loads nothing: a
Content-Security-Policy meta tag forbids every request (``default-src 'none'``) and allows only its own two
scripts by their hashes. Tables, figures and tiles come from the code that serves the dashboard
(:mod:`.scoring`, :mod:`.figures`, :mod:`.render`), so the report shows the numbers and pictures the dashboard shows.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import jinja2

import xaiboard.frontend
from xaiboard import __version__
from xaiboard.store import Summary, SummaryError
from xaiboard.store.models import PREDICTION_TYPES

from . import figures, palette, render, scoring
from .export_gallery import Card, ExportError, card, data_uri, parse_filters, select_samples, selection
from .pages import plotly_js_path

__all__ = ["ExportError", "Report", "build_report", "write_report"]

FRONTEND = Path(xaiboard.frontend.__file__).parent
DEFAULT_SAMPLES = 24
DEFAULT_SIZE = 160
DEFAULT_LABEL_ROWS = 3
COUNT_ROWS = 20  # classes listed in the overview's counts table
TYPE_HELP = {
    "TP": "true positive: ground truth and predicted",
    "FN": "false negative: ground truth, not predicted",
    "FP": "false positive: predicted, not ground truth",
    "TN": "true negative: explained (top-k) but neither",
}
DRAW_CHARTS = """(function () {
  var data = JSON.parse(document.getElementById("report-figures").textContent);
  var config = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
  document.querySelectorAll("[data-figure]").forEach(function (node) {
    var figure = data.figures[node.getAttribute("data-figure")];
    var layout = Object.assign({}, figure.layout);
    if (data.template) layout.template = data.template;
    window.Plotly.newPlot(node, figure.data, layout, config).then(function () {
      node.setAttribute("data-drawn", "1");
    });
  });
})();"""


@dataclass
class Report:
    """The report's HTML and what went into it (for the command's closing line and for tests)."""

    html: str
    sample_ids: list[int]
    matching: int
    plotly_bytes: int
    sample_bytes: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def bytes_per_sample(self) -> Optional[float]:
        """Mean bytes of a sample's card: its images as base64 plus their markup."""
        return sum(self.sample_bytes) / len(self.sample_bytes) if self.sample_bytes else None


# -- formatting, as the dashboard's util.js shows numbers ----------------------------------------------------------


def score_text(value: Optional[float]) -> str:
    """Three decimals, tiny or huge magnitudes in exponent form, "–" when undefined (util.js ``score``)."""
    if value is None or not math.isfinite(value):
        return "–"
    magnitude = abs(value)
    return f"{value:.2e}" if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e5) else f"{value:.3f}"


def prob_text(p: Optional[float]) -> str:
    """A probability with the digits it needs: 0.988, 0.0042, 4.0e-04, 0.99996 (util.js ``probText``)."""
    if p is None or not math.isfinite(p):
        return "–"
    if p <= 0:
        return "0"
    if p >= 1:
        return "1"
    if p < 1e-3:
        return f"{p:.1e}"
    if p < 0.01:
        return f"{p:.4f}"
    rest = 1 - p
    if rest < 1e-6:
        return f"1 − {rest:.1e}"
    if rest < 5e-4:
        return f"{p:.{math.ceil(-math.log10(rest))}f}"
    return f"{p:.3f}"


def range_text(metric: Mapping[str, Any]) -> str:
    lo, hi = metric["range"]
    if lo is None and hi is None:
        return "unbounded"
    def bound(value: Optional[float], infinite: str) -> str:
        return infinite if value is None or not math.isfinite(value) else f"{value:g}"
    return f"{bound(lo, '−∞')} … {bound(hi, '∞')}"


# -- the parts of the report ---------------------------------------------------------------------------------------


def restrict(table: dict[str, Any], explainers: Sequence[str]) -> dict[str, Any]:
    """The score table of the chosen explainers only (values, normalisation and colours as over all of them);
    the best explainer of each metric is decided again among those shown."""
    keep = set(explainers)
    shown = {
        **table,
        "explainers": [e for e in table["explainers"] if e in keep],
        "scores": [row for row in table["scores"] if row["explainer"] in keep],
        "timings": [row for row in table["timings"] if row["explainer"] in keep],
        "score_timings": [row for row in table["score_timings"] if row["explainer"] in keep],
    }
    shown["best"] = scoring.best_explainers(shown)
    return shown


def evaluation(table: Mapping[str, Any]) -> dict[str, Any]:
    """The explainer x metric table as the evaluation page draws it, with equal weights."""
    overall = scoring.comprehensive_scores(table)
    ranked = sorted((e for e in table["explainers"] if overall.get(e) is not None), key=lambda e: -overall[e])
    cells = {(row["explainer"], row["metric"]): row for row in table["scores"]}
    rows = []
    for explainer in table["explainers"]:
        values = []
        for metric in table["metrics"]:
            row = cells.get((explainer, metric["name"]))
            best = (table["best"].get(metric["name"]) or {}).get("explainer") == explainer
            values.append({"metric": metric["name"], "row": row, "best": best})
        rows.append({"explainer": explainer, "values": values, "comprehensive": overall.get(explainer),
                     "rank": ranked.index(explainer) + 1 if explainer in ranked else None})
    return {"rows": rows, "metrics": table["metrics"], "has_scores": bool(table["scores"])}


def chart_list(table: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, card title, figure) of each chart, as the evaluation page draws them at their defaults: the profile
    and where time went, then per metric its per-class means beside its distribution."""
    specs: list[tuple[str, str, str, dict[str, str]]] = []
    if table["scores"]:
        specs.append(("radar", "Normalised profile", "radar", {}))
    if table["timings"]:
        specs.append(("timings", "Where time goes", "timings", {}))
    if table["scores"]:
        for metric in table["metrics"]:
            if any(row["metric"] == metric["name"] for row in table["scores"]):
                specs.append((f"per-class-{metric['name']}", f"Per class · {metric['name']}", "per-class-metric",
                              {"metric": metric["name"]}))
                specs.append((f"distribution-{metric['name']}", f"Distribution · {metric['name']}", "distributions",
                              {"metric": metric["name"]}))
    return [(key, title, figures.build(name, table, args)) for key, title, name, args in specs]


def figures_json(charts: list[tuple[str, str, dict[str, Any]]]) -> str:
    """The figures as JSON for a ``<script type="application/json">``; a template shared by all is kept once."""
    templates = [figure["layout"].get("template") for _, _, figure in charts]
    shared = templates[0] if templates and all(t == templates[0] for t in templates) else None
    payload: dict[str, Any] = {"template": shared, "figures": {}}
    for key, _, figure in charts:
        layout = dict(figure["layout"])
        if shared is not None:
            layout.pop("template", None)
        payload["figures"][key] = {"data": figure["data"], "layout": layout}
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # nothing in the data can end the script element or open a comment
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def inline_script(source: str) -> str:
    """``source`` safe inside ``<script>``: a ``</script`` in one of its strings would end the element early
    (``<\\/`` means the same in JavaScript strings and regular expressions)."""
    return re.sub(r"</(script)", r"<\\/\1", source, flags=re.IGNORECASE)


def script_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(scripts: Sequence[str]) -> str:
    """Nothing may be fetched or sent; only the given inline scripts run; styles inline (plotly sets them)."""
    return "; ".join([
        "default-src 'none'",
        "script-src " + (" ".join(script_hash(s) for s in scripts) or "'none'"),
        "style-src 'unsafe-inline'",
        "img-src data: blob:",
        "font-src data:",
        "base-uri 'none'",
        "form-action 'none'",
    ])


def counts_rows(summary: Summary) -> tuple[list[dict[str, Any]], int]:
    """The classes with explained predictions, most first (at most ``COUNT_ROWS``), and how many there are."""
    names = summary.label_names()
    counts = summary.label_counts()
    rows = [{"index": index, "name": names.get(index, str(index)), "counts": per_type,
             "total": sum(per_type.values())} for index, per_type in counts.items() if sum(per_type.values())]
    rows.sort(key=lambda row: (-row["total"], row["name"].casefold()))
    return rows[:COUNT_ROWS], len(rows)


def overview(summary: Summary, directory: Path) -> dict[str, Any]:
    run = summary.run()
    info = summary.overview()
    data = (run.config or {}).get("data") or {}
    info.update(
        directory=directory.resolve().name,
        dataset=data.get("type"),
        dataset_count=data.get("count"),
        image_size=f"{run.image_width} × {run.image_height}" if run.image_width and run.image_height else None,
        created=_moment(info["created_at"]),
        updated=_moment(info["updated_at"]),
    )
    return info


def _moment(iso: Optional[str]) -> Optional[str]:
    """``2026-01-02T03:04:05Z`` as ``2026-01-02 03:04 UTC``."""
    return None if not iso else iso.replace("T", " ")[:16] + " UTC"


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(FRONTEND / "templates")),
                                     autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(score=score_text, prob=prob_text, range_text=range_text)
    return environment


def build_report(directory: str | Path, samples: int = DEFAULT_SAMPLES, filters: Mapping[str, str] | Sequence[str]
                 | None = None, explainers: Optional[Sequence[str]] = None, size: int = DEFAULT_SIZE,
                 label_rows: int = DEFAULT_LABEL_ROWS, charts: bool = True) -> Report:
    """The report of the summary in ``directory``: at most ``samples`` samples matching ``filters`` (the saliency
    browser's URL parameters as a mapping, or ``key=value`` queries / browser links), maps of ``explainers`` (all
    when None) at ``size`` px, for up to ``label_rows`` labels per sample. ExportError for a bad filter."""
    if samples < 0 or label_rows < 1 or not 8 <= size <= render.MAX_SIZE:
        raise ExportError(f"need samples >= 0, label rows >= 1 and a size from 8 to {render.MAX_SIZE}")
    directory = Path(directory)
    if filters is None:
        filters = {}
    elif not isinstance(filters, Mapping):
        filters = parse_filters(list(filters))
    try:
        summary = Summary.open(directory)
    except SummaryError as error:
        raise ExportError(f"{directory}: {error}") from None
    with summary:
        chosen = selection(summary, filters, explainers, size)
        matching, views = select_samples(summary, chosen, samples)
        cards: list[Card] = [card(summary, view, chosen, label_rows) for view in views]
        table = restrict(scoring.score_table(summary), chosen.explainers)
        info = overview(summary, directory)
        counts, classes_with_counts = counts_rows(summary)
        names = summary.label_names()
        timings = summary.explainer_timings()
    plotly_path = plotly_js_path() if charts else None
    drawn = chart_list(table) if plotly_path is not None else []
    plotly_js = inline_script(plotly_path.read_text(encoding="utf-8")) if plotly_path is not None and drawn else ""
    scripts = [plotly_js, DRAW_CHARTS] if plotly_js else []
    environment = _environment()
    context = {
        "o": info, "version": __version__, "types": PREDICTION_TYPES, "type_help": TYPE_HELP,
        "exported_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "colors": palette.explainer_colors(list(table["explainers"])), "timings": timings,
        "evaluation": evaluation(table), "charts": [(key, title) for key, title, _ in drawn],
        "charts_note": None if drawn or not charts else "plotly is not installed: no charts",
        "counts": counts, "classes_with_counts": classes_with_counts,
        "cards": cards, "matching": matching, "asked": samples, "selection": chosen,
        "filters": chosen.describe(names), "colorbar": _colorbar(chosen.render.cmap),
        "csp": content_security_policy(scripts), "app_css": (FRONTEND / "static/css/app.css").read_text("utf-8"),
        "figures_json": figures_json(drawn) if drawn else None, "plotly_js": plotly_js, "draw_js": DRAW_CHARTS,
    }
    page = environment.get_template("report.html").render(context)
    sample_bytes = [len(_card_html(page, c.id)) for c in cards]
    return Report(page, [c.id for c in cards], matching, len(plotly_js.encode("utf-8")), sample_bytes)


def _colorbar(cmap: str) -> str:
    return data_uri(render.colorbar(cmap))


def _card_html(page: str, sample_id: int) -> str:
    """A sample's card as it stands in the page (cards are delimited by their ``article`` tags)."""
    start = page.rfind("<article", 0, max(0, page.find(f'data-sample="{sample_id}"')))
    end = page.find("</article>", start)
    return page[start:end + len("</article>")] if start >= 0 and end >= 0 else ""


def write_report(directory: str | Path, path: str | Path, **options: Any) -> Report:
    """Build the report (see :func:`build_report` for ``options``) and write it to ``path`` as UTF-8."""
    report = build_report(directory, **options)
    Path(path).write_text(report.html, encoding="utf-8")
    return report
