"""``ImageClassificationRunner``: explain and score a classifier over a dataset into a summary directory.

The runner validates the data and the methods, prints its cost plan (:mod:`.plan`), then explains the samples in
small groups (:mod:`.groups`, computed by :mod:`.processing`): the first group is one sample, later ones take a few
seconds, never more than ``batch_size`` samples. Each group is committed in one store transaction by a writer thread
while the next one is computed, so samples appear in the dashboard seconds after they are done, a killed run keeps
every committed sample, and ``run()`` continues after them.
"""

from __future__ import annotations

import itertools
import logging
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from xaiboard.store import Summary, SummaryWriter
from xaiboard.store.arrays import check_bits

from .allocator import keep_freed_memory
from .cost import Passes
from .data import DataSource, DataSpec, InvalidInputError, Item
from .device import check_precision
from .distributed import agree_on_config, current_rank, device_for
from .explainers.base import eval_mode
from .groups import explain_in_groups
from .internals.recorder import InternalsRecorder
from .interrupt import RunStopped, StopRequest
from .labels import select_labels
from .opening import as_json, describe_run, error_text, open_writer
from .plan import Plan, make_plan, passes_of, time_passes
from .processing import GroupProcessor, Settings
from .uncertainty import make_uncertainty
from .validation import (ACTIVATIONS, Activation, check_benchmarks, check_classes, check_explainers, normalisation,
                         resolve_activation)

logger = logging.getLogger(__name__)

