"""Many processes, one run: the same script under ``torchrun --nproc-per-node=2`` writes one shard per rank whose
rows together are exactly those of a single-process run; a rank killed mid-run is completed by launching again
with nothing doubled; ranks read their place from torchrun's or SLURM's environment and refuse to disagree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xaiboard.runner.data import InvalidInputError
from xaiboard.runner.distributed import Rank, agree_on_config, current_rank, shard_dir
from xaiboard.store import Summary

SCRIPT = Path(__file__).with_name("shard_run.py")
TORCHRUN = Path(sys.executable).with_name("torchrun")
pytestmark = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this Python")


def launch(out: Path, processes: int, *extra: str) -> subprocess.Popen:
    """The script in one process, or under torchrun (CPU, no process group)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(name, None)
    if processes == 1:
        command = [sys.executable, str(SCRIPT), str(out), *extra]
    else:
        command = [str(TORCHRUN), "--standalone", f"--nproc-per-node={processes}", str(SCRIPT), str(out), *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def rows(directories: list[Path]) -> dict[str, dict]:
    """Everything a run stored, keyed by what identifies it, over one summary or several shards."""
    result: dict[str, dict] = {"samples": {}, "predictions": {}, "maps": {}, "scores": {}}
    for directory in directories:
        with Summary.open(directory) as summary:
            for sample_id, name in summary.sample_names().items():
                assert sample_id not in result["samples"], f"sample {sample_id} is stored twice"
                result["samples"][sample_id] = name
            for p in summary.predictions():
                result["predictions"][(p.sample_id, p.label_index)] = (round(p.prob, 6), p.type)
            for sample_id in summary.sample_ids():
                for label in summary.sample(sample_id).labels:
                    for explainer in label.explainers:
                        result["maps"][(sample_id, label.label_index, explainer)] = summary.saliency_map(
                            sample_id, label.label_index, explainer)
            for explainer, metric, sample_id, label, value in summary.scores():
                result["scores"][(explainer, metric, sample_id, label)] = value
    return result


def assert_same_rows(got: dict, expected: dict) -> None:
    assert len(expected["maps"]) >= 14 * 2 * 3 and len(expected["scores"]) > 0, "top-2 and ground truth, 3 maps"
    assert got["samples"] == expected["samples"]
    assert got["predictions"] == expected["predictions"]
    assert got["maps"].keys() == expected["maps"].keys()
    for key, values in expected["maps"].items():
        step = (values.max() - values.min()) / 4095  # the stored precision (12 bits over the map's range)
        np.testing.assert_allclose(got["maps"][key], values, atol=2 * step + 1e-6, err_msg=str(key))
    assert got["scores"].keys() == expected["scores"].keys()
    for key, value in expected["scores"].items():
        assert (got["scores"][key] is None) == (value is None), key
        if value is not None:
            assert got["scores"][key] == pytest.approx(value, abs=1e-4), key


def shards(run: Path, count: int = 2) -> list[Path]:
    return [shard_dir(run, rank) for rank in range(count)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("single") / "run"
    finish(launch(out, 1))
    return rows([out])


@pytest.mark.slow
def test_two_ranks_write_exactly_the_rows_of_one_process(tmp_path, reference):
    run = tmp_path / "run"
    finish(launch(run, 2))
    assert sorted(p.name for p in (run / "shards").iterdir()) == ["rank-00000", "rank-00001", "world.json"]
    assert not (run / "xaiboard.db").exists(), "ranks write only their shards"
    for rank, directory in enumerate(shards(run)):
        with Summary.open(directory) as summary:
            assert summary.sample_ids() == list(range(rank, 14, 2)), "rank r explains the indices = r mod 2"
            run_view = summary.run()
            assert run_view.status == "complete" and run_view.progress_done == run_view.progress_total == 7
            assert run_view.config["shard"] == {"rank": rank, "world_size": 2}
    world = json.loads((run / "shards" / "world.json").read_text())
    assert world["world_size"] == 2 and "shard" not in world["config"]
    assert_same_rows(rows(shards(run)), reference)


@pytest.mark.slow
def test_a_killed_rank_is_completed_by_launching_again(tmp_path, reference):
    run = tmp_path / "run"
    process = launch(run, 2, "--slow", "0.05")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with Summary.open(shard_dir(run, 1)) as summary:
                if summary.run().progress_done >= 1:
                    break
        except Exception:  # noqa: BLE001 - the shard does not exist yet
            pass
        time.sleep(0.1)
    else:
        pytest.fail("rank 1 committed nothing within 2 minutes")
    os.kill(int((tmp_path / "pid-1").read_text()), signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode != 0, "torchrun reports the dead rank"
    with Summary.open(shard_dir(run, 1)) as summary:
        left = summary.run()
    assert left.status == "running" and 1 <= left.progress_done < 7, "killed mid-run: some samples kept"
    finish(launch(run, 2))
    assert_same_rows(rows(shards(run)), reference)


def test_the_rank_comes_from_torchrun_or_slurm():
    assert current_rank({}) == Rank(0, 1, 0)
    assert current_rank({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Rank(3, 8, 1)
    assert current_rank({"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_LOCALID": "2"}) == Rank(5, 6, 2)
    both = {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "4"}
    assert current_rank(both) == Rank(1, 2, 0), "torchrun inside an allocation wins"
    for bad in ({"RANK": "2", "WORLD_SIZE": "2"}, {"RANK": "x", "WORLD_SIZE": "2"}):
        with pytest.raises(InvalidInputError):
            current_rank(bad)
    rank = Rank(1, 3, 1)
    assert [i for i in range(10) if rank.owns(i)] == [1, 4, 7]
    assert rank.output_dir(Path("run")) == Path("run/shards/rank-00001") and Rank().output_dir(Path("run")) == Path(
        "run")


def test_ranks_refuse_another_configuration(tmp_path):
    config = {"classes": ["a", "b"], "top_k": 1, "plan": {"seconds": 3}}
    agree_on_config(tmp_path, Rank(0, 2), config)
    agree_on_config(tmp_path, Rank(1, 2), {**config, "plan": {"seconds": 4}, "shard": {"rank": 1}}, timeout_s=1)
    with pytest.raises(InvalidInputError, match="top_k"):
        agree_on_config(tmp_path, Rank(1, 2), {**config, "top_k": 2}, timeout_s=0.3)
    with pytest.raises(InvalidInputError, match="world size of 2"):
        agree_on_config(tmp_path, Rank(1, 3), config, timeout_s=0.3)
    shutil.rmtree(tmp_path / "shards")
    with pytest.raises(InvalidInputError, match="did not record"):
        agree_on_config(tmp_path, Rank(1, 2), config, timeout_s=0.3)
