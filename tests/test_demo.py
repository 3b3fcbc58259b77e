"""The demo: trains in seconds to a useful accuracy, explains with every explainer and benchmark, is deterministic."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from xaiboard.runner.datasets import shapes
from xaiboard.runner.demo import run_demo
from xaiboard.runner.models import SmallCNN, train_classifier
from xaiboard.store import Summary

EXPLAINERS = ["Gradient", "GuidedBackprop", "Deconvolution", "GradCAM", "GuidedGradCAM", "IntegratedGradients",
              "IntegratedGradients[white]", "DeepLift", "InputXGradient", "SmoothGrad", "Occlusion", "RISE", "Random"]
METRICS = ["InsertionAUC", "DeletionAUC", "NaiveFaithfulness", "PointingGame", "IoSR", "Robustness",
           "ClassSensitivity", "Sparseness", "Randomization"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_digits_demo_explains_with_everything_and_serves(tmp_path, capsys, monkeypatch):
    served = {}
    import xaiboard.server.serving as serving

    monkeypatch.setattr(serving, "serve", lambda base, **kwargs: served.update(base=base, **kwargs))
    summary_dir = run_demo("digits", samples=12, out=tmp_path / "runs", serve=True, seed=0, port=8123,
                           progress=False)
    printed = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([0-9.]+)%", printed).group(1))
    assert accuracy > 95.0
    assert served == {"base": str(tmp_path / "runs"), "host": "127.0.0.1", "port": 8123, "reload_interval": 5.0}
    assert summary_dir == tmp_path / "runs" / "digits"
    with Summary.open(summary_dir) as summary:
        run = summary.run()
        assert run.status == "complete" and run.task == "single-label" and run.num_parameters > 0
        assert [e.name for e in summary.explainers()] == EXPLAINERS
        assert [m.name for m in summary.metrics()] == METRICS
        counts = summary.counts()
        explained = [p for p in summary.predictions() if p.type is not None]
        assert counts["num_samples"] == 12 and counts["num_failures"] == 0
        assert counts["num_saliency_maps"] == len(explained) * len(EXPLAINERS)
        assert all(p.sd is not None for p in summary.predictions())
        assert summary.masks(0)  # the digit's ink is its label's mask
        assert [(l.name, l.channels) for l in summary.internal_layers()] == [
            ("features.conv1", 16), ("features.conv2", 32), ("features.conv3", 64)]
        assert counts["num_feature_maps"] == 12 * 3 and summary.feature_maps(0, "features.conv3").channels.size == 16
        assert summary.filters("features.conv1").display.shape == (16, 3, 3), "one input channel: the kernels"


@pytest.mark.slow
def test_shapes_demo_is_multi_label_with_exact_boxes(tmp_path, capsys):
    summary_dir = run_demo("shapes", samples=6, out=tmp_path, serve=False, seed=0, progress=False)
    printed = capsys.readouterr().out
    assert f"summary: {summary_dir.resolve()}" in printed
    assert re.search(r"saliency maps: \d+", printed)  # what `xaiboard info` says
    f1 = float(re.search(r"F1 ([0-9.]+)", printed).group(1))
    assert f1 > 0.9
    with Summary.open(summary_dir) as summary:
        assert summary.run().task == "multi-label" and summary.run().activation == "sigmoid"
        for sample_id in summary.sample_ids():
            masks = summary.masks(sample_id)
            for box in summary.boxes(sample_id):
                rows, cols = np.nonzero(masks[box.label_index][int(box.y):int(box.y + box.height),
                                                                int(box.x):int(box.x + box.width)])
                assert rows.min() == 0 and cols.min() == 0  # the box is tight on its shape
                assert rows.max() == box.height - 1 and cols.max() == box.width - 1
        assert len(summary.score_values("GradCAM", "PointingGame")) > 0


def test_demo_data_and_training_are_deterministic_for_a_seed():
    first, again, other = shapes(40, 5, size=24, seed=3), shapes(40, 5, size=24, seed=3), shapes(40, 5, size=24,
                                                                                                  seed=4)
    assert torch.equal(first.train_inputs, again.train_inputs)
    assert [item["boxes"] for item in first.test_items] == [item["boxes"] for item in again.test_items]
    assert not torch.equal(first.train_inputs, other.train_inputs)
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        network = SmallCNN(4, channels=3, width=4)
        train_classifier(network, first.train_inputs, first.train_targets, epochs=1, seed=0,
                         loss=torch.nn.functional.binary_cross_entropy_with_logits, batch_size=16)
        weights.append(network.classifier.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


@pytest.mark.slow
def test_the_vit_demo_learns_the_shapes_and_keeps_its_attention(tmp_path, capsys):
    summary_dir = run_demo("shapes", model="vit", samples=6, out=tmp_path, serve=False, seed=0, progress=False)
    assert summary_dir == tmp_path / "shapes-vit"
    f1 = float(re.search(r"F1 ([0-9.]+)", capsys.readouterr().out).group(1))
    assert f1 >= 0.85, "the ViT learns the shape forms"
    with Summary.open(summary_dir) as summary:
        assert [e.name for e in summary.explainers()][:2] == ["AttentionRollout", "GradCAM"]
        attention = summary.attention_maps(0)
        assert list(attention) == [f"blocks.{i}.attn" for i in range(4)]
        assert all(heads.shape == (4, 4, 4) for heads in attention.values()), "4 heads over the 4 x 4 patch grid"
        assert summary.intervention(0) is not None and summary.filters("patch_embed").display.shape == (64, 8, 8, 3)
        hits = summary.score_values("AttentionRollout", "PointingGame")
        assert len(hits) > 0 and len(summary.score_values("GradCAM", "PointingGame")) > 0, "both judged on the boxes"
