"""``ImageClassificationRunner``: explain and score a classifier over a dataset into a summary directory.

Per batch of samples: one forward pass for the probabilities (plus the MC-dropout passes when asked), label
selection (ground truth, predictions, top-k), each explainer called once on every (image, label) pair of the batch,
each benchmark called once per explainer on those pairs, then one store transaction with every row of the batch.
A killed run leaves complete samples only, and ``run()`` continues after them.
"""

from __future__ import annotations

import json
import logging
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from xaiboard.store import (
    Batch,
    BoxRecord,
    FailureRecord,
    PredictionRecord,
    SaliencyRecord,
    SampleRecord,
    ScoreRecord,
    Summary,
    SummaryWriter,
    is_summary_dir,
)

from .data import DataSource, DataSpec, InvalidInputError, Item
from .explainers.base import eval_mode
from .labels import select_labels
from .uncertainty import MCDropout

logger = logging.getLogger(__name__)

ACTIVATIONS = ("softmax", "sigmoid")
BENCHMARK_ATTRIBUTES = ("name", "higher_is_better", "range", "aggregation", "requires_masks", "requires_explainer",
                        "config", "evaluate")
#: configuration keys that must match for a run to continue a stored summary
RESUME_KEYS = ("classes", "explainers", "benchmarks", "mean", "std", "activation", "threshold", "top_k",
               "uncertainty", "image_shape")

Activation = Union[str, Callable[[Tensor], Tensor]]


def _softmax(logits: Tensor) -> Tensor:
    return logits.softmax(dim=1)


def _sigmoid(logits: Tensor) -> Tensor:
    return logits.sigmoid()


def _json(value: Any) -> Any:
    """A JSON round trip, so stored and current configurations compare equal (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _versions() -> dict[str, str]:
    import captum

    from xaiboard import __version__

    return {"xaiboard": __version__, "torch": torch.__version__, "captum": captum.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def _channel_stats(values: Any, what: str) -> Optional[list[float]]:
    if values is None:
        return None
    array = np.atleast_1d(np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values,
                                     dtype=np.float64)).reshape(-1)
    if array.size == 0 or not np.isfinite(array).all():
        raise InvalidInputError(f"{what} must be finite numbers, got {values!r}")
    return [float(v) for v in array]


class _StopRequest:
    """Turns SIGINT/SIGTERM into a request to stop after the current batch; a second SIGINT stops at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        tqdm.write(f"xaiboard: {signal.Signals(signum).name} received, stopping after the current batch "
                   "(Ctrl-C again to stop now)", file=sys.stderr)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def redeliver(self) -> None:
        """Give the signal to the handler that was there before (KeyboardInterrupt for a default SIGINT)."""
        if self.signum is not None:
            signal.raise_signal(self.signum)


