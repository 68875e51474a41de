"""app.py: `python app.py` served on 127.0.0.1 and called through gradio_client, plus predict() unit tests."""

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from pconv_hf import PConvUNet

ROOT = Path(__file__).resolve().parents[1]
MAX_MEGAPIXELS = 0.3  # astronaut (512 x 512 = 0.26 MP) passes, 700 x 500 (0.35 MP) is refused


def import_app():
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


app = import_app()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """`python app.py --model DIR` in a subprocess on a free port; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("app-log") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "app.py"), "--model", str(model_dir), "--port", str(port)]
    command += ["--device", "cpu", "--max_megapixels", str(MAX_MEGAPIXELS)]
    with open(log, "w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"app.py did not start:\n{log.read_text()}")
            time.sleep(0.5)
        try:
            yield url
        finally:
            process.send_signal(signal.SIGINT)  # Ctrl-C: the app shuts down cleanly and removes its temp files
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    # gradio_client leaves an empty folder in the temp dir per downloaded file: keep them in pytest's.
    saved, tempfile.tempdir = tempfile.tempdir, str(tmp_path_factory.mktemp("client-downloads"))
    try:
        yield Client(server, verbose=False, download_files=tempfile.tempdir)
    finally:
        tempfile.tempdir = saved


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


def painted_layer(size: tuple[int, int], box: tuple[int, int, int, int], color=(255, 0, 255, 255)) -> Image.Image:
    """An RGBA layer, transparent except an opaque painted rectangle (left, top, right, bottom)."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    layer.paste(Image.new("RGBA", (box[2] - box[0], box[3] - box[1]), color), box[:2])
    return layer


def box_hole(size: tuple[int, int], box: tuple[int, int, int, int], grow: int = 0) -> np.ndarray:
    hole = np.zeros((size[1], size[0]), bool)
    hole[max(box[1] - grow, 0) : box[3] + grow, max(box[0] - grow, 0) : box[2] + grow] = True
    return hole


def save(image: Image.Image, folder: Path, name: str) -> Path:
    path = folder / name
    image.save(path)
    return path


def call(client: Client, background: Path | None, layers: list[Path], **options):
    value = {
        "background": None if background is None else handle_file(str(background)),
        "layers": [handle_file(str(layer)) for layer in layers],
        "composite": None,
    }
    return client.predict(value, **options, api_name="/inpaint")


# --- through the server ------------------------------------------------------------------------------------


def test_painted_area_is_filled_and_the_rest_is_untouched(client, astronaut_png, astronaut, tmp_path):
    box = (200, 150, 260, 230)
    layer = save(painted_layer((512, 512), box), tmp_path, "layer.png")
    result_path, summary, (download_result, download_mask), comparison, mask_path = call(client, astronaut_png, [layer])

    with Image.open(result_path) as result_file:
        assert result_file.format == "PNG"  # lossless, so untouched pixels can be compared exactly
        result = np.asarray(result_file)
    assert result.shape == astronaut.shape
    hole = box_hole((512, 512), box, grow=app.DEFAULT_DILATE)
    np.testing.assert_array_equal(result[~hole], astronaut[~hole])
    assert (result[hole] != astronaut[hole]).any()

    mask = np.asarray(Image.open(mask_path))
    np.testing.assert_array_equal(mask > 0, hole)  # the mask shown is the painted box grown by 4 px
    np.testing.assert_array_equal(np.asarray(Image.open(download_result)), result)
    np.testing.assert_array_equal(np.asarray(Image.open(download_mask)), mask)
    assert Path(download_result).name == "inpainted.png" and Path(download_mask).name == "mask.png"
    assert summary.startswith("Filled 1 region in ") and summary.endswith(" s at 512×512")
    assert len(comparison) == 2 and all(Path(image).is_file() for image in comparison)


def test_any_colour_counts_and_options_are_used(client, astronaut_png, astronaut, tmp_path):
    """A black brush paints too; two separate strokes are two regions; dilate=0 fills exactly what is painted."""
    first, second = (40, 40, 80, 60), (300, 400, 340, 450)
    layer = Image.alpha_composite(
        painted_layer((512, 512), first, color=(0, 0, 0, 255)), painted_layer((512, 512), second, (0, 0, 0, 90))
    )
    path = save(layer, tmp_path, "black.png")
    result_path, summary, *_, mask_path = call(client, astronaut_png, [path], strategy="resize", dilate=0)
    hole = box_hole((512, 512), first) | box_hole((512, 512), second)
    np.testing.assert_array_equal(np.asarray(Image.open(mask_path)) > 0, hole)
    result = np.asarray(Image.open(result_path))
    np.testing.assert_array_equal(result[~hole], astronaut[~hole])
    assert summary.startswith("Filled 2 regions")


