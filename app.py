"""Gradio demo: upload a photo, paint over what should go, press Inpaint.

    python app.py                                  # the bundled model on http://127.0.0.1:7860
    python app.py --model path/to/model --models_dir runs/   # choose among several saved models

The Inpaint event is exposed as ``/inpaint`` for ``gradio_client``; docs/app.md shows how to call it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import torch
from PIL import Image

import pconv_hf
from pconv_hf import PConvUNet
from pconv_hf.inpainting import grow_mask

EXAMPLES_DIR = Path(pconv_hf.__file__).parent / "examples"
STRATEGIES = [("Crop around holes", "crop"), ("Resize whole photo", "resize"), ("Full resolution", "full")]
DEFAULT_DILATE = 4
MAX_DILATE = 64
DEFAULT_MAX_MEGAPIXELS = 40.0
IMAGE_BUTTONS = ["download", "fullscreen"]
PREVIEW_SIDE = 2048  # the before/after slider shows photos downscaled to this; the result itself is full size
BRUSH = gr.Brush(colors=[("#ff00ff", 0.6), ("#00ffff", 0.6), ("#ffffff", 1.0), ("#000000", 1.0)], color_mode="defaults")


# --- models ------------------------------------------------------------------------------------------------


def model_sources(specs: list[str], models_dir: str | Path | None = None) -> dict[str, str]:
    """The models to offer, by display name: the ``--model`` entries (or the bundled model) + saved models found
    under ``models_dir`` (any folder with config.json and model.safetensors)."""
    sources = {spec: spec for entry in specs for spec in (part.strip() for part in entry.split(",")) if spec}
    if not sources and pconv_hf.DEFAULT_CHECKPOINT.is_dir():
        sources[f"{pconv_hf.DEFAULT_CHECKPOINT.name} (bundled)"] = str(pconv_hf.DEFAULT_CHECKPOINT)
    if models_dir is not None:
        if not Path(models_dir).is_dir():
            raise ValueError(f"--models_dir {os.fspath(models_dir)!r} is not a folder")
        known = {os.path.realpath(source) for source in sources.values()}
        for config in sorted(Path(models_dir).rglob("config.json")):
            folder = config.parent
            if (folder / "model.safetensors").is_file() and os.path.realpath(folder) not in known:
                sources[str(folder)] = str(folder)
    if not sources:
        raise ValueError(
            f"the bundled model is missing (no folder {pconv_hf.DEFAULT_CHECKPOINT}). "
            "Pass a saved model with --model DIR (a folder with config.json and model.safetensors) or a Hub id, "
            "or --models_dir DIR to offer every saved model under DIR."
        )
    return sources


def load_models(sources: Mapping[str, str], device: str | torch.device | None = None) -> dict[str, PConvUNet]:
    """Load every model once, at startup, so a bad path fails now rather than on someone's first click."""
    return {name: pconv_hf.load_model(source, device=device) for name, source in sources.items()}


# --- the pure part: editor value in, inpainted photo out ---------------------------------------------------


@dataclass
class Inpainting:
    photo: Image.Image  # the photo as inpainted (alpha dropped when fully opaque, grey as "L")
    result: Image.Image  # same size and mode as ``photo``; pixels outside ``mask`` are identical
    mask: Image.Image  # "L", white = filled (painted area grown by ``dilate``)
    summary: str


