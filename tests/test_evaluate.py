"""evaluate.py: the paper's protocol on a tiny model, three real photos and every baseline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pconv_hf import (  # noqa: E402
    PConvUNet,  # noqa: E402
    evaluation,
)
from pconv_hf.cli import evaluate as evaluate_cli  # noqa: E402
from pconv_hf.cli import train as train_cli  # noqa: E402
from pconv_hf.masks import HOLE_RATIO_BUCKETS, bucket_label  # noqa: E402

BUCKETS = [bucket_label(b) for b in HOLE_RATIO_BUCKETS]


def evaluate(argv: list[str]) -> dict:
    """What ``pconv-evaluate ARGV`` computes, as the results dict (``main`` only writes the files)."""
    return evaluation.run(evaluate_cli.parse_args(argv))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from skimage import data

    directory = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(getattr(data, name)()).save(directory / f"{name}.png")
    return directory


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    PConvUNet(layer_size=5, base_channels=8, sample_size=64).save_pretrained(root / "pconv")
    PConvUNet(layer_size=5, base_channels=8, sample_size=64, conv_type="plain").save_pretrained(root / "plain")
    return root / "pconv", root / "plain"


def test_evaluate_tables_files_and_grid(photos, models, tmp_path, capsys):
    pconv, plain = models
    out = tmp_path / "eval"
    results = evaluate(
        [
            "--model",
            str(pconv),
            "--data",
            str(photos),
            "--baselines",
            f"telea,ns,unet:{plain}",
            "--output_dir",
            str(out),
            "--num_images",
            "3",
            "--device",
            "cpu",
            "--save_masks",
            str(tmp_path / "masks"),
        ]
    )
    printed = capsys.readouterr().out

    methods = ["PConv (pconv)", "Telea", "Navier-Stokes", "Conv U-Net (plain)"]
    settings = ["border margin 0 px (holes anywhere)", "border margin 4 px"]  # resolution 64 from the config
    assert list(results) == settings
    for setting in settings:
        assert f"### {setting}" in printed
        assert list(results[setting]) == methods
        for method in methods:
            assert [b for b in results[setting][method]] == [*BUCKETS, "all"]
            assert all(results[setting][method][b]["count"] == 3 for b in BUCKETS)
            assert all(0 <= results[setting][method][b]["lpips"] < 1 for b in BUCKETS)
    table_rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert len(table_rows) == 2 * (1 + len(methods))  # header + one row per method, per setting
    assert all(f"{b} PSNR" in table_rows[0] and f"{b} LPIPS ↓" in table_rows[0] for b in BUCKETS)
    for method in methods:
        assert sum(line.startswith(f"| {method} |") for line in table_rows) == 2

    # Classical inpainting beats an untrained network on small holes.
    small = results[settings[0]]
    assert small["Telea"]["0.01-0.1"]["psnr"] > small["PConv (pconv)"]["0.01-0.1"]["psnr"]
    assert small["Telea"]["0.01-0.1"]["lpips"] < small["PConv (pconv)"]["0.01-0.1"]["lpips"]

    with open(out / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(settings) * len(methods) * (len(BUCKETS) + 1)
    assert {row["method"] for row in rows} == set(methods)
    assert list(rows[0]) == ["setting", "method", "bucket", "count", "l1", "psnr", "ssim", "lpips"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"] == json.loads(json.dumps(results))
    assert saved["meta"]["resolution"] == 64 and len(saved["meta"]["images"]) == 3
    grid = Image.open(out / "comparison.png")
    assert grid.size == ((len(methods) + 2) * 66 + 2, 3 * 66 + 2)  # 3 images; input + methods + ground truth
    assert len(list((tmp_path / "masks" / "border-0").glob("*.png"))) == 3 * len(BUCKETS)


def test_frozen_masks_reproduce_generated_ones(photos, models, tmp_path):
    pconv, _ = models
    common = ["--model", str(pconv), "--data", str(photos), "--baselines", "telea", "--device", "cpu"]
    generated = evaluate(
        [*common, "--border_margin", "0", "--output_dir", str(tmp_path / "a"), "--save_masks", str(tmp_path / "masks")]
    )
    frozen = evaluate([*common, "--masks", str(tmp_path / "masks" / "border-0"), "--output_dir", str(tmp_path / "b")])
    assert list(generated.values())[0] == list(frozen.values())[0]


def test_training_validation_equals_evaluate(photos, tmp_path):
    """Validation during training and evaluate.py are one code path: same images, masks and numbers."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    out = tmp_path / "run"
    try:
        train_cli.main(
            [
                "--train_data",
                str(photos),
                "--validation_data",
                str(photos),
                "--output_dir",
                str(out),
                "--resolution",
                "64",
                "--layer_size",
                "5",
                "--base_channels",
                "8",
                "--train_batch_size",
                "2",
                "--max_train_steps",
                "2",
                "--perceptual_network",
                "none",
                "--report_to",
                "none",
                "--num_validation_images",
                "3",
                "--mixed_precision",
                "no",
            ]
        )
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        PartialState._reset_state()
    validation = json.loads((out / "validation.jsonl").read_text().splitlines()[-1])
    assert validation["step"] == 2
    results = evaluate(
        [
            "--model",
            str(out),
            "--data",
            str(photos),
            "--baselines",
            "",
            "--border_margin",
            "0",
            "--output_dir",
            str(tmp_path / "eval"),
            "--device",
            "cpu",
        ]
    )
    evaluated = results["border margin 0 px (holes anywhere)"]["PConv (run)"]
    for bucket in [*BUCKETS, "all"]:
        for metric in ("l1", "psnr", "ssim", "lpips"):
            assert evaluated[bucket][metric] == pytest.approx(validation["results"][bucket][metric], rel=1e-5)