def test_plain_mask_layer_is_read_as_white_fills(client, astronaut_png, astronaut, tmp_path):
    """A layer without transparency (an ordinary black-and-white mask) fills its white pixels."""
    box = (100, 100, 140, 130)
    mask = np.zeros((512, 512), np.uint8)
    mask[100:130, 100:140] = 255
    path = save(Image.fromarray(mask), tmp_path, "mask.png")
    *_, mask_path = call(client, astronaut_png, [path], dilate=0)
    np.testing.assert_array_equal(np.asarray(Image.open(mask_path)) > 0, box_hole((512, 512), box))


def test_rgba_photo_keeps_its_alpha(client, astronaut, tmp_path):
    rgba = np.dstack([astronaut, np.tile(np.linspace(40, 255, 512).astype(np.uint8), (512, 1))])
    photo = save(Image.fromarray(rgba, "RGBA"), tmp_path, "rgba.png")
    box = (300, 300, 340, 340)
    layer = save(painted_layer((512, 512), box), tmp_path, "layer.png")
    result_path, *_ = call(client, photo, [layer], dilate=0)
    with Image.open(result_path) as result_file:
        assert result_file.mode == "RGBA"
        result = np.asarray(result_file)
    hole = box_hole((512, 512), box)
    np.testing.assert_array_equal(result[~hole], rgba[~hole])
    np.testing.assert_array_equal(result[..., 3], rgba[..., 3])  # alpha is never inpainted
    assert (result[hole][:, :3] != rgba[hole][:, :3]).any()


def test_grayscale_photo_stays_grayscale(client, astronaut, tmp_path):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    photo = save(Image.fromarray(gray), tmp_path, "gray.png")
    box = (10, 400, 60, 450)
    layer = save(painted_layer((512, 512), box), tmp_path, "layer.png")
    result_path, *_ = call(client, photo, [layer], dilate=0)
    with Image.open(result_path) as result_file:
        assert result_file.mode == "L"
        result = np.asarray(result_file)
    hole = box_hole((512, 512), box)
    np.testing.assert_array_equal(result[~hole], gray[~hole])
    assert (result[hole] != gray[hole]).any()


def test_nothing_painted_is_an_error_with_a_message(client, astronaut_png, tmp_path):
    empty = save(Image.new("RGBA", (512, 512), (0, 0, 0, 0)), tmp_path, "empty.png")
    with pytest.raises(AppError, match="Nothing is painted"):
        call(client, astronaut_png, [empty])
    with pytest.raises(AppError, match="Nothing is painted"):
        call(client, astronaut_png, [])


def test_no_photo_is_an_error_with_a_message(client, tmp_path):
    layer = save(painted_layer((64, 64), (0, 0, 10, 10)), tmp_path, "layer.png")
    with pytest.raises(AppError, match="Upload or paste a photo"):
        call(client, None, [])
    blank = save(Image.new("RGB", (64, 64), "white"), tmp_path, "blank.png")  # what the editor sends unpainted
    with pytest.raises(AppError, match="no photo"):
        call(client, blank, [layer])


