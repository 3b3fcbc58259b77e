"""The runner at real scale: the cost plan, benchmarks on a subset, per-sample commits, a stop within seconds,
resuming by data identity, unusable items recorded as failures, and write errors in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nets import TinyNet
from xaiboard.runner import ImageClassificationRunner, InvalidInputError
from xaiboard.runner.benchmarks import Faithfulness, Sparseness
from xaiboard.runner.explainers import RISE, GradCAM, Gradient, IntegratedGradients
from xaiboard.store import Summary

CLASSES = ["cat", "dog", "bird", "fish"]
SIZE = 12

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_items(count: int, seed: int = 1) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand((3, SIZE, SIZE), generator=generator), "labels": [i % 4], "name": f"img-{i}"}
            for i in range(count)]


def make_net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


class SlowNet(TinyNet):
    """TinyNet whose every forward pass sleeps: stands in for a large model in timing tests."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return super().forward(x)


def test_the_plan_counts_passes_per_pair_and_estimates_the_time(tmp_path):
    net = make_net()
    runner = ImageClassificationRunner(tmp_path / "run", net, make_items(20), CLASSES)
    explainers = [Gradient(net), IntegratedGradients(net, n_steps=8), RISE(net, n_masks=64, grid=3)]
    runner.register_saliency(explainers, [Faithfulness("InsertionAUC", steps=10), Sparseness()])
    plan = runner.plan()
    rows = {row.name: row for row in plan.rows}
    assert rows["Gradient"].passes.forward == 1 and rows["Gradient"].passes.backward == 1
    assert rows["IntegratedGradients"].passes.backward == 8
    assert rows["RISE"].passes.forward == 64 and rows["RISE"].passes.backward == 0
    assert rows["InsertionAUC"].passes.forward == 3 * 11 and rows["Sparseness"].passes.forward == 0
    with torch.no_grad():
        top = net(torch.stack([item["image"] for item in make_items(20)])).argmax(1).tolist()
    pairs = sum(1 if top[i] == i % 4 else 2 for i in range(20))
    assert plan.samples == 20 and abs(plan.pairs - pairs) <= 1
    assert plan.forward_seconds > 0 and plan.backward_seconds > 0
    # the cost of a pair is its passes times the measured time of one pass
    rise = rows["RISE"]
    assert rise.seconds == pytest.approx(64 * plan.forward_seconds * rise.pairs, rel=1e-6)
    assert rise.seconds > rows["Gradient"].seconds
    text = str(plan)
    assert "explainer RISE" in text and "64 fwd" in text and "benchmark InsertionAUC" in text
    assert plan.warning() is None and not (tmp_path / "run").exists()  # planning writes nothing


def test_a_run_that_would_take_hours_warns_and_names_what_to_change(tmp_path, capsys, monkeypatch):
    net = SlowNet(0.02)
    runner = ImageClassificationRunner(tmp_path / "run", net, make_items(2000), CLASSES)
    runner.register_saliency([Gradient(net), RISE(net, n_masks=4000, grid=3)])
    plan = runner.plan()
    advice = plan.warning()
    assert plan.total_seconds > 3600 and plan.most_expensive().name == "RISE"
    assert advice is not None and "RISE" in advice and "lower its n_masks" in advice
    assert f"for 2000 samples ({plan.pairs} pairs)" in advice
    # run() prints the plan and gives the same warning before any work (here with a lower limit)
    from xaiboard.runner import plan as plans

    monkeypatch.setattr(plans, "LONG_RUN_SECONDS", 0.0)
    small = ImageClassificationRunner(tmp_path / "small", make_net(), make_items(3), CLASSES)
    small.register_saliency([Gradient(small.network), RISE(small.network, n_masks=16, grid=2)],
                            [Faithfulness("DeletionAUC", steps=4)])
    with pytest.warns(RuntimeWarning, match=r"of it is (RISE|DeletionAUC) .*(lower its n_masks|benchmark_samples=N)"):
        small.run(progress=True).close()
    assert "xaiboard plan: 3 samples of 3x12x12" in capsys.readouterr().err


def test_benchmarks_score_a_seeded_subset_and_every_sample_gets_maps(tmp_path):
    net = make_net()
    runner = ImageClassificationRunner(tmp_path / "run", net, make_items(12), CLASSES)
    runner.register_saliency([Gradient(net), GradCAM(net, "features.conv2")], [Sparseness()], benchmark_samples=4,
                             seed=3)
    with runner.run(progress=False) as summary:
        scored = {sample for _, _, sample, _, _ in summary.scores()}
        mapped = {p.sample_id for p in summary.predictions() if p.type is not None}
        assert len(scored) == 4 and mapped == set(range(12))
        config = summary.run().config
        timings = summary.score_timings()
    assert config["benchmark_samples"] == {"count": 4, "seed": 3}
    again = ImageClassificationRunner(tmp_path / "again", net, make_items(12), CLASSES)
    again.register_saliency([Gradient(net), GradCAM(net, "features.conv2")], [Sparseness()], benchmark_samples=4,
                            seed=3)
    with again.run(progress=False) as summary:
        assert {sample for _, _, sample, _, _ in summary.scores()} == scored
    # every score carries the benchmark's own time
    assert set(timings) == {("Gradient", "Sparseness"), ("GradCAM", "Sparseness")}
    assert all(entry["mean_seconds"] >= 0 for entry in timings.values())


