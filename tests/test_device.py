"""The device path: explainers and benchmarks under autocast stay within the documented tolerance of float32 while
predictions do not change; the precision is part of the run's configuration; on a GPU (skipped without one) the
run places everything on the device, copies through pinned memory and sizes its passes by the free memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xaiboard.runner import ImageClassificationRunner
from xaiboard.runner.benchmarks import Faithfulness, Localization, Sparseness
from xaiboard.runner.data import InvalidInputError
from xaiboard.runner.datasets import digits
from xaiboard.runner.device import MAP_CORRELATION, MEAN_TOLERANCE, PAIR_TOLERANCE, gpu_batch_size, to_device
from xaiboard.runner.explainers import GradCAM, Gradient, IntegratedGradients
from xaiboard.runner.models import SmallCNN, train_classifier

CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
SAMPLES = 16


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    data = digits(size=32, seed=0)
    torch.manual_seed(0)
    network = SmallCNN(len(data.classes), channels=1, width=8)
    train_classifier(network, data.train_inputs[:600], data.train_targets[:600], epochs=2, seed=0, lr=5e-3)
    return data, network


def explain(directory, data, network, precision: str, device: str = "cpu"):
    runner = ImageClassificationRunner(directory, network, data.test_items[:SAMPLES], data.classes, device=device,
                                       mean=data.mean, std=data.std, precision=precision)
    runner.register_saliency(
        [Gradient(network), IntegratedGradients(network, n_steps=16), GradCAM(network, SmallCNN.gradcam_layer)],
        [Faithfulness("InsertionAUC", steps=16), Faithfulness("DeletionAUC", steps=16),
         Localization("PointingGame", tolerance=2), Localization("IoSR"), Sparseness()])
    return runner.run(progress=False)


def compare(fp32, other) -> None:
    """Predictions equal; scores and maps within the documented bounds of fp32 (and not all equal: it computed)."""
    expected = fp32.predictions()
    assert [(p.sample_id, p.label_index, p.type) for p in other.predictions()] == [
        (p.sample_id, p.label_index, p.type) for p in expected], "predictions stay float32"
    assert [p.prob for p in other.predictions()] == pytest.approx([p.prob for p in expected], abs=1e-6)
    reference = {row[:4]: row[4] for row in fp32.scores()}
    scores = {row[:4]: row[4] for row in other.scores()}
    assert scores.keys() == reference.keys()
    by_metric: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for key, value in reference.items():
        if value is not None and scores[key] is not None:
            by_metric.setdefault(key[:2], []).append((value, scores[key]))
    assert {metric for _, metric in by_metric} == set(PAIR_TOLERANCE) | set(MEAN_TOLERANCE)
    changed = 0.0
    for (explainer, metric), values in by_metric.items():
        a, b = np.array(values).T
        changed = max(changed, float(np.abs(a - b).max()))
        if metric in PAIR_TOLERANCE:
            assert np.abs(a - b).max() <= PAIR_TOLERANCE[metric], (explainer, metric, np.abs(a - b).max())
        else:
            assert abs(a.mean() - b.mean()) <= MEAN_TOLERANCE[metric], (explainer, metric, a.mean(), b.mean())
    assert changed > 0, "the scores were computed in the lower precision"
    correlations: dict[str, list[float]] = {}
    for sample_id, label, explainer in pairs(fp32):
        a = fp32.saliency_map(sample_id, label, explainer).ravel()
        b = other.saliency_map(sample_id, label, explainer).ravel()
        if a.std() > 0 and b.std() > 0:
            correlations.setdefault(explainer, []).append(float(np.corrcoef(a, b)[0, 1]))
    assert sum(map(len, correlations.values())) >= SAMPLES * 3
    for explainer, values in correlations.items():
        assert min(values) > MAP_CORRELATION[explainer], (explainer, min(values))


def pairs(summary) -> list[tuple[int, int, str]]:
    """Every stored map's (sample, label, explainer)."""
    return [(sample_id, label.label_index, explainer) for sample_id in summary.sample_ids()
            for label in summary.sample(sample_id).labels for explainer in label.explainers]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_scores_stay_within_the_tolerance_of_fp32(tmp_path, trained, precision):
    data, network = trained
    with explain(tmp_path / "fp32", data, network, "fp32") as fp32, \
            explain(tmp_path / precision, data, network, precision) as half:
        compare(fp32, half)
        assert half.run().config["precision"] == precision and fp32.run().config["precision"] is None


