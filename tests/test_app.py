"""app.py: `python app.py` served on 127.0.0.1 and called through gradio_client, plus predict() unit tests."""

import importlib.util
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image, ImageCms

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
def server_log(tmp_path_factory) -> Path:
    """The server's console (stdout and stderr)."""
    return tmp_path_factory.mktemp("app-log") / "app.log"


@pytest.fixture(scope="module")
def server(model_dir, server_log):
    """`python app.py --model DIR` in a subprocess on a free port; yields its URL."""
    port = free_port()
    log = server_log
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
    """/inpaint with a photo: (result shown, summary, downloads, (before, after), mask shown); the two outputs
    after those (the editor value and the state's token) are for the edit loop (see call_loop)."""
    return call_loop(client, background, layers, **options)[:5]


def call_loop(client: Client, background: Path | None, layers: list[Path], **options):
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


UNCHANGED = {"__type__": "update"}  # an output the event leaves as it is (gr.skip()), as the client receives it


def test_nothing_painted_is_a_note_that_leaves_the_outputs(client, astronaut_png, tmp_path, server_log):
    """Harmless (issue 33, item 17): a warning toast and one log line, every output left as it is; not an error
    that replaces the result, the summary and the downloads with error badges."""
    empty = save(Image.new("RGBA", (512, 512), (0, 0, 0, 0)), tmp_path, "empty.png")
    assert call_loop(client, astronaut_png, [empty]) == (UNCHANGED,) * 7
    assert call_loop(client, astronaut_png, []) == (UNCHANGED,) * 7
    time.sleep(0.5)
    assert "note: Nothing is painted" in server_log.read_text()


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
    expected = pconv_hf.inpaint(photo, Image.fromarray(mask), model=models["tiny"])  # its default strategy
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


# --- the edit loop through the API (one gradio_client Client = one session) ----------------------------------


def test_api_loop_fills_the_session_state_then_undoes_and_redoes(client, astronaut_png, astronaut, tmp_path):
    """A call with a photo starts the session's history; a call with the returned step token and no photo fills
    the current state; /undo and /redo step back and forth (one Client keeps one session)."""
    first, second = (40, 40, 90, 80), (300, 300, 360, 340)
    layer = save(painted_layer((512, 512), first), tmp_path, "first.png")
    *_, (state1, mask1), _, _, editor1, token1 = call_loop(client, astronaut_png, [layer], dilate=0)
    layer = save(painted_layer((512, 512), second), tmp_path, "second.png")
    *_, (state2, mask2), _, _, _, token2 = call_loop(client, None, [layer], dilate=0, step_token=token1)
    one, two = np.asarray(Image.open(state1)), np.asarray(Image.open(state2))
    hole1, hole2 = box_hole((512, 512), first), box_hole((512, 512), second)
    np.testing.assert_array_equal(np.asarray(Image.open(mask2)) > 0, hole2)
    np.testing.assert_array_equal(two[~hole2], one[~hole2])  # the first fill is kept
    np.testing.assert_array_equal(two[~(hole1 | hole2)], astronaut[~(hole1 | hole2)])
    assert (two[hole1] != astronaut[hole1]).any() and token2 != token1

    *_, (undone, _), _, _, _, token = client.predict(api_name="/undo")
    assert token == token1
    np.testing.assert_array_equal(np.asarray(Image.open(undone)), one)
    *_, (redone, _), _, _, _, token = client.predict(api_name="/redo")
    assert token == token2
    np.testing.assert_array_equal(np.asarray(Image.open(redone)), two)
    assert client.predict(api_name="/redo") == (UNCHANGED,) * 7  # nothing to redo: a note, nothing changed
    assert editor1["background"] is not None  # the state's editor copy, to paint on in the page


def resend(value: dict) -> dict:
    """An editor value the client received, sent back (its files uploaded again)."""
    return {
        "background": handle_file(value["background"]),
        "layers": [handle_file(layer) for layer in value["layers"]],
        "composite": None,
    }


def test_api_reuses_the_last_mask_on_the_next_photo(client, astronaut_png, astronaut, tmp_path):
    """/load_photo starts a photo's history; /reuse_mask puts the last fill's mask on it as paint; /inpaint fills
    exactly that mask (kept at full size on the server, not the paint's scaled copy)."""
    mask = np.zeros((512, 512), np.uint8)
    mask[200:241, 101:180] = 255
    mask_path = save(Image.fromarray(mask), tmp_path, "watermark.png")
    call_loop(client, astronaut_png, [mask_path], dilate=0)
    flipped = astronaut[:, ::-1].copy()
    editor, token, *_ = client.predict(handle_file(str(save(Image.fromarray(flipped), tmp_path, "next.png"))),
                                       api_name="/load_photo")  # fmt: skip
    editor, summary = client.predict(resend(editor), token, api_name="/reuse_mask")
    assert summary.startswith("Last mask reused")
    assert (np.asarray(Image.open(editor["layers"][0]))[..., 3] > 0).sum() == (mask > 0).sum()
    *_, (result, used), _, _, _, _ = client.predict(resend(editor), dilate=0, step_token=token, api_name="/inpaint")
    np.testing.assert_array_equal(np.asarray(Image.open(used)), mask)
    result = np.asarray(Image.open(result))
    np.testing.assert_array_equal(result[mask == 0], flipped[mask == 0])


