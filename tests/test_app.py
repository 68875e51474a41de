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
from gradio.data_classes import FileData
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import pconv_hf
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


@pytest.fixture(scope="module")
def models(model_dir):
    return app.load_models({"tiny": str(model_dir)}, device="cpu")


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


def test_big_photo_is_shown_downscaled_and_downloaded_full_size_lossless(client, models, astronaut, tmp_path):
    """Wider than SCREEN_SIDE: the outputs shown are screen copies; the download is the full-size lossless PNG,
    pixel for pixel what pconv_hf.inpaint makes of the photo (0.24 MP: within the test server's limit)."""
    photo = Image.fromarray(np.tile(np.asarray(Image.fromarray(astronaut).resize((500, 120))), (1, 4, 1)))
    assert photo.size == (2000, 120)
    box = (900, 40, 1000, 80)
    path = save(photo, tmp_path, "wide.png")
    layer = save(painted_layer(photo.size, box), tmp_path, "layer.png")
    shown, summary, (download, download_mask), (before, after), shown_mask = call(client, path, [layer])

    with Image.open(shown) as image:
        assert image.format == "JPEG" and image.size == (app.SCREEN_SIDE, 96)
    assert Path(after).name == Path(shown).name
    for path_shown in (before, after, shown_mask):
        assert Image.open(path_shown).size == (app.SCREEN_SIDE, 96)
    assert summary.startswith("Filled 1 region in ") and summary.endswith(" s at 2000×120")
    with Image.open(download) as image, Image.open(download_mask) as mask_image:
        assert image.format == "PNG" and mask_image.format == "PNG"
        result, mask = np.asarray(image), np.asarray(mask_image)
    hole = box_hole(photo.size, box, grow=app.DEFAULT_DILATE)
    np.testing.assert_array_equal(mask > 0, hole)
    expected = pconv_hf.inpaint(photo, Image.fromarray(mask), model=models["tiny"], strategy="crop")
    np.testing.assert_array_equal(result, np.asarray(expected))  # full size, lossless: exactly the library's result
    np.testing.assert_array_equal(result[~hole], np.asarray(photo)[~hole])


# --- predict() and the start-up logic, in process ----------------------------------------------------------


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
    err = capsys.readouterr().err
    assert exit.value.code == 1 and "bundled model is missing" in err and "--model DIR" in err


def test_examples_are_small_and_aligned():
    values = app.examples()
    assert len(values) >= 3
    for value in values:
        photo, layer = Path(value["background"]), Path(value["layers"][0])
        assert photo.stat().st_size < 300_000 and layer.stat().st_size < 300_000
        with Image.open(photo) as image, Image.open(layer) as painted:
            assert image.size == painted.size and painted.mode == "RGBA"
            assert 0 < (np.asarray(painted)[..., 3] > 0).mean() < 0.5


# --- big photos uploaded through the photo box, in process ---------------------------------------------------


def big_photo(astronaut, size=(3000, 2000)) -> Image.Image:
    """A photo bigger than the screen copies: the astronaut upscaled, with some noise."""
    upscaled = np.asarray(Image.fromarray(astronaut).resize(size, Image.Resampling.BICUBIC)).astype(int)
    noise = np.random.default_rng(0).integers(-3, 4, (size[1], size[0], 1))
    return Image.fromarray(np.clip(upscaled + noise, 0, 255).astype(np.uint8))


def outputs(tmp_path: Path) -> Path:
    """A new folder for one call's files, as the app makes one per request."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


def sent_back(copy_path: str) -> Image.Image:
    """The editor's copy as the editor sends it back: decoded by the browser, re-encoded as an RGBA PNG."""
    with Image.open(copy_path) as copy:
        return copy.convert("RGBA")


