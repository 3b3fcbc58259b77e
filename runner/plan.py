"""The cost plan of a run: passes per pair of every explainer and benchmark, the pairs expected and the time.

The time of one image's forward pass and of one forward+backward pass is measured on the run's device with the
first item (a few batched passes), and every item's passes per pair are multiplied by it and by the pairs expected.
Pairs per sample are estimated from the labels a forward pass selects on the first few items. A run estimated to
take longer than :data:`LONG_RUN_SECONDS` gets a warning naming its most expensive item and the parameter that
controls it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .cost import Passes
from .explainers.base import eval_mode

LONG_RUN_SECONDS = 3600.0
TIMING_BATCH = 4

#: the parameter that sets the cost of each method, by class name
CONTROLS = {
    "RISE": "n_masks", "Occlusion": "window and stride", "IntegratedGradients": "n_steps",
    "SmoothGrad": "n_samples", "Robustness": "n_samples", "Faithfulness": "steps",
    "Randomization": "the explainer's own parameters", "ClassSensitivity": "the explainer's own parameters",
}


@dataclass
class PlanRow:
    """One line of the plan: an explainer, a benchmark (summed over the explainers it scores) or the model."""

    kind: str
    name: str
    passes: Optional[Passes]
    pairs: int
    seconds: Optional[float]
    control: str = ""

    @property
    def seconds_per_pair(self) -> Optional[float]:
        return self.seconds / self.pairs if self.seconds is not None and self.pairs else None


@dataclass
class Plan:
    """What a run will cost; ``str(plan)`` is the table the runner prints when it starts."""

    samples: int
    pairs: int
    benchmark_pairs: int
    image_shape: tuple[int, int, int]
    device: str
    forward_seconds: Optional[float]
    backward_seconds: Optional[float]
    rows: list[PlanRow] = field(default_factory=list)

    @property
    def total_seconds(self) -> Optional[float]:
        known = [row.seconds for row in self.rows if row.seconds is not None]
        return sum(known) if known else None

    def most_expensive(self) -> Optional[PlanRow]:
        timed = [row for row in self.rows if row.seconds is not None]
        return max(timed, key=lambda row: row.seconds or 0.0) if timed else None

    def warning(self, limit: Optional[float] = None) -> Optional[str]:
        """A sentence naming what to change when the run would take longer than ``limit`` seconds (default
        :data:`LONG_RUN_SECONDS`), else None."""
        limit = LONG_RUN_SECONDS if limit is None else limit
        total = self.total_seconds
        worst = self.most_expensive()
        if total is None or total <= limit or worst is None:
            return None
        share = 100 * (worst.seconds or 0.0) / total
        advice = f"lower its {worst.control}" if worst.control else "make it cheaper"
        if worst.kind == "benchmark":
            advice += ", or score a subset with register_saliency(..., benchmark_samples=N)"
        per_pair = worst.seconds_per_pair
        return (f"this run is estimated at {format_seconds(total)} for {self.samples} samples "
                f"({self.pairs} pairs); {share:.0f}% of it is {worst.name} ({format_seconds(per_pair or 0.0)} per "
                f"pair): {advice}")

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-able values (stored with the run's configuration)."""
        return {
            "samples": self.samples, "pairs": self.pairs, "benchmark_pairs": self.benchmark_pairs,
            "device": self.device, "forward_seconds": self.forward_seconds, "backward_seconds": self.backward_seconds,
            "total_seconds": self.total_seconds,
            "rows": [{"kind": r.kind, "name": r.name, "forward": r.passes.forward if r.passes else None,
                      "backward": r.passes.backward if r.passes else None, "pairs": r.pairs, "seconds": r.seconds}
                     for r in self.rows],
        }

    def __str__(self) -> str:
        header = ("item", "passes per pair", "pairs", "est. time", "per pair")
        lines = [header]
        for row in self.rows:
            lines.append((f"{row.kind} {row.name}", str(row.passes) if row.passes else "unknown", str(row.pairs),
                          format_seconds(row.seconds) if row.seconds is not None else "?",
                          format_seconds(row.seconds_per_pair) if row.seconds_per_pair is not None else "?"))
        total = self.total_seconds
        lines.append(("total", "", str(self.pairs), format_seconds(total) if total is not None else "?", ""))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
                for line in lines]
        timing = ""
        if self.forward_seconds is not None and self.backward_seconds is not None:
            timing = (f"; one image: {format_seconds(self.forward_seconds)} forward, "
                      f"{format_seconds(self.backward_seconds)} forward+backward")
        c, h, w = self.image_shape
        title = (f"xaiboard plan: {self.samples} samples of {c}x{h}x{w}, ~{self.pairs} (image, label) pairs, "
                 f"{self.benchmark_pairs} scored, on {self.device}{timing}")
        return "\n".join([title, *text])