# --- edge defects found by a bad-input run (issue 21, item 6) -----------------------------------------------


def test_exif_rotated_photo_with_an_upright_layer(client, tmp_path):
    """Stored 300×451 with EXIF orientation 6: shown (and painted) upright, 451×300."""
    stored = Image.fromarray(np.random.default_rng(1).integers(0, 256, (451, 300, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = 6
    photo = tmp_path / "rotated.jpg"
    stored.save(photo, exif=exif, quality=95)
    layer = save(painted_layer((451, 300), (100, 100, 140, 130)), tmp_path, "layer.png")
    _, summary, (download, _), *_ = call(client, photo, [layer], dilate=0)
    assert summary.endswith("at 451×300")
    assert Image.open(download).size == (451, 300)


def test_16_bit_grey_photo_is_scaled_not_clipped(client, tmp_path):
    values = np.tile(np.linspace(0, 65535, 256), (128, 1)).round().astype(np.uint16)
    photo = save(Image.fromarray(values), tmp_path, "deep.png")
    box = (10, 10, 30, 30)
    layer = save(painted_layer((256, 128), box), tmp_path, "layer.png")
    _, _, (download, _), *_ = call(client, photo, [layer], dilate=0)
    with Image.open(download) as image:
        assert image.mode == "L"
        result = np.asarray(image)
    hole = box_hole((256, 128), box)
    expected = np.clip((values * (255 / 65535)).round(), 0, 255)
    np.testing.assert_array_equal(result[~hole], expected[~hole])
    assert abs(result.mean() - 127.5) < 3  # not washed out


def test_float_tiff_is_read_as_0_to_1(client, tmp_path):
    values = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (100, 1))
    photo = tmp_path / "float.tif"
    Image.fromarray(values, "F").save(photo)
    box = (50, 40, 70, 60)
    layer = save(painted_layer((200, 100), box), tmp_path, "layer.png")
    _, _, (download, _), *_ = call(client, photo, [layer], dilate=0)
    result = np.asarray(Image.open(download))
    hole = box_hole((200, 100), box)
    np.testing.assert_array_equal(result[~hole], (values * 255).round()[~hole])


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG file that says it is ``width``×``height``: its header only, all Pillow reads before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b""))
    return path


def test_odd_uploads_and_values_are_one_line_messages(client, astronaut_png, tmp_path, server_log):
    """Issue 33, item 14: the Photo box given a text file, an empty file, a 20000×20000 PNG (refused from its
    header, before 1.2 GB are decoded); /inpaint with dilate None, text or out of range, an unknown strategy or
    model; /select_object with the whole photo painted; /example with a bad index. Each is the app's own message,
    and one line on the server's console, never a traceback."""
    text = tmp_path / "notes.png"
    text.write_text("hello, this is text")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    uploads = [
        (text, r"Could not read the uploaded photo \(cannot read photo file 'notes\.png'"),
        (empty, r"The uploaded photo empty\.png is an empty file \(0 bytes\)"),
        (png_header(tmp_path / "huge.png", 20000, 20000), r"The photo has 400 megapixels; .* up to 0\.3 megapixels"),
        (save(Image.new("1", (2000, 2000)), tmp_path, "big.png"), r"The photo is 2000×2000 \(4 megapixels\)"),
    ]
    for path, message in uploads:
        with pytest.raises(AppError, match=message):
            client.predict(handle_file(str(path)), api_name="/load_photo")
    with pytest.raises(AppError, match=r"The photo has 400 megapixels"):  # sent as /inpaint's background
        call(client, tmp_path / "huge.png", [])

    layer = save(painted_layer((512, 512), (10, 10, 50, 50)), tmp_path, "layer.png")
    options = [
        ({"dilate": None}, r"whole number of pixels from 0 to 64, not None"),
        ({"dilate": "abc"}, r"whole number of pixels from 0 to 64, not 'abc'"),
        ({"dilate": -1}, r"whole number of pixels from 0 to 64, not -1"),
        ({"strategy": "bogus"}, r"Unknown strategy 'bogus'; use 'native'"),
        ({"model_name": "bogus"}, r"Unknown model 'bogus'; this app offers "),
        ({"texture": "yes"}, r"Texture from the photo is true or false, not 'yes'"),
    ]
    for option, message in options:
        with pytest.raises(AppError, match=message):
            call(client, astronaut_png, [layer], **option)

    editor, token, *_ = client.predict(handle_file(str(astronaut_png)), api_name="/load_photo")
    everything = save(Image.new("RGBA", (512, 512), (255, 255, 255, 255)), tmp_path, "everything.png")
    value = {"background": handle_file(editor["background"]), "layers": [handle_file(str(everything))]}
    with pytest.raises(AppError, match="Nothing is left to tell the object from"):
        client.predict({**value, "composite": None}, token, api_name="/select_object")
    with pytest.raises(AppError, match=r"There is no example 99; the examples are numbered 0 to \d"):
        client.predict(99, api_name="/example")

    time.sleep(0.5)
    console = server_log.read_text()
    assert "Traceback" not in console, console[console.find("Traceback") :][:3000]
    for _, message in uploads + options:
        assert re.search(rf"refused: .*{message}", console), message


