"""Running one explanation over many processes the way PyTorch users launch them: ``torchrun`` (or SLURM's
``srun``) starts the same script once per device, and each process learns from its environment which share of the
samples is its own.

Rank ``r`` of ``N`` explains the samples whose dataset index is congruent to ``r`` modulo ``N`` (every sample exactly
once, none padded or repeated, unlike ``DistributedSampler``) and writes its own summary database, a shard, inside the
summary directory: ``DIR/shards/rank-00003/xaiboard.db``. No two processes ever write one SQLite file, so the
directory can live on a shared filesystem. Rank 0 records the run's configuration in ``DIR/shards/world.json``;
every other rank waits for it and refuses to run with a different one. A rank that dies is resumed by launching the
same command again: each shard continues after its own committed samples. ``xaiboard merge DIR`` writes the
single-file summary; until then the store reads the shards as one run.

No process group is needed (nothing is exchanged between ranks); ``torch.distributed`` may be initialised or not.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from xaiboard.store.shards import set_aside_partial_merge

from .data import InvalidInputError

SHARDS = "shards"
WORLD_FILE = "world.json"
#: how long a rank other than 0 waits for rank 0 to record the configuration
WORLD_TIMEOUT_S = 600.0

#: the environment variables that carry (rank, world size, local rank): torchrun's, then those srun gives each task
#: of a job step. A batch script itself also sees ``SLURM_PROCID=0`` and the allocation's ``SLURM_NTASKS``, but no
#: step variables: a script started there without srun is one process, not rank 0 of many.
LAUNCHERS = (("RANK", "WORLD_SIZE", "LOCAL_RANK"), ("SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"))


@dataclass(frozen=True)
class Rank:
    """This process's place in a multi-process run: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    def owns(self, index: int) -> bool:
        """Whether the sample with this dataset index is this rank's to explain."""
        return index % self.world_size == self.rank

    def output_dir(self, summary_dir: Path) -> Path:
        """Where this rank writes: its shard inside the summary directory, or the directory itself alone."""
        return shard_dir(summary_dir, self.rank) if self.sharded else summary_dir

    def label(self) -> str:
        return f"rank {self.rank}/{self.world_size}"


def shard_dir(summary_dir: str | Path, rank: int) -> Path:
    """The shard directory of ``rank``: ``DIR/shards/rank-00003``."""
    return Path(summary_dir) / SHARDS / f"rank-{rank:05d}"


def _integer(environ: Mapping[str, str], name: str) -> int:
    text = environ[name]
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"the environment variable {name} must be an integer, got {text!r}") from None


def current_rank(environ: Optional[Mapping[str, str]] = None) -> Rank:
    """The rank from torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` or srun's ``SLURM_PROCID``/
    ``SLURM_STEP_NUM_TASKS``/``SLURM_LOCALID``; a single process when neither is set (with a warning inside a SLURM
    allocation of several tasks that was not entered through srun)."""
    environ = os.environ if environ is None else environ
    for rank_name, world_name, local_name in LAUNCHERS:
        if rank_name in environ and world_name in environ:
            rank, world = _integer(environ, rank_name), _integer(environ, world_name)
            local = _integer(environ, local_name) if local_name in environ else 0
            if world < 1 or not 0 <= rank < world or local < 0:
                raise InvalidInputError(f"{rank_name}={rank} and {world_name}={world} do not describe a rank")
            return Rank(rank, world, local)
    tasks = environ.get("SLURM_NTASKS", "1")
    if tasks.isdigit() and int(tasks) > 1:
        warnings.warn(f"running as one process inside a SLURM allocation of {tasks} tasks: start the script with "
                      "srun to explain a share of the samples in each task", RuntimeWarning, stacklevel=2)
    return Rank()


def device_for(rank: Rank, device: Optional[str | torch.device]) -> torch.device:
    """The device a rank runs on: the given one (``"cuda"`` without an index means this rank's local GPU), else its
    local GPU when there is one, else the CPU."""
    if device is None:
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", rank.local_rank % torch.cuda.device_count())
    chosen = torch.device(device)
    if chosen.type == "cuda" and chosen.index is None and rank.sharded and torch.cuda.is_available():
        return torch.device("cuda", rank.local_rank % torch.cuda.device_count())
    return chosen


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key not in ("plan", "shard")}


def agree_on_config(summary_dir: Path, rank: Rank, config: dict[str, Any],
                    timeout_s: float = WORLD_TIMEOUT_S) -> None:
    """Rank 0 records the run's configuration in ``shards/world.json``; the others wait for it and must match."""
    path = Path(summary_dir) / SHARDS / WORLD_FILE
    if rank.rank == 0:
        aside = set_aside_partial_merge(summary_dir)
        if aside is not None:
            print(f"xaiboard: {rank.label()}: the partial merge is set aside as {aside.name}; the run reads from "
                  "its shards until it is merged again", file=sys.stderr)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{WORLD_FILE}.{os.getpid()}")
        partial.write_text(json.dumps({"world_size": rank.world_size, "config": _comparable(config)}, indent=1))
        os.replace(partial, path)  # atomic: a waiting rank never reads half a file
        return
    deadline = time.monotonic() + timeout_s
    recorded: Optional[dict[str, Any]] = None
    while True:
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = None
        if recorded is not None and recorded.get("world_size") == rank.world_size and \
                recorded.get("config") == _comparable(config):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if recorded is None:
        raise InvalidInputError(f"{rank.label()}: rank 0 did not record the run's configuration in {path} within "
                                f"{timeout_s:.0f} s; is rank 0 running with the same summary directory?")
    if recorded.get("world_size") != rank.world_size:
        raise InvalidInputError(f"{rank.label()}: rank 0 runs with a world size of {recorded.get('world_size')}, "
                                f"this rank with {rank.world_size}")
    differing = sorted(key for key in set(recorded["config"]) | set(_comparable(config))
                       if recorded["config"].get(key) != config.get(key))
    raise InvalidInputError(f"{rank.label()}: the configuration differs from rank 0's ({', '.join(differing)}); "
                            "every rank must run the same script with the same settings")