def test_upload_is_painted_on_a_copy_and_inpainted_at_full_size(models, astronaut, tmp_path):
    photo = big_photo(astronaut)
    path = tmp_path / "upload.jpg"
    photo.save(path, quality=95)
    photo = np.asarray(Image.open(path))  # the upload as the server reads it
    value, upload = app.load_photo(str(path), outputs(tmp_path))
    copy = sent_back(value["background"])
    assert copy.size == (app.EDIT_SIDE, 683) and upload.size == (3000, 2000) and upload.copy_size == copy.size
    assert value["layers"] == [] and Path(value["background"]).stat().st_size < 300_000

    box = (400, 300, 460, 340)  # painted on the copy, about 176 x 117 photo pixels
    editor = editor_value(copy, painted_layer(copy.size, box))
    steps = list(app.respond(editor, "crop", 4, "tiny", upload, models=models, folder=outputs(tmp_path)))
    assert len(steps) == 2  # shown first, downloads once written
    shown, summary, downloads, (before, after), shown_mask = steps[0]
    assert downloads is None and "writing the full-size PNGs" in summary
    for path_shown in (shown, before, after, shown_mask):
        assert Image.open(path_shown).size == (app.SCREEN_SIDE, 1067)
    assert Path(shown).suffix == ".jpg" and Path(shown_mask).suffix == ".png"

    _, summary, (download, download_mask), _, _ = steps[-1]
    assert summary.endswith(" s at 3000×2000")
    with Image.open(download) as image, Image.open(download_mask) as mask_image:
        assert image.format == "PNG" and image.size == (3000, 2000)
        result, mask = np.asarray(image), np.asarray(mask_image)
    hole = mask > 0
    scale = 3000 / app.EDIT_SIDE
    top, left, bottom, right = (round(v * scale) for v in (box[1], box[0], box[3], box[2]))
    assert hole[top:bottom, left:right].all()  # the painted box, scaled up to the photo
    assert hole.sum() < (bottom - top + 20) * (right - left + 20)  # ... grown by a few pixels only
    expected = pconv_hf.inpaint(Image.fromarray(photo), Image.fromarray(mask), model=models["tiny"], strategy="crop")
    np.testing.assert_array_equal(result, np.asarray(expected))  # the full-size photo, inpainted, lossless
    np.testing.assert_array_equal(result[~hole], photo[~hole])


def test_small_photo_is_shown_as_its_download(models, astronaut, tmp_path):
    """Up to SCREEN_SIDE, what the page shows is the lossless download itself, in one step."""
    photo = Image.fromarray(astronaut)
    editor = editor_value(photo.convert("RGBA"), painted_layer(photo.size, (10, 10, 40, 40)))
    (step,) = app.respond(editor, "crop", 0, None, None, models=models, folder=tmp_path)
    shown, _, (download, download_mask), (before, after), shown_mask = step
    assert shown == after == download and shown_mask == download_mask
    assert Image.open(before).size == photo.size


def test_editor_showing_another_photo_is_inpainted_as_sent(models, astronaut, tmp_path):
    """When the editor does not hold the upload's copy (pasted over, say), what it sends is the photo."""
    photo = big_photo(astronaut, (2048, 1536))
    path = save(photo, tmp_path, "upload.png")
    value, upload = app.load_photo(str(path), outputs(tmp_path))
    copy = sent_back(value["background"])
    assert upload.matches(copy)
    other = Image.fromarray(np.asarray(copy)[::-1].copy())  # same size, another picture
    assert not upload.matches(other) and not upload.matches(None) and not upload.matches(copy.resize((100, 75)))
    *_, last = app.respond(
        editor_value(other, painted_layer(other.size, (0, 0, 8, 8))),
        models=models,
        strategy="crop",
        dilate=0,
        model_name=None,
        upload=upload,
        folder=outputs(tmp_path),
    )
    assert Image.open(last[2][0]).size == other.size


def test_open_photo_turns_it_upright_8_bit(tmp_path):
    rotated = Image.new("RGB", (40, 30), "red")
    exif = rotated.getexif()
    exif[0x0112] = 6  # camera held upright: shown turned 90 degrees clockwise
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    assert app.open_photo(tmp_path / "rotated.jpg").size == (30, 40)
    deep = Image.fromarray(np.full((4, 4), 0x1234, np.uint16))
    deep.save(tmp_path / "deep.png")
    grey = app.open_photo(tmp_path / "deep.png")
    assert grey.mode == "L" and grey.getextrema() == (0x12, 0x12)  # the high byte, as browsers show it
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    with pytest.raises(gr.Error, match="Could not read the uploaded photo"):
        app.load_photo(str(tmp_path / "broken.jpg"), tmp_path)
    with pytest.raises(gr.Error, match=r"30×40 .* up to 0.001 megapixels"):
        app.load_photo(str(tmp_path / "rotated.jpg"), tmp_path, max_megapixels=0.001)


def test_the_composite_is_not_even_decoded(tmp_path, astronaut):
    editor = app.lighten_preprocess(gr.ImageEditor(type="pil"))
    background = save(Image.fromarray(astronaut), tmp_path, "photo.png")
    broken = tmp_path / "composite.png"
    broken.write_bytes(b"not a picture")
    payload = editor.data_model(
        background=FileData(path=str(background)), layers=[], composite=FileData(path=str(broken))
    )
    value = editor.preprocess(payload)
    assert value["composite"] is None and value["background"].size == (512, 512)
