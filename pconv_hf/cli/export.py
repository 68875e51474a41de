"""``pconv-export``: a PConvUNet to one ONNX file, or to a static page that fills photos in the browser
(``--web DIR``, served locally with ``--serve DIR``). The export itself is :mod:`pconv_hf.onnx`; the page is
:mod:`pconv_hf.web`.

    pconv-export [MODEL] OUT.onnx [--opset 18]
    pconv-export --web DIR [--model M] [--quantize uint8]
    pconv-export --serve DIR [--host 127.0.0.1] [--port 8000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pconv_hf

from ..onnx import DEFAULT_OPSET, OnnxInpainter, export_onnx, is_onnx_file
from ..web import build_web, make_server
from .common import fail

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
    web.add_argument("--port", type=int, default=8000, help="for --serve (default 8000; 0 picks a free port)")
    return parser


def _web_main(args: argparse.Namespace) -> None:
    """``--web DIR``: export (or reuse an exported .onnx), then write the page folder."""
    given = [str(value) for value in (args.web_model, args.model, args.output) if value is not None]
    if len(given) > 1:
        raise ValueError(f"--web writes a folder and takes one model (--model M), got {' and '.join(given)}")
    model = given[0] if given else None
    with tempfile.TemporaryDirectory() as scratch:
        if model is not None and is_onnx_file(model):
            OnnxInpainter(model, providers=["CPUExecutionProvider"])  # checks it is a pconv export
            source = Path(model)
        else:
            source = export_onnx(
                pconv_hf.load_model(model, device="cpu"), Path(scratch) / "model.onnx", opset=args.opset
            )
        out = build_web(source, args.web, quantize=args.quantize, ort_dist_dir=args.ort_dist)
    size = (out / "model.onnx").stat().st_size / 2**20
    print(f"Wrote the page to {out} (model {size:.1f} MiB); serve it with: {PROG} --serve {out}")


def _serve_main(args: argparse.Namespace) -> None:
    """``--serve DIR``: a local HTTP server with the headers wasm threads need, until Ctrl+C."""
    try:
        server = make_server(args.serve, host=args.host, port=args.port)
    except OSError as err:
        raise ValueError(f"cannot serve on {args.host}:{args.port}: {err.strerror or err}") from err
    host, port = server.server_address[:2]
    print(f"Serving {args.serve} at http://{host}:{port}/ (Ctrl+C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """``pconv-export [MODEL] OUT.onnx [--opset N]``; a user error is one line on stderr and exit status 1."""
    args = build_parser().parse_args(argv)
    if args.web is not None or args.serve is not None:
        try:
            if args.web is not None and args.serve is not None:
                raise ValueError("give --web DIR (build) or --serve DIR (serve), one at a time")
            if args.web is not None:
                _web_main(args)
            else:
                _serve_main(args)
        except (ValueError, ImportError) as err:
            fail(PROG, err)
        return
    if args.output is None and args.model is not None:
        args.model, args.output = None, Path(args.model)  # one positional: the output file
    try:
        if args.output is None:
            raise ValueError("give the .onnx file to write (pconv-export [MODEL] OUT.onnx), or --web DIR")
        if args.model is not None and is_onnx_file(args.model):
            raise ValueError(f"{args.model!r} is already an ONNX file; pass a saved model folder or Hub id")
        if not is_onnx_file(args.output):
            raise ValueError(f"the output file name must end in .onnx, got {str(args.output)!r}")
        model = pconv_hf.load_model(args.model, device="cpu")
        path = export_onnx(model, args.output, opset=args.opset)
    except (ValueError, ImportError) as err:
        fail(PROG, err)
    source = args.model if args.model is not None else f"the bundled model ({pconv_hf.DEFAULT_CHECKPOINT.name})"
    print(f"Exported {source} to {path} (opset {args.opset}, {path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
