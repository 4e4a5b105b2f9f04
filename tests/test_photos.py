"""What a model's inputs look like (input.json), measured on three kinds of training data, and the
photo mapping the handler applies with it: real Fashion-MNIST, a folder of dark objects on white
pages read through the folder reader, and CIFAR-like colour natural images."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from convlab.photos import photo_like, png_tile
from inference import decoders
from inference.backends import read_model_metadata
from inference.errors import ModelLoadError
from inference.photo import InputDescription
from inference.preprocessing import Preprocessing
from training.data import read_channel
from training.input_description import describe_inputs

FASHION_LIKE = InputDescription(background="dark", photo_mapping="object", background_level=0.0,
                                object_fill=1.0, object_peak=255.0)


def natural_images(count: int, seed: int = 0) -> np.ndarray:
    """CIFAR-like 32x32 colour scenes: a smooth background of any colour and brightness (sky, grass,
    a room, night), an object of another colour anywhere, often cut by the frame, and texture."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, 32, 32, 3), np.uint8)
    for index in range(count):
        corners = rng.uniform(0, 255, size=(2, 2, 3)).astype(np.float32)
        scene = np.asarray(Image.fromarray(np.uint8(corners)).resize((32, 32), Image.BILINEAR), np.float32)
        top, left = rng.integers(-8, 24, size=2)
        size = rng.integers(10, 30)
        scene[max(0, top):top + size, max(0, left):left + size] = rng.uniform(0, 255, size=3)
        scene += rng.normal(0, 12, size=scene.shape)
        out[index] = np.clip(scene, 0, 255)
    return out


def test_fashion_mnist_is_dark_centred_and_mapped(fashion_mnist):
    train, _ = fashion_mnist
    description = describe_inputs(train.images, seed=1)
    assert (description["background"], description["photo_mapping"]) == ("dark", "object")
    assert description["objects_centred"] and description["object_fill"] > 0.9
    assert description["background_level"] < 10 and description["object_peak"] > 200
    assert (description["height"], description["width"], description["channels"]) == (28, 28, 1)
    assert InputDescription.from_document(description).maps_objects


def test_a_folder_of_dark_objects_on_white_is_light(fashion_mnist, tmp_path):
    """Garments drawn dark on white paper, 40x40, smaller than the frame, read by the folder reader."""
    train, _ = fashion_mnist
    for index in range(300):
        tile = 255 - train.images[index, :, :, 0]
        page = Image.new("L", (40, 40), 250)
        page.paste(Image.fromarray(tile).resize((24, 24)), (8, 8))
        folder = tmp_path / f"class{int(train.labels[index]) % 3}"
        folder.mkdir(exist_ok=True)
        page.save(folder / f"{index}.png")
    images = read_channel(tmp_path).images
    description = describe_inputs(images)
    assert (description["background"], description["photo_mapping"]) == ("light", "object")
    assert description["background_level"] > 240 and 0.5 < description["object_fill"] < 0.75
    assert description["objects_centred"] and description["channels"] == 1


def test_cifar_like_natural_images_get_no_object_mapping():
    description = describe_inputs(natural_images(400))
    assert (description["background"], description["photo_mapping"]) == ("varied", "none")
    assert description["channels"] == 3 and "object_fill" not in description
    prep = Preprocessing(32, 32, 3, 1 / 255, "RGB", description=InputDescription.from_document(description))
    photo = Image.fromarray(np.uint8(np.random.default_rng(1).uniform(0, 255, (120, 160, 3))))
    plain = Preprocessing(32, 32, 3, 1 / 255, "RGB").image_to_array(photo)
    request = prep.for_request()
    assert np.array_equal(request.image_to_array(photo), plain)  # nothing beyond the resize
    assert request.report.summary()["photo_mapping"] == "none"


def test_training_writes_input_json(trained_model_dir):
    document = json.loads((trained_model_dir / "input.json").read_text())
    assert document["photo_mapping"] == "object" and document["background"] == "dark"
    _, prep = read_model_metadata(trained_model_dir)
    assert prep.description == InputDescription.from_document(document)


def test_a_bad_input_json_names_the_file_and_the_field(trained_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained_model_dir, copy, ignore=shutil.ignore_patterns("1", "*.onnx", "*.keras"))
    (copy / "input.json").write_text(json.dumps({"background": "grey", "photo_mapping": "object"}))
    with pytest.raises(ModelLoadError, match=r"input\.json: background is 'grey'"):
        read_model_metadata(copy)


def test_test_pngs_pass_through_unchanged(fashion_mnist):
    """The data set's own tiles reach the model exactly as without the mapping."""
    _, test = fashion_mnist
    plain = Preprocessing(28, 28, 1, 1 / 255, "L")
    mapped = Preprocessing(28, 28, 1, 1 / 255, "L", description=FASHION_LIKE)
    changed = 0
    for tile in test.images[:2000]:
        body = png_tile(tile)
        request = mapped.for_request()
        changed += not np.array_equal(decoders.decode(body, "image/png", request), decoders.decode(body, "image/png", plain))
    assert changed <= 2, changed