def test_the_precision_is_checked_and_part_of_the_configuration(tmp_path, trained):
    data, network = trained
    with pytest.raises(InvalidInputError, match="precision must be one of fp32, bf16, fp16"):
        ImageClassificationRunner(tmp_path / "x", network, data.test_items[:2], data.classes, precision="int8")
    ImageClassificationRunner(tmp_path / "r", network, data.test_items[:2], data.classes,
                              device="cpu").run(progress=False).close()
    again = ImageClassificationRunner(tmp_path / "r", network, data.test_items[:4], data.classes, device="cpu",
                                      precision="bf16")
    with pytest.raises(InvalidInputError, match="precision"):
        again.run(progress=False)


def test_cpu_inputs_are_not_pinned_and_passes_are_not_measured():
    inputs = torch.zeros(2, 3, 8, 8)
    assert to_device(inputs, torch.device("cpu")) is inputs
    assert gpu_batch_size(torch.nn.Conv2d(3, 1, 3), inputs) is None


@needs_gpu
def test_a_run_on_the_gpu_equals_the_cpu_within_tolerance(tmp_path, trained):
    data, network = trained
    with explain(tmp_path / "cpu", data, network, "fp32") as cpu, \
            explain(tmp_path / "gpu", data, network.cuda(), "fp32", device="cuda") as gpu:
        assert gpu.run().config["plan"]["device"].startswith("cuda")
        worst, correlation = compare_scores_only(cpu, gpu)
    network.cpu()
    assert worst <= 1e-3 and correlation > 0.999


def compare_scores_only(a, b) -> tuple[float, float]:
    """Like :func:`compare` but predictions only within float tolerance (another device's kernels)."""
    probs_a = np.array([p.prob for p in a.predictions()])
    probs_b = np.array([p.prob for p in b.predictions()])
    np.testing.assert_allclose(probs_a, probs_b, atol=1e-4)
    reference = {row[:4]: row[4] for row in a.scores()}
    other = {row[:4]: row[4] for row in b.scores()}
    worst = max(abs(other[k] - v) for k, v in reference.items() if v is not None and other.get(k) is not None)
    maps = [np.corrcoef(a.saliency_map(*pair).ravel(), b.saliency_map(*pair).ravel())[0, 1] for pair in pairs(a)]
    return worst, float(np.nanmin(maps))


@needs_gpu
def test_gpu_passes_fit_the_free_memory_and_copies_are_pinned(monkeypatch):
    network = SmallCNN(10, channels=3, width=16).cuda().eval()
    inputs = torch.rand(4, 3, 224, 224)
    pinned: list[bool] = []
    pin = torch.Tensor.pin_memory

    def recording_pin(tensor, *args, **kwargs):
        result = pin(tensor, *args, **kwargs)
        pinned.append(result.is_pinned())
        return result

    monkeypatch.setattr(torch.Tensor, "pin_memory", recording_pin)
    moved = to_device(inputs, torch.device("cuda"))
    assert pinned == [True], "the copy went through pinned host memory"
    assert moved.is_cuda and torch.equal(moved.cpu(), inputs)
    images = gpu_batch_size(network, moved)
    free, _ = torch.cuda.mem_get_info()
    assert 1 <= images <= 1024
    with torch.enable_grad():
        batch = torch.rand(min(images, 64), 3, 224, 224, device="cuda", requires_grad=True)
        torch.autograd.grad(network(batch)[:, 0].sum(), batch)  # a pass of that size runs
    assert torch.cuda.max_memory_allocated() < free + torch.cuda.memory_allocated() * 2


@needs_gpu
def test_bf16_on_the_gpu_stays_within_the_tolerance(tmp_path, trained):
    data, network = trained
    network = network.cuda()
    with explain(tmp_path / "fp32", data, network, "fp32", device="cuda") as fp32, \
            explain(tmp_path / "bf16", data, network, "bf16", device="cuda") as bf16:
        compare(fp32, bf16)
    network.cpu()
