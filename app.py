"""Gradio demo: upload a photo, paint over what should go, press Inpaint.

    python app.py                                  # the bundled model on http://127.0.0.1:7860
    python app.py --model path/to/model --models_dir runs/   # choose among several saved models

The Inpaint event is exposed as ``/inpaint`` for ``gradio_client``; docs/app.md shows how to call it.

A big photo stays on the server: the page gets a copy of at most EDIT_SIDE pixels to paint on and previews of at most
SCREEN_SIDE pixels; only the downloads are full size (docs/app.md, "What goes over the network").
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import torch
from PIL import Image, ImageOps

import pconv_hf
from pconv_hf import PConvUNet
from pconv_hf._cli import CliError, add_runtime_arguments, fail, parse_device
from pconv_hf.inpainting import grow_mask

EXAMPLES_DIR = Path(pconv_hf.__file__).parent / "examples"
STRATEGIES = [("Crop around holes", "crop"), ("Resize whole photo", "resize"), ("Full resolution", "full")]
DEFAULT_DILATE = 4
MAX_DILATE = 64
DEFAULT_MAX_MEGAPIXELS = 40.0
IMAGE_BUTTONS = ["download", "fullscreen"]
# Big photos stay on the server; the page gets copies. The editor's copy, to paint on: the page sends the editor's
# canvas back as PNGs on every Inpaint (background, painted layer and composite), which takes about 1 s per
# megapixel in a browser without a GPU. Twice the editor's on-screen size, for zooming in.
EDIT_SIDE = 1024
SCREEN_SIDE = 1600  # the result, before/after and mask as shown (full-screen view included); downloads are full size
SCREEN_QUALITY = 90  # JPEG / WebP quality of those screen copies
COPY_JS = "(value) => value"  # a frontend-only event that copies one component's value into another
PNG_LEVEL = 1  # zlib level of the lossless downloads: for a 12-MP photo 4x faster than Pillow's 6, 20 % larger
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
    photo: Image.Image | None = None,
    dtype: str = "auto",
) -> Inpainting:
    """Fill the painted area of the editor's photo.

    Args:
        editor_value: ``gr.ImageEditor`` value with PIL images: "background" is the photo, every pixel of
            "layers" that is not transparent is to be filled, whatever its colour. A fully opaque layer (a
            black-and-white mask sent through the API) fills its white / nonzero pixels instead.
        strategy: "crop", "resize" or "full"; see :func:`pconv_hf.inpainting.inpaint`.
        dilate: grow the painted area by this many pixels (of the photo; covers halos and the brush's soft edge).
        model_name: a key of ``models``; the first one when None.
        dtype: the network's precision, as ``inpaint(dtype=...)`` ("auto": bf16 where the device has it natively).
        photo: the full-resolution photo when the editor's background is a downscaled copy of it (the app's own
            uploads, see :func:`load_photo`): the painted area is scaled up to it and it is what gets inpainted.
    """
    start = time.perf_counter()
    background = (editor_value or {}).get("background")
    if background is None:
        raise gr.Error("Upload or paste a photo first, then paint over what should go.")
    photo = background if photo is None else photo
    width, height = photo.size
    check_size(photo.size, max_megapixels)
    if all(low == high for low, high in background.convert("RGB").getextrema()):
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

    hole_mask = painted_area(editor_value.get("layers") or [], background.size)
    if not hole_mask.any():
        raise gr.Error("Nothing is painted. Pick the brush, paint over what should go, then press Inpaint.")
    hole_mask = scale_mask(hole_mask, photo.size)
    hole_mask = grow_mask(hole_mask, int(dilate))  # here, not in inpaint(), so the mask shown is the mask used
    mask = Image.fromarray(hole_mask.view(np.uint8) * 255, "L")

    photo = simplest_mode(photo)
    try:
        result = pconv_hf.inpaint(photo, mask, model=models[model_name], strategy=strategy, dtype=dtype)
    except ValueError as err:
        raise gr.Error(f"Could not inpaint this photo: {err}") from err
    regions = cv2.connectedComponents(hole_mask.view(np.uint8), connectivity=8)[0] - 1
    seconds = time.perf_counter() - start
    summary = f"Filled {regions} region{'' if regions == 1 else 's'} in {seconds:.2f} s at {width}×{height}"
    return Inpainting(photo, result, mask, summary)


def check_size(size: tuple[int, int], max_megapixels: float) -> None:
    width, height = size
    if width * height > max_megapixels * 1e6:
        raise gr.Error(
            f"The photo is {width}×{height} ({width * height / 1e6:.3g} megapixels); this app takes photos up to "
            f"{max_megapixels:g} megapixels. Downscale it and try again."
        )


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


def scale_mask(hole_mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``hole_mask`` (painted on a downscaled copy) at ``size`` (W, H): every photo pixel it touches is filled."""
    if hole_mask.shape == (size[1], size[0]):
        return hole_mask
    scaled = cv2.resize(hole_mask.view(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR)
    return scaled > 0


def simplest_mode(photo: Image.Image) -> Image.Image:
    """The editor hands over RGBA; drop an alpha that is fully opaque, and keep grey photos grey ("L")."""
    if photo.mode == "RGBA" and photo.getchannel("A").getextrema() == (255, 255):
        photo = photo.convert("RGB")
    # A look at 64×64 samples first: a colour photo is told at once, without comparing 12 MP of channels.
    if photo.mode == "RGB" and is_grey(photo.resize((64, 64), Image.Resampling.NEAREST)) and is_grey(photo):
        photo = photo.convert("L")
    return photo


def is_grey(photo: Image.Image) -> bool:
    red, green, blue = (np.asarray(channel) for channel in photo.split())
    return np.array_equal(red, green) and np.array_equal(green, blue)


def upright(image: Image.Image) -> Image.Image:
    """The photo as a browser shows it: turned by its EXIF orientation, 8 bits per channel, "RGB", "RGBA" or "L"."""
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I"):  # 16- or 32-bit grey: keep the high byte, as browsers do
        grey = np.asarray(image).astype(np.float64) / 257
        image = Image.fromarray(np.clip(grey.round(), 0, 255).astype(np.uint8), "L")
    elif image.mode in ("1", "F"):
        image = image.convert("L")
    elif image.mode not in ("L", "RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return simplest_mode(image)


def open_photo(path: str | Path) -> Image.Image:
    """An uploaded photo, upright (see :func:`upright`); unreadable files are a message for the person."""
    try:
        with Image.open(path) as file:
            return upright(file)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise gr.Error(f"Could not read the uploaded photo ({err}). Use a PNG, JPEG or WebP image.") from err


@dataclass(frozen=True, eq=False)
class Upload:
    """A photo kept on the server at full size while the editor shows a copy of at most EDIT_SIDE pixels."""

    path: str  # the uploaded file
    size: tuple[int, int]  # upright (W, H)
    copy_size: tuple[int, int]  # the editor's copy
    fingerprint: np.ndarray  # of the copy, to recognise it when the editor sends it back

    def matches(self, background: Image.Image | None) -> bool:
        """Whether the editor still shows this photo (and not a photo pasted or sent some other way)."""
        if background is None or background.size != self.copy_size:
            return False
        return float(np.abs(fingerprint(background) - self.fingerprint).mean()) < 4


def fingerprint(image: Image.Image) -> np.ndarray:
    """16×16 grey thumbnail: the same for a photo and its JPEG copy, different for another photo."""
    return np.asarray(image.convert("L").resize((16, 16), Image.Resampling.BOX), dtype=np.float32)


def fit_screen(image: Image.Image, side: int = SCREEN_SIDE) -> Image.Image:
    """``image`` downscaled to at most ``side`` pixels a side (itself when it fits)."""
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=1.0)  # box-reduce first: 3x faster


def screen_copy(image: Image.Image, path: Path, *, side: int = SCREEN_SIDE, lossless: bool = False) -> Path:
    """Save ``image`` for the page, downscaled to ``side``: JPEG (WebP when it has alpha; PNG if ``lossless``).

    ``path`` is without suffix; returns the file written.
    """
    image = fit_screen(image, side)
    if lossless:
        path = path.with_suffix(".png")
        image.save(path, compress_level=PNG_LEVEL)
    elif image.mode == "RGBA":
        path = path.with_suffix(".webp")
        image.save(path, quality=SCREEN_QUALITY)
    else:
        path = path.with_suffix(".jpg")
        image.save(path, quality=SCREEN_QUALITY)
    return path


def load_photo(
    path: str | None, folder: Path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
) -> tuple[dict | None, Upload | None]:
    """An uploaded photo file -> (editor value with a copy of at most EDIT_SIDE pixels, :class:`Upload`).

    The copy is written into ``folder`` (as photo.jpg, or photo.webp with transparency).
    """
    if path is None:
        return None, None
    photo = open_photo(path)
    check_size(photo.size, max_megapixels)
    copy = screen_copy(photo, folder / "photo", side=EDIT_SIDE)
    with Image.open(copy) as saved:
        upload = Upload(str(path), photo.size, saved.size, fingerprint(saved))
    return {"background": str(copy), "layers": [], "composite": None}, upload


# --- the UI ------------------------------------------------------------------------------------------------


def lighten_preprocess(editor: gr.ImageEditor) -> gr.ImageEditor:
    """Make the editor skip the composite it is sent (the app never uses it: decoding it is wasted time) and tell
    the person when an upload is not a readable image, instead of a stack trace.

    (Wrapping the instance, not subclassing: Gradio writes a ``.pyi`` stub beside any module that subclasses
    a component.)
    """
    preprocess = editor.preprocess

    def checked_preprocess(payload):
        if payload is not None and getattr(payload, "composite", None) is not None:
            payload = payload.model_copy(update={"composite": None})
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


def open_example(editor_value: dict) -> tuple[dict, Upload, Image.Image]:
    """An example -> (editor value with its images opened, :class:`Upload` of its photo, the photo).

    (Opened, not paths: Gradio only serves files from its own folders.) The examples are small: the editor shows
    the photo itself.
    """
    photo = open_photo(editor_value["background"])
    opened = {
        "background": photo,
        "layers": [Image.open(layer) for layer in editor_value["layers"]],
        "composite": None,
    }
    return opened, Upload(editor_value["background"], photo.size, photo.size, fingerprint(photo)), photo


def respond(
    editor_value: dict | None,
    strategy: str,
    dilate: int,
    model_name: str | None,
    upload: Upload | None,
    *,
    models: Mapping[str, PConvUNet],
    folder: Path,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    dtype: str = "auto",
) -> Iterator[tuple[str, str, list[str] | None, tuple[str, str], str]]:
    """One press of Inpaint: yields (result shown, summary, [result PNG, mask PNG], (before, after) shown, mask
    shown); the last yield is complete (what API clients get).

    The downloads are full size and lossless. Photos of at most SCREEN_SIDE pixels are shown as those same files,
    in one yield. Bigger ones are shown as copies downscaled to SCREEN_SIDE (JPEG, or WebP with alpha; the mask as
    PNG), yielded before the full-size PNGs are written (downloads None), then again with the downloads.
    ``upload`` is the photo the editor shows a copy of (None for API calls: the editor value is the photo).
    """
    background = (editor_value or {}).get("background")
    photo = open_photo(upload.path) if upload is not None and upload.matches(background) else None
    done = predict(
        editor_value,
        strategy,
        dilate,
        model_name,
        models=models,
        max_megapixels=max_megapixels,
        photo=photo,
        dtype=dtype,
    )
    result_path, mask_path = folder / "inpainted.png", folder / "mask.png"
    before = str(screen_copy(done.photo, folder / "before"))
    if max(done.result.size) > SCREEN_SIDE:
        shown_result = str(screen_copy(done.result, folder / "result"))
        shown_mask = str(screen_copy(done.mask, folder / "mask_shown", lossless=True))
        yield shown_result, f"{done.summary} · writing the full-size PNGs…", None, (before, shown_result), shown_mask
    else:
        shown_result, shown_mask = str(result_path), str(mask_path)
    done.result.save(result_path, compress_level=PNG_LEVEL)
    done.mask.save(mask_path, compress_level=PNG_LEVEL)
    yield shown_result, done.summary, [str(result_path), str(mask_path)], (before, shown_result), shown_mask


def output_folder(root: str, keep_seconds: float = 600) -> Path:
    """A new folder for one request's files; older requests' folders (long since served) are removed."""
    for old in Path(root).iterdir():
        if time.time() - old.stat().st_mtime > keep_seconds:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root))


