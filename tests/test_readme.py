"""The README's Python examples run as written, and the CLI lists and describes what they wrote."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow
def test_readme_python_examples_run(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    script = tmp_path / "readme_examples.py"
    script.write_text("\n".join(blocks))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "complete {'num_samples': 100" in result.stdout

    cli = [sys.executable, "-m", "xaiboard.server.cli"]
    listing = subprocess.run([*cli, "ls", "runs"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "runs/digits-quickstart" in listing.stdout and "complete" in listing.stdout
    info = json.loads(subprocess.run([*cli, "info", "--json", "runs/digits-quickstart"], cwd=tmp_path,
                                     capture_output=True, text=True, timeout=60).stdout)
    assert info["explainers"] == ["GradCAM", "IntegratedGradients", "GuidedBackprop", "RISE"]
    assert info["metrics"] == ["InsertionAUC", "DeletionAUC", "PointingGame", "Robustness", "Sparseness"]
    assert info["num_samples"] == 100 and info["uncertainty"] is not None