#: items whose labels are counted to estimate the pairs per sample in the plan
PLAN_ITEMS = 16


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
        batch_size: the most samples computed and committed together; groups start at one sample and grow while
            a group takes less than about two seconds (small images), so the store and the progress bar move at
            least every few seconds.
        device: ``"cpu"``, ``"cuda"``, ... (default: CUDA when available; under torchrun or srun each rank's local
            GPU, see :mod:`.distributed`: rank r of N explains the samples with index = r mod N into its own shard
            ``summary_dir/shards/rank-0000r``).
        name: the run's name (default: the directory's name).
        transform: applied to every item's image before anything else (e.g. PIL image -> normalised tensor).
        map_bits: the precision maps are stored at: every value within (max - min) / (2**map_bits - 1) / 2 of the
            explainer's, like float16 at the map's peak with the default 12 (a 224 x 224 gradient map is about
            a third smaller than at 16); 16 to re-score stored maps to more digits.
        precision: ``"fp32"``, or ``"bf16"``/``"fp16"`` to run explainers and benchmarks under ``torch.autocast``
            (predictions stay float32; the scores' tolerance is documented in :mod:`.device`).
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
        map_bits: int = 12,
        precision: str = "fp32",
    ) -> None:
        if not isinstance(network, nn.Module):
            raise InvalidInputError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        names = check_classes(classes)
        self.activation_name, self.activation = resolve_activation(activation_fn)
        if not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise InvalidInputError(f"threshold must be a probability in [0, 1], got {threshold!r}")
        if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= len(names)):
            raise InvalidInputError(f"top_k must be an integer in 1..{len(names)} or None, got {top_k!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.mean, self.std = normalisation(mean, std)
        self.summary_dir = Path(summary_dir)
        self.rank = current_rank()
        self.output_dir = self.rank.output_dir(self.summary_dir)
        self.network = network
        self.classes = names
        self.threshold = float(threshold)
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = device_for(self.rank, device)
        self.name = name
        self.source = DataSource(data, transform)
        self.transform = transform
        try:
            self.map_bits = check_bits(map_bits)
            self.precision = check_precision(precision)
        except ValueError as error:
            raise InvalidInputError(str(error)) from None
        self.explainers: list[Any] = []
        self.benchmarks: list[Any] = []
        self.benchmark_samples: Optional[int] = None
        self.benchmark_seed = 0
        self.uncertainty: Any = None
        self.internals: Optional[InternalsRecorder] = None
        self._layers: list[Any] = []
        self.multi_label = self.activation_name == "sigmoid"

    # -- registration --------------------------------------------------------------------------------------------

    def register_saliency(self, explainers: Iterable[Any], benchmarks: Iterable[Any] = (),
                          benchmark_samples: Optional[int] = None, seed: int = 0) -> None:
        """Add explainers (maps for every explained label) and benchmarks (scores of every explainer's maps).

        ``benchmark_samples=N`` scores only a seeded random subset of N samples (every sample still gets its maps):
        benchmarks such as Robustness cost many explainer runs per pair (see :meth:`plan`).
        """
        if benchmark_samples is not None and (not isinstance(benchmark_samples, int) or benchmark_samples < 1):
            raise InvalidInputError(f"benchmark_samples must be a positive integer or None, got {benchmark_samples!r}")
        if benchmark_samples is not None:
            self.benchmark_samples, self.benchmark_seed = benchmark_samples, int(seed)
        explainers, benchmarks = list(explainers), list(benchmarks)
        check_explainers(explainers, self.explainers, self.network)
        for explainer in explainers:
            if self.mean is not None and callable(getattr(explainer, "use_normalisation", None)):
                explainer.use_normalisation(self.mean, self.std)
        check_benchmarks(benchmarks, self.benchmarks)
        self.explainers += explainers
        self.benchmarks += benchmarks

    def register_uncertainty(self, n_samples: int = 10, method: str = "mc_dropout", **options: Any) -> None:
        """Add the uncertainty of every probability (standard deviation and 95% interval) from ``n_samples``
        stochastic passes: ``method="mc_dropout"`` (only the Dropout layers on; a network without any is refused)
        or ``"input_noise"`` (Gaussian noise on the input, for networks without dropout; ``options`` go to it)."""
        try:
            self.uncertainty = make_uncertainty(method, self.network, n_samples, **options)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(str(error)) from None

    def register_internals(self, layers: Sequence[str | nn.Module] = (), top_k: Optional[int] = None,
                           encoding: str = "uint8", attention: bool = False, scale: Optional[float] = None,
                           scale_layers: Optional[Sequence[str]] = None) -> None:
        """Keep what the network computes inside, per sample (one more forward pass, two with ``scale``):

        - ``layers``: the feature maps of these layers (N x C x h x w outputs; all channels, or with ``top_k=K``
          the K with the highest mean activation, per-channel ``uint8`` or ``float16``), and the filters of those
          that are Conv2d (once per run);
        - ``attention=True``: every attention layer's per-head attention over the patch grid (captured without
          editing the model: fused ``scaled_dot_product_attention``, ``nn.MultiheadAttention``, explicit softmax);
        - ``scale=F``: every label's probability again with the pre-softmax attention scores multiplied by F in
          ``scale_layers`` (all by default), shown beside the plain prediction.

        See :mod:`xaiboard.runner.internals.recorder` for the stored form and its size.
        """
        try:
            self.internals = InternalsRecorder(self.network, layers, top_k=top_k, encoding=encoding,
                                               attention=attention, scale=scale, scale_layers=scale_layers)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(str(error)) from None

    # -- running -------------------------------------------------------------------------------------------------

    def run(self, resume: bool = True, progress: bool = True, overwrite: bool = False) -> Summary:
        """Validate everything, print the plan, then explain every sample not yet in the summary; returns the
        opened summary.

        ``resume``: continue a summary left by an earlier run on the same data and configuration (a complete one
        is returned as is); ``overwrite``: start over. SIGINT/SIGTERM stop within one forward pass, keep every
        finished sample with the status ``interrupted``, and are then handed on (a default SIGINT raises
        KeyboardInterrupt); a second Ctrl-C stops at once.
        """
        spec = self._prepare()
        plan = self._plan(spec, timing=True)
        self._say(str(plan), progress)
        advice = plan.warning()
        if advice:
            warnings.warn(f"xaiboard: {advice}", RuntimeWarning, stacklevel=2)
        config = self._config(spec)
        config["plan"] = as_json(plan.as_dict())
        if self.rank.sharded:
            config["shard"] = {"rank": self.rank.rank, "world_size": self.rank.world_size}
            agree_on_config(self.summary_dir, self.rank, config)
        writer = self._open_writer(config, spec, resume, overwrite, progress)
        if writer is None:
            return Summary.open(self.output_dir)
        writer.register_layers(self._layers)
        stop = StopRequest()
        status: Optional[str] = "failed"
        error: Optional[str] = None
        try:
            with eval_mode(self.network):
                done = writer.done_sample_ids() | self._unreadable_ids() | self._foreign_ids(spec)
                usable = self._usable_ids(spec)
                writer.set_progress(done=len(done & usable), total=len(usable))
                stop.install(self.network)
                finished = self._loop(writer, spec, done, stop, progress)
            status = "complete" if finished else "interrupted"
        except (KeyboardInterrupt, RunStopped):
            status, error = "interrupted", None
            if stop.signum is None:
                raise
        except BaseException as exc:
            error = error_text(exc)
            raise
        finally:
            stop.restore()
            writer.close(status, error)
        if stop.signum is not None:
            stop.redeliver()
        return Summary.open(self.output_dir)

    def plan(self, timing: bool = True) -> Plan:
        """The cost of the run before paying it: per explainer and benchmark the passes per pair, the pairs
        expected and, with ``timing``, the time estimated from one image's forward and backward pass measured on
        this device. ``str(plan)`` is the table :meth:`run` prints; ``plan.warning()`` says what to change when
        the run would take more than an hour."""
        return self._plan(self._prepare(), timing)

    def _prepare(self) -> DataSpec:
        if self.device.type == "cpu":
            keep_freed_memory()  # see .allocator: passes at 224 x 224 are up to twice as fast
        self._probe()
        spec = self.source.validate(len(self.classes))
        for what, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, spec.channels):
                raise InvalidInputError(f"{what} has {len(values)} values but the images have {spec.channels} "
                                        "channels")
        return spec

    def _unreadable_ids(self) -> set[int]:
        """Samples an earlier run of this summary could not read: recorded once, not read again on resume."""
        with Summary.open(self.output_dir) as summary:
            return {f.sample_id for f in summary.failures() if f.stage == "data" and f.sample_id is not None}

    def _usable_ids(self, spec: DataSpec) -> set[int]:
        """The samples this process explains: every readable one, or under torchrun/srun this rank's share."""
        bad = {b.id for b in spec.bad}
        return {i for i in range(spec.count) if i not in bad and self.rank.owns(i)}

    def _foreign_ids(self, spec: DataSpec) -> set[int]:
        """The other ranks' samples, skipped like done ones."""
        return {i for i in range(spec.count) if not self.rank.owns(i)} if self.rank.sharded else set()

    def _scored_ids(self, spec: DataSpec) -> Optional[set[int]]:
        """The sample ids that get benchmark scores: a seeded subset of ``benchmark_samples``, or None for all."""
        if self.benchmark_samples is None or self.benchmark_samples >= spec.count:
            return None
        order = np.random.default_rng(self.benchmark_seed).permutation(spec.count)
        return {int(i) for i in order[:self.benchmark_samples]}

    def _plan(self, spec: DataSpec, timing: bool) -> Plan:
        probe = [item for item in itertools.islice(self.source.items(shape=spec.shape), PLAN_ITEMS)
                 if isinstance(item, Item)]
        probe, probs = self._probe_outputs(probe)
        selected = select_labels(probs, [item.ground_truth for item in probe], self.multi_label, self.threshold,
                                 self.top_k)
        pairs = sum(len(labels) for labels in selected)
        masked = sum(1 for item, labels in zip(probe, selected) for label, _ in labels
                     if label in item.ground_truth and (label in item.masks or label in item.labels[:len(item.boxes)]))
        samples = len(self._usable_ids(spec))
        scored = self._scored_ids(spec)
        uncertainty = passes_of(self.uncertainty) if self.uncertainty is not None else Passes()
        return make_plan(
            samples=samples, pairs_per_sample=pairs / max(1, len(probe)), masked_share=masked / max(1, pairs),
            benchmark_samples=samples if scored is None else len(scored), image_shape=spec.shape,
            device=str(self.device), explainers=self.explainers, benchmarks=self.benchmarks,
            model_passes=Passes(1) + (uncertainty or Passes()),
            timing=time_passes(self.network, probe[0].image, self.device) if timing else None,
            internal_passes=self.internals.passes() if self.internals is not None else None,
        )

    def _probe_outputs(self, probe: list[Item]) -> tuple[list[Item], Tensor]:
        """The probabilities of the plan's probe items; one by one when the batch fails, without the items the
        model cannot take (those become failures of the run itself, not of the plan)."""
        with eval_mode(self.network), torch.no_grad():
            try:
                inputs = torch.stack([item.image for item in probe]).to(self.device)
                return probe, self.activation(self.network(inputs)).float().cpu()
            except Exception:  # noqa: BLE001 - a sample the model rejects: find it below
                kept, rows = [], []
                for item in probe:
                    try:
                        rows.append(self.activation(self.network(item.image[None].to(self.device))).float().cpu())
                    except Exception:  # noqa: BLE001
                        continue
                    kept.append(item)
                return kept, torch.cat(rows) if rows else torch.zeros(0, len(self.classes))

    def _probe(self) -> None:
        """One forward pass on the first usable item: the outputs must match the classes; explainers check the
        inputs."""
        first = next((item for item in self.source.items() if isinstance(item, Item)), None)
        if first is None:
            self.source.validate(len(self.classes))  # raises, naming the first item and why it cannot be used
        self.network.to(self.device)
        inputs = first.image.unsqueeze(0).to(self.device)
        try:
            with eval_mode(self.network), torch.no_grad():
                logits = self.network(inputs)
        except Exception as error:
            raise InvalidInputError(f"the model fails on item 0 (image shape {tuple(first.image.shape)}): "
                                    f"{error_text(error)}") from error
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
        if self.internals is not None:
            try:
                self._layers = self.internals.describe(inputs)
            except ValueError as error:
                raise InvalidInputError(f"register_internals: {error}") from None
        for explainer in self.explainers:
            check = getattr(explainer, "check", None)
            if callable(check):
                try:
                    check(inputs)
                except ValueError as error:
                    raise InvalidInputError(str(error)) from None

    def _config(self, spec: DataSpec) -> dict[str, Any]:
        return as_json({
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
            "internals": self.internals.config() if self.internals else None,
            "image_shape": [spec.channels, spec.height, spec.width],
            "batch_size": self.batch_size,
            "benchmark_samples": ({"count": self.benchmark_samples, "seed": self.benchmark_seed}
                                  if self.benchmark_samples is not None else None),
            "data": {"type": self.source.description, "count": spec.count,
                     "fingerprint": spec.fingerprint.as_dict() if spec.fingerprint else None},
            "transform": repr(self.transform) if self.transform is not None else None,
            "map_bits": self.map_bits,
            "precision": None if self.precision == "fp32" else self.precision,
        })

    def _open_writer(self, config: dict[str, Any], spec: DataSpec, resume: bool, overwrite: bool,
                     progress: bool) -> Optional[SummaryWriter]:
        name = self.name or self.summary_dir.resolve().name  # a shard is named after its run, not "rank-00003"
        return open_writer(self.output_dir, name, config, spec.fingerprint, resume=resume, overwrite=overwrite,
                           map_bits=self.map_bits,
                           say=lambda message: self._say(message, progress),
                           describe=lambda writer: describe_run(writer, config, self))

    @staticmethod
    def _say(message: str, progress: bool) -> None:
        logger.info(message)
        if progress:
            tqdm.write(message, file=sys.stderr)

    def _settings(self, spec: DataSpec, stage: Callable[[str], None]) -> Settings:
        return Settings(self.network, self.device, self.activation, self.multi_label, self.threshold, self.top_k,
                        self.mean, self.std, self.explainers, self.benchmarks, self.uncertainty,
                        self.internals, self._scored_ids(spec), stage, precision=self.precision)

    def _loop(self, writer: SummaryWriter, spec: DataSpec, done: set[int], stop: StopRequest,
              progress: bool) -> bool:
        usable = self._usable_ids(spec)
        return explain_in_groups(
            writer, self.source.items(skip=done, shape=spec.shape),
            lambda stage: GroupProcessor(self._settings(spec, stage), spec),
            total=len(usable), initial=len(usable & done), max_group=self.batch_size, stop=stop, progress=progress)
