"""The package as users install it: a wheel, outside the checkout, every console command working on its own."""

import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """pconv_hf built as a wheel and installed with ``pip install --target`` into a folder of its own."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", root / "dist",
         REPO],
        check=True, cwd=root,
    )  # fmt: skip
    (wheel,) = (root / "dist").glob("pconv_hf-*.whl")
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, wheel], check=True
    )
    return site


def run_installed(site: Path, cwd: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """A console script of the installed wheel (or ``python -c code``), run in ``cwd`` with only the wheel's
    pconv_hf importable: the checkout is neither the working directory nor on the path."""
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", code] if code is not None else [str(site / "bin" / args[0]), *args[1:]]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_holds_the_package_and_the_bundled_model(installed, tmp_path):
    result = run_installed(installed, tmp_path, code="import pconv_hf; print(pconv_hf.__file__)")
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed)
    assert (installed / "pconv_hf" / "checkpoints" / "pconv-photos-256" / "model.safetensors").is_file()
    assert (installed / "pconv_hf" / "cli" / "anomaly.py").is_file()
    assert not (installed / "train_accelerate.py").exists()
    for script in ("pconv-inpaint", "pconv-anomaly", "pconv-evaluate", "pconv-export"):
        assert (installed / "bin" / script).is_file()


def test_pconv_inpaint_from_the_wheel(installed, tmp_path):
    photo = data.coffee()
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=95)
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[150:200, 250:330] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = run_installed(installed, tmp_path, "pconv-inpaint", "--image", "photo.jpg", "--mask", "mask.png",
                           "-o", "out.png")  # fmt: skip
    assert result.returncode == 0, result.stderr
    filled = np.asarray(Image.open(tmp_path / "out.png"))
    original = np.asarray(Image.open(tmp_path / "photo.jpg"))
    np.testing.assert_array_equal(filled[mask == 0], original[mask == 0])
    assert (filled[mask > 0] != original[mask > 0]).any()


def textures(folder: Path, count: int, seed: int) -> Path:
    """Tiny clean images of one texture (noise around a grey level)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = np.clip(120 + rng.normal(0, 12, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    return folder


def test_pconv_anomaly_fit_and_score_from_the_wheel(installed, tmp_path):
    clean = textures(tmp_path / "clean", 10, 0)
    fit = run_installed(
        installed, tmp_path, "pconv-anomaly", "fit", "--train_dir", "clean", "--output_dir", "model", "--mode",
        "autoencoder", "--resolution", "32", "--base_channels", "4", "--max_train_steps", "2", "--train_batch_size",
        "2", "--feature_network", "none",
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr
    assert (tmp_path / "model" / "anomaly.json").is_file()
    score = run_installed(installed, tmp_path, "pconv-anomaly", "score", "--model", "model", "--images", str(clean),
                          "--output", "scores.csv")  # fmt: skip
    assert score.returncode == 0, score.stderr
    rows = (tmp_path / "scores.csv").read_text().splitlines()
    assert rows[0].startswith("image,score") and len(rows) == 11


BLOCK_TRAINING_IMPORTS = textwrap.dedent(
    """
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("datasets", "accelerate"):
                raise ImportError(f"{name} is blocked: this path must not need the training extra")

    sys.meta_path.insert(0, Block())
    """
)


def test_inpaint_and_anomaly_scoring_need_no_training_extra(installed, tmp_path):
    """``inpaint()`` and ``pconv-anomaly score`` run with ``datasets`` and ``accelerate`` unimportable."""
    textures(tmp_path / "clean", 4, 1)
    from pconv_hf import PConvUNet
    from pconv_hf.anomaly import AnomalyConfig

    PConvUNet(layer_size=4, base_channels=4, sample_size=32, conv_type="plain").save_pretrained(tmp_path / "model")
    AnomalyConfig(mode="autoencoder", resolution=32, mse_weight=1.0, feature_network="none").save(tmp_path / "model")
    code = BLOCK_TRAINING_IMPORTS + textwrap.dedent(
        """
        import numpy as np
        import pconv_hf
        from pconv_hf.cli import anomaly as cli

        photo = np.full((64, 96, 3), 128, np.uint8)
        mask = np.zeros((64, 96), np.uint8)
        mask[20:30, 40:50] = 255
        assert pconv_hf.inpaint(photo, mask).shape == photo.shape
        cli.main(["score", "--model", "model", "--images", "clean", "--output", "scores.csv"])
        assert "datasets" not in sys.modules and "accelerate" not in sys.modules
        print("ok")
        """
    )
    result = run_installed(installed, tmp_path, code=code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert len((tmp_path / "scores.csv").read_text().splitlines()) == 5


OPENCV_DISTRIBUTIONS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)


def test_exactly_one_opencv_distribution_the_contrib_one_with_xphoto():
    """Every OpenCV wheel ships the same cv2 package: two side by side overwrite each other's files, and removing
    one breaks the other. pconv_hf depends on the headless contrib wheel (cv2.xphoto's shift-map) and nothing else."""
    installed = []
    for name in OPENCV_DISTRIBUTIONS:
        try:
            importlib.metadata.distribution(name)
            installed.append(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    assert installed == ["opencv-contrib-python-headless"], "run bash scripts/setup.sh to keep only the contrib wheel"
    requirements = [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0] for r in importlib.metadata.requires("pconv_hf")]
    assert [r for r in requirements if r.startswith("opencv")] == ["opencv-contrib-python-headless"]
    import cv2

    assert callable(cv2.xphoto.inpaint) and isinstance(cv2.xphoto.INPAINT_SHIFTMAP, int)
