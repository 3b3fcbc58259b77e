"""Many processes, one run: the same script under ``torchrun --nproc-per-node=2`` writes one shard per rank whose
rows together are exactly those of a single-process run; a rank killed mid-run is completed by launching again
with nothing doubled; ranks read their place from torchrun's or SLURM's environment and refuse to disagree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"):
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
    result: dict[str, Any] = {"samples": {}, "predictions": {}, "maps": {}, "scores": {}, "aggregates": None}
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
            if len(directories) == 1:
                result["aggregates"] = [(a.explainer, a.metric, a.value, a.count,
                                         [(c.label_index, c.mean, c.count) for c in a.per_class])
                                        for a in summary.aggregates()]
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
    if got["aggregates"] is not None:
        assert [a[:2] + (a[3],) for a in got["aggregates"]] == [a[:2] + (a[3],) for a in expected["aggregates"]]
        for mine, theirs in zip(got["aggregates"], expected["aggregates"]):
            assert mine[2] == pytest.approx(theirs[2], abs=1e-4), mine[:2]
            assert [c[0] for c in mine[4]] == [c[0] for c in theirs[4]]
            assert [c[1] for c in mine[4]] == pytest.approx([c[1] for c in theirs[4]], abs=1e-4, nan_ok=True)


def shards(run: Path, count: int = 2) -> list[Path]:
    return [shard_dir(run, rank) for rank in range(count)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("single") / "run"
    finish(launch(out, 1))
    return rows([out])


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    """A run of the script under torchrun with two ranks (to be copied before changing it)."""
    run = tmp_path_factory.mktemp("sharded") / "run"
    finish(launch(run, 2))
    return run


@pytest.mark.slow
def test_two_ranks_write_exactly_the_rows_of_one_process(tmp_path, sharded, reference):
    run = tmp_path / "run"
    shutil.copytree(sharded, run)
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
    assert_same_rows(rows([run]), reference)  # the shards read as one summary: aggregates over both
    with Summary.open(run) as summary:
        assert summary.run().config["shard"] == {"world_size": 2, "ranks": [0, 1]}, "the run's, not rank 0's"

    assert cli("merge", str(run)).exit_code == 0
    merged = tables(run / "xaiboard.db")
    assert_same_rows(rows([run]), reference)  # now the single file
    with Summary.open(run) as summary:
        assert summary.run().status == "complete" and "shard" not in summary.run().config
    assert cli("merge", str(run)).exit_code == 0 and tables(run / "xaiboard.db") == merged, "merging again: the same"
    assert sorted(p.name for p in run.iterdir()) == ["shards", "xaiboard.db"], "nothing left of the merge"


def run_rank(out: Path, rank: int, world: int, monkeypatch) -> None:
    """One rank of the script in this process (what torchrun would start as its own process)."""
    import shard_run

    with monkeypatch.context() as patch:
        for name, value in (("RANK", rank), ("WORLD_SIZE", world), ("LOCAL_RANK", 0)):
            patch.setenv(name, str(value))
        shard_run.run(out)


def shard_copies() -> set[Path]:
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("xaiboard-shards-*"))


@pytest.mark.slow
def test_more_ranks_than_sqlite_attaches_are_read_live_and_merged(tmp_path, reference, monkeypatch):
    run, world = tmp_path / "run", 14  # a sample per rank: more shards than the 11 one connection attaches
    before = shard_copies()
    for rank in range(12):
        run_rank(run, rank, world, monkeypatch)
    with Summary.open(run) as summary:
        view = summary.run()
        assert view.status == "running" and view.progress_done == summary.num_samples() == 12, "2 ranks to go"
        assert view.config["shard"] == {"world_size": world, "ranks": list(range(12))}
        assert view.name == "run", "named after the run's folder, not a rank's"
        assert len(shard_copies() - before) == 1, "read through a private copy outside the summary"
        for rank in (12, 13):
            run_rank(run, rank, world, monkeypatch)
        assert summary.num_samples() == 14 and summary.run().status == "complete", "the open summary follows"
        assert summary.run().progress_done == 14
    assert shard_copies() == before, "the copy goes with the closed summary"
    assert sorted(p.name for p in run.iterdir()) == ["shards"], "nothing written into the summary by reading it"
    assert_same_rows(rows([run]), reference)
    assert cli("merge", str(run)).exit_code == 0, "merged one shard at a time"
    assert_same_rows(rows([run]), reference)


def cli(*arguments: str):
    from click.testing import CliRunner

    from xaiboard.server.cli import main

    return CliRunner().invoke(main, list(arguments))


def tables(path: Path) -> dict[str, list]:
    """Every row of every table, ordered: what two merges must agree on."""
    connection = sqlite3.connect(path)
    try:
        names = [n for (n,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: sorted(map(repr, connection.execute(f'SELECT * FROM "{name}"'))) for name in names}
    finally:
        connection.close()


@pytest.mark.slow
def test_a_killed_rank_is_completed_by_launching_again(tmp_path, reference):
    run = tmp_path / "run"
    process = launch(run, 2, "--slow", "0.1")
    with live_dashboard(tmp_path) as dashboard:
        first_seen = dashboard.wait_for(lambda row: row["progress"]["done"] >= 1)
        grown = dashboard.wait_for(lambda row: row["progress"]["done"] > first_seen["progress"]["done"])
        assert first_seen["status"] == grown["status"] == "running", "the ranks are still writing"
        assert grown["progress"]["total"] == 14, "the whole run's progress, summed over the shards"
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
    with Summary.open(shard_dir(run, 0)) as summary:
        first = summary.run()
    with Summary.open(run) as summary:  # the run as one, as the dashboard shows it
        whole = summary.run()
        assert whole.status == "running" and whole.progress_done == first.progress_done + left.progress_done
        assert whole.progress_total == 14 and summary.num_samples() == whole.progress_done
    show_live(tmp_path, whole.progress_done)
    described = cli("info", str(run), "--json")
    assert described.exit_code == 0 and json.loads(described.output)["progress"]["done"] == whole.progress_done
    listed = cli("ls", str(tmp_path), "--json")
    assert [(row["path"], row["status"]) for row in json.loads(listed.output)] == [(str(run), "running")]

    refused = cli("merge", str(run))
    assert refused.exit_code != 0 and "not complete" in refused.output and "--partial" in refused.output
    assert not (run / "xaiboard.db").exists()
    assert cli("merge", str(run), "--partial").exit_code == 0
    with Summary.open(run) as summary:
        assert summary.run().status == "interrupted" and summary.num_samples() == whole.progress_done

    output = finish(launch(run, 2))
    assert "partial merge is set aside" in output
    assert not (run / "xaiboard.db").exists() and len(list(run.glob("xaiboard.db.partial.*.bak"))) == 1
    assert_same_rows(rows(shards(run)), reference)
    assert_same_rows(rows([run]), reference)  # read live from the shards again, not from the stale merge
    assert cli("merge", str(run)).exit_code == 0
    assert_same_rows(rows([run]), reference)


class live_dashboard:
    """The dashboard's API over ``base`` while a run is written below it (re-scanned as the server does, faster)."""

    def __init__(self, base: Path) -> None:
        from xaiboard.server import create_app

        self.app = create_app(base, reload_interval=0.2)
        self.client = self.app.test_client()

    def __enter__(self) -> "live_dashboard":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.app.extensions["xaiboard.registry"].close()

    def wait_for(self, condition, timeout: float = 120) -> dict:
        """The run's row in the summary list once ``condition`` holds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listed = self.client.get("/api/v1/summaries").get_json()["summaries"]
            if listed and condition(listed[0]):
                return listed[0]
            time.sleep(0.05)
        pytest.fail(f"the dashboard did not show the expected progress within {timeout:.0f} s")


def show_live(base: Path, done: int) -> None:
    """The server lists the sharded run once, with its progress summed, and serves its samples and images."""
    with live_dashboard(base) as dashboard:
        client = dashboard.client
        listed = client.get("/api/v1/summaries").get_json()["summaries"]
        assert [row["path"] for row in listed] == ["run"], "the shards are parts of the run, not summaries"
        row = listed[0]
        assert row["status"] == "running" and row["progress"]["done"] == done
        samples = client.get(f"/api/v1/summaries/{row['id']}/samples?limit=50").get_json()
        assert samples["total"] == done
        image = client.get(f"/api/v1/summaries/{row['id']}/images/{samples['samples'][0]['id']}")
        assert image.status_code == 200 and image.mimetype.startswith("image/")


def test_the_rank_comes_from_torchrun_or_slurm():
    assert current_rank({}) == Rank(0, 1, 0)
    assert current_rank({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}) == Rank(3, 8, 1)
    srun_task = {"SLURM_PROCID": "5", "SLURM_NTASKS": "6", "SLURM_STEP_NUM_TASKS": "6", "SLURM_LOCALID": "2"}
    assert current_rank(srun_task) == Rank(5, 6, 2)
    batch_script = {"SLURM_PROCID": "0", "SLURM_NTASKS": "16", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "7"}
    with pytest.warns(RuntimeWarning, match="start the script with srun"):
        assert current_rank(batch_script) == Rank(), "the batch script itself, not rank 0 of 16"
    both = {"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4"}
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


@pytest.mark.slow
def test_merging_refuses_shards_of_another_run_and_a_killed_merge_leaves_nothing(tmp_path, sharded, monkeypatch):
    from xaiboard.store import SummaryError
    from xaiboard.store import shards as shard_store

    run = tmp_path / "run"
    shutil.copytree(sharded, run)
    connection = sqlite3.connect(shard_dir(run, 1) / "xaiboard.db")
    with connection:
        config = json.loads(connection.execute("SELECT config FROM run").fetchone()[0])
        connection.execute("UPDATE run SET config = ?", (json.dumps({**config, "top_k": 3}),))
    connection.close()
    for attempt in (lambda: Summary.open(run), lambda: shard_store.merge_shards(run, partial=True)):
        with pytest.raises(SummaryError, match="rank-00001 does not belong to the run of rank-00000"):
            attempt()
    shutil.rmtree(run)
    shutil.copytree(sharded, run)

    def killed(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(shard_store, "_copy_rows", killed)
    with pytest.raises(KeyboardInterrupt):
        shard_store.merge_shards(run)
    assert sorted(p.name for p in run.iterdir()) == ["shards"], "no half-written summary, no leftovers"
    with Summary.open(run) as summary:
        assert summary.run().status == "complete" and summary.num_samples() == 14
