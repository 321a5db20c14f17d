"""Pure validation of media parameters (media/params.py): each bad value names its parameter."""
from __future__ import annotations

import pytest

from media.attachments import attachment_max_bytes
from grokweb.errors import InvalidRequest, ModelNotFound
from media.params import (
    image_edit_params,
    image_generation_params,
    image_input,
    video_params,
)
from media.tests.e2e import tiny_png


def test_generation_defaults_and_size_mapping():
    p = image_generation_params(model="grok-imagine-image", prompt=" a cat ")
    assert (p.n, p.size, p.aspect_ratio, p.response_format, p.prompt) == (1, "1024x1024", "1:1", "url", "a cat")
    assert image_generation_params(model="grok-imagine-image", prompt="x", size="1792x1024").aspect_ratio == "3:2"
    assert image_generation_params(model="grok-imagine-image", prompt="x", size="720x1280").aspect_ratio == "9:16"
    assert image_generation_params(model="grok-imagine-image-pro", prompt="x", n=10).n == 10
    assert image_generation_params(model="grok-imagine-image-lite", prompt="x", n="4").n == 4


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"model": "grok-imagine-image-lite", "n": 5}, "n"),
        ({"model": "grok-imagine-image", "n": True}, "n"),
        ({"model": "grok-imagine-image", "n": 1.5}, "n"),
        ({"model": "grok-imagine-image", "size": "512x512"}, "size"),
        ({"model": "grok-imagine-image", "response_format": "jpeg"}, "response_format"),
        ({"model": "grok-imagine-video"}, "model"),
        ({"model": "grok-imagine-image", "prompt": None}, "prompt"),
        ({"model": "grok-imagine-image", "prompt": 42}, "prompt"),
    ],
)
def test_bad_generation_params_name_the_parameter(kwargs, param):
    kwargs.setdefault("prompt", "x")
    with pytest.raises(InvalidRequest) as err:
        image_generation_params(**kwargs)
    assert err.value.param == param and err.value.status == 400


def test_unknown_models_are_not_found():
    with pytest.raises(ModelNotFound):
        image_generation_params(model="dall-e-3", prompt="x")


def test_chat_prefix_names_nested_parameters():
    with pytest.raises(InvalidRequest) as err:
        image_generation_params(model="grok-imagine-image", prompt="x", n=20, prefix="image_config.")
    assert err.value.param == "image_config.n"
    with pytest.raises(InvalidRequest) as err:
        video_params(model="grok-imagine-video", prompt="x", seconds=7, prefix="video_config.")
    assert err.value.param == "video_config.seconds"


def test_edit_params():
    assert image_edit_params(model=None, prompt="x").spec.id == "grok-imagine-image-edit"
    for kwargs, param in (({"has_mask": True}, "mask"), ({"n": 3}, "n"), ({"size": "1792x1024"}, "size")):
        with pytest.raises(InvalidRequest) as err:
            image_edit_params(model=None, prompt="x", **kwargs)
        assert err.value.param == param


def test_video_params():
    v = video_params(model=None, prompt="x", seconds="20", size="720x1280", resolution_name="480P", preset="Spicy")
    assert (v.seconds, v.size, v.resolution_name, v.preset) == (20, "720x1280", "480p", "spicy")
    assert video_params(model=None, prompt="x").preset == "custom"
    for kwargs, param in (({"seconds": 5}, "seconds"), ({"resolution_name": "1080p"}, "resolution_name"),
                          ({"preset": "crazy"}, "preset"), ({"size": "1280x1280"}, "size")):
        with pytest.raises(InvalidRequest) as err:
            video_params(model=None, prompt="x", **kwargs)
        assert err.value.param == param


def test_image_inputs_are_checked_by_magic_bytes_and_size():
    assert image_input(tiny_png(), name="../../etc/x y.jpeg", param="image").name == "x_y.png"
    assert image_input(b"\xff\xd8\xff\xe0" + b"\0" * 20, name="a", param="image").mime == "image/jpeg"
    assert image_input(b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 8, name="a", param="image").mime == "image/webp"
    with pytest.raises(InvalidRequest) as err:
        image_input(b"<html>not an image</html>", name="a.png", param="input_reference")
    assert err.value.param == "input_reference" and err.value.code == "invalid_image"
    with pytest.raises(InvalidRequest) as err:
        image_input(tiny_png() + b"\0" * attachment_max_bytes(), name="a.png", param="image")
    assert err.value.code == "file_too_large"
