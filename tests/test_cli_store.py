"""`xaiboard ls`, `info` and `upgrade` on good, running, corrupt and foreign summary directories."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import CLASSES, EXPLAINERS, start_summary, synthetic_batch
from xaiboard.server.cli import main
from xaiboard.store import SummaryWriter, head_revision

INFO_KEYS = {"status", "progress", "revision", "num_samples", "num_predictions", "num_saliency_maps", "num_scores",
             "num_failures", "explainers", "metrics", "labels"}


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def base(tmp_path, make_summary):
    make_summary("done", n=8)
    running = start_summary(tmp_path / "nested" / "live", 20)
    running.write_batch(synthetic_batch(range(4)))
    running.engine.dispose()  # left running, as a live run looks to readers
    return tmp_path


def test_info_json_has_the_documented_keys(base):
    result = invoke("info", "--json", str(base / "done"))
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert INFO_KEYS <= set(info)
    assert info["status"] == "complete"
    assert info["progress"] == {"done": 8, "total": 8}
    assert info["revision"] == head_revision()
    assert (info["num_samples"], info["num_failures"]) == (8, 1)
    assert info["explainers"] == EXPLAINERS and info["metrics"] == ["InsertionAUC"] and info["labels"] == CLASSES
    assert {s["explainer"] for s in info["scores"]} == set(EXPLAINERS)


def test_info_text(base):
    result = invoke("info", str(base / "done"))
    assert result.exit_code == 0
    for text in ("status: complete", "progress: 8/8", f"schema revision: {head_revision()}", "explainers: Gradient, GradCAM",
                 "failure: sample 0 [explainer:GradCAM] boom"):
        assert text in result.output


def test_ls_lists_every_summary_with_progress(base):
    result = invoke("ls", "--json", str(base))
    assert result.exit_code == 0
    rows = {row["path"].split("/")[-1]: row for row in json.loads(result.output)}
    assert set(rows) == {"done", "live"}
    assert rows["live"]["status"] == "running" and rows["live"]["progress"] == {"done": 4, "total": 20}
    assert rows["done"]["num_samples"] == 8
    table = invoke("ls", str(base)).output
    assert "running" in table and "4/20" in table and "8/8" in table


def corrupt(kind: str, directory):
    directory.mkdir(parents=True)
    database = directory / "xaiboard.db"
    if kind == "not-sqlite":
        database.write_bytes(b"this is not a database\n" * 200)
    elif kind == "foreign":
        connection = sqlite3.connect(database)
        connection.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
        connection.commit()
        connection.close()
    elif kind == "truncated":
        writer = start_summary(directory, 40)
        for start in range(0, 40, 4):
            writer.write_batch(synthetic_batch(range(start, start + 4)))
        writer.close("complete")
        size = database.stat().st_size
        with open(database, "r+b") as handle:
            handle.truncate(size // 2)


@pytest.mark.parametrize(
    "kind, message",
    [("not-sqlite", "file is not a database"), ("foreign", "SQLite file without xaiboard's tables"),
     ("truncated", "truncated")],
)
def test_corrupt_and_foreign_files(base, kind, message):
    broken = base / f"broken-{kind}"
    corrupt(kind, broken)
    result = invoke("info", str(broken))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output

    result = CliRunner().invoke(main, ["ls", "--json", str(base)])
    assert result.exit_code == 0
    assert f"warning: skipping {broken}" in result.stderr and message in result.stderr
    assert {row["path"].split("/")[-1] for row in json.loads(result.stdout)} == {"done", "live"}


def test_info_on_a_plain_directory(tmp_path):
    result = invoke("info", str(tmp_path))
    assert result.exit_code == 1 and "not a summary directory" in result.output


def test_console_script_runs(base):
    result = subprocess.run([sys.executable, "-m", "xaiboard.server.cli", "ls", str(base)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout and "live" in result.stdout


def test_info_text_names_only_the_first_of_a_thousand_classes(tmp_path):
    writer = SummaryWriter.create(tmp_path / "imagenet", name="imagenet")
    writer.set_labels([f"class {i}" for i in range(1000)])
    writer.close("complete")
    result = invoke("info", str(tmp_path / "imagenet"))
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.strip().startswith("labels:"))
    assert line.strip() == ("labels: 1000: " + ", ".join(f"class {i}" for i in range(12))
                            + ", ... (--json lists all)")
    assert len(json.loads(invoke("info", "--json", str(tmp_path / "imagenet")).output)["labels"]) == 1000