def build_demo(
    models: Mapping[str, PConvUNet], max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, dtype: str = "auto"
) -> gr.Blocks:
    """The Blocks app; call ``.queue(...).launch(...)`` on it."""
    # Lossless PNGs and screen copies are written here, then Gradio copies them into its cache; removed when the
    # app exits.
    outputs_root = tempfile.TemporaryDirectory(prefix="pconv_hf_app-")
    with gr.Blocks(title="pconv_hf inpainting", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Remove things from photos\n"
            "Upload or paste a photo, pick the **brush** and paint over what should go (any colour), "
            "then press **Inpaint**. Partial-convolution U-Net ([Liu et al. 2018](https://arxiv.org/abs/1804.07723)); "
            f"photos up to {max_megapixels:g} megapixels, the result keeps the photo's full resolution."
        )
        upload_state = gr.State(None)  # the Upload whose copy the editor shows
        with gr.Row():
            with gr.Column():
                # The photo arrives here as its own file; the editor gets a copy of at most EDIT_SIDE pixels.
                # (Uploaded into the editor itself, a 12-MP photo would be sent back as 15-MB PNGs on every click.)
                photo_input = gr.Image(
                    label="Photo (full resolution stays on the server)",
                    elem_id="photo",
                    type="filepath",
                    image_mode=None,  # the file as it is: no decode and re-encode on the way in
                    sources=("upload", "clipboard"),
                    height=180,
                    buttons=["fullscreen"],
                )
                editor = gr.ImageEditor(
                    label="Paint over what should go",
                    elem_id="editor",
                    type="pil",
                    image_mode="RGBA",
                    sources=(),  # photos come through the photo box above
                    transforms=(),  # no crop / resize tools: the photo stays whole
                    layers=False,
                    brush=BRUSH,
                    format="png",
                    height=600,
                    # Gradio 6.31 positions layers loaded with a value (the examples) inside the canvas it had
                    # before the photo arrived; a canvas smaller than any photo keeps them aligned.
                    canvas_size=(8, 8),
                )
                # Gradio 6.31 re-reads every component that is an input or output of a server event on each status
                # update of every later event; for an ImageEditor that means exporting its canvas as PNGs and
                # uploading them again (7 times per click for a photo loaded by the server). So the visible editor
                # takes part in no server event: values reach it, and leave it once per click, through this hidden
                # twin, copied in the browser by frontend-only events (no status, no re-reads).
                relay = gr.ImageEditor(
                    label="Photo and painted layers", type="pil", image_mode="RGBA", format="png", visible=False
                )
                lighten_preprocess(relay)
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
                            interactive=False,
                            buttons=IMAGE_BUTTONS,
                        )
                    with gr.Tab("Before / after"):
                        comparison = gr.ImageSlider(label="Before / after", type="filepath", interactive=False)
                    with gr.Tab("Mask used"):
                        mask_view = gr.Image(
                            label="Mask used (white = filled)",
                            elem_id="mask",
                            type="filepath",
                            interactive=False,
                            buttons=IMAGE_BUTTONS,
                        )
                summary = gr.Markdown()
                downloads = gr.File(
                    label="Downloads: result and mask, full size, lossless PNG",
                    elem_id="downloads",
                    file_count="multiple",
                    interactive=False,
                )

        def use_photo(path):
            return load_photo(path, output_folder(outputs_root.name), max_megapixels)

        def run(editor_value, strategy, dilate, model_name, upload):
            folder = output_folder(outputs_root.name)
            yield from respond(
                editor_value,
                strategy,
                dilate,
                model_name,
                upload,
                models=models,
                folder=folder,
                max_megapixels=max_megapixels,
                dtype=dtype,
            )

        photo_input.upload(
            use_photo,
            inputs=photo_input,
            outputs=[relay, upload_state],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        ).success(None, js=COPY_JS, inputs=relay, outputs=editor)  # not after an error: the strokes stay
        photo_input.clear(
            lambda: (None, None), outputs=[relay, upload_state], queue=False, api_visibility="private"
        ).then(None, js=COPY_JS, inputs=relay, outputs=editor)
        example_list.click(
            lambda index: open_example(example_values[index]),
            inputs=example_list,
            outputs=[relay, upload_state, photo_input],
            queue=False,
            show_progress="hidden",
            api_visibility="undocumented",
        ).success(None, js=COPY_JS, inputs=relay, outputs=editor)
        run_button.click(None, js=COPY_JS, inputs=editor, outputs=relay).then(
            run,
            inputs=[relay, strategy_radio, dilate_slider, model_dropdown, upload_state],
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
    add_runtime_arguments(parser)
    parser.add_argument("--max_megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, help="largest photo accepted")
    parser.add_argument("--concurrency", type=int, default=1, help="requests inpainted at the same time")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        models = load_models(model_sources(args.model, args.models_dir), parse_device(args.device))
    except (CliError, ValueError, RuntimeError) as err:
        fail("app.py", err)
    demo = build_demo(models, max_megapixels=args.max_megapixels, dtype=args.dtype)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=32)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