def predict(
    editor_value: dict | None,
    strategy: str = "crop",
    dilate: int = DEFAULT_DILATE,
    model_name: str | None = None,
    *,
    models: Mapping[str, PConvUNet],
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
) -> Inpainting:
    """Fill the painted area of the editor's photo.

    Args:
        editor_value: ``gr.ImageEditor`` value with PIL images: "background" is the photo, every pixel of
            "layers" that is not transparent is to be filled, whatever its colour. A fully opaque layer (a
            black-and-white mask sent through the API) fills its white / nonzero pixels instead.
        strategy: "crop", "resize" or "full"; see :func:`pconv_hf.inpainting.inpaint`.
        dilate: grow the painted area by this many pixels (covers halos and the brush's soft edge).
        model_name: a key of ``models``; the first one when None.
    """
    start = time.perf_counter()
    photo = (editor_value or {}).get("background")
    if photo is None:
        raise gr.Error("Upload or paste a photo first, then paint over what should go.")
    width, height = photo.size
    if width * height > max_megapixels * 1e6:
        raise gr.Error(
            f"The photo is {width}×{height} ({width * height / 1e6:.3g} megapixels); this app takes photos up to "
            f"{max_megapixels:g} megapixels. Downscale it and try again."
        )
    if all(low == high for low, high in photo.convert("RGB").getextrema()):
        # Painting on the editor's empty canvas sends a blank white "photo".
        raise gr.Error("There is no photo (the image is one flat colour). Upload or paste a photo first.")
    if strategy not in [value for _, value in STRATEGIES]:
        raise gr.Error(f"Unknown strategy {strategy!r}; use 'crop', 'resize' or 'full'.")
    if not 0 <= int(dilate) <= MAX_DILATE or int(dilate) != dilate:
        raise gr.Error(f"The mask can grow by a whole number of pixels from 0 to {MAX_DILATE}, not {dilate}.")
    if model_name is None:
        model_name = next(iter(models))
    if model_name not in models:
        raise gr.Error(f"Unknown model {model_name!r}; this app offers {', '.join(models)}.")

    hole_mask = painted_area(editor_value.get("layers") or [], photo.size)
    if not hole_mask.any():
        raise gr.Error("Nothing is painted. Pick the brush, paint over what should go, then press Inpaint.")
    hole_mask = grow_mask(hole_mask, int(dilate))  # here, not in inpaint(), so the mask shown is the mask used
    mask = Image.fromarray(hole_mask.view(np.uint8) * 255, "L")

    photo = simplest_mode(photo)
    try:
        result = pconv_hf.inpaint(photo, mask, model=models[model_name], strategy=strategy)
    except ValueError as err:
        raise gr.Error(f"Could not inpaint this photo: {err}") from err
    regions = cv2.connectedComponents(hole_mask.view(np.uint8), connectivity=8)[0] - 1
    seconds = time.perf_counter() - start
    summary = f"Filled {regions} region{'' if regions == 1 else 's'} in {seconds:.2f} s at {width}×{height}"
    return Inpainting(photo, result, mask, summary)


def painted_area(layers: list[Image.Image], size: tuple[int, int]) -> np.ndarray:
    """Bool (H, W): every painted pixel of every layer (the user-edge mask, white = fill)."""
    hole_mask = np.zeros((size[1], size[0]), bool)
    for layer in layers:
        if layer.size != size:
            raise gr.Error(
                f"A painted layer is {layer.width}×{layer.height} but the photo is {size[0]}×{size[1]}; "
                "layers must be the size of the photo."
            )
        rgba = np.asarray(layer.convert("RGBA"))
        if rgba[..., 3].min() == 255:  # no transparency at all: a mask image, white / nonzero = fill
            hole_mask |= rgba[..., :3].any(axis=-1)
        else:
            hole_mask |= rgba[..., 3] > 0
    return hole_mask


def simplest_mode(photo: Image.Image) -> Image.Image:
    """The editor hands over RGBA; drop an alpha that is fully opaque, and keep grey photos grey ("L")."""
    if photo.mode == "RGBA" and photo.getchannel("A").getextrema() == (255, 255):
        photo = photo.convert("RGB")
    if photo.mode == "RGB":
        red, green, blue = (np.asarray(channel) for channel in photo.split())
        if np.array_equal(red, green) and np.array_equal(green, blue):
            photo = photo.convert("L")
    return photo


# --- the UI ------------------------------------------------------------------------------------------------


def report_unreadable_uploads(editor: gr.ImageEditor) -> gr.ImageEditor:
    """Make the editor tell the person when an upload is not a readable image, instead of a stack trace.

    (Wrapping the instance, not subclassing: Gradio writes a ``.pyi`` stub beside any module that subclasses
    a component.)
    """
    preprocess = editor.preprocess

    def checked_preprocess(payload):
        try:
            return preprocess(payload)
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise gr.Error(f"Could not read the uploaded photo ({err}). Use a PNG, JPEG or WebP image.") from err

    editor.preprocess = checked_preprocess
    return editor


def examples() -> list[dict]:
    """An editor value (photo + painted layer) for every bundled photo that has a ``*_mask.png`` beside it."""
    return [
        {"background": str(photo), "layers": [str(layer)], "composite": None}
        for photo in sorted(EXAMPLES_DIR.glob("*.jpg"))
        if (layer := photo.with_name(f"{photo.stem}_mask.png")).is_file()
    ]


def open_images(editor_value: dict) -> dict:
    """The editor value with its image paths opened (Gradio only serves files from its own folders)."""
    return {
        "background": Image.open(editor_value["background"]),
        "layers": [Image.open(layer) for layer in editor_value["layers"]],
        "composite": None,
    }


def preview(image: Image.Image) -> Image.Image:
    if max(image.size) <= PREVIEW_SIDE:
        return image
    small = image.copy()
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return small


