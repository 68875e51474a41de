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

    methods = ["PConv (pconv)", "PConv (pconv) through inpaint()", "Telea", "Navier-Stokes", "Conv U-Net (plain)"]
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
    # Through inpaint() the photos at the model's own size are filled whole at that scale: the bare network's fill.
    for bucket in [*BUCKETS, "all"]:
        bare, through = small["PConv (pconv)"][bucket], small["PConv (pconv) through inpaint()"][bucket]
        for metric in ("psnr", "ssim", "lpips", "ring"):
            assert through[metric] == pytest.approx(bare[metric], rel=1e-4, abs=1e-4)
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


# --- shift-map in the native-size protocol (issue 30) ---------------------------------------------------------


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory) -> Path:
    """A photo of the protocol's smallest size class, small enough for shift-map to fill in a blink."""
    import cv2
    from skimage import data

    directory = tmp_path_factory.mktemp("small_photos")
    photo = cv2.resize(data.coffee(), (128, 96), interpolation=cv2.INTER_AREA)
    Image.fromarray(photo).save(directory / "coffee.png")
    return directory


def test_native_protocol_scores_shiftmap_on_the_hole_only(small_photos, tmp_path):
    import numpy as np

    from pconv_hf import evaluation_native as native
    from pconv_hf.images import to_hole_mask

    photos = native.list_photos([small_photos])
    cases = native.make_cases(photos, tmp_path / "masks", masks_per_bucket=1, seed=5)
    label, fill = native.BASELINES["shiftmap"]
    assert label == "Shift-map"
    assert {case.kind for case in cases} == {"stroke", "blob", "silhouette"}  # one photo: 4 masks, kinds in turn
    for case in cases[1:3]:
        photo = np.asarray(Image.open(case.photo).convert("RGB"))
        hole = to_hole_mask(case.mask, *photo.shape[:2])
        marked = photo.copy()
        marked[hole] = (255, 0, 255)  # the true hole pixels, hidden: the fill must never copy them
        filled = fill(marked, hole)
        assert np.array_equal(filled[~hole], photo[~hole])
        assert not (filled[hole] == (255, 0, 255)).all(axis=-1).any()
        assert np.array_equal(fill(marked, hole), filled)
    methods = {"Telea": native.BASELINES["telea"][1], "Shift-map": fill}
    rows = native.run_protocol(methods, cases[:3], with_lpips=False)  # raises if a pixel outside a hole changed
    assert [row["method"] for row in rows] == ["Telea", "Shift-map"] * 3
    assert all(5 < row["psnr"] < 100 and row["seconds"] > 0 for row in rows)  # a fill: neither empty nor the truth


