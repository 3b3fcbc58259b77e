"""One group of samples through the model, the explainers and the benchmarks: everything the store gets for it.

Per group: one forward pass for the probabilities (plus the uncertainty passes when asked), label selection (ground
truth, predictions, top-k), each explainer called once on every (image, label) pair of the group, each benchmark
called once per explainer on the pairs it scores. Maps are kept at the explainer's own resolution for the store and
upsampled to the input size for scoring. An error of user code is recorded as the sample's failure.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from xaiboard.store import (
    Batch,
    BoxRecord,
    CurveRecord,
    FailureRecord,
    PathRecord,
    PredictionRecord,
    ProbabilityRecord,
    SaliencyRecord,
    SampleRecord,
    ScoreRecord,
)

from .data import DataSpec, Item
from .device import autocast, to_device
from .explainers.base import to_input_size
from .labels import select_labels


def error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def keeps_path(explainer: Any) -> bool:
    """Whether the explainer records its integration path (``explain_with_path``, Integrated Gradients)."""
    return callable(getattr(explainer, "explain_with_path", None))


def takes_native(explainer: Any) -> bool:
    """Whether ``explainer.explain_with_delta`` accepts ``native=`` (maps at the method's own resolution)."""
    method = getattr(explainer, "explain_with_delta", None)
    if not callable(method):
        return False
    try:
        return "native" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class Settings:
    """What the processing needs of the runner's configuration."""

    network: nn.Module
    device: torch.device
    activation: Callable[[Tensor], Tensor]
    multi_label: bool
    threshold: float
    top_k: Optional[int]
    mean: Optional[list[float]]
    std: Optional[list[float]]
    explainers: Sequence[Any]
    benchmarks: Sequence[Any]
    uncertainty: Any = None
    #: what to keep of the network's insides (:class:`~.internals.recorder.InternalsRecorder`), or None
    internals: Any = None
    #: sample ids that get benchmark scores (None: every sample)
    scored_ids: Optional[set[int]] = None
    #: called with a short text before each stage (progress display)
    stage: Callable[[str], None] = field(default=lambda _text: None)
    #: explainers and benchmarks under torch.autocast at this precision (:mod:`.device`)
    precision: str = "fp32"


class GroupProcessor:
    """Computes the :class:`~xaiboard.store.Batch` of a group of items; holds no per-group state."""

    def __init__(self, settings: Settings, spec: DataSpec) -> None:
        self.s = settings
        self.spec = spec
        self._native = {explainer.name: takes_native(explainer) for explainer in settings.explainers}
        self._paths = {explainer.name: keeps_path(explainer) for explainer in settings.explainers}

    def process(self, items: list[Item]) -> Batch:
        batch = Batch()
        inputs_cpu = torch.stack([item.image for item in items])
        inputs = to_device(inputs_cpu, self.s.device)
        by_sample = {row: [row] for row in range(len(items))}
        self.s.stage("model")
        predicted = self._guarded("model", lambda rows: self._predict(inputs[rows]), by_sample, items,
                                  batch.failures)
        probs_of: dict[int, Tensor] = {}
        spread_of: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        for rows, (probs, spread) in predicted:
            for i, row in enumerate(rows):
                if not bool(torch.isfinite(probs[i]).all()):
                    batch.failures.append(FailureRecord(items[row].id, "model", "the model's output holds NaN or inf"))
                    continue
                probs_of[row] = probs[i]
                if spread is not None:
                    spread_of[row] = (spread[0][i], spread[1][i], spread[2][i])
        rows = sorted(probs_of)
        selected = select_labels(torch.stack([probs_of[r] for r in rows]) if rows else torch.zeros(0, 1),
                                 [items[r].ground_truth for r in rows], self.s.multi_label, self.s.threshold,
                                 self.s.top_k)
        pair_rows: list[int] = []
        pair_labels: list[int] = []
        for row, labels in zip(rows, selected):
            for label, _ in labels:
                pair_rows.append(row)
                pair_labels.append(label)
        self._add_predictions(batch, items, rows, selected, probs_of, spread_of)
        self._add_samples(batch, items, inputs_cpu)
        if self.s.internals is not None and rows:
            self._look_inside(batch, items, inputs, rows)
        if pair_rows and self.s.explainers:
            self._explain(batch, items, inputs, pair_rows, pair_labels)
        return batch

    def _look_inside(self, batch: Batch, items: list[Item], inputs: Tensor, rows: list[int]) -> None:
        """Feature maps, attention and the intervened prediction of the samples the model predicted."""
        self.s.stage("inside the model")
        recorded = self._guarded("internals", lambda chosen: self.s.internals.record(
            inputs[chosen], [items[row].id for row in chosen], self.s.activation), {row: [row] for row in rows},
            items, batch.failures)
        for _, records in recorded:
            batch.feature_maps += records.feature_maps
            batch.attention += records.attention
            batch.interventions += records.interventions

    @torch.no_grad()
    def _predict(self, inputs: Tensor) -> tuple[Tensor, Optional[tuple[Tensor, Tensor, Tensor]]]:
        probs = self.s.activation(self.s.network(inputs)).float().cpu()
        spread = None
        if self.s.uncertainty is not None:
            result = self.s.uncertainty(inputs, self.s.activation)
            spread = (result.sd.cpu(), result.lower.cpu(), result.upper.cpu())
        return probs, spread

    @staticmethod
    def _guarded(stage: str, compute: Callable[[list[int]], Any], groups: dict[int, list[int]],
                 items: list[Item], failures: list[FailureRecord]) -> list[tuple[list[int], Any]]:
        """``compute`` on every row at once; if it raises, on each sample's rows alone, recording the samples that
        still fail. ``groups`` maps a batch position to its rows. Returns (rows, result) of what succeeded."""
        every = [row for rows in groups.values() for row in rows]
        if not every:
            return []
        try:
            return [(every, compute(every))]
        except Exception as error:  # noqa: BLE001 - any error of user code is recorded, the run goes on
            if len(groups) == 1:
                position = next(iter(groups))
                failures.append(FailureRecord(items[position].id, stage, error_text(error), traceback.format_exc()))
                return []
        results = []
        for position, rows in groups.items():
            try:
                results.append((rows, compute(rows)))
            except Exception as error:  # noqa: BLE001
                failures.append(FailureRecord(items[position].id, stage, error_text(error), traceback.format_exc()))
        return results

    @staticmethod
    def _add_predictions(batch: Batch, items: list[Item], rows: list[int],
                         selected: list[list[tuple[int, str]]], probs_of: dict[int, Tensor],
                         spread_of: dict[int, tuple[Tensor, Tensor, Tensor]]) -> None:
        """Every label's probability once per sample (one vector), plus a row per explained label."""
        for row, labels in zip(rows, selected):
            sample_id = items[row].id
            truth = set(items[row].ground_truth)
            probs = probs_of[row].numpy()
            spread = [t.numpy() for t in spread_of[row]] if row in spread_of else None
            batch.probabilities.append(ProbabilityRecord(sample_id, probs, *(spread or (None, None, None))))
            for label, kind in labels:
                sd, lower, upper = ((float(v[label]) for v in spread) if spread is not None else (None, None, None))
                batch.predictions.append(PredictionRecord(sample_id, label, float(probs[label]), label in truth,
                                                          kind, sd, lower, upper))

    def display_images(self, inputs: Tensor) -> np.ndarray:
        """N x H x W (one channel) or N x H x W x 3 uint8 images to show, from the inputs."""
        images = inputs.float()
        if self.s.mean is not None and self.s.std is not None:
            shape = (1, -1, 1, 1)
            images = images * torch.tensor(self.s.std).view(shape) + torch.tensor(self.s.mean).view(shape)
            images = images.clamp(0, 1)
        else:
            low = images.flatten(1).amin(1).view(-1, 1, 1, 1)
            high = images.flatten(1).amax(1).view(-1, 1, 1, 1)
            outside = (low < 0) | (high > 1)
            scaled = (images - low) / (high - low).clamp_min(1e-12)
            images = torch.where(outside, scaled, images)
        if images.shape[1] == 3:
            images = images.permute(0, 2, 3, 1)
        elif images.shape[1] == 1:
            images = images[:, 0]
        else:
            images = images.mean(dim=1)
        return (images * 255).round_().to(torch.uint8).numpy()

    def _add_samples(self, batch: Batch, items: list[Item], inputs_cpu: Tensor) -> None:
        displays = self.display_images(inputs_cpu)
        for item, display in zip(items, displays):
            boxes = [BoxRecord(label, *box) for label, box in zip(item.labels, item.boxes)]
            batch.samples.append(SampleRecord(item.id, item.name, item.display if item.display is not None else display,
                                              item.ground_truth, boxes, item.masks))

    @staticmethod
    def mask_of(item: Item, label: int, height: int, width: int) -> Optional[np.ndarray]:
        """The item's mask of ``label``, else the union of its boxes of that label rasterised; None if neither."""
        if label in item.masks:
            return item.masks[label]
        boxes = [box for box_label, box in zip(item.labels, item.boxes) if box_label == label]
        if not boxes:
            return None
        mask = np.zeros((height, width), dtype=bool)
        for x, y, w, h in boxes:
            col, row = int(round(x)), int(round(y))
            mask[row:row + max(1, int(round(h))), col:col + max(1, int(round(w)))] = True
        return mask

    def _sync(self) -> None:
        if self.s.device.type == "cuda":
            torch.cuda.synchronize(self.s.device)

    def _explain(self, batch: Batch, items: list[Item], inputs: Tensor, pair_rows: list[int],
                 pair_labels: list[int]) -> None:
        device, spec = self.s.device, self.spec
        pair_inputs = inputs[torch.tensor(pair_rows, device=device)]
        targets = torch.tensor(pair_labels, device=device)
        everything = list(range(len(pair_rows)))

        def take(pairs: list[int]) -> tuple[Tensor, Tensor]:
            """The inputs and targets of some pairs (no copy for all of them, the usual case)."""
            if pairs == everything:
                return pair_inputs, targets
            index = torch.tensor(pairs, device=device)
            return pair_inputs[index], targets[index]

        pairs_of: dict[int, list[int]] = {}
        for pair, row in enumerate(pair_rows):
            pairs_of.setdefault(row, []).append(pair)
        scored = [pair for pair in everything
                  if self.s.scored_ids is None or items[pair_rows[pair]].id in self.s.scored_ids]
        masks: dict[int, np.ndarray] = {}
        if any(b.requires_masks for b in self.s.benchmarks):
            for pair in scored:
                row, label = pair_rows[pair], pair_labels[pair]
                if label in items[row].ground_truth:
                    mask = self.mask_of(items[row], label, spec.height, spec.width)
                    if mask is not None:
                        masks[pair] = mask
        for explainer in self.s.explainers:
            stage = f"explainer:{explainer.name}"
            self.s.stage(explainer.name)
            native = self._native[explainer.name]

            def explain(pairs: list[int], explainer: Any = explainer,
                        native: bool = native) -> tuple[Tensor, Optional[Tensor], float, Any]:
                chosen_inputs, chosen_targets = take(pairs)
                self._sync()
                start = time.perf_counter()
                path = None
                with autocast(self.s.precision, self.s.device):
                    if self._paths[explainer.name]:
                        maps, delta, path = explainer.explain_with_path(chosen_inputs, chosen_targets,
                                                                        self.s.activation, native=native)
                    elif native:
                        maps, delta = explainer.explain_with_delta(chosen_inputs, chosen_targets, native=True)
                    elif callable(getattr(explainer, "explain_with_delta", None)):
                        maps, delta = explainer.explain_with_delta(chosen_inputs, chosen_targets)
                    else:
                        maps, delta = explainer.explain(chosen_inputs, chosen_targets), None
                self._sync()
                seconds = (time.perf_counter() - start) / len(pairs)
                if (not isinstance(maps, Tensor) or maps.dim() != 3 or maps.shape[0] != len(pairs)
                        or not 1 <= maps.shape[1] <= spec.height or not 1 <= maps.shape[2] <= spec.width):
                    shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
                    raise ValueError(f"{explainer.name} returned maps of shape {shape}, expected "
                                     f"({len(pairs)}, {spec.height}, {spec.width})")
                return maps.detach(), (delta.detach() if delta is not None else None), seconds, path

            results = self._guarded(stage, explain, pairs_of, items, batch.failures)
            good: dict[int, Tensor] = {}
            for pairs, (maps, delta, seconds, path) in results:
                finite = torch.isfinite(maps).flatten(1).all(1).cpu().tolist()
                maps_cpu = maps.float().cpu().numpy()
                deltas = delta.float().cpu().tolist() if delta is not None else [None] * len(pairs)
                for i, pair in enumerate(pairs):
                    if not finite[i]:
                        batch.failures.append(FailureRecord(items[pair_rows[pair]].id, stage,
                                                            f"the map of label {pair_labels[pair]} holds NaN or inf"))
                        continue
                    batch.saliency.append(SaliencyRecord(items[pair_rows[pair]].id, pair_labels[pair], explainer.name,
                                                         maps_cpu[i], seconds, deltas[i]))
                    good[pair] = maps[i]
                if path is not None:
                    self._add_paths(batch, explainer.name, path, [(i, pair) for i, pair in enumerate(pairs)
                                                                  if finite[i]], items, pair_rows, pair_labels)
            chosen = [pair for pair in scored if pair in good]
            if chosen and self.s.benchmarks:
                maps = to_input_size(torch.stack([good[pair] for pair in chosen]).float(), (spec.height, spec.width))
                self._score(batch, items, take, explainer, chosen, maps, pair_rows, pair_labels, masks)

    @staticmethod
    def _add_paths(batch: Batch, explainer: str, path: Any, chosen: list[tuple[int, int]], items: list[Item],
                   pair_rows: list[int], pair_labels: list[int]) -> None:
        """One :class:`PathRecord` per pair with a finite map, from the explainer's path diagnostics."""
        alphas = path.alphas.cpu().numpy()
        probabilities, gradients = path.probabilities.cpu().numpy(), path.gradients.cpu().numpy()
        gaps, relative = path.output_gap.cpu().tolist(), path.relative_delta.cpu().tolist()
        needed = path.steps_needed.tolist() if path.steps_needed is not None else None
        for i, pair in chosen:
            steps = None if needed is None or needed[i] < 0 else needed[i]
            batch.paths.append(PathRecord(items[pair_rows[pair]].id, pair_labels[pair], explainer, alphas,
                                          probabilities[i], gradients[i], gaps[i], relative[i], steps))

    def _score(self, batch: Batch, items: list[Item], take: Callable[[list[int]], tuple[Tensor, Tensor]],
               explainer: Any, pairs: list[int], maps: Tensor, pair_rows: list[int], pair_labels: list[int],
               masks: dict[int, np.ndarray]) -> None:
        """Each benchmark once on all of the explainer's scored pairs (those with a mask if it needs one)."""
        position = {pair: i for i, pair in enumerate(pairs)}
        for benchmark in self.s.benchmarks:
            chosen = [pair for pair in pairs if pair in masks] if benchmark.requires_masks else pairs
            groups: dict[int, list[int]] = {}
            for pair in chosen:
                groups.setdefault(pair_rows[pair], []).append(pair)

            def evaluate(subset: list[int], benchmark: Any = benchmark) -> tuple[Tensor, float, Optional[Tensor]]:
                chosen_inputs, chosen_targets = take(subset)
                saliency = maps if subset == pairs else maps[
                    torch.tensor([position[p] for p in subset], device=maps.device)]
                mask_tensor = None
                if benchmark.requires_masks:
                    mask_tensor = torch.from_numpy(np.stack([masks[p] for p in subset])).to(self.s.device)
                self._sync()
                start = time.perf_counter()
                curves = None
                with autocast(self.s.precision, self.s.device):
                    if callable(getattr(benchmark, "evaluate_with_curves", None)):
                        values, curves = benchmark.evaluate_with_curves(
                            self.s.network, chosen_inputs, chosen_targets, saliency, masks=mask_tensor,
                            explainer=explainer, activation_fn=self.s.activation)
                    else:
                        values = benchmark.evaluate(self.s.network, chosen_inputs, chosen_targets, saliency,
                                                    masks=mask_tensor, explainer=explainer,
                                                    activation_fn=self.s.activation)
                values = torch.as_tensor(values).detach().float().reshape(-1).cpu()
                seconds = (time.perf_counter() - start) / max(1, len(subset))
                if values.shape[0] != len(subset):
                    raise ValueError(f"{benchmark.name} returned {values.shape[0]} scores for {len(subset)} maps")
                if curves is not None and (curves.dim() != 2 or curves.shape[0] != len(subset)):
                    raise ValueError(f"{benchmark.name} returned curves of shape {tuple(curves.shape)} for "
                                     f"{len(subset)} maps")
                return values, seconds, curves

            stage = f"benchmark:{benchmark.name}:{explainer.name}"
            self.s.stage(f"{benchmark.name} of {explainer.name}")
            for subset, (values, seconds, curves) in self._guarded(stage, evaluate, groups, items, batch.failures):
                batch.scores += [
                    ScoreRecord(explainer.name, benchmark.name, items[pair_rows[pair]].id, pair_labels[pair], value,
                                seconds)
                    for pair, value in zip(subset, values.tolist())
                ]
                if curves is not None:
                    kept = curves.float().cpu().numpy()
                    batch.curves += [
                        CurveRecord(explainer.name, benchmark.name, items[pair_rows[pair]].id, pair_labels[pair],
                                    kept[i])
                        for i, pair in enumerate(subset) if np.isfinite(kept[i]).any()
                    ]