def test_stateless_inpaint_keeps_the_icc_profile_and_exif(client, astronaut, tmp_path):
    """Issue 33, item 10: /inpaint with a background and no step token writes the downloads with the photo's ICC
    profile and EXIF, as /load_photo then /inpaint does."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    path = tmp_path / "camera.jpg"
    Image.fromarray(astronaut).save(path, exif=exif, icc_profile=icc, quality=95)
    layer = save(painted_layer((512, 512), (10, 10, 50, 50)), tmp_path, "layer.png")
    _, _, (download, _), *_ = call(client, path, [layer])
    with Image.open(download) as result:
        assert result.info.get("icc_profile") == icc and result.getexif().get(0x010F) == "Camera maker"


def test_a_note_leaves_how_later_photos_are_read(server, tmp_path, monkeypatch):
    """A harmless note returns gr.skip() for the editor value, and Gradio then re-creates that output component for
    the session with its own preprocess: the editor value the app reads must never be such an output. In a new
    session, "Nothing is painted" first, then a 16-bit photo: scaled by the app's reader, not clipped by Gradio's."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # gradio_client's empty folders, as in `client`
    session = Client(server, verbose=False, download_files=str(tmp_path))
    values = np.tile(np.linspace(0, 65535, 96), (64, 1)).round().astype(np.uint16)
    photo = save(Image.fromarray(values), tmp_path, "deep.png")
    empty = save(Image.new("RGBA", (96, 64), (0, 0, 0, 0)), tmp_path, "empty.png")
    assert call_loop(session, photo, [empty]) == (UNCHANGED,) * 7
    layer = save(painted_layer((96, 64), (10, 10, 30, 30)), tmp_path, "layer.png")
    _, _, (download, _), *_ = call(session, photo, [layer], dilate=0)
    hole = box_hole((96, 64), (10, 10, 30, 30))
    np.testing.assert_array_equal(np.asarray(Image.open(download))[~hole], (values / 257).round()[~hole])


def test_the_components_the_app_reads_itself_are_never_outputs(models, tmp_path):
    """Why the test above holds, for every event: no server event writes a component whose preprocess the app
    wraps (the editor relay, the raw_input options); Gradio would replace it after any gr.skip()."""
    demo = app.build_demo(models, workdir=tmp_path)
    wrapped = {block._id for block in demo.blocks.values() if "preprocess" in vars(block)}
    assert len(wrapped) >= 6  # photo, relay, strategy, dilate, texture, model
    photo = next(block._id for block in demo.blocks.values() if getattr(block, "elem_id", None) == "photo")
    for function in demo.fns.values():
        if function.fn is not None:
            # An example puts its photo in the photo box: a value, never an update (errors are raised).
            allowed = {photo} if function.name == "example" else set()
            assert not (wrapped - allowed) & {block._id for block in function.outputs}, function.name


def test_texture_from_the_photo_through_the_api(client, models, astronaut, tmp_path):
    """The "Texture from the photo" option, last input of /inpaint: exactly inpaint(texture=...) of the photo, only
    hole pixels change; left out, it is inpaint()'s default (calls written before it existed still work)."""
    photo = np.ascontiguousarray(astronaut[::2, ::2])  # 256×256: the texture stage is slow-ish on big photos
    path = save(Image.fromarray(photo), tmp_path, "photo.png")
    box = (60, 150, 110, 190)
    layer = save(painted_layer((256, 256), box), tmp_path, "layer.png")
    results = {}
    for texture in (False, True, None):
        options = {} if texture is None else {"texture": texture}
        _, _, (download, _), *_ = call(client, path, [layer], dilate=0, **options)
        results[texture] = np.asarray(Image.open(download))
    hole = box_hole((256, 256), box)
    for texture in (False, True):
        expected = pconv_hf.inpaint(
            Image.fromarray(photo), Image.fromarray(hole), model=models["tiny"], texture=texture
        )
        np.testing.assert_array_equal(results[texture], np.asarray(expected))
        np.testing.assert_array_equal(results[texture][~hole], photo[~hole])
    assert (results[True][hole] != results[False][hole]).any()
    np.testing.assert_array_equal(results[None], results[app.DEFAULT_TEXTURE])


