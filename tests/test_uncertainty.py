"""Uncertainty of the probabilities: MC dropout, and test-time input noise for networks without dropout."""

from __future__ import annotations

import json

import pytest
import torch

from nets import TinyNet
from xaiboard.runner.cost import Passes
from xaiboard.runner.uncertainty import InputNoise, MCDropout, make_uncertainty

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def softmax(logits: torch.Tensor) -> torch.Tensor:
    return logits.softmax(dim=1)


@pytest.fixture
def net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(dropout=None).eval()


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.rand((4, 3, 12, 12), generator=torch.Generator().manual_seed(3))


def test_input_noise_spreads_the_probabilities_and_keeps_the_interval_around_them(net, inputs):
    net.train()
    result = InputNoise(net, n_samples=16, std=0.3)(inputs, softmax)
    assert result.sd.shape == (4, 4) and bool((result.sd > 0).all())
    assert bool((result.lower <= result.upper).all())
    assert bool((result.lower >= 0).all()) and bool((result.upper <= 1).all())
    assert all(module.training for module in net.modules())  # the caller's flags come back


def test_zero_noise_gives_zero_spread(net, inputs):
    result = InputNoise(net, n_samples=5, std=0.0)(inputs, softmax)
    assert torch.equal(result.sd, torch.zeros_like(result.sd))
    assert torch.equal(result.lower, result.upper)


def test_input_noise_is_seeded_per_image(net, inputs):
    first = InputNoise(net, n_samples=6, seed=4)(inputs, softmax)
    again = InputNoise(net, n_samples=6, seed=4)(inputs, softmax)
    other = InputNoise(net, n_samples=6, seed=5)(inputs, softmax)
    alone = InputNoise(net, n_samples=6, seed=4)(inputs[2:3], softmax)
    assert torch.equal(first.sd, again.sd) and torch.equal(first.upper, again.upper)
    assert not torch.allclose(first.sd, other.sd)
    assert torch.allclose(alone.sd, first.sd[2:3], atol=1e-6)  # the same noise whatever the batch


def test_both_state_their_cost_and_a_json_configuration(net):
    noise = InputNoise(net, n_samples=7, std=0.05, seed=1)
    dropout = MCDropout(TinyNet(), n_samples=3)
    assert noise.passes() == Passes(7) and dropout.passes((3, 224, 224)) == Passes(3)
    config = noise.config()
    assert json.loads(json.dumps(config)) == config
    assert config["method"] == "input_noise" and config["std"] == 0.05 and config["n_samples"] == 7
    assert dropout.config()["method"] == "mc_dropout"


def test_mc_dropout_on_a_network_without_dropout_names_the_alternative(net):
    with pytest.raises(ValueError, match=r"MC dropout needs dropout layers, and TinyNet has no torch.nn.Dropout "
                                         r"module .*register_uncertainty\(method=\"input_noise\"\)"):
        MCDropout(net)


def test_make_uncertainty_picks_the_method_and_checks_its_options(net):
    assert isinstance(make_uncertainty("input_noise", net, 4, std=0.2), InputNoise)
    assert isinstance(make_uncertainty("mc_dropout", TinyNet(), 4), MCDropout)
    with pytest.raises(ValueError, match="must be one of mc_dropout, input_noise"):
        make_uncertainty("ensembles", net)
    with pytest.raises(TypeError, match="input_noise takes the options std and seed, got sigma"):
        make_uncertainty("input_noise", net, sigma=0.1)
    with pytest.raises(TypeError, match="mc_dropout takes no options"):
        make_uncertainty("mc_dropout", TinyNet(), std=0.1)


@pytest.mark.parametrize("kwargs, message", [({"n_samples": 1}, "n_samples must be an integer >= 2"),
                                             ({"std": -0.1}, "std must be a non-negative number"),
                                             ({"seed": 0.5}, "seed must be an integer")])
def test_bad_input_noise_parameters_are_refused(net, kwargs, message):
    with pytest.raises(ValueError, match=message):
        InputNoise(net, **kwargs)


def test_mc_dropout_still_works(inputs):
    torch.manual_seed(0)
    network = TinyNet(dropout=0.5)
    result = MCDropout(network, n_samples=8)(inputs, softmax)
    assert bool((result.sd > 0).any()) and bool((result.lower <= result.upper).all())
