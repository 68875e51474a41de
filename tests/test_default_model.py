"""The bundled default model: it loads offline, inpaints real photos, and is trained (not random)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from skimage import data

import pconv_hf
from pconv_hf import PConvUNet
from pconv_hf.masks import mask_in_bucket
from pconv_hf.metrics import psnr, telea
from pconv_hf.seams import STROKE_ANGLES, corner_ratio, stroke_masks


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def held_out_photos(size: int) -> torch.Tensor:
    """Three scikit-image photos, never used in training, center-cropped to ``size``."""
    photos = []
    for pixels in (data.astronaut(), data.coffee(), data.rocket()):
        image = Image.fromarray(pixels)
        short = min(image.size)
        left, top = (image.width - short) // 2, (image.height - short) // 2
        image = image.resize((size, size), Image.Resampling.LANCZOS, box=(left, top, left + short, top + short))
        photos.append(torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255)
    return torch.stack(photos)


@pytest.fixture(scope="module")
def default_model() -> PConvUNet:
    return pconv_hf.load_model(device="cpu")


def test_default_checkpoint_is_small_and_safetensors_only():
    files = sorted(path.name for path in pconv_hf.DEFAULT_CHECKPOINT.iterdir())
    assert files == [
        "CREDITS.md",
        "README.md",
        "config.json",
        "model.safetensors",
        "native-crops.jpg",
        "samples.png",
        "seams.png",
        "texture-crops.jpg",
    ]
    # The paper's width (base_channels 64) at layer_size 7 is 25.8 M parameters: 49 MiB in float16.
    assert (pconv_hf.DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size <= 56 * 2**20


def test_default_model_inpaints_a_real_photo(default_model):
    photo = Image.fromarray(data.chelsea())
    mask = np.zeros((photo.height, photo.width), np.uint8)
    mask[100:160, 150:260] = 255
    result = pconv_hf.inpaint(photo, mask)
    before, after = np.asarray(photo), np.asarray(result)
    assert result.size == photo.size and result.mode == "RGB"
    assert np.array_equal(after[mask == 0], before[mask == 0])
    # The fill continues the surroundings: closer to the true pixels than a flat grey fill would be.
    hole = mask > 0
    error = np.abs(after[hole].astype(float) - before[hole]).mean()
    grey_error = np.abs(128.0 - before[hole]).mean()
    assert error < 0.6 * grey_error


def test_default_model_beats_an_untrained_twin_on_held_out_photos(default_model):
    size = default_model.sample_size
    images = held_out_photos(size)
    rng = np.random.default_rng(1234)
    masks = torch.stack([torch.from_numpy(mask_in_bucket(size, size, rng, (0.2, 0.3)))[None] for _ in images])
    torch.manual_seed(0)
    untrained = PConvUNet(**default_model.config).eval()

    def composite_psnr(model: PConvUNet) -> float:
        with torch.inference_mode():
            output = model(images * masks, masks).clamp(0, 1)
        return psnr(masks * images + (1 - masks) * output, images).mean().item()

    trained_db, untrained_db = composite_psnr(default_model), composite_psnr(untrained)
    assert trained_db > untrained_db + 3, (trained_db, untrained_db)


def test_default_model_has_no_dotted_hole_edge(default_model):
    """Hole pixels that stick out into the known area (5 valid neighbours) are filled about as well, relative
    to those with 4, as OpenCV Telea fills them; the paper's last layer made them about 1.6x worse."""
    images = held_out_photos(default_model.sample_size)[:2]
    masks = stroke_masks(default_model.sample_size, angles=STROKE_ANGLES[::2], widths=(16, 32))
    with torch.inference_mode():
        model_ratio = corner_ratio(default_model, images, masks=masks)["ratio"]
    telea_ratio = corner_ratio(telea, images, masks=masks)["ratio"]
    assert model_ratio < telea_ratio + 0.15, (model_ratio, telea_ratio)


def test_model_cards_parse_and_name_the_library():
    for card in (Path(__file__).parents[1] / "model_card.md", pconv_hf.DEFAULT_CHECKPOINT / "README.md"):
        meta = front_matter(card.read_text(encoding="utf-8"))
        assert meta["library_name"] == "pconv_hf"
        assert meta["pipeline_tag"] == "image-to-image"
        assert {"psnr", "ssim"} <= set(meta["metrics"])
        assert "inpainting" in meta["tags"]
