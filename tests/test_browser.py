"""The app in a real browser (Debian's Chromium through Playwright): upload, paint with the brush, Inpaint.

A photo is uploaded into the photo box; the editor gets a copy of at most app.EDIT_SIDE pixels to paint on.
"""

import base64
import importlib.util
import io
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from playwright.sync_api import expect, sync_playwright
from skimage import data

from pconv_hf import PConvUNet, images
from pconv_hf.web.headless import APP_CHROMIUM_ARGS, CHROMIUM

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 30_000
EDITOR_HINT = "select the draw tool to start"  # shown by the ready editor until it has a photo
# Records the page's canvas encodes: the editor exports its canvas (background, painted layer, composite) with
# canvas.toBlob before sending it.
COUNT_ENCODES = """
window.__encodes = [];
const toBlob = HTMLCanvasElement.prototype.toBlob;
HTMLCanvasElement.prototype.toBlob = function (callback, type, quality) {
  const size = [this.width, this.height];
  return toBlob.call(this, (blob) => { window.__encodes.push(size); callback(blob); }, type, quality);
};
"""


def import_app():
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


def app_module():
    """app.py as the server fixture imported it."""
    return sys.modules["app"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with a tiny model, served from this process on a free port."""
    app = import_app()
    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("tiny-model")
    PConvUNet(layer_size=5, base_channels=8, sample_size=64).save_pretrained(model_dir)
    # One fill back: two fills already show the history's bound (the upload's state is dropped).
    workdir = tmp_path_factory.mktemp("sessions")
    demo = app.build_demo(app.load_models({"tiny": str(model_dir)}, device="cpu"), history_steps=1, workdir=workdir)
    app.demo_sessions = demo.sessions  # where the tests look for the sessions' files
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True, quiet=True)
    try:
        yield url
    finally:
        demo.close()


@pytest.fixture
def page(server):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=APP_CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)  # a 2-core CI machine renders and encodes slowly
        page.add_init_script(COUNT_ENCODES)
        page.goto(server)
        # (Not "networkidle": the app keeps a heartbeat connection open, as every Gradio app with a gr.State does.)
        expect(page.get_by_text(EDITOR_HINT)).to_be_visible()
        expect(page.locator("#photo input[type=file]")).to_be_attached()
        try:
            yield page
        finally:
            browser.close()


@contextmanager
def screenshot_on_failure(page, path: Path):
    try:
        yield
    except BaseException:
        page.screenshot(path=path, full_page=True)
        print(f"screenshot of the failure: {path}")
        raise


def upload(page, path: Path) -> None:
    """Upload a photo into the photo box and wait until the editor shows it."""
    page.locator("#photo input[type=file]").set_input_files(path)
    expect(page.get_by_text(EDITOR_HINT)).to_be_hidden()


def paint_stroke(page, length: int = 120, down: float = 0) -> None:
    """A horizontal brush stroke through the middle of the photo (the canvas shows it centred and fitted), or
    ``down`` canvas heights below it."""
    page.get_by_label("Brush", exact=True).click()
    canvas = page.locator("#editor canvas").first.bounding_box()
    center_x, center_y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] * (0.5 + down)
    page.mouse.move(center_x - length / 2, center_y)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(center_x - length / 2 + step * length / 12, center_y)
    page.mouse.up()


def inpaint_and_download(page, button: str = "Inpaint") -> tuple[np.ndarray, np.ndarray]:
    """Press ``button``, wait for the result, and fetch the two PNG downloads (result, mask) as arrays."""
    page.evaluate("window.__encodes = []")
    links = page.locator("#downloads a[href]")
    before = links.first.get_attribute("href") if links.count() else None
    page.get_by_role("button", name=button, exact=True).click()
    expect(page.locator("#result img")).to_be_visible()
    expect(links).to_have_count(2)
    if before is not None:
        expect(links.first).not_to_have_attribute("href", before)
    images = []
    for href in [links.nth(i).get_attribute("href") for i in range(2)]:
        response = page.request.get(href)
        assert response.ok, href
        with Image.open(io.BytesIO(response.body())) as image:
            assert image.format == "PNG", href  # lossless: the untouched pixels are compared exactly
            images.append(np.asarray(image))
    return images[0], images[1]


def test_upload_paint_and_inpaint(page, tmp_path):
    photo = data.coffee()  # 600 x 400
    photo_path = tmp_path / "coffee.png"
    Image.fromarray(photo).save(photo_path)

    with screenshot_on_failure(page, tmp_path / "failure.png"):
        upload(page, photo_path)
        paint_stroke(page)
        result, mask = inpaint_and_download(page)
        expect(page.get_by_text("Filled 1 region in")).to_be_visible()
    assert result.shape == photo.shape and mask.shape == photo.shape[:2]
    hole = mask > 0
    assert 0 < hole.mean() < 0.2
    rows, cols = np.nonzero(hole)
    assert abs(rows.mean() - 200) < 30 and abs(cols.mean() - 300) < 30  # the stroke landed where it was drawn
    np.testing.assert_array_equal(result[~hole], photo[~hole])  # the server inpainted the photo's exact pixels
    assert np.abs(result[hole].astype(int) - photo[hole]).mean() > 5


def drop_file(page, selector: str, path: Path) -> None:
    """Drag ``path`` from the desktop and drop it on ``selector`` (a DataTransfer holding the file)."""
    encoded = base64.b64encode(path.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([encoded, name]) => {
          const transfer = new DataTransfer();
          const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
          transfer.items.add(new File([bytes], name, {type: "image/png"}));
          return transfer;
        }""",
        [encoded, path.name],
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


def test_editor_before_a_photo_takes_a_drop_and_its_tool_bar_leaves_the_photo_alone(page, tmp_path):
    """Issue 33 item 18: before any photo the editor showed an 8-pixel canvas at 1000 % that took no drop; with the
    photo, its tool bar covered the photo's left edge."""
    photo_path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo_path)  # 600 x 400
    editor = page.locator("#editor")
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        page.wait_for_timeout(500)  # the editor draws its canvas and tools
        for hidden in (".zoom-number", "canvas >> nth=0", ".toolbar-wrap"):  # no 1000 %, no tools that do nothing
            expect(editor.locator(hidden)).to_be_hidden()
        hint = editor.locator(".image-container > .empty")
        assert "Upload or drop a photo" in hint.evaluate("e => getComputedStyle(e, '::before').content")
        drop_area, box = editor.locator(".image-container").bounding_box(), editor.bounding_box()
        assert drop_area["width"] > 0.9 * box["width"] and drop_area["height"] > 0.9 * box["height"]
        drop_file(page, "#editor .image-container", photo_path)  # the whole editor takes the drop
        expect(page.get_by_text(EDITOR_HINT)).to_be_hidden()
        expect(page.locator("#photo img")).to_be_visible()  # it went into the photo box, the one way in
        expect(editor.locator(".zoom-number")).not_to_have_text("1000%")  # the zoom follows once the photo is drawn
        zoom = int(editor.locator(".zoom-number").inner_text().strip().rstrip("%"))
        assert 50 <= zoom <= 100, zoom  # the photo fitted to the editor, not 1000 %
        page.wait_for_timeout(500)  # the canvas draws the photo
        canvas, toolbar = editor.locator("canvas").first.bounding_box(), editor.locator(".toolbar-wrap").bounding_box()
        shot = np.asarray(Image.open(io.BytesIO(editor.locator("canvas").first.screenshot())).convert("RGB"))
        row = shot[shot.shape[0] // 2].astype(int)
        shown = np.nonzero((row < 235).any(axis=-1))[0]  # the photo's pixels on the canvas's middle row
        left, right = canvas["x"] + shown[0], canvas["x"] + shown[-1]
        assert toolbar["x"] + toolbar["width"] < left, (toolbar, left)  # the bar beside the photo, not over it
        assert right - left == pytest.approx(600 * zoom / 100, abs=4)  # the whole width of the photo is shown


def test_big_photo_travels_as_screen_copies_and_downloads_full_size(page, tmp_path):
    """A 2400 x 1800 JPEG: the editor paints on a 1024-pixel copy and sends that back once per click, the page
    shows a 1600-pixel result, and the download is the full-size, lossless result of the original photo."""
    photo_path = tmp_path / "big.jpg"
    big = Image.fromarray(data.astronaut()).resize((2400, 1800), Image.Resampling.BICUBIC)
    big.save(photo_path, quality=90)
    photo = np.asarray(Image.open(photo_path))  # what the server reads: the uploaded file itself

    with screenshot_on_failure(page, tmp_path / "failure.png"):
        upload(page, photo_path)
        paint_stroke(page, length=60)
        result, mask = inpaint_and_download(page)
        expect(page.get_by_text("Filled 1 region in")).to_be_visible()
        shown_width = page.locator("#result img").evaluate("img => img.naturalWidth")
        encodes = page.evaluate("window.__encodes")
    app = app_module()
    assert shown_width == app.SCREEN_SIDE  # a screen copy, not the 2400-pixel result
    # One export per click (background, layer, composite), of the editor's copy: Gradio re-exports editors that
    # take part in server events, so the app keeps its editor out of them.
    assert encodes == [[app.EDIT_SIDE, app.EDIT_SIDE * 1800 // 2400]] * 3, encodes
    assert result.shape == photo.shape and mask.shape == photo.shape[:2]
    hole = mask > 0
    rows, cols = np.nonzero(hole)
    assert abs(rows.mean() - 900) < 60 and abs(cols.mean() - 1200) < 60
    np.testing.assert_array_equal(result[~hole], photo[~hole])


def test_example_brings_its_painted_layer(page, tmp_path):
    """An example fills the editor with photo + painted layer, aligned, so painting more keeps it in place.

    Gradio 6.31 pitfall: a layer arriving with a value is drawn offset inside the editor's initial canvas. The
    layers are only re-exported from the canvas once the person paints, hence the extra stroke.
    """
    app = app_module()
    value = app.examples()[-1]
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        page.locator("#examples .gallery-item").first.click()  # a second example must replace the first
        expect(page.get_by_text(EDITOR_HINT)).to_be_hidden()
        page.wait_for_timeout(500)
        page.locator("#examples .gallery-item").last.click()
        page.wait_for_timeout(1000)  # the editor loads photo and layer
        page.get_by_label("Brush", exact=True).click()
        canvas = page.locator("#editor canvas").first.bounding_box()
        left_x, center_y = canvas["x"] + canvas["width"] * 0.3, canvas["y"] + canvas["height"] / 2
        page.mouse.move(left_x, center_y)
        page.mouse.down()
        page.mouse.move(left_x + 30, center_y, steps=5)
        page.mouse.up()
        result, mask = inpaint_and_download(page)
        encodes = page.evaluate("window.__encodes")

    assert encodes == [list(Image.open(value["background"]).size)] * 3, encodes  # one export per click
    photo = np.asarray(Image.open(value["background"]))
    painted = np.asarray(Image.open(value["layers"][0]))[..., 3] > 0
    grown = cv2.dilate(painted.astype(np.uint8), np.ones((2 * app.DEFAULT_DILATE + 1,) * 2, np.uint8)) > 0
    hole = mask > 0
    assert hole[grown].all()  # the example's painted layer, where it was drawn
    assert hole[~grown].sum() > 100  # plus the new stroke
    np.testing.assert_array_equal(result[~hole], photo[~hole])


def test_edit_loop_two_fills_undo_redo_on_a_big_photo(page, server, tmp_path):
    """Inpaint, paint again on the result, Inpaint: the second fill keeps the first; Undo and Redo return the
    states exactly (bit for bit, full size); the history is bounded (one fill back in this server) and removed
    when the tab closes. 2400×1800: the editor paints on a 1024-pixel copy."""
    photo_path = tmp_path / "big.jpg"
    Image.fromarray(data.astronaut()).resize((2400, 1800), Image.Resampling.BICUBIC).save(photo_path, quality=90)
    photo = np.asarray(Image.open(photo_path))  # what the server reads: the uploaded file itself
    app = app_module()
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        upload(page, photo_path)
        paint_stroke(page, length=60)
        first, first_mask = inpaint_and_download(page)
        page.wait_for_timeout(1000)  # the editor gets the result's copy, nothing painted
        page.get_by_role("button", name="Inpaint", exact=True).click()
        expect(page.get_by_text("Nothing is painted").first).to_be_visible()
        paint_stroke(page, length=60, down=0.25)
        second, second_mask = inpaint_and_download(page)
        undone, undone_mask = inpaint_and_download(page, "Undo")
        redone, redone_mask = inpaint_and_download(page, "Redo")
        (folder,) = list(app.demo_sessions.root.glob("session-*"))
        kept = sorted(path.name for path in folder.glob("step-*"))
        undone_again, _ = inpaint_and_download(page, "Undo")  # the oldest state kept
        page.get_by_role("button", name="Undo", exact=True).click()
        expect(page.get_by_text("Nothing to undo").first).to_be_visible()

    hole1, hole2 = first_mask > 0, second_mask > 0
    np.testing.assert_array_equal(first[~hole1], photo[~hole1])
    assert np.nonzero(hole2)[0].mean() > np.nonzero(hole1)[0].mean() + 300  # the second stroke, lower down
    np.testing.assert_array_equal(second[~hole2], first[~hole2])  # the second fill keeps the first
    np.testing.assert_array_equal(second[~(hole1 | hole2)], photo[~(hole1 | hole2)])
    assert (second[hole1] != photo[hole1]).any()
    np.testing.assert_array_equal(undone, first)  # Undo: the previous state, exactly
    np.testing.assert_array_equal(undone_again, first)
    np.testing.assert_array_equal(undone_mask, first_mask)
    np.testing.assert_array_equal(redone, second)  # Redo: the next one
    np.testing.assert_array_equal(redone_mask, second_mask)
    assert len(kept) == 2  # bounded: the upload's state was dropped (history_steps=1)

    page.close()  # the session ends: its history goes with it
    deadline = time.monotonic() + 20
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folder.exists()


def photo_point(page, x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    """Where the photo's pixel (x, y) is on the screen: the editor's canvas shows the photo fitted and centred."""
    canvas = page.locator("#editor canvas").first.bounding_box()
    scale = min(canvas["width"] / size[0], canvas["height"] / size[1])
    left = canvas["x"] + (canvas["width"] - size[0] * scale) / 2
    top = canvas["y"] + (canvas["height"] - size[1] * scale) / 2
    return left + x * scale, top + y * scale


def test_loaded_mask_and_the_last_mask_are_filled_exactly(page, tmp_path):
    """Load mask: a thin mask on a photo bigger than the editor's copy is shown as paint and filled exactly as the
    file says (kept at full size on the server); Reuse last mask on the next photo fills it again."""
    photo_path = tmp_path / "big.jpg"
    Image.fromarray(data.astronaut()).resize((2400, 1800), Image.Resampling.BICUBIC).save(photo_path, quality=90)
    mask = np.zeros((1800, 2400), np.uint8)
    mask[900:902, 300:2100] = 255  # 2 pixels high: about 1 pixel of the editor's copy
    mask[400:600, 1700:1750] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    next_path = tmp_path / "next.jpg"
    Image.open(photo_path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(next_path, quality=90)
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        upload(page, photo_path)
        page.locator("#load_mask input[type=file], input[type=file][data-testid=file-upload]").last.wait_for(
            state="attached"
        )
        page.locator("#load_mask").locator("xpath=..").locator("input[type=file]").set_input_files(mask_path)
        expect(page.get_by_text("Mask mask.png loaded").first).to_be_visible()
        page.wait_for_timeout(1000)  # the editor gets the paint
        _, used = inpaint_and_download(page)
        upload(page, next_path)
        page.wait_for_timeout(1000)
        page.get_by_role("button", name="Reuse last mask", exact=True).click()
        expect(page.get_by_text("Last mask reused").first).to_be_visible()
        page.wait_for_timeout(1000)
        result, used_again = inpaint_and_download(page)
    app = app_module()
    grown = cv2.dilate(mask, np.ones((2 * app.DEFAULT_DILATE + 1,) * 2, np.uint8))  # Grow mask, 4 px
    np.testing.assert_array_equal(used, grown)
    np.testing.assert_array_equal(used_again, grown)
    photo = np.asarray(Image.open(next_path))
    np.testing.assert_array_equal(result[grown == 0], photo[grown == 0])


def test_select_object_by_dragging_a_box(page, tmp_path):
    """A red disc on a textured green background: a brush stroke from one corner of its box to the other, Select
    object, Inpaint: the mask used is the disc (grown by 4 px). Threshold 0.85: the disc's edge pixels and the
    4-pixel growth (about 0.08 of the area at this radius) are the expected differences."""
    rng = np.random.default_rng(0)
    size = (1200, 900)
    rows, columns = np.mgrid[: size[1], : size[0]]
    disc = (columns - 700) ** 2 + (rows - 400) ** 2 <= 150**2
    pixels = np.stack([60 + 0 * rows, 140 + 30 * np.sin(columns / 17), 70 + 0 * rows], axis=-1).astype(float)
    pixels[disc] = (200, 50, 40)
    pixels += rng.normal(0, 10, pixels.shape)
    photo_path = tmp_path / "disc.png"
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(photo_path)
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        upload(page, photo_path)
        page.get_by_label("Brush", exact=True).click()
        start, end = photo_point(page, 520, 220, size), photo_point(page, 880, 580, size)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=12)
        page.mouse.up()
        page.get_by_role("button", name="Select object", exact=True).click()
        expect(page.get_by_text("Selected").first).to_be_visible()
        page.wait_for_timeout(1000)
        _, used = inpaint_and_download(page)
    hole = used > 0
    iou = (hole & disc).sum() / (hole | disc).sum()
    assert iou > 0.85, iou


def test_heic_photo_from_a_phone(page, tmp_path):
    """A HEIC photo goes through the photo box (the browser cannot show it; the editor gets a JPEG copy) and the
    download keeps its EXIF."""
    photo = Image.fromarray(data.coffee())
    exif = photo.getexif()
    exif[0x010F] = "Phone maker"
    photo_path = tmp_path / "phone.heic"
    photo.save(photo_path, exif=exif.tobytes())
    with screenshot_on_failure(page, tmp_path / "failure.png"):
        upload(page, photo_path)
        paint_stroke(page)
        links = page.locator("#downloads a[href]")
        result, mask = inpaint_and_download(page)
        response = page.request.get(links.first.get_attribute("href"))
    with Image.open(io.BytesIO(response.body())) as download:
        assert download.getexif().get(0x010F) == "Phone maker"
    hole = mask > 0
    assert result.shape == (400, 600, 3) and 0 < hole.mean() < 0.2
    np.testing.assert_array_equal(result[~hole], np.asarray(images.open_image(photo_path))[~hole])


# --- the browser page (pconv-export --web), as a newcomer sees it (issue 33, item 19) -----------------------

# Every text the status line shows, in order.
RECORD_STATUS = """() => {
  window.__said = [];
  new MutationObserver(() => window.__said.push(document.getElementById("status").textContent))
    .observe(document.getElementById("status"), {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def web_page(tmp_path_factory):
    """The browser page with a tiny exported model, served on a free port; yields its URL."""
    import threading

    from pconv_hf.web import build_web, make_server

    torch.manual_seed(0)
    model = PConvUNet(layer_size=4, base_channels=8, sample_size=64).eval()
    site = build_web(model.export_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx"), tmp_path_factory.mktemp("w"))
    server = make_server(site, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_browser_page_follows_undo_and_says_what_is_loaded(web_page, tmp_path):
    """After Undo back to the unfilled photo the page no longer offers the fill's download nor says "Filled";
    Redo brings both back; the loaded files are named (the inputs are emptied, so the browser's own label would
    say "No file chosen"); the progress counts passes from 1."""
    from pconv_hf.web.headless import CHROMIUM_ARGS, fill_through_page

    photo, mask = tmp_path / "street.png", tmp_path / "street-mask.png"
    Image.fromarray(data.astronaut()).resize((256, 256)).save(photo)
    hole = np.zeros((256, 256), np.uint8)
    hole[100:140, 60:120] = 255
    Image.fromarray(hole).save(mask)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS * 4)
        expect.set_options(timeout=TIMEOUT_MS * 4)
        page.goto(web_page)
        page.evaluate(RECORD_STATUS)
        page.wait_for_function("() => document.body.dataset.model")  # the network is ready
        download, status = page.locator("#download"), page.locator("#status")
        try:
            fill_through_page(page, photo, mask, TIMEOUT_MS * 4)
            expect(page.locator("#photo-name")).to_have_text("street.png")
            expect(page.locator("#mask-name")).to_have_text("street-mask.png")
            expect(status).to_contain_text("Filled in")
            expect(download).to_have_attribute("aria-disabled", "false")
            said = page.evaluate("window.__said")
            assert not any("pass 0 of" in text for text in said), said
            assert any("network pass 1 of" in text for text in said), said

            page.click("#undo")  # back to the photo as loaded (with its mask)
            expect(status).to_contain_text("Undone")
            expect(download).to_have_attribute("aria-disabled", "true")
            expect(page.locator("#result")).not_to_have_attribute("src", re.compile("."))
            page.click("#redo")
            expect(status).to_contain_text("Redone")
            expect(download).to_have_attribute("aria-disabled", "false")
        finally:
            browser.close()