def output_folder(root: str, keep_seconds: float = 600) -> Path:
    """A new folder for one request's files; older requests' folders (long since served) are removed."""
    for old in Path(root).iterdir():
        if time.time() - old.stat().st_mtime > keep_seconds:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def build_demo(models: Mapping[str, PConvUNet], max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> gr.Blocks:
    """The Blocks app; call ``.queue(...).launch(...)`` on it."""
    # Lossless PNGs are written here, then Gradio copies them into its cache; removed when the app exits.
    outputs_root = tempfile.TemporaryDirectory(prefix="pconv_hf_app-")
    with gr.Blocks(title="pconv_hf inpainting", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Remove things from photos\n"
            "Upload or paste a photo, pick the **brush** and paint over what should go (any colour), "
            "then press **Inpaint**. Partial-convolution U-Net ([Liu et al. 2018](https://arxiv.org/abs/1804.07723)); "
            f"photos up to {max_megapixels:g} megapixels, the result keeps the photo's full resolution."
        )
        with gr.Row():
            with gr.Column():
                editor = gr.ImageEditor(
                    label="Photo: paint over what should go",
                    elem_id="editor",
                    type="pil",
                    image_mode="RGBA",
                    sources=("upload", "clipboard"),
                    transforms=(),  # no crop / resize tools: the photo stays whole, at its own resolution
                    layers=False,
                    brush=BRUSH,
                    format="png",
                    height=600,
                    # Gradio 6.31 positions layers loaded with a value (the examples) inside the canvas it had
                    # before the photo arrived; a canvas smaller than any photo keeps them aligned.
                    canvas_size=(8, 8),
                )
                report_unreadable_uploads(editor)
                with gr.Row():
                    strategy_radio = gr.Radio(STRATEGIES, value="crop", label="Large photos")
                    dilate_slider = gr.Slider(0, MAX_DILATE, value=DEFAULT_DILATE, step=1, label="Grow mask (pixels)")
                model_dropdown = gr.Dropdown(
                    list(models), value=next(iter(models)), label="Model", visible=len(models) > 1
                )
                run_button = gr.Button("Inpaint", variant="primary")
                example_values = examples()
                example_list = gr.Dataset(
                    components=[editor],
                    samples=[[value] for value in example_values],
                    type="index",
                    label="Examples: click one, then Inpaint",
                    elem_id="examples",
                )
            with gr.Column():
                with gr.Tabs():
                    with gr.Tab("Result"):
                        result_view = gr.Image(
                            label="Result",
                            elem_id="result",
                            type="filepath",
                            format="png",
                            interactive=False,
                            buttons=IMAGE_BUTTONS,
                        )
                    with gr.Tab("Before / after"):
                        comparison = gr.ImageSlider(label="Before / after", interactive=False)
                    with gr.Tab("Mask used"):
                        mask_view = gr.Image(
                            label="Mask used (white = filled)",
                            type="filepath",
                            interactive=False,
                            buttons=IMAGE_BUTTONS,
                        )
                summary = gr.Markdown()
                downloads = gr.File(
                    label="Downloads: result and mask, lossless PNG",
                    elem_id="downloads",
                    file_count="multiple",
                    interactive=False,
                )

        def run(editor_value, strategy, dilate, model_name):
            done = predict(editor_value, strategy, dilate, model_name, models=models, max_megapixels=max_megapixels)
            folder = output_folder(outputs_root.name)
            result_path, mask_path = folder / "inpainted.png", folder / "mask.png"
            done.result.save(result_path, compress_level=3)
            done.mask.save(mask_path)
            return (
                str(result_path),
                done.summary,
                [str(result_path), str(mask_path)],
                (preview(done.photo), preview(done.result)),
                str(mask_path),
            )

        example_list.click(
            lambda index: open_images(example_values[index]),
            inputs=example_list,
            outputs=editor,
            queue=False,
            show_progress="hidden",
            api_visibility="undocumented",
        )
        run_button.click(
            run,
            inputs=[editor, strategy_radio, dilate_slider, model_dropdown],
            outputs=[result_view, summary, downloads, comparison, mask_view],
            api_name="inpaint",
            show_progress_on=result_view,  # one spinner (or error badge), not one per output
        )
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Inpainting demo: paint over what should go, press Inpaint.")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="DIR_OR_HUB_ID",
        help="a saved model folder or Hub id; repeat or comma-separate to offer several (default: the bundled model)",
    )
    parser.add_argument("--models_dir", help="also offer every saved model (config.json + model.safetensors) under it")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    parser.add_argument("--device", default="auto", help="'cpu', 'cuda', 'cuda:1', ... (default: cuda if available)")
    parser.add_argument("--max_megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, help="largest photo accepted")
    parser.add_argument("--concurrency", type=int, default=1, help="requests inpainted at the same time")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        device = None if args.device == "auto" else torch.device(args.device)
        if device is not None and device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
        models = load_models(model_sources(args.model, args.models_dir), device)
    except (ValueError, RuntimeError) as err:
        sys.exit(f"app.py: error: {err}")
    demo = build_demo(models, max_megapixels=args.max_megapixels)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=32)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