def test_errors_show_no_server_paths_and_log_one_line(client, tmp_path, server_log):
    broken = tmp_path / "photo.jpg"
    broken.write_bytes(b"this is not a picture")
    with pytest.raises(AppError) as error:
        call(client, broken, [])
    message = str(error.value)
    assert "Could not read the uploaded photo" in message and "photo.jpg" in message
    assert "/tmp" not in message and "gradio/" not in message and str(tmp_path) not in message
    time.sleep(0.5)
    console = server_log.read_text()
    assert "refused: Could not read the uploaded photo" in console
    assert "Traceback" not in console  # every error so far was the user's: one line each


def test_editor_relay_skips_the_composite_and_reads_the_photo_itself(tmp_path, astronaut):
    with gr.Blocks():
        relay = app.EditorRelay(type="pil").relay
    rotated = Image.fromarray(astronaut[:, :300])
    exif = rotated.getexif()
    exif[0x0112] = 6
    background = tmp_path / "photo.jpg"
    rotated.save(background, exif=exif)
    broken = tmp_path / "composite.png"
    broken.write_bytes(b"not a picture")
    payload = relay.data_model(
        background=FileData(path=str(background)), layers=[], composite=FileData(path=str(broken))
    )
    value = relay.preprocess(payload)
    assert value["composite"] is None and value["background"].size == (512, 300)  # upright


def test_open_photo_turns_it_upright_8_bit_and_keeps_the_metadata(tmp_path):
    rotated = Image.new("RGB", (40, 30), "red")
    exif = rotated.getexif()
    exif[0x0112] = 6  # camera held upright: shown turned 90 degrees clockwise
    exif[0x010F] = "Camera maker"
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    photo, metadata = app.open_photo(tmp_path / "rotated.jpg")
    assert photo.size == (30, 40) and "exif" in metadata
    deep = Image.fromarray(np.full((4, 4), 0x1234, np.uint16))
    deep.save(tmp_path / "deep.png")
    grey, _ = app.open_photo(tmp_path / "deep.png")
    assert grey.mode == "L" and grey.getextrema() == (18, 18)  # 0x1234 * 255 / 65535 = 18.1
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    with pytest.raises(gr.Error, match="Could not read the uploaded photo") as error:
        app.open_photo(tmp_path / "broken.jpg")
    assert str(tmp_path) not in str(error.value)


# --- start-up: flags and models (issue 33, items 9 and 14) --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max_megapixels", "nan"], "--max_megapixels must be a number of megapixels above 0, not nan"),
        (["--max_megapixels", "-1"], "--max_megapixels must be a number of megapixels above 0, not -1.0"),
        (["--max_megapixels", "inf"], "--max_megapixels must be a number of megapixels above 0, not inf"),
        (["--history_steps", "-1"], "--history_steps must be a whole number from 0, not -1"),
        (["--history_mb", "-5"], "--history_mb must be a whole number from 0, not -5"),
        (["--concurrency", "-3"], "--concurrency must be a whole number from 1, not -3"),
        (["--concurrency", "0"], "--concurrency must be a whole number from 1, not 0"),
        (["--max_sessions", "0"], "--max_sessions must be a whole number from 1, not 0"),
    ],
)
def test_main_refuses_limits_that_would_turn_off_or_hang(argv, message, model_dir, monkeypatch, capsys):
    monkeypatch.setattr(app, "build_demo", lambda *args, **kwargs: pytest.fail("the app was started"))
    with pytest.raises(SystemExit) as exit:
        app.main(["--model", str(model_dir), "--device", "cpu", *argv])
    err = capsys.readouterr().err
    assert exit.value.code == 1 and err == f"app.py: error: {message}\n"


def test_build_demo_refuses_a_limit_that_is_not_a_number(models):
    with pytest.raises(ValueError, match="max_megapixels must be a number of megapixels above 0, not nan"):
        app.build_demo(models, max_megapixels=float("nan"))


def test_main_names_the_broken_model_among_many(model_dir, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    PConvUNet(layer_size=5, base_channels=8, sample_size=64).save_pretrained(runs / "good")
    broken = runs / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((model_dir / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors at all")
    monkeypatch.setattr(app, "build_demo", lambda *args, **kwargs: pytest.fail("the app was started"))
    with pytest.raises(SystemExit) as exit:
        app.main(["--model", str(model_dir), "--models_dir", str(runs), "--device", "cpu"])
    err = capsys.readouterr().err
    assert exit.value.code == 1 and f"could not load the model '{broken}'" in err and "Traceback" not in err
