"""The ``xaiboard`` command line: list, inspect and upgrade summaries, serve the dashboard, run the demo.

Heavy modules (torch for ``demo``, the Flask app for ``serve``) are imported inside their commands so that
``xaiboard ls`` starts fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from xaiboard import __version__
from xaiboard.store import DB_NAME, Summary, SummaryError, find_summary_dirs
from xaiboard.store import upgrade as upgrade_summary


def _first_names(names: list[str], shown: int = 12) -> str:
    """Every name, or for many classes (ImageNet's 1000) the count and the first ``shown``."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{len(names)}: {', '.join(names[:shown])}, ... (--json lists all)"


def _progress(overview: dict[str, Any]) -> str:
    done, total = overview["progress"]["done"], overview["progress"]["total"]
    return f"{done}/{total}" if total else str(done)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xaiboard")
def main() -> None:
    """xaiboard: saliency maps and benchmark scores of PyTorch image classifiers, in a web dashboard."""


@main.command("ls")
@click.argument("base_dir", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list for scripts.")
def ls_command(base_dir: str, as_json: bool) -> None:
    """List every summary directory below BASE_DIR (broken ones are skipped with a warning)."""
    rows = []
    for directory in find_summary_dirs(base_dir):
        try:
            with Summary.open(directory) as summary:
                overview = summary.overview()
        except SummaryError as error:
            click.echo(f"warning: skipping {directory}: {error}", err=True)
            continue
        overview["path"] = str(directory)
        rows.append(overview)
    if as_json:
        keys = ("path", "name", "status", "progress", "num_samples", "explainers", "metrics", "updated_at")
        click.echo(json.dumps([{k: row[k] for k in keys} for row in rows], indent=2))
        return
    if not rows:
        click.echo(f"no summaries below {base_dir}")
        return
    table = [("PATH", "STATUS", "PROGRESS", "SAMPLES", "EXPLAINERS", "METRICS")] + [
        (row["path"], row["status"], _progress(row), str(row["num_samples"]), ",".join(row["explainers"]) or "-",
         ",".join(row["metrics"]) or "-")
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])


@main.command("info")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def info_command(directory: str, as_json: bool) -> None:
    """Describe one summary: status, progress, schema revision, counts, explainers, metrics, scores."""
    try:
        with Summary.open(directory) as summary:
            overview = summary.overview()
            aggregates = summary.aggregates()
            failures = summary.failures(limit=5)
    except SummaryError as error:
        raise click.ClickException(f"{directory}: {error}") from None
    if as_json:
        overview["scores"] = [
            {"explainer": a.explainer, "metric": a.metric, "value": a.value, "count": a.count} for a in aggregates
        ]
        click.echo(json.dumps(overview, indent=2))
        return
    lines = [
        ("name", overview["name"]),
        ("path", str(Path(directory).resolve())),
        ("status", overview["status"] + (f" ({overview['error']})" if overview["error"] else "")),
        ("progress", _progress(overview)),
        ("schema revision", overview["revision"]),
        ("created / updated", f"{overview['created_at']} / {overview['updated_at']}"),
        ("task", f"{overview['task']}, {overview['activation']}, threshold {overview['threshold']}, "
                 f"top-k {overview['top_k']}"),
        ("model", f"{overview['model_class']} ({overview['num_parameters']} parameters) on {overview['device']}"),
        ("samples", overview["num_samples"]),
        ("predictions", overview["num_predictions"]),
        ("saliency maps", overview["num_saliency_maps"]),
        ("scores", overview["num_scores"]),
        ("failures", overview["num_failures"]),
        ("labels", _first_names(overview["labels"])),
        ("explainers", ", ".join(overview["explainers"]) or "-"),
        ("metrics", ", ".join(overview["metrics"]) or "-"),
    ]
    for key, value in lines:
        click.echo(f"{key:>18}: {value}")
    if aggregates:
        click.echo("\nscores (mean of defined values):")
        for a in aggregates:
            value = "n/a" if a.value is None else f"{a.value:.4f}"
            click.echo(f"  {a.explainer:>22} {a.metric:<20} {value}  (n={a.count})")
    for failure in failures:
        click.echo(f"failure: sample {failure.sample_id} [{failure.stage}] {failure.message}")


@main.command("upgrade")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def upgrade_command(directory: str) -> None:
    """Upgrade a summary written by an older xaiboard to this schema, keeping a backup of the database."""
    try:
        old, new, backup = upgrade_summary(directory)
    except SummaryError as error:
        raise click.ClickException(f"{directory}: {error}") from None
    if backup is None:
        click.echo(f"{directory} is already at schema {new}")
    else:
        click.echo(f"upgraded {directory} from schema {old} to {new}; backup: {backup}")


@main.command("merge")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--partial", is_flag=True, help="Merge what the shards hold even if ranks are missing or unfinished.")
def merge_command(directory: str, partial: bool) -> None:
    """Write the single-file summary DIRECTORY/xaiboard.db of a run sharded by torchrun or srun (the shards stay)."""
    from xaiboard.store.shards import merge_shards

    try:
        merged = merge_shards(directory, partial=partial)
    except SummaryError as error:
        raise click.ClickException(str(error)) from None
    missing = f"; ranks {', '.join(map(str, merged['missing']))} missing" if merged["missing"] else ""
    click.echo(f"merged {merged['shards']} shards into {Path(directory) / DB_NAME}: {merged['samples']} samples, "
               f"{merged['status']}{missing}")


def _size_text(count: float) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count / 1e3:.1f} KB"


