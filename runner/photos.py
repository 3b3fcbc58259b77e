"""Real photos for explaining the pretrained EfficientNet-Lite0, read from files that installed packages ship.

Nothing is downloaded: scikit-image's images are read straight from the files inside its ``skimage/data`` package
directory (never through ``skimage.data``'s loaders, which fetch the images not bundled with the wheel over the
network), matplotlib's ``grace_hopper.jpg`` through :func:`matplotlib.cbook.get_sample_data` and scikit-learn's
two photos through :func:`sklearn.datasets.load_sample_image`. Every colour photo these packages ship is used except
``motorcycle_right.png`` (the other view of a stereo pair, nearly the same picture); the one grayscale photo kept,
``camera.png``, has the cleanest single ImageNet object of them all (a tripod) and enters with its channel repeated.

Each photo goes through the model's own preprocessing (:func:`xaiboard.runner.efficientnet.crop`: shorter side
resized to 256, central 224 x 224 kept). Boxes were measured on that 224 x 224 crop, so an object that reaches past
the crop is boxed up to the crop's edge. Photos whose subject has an ImageNet-1k class carry it as their label (the
most fitting class, documented per photo); the others carry none, so a run explains their predicted class only and
shows what the model sees in pictures it has no class for.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
from PIL import Image

from .efficientnet import crop, imagenet_class_names, normalise


@dataclass(frozen=True)
class Photo:
    """One photo: ``source`` is the package that ships ``file``; ``label`` is an ImageNet class name (None: no
    ImageNet-1k class fits), ``box`` its (x, y, width, height) on the 224 x 224 crop; ``accept`` the classes a
    correct top-1 prediction may name (the label's near-synonyms in ImageNet); ``top1`` whether the pretrained model
    gets it at top-1 (False marks a known miss, kept so that runs show one)."""

    name: str
    source: str
    file: str
    note: str
    label: Optional[str] = None
    box: Optional[tuple[int, int, int, int]] = None
    accept: tuple[str, ...] = ()
    top1: bool = True


PHOTOS: tuple[Photo, ...] = (
    Photo("chelsea", "scikit-image", "chelsea.png",
          "Chelsea the cat, face close up (CC0, Stefan van der Walt). A brown tabby: tawny coat, dark stripes, "
          "the 'M' on the forehead, hence 'tabby'; ImageNet's 'tiger cat' and 'Egyptian cat' are near-synonyms "
          "that its own annotators mix up, and the model splits between the three. The face fills the crop.",
          "tabby", (0, 0, 224, 224), ("tabby", "tiger cat", "Egyptian cat")),
    Photo("coffee", "scikit-image", "coffee.png",
          "A cup of espresso on a saucer with a spoon (Pikolo Espresso Bar; CC0, Rachel Michetti). The box holds "
          "the cup with its handle, not the saucer or the spoon; 'cup' and 'coffee mug' name the container.",
          "espresso", (31, 0, 147, 178), ("espresso", "cup", "coffee mug")),
    Photo("rocket", "scikit-image", "rocket.jpg",
          "Falcon 9 with DSCOVR on its pad at Cape Canaveral, between two lightning towers (SpaceX, public "
          "domain). ImageNet-1k has no launch-vehicle class; its 'missile' images are mostly rockets on pads, "
          "'projectile' is the other missile synset.",
          "missile", (104, 60, 18, 164), ("missile", "projectile")),
    Photo("motorcycle", "scikit-image", "motorcycle_left.png",
          "A red Yamaha in a garage (left view of a Middlebury 2014 stereo benchmark pair). ImageNet-1k has no "
          "motorcycle class: 'moped' holds its motorbikes, 'motor scooter' is the neighbour. The crop cuts both "
          "wheels; the box runs from the mirror at the top edge to the front tyre.",
          "moped", (0, 0, 224, 206), ("moped", "motor scooter")),
    Photo("grace_hopper", "matplotlib", "grace_hopper.jpg",
          "Rear Admiral Grace Hopper in US Navy uniform (official Navy portrait). Labelled 'military uniform'; "
          "the box holds the jacket, shirt and tie below the face (the cap is left out). On this crop the model "
          "ranks 'academic gown' and 'mortarboard' first and the uniform third: a known miss.",
          "military uniform", (0, 116, 224, 108), ("military uniform",), top1=False),
    Photo("china", "scikit-learn", "china.jpg",
          "The Tower of Buddhist Incense of the Summer Palace, Beijing, over Kunming Lake (CC BY 2.0, "
          "danielbuechele on Flickr): a palace building, hence 'palace'; 'monastery' is the Buddhist reading of "
          "it. The crop cuts the tower at the left edge.",
          "palace", (0, 2, 144, 222), ("palace", "monastery")),
    Photo("camera", "scikit-image", "camera.png",
          "The 'cameraman' (CC0, Lav Varshney; grayscale, channel repeated): a man filming with a camera on a "
          "tripod. The tripod is the ImageNet object; the camera is mostly hidden by his hands.",
          "tripod", (103, 88, 75, 136), ("tripod",)),
    Photo("astronaut", "scikit-image", "astronaut.png",
          "Astronaut Eileen Collins in her orange suit (NASA, public domain). ImageNet-1k has no class for a "
          "person or a space suit (the space shuttle behind her is a small model), so no label."),
    Photo("flower", "scikit-learn", "flower.jpg",
          "An orange dahlia (CC BY 2.0, vultilion on Flickr). ImageNet-1k's only flower class is 'daisy', which "
          "the model predicts: a false positive on an unlabelled photo."),
    Photo("hubble", "scikit-image", "hubble_deep_field.jpg",
          "The Hubble eXtreme Deep Field (NASA, public domain): galaxies, nothing ImageNet has a class for."),
    Photo("retina", "scikit-image", "retina.jpg",
          "A fundus photograph of a normal left eye (Wikimedia Commons, CC0): a medical image, no ImageNet "
          "class."),
    Photo("ihc", "scikit-image", "ihc.png",
          "Colonic glands, FHL2 protein stained brown (DAB) with hematoxylin counterstain: a microscope image, "
          "no ImageNet class."),
)


class Photos(NamedTuple):
    """Dataset items in the runner's mapping format, and the 1000 ImageNet class names they index."""

    items: list[dict[str, Any]]
    classes: list[str]


def _open(photo: Photo) -> Image.Image:
    """The photo's file as an RGB image, read from inside the package that ships it (no download)."""
    if photo.source == "scikit-image":
        path = resources.files("skimage") / "data" / photo.file
        if not path.is_file():
            raise FileNotFoundError(f"scikit-image no longer bundles {photo.file!r} in skimage/data")
        with path.open("rb") as handle:
            image = Image.open(handle)
            image.load()
    elif photo.source == "matplotlib":
        from matplotlib.cbook import get_sample_data

        image = Image.open(get_sample_data(photo.file, asfileobj=False))
        image.load()
    elif photo.source == "scikit-learn":
        from sklearn.datasets import load_sample_image

        image = Image.fromarray(load_sample_image(photo.file))
    else:
        raise ValueError(f"unknown photo source {photo.source!r}")
    return image.convert("RGB")


def photo_crop(photo: Photo) -> np.ndarray:
    """The 224 x 224 x 3 uint8 crop the model sees (and that the boxes are measured on)."""
    return np.array(crop(_open(photo)))


def photos(names: Optional[Sequence[str]] = None) -> Photos:
    """The photos (all of :data:`PHOTOS`, or those named, in that order) as runner items: ``image`` (normalised
    3 x 224 x 224 float tensor), ``labels`` and ``boxes`` (empty for an unlabelled photo), ``name`` and ``display``
    (the uint8 crop); with the class names."""
    classes = imagenet_class_names()
    index = {name: i for i, name in enumerate(classes)}
    by_name = {photo.name: photo for photo in PHOTOS}
    unknown = [name for name in names or () if name not in by_name]
    if unknown:
        raise KeyError(f"no photo named {', '.join(map(repr, unknown))}; known: {', '.join(by_name)}")
    items = []
    for photo in (by_name[name] for name in names) if names is not None else PHOTOS:
        display = photo_crop(photo)
        labels = [index[photo.label]] if photo.label is not None else []
        boxes = [photo.box] if photo.box is not None else []
        items.append({"image": normalise(display), "labels": labels, "boxes": boxes, "name": photo.name,
                      "display": display})
    return Photos(items, classes)
