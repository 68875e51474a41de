"""``pconv-export``: a PConvUNet to one ONNX file, or to a static page that fills photos in the browser
(``--web DIR``, served locally with ``--serve DIR``). The export itself is :mod:`pconv_hf.onnx`; the page is
:mod:`pconv_hf.web`.

    pconv-export [MODEL] OUT.onnx [--opset 18]
    pconv-export --web DIR [--model M] [--quantize uint8]
    pconv-export --serve DIR [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import errno
import os
import tempfile
from pathlib import Path

import pconv_hf

from ..onnx import DEFAULT_OPSET, OnnxInpainter, export_onnx, is_onnx_file
from ..web import build_web, check_web_folder, make_server, ort_dist
from . import common
from .common import PORT, CliError, int_range

PROG = "pconv-export"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Export a PConvUNet to an ONNX file for ONNX Runtime (dynamic batch, height and width).",
        epilog="Load the file with pconv_hf.load_model('OUT.onnx') and call .inpaint(image, mask).",
    )
    parser.add_argument("model", nargs="?", help="saved model folder or Hub id (default: the bundled model)")
    parser.add_argument("output", nargs="?", type=Path, help="the .onnx file to write (replaced if it exists)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    web = parser.add_argument_group("browser page (see docs/web.md)")
    web.add_argument("--web", type=Path, metavar="DIR", help="write a static page that fills photos in the browser")
    web.add_argument(
        "--model",
        dest="web_model",
        metavar="M",
        help="for --web: saved model folder, Hub id or a pconv-export .onnx file (default: bundled)",
    )
    web.add_argument(
        "--quantize",
        choices=["uint8"],
        help="for --web: uint8 weights (per output channel, dequantised to float in the graph) instead of float16",
    )
    web.add_argument(
        "--ort-dist",
        type=Path,
        metavar="DIR",
        help="for --web: onnxruntime-web's dist folder (default: the npm install setup.sh made)",
    )
    web.add_argument("--serve", type=Path, metavar="DIR", help="serve a --web folder with COOP/COEP headers")
    web.add_argument("--host", default="127.0.0.1", help="for --serve (default 127.0.0.1)")
    web.add_argument(
        "--port", type=int_range(*PORT), default=8000, help="for --serve (default 8000; 0 picks a free port)"
    )
    return parser


def _web_main(args: argparse.Namespace) -> None:
    """``--web DIR``: export (or reuse an exported .onnx), then write the page folder."""
    given = [str(value) for value in (args.web_model, args.model, args.output) if value is not None]
    if len(given) > 1:
        raise ValueError(f"--web writes a folder and takes one model (--model M), got {' and '.join(given)}")
    model = given[0] if given else None
    check_web_folder(args.web)  # the folder and the runtime before the export, which takes a while
    ort_dist(args.ort_dist)
    with tempfile.TemporaryDirectory() as scratch:
        if model is not None and is_onnx_file(model):
            OnnxInpainter(model, providers=["CPUExecutionProvider"])  # checks it is a pconv export
            source = Path(model)
        else:
            loaded = pconv_hf.load_model(model, device="cpu")
            say(f"Exporting {_model_name(model)} to ONNX (a minute or two on a CPU) ...")
            source = export_onnx(loaded, Path(scratch) / "model.onnx", opset=args.opset)
        out = build_web(source, args.web, quantize=args.quantize, ort_dist_dir=args.ort_dist, log=say)
    size = (out / "model.onnx").stat().st_size / 2**20
    print(f"Wrote the page to {out} (model {size:.1f} MiB); serve it with: {PROG} --serve {out}")


def say(message: str) -> None:
    """A progress line, shown at once (a long step must not look like a hang)."""
    print(message, flush=True)


def _model_name(model: str | None) -> str:
    return model if model is not None else f"the bundled model ({pconv_hf.DEFAULT_CHECKPOINT.name})"


def _serve_main(args: argparse.Namespace) -> None:
    """``--serve DIR``: a local HTTP server with the headers wasm threads need, until Ctrl+C."""
    try:
        server = make_server(args.serve, host=args.host, port=args.port)
    except OSError as err:
        hint = (
            "; pick another --port, or --port 0 for a free one"
            if err.errno == errno.EADDRINUSE
            else "; --host must name this machine (127.0.0.1, 0.0.0.0, or one of its addresses)"
        )
        raise CliError(f"cannot serve on {args.host}:{args.port}: {err.strerror or err}{hint}") from None
    host, port = server.server_address[:2]
    print(f"Serving {args.serve} at http://{host}:{port}/ (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _export_main(args: argparse.Namespace) -> None:
    """``[MODEL] OUT.onnx``: everything about the output file is checked before the (long) export."""
    if args.output is None and args.model is not None:
        args.model, args.output = None, Path(args.model)  # one positional: the output file
    if args.output is None:
        raise CliError("give the .onnx file to write (pconv-export [MODEL] OUT.onnx), or --web DIR")
    if args.model is not None and is_onnx_file(args.model):
        raise CliError(f"{args.model!r} is already an ONNX file; pass a saved model folder or Hub id")
    if not is_onnx_file(args.output):
        raise CliError(f"the output file name must end in .onnx, got {str(args.output)!r}")
    check_output_file(args.output)
    model = pconv_hf.load_model(args.model, device="cpu")
    say(f"Exporting {_model_name(args.model)} to ONNX (a minute or two on a CPU) ...")
    path = export_onnx(model, args.output, opset=args.opset)
    print(f"Exported {_model_name(args.model)} to {path} (opset {args.opset}, {path.stat().st_size / 2**20:.1f} MiB)")


def check_output_file(path: Path) -> None:
    """Refuse, before exporting, an output that is a folder or lies in a folder that cannot be written."""
    try:
        if path.is_dir():
            raise CliError(f"{path} is a folder; name the .onnx file to write (e.g. {path / 'model.onnx'})")
        folder = path.resolve().parent
    except RuntimeError as err:  # Python 3.11: a symlink loop
        raise CliError(f"{path} is not a usable path ({err})") from None
    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise CliError(f"cannot write {path}: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise CliError(f"cannot write {path}: no permission to write in {existing}")


def main(argv: list[str] | None = None) -> None:
    """``pconv-export [MODEL] OUT.onnx [--opset N]``, ``--web DIR`` or ``--serve DIR``; a user error is one line on
    stderr and exit status 1, Ctrl+C exit status 130."""
    args = build_parser().parse_args(argv)

    def command() -> None:
        try:
            if args.web is not None and args.serve is not None:
                raise CliError("give --web DIR (build) or --serve DIR (serve), one at a time")
            if args.web is not None:
                _web_main(args)
            elif args.serve is not None:
                _serve_main(args)
            else:
                _export_main(args)
        except ImportError as err:  # the onnx extra is not installed: the message says what to install
            raise CliError(str(err)) from None

    common.run(PROG, command)


if __name__ == "__main__":
    main()