class ImageClassificationRunner:
    """Computes saliency maps, benchmark scores and predictions of ``network`` over ``data`` into ``summary_dir``.

    Args:
        summary_dir: the summary directory to write (created with its parents).
        network: the classifier; it is moved to ``device`` and kept in eval mode during the run (its own training
            flags are restored afterwards).
        data: a ``Dataset``, ``DataLoader`` or iterable of items (see :mod:`xaiboard.runner.data`).
        classes: the class names, one per model output.
        activation_fn: ``"softmax"`` (single-label), ``"sigmoid"`` (multi-label) or a callable logits ->
            probabilities (single-label when its rows sum to 1 on the first item, multi-label otherwise).
        threshold: multi-label: a label is predicted when its probability is >= threshold.
        top_k: also explain the ``top_k`` most likely labels of every sample.
        mean, std: the per-channel normalisation of the inputs, to show the images as they were; without them an
            input in [0, 1] is shown as is and any other min-max scaled. An item's ``display`` overrides.
        batch_size: samples per batch (one forward pass and one store transaction each).
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available).
        name: the run's name (default: the directory's name).
        transform: applied to every item's image before anything else (e.g. PIL image -> normalised tensor).
    """

    def __init__(
        self,
        summary_dir: str | Path,
        network: nn.Module,
        data: Any,
        classes: Sequence[str],
        activation_fn: Activation = "softmax",
        threshold: float = 0.5,
        top_k: Optional[int] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        batch_size: int = 32,
        device: Optional[str | torch.device] = None,
        name: Optional[str] = None,
        transform: Optional[Callable[[Any], Any]] = None,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise InvalidInputError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
            raise InvalidInputError("classes must be a non-empty sequence of class names")
        names = [str(c) for c in classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidInputError(f"class names must be unique; repeated: {', '.join(map(repr, duplicates))}")
        if isinstance(activation_fn, str):
            if activation_fn not in ACTIVATIONS:
                raise InvalidInputError(f"unknown activation {activation_fn!r}: use 'softmax', 'sigmoid' or a "
                                        "callable logits -> probabilities")
            self.activation_name = activation_fn
            self.activation: Callable[[Tensor], Tensor] = _softmax if activation_fn == "softmax" else _sigmoid
        elif callable(activation_fn):
            self.activation_name = getattr(activation_fn, "__qualname__", type(activation_fn).__name__)[:64]
            self.activation = activation_fn
        else:
            raise InvalidInputError(f"unknown activation {activation_fn!r}: use 'softmax', 'sigmoid' or a callable")
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise InvalidInputError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= len(names)):
            raise InvalidInputError(f"top_k must be an integer in 1..{len(names)} or None, got {top_k!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.mean = _channel_stats(mean, "mean")
        self.std = _channel_stats(std, "std")
        if (self.mean is None) != (self.std is None):
            raise InvalidInputError("give both mean and std (the inputs' normalisation) or neither")
        if self.std is not None and min(self.std) <= 0:
            raise InvalidInputError(f"std must be positive, got {std!r}")
        self.summary_dir = Path(summary_dir)
        self.network = network
        self.classes = names
        self.threshold = float(threshold)
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.name = name
        self.source = DataSource(data, transform)
        self.transform = transform
        self.explainers: list[Any] = []
        self.benchmarks: list[Any] = []
        self.uncertainty: Optional[MCDropout] = None
        self.multi_label = self.activation_name == "sigmoid"

    # -- registration --------------------------------------------------------------------------------------------

    def register_saliency(self, explainers: Iterable[Any], benchmarks: Iterable[Any] = ()) -> None:
        """Add explainers (maps for every explained label) and benchmarks (scores of every explainer's maps)."""
        explainers, benchmarks = list(explainers), list(benchmarks)
        taken = {e.name for e in self.explainers}
        for explainer in explainers:
            label = getattr(explainer, "name", type(explainer).__name__)
            if not callable(getattr(explainer, "explain_with_delta", None)) and not callable(
                    getattr(explainer, "explain", None)):
                raise InvalidInputError(f"explainer {label!r} has no explain(inputs, targets) method")
            if not isinstance(getattr(explainer, "name", None), str):
                raise InvalidInputError(f"explainer {type(explainer).__name__} needs a string name")
            if explainer.name in taken:
                raise InvalidInputError(f"two explainers are named {explainer.name!r}; pass name=... to tell them apart")
            bound = getattr(explainer, "network", self.network)
            if bound is not self.network:
                raise InvalidInputError(f"explainer {explainer.name!r} was built for another network than the "
                                        "runner's; use explainer.with_network(network)")
            taken.add(explainer.name)
        metric_names = {b.name for b in self.benchmarks}
        for benchmark in benchmarks:
            missing = [a for a in BENCHMARK_ATTRIBUTES if not hasattr(benchmark, a)]
            if missing:
                raise InvalidInputError(f"benchmark {getattr(benchmark, 'name', type(benchmark).__name__)!r} lacks "
                                        f"{', '.join(missing)}")
            if benchmark.name in metric_names:
                raise InvalidInputError(f"two benchmarks are named {benchmark.name!r}")
            if benchmark.aggregation not in ("mean", "macro"):
                raise InvalidInputError(f"benchmark {benchmark.name!r}: aggregation must be 'mean' or 'macro', "
                                        f"got {benchmark.aggregation!r}")
            metric_names.add(benchmark.name)
        self.explainers += explainers
        self.benchmarks += benchmarks

    def register_uncertainty(self, n_samples: int = 10) -> None:
        """Add MC-dropout uncertainty: ``n_samples`` passes with only the Dropout layers on; stores the standard
        deviation and the 95% interval of every probability. A network without dropout layers is refused."""
        try:
            self.uncertainty = MCDropout(self.network, n_samples)
        except ValueError as error:
            raise InvalidInputError(str(error)) from None

    # -- running -------------------------------------------------------------------------------------------------

    def run(self, resume: bool = True, progress: bool = True, overwrite: bool = False) -> Summary:
        """Validate everything, then explain every sample not yet in the summary; returns the opened summary.

        ``resume``: continue a summary left by an earlier run (a complete one is returned as is); ``overwrite``:
        start over. SIGINT/SIGTERM stop after the current batch with the status ``interrupted`` and are then handed
        on (a default SIGINT raises KeyboardInterrupt).
        """
        self._probe()
        spec = self.source.validate(len(self.classes))
        for what, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, spec.channels):
                raise InvalidInputError(f"{what} has {len(values)} values but the images have {spec.channels} "
                                        "channels")
        config = self._config(spec)
        writer = self._open_writer(config, resume, overwrite, progress)
        if writer is None:
            return Summary.open(self.summary_dir)
        stop = _StopRequest()
        status: Optional[str] = "failed"
        error: Optional[str] = None
        try:
            with eval_mode(self.network):
                done = writer.done_sample_ids()
                writer.set_progress(done=len(done), total=spec.count)
                stop.install()
                finished = self._loop(writer, spec, done, stop, progress)
            status = "complete" if finished else "interrupted"
        except KeyboardInterrupt:
            status, error = "interrupted", None
            raise
        except BaseException as exc:
            error = _error_text(exc)
            raise
        finally:
            stop.restore()
            writer.close(status, error)
        if stop.signum is not None:
            stop.redeliver()
        return Summary.open(self.summary_dir)

    def _probe(self) -> None:
        """One forward pass on the first item: the outputs must match the classes; explainers check the inputs."""
        first = next(self.source.items(), None)
        if first is None:
            raise InvalidInputError("the data holds no items")
        self.network.to(self.device)
        inputs = first.image.unsqueeze(0).to(self.device)
        try:
            with eval_mode(self.network), torch.no_grad():
                logits = self.network(inputs)
        except Exception as error:
            raise InvalidInputError(f"the model fails on item 0 (image shape {tuple(first.image.shape)}): "
                                    f"{_error_text(error)}") from error
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise InvalidInputError(f"the model must return N x classes logits, it returns {shape}")
        if logits.shape[1] != len(self.classes):
            raise InvalidInputError(f"the model has {logits.shape[1]} outputs but {len(self.classes)} classes were "
                                    "given")
        probs = self.activation(logits)
        if not isinstance(probs, Tensor) or probs.shape != logits.shape:
            raise InvalidInputError(f"the activation {self.activation_name!r} must map N x K logits to N x K "
                                    "probabilities")
        if self.activation_name not in ACTIVATIONS:
            self.multi_label = not torch.allclose(probs.sum(dim=1), torch.ones(1, device=probs.device), atol=1e-3)
        for explainer in self.explainers:
            check = getattr(explainer, "check", None)
            if callable(check):
                try:
                    check(inputs)
                except ValueError as error:
                    raise InvalidInputError(str(error)) from None

    def _config(self, spec: DataSpec) -> dict[str, Any]:
        return _json({
            "classes": self.classes,
            "explainers": {e.name: e.config() if callable(getattr(e, "config", None)) else {}
                           for e in self.explainers},
            "benchmarks": {b.name: b.config() for b in self.benchmarks},
            "mean": self.mean,
            "std": self.std,
            "activation": self.activation_name,
            "threshold": self.threshold,
            "top_k": self.top_k,
            "uncertainty": self.uncertainty.config() if self.uncertainty else None,
            "image_shape": [spec.channels, spec.height, spec.width],
            "batch_size": self.batch_size,
            "data": {"type": self.source.description, "count": spec.count},
            "transform": repr(self.transform) if self.transform is not None else None,
        })

    def _open_writer(self, config: dict[str, Any], resume: bool, overwrite: bool,
                     progress: bool) -> Optional[SummaryWriter]:
        """A writer for a new, overwritten or resumed summary; None when the stored summary is already complete."""
        if is_summary_dir(self.summary_dir) and not overwrite:
            if not resume:
                raise InvalidInputError(f"{self.summary_dir} already holds a summary; pass resume=True to continue "
                                        "it or overwrite=True to start over")
            with Summary.open(self.summary_dir) as summary:
                run = summary.run()
            stored = run.config or {}
            differing = [key for key in RESUME_KEYS if stored.get(key) != config.get(key)]
            if differing:
                raise InvalidInputError(
                    f"{self.summary_dir} holds a run with another configuration ({', '.join(differing)} differ); "
                    "pass overwrite=True to start over, or write to another directory")
            if run.status == "complete":
                self._say(f"xaiboard: {self.summary_dir} is already complete ({run.progress_done} samples); pass "
                          "overwrite=True to compute it again", progress)
                return None
            self._say(f"xaiboard: resuming {self.summary_dir} after {run.progress_done} samples", progress)
            return SummaryWriter.resume(self.summary_dir)
        writer = SummaryWriter.create(self.summary_dir, name=self.name, overwrite=overwrite)
        try:
            self._describe(writer, config)
        except BaseException as exc:
            writer.close("failed", _error_text(exc))
            raise
        return writer

    @staticmethod
    def _say(message: str, progress: bool) -> None:
        logger.info(message)
        if progress:
            tqdm.write(message, file=sys.stderr)

    def _describe(self, writer: SummaryWriter, config: dict[str, Any]) -> None:
        channels, height, width = config["image_shape"]
        device = str(self.device)
        if self.device.type == "cuda":
            device += f" ({torch.cuda.get_device_name(self.device)})"
        writer.set_labels(self.classes)
        for explainer in self.explainers:
            writer.register_explainer(explainer.name, config["explainers"][explainer.name])
        for benchmark in self.benchmarks:
            value_range = tuple(benchmark.range) + (None,) * (2 - len(tuple(benchmark.range)))
            writer.register_metric(benchmark.name, bool(benchmark.higher_is_better), value_range[:2],
                                   benchmark.aggregation, config["benchmarks"][benchmark.name])
        writer.update_run(
            task="multi-label" if self.multi_label else "single-label",
            activation=self.activation_name,
            threshold=self.threshold,
            top_k=self.top_k,
            image_height=height,
            image_width=width,
            model_class=f"{type(self.network).__module__}.{type(self.network).__qualname__}"[:255],
            num_parameters=sum(p.numel() for p in self.network.parameters()),
            device=device[:64],
            versions=_versions(),
            uncertainty=config["uncertainty"],
            config=config,
            progress_total=config["data"]["count"],
        )

    def _batches(self, done: set[int]) -> Iterator[list[Item]]:
        batch: list[Item] = []
        for item in self.source.items(skip=done):
            batch.append(item)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _loop(self, writer: SummaryWriter, spec: DataSpec, done: set[int], stop: _StopRequest,
              progress: bool) -> bool:
        """Compute batch k+1 while a writer thread stores batch k (PNG encoding and SQLite hold the GIL only
        between torch's kernels, so the two overlap). At most one batch waits to be stored. Returns whether every
        sample was done (False when a stop request cut the run short)."""
        written = 0
        failed = 0
        with tqdm(total=spec.count, initial=len(done), unit="sample", desc=writer.directory.name,
                  disable=not progress, dynamic_ncols=True, file=sys.stderr, smoothing=0.1) as bar, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="xaiboard-writer") as storing:
            pending: Optional[tuple[Future, Batch]] = None

            def finish(entry: tuple[Future, Batch]) -> None:
                nonlocal failed, written
                future, stored = entry
                future.result()
                failed += len({f.sample_id for f in stored.failures})
                written += len(stored.samples)
                bar.update(len(stored.samples))
                if failed:
                    bar.set_postfix(failed=failed, refresh=False)

            try:
                for items in self._batches(done):
                    batch = self.process(items, spec)
                    if pending is not None:
                        finish(pending)
                    pending = (storing.submit(writer.write_batch, batch), batch)
                    if stop.signum is not None:
                        break
            except BaseException:
                if pending is not None:  # let the batch in flight land; the error that stopped us is the news
                    pending[0].exception()
                raise
            if pending is not None:
                finish(pending)
        return len(done) + written >= spec.count

    # -- one batch -----------------------------------------------------------------------------------------------

    def process(self, items: list[Item], spec: DataSpec) -> Batch:
        """Everything the store gets for a batch of items (no writing)."""
        batch = Batch()
        inputs_cpu = torch.stack([item.image for item in items])
        inputs = inputs_cpu.to(self.device, non_blocking=True)
        by_sample = {row: [row] for row in range(len(items))}
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
                                 [items[r].ground_truth for r in rows], self.multi_label, self.threshold, self.top_k)
        pair_rows: list[int] = []
        pair_labels: list[int] = []
        for row, labels in zip(rows, selected):
            for label, _ in labels:
                pair_rows.append(row)
                pair_labels.append(label)
        self._add_predictions(batch, items, rows, selected, probs_of, spread_of)
        self._add_samples(batch, items, inputs_cpu)
        if pair_rows and self.explainers:
            self._explain(batch, items, inputs, pair_rows, pair_labels, spec)
        return batch

    @torch.no_grad()
    def _predict(self, inputs: Tensor) -> tuple[Tensor, Optional[tuple[Tensor, Tensor, Tensor]]]:
        probs = self.activation(self.network(inputs)).float().cpu()
        spread = None
        if self.uncertainty is not None:
            result = self.uncertainty(inputs, self.activation)
            spread = (result.sd.cpu(), result.lower.cpu(), result.upper.cpu())
        return probs, spread

    def _guarded(self, stage: str, compute: Callable[[list[int]], Any], groups: dict[int, list[int]],
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
                failures.append(FailureRecord(items[position].id, stage, _error_text(error), traceback.format_exc()))
                return []
        results = []
        for position, rows in groups.items():
            try:
                results.append((rows, compute(rows)))
            except Exception as error:  # noqa: BLE001
                failures.append(FailureRecord(items[position].id, stage, _error_text(error), traceback.format_exc()))
        return results

    def _add_predictions(self, batch: Batch, items: list[Item], rows: list[int],
                         selected: list[list[tuple[int, str]]], probs_of: dict[int, Tensor],
                         spread_of: dict[int, tuple[Tensor, Tensor, Tensor]]) -> None:
        for row, labels in zip(rows, selected):
            sample_id = items[row].id
            truth = set(items[row].ground_truth)
            types = dict(labels)
            probs = probs_of[row].tolist()
            if row in spread_of:
                sd, lower, upper = (t.tolist() for t in spread_of[row])
            else:
                sd = lower = upper = [None] * len(probs)
            batch.predictions += [
                PredictionRecord(sample_id, label, probs[label], label in truth, types.get(label), sd[label],
                                 lower[label], upper[label])
                for label in range(len(probs))
            ]

    def _display_images(self, inputs: Tensor) -> np.ndarray:
        """N x H x W (one channel) or N x H x W x 3 uint8 images to show, from the inputs."""
        images = inputs.float()
        if self.mean is not None and self.std is not None:
            shape = (1, -1, 1, 1)
            images = images * torch.tensor(self.std).view(shape) + torch.tensor(self.mean).view(shape)
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
        displays = self._display_images(inputs_cpu)
        for item, display in zip(items, displays):
            boxes = [BoxRecord(label, *box) for label, box in zip(item.labels, item.boxes)]
            batch.samples.append(SampleRecord(item.id, item.name, item.display if item.display is not None else display,
                                              item.ground_truth, boxes, item.masks))

    @staticmethod
    def _mask(item: Item, label: int, height: int, width: int) -> Optional[np.ndarray]:
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
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _explain(self, batch: Batch, items: list[Item], inputs: Tensor, pair_rows: list[int],
                 pair_labels: list[int], spec: DataSpec) -> None:
        pair_inputs = inputs[torch.tensor(pair_rows, device=self.device)]
        targets = torch.tensor(pair_labels, device=self.device)
        everything = list(range(len(pair_rows)))

        def take(pairs: list[int]) -> tuple[Tensor, Tensor]:
            """The inputs and targets of some pairs (no copy for all of them, the usual case)."""
            if pairs == everything:
                return pair_inputs, targets
            index = torch.tensor(pairs, device=self.device)
            return pair_inputs[index], targets[index]

        pairs_of: dict[int, list[int]] = {}
        for pair, row in enumerate(pair_rows):
            pairs_of.setdefault(row, []).append(pair)
        masks: dict[int, np.ndarray] = {}
        if any(b.requires_masks for b in self.benchmarks):
            for pair, (row, label) in enumerate(zip(pair_rows, pair_labels)):
                if label in items[row].ground_truth:
                    mask = self._mask(items[row], label, spec.height, spec.width)
                    if mask is not None:
                        masks[pair] = mask
        for explainer in self.explainers:
            stage = f"explainer:{explainer.name}"

            def explain(pairs: list[int], explainer: Any = explainer) -> tuple[Tensor, Optional[Tensor], float]:
                chosen_inputs, chosen_targets = take(pairs)
                self._sync()
                start = time.perf_counter()
                if callable(getattr(explainer, "explain_with_delta", None)):
                    maps, delta = explainer.explain_with_delta(chosen_inputs, chosen_targets)
                else:
                    maps, delta = explainer.explain(chosen_inputs, chosen_targets), None
                self._sync()
                seconds = (time.perf_counter() - start) / len(pairs)
                if not isinstance(maps, Tensor) or tuple(maps.shape) != (len(pairs), spec.height, spec.width):
                    shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
                    raise ValueError(f"{explainer.name} returned maps of shape {shape}, expected "
                                     f"({len(pairs)}, {spec.height}, {spec.width})")
                return maps.detach(), (delta.detach() if delta is not None else None), seconds

            results = self._guarded(stage, explain, pairs_of, items, batch.failures)
            good_pairs: list[int] = []
            good_maps: list[Tensor] = []
            all_good: Optional[Tensor] = None
            for pairs, (maps, delta, seconds) in results:
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
                    good_pairs.append(pair)
                    good_maps.append(maps[i])
                if pairs == everything and all(finite):
                    all_good = maps
            if good_pairs and self.benchmarks:
                order = sorted(range(len(good_pairs)), key=good_pairs.__getitem__)
                maps = all_good if all_good is not None else torch.stack([good_maps[i] for i in order])
                self._score(batch, items, take, explainer, [good_pairs[i] for i in order], maps, pair_rows,
                            pair_labels, masks)

    def _score(self, batch: Batch, items: list[Item], take: Callable[[list[int]], tuple[Tensor, Tensor]],
               explainer: Any, pairs: list[int], maps: Tensor, pair_rows: list[int], pair_labels: list[int],
               masks: dict[int, np.ndarray]) -> None:
        """Each benchmark once on all of the explainer's pairs of the batch (those with a mask if it needs one)."""
        position = {pair: i for i, pair in enumerate(pairs)}
        for benchmark in self.benchmarks:
            chosen = [pair for pair in pairs if pair in masks] if benchmark.requires_masks else pairs
            groups: dict[int, list[int]] = {}
            for pair in chosen:
                groups.setdefault(pair_rows[pair], []).append(pair)

            def evaluate(subset: list[int], benchmark: Any = benchmark) -> Tensor:
                chosen_inputs, chosen_targets = take(subset)
                saliency = maps if subset == pairs else maps[
                    torch.tensor([position[p] for p in subset], device=self.device)]
                mask_tensor = None
                if benchmark.requires_masks:
                    mask_tensor = torch.from_numpy(np.stack([masks[p] for p in subset])).to(self.device)
                values = benchmark.evaluate(self.network, chosen_inputs, chosen_targets, saliency,
                                            masks=mask_tensor, explainer=explainer, activation_fn=self.activation)
                values = torch.as_tensor(values).detach().float().reshape(-1).cpu()
                if values.shape[0] != len(subset):
                    raise ValueError(f"{benchmark.name} returned {values.shape[0]} scores for {len(subset)} maps")
                return values

            stage = f"benchmark:{benchmark.name}:{explainer.name}"
            for subset, values in self._guarded(stage, evaluate, groups, items, batch.failures):
                batch.scores += [
                    ScoreRecord(explainer.name, benchmark.name, items[pair_rows[pair]].id, pair_labels[pair], value)
                    for pair, value in zip(subset, values.tolist())
                ]