def test_gradcam_maps_are_stored_at_the_layer_grid(tmp_path):
    net = make_net()
    runner = ImageClassificationRunner(tmp_path / "run", net, make_items(2), CLASSES)
    runner.register_saliency([GradCAM(net, "features.conv2")], [Sparseness()])
    with runner.run(progress=False) as summary:
        label = next(p.label_index for p in summary.predictions(0) if p.type)
        assert summary.saliency_map(0, label, "GradCAM").shape == (6, 6)  # conv2 runs after a 2x2 pooling


def test_unreadable_and_misshapen_items_are_recorded_and_the_run_goes_on(tmp_path):
    class Photos(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.items = make_items(6)

        def __len__(self) -> int:
            return 6

        def __getitem__(self, index: int) -> dict:
            if index == 2:
                raise OSError("image file is truncated")
            item = dict(self.items[index])
            if index == 4:
                item["image"] = item["image"][:1]  # a grayscale photo in an RGB dataset
            return item

    net = make_net()
    runner = ImageClassificationRunner(tmp_path / "run", net, Photos(), CLASSES)
    runner.register_saliency([Gradient(net)])
    with runner.run(progress=False) as summary:
        failures = {f.sample_id: f for f in summary.failures()}
        assert summary.run().status == "complete" and summary.sample_ids() == [0, 1, 3, 5]
        assert set(failures) == {2, 4} and {f.stage for f in failures.values()} == {"data"}
        assert "OSError: image file is truncated" in failures[2].message
        assert "the image has 1 channels, expected 3" in failures[4].message
        assert "convert grayscale images to RGB" in failures[4].message
        assert (summary.run().progress_done, summary.run().progress_total) == (4, 4)
    with runner.run(progress=False) as summary:  # complete: nothing recorded twice
        assert len(summary.failures()) == 2


def test_an_unwritable_summary_directory_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    runner = ImageClassificationRunner(blocker / "run", make_net(), make_items(2), CLASSES)
    with pytest.raises(InvalidInputError) as caught:
        runner.run(progress=False)
    message = str(caught.value)
    assert message.startswith(f"cannot write the summary directory {blocker / 'run'}: ") and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_resuming_over_other_data_or_into_a_complete_run_with_other_data_says_so(tmp_path):
    net = make_net()
    directory = tmp_path / "run"
    ImageClassificationRunner(directory, net, make_items(6), CLASSES).run(progress=False).close()
    renamed = make_items(6)
    renamed[3]["name"] = "other.jpg"
    with pytest.raises(InvalidInputError, match=r"holds a run over other data \(the sample names changed\)"):
        ImageClassificationRunner(directory, net, renamed, CLASSES).run(progress=False)
    with pytest.raises(InvalidInputError, match=r"6 items then, 7 now"):
        ImageClassificationRunner(directory, net, make_items(7), CLASSES).run(progress=False)
    with pytest.raises(InvalidInputError, match=r"the first 4 images changed"):
        ImageClassificationRunner(directory, net, make_items(6, seed=9), CLASSES).run(progress=False)
    with ImageClassificationRunner(directory, net, make_items(6), CLASSES).run(progress=False) as summary:
        assert summary.run().status == "complete"


SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    from torch import nn
    from xaiboard.runner import ImageClassificationRunner
    from xaiboard.runner.explainers import RISE

    torch.set_num_threads(1)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            time.sleep(0.1)  # a large model: each pass of a chunk takes a while
            return self.fc(self.conv(x).mean((2, 3)))

    net = Net()
    data = [(torch.rand(3, 8, 8), i % 3) for i in range(20)]
    runner = ImageClassificationRunner(sys.argv[1], net, data, ["a", "b", "c"], batch_size=8)
    # 8 chunks of 4 masks: about a second per pair, so a sample is committed alone
    runner.register_saliency([RISE(net, n_masks=32, grid=2, batch_size=4)])
    runner.run()
    print("finished")
""")


@pytest.mark.slow
def test_samples_appear_one_by_one_and_a_stop_comes_within_a_pass(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    directory = tmp_path / "slow"
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, str(script), str(directory)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ})
    seen: list[int] = []
    first_visible = None
    while time.monotonic() - started < 90 and (not seen or seen[-1] < 3):
        assert process.poll() is None, process.communicate()
        try:
            with Summary.open(directory) as summary:
                done = summary.run().progress_done
        except Exception:  # noqa: BLE001 - not created yet
            done = 0
        if done and (not seen or done != seen[-1]):
            seen.append(done)
            first_visible = first_visible or time.monotonic() - started
        time.sleep(0.05)
    assert seen[:3] == [1, 2, 3], seen  # committed per sample, not per batch of 8
    asked = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    stopped_after = time.monotonic() - asked
    assert stopped_after < 2.5, stopped_after  # one chunk of passes, not the rest of the sample or batch
    assert "xaiboard plan:" in err and "explainer RISE" in err
    with Summary.open(directory) as summary:
        assert summary.run().status == "interrupted"
        kept = summary.sample_ids()
        assert kept == list(range(len(kept))) and len(kept) >= 3
        assert summary.counts()["num_saliency_maps"] >= len(kept)


@pytest.mark.parametrize("setting, kept", [("", True), ("system", False)])
def test_the_runner_keeps_freed_memory_unless_told_not_to(setting, kept):
    code = ("from xaiboard.runner.allocator import keep_freed_memory; "
            "print(keep_freed_memory(), keep_freed_memory())")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "XAIBOARD_MALLOC": setting},
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(kept)] * 2