def test_a_photo_is_cropped_centred_and_negated(fashion_mnist):
    """What the model sees of a photo-like JPEG resembles the tile it was made from."""
    _, test = fashion_mnist
    similarity = []
    for index, tile in enumerate(test.images[:30]):
        request = Preprocessing(28, 28, 1, 1 / 255, "L", description=FASHION_LIKE).for_request()
        seen = decoders.decode(photo_like(tile, 0, index), "image/jpeg", request)[0, :, :, 0] * 255
        similarity.append(np.corrcoef(seen.ravel(), tile.ravel().astype(np.float32))[0, 1])
    assert request.report.summary()["photo_mapping"] == "grayscale+crop+centre+resize+negate+stretch"
    assert np.median(similarity) > 0.85 and min(similarity) > 0.5, similarity
    tile = test.images[0]
    off = Preprocessing(28, 28, 1, 1 / 255, "L", description=FASHION_LIKE).for_request(mapping=False)
    unmapped = decoders.decode(photo_like(tile, 0, 0), "image/jpeg", off)[0, :, :, 0] * 255
    assert np.median(unmapped) > 150 and off.report.summary()["photo_mapping"] == "off"


def test_a_light_28x28_image_is_only_negated(fashion_mnist):
    _, test = fashion_mnist
    tile = test.images[1]
    request = Preprocessing(28, 28, 1, 1 / 255, "L", description=FASHION_LIKE).for_request()
    seen = decoders.decode(png_tile(255 - tile), "image/png", request)[0, :, :, 0] * 255
    assert request.report.summary()["photo_mapping"] == "negate"
    assert np.abs(seen - tile[:, :, 0]).max() <= 2


def test_the_generator_is_seeded_and_photo_like(fashion_mnist):
    _, test = fashion_mnist
    first, again, other = photo_like(test.images[5], 1, 5), photo_like(test.images[5], 1, 5), photo_like(test.images[5], 2, 5)
    assert first == again and first != other
    image = Image.open(io.BytesIO(first))
    pixels = np.asarray(image.convert("L"), np.float32)
    assert image.format == "JPEG" and image.mode == "RGB"
    assert image.size[0] > image.size[1] >= 4 * 28
    assert np.median(np.concatenate([pixels[0], pixels[-1]])) > 170  # a light background


def test_a_dark_photo_is_negated_for_a_light_background_model(fashion_mnist):
    """A model trained on dark objects on white gets a bright object on a dark table as its own kind."""
    _, test = fashion_mnist
    tile = test.images[2, :, :, 0]
    light = InputDescription(background="light", photo_mapping="object", background_level=250.0,
                             object_fill=0.6, object_peak=240.0)
    table = Image.new("L", (300, 200), 30)
    table.paste(Image.fromarray(np.uint8(30 + tile * 0.8)).resize((90, 90)), (170, 60))
    buffer = io.BytesIO()
    table.save(buffer, "PNG")
    request = Preprocessing(40, 40, 1, 1 / 255, "L", description=light).for_request()
    seen = decoders.decode(buffer.getvalue(), "image/png", request)[0, :, :, 0] * 255
    assert request.report.summary()["photo_mapping"] == "crop+centre+resize+negate+stretch"
    border = np.concatenate([seen[0], seen[-1], seen[:, 0], seen[:, -1]])
    assert abs(np.median(border) - 250) <= 2 and seen.min() < 40  # white page, dark object
    rows = np.flatnonzero((seen < 200).any(axis=1))
    assert 0.45 < (rows[-1] - rows[0] + 1) / 40 < 0.75  # the object fills object_fill of the frame


def test_accuracy_plain_vs_photo_for_the_report(trained_model_dir, fashion_test_images):
    from convlab.photos import accuracy_plain_vs_photo

    images, labels = fashion_test_images
    result = accuracy_plain_vs_photo(trained_model_dir, images[:80], labels[:80], seed=4)
    assert result["images"] == 80 and set(result) == {"images", "plain", "photo", "photo_unmapped"}
    assert result["photo"] >= 0.8 * result["plain"] and result["photo_unmapped"] < result["photo"] - 0.2, result


def test_the_readmes_photo_is_the_generators(fashion_mnist):
    """docs/photo-ankle-boot.jpg is photo_like() of the first test image with seed 0, as the README says."""
    from pathlib import Path

    from convlab.photos import photo_like

    _, test = fashion_mnist
    committed = (Path(__file__).resolve().parent.parent / "docs" / "photo-ankle-boot.jpg").read_bytes()
    assert photo_like(test.images[0][..., 0] if test.images.ndim == 4 else test.images[0], 0, 0) == committed
    assert test.classes[test.labels[0]] == "Ankle boot"