def test_masks_per_image_adds_distinct_samples(photos, models, tmp_path, capsys):
    pconv, _ = models
    common = [
        "--model",
        str(pconv),
        "--data",
        str(photos),
        "--baselines",
        "telea",
        "--device",
        "cpu",
        "--border_margin",
        "0",
    ]
    one = evaluate([*common, "--output_dir", str(tmp_path / "one")])
    three = evaluate(
        [
            *common,
            "--masks_per_image",
            "3",
            "--output_dir",
            str(tmp_path / "three"),
            "--save_masks",
            str(tmp_path / "masks"),
        ]
    )
    setting = "border margin 0 px (holes anywhere)"
    assert all(three[setting]["Telea"][b]["count"] == 9 for b in BUCKETS)
    assert len(list((tmp_path / "masks" / "border-0").glob("*.png"))) == 9 * len(BUCKETS)
    # The first mask of each image is the one a single-mask run uses, the other two are new.
    assert three[setting]["Telea"]["all"]["psnr"] != one[setting]["Telea"]["all"]["psnr"]
    meta = json.loads((tmp_path / "three" / "results.json").read_text())["meta"]
    assert meta["masks_per_image"] == 3 and len(meta["images"]) == 3
    with pytest.raises(SystemExit) as error:
        evaluate_cli.main([*common, "--masks_per_image", "0", "--output_dir", str(tmp_path / "zero")])
    assert error.value.code == 2 and "--masks_per_image: must be from 1 to 1,000, got 0" in capsys.readouterr().err
    assert not (tmp_path / "zero").exists()


def test_no_lpips_flag(photos, models, tmp_path, capsys):
    pconv, _ = models
    results = evaluate(
        [
            "--model",
            str(pconv),
            "--data",
            str(photos),
            "--baselines",
            "",
            "--border_margin",
            "0",
            "--num_images",
            "1",
            "--output_dir",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--no_lpips",
        ]
    )
    rows = results["border margin 0 px (holes anywhere)"]["PConv (pconv)"]
    assert all("lpips" not in row for row in rows.values())
    assert "LPIPS" not in capsys.readouterr().out
    with open(tmp_path / "out" / "results.csv") as file:
        assert next(csv.reader(file)) == ["setting", "method", "bucket", "count", "l1", "psnr", "ssim"]


BLOCK_TRAINING_EXTRA = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("datasets", "accelerate"):
            raise ImportError(f"{name} is blocked: pconv-evaluate on a folder must not need the training extra")

sys.meta_path.insert(0, Block())
"""


def test_pconv_evaluate_on_a_folder_needs_no_training_extra(photos, models, tmp_path):
    # The installed command without `pip install 'pconv_hf[train]'`: datasets and accelerate cannot be imported.
    out = tmp_path / "eval"
    argv = ["--model", str(models[0]), "--data", str(photos), "--num_images", "1", "--baselines", "",
            "--border_margin", "0", "--no_lpips", "--device", "cpu", "--output_dir", str(out)]  # fmt: skip
    code = BLOCK_TRAINING_EXTRA + (
        "from pconv_hf.cli import evaluate\n"
        "assert 'datasets' not in sys.modules\n"
        f"evaluate.main({argv!r})\n"
        "assert 'datasets' not in sys.modules and 'accelerate' not in sys.modules\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "results.json").read_text())["meta"]["images"] == [str(photos / "astronaut.png")]
    # A Hub id needs datasets: without it, one line says what to install instead of a traceback.
    hub = argv[:3] + ["user/some-dataset"] + argv[4:]
    code = BLOCK_TRAINING_EXTRA + f"from pconv_hf.cli import evaluate\nevaluate.main({hub!r})\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "pip install 'pconv_hf[train]'" in done.stderr and "datasets is blocked" in done.stderr
