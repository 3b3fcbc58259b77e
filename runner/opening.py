"""Opening the summary a run writes into: a new one, an overwritten one, or the continuation of an earlier run
(checked against the stored configuration and the data's fingerprint), and describing the run in a new one."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from sqlalchemy.exc import SQLAlchemyError

from xaiboard.store import Summary, SummaryError, SummaryWriter, is_summary_dir

from .data import Fingerprint, InvalidInputError

#: configuration keys that must match for a run to continue a stored summary
RESUME_KEYS = ("classes", "explainers", "benchmarks", "mean", "std", "activation", "threshold", "top_k",
               "uncertainty", "image_shape", "benchmark_samples", "precision")


def as_json(value: Any) -> Any:
    """A JSON round trip, so stored and current configurations compare equal (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def versions() -> dict[str, str]:
    import captum

    from xaiboard import __version__

    return {"xaiboard": __version__, "torch": torch.__version__, "captum": captum.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def open_writer(directory: Path, name: Optional[str], config: dict[str, Any], fingerprint: Optional[Fingerprint], *,
                resume: bool, overwrite: bool, map_bits: int, say: Callable[[str], None],
                describe: Callable[[SummaryWriter], None]) -> Optional[SummaryWriter]:
    """A writer for a new, overwritten or resumed summary (``describe`` fills a new one); None when the stored
    summary is already complete. Refuses to continue a run of another configuration or over other data. A resumed
    run keeps the map precision it started with."""
    if is_summary_dir(directory) and not overwrite:
        if not resume:
            raise InvalidInputError(f"{directory} already holds a summary; pass resume=True to continue it or "
                                    "overwrite=True to start over")
        with Summary.open(directory) as summary:
            run = summary.run()
        stored = run.config or {}
        differing = [key for key in RESUME_KEYS if stored.get(key) != config.get(key)]
        if differing:
            raise InvalidInputError(
                f"{directory} holds a run with another configuration ({', '.join(differing)} differ); "
                "pass overwrite=True to start over, or write to another directory")
        changed = fingerprint.differences((stored.get("data") or {}).get("fingerprint")) if fingerprint else []
        if changed:
            raise InvalidInputError(
                f"{directory} holds a run over other data ({'; '.join(changed)}); pass overwrite=True to start "
                "over, or write to another directory")
        if run.status == "complete":
            say(f"xaiboard: {directory} is already complete ({run.progress_done} samples); pass overwrite=True "
                "to compute it again")
            return None
        say(f"xaiboard: resuming {directory} after {run.progress_done} samples")
        return SummaryWriter.resume(directory, map_bits=stored.get("map_bits", map_bits))
    try:
        writer = SummaryWriter.create(directory, name=name, overwrite=overwrite, map_bits=map_bits)
    except (OSError, SQLAlchemyError, SummaryError) as error:
        reason = getattr(error, "strerror", None) or getattr(getattr(error, "orig", None), "args", [None])[0] \
            or str(error)
        raise InvalidInputError(f"cannot write the summary directory {directory}: {reason}") from None
    try:
        describe(writer)
    except BaseException as exc:
        writer.close("failed", error_text(exc))
        raise
    return writer


def describe_run(writer: SummaryWriter, config: dict[str, Any], runner: Any) -> None:
    """Labels, explainers, metrics and the run's settings of ``runner`` (an ImageClassificationRunner)."""
    _, height, width = config["image_shape"]
    device = str(runner.device)
    if runner.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(runner.device)})"
    writer.set_labels(runner.classes)
    for explainer in runner.explainers:
        writer.register_explainer(explainer.name, config["explainers"][explainer.name])
    for benchmark in runner.benchmarks:
        value_range = tuple(benchmark.range) + (None,) * (2 - len(tuple(benchmark.range)))
        writer.register_metric(benchmark.name, bool(benchmark.higher_is_better), value_range[:2],
                               benchmark.aggregation, config["benchmarks"][benchmark.name])
    network = runner.network
    writer.update_run(
        task="multi-label" if runner.multi_label else "single-label",
        activation=runner.activation_name,
        threshold=runner.threshold,
        top_k=runner.top_k,
        image_height=height,
        image_width=width,
        model_class=f"{type(network).__module__}.{type(network).__qualname__}"[:255],
        num_parameters=sum(p.numel() for p in network.parameters()),
        device=device[:64],
        versions=versions(),
        uncertainty=config["uncertainty"],
        config=config,
        progress_total=config["data"]["count"],
    )