def format_seconds(seconds: float) -> str:
    """Seconds in the unit a person reads best: 12 ms, 3.4 s, 5.2 min, 7.1 h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def passes_of(method: Any, *args: Any) -> Optional[Passes]:
    """A method's passes per pair, or None when it does not state them (a user's own class)."""
    passes = getattr(method, "passes", None)
    if not callable(passes):
        return None
    try:
        result = passes(*args)
    except NotImplementedError:
        return None
    return result if isinstance(result, Passes) else None


def time_passes(network: nn.Module, image: Tensor, device: torch.device, repeats: int = 2) -> tuple[float, float]:
    """Seconds per image of a forward pass and of a forward+backward pass (input gradients), batched."""
    inputs = image.unsqueeze(0).expand(TIMING_BATCH, *image.shape).contiguous().to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def best(step: Callable[[], None]) -> float:
        step()  # warm-up: allocators, oneDNN primitives
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            step()
            sync()
            times.append(time.perf_counter() - start)
        return min(times) / TIMING_BATCH

    def forward() -> None:
        with torch.no_grad():
            network(inputs)

    def backward() -> None:
        grad_inputs = inputs.detach().requires_grad_(True)
        with torch.enable_grad():
            torch.autograd.grad(network(grad_inputs)[:, 0].sum(), grad_inputs)

    with eval_mode(network):
        forward_seconds = best(forward)
        backward_seconds = best(backward)
    return forward_seconds, backward_seconds


def make_plan(*, samples: int, pairs_per_sample: float, masked_share: float, benchmark_samples: int,
              image_shape: tuple[int, int, int], device: str, explainers: Sequence[Any], benchmarks: Sequence[Any],
              model_passes: Passes, timing: Optional[tuple[float, float]],
              internal_passes: Optional[Passes] = None) -> Plan:
    """Multiply every item's passes per pair by the pairs expected and, with ``timing``, by the measured time."""
    pairs = int(round(samples * pairs_per_sample))
    scored = int(round(benchmark_samples * pairs_per_sample))
    forward_seconds, backward_seconds = timing if timing is not None else (None, None)

    def seconds(passes: Optional[Passes], count: int) -> Optional[float]:
        if passes is None or timing is None:
            return None
        per_pair = (passes.forward - passes.backward) * timing[0] + passes.backward * timing[1]
        return max(0.0, per_pair) * count

    plan = Plan(samples, pairs, scored, image_shape, device, forward_seconds, backward_seconds)
    plan.rows.append(PlanRow("model", "predictions", model_passes, samples, seconds(model_passes, samples),
                             "register_uncertainty's n_samples"))
    if internal_passes is not None:
        plan.rows.append(PlanRow("model", "inside the model", internal_passes, samples,
                                 seconds(internal_passes, samples), "register_internals' intervention"))
    for explainer in explainers:
        passes = passes_of(explainer, image_shape)
        plan.rows.append(PlanRow("explainer", explainer.name, passes, pairs, seconds(passes, pairs),
                                 CONTROLS.get(type(explainer).__name__, "")))
    for benchmark in benchmarks:
        count = int(round(scored * masked_share)) if benchmark.requires_masks else scored
        total: Optional[Passes] = Passes()
        for explainer in explainers:
            passes = passes_of(benchmark, image_shape, explainer)
            total = total + passes if total is not None and passes is not None else None
        plan.rows.append(PlanRow("benchmark", benchmark.name, total, count * len(explainers),
                                 seconds(total, count), CONTROLS.get(type(benchmark).__name__, "")))
    return plan
