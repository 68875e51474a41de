"""The browser page (pconv-export --web): built, served on 127.0.0.1 and driven in Chromium through its contract
(input#photo, input#mask, button#inpaint, img#result), its fills compared with Python ONNX Runtime's
inpaint(strategy="crop") on the same model file; plus the folder, the fp16 weights and the server on their own."""

import base64
import io
import json
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import onnx  # the [onnx] extra (setup.sh installs it); missing, these tests fail rather than skip
import pytest
import torch
from PIL import Image

import pconv_hf
from pconv_hf import PConvUNet
from pconv_hf.export_cli import main
from pconv_hf.images import open_image
from pconv_hf.web import ISOLATION_HEADERS, MANIFEST_FILE, ORT_FILES, build_web, make_server, store_weights_fp16

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
FILL_TIMEOUT_MS = 120_000
READ_RESULT = """async () => {
  const bytes = new Uint8Array(await (await fetch(document.getElementById("result").src)).arrayBuffer());
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}"""


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


@pytest.fixture(scope="module")
def server(site):
    server = make_server(site, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def base_url(server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"


# --- photos and masks --------------------------------------------------------------------------------------


def large_photo(folder: Path) -> tuple[Path, Path]:
    """A 2400x1600 PNG with two far-apart holes: a rectangle and a slanted stroke (two windows, both downscaled)."""
    from skimage import data

    photo = Image.fromarray(data.chelsea()).resize((2400, 1600), Image.Resampling.BICUBIC)
    mask = np.zeros((1600, 2400), np.uint8)
    mask[300:420, 350:520] = 255
    for step in range(90):
        mask[1150 + step : 1162 + step, 1800 + 2 * step : 1812 + 2 * step] = 255
    photo.save(folder / "large.png")
    Image.fromarray(mask).save(folder / "large-mask.png")
    return folder / "large.png", folder / "large-mask.png"


def rotated_photo(folder: Path) -> tuple[Path, Path]:
    """A 640x400 PNG whose EXIF orientation (6) shows it 400x640; its mask is drawn on the upright view."""
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((640, 400), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(folder / "rotated.png", exif=exif)
    mask = np.zeros((640, 400), np.uint8)
    mask[100:160, 60:140] = 255
    mask[480:520, 250:360] = 255
    Image.fromarray(mask).save(folder / "rotated-mask.png")
    return folder / "rotated.png", folder / "rotated-mask.png"


# --- the page ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def fill_on_page(page, photo: Path, mask: Path) -> Image.Image:
    from playwright.sync_api import expect

    before = page.get_attribute("#result", "src")
    page.set_input_files("#photo", str(photo))
    expect(page.locator("#mask")).to_be_enabled()
    page.set_input_files("#mask", str(mask))
    page.click("#inpaint", timeout=FILL_TIMEOUT_MS)
    page.wait_for_function(
        "before => { let src = document.getElementById('result').getAttribute('src'); return src && src !== before; }",
        arg=before,
        timeout=FILL_TIMEOUT_MS,
    )
    return Image.open(io.BytesIO(base64.b64decode(page.evaluate(READ_RESULT))))


def assert_matches_python(result: Image.Image, model_file: Path, photo: Path, mask: Path) -> None:
    upright = open_image(photo)
    expected = pconv_hf.load_model(model_file).inpaint(upright, mask, strategy="crop")
    hole = np.asarray(Image.open(mask)) > 0
    assert result.size == expected.size == upright.size
    result = np.asarray(result.convert("RGB")).astype(np.int16)
    expected, original = (np.asarray(image).astype(np.int16) for image in (expected, upright))
    assert np.array_equal(result[~hole], original[~hole]), "pixels outside the hole changed"
    difference = np.abs(result[hole] - expected[hole])
    assert difference.max() <= 2 and difference.mean() <= 0.5, (difference.max(), difference.mean())
    assert np.any(result[hole] != original[hole])


def test_page_fills_like_python_offline_and_caches_the_model(site, server, browser, tmp_path):
    """First visit: the model is downloaded and cached, a 2400x1600 photo with two separate holes is filled.
    Second visit: the model comes from Cache Storage (the server never sees it again) and an EXIF-rotated photo
    is filled. No request ever leaves 127.0.0.1, and wasm runs with threads (the server isolates the page)."""
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
        assert_matches_python(fill_on_page(page, photo, mask), site / "model.onnx", photo, mask)
        page.close()
        model_requests = [path for path in server.request_log if path.startswith("/model.onnx")]
        assert len(model_requests) == 1

        page = context.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.model", timeout=FILL_TIMEOUT_MS)
        assert page.evaluate("document.body.dataset.model") == "cache"
        photo, mask = rotated_photo(tmp_path)
        assert_matches_python(fill_on_page(page, photo, mask), site / "model.onnx", photo, mask)
        assert [path for path in server.request_log if path.startswith("/model.onnx")] == model_requests
    finally:
        context.close()
    assert requests and all(request.startswith(url) or request.startswith("blob:") for request in requests), [
        request for request in requests if not request.startswith(url)
    ]
    assert any(request.startswith(url + "ort/ort-wasm-simd-threaded") for request in requests)


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
    assert manifest["sample_size"] == 64 and manifest["size_multiple"] == 16 and manifest["weights"] == "float16"


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
    assert halved.stat().st_size < 0.7 * source.stat().st_size  # the tiny graph's nodes weigh too; 52 / 103 MB bundled
    image, valid = torch.rand(1, 3, 64, 96), (torch.rand(1, 1, 64, 96) > 0.3).float()
    expected, output = (pconv_hf.load_model(path)(image, valid) for path in (source, halved))
    assert torch.equal(output, expected)
    graph = onnx.load(halved).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert sum(node.op_type == "Cast" and node.name.endswith("__cast") for node in graph.node) > 10
    left = [t for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and np.prod(t.dims) >= 16]
    assert not left, [t.name for t in left]


def test_uint8_quantised_folder_is_smaller_and_still_fills(exported, tmp_path, astronaut):
    folder = build_web(exported, tmp_path / "q", quantize="uint8")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["weights"] == "uint8" and manifest["bytes"] < 0.6 * exported.stat().st_size
    mask = np.zeros(astronaut.shape[:2], np.uint8)
    mask[200:260, 220:300] = 255
    quantised = pconv_hf.load_model(folder / "model.onnx").inpaint(astronaut, mask, strategy="crop")
    plain = pconv_hf.load_model(exported).inpaint(astronaut, mask, strategy="crop")
    assert np.array_equal(quantised[mask == 0], astronaut[mask == 0])
    assert np.abs(quantised.astype(int) - plain.astype(int))[mask > 0].mean() < 8


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