def test_unreadable_file_is_an_error_with_a_message(client, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a picture")
    with pytest.raises(AppError, match="Could not read the uploaded photo"):
        call(client, broken, [])


def test_too_large_photo_names_its_size_and_the_limit(client, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (500, 700, 3), dtype=np.uint8)
    photo = save(Image.fromarray(noise), tmp_path, "large.png")
    layer = save(painted_layer((700, 500), (0, 0, 10, 10)), tmp_path, "layer.png")
    with pytest.raises(AppError, match=r"700×500 \(0\.35 megapixels\).*up to 0\.3 megapixels"):
        call(client, photo, [layer])


def test_layer_of_another_size_is_refused(client, astronaut_png, tmp_path):
    layer = save(painted_layer((256, 256), (0, 0, 10, 10)), tmp_path, "small.png")
    with pytest.raises(AppError, match="256×256 but the photo is 512×512"):
        call(client, astronaut_png, [layer])


# --- predict() and the start-up logic, in process ----------------------------------------------------------


@pytest.fixture(scope="module")
def models(model_dir):
    return app.load_models({"tiny": str(model_dir)}, device="cpu")


def editor_value(photo: Image.Image | None, *layers: Image.Image) -> dict:
    return {"background": photo, "layers": list(layers), "composite": None}


def test_predict_fills_only_the_painted_area(models, astronaut):
    photo = Image.fromarray(astronaut).convert("RGBA")  # the editor always hands over RGBA
    box = (100, 200, 180, 240)
    done = app.predict(editor_value(photo, painted_layer(photo.size, box)), "crop", 2, "tiny", models=models)
    assert done.result.size == photo.size and done.result.mode == "RGB"  # opaque alpha dropped
    hole = box_hole(photo.size, box, grow=2)
    np.testing.assert_array_equal(np.asarray(done.mask) > 0, hole)
    result = np.asarray(done.result)
    np.testing.assert_array_equal(result[~hole], astronaut[~hole])
    assert (result[hole] != astronaut[hole]).any()
    assert "1 region" in done.summary and "512×512" in done.summary


def test_predict_defaults_to_the_first_model(models, astronaut):
    photo = Image.fromarray(astronaut)
    done = app.predict(editor_value(photo, painted_layer(photo.size, (0, 0, 8, 8))), models=models)
    assert (np.asarray(done.mask) > 0).sum() == (8 + app.DEFAULT_DILATE) ** 2


@pytest.mark.parametrize(
    ("value", "options", "message"),
    [
        (None, {}, "Upload or paste a photo"),
        ("photo", {"strategy": "sideways"}, "Unknown strategy"),
        ("photo", {"dilate": -1}, "whole number of pixels"),
        ("photo", {"dilate": 2.5}, "whole number of pixels"),
        ("photo", {"model_name": "other"}, "Unknown model 'other'; this app offers tiny"),
        ("photo", {"max_megapixels": 0.1}, "512×512 .* up to 0.1 megapixels"),
    ],
)
def test_predict_errors(models, astronaut, value, options, message):
    photo = Image.fromarray(astronaut)
    value = None if value is None else editor_value(photo, painted_layer(photo.size, (0, 0, 8, 8)))
    arguments = {"strategy": "crop", "dilate": 0, "model_name": None, **options}
    with pytest.raises(gr.Error, match=message):
        app.predict(value, **arguments, models=models)


def test_simplest_mode():
    assert app.simplest_mode(Image.new("RGBA", (4, 4), (10, 20, 30, 255))).mode == "RGB"
    assert app.simplest_mode(Image.new("RGBA", (4, 4), (10, 20, 30, 254))).mode == "RGBA"
    assert app.simplest_mode(Image.new("RGBA", (4, 4), (7, 7, 7, 255))).mode == "L"


def test_model_sources(tmp_path, model_dir, monkeypatch):
    monkeypatch.setattr(app.pconv_hf, "DEFAULT_CHECKPOINT", tmp_path / "not-trained-yet")
    with pytest.raises(ValueError, match=r"bundled model is missing .*--model DIR"):
        app.model_sources([])
    assert app.model_sources([f"{model_dir}, user/hub-model", "other"]) == {
        str(model_dir): str(model_dir),
        "user/hub-model": "user/hub-model",
        "other": "other",
    }
    runs = tmp_path / "runs"
    PConvUNet(layer_size=5, base_channels=8, sample_size=64).save_pretrained(runs / "a" / "checkpoint-10")
    (runs / "b").mkdir()
    (runs / "b" / "config.json").write_text("{}")  # no weights: not offered
    assert list(app.model_sources([], runs)) == [str(runs / "a" / "checkpoint-10")]
    # Once the bundled model exists it is the default, with no code change.
    monkeypatch.setattr(app.pconv_hf, "DEFAULT_CHECKPOINT", model_dir)
    assert list(app.model_sources([]).values()) == [str(model_dir)]


def test_main_without_a_model_says_how_to_pass_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(app.pconv_hf, "DEFAULT_CHECKPOINT", tmp_path / "not-trained-yet")
    with pytest.raises(SystemExit) as exit:
        app.main([])
    assert "bundled model is missing" in str(exit.value.code) and "--model DIR" in str(exit.value.code)


def test_examples_are_small_and_aligned():
    values = app.examples()
    assert len(values) >= 3
    for value in values:
        photo, layer = Path(value["background"]), Path(value["layers"][0])
        assert photo.stat().st_size < 300_000 and layer.stat().st_size < 300_000
        with Image.open(photo) as image, Image.open(layer) as painted:
            assert image.size == painted.size and painted.mode == "RGBA"
            assert 0 < (np.asarray(painted)[..., 3] > 0).mean() < 0.5
