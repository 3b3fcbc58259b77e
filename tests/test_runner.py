"""End to end: what a run writes, benchmarks wiring, uncertainty, failures, display images, resuming, signals."""

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
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from nets import TinyNet
from xaiboard.runner import ImageClassificationRunner, InvalidInputError
from xaiboard.runner.explainers import Explainer, GradCAM, Gradient, IntegratedGradients
from xaiboard.store import Summary

CLASSES = ["cat", "dog", "bird", "fish"]
SIZE = 12


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class MaxOfMap:
    """A benchmark written for the test: the largest relevance of each map."""

    name = "MaxOfMap"
    higher_is_better = True
    range = (0.0, None)
    aggregation = "mean"
    requires_masks = False
    requires_explainer = False

    def __init__(self) -> None:
        self.calls: list[int] = []

    def config(self) -> dict:
        return {"what": "max of the map"}

    def evaluate(self, network, inputs, targets, saliency, masks=None, explainer=None, activation_fn=None):
        assert inputs.shape[0] == targets.shape[0] == saliency.shape[0]
        self.calls.append(len(targets))
        return saliency.flatten(1).amax(1)


class MaskArea(MaxOfMap):
    """A localization-like benchmark written for the test: the number of mask pixels of each scored pair."""

    name = "MaskArea"
    aggregation = "macro"
    requires_masks = True

    def evaluate(self, network, inputs, targets, saliency, masks=None, explainer=None, activation_fn=None):
        assert masks is not None and masks.dtype == torch.bool and masks.shape == saliency.shape
        self.calls.append(len(targets))
        return masks.flatten(1).sum(1).float()


