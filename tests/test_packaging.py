"""The package installs non-editable with its data (templates, static files, migrations) and imports light."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from xaiboard.store import head_revision

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, cwd: Path, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, **env}, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_server_and_store_do_not_import_torch(tmp_path):
    output = run_python(
        """
        import sys
        import xaiboard.store, xaiboard.server, xaiboard.server.cli
        print(sorted(m for m in ("torch", "captum") if m in sys.modules))
        """,
        cwd=tmp_path,
    )
    assert output.strip() == "[]"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (path,) = out.glob("xaiboard-*.whl")
    return path


def test_wheel_holds_every_package_and_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "xaiboard/__init__.py",
        "xaiboard/store/summary.py",
        "xaiboard/runner/__init__.py",
        "xaiboard/runner/explainers/__init__.py",
        "xaiboard/runner/benchmarks/__init__.py",
        "xaiboard/runner/internals/attention.py",
        "xaiboard/runner/internals/features.py",
        "xaiboard/server/cli.py",
        "xaiboard/migrations/env.py",
        "xaiboard/migrations/alembic.ini",
        "xaiboard/migrations/script.py.mako",
        "xaiboard/migrations/versions/0001_initial_schema.py",
        "xaiboard/migrations/versions/0002_sample_sort_columns.py",
        "xaiboard/migrations/versions/0003_compact_store.py",
        "xaiboard/store/arrays.py",
    ):
        assert expected in names
    assert any(n.startswith("xaiboard/frontend/templates/") and n.endswith(".html") for n in names)
    assert any(n.startswith("xaiboard/frontend/static/") for n in names)
    assert not any(n.startswith(("runner/", "store/", "server/", "tests/")) for n in names), \
        "nothing generic is installed at the top level"


def test_installed_wheel_creates_and_reads_summaries(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    output = run_python(
        f"""
        import numpy as np
        import xaiboard.migrations
        from xaiboard.store import Summary, SummaryWriter
        assert xaiboard.migrations.__file__.startswith({str(target)!r}), xaiboard.migrations.__file__
        writer = SummaryWriter.create({str(tmp_path / "run")!r})
        writer.set_labels(["a", "b"])
        writer.close("complete")
        with Summary.open({str(tmp_path / "run")!r}) as summary:
            print(summary.revision, summary.run().status)
        """,
        cwd=tmp_path,
        PYTHONPATH=str(target),
    )
    assert output.split() == [head_revision(), "complete"]