def test_native_report_per_kind_with_margins_over_diffusion_and_shiftmap():
    from pconv_hf import evaluation_native as native
    from pconv_hf.masks import OBJECT_KINDS

    rows = []
    for i, (kind, bucket) in enumerate([("stroke", "0.01-0.05"), ("blob", "0.05-0.1"), ("silhouette", "0.05-0.1")]):
        for method, psnr, lpips in (("model", 20 + i, 0.20), ("Telea", 18, 0.30), ("Navier-Stokes", 19, 0.28),
                                    ("Shift-map", 16, 0.25)):  # fmt: skip
            size = "<=1 MP" if i < 2 else "1-4 MP"
            rows.append({"size_class": size, "bucket": bucket, "kind": kind, "method": method, "psnr": psnr,
                         "ssim": 0.8 + i / 100, "lpips": lpips, "seconds": 1.0})  # fmt: skip
    by_size, by_kind, text = native.report(rows)
    assert set(by_kind) == {*OBJECT_KINDS, "all"}
    assert by_kind["blob"]["0.05-0.1"]["model"]["psnr"] == 21 and by_kind["all"]["all"]["model"]["count"] == 3
    assert by_size["<=1 MP"]["all"]["model"]["count"] == 2
    assert native.margins(by_kind["blob"]["all"], "model") == pytest.approx((21 - 19, 0, 100 * (0.20 / 0.28 - 1)))
    assert native.margins(by_kind["blob"]["all"], "model", native.EXEMPLAR) == pytest.approx((5, 0, -20))
    assert native.margins(by_kind["blob"]["all"], "Shift-map") == pytest.approx((-3, 0, 100 * (0.25 / 0.28 - 1)))
    assert native.margins(by_kind["blob"]["all"], "Shift-map", native.EXEMPLAR) is None
    lines = text.splitlines()
    assert "| kind | holes | n | model | Telea | Navier-Stokes | Shift-map |" in lines
    assert "| size | holes | n | model | Telea | Navier-Stokes | Shift-map |" in lines
    expected = (
        "| stroke | 0.01-0.05 | 1 |",
        "| silhouette | all | 1 |",
        "| 1-4 MP | 0.05-0.1 | 1 |",
        "| all | all | 3",
    )
    for line in expected:
        assert any(row.startswith(line) for row in lines), line
    assert "Margin over the better of Telea / Navier-Stokes: PSNR dB / SSIM / LPIPS %" in lines
    assert "Margin over shift-map: PSNR dB / SSIM / LPIPS %" in lines
    over_diffusion = text.split("Margin over shift-map")[0].split("Margin over the better")[1]
    for header in ("size", "kind"):
        assert f"| {header} | holes | model | Shift-map |" in over_diffusion
    assert "| blob | all | +5.00 / +0.0000 / -20.0 % |" in text.split("Margin over shift-map")[1]
    # Without shift-map there is no margin over it; without the diffusion fills none over them.
    assert "Margin over shift-map" not in native.report([r for r in rows if r["method"] != "Shift-map"])[2]
    assert "Margin over the better" not in native.report([r for r in rows if r["method"] in ("model", "Shift-map")])[2]


def test_pconv_evaluate_native_has_shiftmap_and_the_per_kind_report_by_default(small_photos, models, tmp_path):
    out = tmp_path / "native"
    argv = ["--protocol", "native", "--model", str(models[0]), "--data", str(small_photos), "--no_lpips",
            "--device", "cpu", "--output_dir", str(out)]  # fmt: skip
    evaluate_cli.main(argv)
    table = (out / "native_table.md").read_text()
    assert "| size | holes | n | PConvUNet | Telea | Navier-Stokes | Shift-map |" in table
    assert "| kind | holes | n | PConvUNet | Telea | Navier-Stokes | Shift-map |" in table
    assert "Margin over shift-map" in table
    by_kind = json.loads((out / "native_results_by_kind.json").read_text())
    assert by_kind["all"]["all"]["Shift-map"]["count"] == 4  # one photo, one mask per bucket
    assert sum(by_kind[kind]["all"]["Shift-map"]["count"] for kind in by_kind if kind != "all") == 4
    with open(out / "native_rows.csv") as file:
        assert {row["kind"] for row in csv.DictReader(file)} == {"stroke", "blob", "silhouette"}


def test_paper_protocol_takes_shiftmap_as_a_baseline(photos, models, tmp_path, capsys):
    argv = ["--model", str(models[0]), "--data", str(photos), "--num_images", "1", "--border_margin", "0",
            "--no_lpips", "--device", "cpu"]  # fmt: skip
    results = evaluate([*argv, "--baselines", "telea,shiftmap", "--output_dir", str(tmp_path / "out")])
    rows = results["border margin 0 px (holes anywhere)"]
    assert list(rows)[-2:] == ["Telea", "Shift-map"]
    assert all(rows["Shift-map"][b]["count"] == 1 and 5 < rows["Shift-map"][b]["psnr"] < 100 for b in BUCKETS)
    assert rows["Shift-map"]["all"]["psnr"] != rows["Telea"]["all"]["psnr"]
    assert "| Shift-map |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as error:
        evaluate_cli.main([*argv, "--baselines", "patchmatch", "--output_dir", str(tmp_path / "bad")])
    assert error.value.code == 1 and "use telea, ns, shiftmap or unet:DIR" in capsys.readouterr().err