def make_net(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    net = TinyNet().eval()
    net.features.bn1.running_mean.uniform_(-0.2, 0.2)
    net.features.bn1.running_var.uniform_(0.5, 1.5)
    return net


def make_items(count: int = 10, seed: int = 1) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(count):
        item = {"image": torch.rand((3, SIZE, SIZE), generator=generator), "labels": [i % 4], "name": f"img-{i}"}
        if i % 2 == 0:
            item["boxes"] = [(1.0, 2.0, 4.0, 3.0)]  # x=1 (column), y=2 (row): 12 pixels
        if i % 5 == 1:
            mask = np.zeros((SIZE, SIZE), dtype=bool)
            mask[5:8, 0:2] = True
            item["masks"] = {i % 4: mask}
        items.append(item)
    return items


def explained_labels(net: nn.Module, items: list[dict]) -> dict[int, set[int]]:
    """Ground truth union top-1, computed here from the network (not from the runner)."""
    with torch.no_grad():
        predicted = net(torch.stack([item["image"] for item in items])).argmax(1).tolist()
    return {i: set(item["labels"]) | {predicted[i]} for i, item in enumerate(items)}


def test_a_run_writes_every_map_prediction_and_score(tmp_path):
    net, items = make_net(), make_items()
    maxima, areas = MaxOfMap(), MaskArea()
    runner = ImageClassificationRunner(tmp_path / "run", net, items, CLASSES, batch_size=4)
    explainers = [Gradient(net), GradCAM(net, "features.conv2"), IntegratedGradients(net, n_steps=8)]
    runner.register_saliency(explainers, [maxima, areas])
    summary = runner.run(progress=False)
    expected = explained_labels(net, items)
    pairs = sum(len(labels) for labels in expected.values())
    with_mask = [i for i in range(10) if i % 2 == 0 or i % 5 == 1]  # a box or a mask for the ground truth
    counts = summary.counts()
    assert counts == {"num_samples": 10, "num_predictions": 10 * 4, "num_saliency_maps": pairs * 3,
                      "num_scores": pairs * 3 + len(with_mask) * 3, "num_failures": 0,
                      "num_ig_paths": pairs, "num_curves": 0,  # one IntegratedGradients, no curve benchmark
                      "num_internal_layers": 0, "num_feature_maps": 0, "num_attention_maps": 0,
                      "num_interventions": 0}
    with torch.no_grad():
        top = net(torch.stack([item["image"] for item in items])).argmax(1).tolist()
    for sample_id, labels in expected.items():
        explained = {p.label_index: p for p in summary.sample(sample_id).labels if p.type is not None}
        assert set(explained) == labels
        for label, prediction in explained.items():
            truth, predicted = label in items[sample_id]["labels"], label == top[sample_id]
            assert prediction.type == {(True, True): "TP", (True, False): "FN", (False, True): "FP"}[
                (truth, predicted)]
            assert set(prediction.explainers) == {"Gradient", "GradCAM", "IntegratedGradients"}
    # one benchmark call per explainer per group of samples, on all of that explainer's pairs of the group
    assert len(maxima.calls) % 3 == 0 and sum(maxima.calls) == pairs * 3
    for explainer, metric, sample_id, label, value in summary.scores(metric="MaxOfMap"):
        # benchmarks score the map at the input size (GradCAM is stored at its layer's grid and upsampled)
        full = summary.saliency_map(sample_id, label, explainer, full_size=True)
        record = summary.saliency_record(sample_id, label, explainer)
        assert value == pytest.approx(float(full.max()), abs=(record.vmax - record.vmin) / 4095 + 1e-7)
    # masks only for ground-truth labels with a box (4 x 3 pixels) or a given mask (3 x 2 pixels)
    areas_of = {(s, label): v for _, _, s, label, v in summary.scores(explainer="Gradient", metric="MaskArea")}
    assert areas_of == {(i, i % 4): (6.0 if i % 5 == 1 else 12.0) for i in with_mask}
    metrics = {m.name: m for m in summary.metrics()}
    assert metrics["MaskArea"].aggregation == "macro" and metrics["MaxOfMap"].range == (0.0, None)
    assert metrics["MaxOfMap"].config == {"what": "max of the map"}
    # the maps are the explainers' maps, stored at 12 bits (the runner's default) between their min and max
    inputs = items[3]["image"][None]
    label = sorted(expected[3])[0]
    direct = explainers[2].explain(inputs, torch.tensor([label]))[0].numpy()
    stored = summary.saliency_map(3, label, "IntegratedGradients")
    span = direct.max() - direct.min()
    assert np.abs(stored - direct).max() <= span / 4095 / 2 * 1.001 + 1e-7
    assert np.abs(stored - direct).max() > span / 65535  # not the store's 16 bits: the runner asked for 12
    assert summary.saliency_record(3, label, "IntegratedGradients").delta is not None
    assert summary.boxes(0)[0].x == 1.0 and summary.boxes(0)[0].y == 2.0
    assert summary.sample(3).name == "img-3"
    summary.close()


def test_the_run_row_records_model_versions_device_and_every_configuration(tmp_path):
    net = make_net()
    runner = ImageClassificationRunner(tmp_path / "run", net, make_items(4), CLASSES, top_k=2, threshold=0.4,
                                       name="my run", mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    runner.register_saliency([GradCAM(net, net.features.conv2)], [MaxOfMap()])
    runner.register_uncertainty(n_samples=4)
    with runner.run(progress=False) as summary:
        run = summary.run()
        explainers = summary.explainers()
    assert run.name == "my run" and run.status == "complete"
    assert run.model_class.endswith("TinyNet") and run.num_parameters == sum(p.numel() for p in net.parameters())
    assert run.device == "cpu" and run.task == "single-label" and run.activation == "softmax"
    assert run.threshold == 0.4 and run.top_k == 2 and (run.image_height, run.image_width) == (SIZE, SIZE)
    assert set(run.versions) >= {"xaiboard", "torch", "captum"} and run.versions["torch"] == torch.__version__
    assert run.uncertainty["n_samples"] == 4 and run.uncertainty["method"] == "mc_dropout"
    assert run.config["explainers"]["GradCAM"]["layer"] == "features.conv2"
    assert run.config["benchmarks"] == {"MaxOfMap": {"what": "max of the map"}}
    assert run.config["mean"] == [0.5, 0.5, 0.5] and run.config["classes"] == CLASSES
    assert explainers[0].config["layer"] == "features.conv2"
    assert (run.progress_done, run.progress_total) == (4, 4)


def test_uncertainty_leaves_batchnorm_alone_and_stores_an_interval(tmp_path):
    net = make_net()
    net.train()  # the user's flags come back after the run
    before = {k: v.clone() for k, v in net.state_dict().items()}
    runner = ImageClassificationRunner(tmp_path / "run", net, make_items(8), CLASSES, batch_size=4)
    runner.register_uncertainty(n_samples=8)
    with runner.run(progress=False) as summary:
        predictions = summary.predictions()
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(module.training for module in net.modules())
    assert all(p.sd is not None and p.lower <= p.upper for p in predictions)
    assert max(p.sd for p in predictions) > 0
    assert all(0.0 <= p.lower <= 1.0 and 0.0 <= p.upper <= 1.0 for p in predictions)


def test_uncertainty_without_dropout_is_refused(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    runner = ImageClassificationRunner(tmp_path / "run", net, make_items(2), CLASSES)
    with pytest.raises(InvalidInputError, match="MC dropout needs dropout layers, and Sequential has no "
                                                "torch.nn.Dropout module"):
        runner.register_uncertainty()


class FailsOnMarker(TinyNet):
    """Raises on any batch holding an image whose first pixel is 42 (a corrupt sample)."""

    def forward(self, x):
        if bool((x[:, 0, 0, 0] == 42).any()):
            raise RuntimeError("cannot handle this image")
        return super().forward(x)


class Picky(Explainer):
    """An explainer written for the test that fails whenever it is asked about class 3."""

    def _explain(self, inputs, targets):
        if bool((targets == 3).any()):
            raise ValueError("class 3 is not supported")
        return inputs.sum(1), None


def test_failures_are_recorded_per_sample_and_the_run_goes_on(tmp_path):
    torch.manual_seed(0)
    net = FailsOnMarker().eval()
    items = make_items(8)
    items[5]["image"] = items[5]["image"].clone()
    items[5]["image"][0, 0, 0] = 42.0
    runner = ImageClassificationRunner(tmp_path / "run", net, items, CLASSES, batch_size=4)
    runner.register_saliency([Gradient(net), Picky(net)])
    with runner.run(progress=False) as summary:
        failures = summary.failures()
        counts = summary.counts()
        run = summary.run()
        model_failures = [f for f in failures if f.stage == "model"]
        assert [(f.sample_id, f.message) for f in model_failures] == [(5, "RuntimeError: cannot handle this image")]
        assert summary.sample(5) is not None and summary.predictions(5) == []
        picky = {f.sample_id for f in failures if f.stage == "explainer:Picky"}
        with_class_3 = {s for s in range(8) if s != 5 and any(p.label_index == 3 and p.type
                                                                  for p in summary.predictions(s))}
        assert picky == with_class_3 and picky
        for sample_id in set(range(8)) - {5}:
            stored = {e for p in summary.sample(sample_id).labels for e in p.explainers}
            assert "Gradient" in stored
            assert ("Picky" in stored) == (sample_id not in picky)
    assert run.status == "complete" and counts["num_samples"] == 8
    assert counts["num_failures"] == 1 + len(picky)
    assert "cannot handle this image" in model_failures[0].traceback and "Traceback" in model_failures[0].traceback


def test_display_images_undo_the_normalisation(tmp_path):
    net = make_net()
    raw = torch.rand((2, 3, SIZE, SIZE))
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    items = [((image - mean[:, None, None]) / std[:, None, None], 0) for image in raw]
    runner = ImageClassificationRunner(tmp_path / "norm", net, items, CLASSES, mean=mean.tolist(), std=std.tolist())
    with runner.run(progress=False) as summary:
        shown = summary.image(1)
    assert np.abs(shown.astype(int) - (raw[1].permute(1, 2, 0).numpy() * 255).round()).max() <= 1
    # without mean/std: [0, 1] inputs are shown as they are, others min-max scaled
    items = [(raw[0], 0), (raw[1] * 10 - 3, 1)]
    runner = ImageClassificationRunner(tmp_path / "raw", net, items, CLASSES)
    with runner.run(progress=False) as summary:
        assert np.abs(summary.image(0).astype(int) - (raw[0].permute(1, 2, 0).numpy() * 255).round()).max() <= 1
        scaled = summary.image(1)
        assert scaled.min() == 0 and scaled.max() == 255


def test_datasets_dataloaders_generators_and_pil_images(tmp_path):
    from PIL import Image

    net = make_net()
    images = torch.rand((6, 3, SIZE, SIZE))
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    loader = DataLoader(TensorDataset(images, labels), batch_size=4, shuffle=True)
    with ImageClassificationRunner(tmp_path / "loader", net, loader, CLASSES).run(progress=False) as summary:
        assert summary.sample_ids() == list(range(6)) and summary.ground_truth(3) == [3]
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([(images[i], labels[i]) for i in range(6)])

    batched = DataLoader(Stream(), batch_size=4)  # collated batches are split back into items
    with ImageClassificationRunner(tmp_path / "stream", net, batched, CLASSES).run(progress=False) as summary:
        assert summary.sample_ids() == list(range(6)) and summary.ground_truth(5) == [1]
    generator = ((images[i], int(labels[i])) for i in range(6))
    with ImageClassificationRunner(tmp_path / "gen", net, generator, CLASSES).run(progress=False) as summary:
        assert summary.num_samples() == 6
    pil = [(Image.fromarray((images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)), i % 4) for i in range(3)]
    runner = ImageClassificationRunner(tmp_path / "pil", net, pil, CLASSES,
                                       transform=lambda im: torch.from_numpy(np.array(im)).permute(2, 0, 1))
    with runner.run(progress=False) as summary:
        assert summary.num_samples() == 3 and summary.image(0).shape == (SIZE, SIZE, 3)


def test_multi_label_with_sigmoid_threshold_and_top_k(tmp_path):
    net = make_net()
    items = [{"image": torch.rand((3, SIZE, SIZE)), "labels": [0, 2], "boxes": [(0, 0, 3, 3), (5, 5, 2, 2)]}
             for _ in range(3)]
    runner = ImageClassificationRunner(tmp_path / "multi", net, items, CLASSES, activation_fn="sigmoid",
                                       threshold=0.5, top_k=1)
    runner.register_saliency([Gradient(net)])
    with runner.run(progress=False) as summary:
        assert summary.run().task == "multi-label"
        with torch.no_grad():
            probs = torch.sigmoid(net(torch.stack([it["image"] for it in items])))
        for sample_id in range(3):
            predicted = {k for k in range(4) if probs[sample_id, k] >= 0.5}
            expected = {0, 2} | predicted | {int(probs[sample_id].argmax())}
            types = {p.label_index: p.type for p in summary.predictions(sample_id) if p.type}
            assert set(types) == expected
            for label, kind in types.items():
                truth, pred = label in (0, 2), label in predicted
                assert kind == {(True, True): "TP", (True, False): "FN", (False, True): "FP",
                                (False, False): "TN"}[(truth, pred)]
            assert len(summary.boxes(sample_id)) == 2


def test_a_complete_summary_is_returned_and_a_changed_configuration_is_refused(tmp_path, capsys):
    net, items = make_net(), make_items(4)
    first = ImageClassificationRunner(tmp_path / "run", net, items, CLASSES)
    first.register_saliency([Gradient(net)])
    first.run(progress=False).close()
    with Summary.open(tmp_path / "run") as summary:
        stamp = summary.run().updated_at
    again = ImageClassificationRunner(tmp_path / "run", net, items, CLASSES)
    again.register_saliency([Gradient(net)])
    with again.run() as summary:
        assert summary.run().updated_at == stamp and summary.run().status == "complete"
    assert "already complete (4 samples)" in capsys.readouterr().err
    changed = ImageClassificationRunner(tmp_path / "run", net, items, CLASSES)
    changed.register_saliency([Gradient(net), IntegratedGradients(net, n_steps=4)])
    with pytest.raises(InvalidInputError, match=r"another configuration \(explainers differ\)"):
        changed.run(progress=False)
    with pytest.raises(InvalidInputError, match="pass resume=True to continue it or overwrite=True"):
        again.run(resume=False, progress=False)
    with changed.run(overwrite=True, progress=False) as summary:
        assert [e.name for e in summary.explainers()] == ["Gradient", "IntegratedGradients"]


def test_signal_handlers_are_restored_after_a_run(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    ImageClassificationRunner(tmp_path / "run", make_net(), make_items(2), CLASSES).run(progress=False).close()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


SCRIPT = textwrap.dedent("""
    import os, sys, time
    import torch
    from torch import nn
    from xaiboard.runner import ImageClassificationRunner
    from xaiboard.runner.explainers import Gradient, IntegratedGradients

    torch.set_num_threads(1)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.relu = nn.ReLU()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            time.sleep(float(os.environ.get("SLOW", "0")))
            return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))

    net = Net()
    generator = torch.Generator().manual_seed(1)
    data = [(torch.rand(3, 8, 8, generator=generator), i % 3) for i in range(40)]
    runner = ImageClassificationRunner(sys.argv[1], net, data, ["a", "b", "c"], batch_size=4)
    runner.register_saliency([Gradient(net), IntegratedGradients(net, n_steps=4)])
    runner.run()
    print("finished")
""")


def _start(script: Path, directory: Path, slow: float) -> subprocess.Popen:
    env = {**os.environ, "SLOW": str(slow)}
    return subprocess.Popen([sys.executable, str(script), str(directory)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_progress(process: subprocess.Popen, directory: Path, samples: int, timeout: float = 90.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with Summary.open(directory) as summary:
                done = summary.run().progress_done
        except Exception:  # noqa: BLE001 - not created yet, or the run row not yet committed
            done = 0
        if done >= samples:
            return done
        time.sleep(0.05)
    raise AssertionError(f"the run did not reach {samples} samples in {timeout} s")


def _check_complete(directory: Path) -> None:
    with Summary.open(directory) as summary:
        assert summary.run().status == "complete"
        assert summary.sample_ids() == list(range(40))
        explained = [p for p in summary.predictions() if p.type is not None]
        assert summary.counts()["num_saliency_maps"] == 2 * len(explained)
        assert summary.counts()["num_predictions"] == 40 * 3 and summary.failures() == []


@pytest.mark.slow
def test_resume_after_sigkill_completes_without_duplicates_or_gaps(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    directory = tmp_path / "killed"
    process = _start(script, directory, slow=0.05)
    _wait_for_progress(process, directory, 8)
    process.kill()
    process.communicate(timeout=30)
    with Summary.open(directory) as summary:
        partial = summary.sample_ids()
        assert summary.run().status == "running" and 8 <= len(partial) < 40
    resumed = _start(script, directory, slow=0)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "finished" in out and f"resuming {directory} after {len(partial)} samples" in err
    _check_complete(directory)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_keep_finished_samples_and_mark_the_run_interrupted(tmp_path, signum):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    directory = tmp_path / "stopped"
    process = _start(script, directory, slow=0.05)
    _wait_for_progress(process, directory, 4)
    process.send_signal(signum)
    out, err = process.communicate(timeout=60)
    assert process.returncode != 0 and "finished" not in out
    assert "stopping now and keeping every finished sample" in err
    with Summary.open(directory) as summary:
        run = summary.run()
        assert run.status == "interrupted"
        assert 4 <= run.progress_done < 40 and summary.sample_ids() == list(range(run.progress_done))
    assert not (directory / "xaiboard.db-wal").exists()  # left WAL mode: opens from a read-only share
    if signum == signal.SIGINT:
        resumed = _start(script, directory, slow=0)
        _, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        _check_complete(directory)
