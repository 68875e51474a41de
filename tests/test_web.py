"""The browser page (pconv-export --web): built, served on 127.0.0.1 and driven in Chromium through its contract
(input#photo, input#mask, button#inpaint, img#result), its fills compared with Python ONNX Runtime's default
inpaint() (strategy="native") on the same model file, for float16 and uint8 weights; the page's JavaScript
pipeline run in node against Python's window planner and inpaint() with a stand-in network; plus the folder, the
stored weights and the server on their own."""

import json
import math
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import onnx  # the [onnx] extra (setup.sh installs it); missing, these tests fail rather than skip
import pytest
import torch
from PIL import Image

import pconv_hf
from pconv_hf import PConvUNet
from pconv_hf.cli.export import main
from pconv_hf.images import open_image
from pconv_hf.inpainting import inpaint
from pconv_hf.web import (
    ISOLATION_HEADERS,
    MANIFEST_FILE,
    ORT_FILES,
    STATIC,
    build_web,
    make_server,
    quantize_uint8,
    store_weights_fp16,
)
from pconv_hf.web.headless import CHROMIUM, CHROMIUM_ARGS, fill_through_page
from pconv_hf.windows import DEFAULT_MAX_PIXELS, plan_native_windows, plan_windows, refine_boxes

FILL_TIMEOUT_MS = 120_000


def tiny_model() -> PConvUNet:
    """4 levels, 8 base channels, 64 px windows: windows of a large photo are downscaled, so every step runs.
    BatchNorm statistics are made non-trivial so that the export must carry them."""
    torch.manual_seed(0)
    model = PConvUNet(layer_size=4, base_channels=8, sample_size=64)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return tiny_model().export_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def site(exported, tmp_path_factory) -> Path:
    return build_web(exported, tmp_path_factory.mktemp("site") / "web")