@main.command("export")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False),
              help="The self-contained report file to write (opens offline, from an e-mail).")
@click.option("--samples", default=24, show_default=True, type=click.IntRange(min=0),
              help="How many samples the gallery shows (the first ones in the filters' order).")
@click.option("--filter", "filters", multiple=True, metavar="QUERY",
              help="Which samples, as the saliency browser's URL has it: labels=cat&types=FP, truth=, sort=, "
                   "unconverged=1, overlay/alpha/cmap/sign; or paste a browser link. Repeatable.")
@click.option("--explainers", default=None, metavar="A,B", help="Comma-separated explainers to show (default: all).")
@click.option("--size", default=160, show_default=True, type=click.IntRange(8, 1024),
              help="Longest side of the images and overlays in px (smaller images keep their size).")
@click.option("--label-rows", default=3, show_default=True, type=click.IntRange(min=1),
              help="How many of a sample's explained labels get a row of maps.")
def export_command(directory: str, html_path: str, samples: int, filters: tuple[str, ...],
                   explainers: str | None, size: int, label_rows: int) -> None:
    """Write one HTML file of a summary: overview, evaluation table and charts, and a gallery of samples."""
    from xaiboard.server.export import ExportError, write_report

    chosen = None if explainers is None else [name.strip() for name in explainers.split(",") if name.strip()]
    try:
        report = write_report(directory, html_path, samples=samples, filters=list(filters), explainers=chosen,
                              size=size, label_rows=label_rows)
    except ExportError as error:
        raise click.ClickException(str(error)) from None
    per_sample = report.bytes_per_sample
    click.echo(f"wrote {html_path}: {_size_text(report.size)}, {len(report.sample_ids)} sample"
               f"{'' if len(report.sample_ids) == 1 else 's'} "
               f"(of {report.matching} matching)"
               + (f", {_size_text(per_sample)} per sample" if per_sample is not None else "")
               + (f", plotly.js {_size_text(report.plotly_bytes)}" if report.plotly_bytes else ""))


def _checked_token(context: click.Context, parameter: click.Parameter, value: str | None) -> str | None:
    from xaiboard.server.auth import validate_token

    try:
        return None if value is None else validate_token(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _checked_base_url(context: click.Context, parameter: click.Parameter, value: str) -> str:
    from xaiboard.server.urls import BaseUrlError, normalize_base_url

    try:
        return normalize_base_url(value)
    except BaseUrlError as error:
        raise click.BadParameter(str(error)) from None


@main.command("serve")
@click.argument("base_dir", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 exposes it.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--reload-interval", default=5.0, show_default=True, type=click.FloatRange(min=0.5),
              help="Seconds between re-scans of BASE_DIR for new or changed summaries.")
@click.option("--token", envvar="XAIBOARD_TOKEN", show_envvar=True, callback=_checked_token,
              help="Require this token on every page and API call. Off the loopback address a random one is "
                   "generated and printed when none is given.")
@click.option("--no-auth", is_flag=True, help="Serve a non-loopback address without a token (anyone who can "
                                                  "reach the port reads every summary).")
@click.option("--base-url", "--path-prefix", "base_url", default="/", show_default=True, callback=_checked_base_url,
              help="Path prefix a reverse proxy forwards unchanged, e.g. /xai/.")
def serve_command(base_dir: str, host: str, port: int, reload_interval: float, token: str | None, no_auth: bool,
                  base_url: str) -> None:
    """Serve the dashboard over every summary directory below BASE_DIR (read-only)."""
    from xaiboard.server.serving import serve

    if no_auth and token is not None:
        raise click.UsageError("--no-auth and a token (--token or XAIBOARD_TOKEN) exclude each other")
    serve(base_dir, host=host, port=port, reload_interval=reload_interval, token=token, auth=not no_auth,
          base_url=base_url)


@main.command("demo")
@click.option("--dataset", type=click.Choice(["digits", "shapes", "photos"]), default="digits", show_default=True,
              help="digits: scikit-learn's handwritten digits, softmax; shapes: synthetic multi-label with boxes; "
                   "photos: a pretrained EfficientNet-Lite0 on real photos, 224x224, 1000 classes.")
@click.option("--model", type=click.Choice(["cnn", "vit"]), default="cnn", show_default=True,
              help="vit (with --dataset shapes): a small Vision Transformer, with attention rollout, its attention "
                   "heads and an attention intervention.")
@click.option("--samples", default=300, show_default=True, type=click.IntRange(min=1),
              help="How many test images to explain.")
@click.option("--out", default="xaiboard-runs", show_default=True, type=click.Path(file_okay=False),
              help="Base directory the summary is written under.")
@click.option("--serve/--no-serve", default=True, show_default=True, help="Serve the dashboard afterwards.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
def demo_command(dataset: str, model: str, samples: int, out: str, serve: bool, seed: int, host: str,
                 port: int) -> None:
    """Train a small CNN in seconds (or load the pretrained photo model), explain and score its test images, and
    serve the dashboard."""
    from xaiboard.runner.demo import run_demo

    if model == "vit" and dataset != "shapes":
        raise click.UsageError("the ViT demo is trained on shapes: use --dataset shapes --model vit")
    run_demo(dataset=dataset, model=model, samples=samples, out=out, serve=serve, seed=seed, host=host, port=port)


if __name__ == "__main__":
    sys.exit(main())
