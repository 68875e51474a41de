"""The browser page: a static folder that fills photos with ONNX Runtime Web, and a local server for it.

    pconv-export --web site/                      # the bundled model, fp16-stored weights (52 MB)
    pconv-export --web site/ --quantize uint8     # uint8 kernels, dequantised in the graph (26 MB)
    pconv-export --serve site/                    # http://127.0.0.1:8000 with the headers wasm threads need

The folder holds ``index.html``, the page's ES modules (``static/`` here, copied as they are: no build step),
the ONNX Runtime Web runtime under ``ort/`` (copied from the pinned npm package in ``package.json`` next to this
file, installed by ``npm ci``; never a CDN) and ``model.onnx`` with ``model.json`` (its config, size and hash).
See docs/web.md.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import secrets
import shutil
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..engines import onnx_size_multiple
from ..onnx import CONFIG_KEY

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
ORT_PACKAGE = "onnxruntime-web"
ORT_DIST_ENV = "PCONV_HF_ORT_DIST"
# The runtime files the page loads: the wasm build (always) and the WebGPU build (used when an adapter exists).
ORT_FILES = (
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
)
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "model.json"
QUANTIZE_CHOICES = ("uint8",)
# Initialisers with fewer elements (scalars, clip bounds, epsilons) stay float32: fp16 could change their value.
MIN_FP16_ELEMENTS = 16
# Whatever a static host serves; the local server adds what cross-origin isolation (wasm threads) needs.
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


# --- the runtime -------------------------------------------------------------------------------------------


def pinned_ort_version() -> str:
    """The onnxruntime-web version ``package.json`` pins."""
    return json.loads((HERE / "package.json").read_text())["dependencies"][ORT_PACKAGE]


def ort_dist(path: str | os.PathLike | None = None) -> Path:
    """The folder holding ONNX Runtime Web's ``dist`` files: ``path``, ``$PCONV_HF_ORT_DIST``, or the npm install here.

    Raises:
        ValueError: saying how to install the pinned runtime when the files are not there.
    """
    candidates = [Path(path)] if path is not None else []
    if path is None and os.environ.get(ORT_DIST_ENV):
        candidates.append(Path(os.environ[ORT_DIST_ENV]))
    if path is None:
        candidates.append(HERE / "node_modules" / ORT_PACKAGE / "dist")
    for folder in candidates:
        if all((folder / name).is_file() for name in ORT_FILES):
            return folder
    missing = ", ".join(str(folder) for folder in candidates)
    raise ValueError(
        f"ONNX Runtime Web files ({', '.join(ORT_FILES[:3])}, ...) not found in {missing}; install the pinned "
        f"runtime with `npm ci --prefix {HERE}` (bash scripts/setup.sh does it), or `npm install "
        f"{ORT_PACKAGE}@{pinned_ort_version()}` elsewhere and pass --ort-dist .../node_modules/{ORT_PACKAGE}/dist"
    )


# --- the model ---------------------------------------------------------------------------------------------


def store_weights_fp16(model: Any, keep: frozenset[str] = frozenset()) -> Any:
    """An ONNX model whose float32 weights are stored as float16, each followed by a Cast back to float32.

    The graph still computes in float32 and its inputs and outputs keep their types; only the file halves. Weights
    that are float16 values already (the bundled model's) are stored exactly; kernels the exporter computed ahead
    from them (the phase kernels of the decoder's small layers, sums of weights) round to float16, which moves the
    output by about 1e-4. Initialisers named in ``keep`` stay as they are.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts = []
    for tensor in graph.initializer:
        if tensor.data_type != TensorProto.FLOAT or int(np.prod(tensor.dims)) < MIN_FP16_ELEMENTS:
            continue
        if tensor.name in keep:
            continue
        values = numpy_helper.to_array(tensor)
        if not np.all(np.abs(values) <= np.finfo(np.float16).max):
            continue
        name = tensor.name
        half = numpy_helper.from_array(values.astype(np.float16), f"{name}__fp16")
        tensor.CopyFrom(half)
        casts.append(helper.make_node("Cast", [half.name], [name], to=TensorProto.FLOAT, name=f"{name}__cast"))
    _prepend_nodes(graph, casts)
    return model


def quantize_uint8(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-output-channel affine uint8 codes of a float kernel (axis 0): ``(codes, scale, zero_point)`` with
    ``(codes - zero_point) * scale`` close to ``weights``; each channel's range includes 0, so 0 stays exact."""
    flat = weights.reshape(len(weights), -1).astype(np.float64)
    low, high = np.minimum(flat.min(axis=1), 0.0), np.maximum(flat.max(axis=1), 0.0)
    scale = ((high - low) / 255.0).astype(np.float32)
    scale[scale == 0] = 1.0  # an all-zero channel
    zero_point = np.clip(np.rint(-low / scale), 0, 255)
    codes = np.clip(np.rint(flat / scale[:, None]) + zero_point[:, None], 0, 255).astype(np.uint8)
    return codes.reshape(weights.shape), scale, zero_point.astype(np.uint8)


def store_weights_uint8(model: Any) -> Any:
    """An ONNX model whose convolution kernels are stored as uint8 (per output channel, :func:`quantize_uint8`), each
    followed by a DequantizeLinear back to float32; the other weights as :func:`store_weights_fp16` stores them.

    Weight-only quantisation: the graph still convolves in float32, so every runtime (Python ONNX Runtime and
    ONNX Runtime Web alike) computes the same function of the same dequantised weights; only the file shrinks to
    about a quarter. Constant kernels (the partial convolutions' window of ones) stay exact in float16.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    kernels = _kernel_initializers(graph)
    nodes, scales = [], set()
    for tensor in graph.initializer:
        if tensor.name not in kernels or tensor.data_type != TensorProto.FLOAT or len(tensor.dims) != 4:
            continue  # (the phase kernels' table of 0 / 1 taps is 3-D: it stays exact)
        values = numpy_helper.to_array(tensor)
        if np.all(values == values.flat[0]):
            continue
        codes, scale, zero_point = quantize_uint8(values)
        name = tensor.name
        tensor.CopyFrom(numpy_helper.from_array(codes, f"{name}__uint8"))
        graph.initializer.extend([
            numpy_helper.from_array(scale, f"{name}__scale"),
            numpy_helper.from_array(zero_point, f"{name}__zero_point"),
        ])  # fmt: skip
        scales.add(f"{name}__scale")
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{name}__uint8", f"{name}__scale", f"{name}__zero_point"], [name],
                axis=0, name=f"{name}__dequantize",
            )
        )  # fmt: skip
    _prepend_nodes(graph, nodes)
    return store_weights_fp16(model, keep=frozenset(scales))


def _kernel_initializers(graph: Any) -> set[str]:
    """The initializers a Conv's kernel is computed from: read by the Conv directly, or through the few nodes that
    turn the decoder's 3 x 3 kernels into the phase kernels of its inference path (which ONNX Runtime folds)."""
    producers = {output: node for node in graph.node for output in node.output}
    initializers = {tensor.name for tensor in graph.initializer}
    kernels, pending = set(), [node.input[1] for node in graph.node if node.op_type == "Conv" and len(node.input) > 1]
    while pending:
        name = pending.pop()
        if name in initializers:
            kernels.add(name)
        elif name in producers:
            pending.extend(producers.pop(name).input)
    return kernels


def _prepend_nodes(graph: Any, nodes: list) -> None:
    """Put ``nodes`` (which read only initialisers) before the graph's own, keeping it topologically sorted."""
    everything = nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(everything)


def write_web_model(source: Path, target: Path, quantize: str | None = None) -> None:
    """``source`` (a pconv-export file) as the page's model: fp16-stored weights, or ``quantize="uint8"``
    kernels (:func:`store_weights_uint8`)."""
    import onnx

    if quantize not in (None, *QUANTIZE_CHOICES):
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES} or None, got {quantize!r}")
    model = onnx.load(source)
    if CONFIG_KEY not in {entry.key for entry in model.metadata_props}:
        raise ValueError(f"{str(source)!r} is not a PConvUNet export (no {CONFIG_KEY!r} metadata); use pconv-export")
    model = store_weights_fp16(model) if quantize is None else store_weights_uint8(model)
    onnx.save(model, target)


def manifest(model_path: Path, quantize: str | None) -> dict[str, Any]:
    """What the page needs to know about the model: its config, file size and content hash (the cache key)."""
    import onnx

    metadata = {entry.key: entry.value for entry in onnx.load(model_path, load_external_data=False).metadata_props}
    config = json.loads(metadata[CONFIG_KEY])
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    return {
        "file": model_path.name,
        "bytes": model_path.stat().st_size,
        "sha256": digest,
        "weights": quantize or "float16",
        "sample_size": config["sample_size"],
        "size_multiple": onnx_size_multiple(metadata),
        "in_channels": config["in_channels"],
        "onnxruntime_web": pinned_ort_version(),
        "config": config,
    }


# --- the folder --------------------------------------------------------------------------------------------


def page_names() -> set[str]:
    """The names a web folder holds at its top level (page files, ``ort/``, the model and its manifest)."""
    return {path.name for path in STATIC.iterdir() if path.is_file()} | {"ort", MODEL_FILE, MANIFEST_FILE}


def check_web_folder(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` (symlinks resolved) if :func:`build_web` may write it: missing, empty, or holding only what a
    web folder holds (an earlier build, complete or cut short). Check before a long export.

    Raises:
        ValueError: when it is a file or holds anything else.
    """
    try:
        out = Path(out_dir).resolve()
    except RuntimeError as err:  # Python 3.11: a symlink loop
        raise ValueError(f"{str(out_dir)!r} is not a usable path ({err})") from None
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out_dir)!r} is a file; give a new or empty folder for the page")
    if out.is_dir():
        others = sorted(path.name for path in out.iterdir() if path.name not in page_names())
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise ValueError(
                f"{str(out_dir)!r} is not an earlier pconv web folder (it holds {shown}); give a new or empty folder"
            )
    return out


def build_web(
    onnx_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    quantize: str | None = None,
    ort_dist_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write the static page for ``onnx_file`` (a pconv-export file) into ``out_dir``.

    ``out_dir`` must be missing, empty, or a folder this function wrote before (:func:`check_web_folder`, also one
    cut short by an older version); it is then replaced as a whole. The folder is built beside it under a hidden
    temporary name and renamed into place when complete, so a failure (a full disk, Ctrl+C) leaves ``out_dir`` as
    it was. ``log`` receives a line before each long step. Returns ``out_dir`` as a ``Path``.
    """
    say = log or (lambda message: None)
    out = check_web_folder(out_dir)
    runtime = ort_dist(ort_dist_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (not mkdtemp, which makes it private): the page must stay readable by a web server after the rename.
    staging = out.parent / f".{out.name[:32]}.{secrets.token_hex(4)}.tmp"
    staging.mkdir()
    try:
        say(f"Storing the model's weights as {quantize or 'float16'} ...")
        write_web_model(Path(onnx_file), staging / MODEL_FILE, quantize)
        say("Copying the page and ONNX Runtime Web ...")
        for page_file in sorted(STATIC.iterdir()):
            if page_file.is_file():
                shutil.copyfile(page_file, staging / page_file.name)
        (staging / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copyfile(runtime / name, staging / "ort" / name)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest(staging / MODEL_FILE, quantize), indent=2) + "\n")
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Path(out_dir)


def _swap_in(staging: Path, out: Path) -> None:
    """Rename the complete ``staging`` folder to ``out``; an existing ``out`` (checked by :func:`check_web_folder`)
    is moved aside first and deleted after."""
    if not out.exists():
        os.rename(staging, out)
        return
    old = out.parent / f".{out.name[:32]}.{secrets.token_hex(4)}.old"
    os.rename(out, old)
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --- serving -----------------------------------------------------------------------------------------------


class IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with cross-origin isolation headers (wasm threads) and revalidation on every load."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".json": "application/json",
    }

    def end_headers(self) -> None:
        for key, value in ISOLATION_HEADERS.items():
            self.send_header(key, value)
        # The model is cached by the page (Cache Storage); the HTTP cache would only hide the requests.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.request_log.append(self.path)
        super().log_request(code, size)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        if not self.server.quiet:
            super().log_message(format, *args)


class WebServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server that records every requested path and stays quiet when a browser hangs up."""

    def __init__(self, address: tuple[str, int], handler: Any, quiet: bool = False):
        super().__init__(address, handler)
        self.quiet = quiet
        self.request_log: list[str] = []  # every path requested, in order

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a page closed or reloaded mid-download
        super().handle_error(request, client_address)


def make_server(folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> WebServer:
    """An HTTP server for the web folder (not started: call ``serve_forever``); port 0 picks a free one."""
    folder = Path(folder)
    if not (folder / "index.html").is_file() or not (folder / MANIFEST_FILE).is_file():
        raise ValueError(f"{str(folder)!r} is not a pconv web folder (no index.html / {MANIFEST_FILE}); build one "
                         "with pconv-export --web DIR")  # fmt: skip
    return WebServer((host, port), partial(IsolatedHandler, directory=os.fspath(folder)), quiet=quiet)