def serve(folder: Path):
    server = make_server(folder, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def server(site):
    yield from serve(site)


def base_url(server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


# --- photos and masks --------------------------------------------------------------------------------------


def large_photo(folder: Path) -> tuple[Path, Path]:
    """A 2400x1600 PNG with two far-apart holes: a 240x200 rectangle, too wide for the network's reach (filled
    downscaled, then its edge band refined at full scale), and a thin slanted stroke (filled at full scale)."""
    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((2400, 1600), Image.Resampling.BICUBIC)
    mask = np.zeros((1600, 2400), np.uint8)
    mask[300:540, 350:550] = 255
    for step in range(90):
        mask[1150 + step : 1162 + step, 1800 + 2 * step : 1812 + 2 * step] = 255
    photo.save(folder / "large.png")
    Image.fromarray(mask).save(folder / "large-mask.png")
    return folder / "large.png", folder / "large-mask.png"


def rotated_photo(folder: Path) -> tuple[Path, Path]:
    """A 640x400 PNG whose EXIF orientation (6) shows it 400x640; its mask is drawn on the upright view, with a
    hole wide enough that the windows cover the photo (one downscaled whole-photo window, refined)."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((640, 400), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(folder / "rotated.png", exif=exif)
    mask = np.zeros((640, 400), np.uint8)
    mask[100:260, 60:240] = 255
    mask[480:520, 250:360] = 255
    Image.fromarray(mask).save(folder / "rotated-mask.png")
    return folder / "rotated.png", folder / "rotated-mask.png"


def python_plan(mask: Path, sample_size: int = 64) -> list[list[float]]:
    """inpaint()'s native windows for a mask file as [top, left, height, width, scale, refine scale (0: none)]."""
    hole = np.asarray(Image.open(mask).convert("L")) > 0
    plan = []
    for window in plan_native_windows(hole, min_side=sample_size):
        fine = min(1.0, math.sqrt(DEFAULT_MAX_PIXELS / (window.box[2] * window.box[3])))
        plan.append([*window.box, window.scale, fine if fine >= 1.5 * window.scale else 0])
    return plan


# --- the page ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def fill_on_page(page, photo: Path, mask: Path) -> tuple[Image.Image, list]:
    """The page's filled PNG and its windows ([top, left, height, width, scale, refine scale] each)."""
    result = fill_through_page(page, photo, mask, FILL_TIMEOUT_MS)
    return result, json.loads(page.evaluate("document.body.dataset.windows"))


def assert_same_windows(page: list, python: list) -> None:
    """The same boxes, and scales equal up to float32 rounding of the chamfer hole width."""
    assert [window[:4] for window in page] == [window[:4] for window in python]
    assert [window[4:] for window in page] == [pytest.approx(window[4:], rel=1e-6) for window in python]


def assert_matches_python(result: Image.Image, model_file: Path, photo: Path, mask: Path) -> tuple[int, float]:
    """The page's result against Python ONNX Runtime's default inpaint() on the same file: exact outside the hole,
    within 2 grey levels (mean <= 0.5) inside. Returns the largest and mean difference in the hole."""
    upright = open_image(photo)
    expected = pconv_hf.load_model(model_file).inpaint(upright, mask)  # the default strategy: "native"
    hole = np.asarray(Image.open(mask)) > 0
    assert result.size == expected.size == upright.size
    result = np.asarray(result.convert("RGB")).astype(np.int16)
    expected, original = (np.asarray(image).astype(np.int16) for image in (expected, upright))
    assert np.array_equal(result[~hole], original[~hole]), "pixels outside the hole changed"
    difference = np.abs(result[hole] - expected[hole])
    assert difference.max() <= 2 and difference.mean() <= 0.5, (difference.max(), difference.mean())
    assert np.any(result[hole] != original[hole])
    print(f"{photo.name}: page vs Python in the hole: max {difference.max()}, mean {difference.mean():.5f}")
    return int(difference.max()), float(difference.mean())


def test_page_fills_like_python_offline_and_caches_the_model(site, server, browser, tmp_path):
    """First visit: the model is downloaded and cached, a 2400x1600 photo with two separate holes is filled (one
    window downscaled and refined, one at full scale). Second visit: the model comes from Cache Storage (the
    server never sees it again) and an EXIF-rotated photo is filled. No request ever leaves 127.0.0.1, and wasm
    runs with threads (the server isolates the page)."""
    url = base_url(server)
    context = browser.new_context()
    requests = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.model", timeout=FILL_TIMEOUT_MS)
        assert page.evaluate("document.body.dataset.model") == "network"
        assert page.evaluate("crossOriginIsolated") is True
        threads = page.evaluate("Math.min(4, navigator.hardwareConcurrency)")
        assert f"wasm, {threads} thread" in page.text_content("#engine")  # more than one where the CPU has them
        photo, mask = large_photo(tmp_path)
        plan = python_plan(mask)
        assert len(plan) == 2 and {window[4] < 1 for window in plan} == {True, False}  # one downscaled, one not
        assert any(window[5] > window[4] for window in plan)  # and the downscaled one is refined
        result, windows = fill_on_page(page, photo, mask)
        assert_same_windows(windows, plan)
        assert_matches_python(result, site / "model.onnx", photo, mask)
        page.close()
        model_requests = [path for path in server.request_log if path.startswith("/model.onnx")]
        assert len(model_requests) == 1

        page = context.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.model", timeout=FILL_TIMEOUT_MS)
        assert page.evaluate("document.body.dataset.model") == "cache"
        photo, mask = rotated_photo(tmp_path)
        plan = python_plan(mask)
        assert len(plan) == 1 and plan[0][:4] == [0, 0, 640, 400] and 0 < plan[0][4] < plan[0][5]
        result, windows = fill_on_page(page, photo, mask)
        assert_same_windows(windows, plan)
        assert_matches_python(result, site / "model.onnx", photo, mask)
        assert [path for path in server.request_log if path.startswith("/model.onnx")] == model_requests
    finally:
        context.close()
    assert requests and all(request.startswith(url) or request.startswith("blob:") for request in requests), [
        request for request in requests if not request.startswith(url)
    ]
    assert any(request.startswith(url + "ort/ort-wasm-simd-threaded") for request in requests)


def test_uint8_page_fills_like_python(exported, browser, tmp_path, astronaut):
    """--quantize uint8 stores the kernels as uint8 with a DequantizeLinear in the graph, so ONNX Runtime Web and
    Python ONNX Runtime compute the same float convolutions: the page meets the same target as with float16, on a
    photo whose window is downscaled and refined; crop stays reachable (?strategy=crop) and matches Python's crop."""
    folder = build_web(exported, tmp_path / "q", quantize="uint8")
    graph = onnx.load(folder / "model.onnx").graph
    # Every learned kernel (the decoder's split in two: the phases over the upsampled features, the skip part) is
    # stored as uint8 and dequantised; only the partial convolutions' windows of ones are not.
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    # Every learned kernel (4-D, not the partial convolutions' windows of ones), also those the exporter folded
    # into phase kernels; the biases (also 4-D, as (1, C, 1, 1) views) stay float16.
    arrays = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(exported).graph.initializer}
    kernels = {name for name, a in arrays.items() if a.ndim == 4 and a.shape[2:] != (1, 1) and np.ptp(a) > 0}
    assert any(a.ndim == 4 and a.shape[2:] == (1, 1) for a in arrays.values())
    assert dequantized == kernels and len(dequantized) >= 8  # the tiny model's 8 kernels and more
    assert not any(node.op_type.startswith(("QLinear", "ConvInteger", "DynamicQuantize")) for node in graph.node)
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    mask = np.zeros(astronaut.shape[:2], np.uint8)
    mask[180:300, 200:310] = 255
    Image.fromarray(mask).save(tmp_path / "astronaut-mask.png")
    photo, mask_file = tmp_path / "astronaut.png", tmp_path / "astronaut-mask.png"
    plan = python_plan(mask_file)
    assert len(plan) == 1 and 0 < plan[0][4] < 1 and plan[0][5] > plan[0][4]
    server = serve(folder)
    url = base_url(next(server))
    try:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.model", timeout=FILL_TIMEOUT_MS)
        assert "uint8 weights" in page.text_content("#engine")
        result, windows = fill_on_page(page, photo, mask_file)
        assert_same_windows(windows, plan)
        assert_matches_python(result, folder / "model.onnx", photo, mask_file)
        page.goto(url + "?strategy=crop")
        page.wait_for_function("document.body.dataset.model", timeout=FILL_TIMEOUT_MS)
        result, _ = fill_on_page(page, photo, mask_file)
        expected = pconv_hf.load_model(folder / "model.onnx").inpaint(astronaut, mask, strategy="crop")
        difference = np.abs(np.asarray(result.convert("RGB")).astype(int) - expected.astype(int))
        assert difference[mask > 0].max() <= 2 and np.array_equal(difference[mask == 0], 0 * difference[mask == 0])
        page.close()
    finally:
        next(server, None)


# --- the JavaScript pipeline in node, against Python ---------------------------------------------------------

NODE_DRIVER = r"""
import fs from "fs";
const [staticDir, requestPath] = process.argv.slice(2);
const { fillHoles, planFill } = await import(`file://${staticDir}/pipeline.js`);
const ops = await import(`file://${staticDir}/imageops.js`);
const request = JSON.parse(fs.readFileSync(requestPath, "utf8"));
const read = (path, Type = Uint8Array) => {
  const bytes = fs.readFileSync(path);
  return new Type(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
};
const { height, width, options } = request;
// The stand-in network (WAVE in Python): known pixels halved plus a wave over canvas positions, in float32, so
// a window in the wrong place, at the wrong scale or on the wrong canvas shows.
async function run(image, valid, canvasHeight, canvasWidth) {
  const plane = canvasHeight * canvasWidth;
  const out = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < canvasHeight; y++) {
      for (let x = 0; x < canvasWidth; x++) {
        const i = y * canvasWidth + x;
        const known = Math.fround(Math.fround(valid[i] * image[c * plane + i]) * 0.5);
        out[c * plane + i] = known + Math.fround(0.3 + 0.4 * Math.sin(0.05 * x + 0.03 * y + c));
      }
    }
  }
  return out;
}
let answer;
if (request.mode === "plan") {
  answer = planFill(read(request.hole), height, width, options);
} else if (request.mode === "fill") {
  const result = await fillHoles(read(request.rgba), read(request.hole), height, width, { ...options, run });
  fs.writeFileSync(request.out, result.rgba);
  answer = result.windows;
} else if (request.mode === "ops") {
  const image = read(request.image, Float32Array);
  const [h, w] = [request.imageHeight, request.imageWidth];
  fs.writeFileSync(request.out + ".distance", ops.chamferDistance(read(request.hole), height, width));
  const imageRow = (y, row) => row.set(image.subarray(y * w * 3, (y + 1) * w * 3));
  const area = ops.resizeAreaRows(imageRow, h, w, 3, ...request.down);
  fs.writeFileSync(request.out + ".area", area);
  const cubic = new ops.CubicRows(image, h, w, 3, ...request.up);
  const up = new Float32Array(request.up[0] * request.up[1] * 3);
  for (let y = 0; y < request.up[0]; y++) up.set(cubic.row(y), y * request.up[1] * 3);
  fs.writeFileSync(request.out + ".cubic", up);
}
process.stdout.write(JSON.stringify(answer ?? null));
"""


class Wave:
    """A stand-in network for inpaint(): NODE_DRIVER's run() in PyTorch."""

    sample_size = 64
    size_multiple = 16
    device = torch.device("cpu")
    dtype = torch.float32

    def __call__(self, image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        _, channels, height, width = image.shape
        y, x = torch.meshgrid(
            torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
        )
        wave = torch.stack([0.3 + 0.4 * torch.sin(0.05 * x + 0.03 * y + c) for c in range(channels)]).float()
        return (valid * image) * 0.5 + wave


def run_node(folder: Path, request: dict):
    driver = folder / "driver.mjs"
    driver.write_text(NODE_DRIVER)
    (folder / "request.json").write_text(json.dumps(request))
    node = shutil.which("node")
    assert node, "node is missing (it comes with npm, which scripts/setup.sh needs for the page's runtime)"
    answer = subprocess.run(
        [node, str(driver), str(STATIC), str(folder / "request.json")], capture_output=True, text=True, check=True
    )
    return json.loads(answer.stdout)


def synthetic_masks():
    """Masks that take every path of the planner: a wide disc, a long thin stroke (the pixel budget), speckles
    (more groups than MAX_WINDOWS), a mask whose windows cover the photo, and scattered holes (many windows)."""
    rng = np.random.default_rng(3)
    height, width = 1600, 2400
    yy, xx = np.mgrid[:height, :width]
    disc = ((yy - 800) ** 2 + (xx - 1200) ** 2) < 500**2
    stroke = np.zeros((height, width), bool)
    for step in range(2000):
        stroke[200 + step * 6 // 10 : 210 + step * 6 // 10, 100 + step : 108 + step] = True
    speckles = rng.random((height, width)) < 0.0004
    cover = np.zeros((height, width), bool)
    cover[100:1500, 100:2300] = True
    masks = {"disc": disc, "stroke": stroke, "speckles": speckles, "cover": cover}
    for k in range(2):
        scattered = np.zeros((height, width), bool)
        for _ in range(40):
            top, left = rng.integers(0, height), rng.integers(0, width)
            scattered[top : top + rng.integers(1, 40), left : left + rng.integers(1, 80)] = True
        masks[f"scattered {k}"] = scattered
    return masks


def test_page_plans_the_same_windows_as_python(tmp_path):
    """windows.js against pconv_hf.windows, exactly: boxes, scales (the chamfer hole width, the pixel budget, the
    merging) and which windows get the refine pass; and the crop strategy's windows."""
    paths = set()
    for name, hole in synthetic_masks().items():
        hole.astype(np.uint8).tofile(tmp_path / "hole.bin")
        request = {"mode": "plan", "height": hole.shape[0], "width": hole.shape[1], "hole": str(tmp_path / "hole.bin")}
        native = run_node(tmp_path, {**request, "options": {"strategy": "native", "sampleSize": 64}})
        crop = run_node(tmp_path, {**request, "options": {"strategy": "crop", "sampleSize": 64}})
        expected = []
        for window in plan_native_windows(hole, min_side=64):
            fine = min(1.0, math.sqrt(DEFAULT_MAX_PIXELS / (window.box[2] * window.box[3])))
            expected.append([*window.box, window.scale, fine if fine >= 1.5 * window.scale else 0])
            if window.scale < min(1.0, 64 / window.hole_width):
                paths.add("budget")  # downscaled further than the hole's width asks, to fit max_pixels
        got = [[w["top"], w["left"], w["height"], w["width"], w["scale"], w["refine"]] for w in native]
        assert got == expected, name
        boxes = plan_windows(hole, 64)
        assert [[w["top"], w["left"], w["height"], w["width"]] for w in crop] == [list(box) for box in boxes], name
        paths.add("several" if len(got) > 5 else "one")
    assert {"several", "budget"} <= paths


def test_page_fills_a_photo_of_the_training_size_whole_like_python(tmp_path):
    """Issue 31's rule in windows.js: a photo no bigger than the training size is one window at scale 1, however
    wide its hole (here wider than ``reach``, which would downscale it on a larger photo)."""
    hole = np.zeros((60, 50), bool)
    hole[5:55, 5:40] = True
    hole.astype(np.uint8).tofile(tmp_path / "hole.bin")
    request = {"mode": "plan", "height": 60, "width": 50, "hole": str(tmp_path / "hole.bin")}
    native = run_node(tmp_path, {**request, "options": {"strategy": "native", "sampleSize": 64, "reach": 16}})
    expected = [[*w.box, w.scale] for w in plan_native_windows(hole, reach=16, min_side=64)]
    assert expected == [[0, 0, 60, 50, 1.0]]
    assert [[w["top"], w["left"], w["height"], w["width"], w["scale"]] for w in native] == expected


def test_page_pipeline_matches_inpaint_with_a_stand_in_network(tmp_path):
    """pipeline.js's fill against inpaint() with the same stand-in network, native (a downscaled, refined window,
    two at full scale) and crop: exact outside the hole, within 1 grey level inside."""
    rng = np.random.default_rng(0)
    height, width = 900, 1300
    photo = np.asarray(
        Image.fromarray((rng.random((height // 4, width // 4, 3)) * 255).astype(np.uint8)).resize((width, height))
    )
    yy, xx = np.mgrid[:height, :width]
    hole = ((yy - 300) ** 2 + (xx - 400) ** 2) < 130**2
    for step in range(120):
        hole[700 + step // 3 : 708 + step // 3, 900 + step * 2 : 908 + step * 2] = True
    hole[50:60, 1200:1290] = True
    np.concatenate([photo, np.full((height, width, 1), 255, np.uint8)], 2).tofile(tmp_path / "rgba.bin")
    hole.astype(np.uint8).tofile(tmp_path / "hole.bin")
    request = {"mode": "fill", "height": height, "width": width, "rgba": str(tmp_path / "rgba.bin"),
               "hole": str(tmp_path / "hole.bin"), "out": str(tmp_path / "out.bin")}  # fmt: skip
    for strategy in ("native", "crop"):
        windows = run_node(tmp_path, {**request, "options": {"strategy": strategy, "sampleSize": 64, "multiple": 16}})
        if strategy == "native":
            assert len(windows) == 3 and sum(w["refine"] > 0 for w in windows) == 1
        result = np.fromfile(tmp_path / "out.bin", np.uint8).reshape(height, width, 4)
        expected = inpaint(Wave(), photo, hole, strategy=strategy)
        assert np.array_equal(result[..., :3][~hole], photo[~hole]) and (result[..., 3] == 255).all()
        difference = np.abs(result[..., :3].astype(int) - expected.astype(int))[hole]
        assert difference.max() <= 1 and difference.mean() < 1e-3, (strategy, difference.max(), difference.mean())


def test_page_refines_a_wide_stroke_on_the_same_boxes_as_python(tmp_path):
    """A wide diagonal stroke: one downscaled window whose edge band the refine pass refills on several boxes
    (pconv_hf.windows.refine_boxes); pipeline.js's fill with the stand-in network, whose output depends on each
    box's canvas, matches inpaint()'s, so its boxes are Python's."""
    rng = np.random.default_rng(1)
    height, width = 800, 1400
    photo = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    hole = np.zeros((height, width), np.uint8)
    cv2.line(hole, (60, 60), (1340, 740), 1, 110)
    hole = hole.view(bool)
    (window,) = plan_native_windows(hole, min_side=64)
    band = hole & (cv2.distanceTransform(hole.view(np.uint8), cv2.DIST_L2, 5) <= 32)
    assert window.scale < 1 / 1.5 and len(refine_boxes(band, 1.0, min_side=64)) > 2
    np.concatenate([photo, np.full((height, width, 1), 255, np.uint8)], 2).tofile(tmp_path / "rgba.bin")
    hole.astype(np.uint8).tofile(tmp_path / "hole.bin")
    request = {"mode": "fill", "height": height, "width": width, "rgba": str(tmp_path / "rgba.bin"),
               "hole": str(tmp_path / "hole.bin"), "out": str(tmp_path / "out.bin"),
               "options": {"strategy": "native", "sampleSize": 64, "multiple": 16}}  # fmt: skip
    (page_window,) = run_node(tmp_path, request)
    assert page_window["refine"] == 1.0
    result = np.fromfile(tmp_path / "out.bin", np.uint8).reshape(height, width, 4)
    expected = inpaint(Wave(), photo, hole)
    assert np.array_equal(result[..., :3][~hole], photo[~hole])
    difference = np.abs(result[..., :3].astype(int) - expected.astype(int))[hole]
    assert difference.max() <= 1 and difference.mean() < 1e-3, (difference.max(), difference.mean())


def test_page_pixel_operations_match_opencv(tmp_path):
    """imageops.js against OpenCV: INTER_AREA bit-exact; the 5x5 chamfer distance transform (what
    cv2.distanceTransform(DIST_L2, 5) is: not the exact Euclidean one) and bicubic within float32 rounding."""
    rng = np.random.default_rng(1)
    height, width = 203, 157
    yy, xx = np.mgrid[:height, :width]
    hole = (((yy - 100) ** 2 + (xx - 80) ** 2) < 70**2) | (rng.random((height, width)) < 0.02)
    hole[:10, 100:] = True
    image = rng.random((123, 157, 3)).astype(np.float32)
    hole.astype(np.uint8).tofile(tmp_path / "hole.bin")
    image.tofile(tmp_path / "image.bin")
    out = tmp_path / "ops"
    run_node(tmp_path, {"mode": "ops", "height": height, "width": width, "hole": str(tmp_path / "hole.bin"),
                        "image": str(tmp_path / "image.bin"), "imageHeight": 123, "imageWidth": 157,
                        "down": [61, 78], "up": [300, 401], "out": str(out)})  # fmt: skip
    distance = np.fromfile(f"{out}.distance", np.float32).reshape(height, width)
    expected = cv2.distanceTransform(hole.view(np.uint8), cv2.DIST_L2, 5)
    # OpenCV's build (IPP) rounds a few sums along knight-move lines one float32 step higher: 36 of 31,871 here.
    assert np.abs(distance - expected).max() <= 1e-5 and np.mean(distance == expected) > 0.99
    area = np.fromfile(f"{out}.area", np.float32).reshape(61, 78, 3)
    assert np.array_equal(area, cv2.resize(image, (78, 61), interpolation=cv2.INTER_AREA))
    cubic = np.fromfile(f"{out}.cubic", np.float32).reshape(300, 401, 3)
    expected = np.clip(cv2.resize(image, (401, 300), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.abs(cubic - expected).max() < 2e-5


# --- the folder, the model and the server --------------------------------------------------------------------


def test_folder_holds_page_runtime_and_model(site):
    names = {path.name for path in site.iterdir()}
    assert {"index.html", "app.js", "worker.js", "windows.js", "pipeline.js", "model.onnx", MANIFEST_FILE} <= names
    assert {path.name for path in (site / "ort").iterdir()} == set(ORT_FILES)
    html = (site / "index.html").read_text()
    for contract in ('id="photo"', 'id="mask"', 'id="inpaint"', 'id="result"'):
        assert contract in html
    for text in [html] + [path.read_text() for path in site.glob("*.js")]:
        assert "cdn" not in text.lower() and "https://cdn" not in text  # the runtime is the folder's own
    manifest = json.loads((site / MANIFEST_FILE).read_text())
    assert manifest["bytes"] == (site / "model.onnx").stat().st_size
    assert manifest["sample_size"] == 64 and manifest["size_multiple"] == 1 and manifest["weights"] == "float16"


def test_fp16_weights_halve_the_file_and_keep_fp16_valued_weights_exact(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())  # as the bundled model's (stored in fp16)
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.copy_(buffer.half().float())
    source = model.export_onnx(tmp_path / "fp32.onnx")
    halved = tmp_path / "fp16.onnx"
    onnx.save(store_weights_fp16(onnx.load(source)), halved)
    # The weights halve (the file too for the bundled model, 52 / 104 MB; the tiny graph's nodes weigh as much).
    weight_bytes = [sum(len(t.raw_data) for t in onnx.load(path).graph.initializer) for path in (source, halved)]
    assert weight_bytes[1] < 0.52 * weight_bytes[0]
    assert halved.stat().st_size < source.stat().st_size - 0.45 * weight_bytes[0]
    image, valid = torch.rand(1, 3, 64, 96), (torch.rand(1, 1, 64, 96) > 0.3).float()
    expected, output = (pconv_hf.load_model(path)(image, valid) for path in (source, halved))
    # The model's own weights are stored exactly; only the kernels the exporter summed from them ahead round.
    torch.testing.assert_close(output, expected, rtol=0, atol=2e-3)
    stored = {t.name.removesuffix("__fp16"): onnx.numpy_helper.to_array(t) for t in onnx.load(halved).graph.initializer}
    for name, parameter in model.state_dict().items():
        if name in stored and parameter.numel() >= 16:
            assert np.array_equal(stored[name].astype(np.float32), parameter.numpy()), name
    graph = onnx.load(halved).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert sum(node.op_type == "Cast" and node.name.endswith("__cast") for node in graph.node) > 10
    left = [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) >= 16]
    assert not left, [t.name for t in left]


def test_uint8_kernels_are_a_quarter_and_fill_close_to_float(exported, tmp_path, astronaut):
    """The uint8 file holds each kernel as uint8 codes (a quarter of float32), dequantises to within half a step
    of every weight, keeps the windows of ones exact, and fills close to the float model."""
    weights = np.random.default_rng(0).normal(size=(8, 3, 5, 5)).astype(np.float32)
    codes, scale, zero_point = quantize_uint8(weights)
    restored = (codes.astype(np.float32) - zero_point[:, None, None, None]) * scale[:, None, None, None]
    assert codes.dtype == np.uint8 and np.all(np.abs(restored - weights) <= scale[:, None, None, None] * 0.5001)
    folder = build_web(exported, tmp_path / "q", quantize="uint8")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["weights"] == "uint8"
    graph = onnx.load(folder / "model.onnx").graph
    sizes = {t.name: (t.data_type, int(np.prod(t.dims))) for t in graph.initializer}
    source = {t.name: int(np.prod(t.dims)) for t in onnx.load(exported).graph.initializer}
    for name, count in source.items():
        if name.endswith("conv.weight"):
            assert sizes[f"{name}__uint8"] == (onnx.TensorProto.UINT8, count)
        if name.endswith("window_ones"):
            assert f"{name}__fp16" in sizes or sizes[name][0] == onnx.TensorProto.FLOAT
    mask = np.zeros(astronaut.shape[:2], np.uint8)
    mask[200:260, 220:300] = 255
    quantised = pconv_hf.load_model(folder / "model.onnx").inpaint(astronaut, mask)
    plain = pconv_hf.load_model(exported).inpaint(astronaut, mask)
    assert np.array_equal(quantised[mask == 0], astronaut[mask == 0])
    assert np.abs(quantised.astype(int) - plain.astype(int))[mask > 0].mean() < 2


def test_build_refuses_a_folder_it_did_not_write_and_rebuilds_its_own(exported, site, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an earlier pconv web folder"):
        build_web(exported, other)
    assert (other / "notes.txt").read_text() == "keep me"
    copy = shutil.copytree(site, tmp_path / "copy")
    assert build_web(exported, copy) == copy and (copy / "model.onnx").is_file()
    with pytest.raises(ValueError, match="npm ci --prefix"):
        build_web(exported, tmp_path / "new", ort_dist_dir=tmp_path)


def test_server_sends_isolation_headers_and_wasm_type(server):
    url = base_url(server)
    with urllib.request.urlopen(url + "ort/ort-wasm-simd-threaded.wasm") as response:
        assert response.headers["Content-Type"] == "application/wasm"
        for key, value in ISOLATION_HEADERS.items():
            assert response.headers[key] == value
    with urllib.request.urlopen(url + "worker.js") as response:
        assert response.headers["Content-Type"].startswith("text/javascript")


def test_cli_web_and_errors(exported, tmp_path, capsys):
    main(["--web", str(tmp_path / "site"), "--model", str(exported)])
    assert "pconv-export --serve" in capsys.readouterr().out
    assert (tmp_path / "site" / "index.html").is_file()
    for argv, message in [
        (["--web", str(tmp_path / "x"), "--model", str(exported), "out.onnx"], "takes one model"),
        (["--serve", str(tmp_path / "nothing")], "is not a pconv web folder"),
        (["--web", str(tmp_path / "y"), "--serve", str(tmp_path / "site")], "one at a time"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 1
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("pconv-export: error: ") and message in error


def test_the_page_says_it_runs_the_network_only_fill():
    """The texture stage is not ported to the page: the page says so where a user reads first, and the
    inpaint() call it matches is the network-only one (texture=False)."""
    page = (Path(pconv_hf.web.__file__).parent / "static" / "index.html").read_text()
    header = page[page.index("<header>") : page.index("</header>")]
    assert "network-only fill" in header and "--texture" in header
