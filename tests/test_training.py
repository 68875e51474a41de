"""train_accelerate.py end to end on real photos at 64 px, plus the data stream it is built on.

Training runs are in-process (``main(argv)``) except the two-process DDP run, which needs ``accelerate launch``.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pconv_hf import PConvUNet, training  # noqa: E402
from pconv_hf.cli import train as train_cli  # noqa: E402
from pconv_hf.data import DataPosition, TrainingStream, load_examples, rank_stream  # noqa: E402
from pconv_hf.images import BadImageError, decode_image  # noqa: E402
from pconv_hf.losses import LossWeights  # noqa: E402
from pconv_hf.masks import make_mask_source  # noqa: E402
from pconv_hf.training import flatten_metrics, loss_weights_at  # noqa: E402
from pconv_hf.training_config import TrainingConfig, build_parser  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat", "coins", "moon", "page")
TINY = [
    "--resolution",
    "64",
    "--layer_size",
    "5",
    "--base_channels",
    "8",
    "--train_batch_size",
    "2",
    "--report_to",
    "none",
    "--mixed_precision",
    "no",
    "--num_validation_images",
    "3",
]

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def write_photos(directory: Path, names=PHOTOS, copies: int = 1) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for copy in range(copies):
        for name in names:
            Image.fromarray(photo(name)).save(directory / f"{name}_{copy}.jpg", quality=90)
    return directory


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("val")
    for name in ("astronaut", "coffee", "chelsea"):
        Image.fromarray(photo(name)).save(directory / f"{name}.png")
    return directory


def train(*extra: str) -> dict:
    return train_cli.main([*TINY, *extra])


def train_in_code(*extra: str) -> dict:
    """As ``train``, through the library call (exceptions, not the command line's exit status)."""
    return training.train(training.parse_args([*TINY, *extra]))


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


# ---------------------------------------------------------------------------------------------------------
# End to end


def test_train_exports_checkpoints_validates(photo_dir, val_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    result = train(
        "--train_data",
        str(photo_dir),
        "--validation_data",
        str(val_dir),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "2",
        "--validation_steps",
        "2",
        "--perceptual_network",
        "none",
    )

    assert result["global_step"] == 3
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    model = PConvUNet.from_pretrained(out)
    assert model.config["sample_size"] == 64 and model.config["base_channels"] == 8
    assert (out / "README.md").is_file()
    # The export is the final state: the same weights accelerate saved in the last checkpoint.
    final = load_file(str(out / "checkpoint-3" / "model.safetensors"))
    exported = weights(out)
    assert all(torch.equal(exported[k], final[k]) for k in exported)
    assert any(
        not torch.equal(exported[k], load_file(str(out / "checkpoint-2" / "model.safetensors"))[k]) for k in exported
    )

    for step in (2, 3):
        grid = Image.open(out / "samples" / f"step-{step}.png")
        assert grid.size == (5 * 66 + 2, 3 * 66 + 2)  # 5 columns, 3 validation images, 2 px padding
    entries = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries] == [2, 3]
    assert set(entries[-1]["results"]) == {"0.01-0.1", "0.1-0.2", "0.2-0.3", "0.3-0.4", "0.4-0.5", "0.5-0.6", "all"}
    assert entries[-1]["results"]["all"]["count"] == 3 * 6
    assert 0 < entries[-1]["results"]["all"]["psnr"] < 100
    assert 0 < entries[-1]["results"]["all"]["lpips"] < 1  # the LPIPS weights are converted in CI
    assert " LPIPS " in caplog.text
    args = json.loads((out / "training_args.json").read_text())
    assert args["learning_rate"] == 2e-4 and args["perceptual_network"] == "none"
    assert set(result["last_logs"]) >= {"loss/valid", "loss/hole", "loss/tv", "loss/total"}
    assert "loss/style" not in result["last_logs"]


def test_train_with_random_vgg_features(photo_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    result = train(
        "--train_data",
        str(photo_dir),
        "--output_dir",
        str(tmp_path / "out"),
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "5",
        "--validation_steps",
        "5",
        "--perceptual_network",
        "vgg16",
        "--perceptual_weights",
        "random",
        "--lambda_style_initial",
        "1",
        "--style_warmup_steps",
        "1",
    )
    assert result["global_step"] == 2
    assert np.isfinite(result["last_logs"]["loss/style"]) and result["last_logs"]["loss/perceptual"] > 0
    assert "RANDOMLY INITIALISED vgg16" in caplog.text
    PConvUNet.from_pretrained(tmp_path / "out")


def test_flatten_metrics_includes_lpips_when_present():
    row = {"count": 2, "l1": 0.1, "psnr": 20.0, "ssim": 0.5}
    assert flatten_metrics({"all": row}) == {"val/l1/all": 0.1, "val/psnr/all": 20.0, "val/ssim/all": 0.5}
    flat = flatten_metrics({"0.01-0.1": {**row, "lpips": 0.25}, "all": {**row, "lpips": 0.5}}, prefix="eval")
    assert flat["eval/lpips/0.01-0.1"] == 0.25 and flat["eval/lpips/all"] == 0.5
    assert len(flat) == 8  # four metrics x two buckets, no counts


def test_style_schedule():
    paper = LossWeights()
    assert loss_weights_at(0, paper, 6.0, 100).style == 6.0
    assert loss_weights_at(99, paper, 6.0, 100).style == 6.0
    assert loss_weights_at(100, paper, 6.0, 100) == paper
    assert loss_weights_at(0, paper) == paper


# With 2 workers and 3 batches consumed at the checkpoint, the resumed loader must start with worker 1's turn.
@pytest.mark.parametrize(("workers", "accumulation"), [(0, 2), (2, 1)])
def test_resume_matches_uninterrupted_run(photo_dir, tmp_path, workers, accumulation):
    common = [
        "--train_data",
        str(photo_dir),
        "--checkpointing_steps",
        "3",
        "--validation_steps",
        "100",
        "--perceptual_network",
        "none",
        "--gradient_accumulation_steps",
        str(accumulation),
        "--dataloader_num_workers",
        str(workers),
        "--lr_warmup_steps",
        "2",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(*common, "--output_dir", str(straight), "--max_train_steps", "6")
    train(*common, "--output_dir", str(resumed), "--max_train_steps", "3")
    result = train(
        *common, "--output_dir", str(resumed), "--max_train_steps", "6", "--resume_from_checkpoint", "latest"
    )

    assert result["global_step"] == 6
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    # Every micro-batch of the 6 updates was read once: the data position continued, it did not restart.
    state = json.loads((resumed / "checkpoint-6" / "data_state_rank0.json").read_text())
    assert state["batches"] == 6 * accumulation


ADVERSARIAL = [
    "--lambda_adversarial",
    "0.1",
    "--lambda_feature_matching",
    "1",
    "--adversarial_start_step",
    "1",
    "--discriminator_channels",
    "8",
]


def test_adversarial_run_checkpoints_and_resumes_the_discriminator_exactly(photo_dir, tmp_path):
    common = [
        "--train_data",
        str(photo_dir),
        "--checkpointing_steps",
        "2",
        "--validation_steps",
        "100",
        "--perceptual_network",
        "none",
        *ADVERSARIAL,
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = train(*common, "--output_dir", str(straight), "--max_train_steps", "4")
    train(*common, "--output_dir", str(resumed), "--max_train_steps", "2")
    train(*common, "--output_dir", str(resumed), "--max_train_steps", "4", "--resume_from_checkpoint", "latest")

    logs = result["last_logs"]
    assert {"loss/adversarial", "loss/feature_matching", "discriminator/real", "discriminator/r1"} <= set(logs)
    checkpoint = straight / "checkpoint-4"
    assert {"model_1.safetensors", "optimizer_1.bin", "checkpoint_manifest.json"} <= {
        p.name for p in checkpoint.iterdir()
    }
    # The discriminator learned (its weights moved) and the resumed run ends where the straight one does: generator
    # and discriminator, so the discriminator's weights and its optimizer state were restored.
    first = load_file(str(straight / "checkpoint-2" / "model_1.safetensors"))
    for name in ("model.safetensors", "model_1.safetensors"):
        a = load_file(str(straight / "checkpoint-4" / name))
        b = load_file(str(resumed / "checkpoint-4" / name))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{name} {key}")
    assert any(not torch.equal(first[k], a[k]) for k in first)
    # The export is the generator alone.
    assert set(weights(straight)) == set(load_file(str(checkpoint / "model.safetensors")))
    assert "Adversarial term from step 1" in (straight / "README.md").read_text()

    # Resuming a checkpoint without a discriminator into an adversarial run: one line, what to do instead.
    plain = tmp_path / "plain"
    train("--train_data", str(photo_dir), "--perceptual_network", "none", "--output_dir", str(plain),
          "--max_train_steps", "1", "--validation_steps", "100")  # fmt: skip
    with pytest.raises(ValueError, match="holds no discriminator .* --init_from"):
        train_in_code(
            *common, "--output_dir", str(plain), "--max_train_steps", "2", "--resume_from_checkpoint", "latest"
        )


@pytest.mark.parametrize(("beta1", "expected"), [(None, 0.9), (0.5, 0.5)])
def test_discriminator_optimizer_takes_its_own_beta1(beta1, expected):
    from accelerate import Accelerator

    config = TrainingConfig(**REQUIRED, lambda_adversarial=1.0, discriminator_adam_beta1=beta1, adam_beta2=0.99)
    _, optimizer = training._build_discriminator(config, Accelerator(cpu=True))
    assert optimizer.param_groups[0]["betas"] == (expected, 0.99)
    assert optimizer.param_groups[0]["lr"] == config.discriminator_learning_rate


def test_killed_checkpoint_write_leaves_the_previous_one_and_latest_resumes_it(
    photo_dir, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    common = [
        "--train_data",
        str(photo_dir),
        "--output_dir",
        str(out),
        "--checkpointing_steps",
        "2",
        "--validation_steps",
        "100",
        "--perceptual_network",
        "none",
        "--checkpoints_total_limit",
        "1",
    ]

    class Killed(BaseException):  # as a kill -9: nothing after it runs, no handler sees it
        pass

    write_manifest = training._write_manifest

    def die_at_step_4(folder):
        if folder.name == ".checkpoint-4.tmp":
            raise Killed
        write_manifest(folder)

    monkeypatch.setattr(training, "_write_manifest", die_at_step_4)
    with pytest.raises(Killed):
        train_in_code(*common, "--max_train_steps", "6")
    monkeypatch.undo()
    # Step 4's state was written (all but the manifest) into the staging folder; checkpoint-2, the only one the
    # limit keeps, is whole.
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == [".checkpoint-4.tmp", "checkpoint-2"]
    assert (out / ".checkpoint-4.tmp" / "model.safetensors").is_file()
    assert (out / "checkpoint-2" / training.CHECKPOINT_MANIFEST).is_file()
    # What the earlier in-place writer left when killed: a checkpoint-N folder holding one temporary file.
    (out / "checkpoint-6").mkdir()
    (out / "checkpoint-6" / "model.safetensors.tmp").write_bytes(b"\0" * 100)

    result = train_in_code(*common, "--max_train_steps", "4", "--resume_from_checkpoint", "latest")
    assert "checkpoint-6 is incomplete" in caplog.text
    assert "checkpoint-2 at step 2" in caplog.text
    assert result["global_step"] == 4
    # The staging leftover is gone; the limit kept the new checkpoint alone (the incomplete one pruned too).
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-4"]


def test_freeze_bn_trains_batch_1_with_the_statistics_unchanged(photo_dir, tmp_path):
    start = tmp_path / "start"
    train("--train_data", str(photo_dir), "--perceptual_network", "none", "--output_dir", str(start),
          "--max_train_steps", "1", "--validation_steps", "100")  # fmt: skip
    out = tmp_path / "out"
    train("--train_data", str(photo_dir), "--perceptual_network", "none", "--output_dir", str(out),
          "--init_from", str(start), "--freeze_bn", "--train_batch_size", "1", "--max_train_steps", "2",
          "--validation_steps", "100")  # fmt: skip
    before, after = weights(start), weights(out)
    batch_norm = [k for k in before if k.endswith(("running_mean", "running_var", "norm.weight", "norm.bias"))]
    assert batch_norm and all(torch.equal(before[k], after[k]) for k in batch_norm)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("conv.weight"))


def test_two_process_ddp_on_cpu(tmp_path):
    # 20 distinct files: 4 updates x 2 images per rank stay inside each rank's first epoch (10 images).
    data = write_photos(tmp_path / "photos", names=PHOTOS[:7], copies=3)
    for extra in sorted(data.iterdir())[20:]:
        extra.unlink()
    out, seen = tmp_path / "out", tmp_path / "seen"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(REPO / "train_accelerate.py"),
        "--train_data",
        str(data),
        "--output_dir",
        str(out),
        "--resolution",
        "64",
        "--train_batch_size",
        "2",
        "--checkpointing_steps",
        "2",
        "--layer_size",
        "5",
        "--base_channels",
        "8",
        "--perceptual_network",
        "none",
        "--report_to",
        "none",
        "--num_validation_images",
        "2",
        "--log_seen_images",
        str(seen),
    ]

    first = subprocess.run([*command, "--max_train_steps", "4"], env=env, capture_output=True, text=True, timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "on 2 process(es)" in first.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert {p.name for p in (out / "checkpoint-4").glob("data_state_rank*.json")} == {
        "data_state_rank0.json",
        "data_state_rank1.json",
    }
    seen_by_rank = [
        [line.split("\t")[1] for line in Path(f"{seen}.rank{r}.txt").read_text().splitlines()] for r in (0, 1)
    ]
    assert all(len(ids) == 8 and len(set(ids)) == 8 for ids in seen_by_rank)
    assert not set(seen_by_rank[0]) & set(seen_by_rank[1]), "ranks trained on the same images"

    second = subprocess.run(
        [*command, "--max_train_steps", "6", "--resume_from_checkpoint", "latest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "checkpoint-4 at step 4" in second.stderr
    for rank in (0, 1):
        steps = [int(line.split("\t")[0]) for line in Path(f"{seen}.rank{rank}.txt").read_text().splitlines()]
        assert steps == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]  # the second run picked up at step 4
    finals = [json.loads(Path(f"{seen}.rank{r}.json").read_text()) for r in (0, 1)]
    assert [f["global_step"] for f in finals] == [6, 6]
    export_hash = training._state_hash(PConvUNet.from_pretrained(out))
    assert finals[0]["state_hash"] == finals[1]["state_hash"] == export_hash


# ---------------------------------------------------------------------------------------------------------
# Bad data, fine-tuning, failures


def test_bad_images_are_skipped_and_counted(tmp_path, caplog):
    data = write_photos(tmp_path / "data", names=("astronaut", "coffee", "chelsea"))
    astronaut = photo("astronaut")
    Image.fromarray(astronaut).convert("CMYK").save(data / "cmyk.jpg")
    Image.fromarray(astronaut).convert("P").save(data / "palette.png")
    Image.fromarray(astronaut).convert("RGBA").save(data / "rgba.png")
    Image.fromarray(photo("camera").astype(np.uint16) * 257).save(data / "gray16.png")
    (data / "corrupt.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    encoded = io.BytesIO()
    Image.fromarray(photo("rocket")).save(encoded, format="JPEG")
    (data / "truncated.jpg").write_bytes(encoded.getvalue()[: len(encoded.getvalue()) // 2])
    Image.fromarray(astronaut[:40, :40]).save(data / "tiny.png")

    caplog.set_level(logging.INFO)
    result = train(
        "--train_data",
        str(data),
        "--output_dir",
        str(tmp_path / "out"),
        "--max_train_steps",
        "5",
        "--checkpointing_steps",
        "10",
        "--validation_steps",
        "10",
        "--perceptual_network",
        "none",
    )

    assert result["skipped"] == {"unreadable": 1, "truncated": 1, "too_small": 1, "too_large": 0}
    assert "unreadable=1, truncated=1, too_small=1, too_large=0" in caplog.text
    assert "corrupt.jpg (unreadable)" in caplog.text and "truncated.jpg (truncated)" in caplog.text


def test_decode_image_modes():
    gray16 = Image.fromarray(np.full((80, 80), 65535 // 2, np.uint16))
    buffer = io.BytesIO()
    gray16.save(buffer, format="PNG")
    rgb = decode_image(buffer.getvalue())
    assert rgb.mode == "RGB" and abs(int(np.asarray(rgb)[0, 0, 0]) - 128) <= 1  # rescaled, not clipped to 255
    rgba = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    assert np.asarray(decode_image(rgba, 64)).min() == 255  # transparent -> white
    with pytest.raises(BadImageError) as error:
        decode_image(b"not an image")
    assert error.value.reason == "unreadable"
    with pytest.raises(BadImageError) as error:
        decode_image(Image.new("RGB", (63, 200)))
    assert error.value.reason == "too_small"


def test_finetune_freezes_encoder_batchnorm(photo_dir, tmp_path):
    start = tmp_path / "start"
    torch.manual_seed(0)
    PConvUNet(layer_size=5, base_channels=8, sample_size=64).save_pretrained(start)
    out = tmp_path / "out"
    train(
        "--train_data",
        str(photo_dir),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "5",
        "--validation_steps",
        "5",
        "--perceptual_network",
        "none",
        "--init_from",
        str(start),
        "--finetune",
    )

    before, after = weights(start), weights(out)
    encoder_bn = [k for k in before if k.startswith("encoder.") and ".norm." in k]
    decoder_stats = [k for k in before if k.startswith("decoder.") and k.endswith(("running_mean", "running_var"))]
    assert encoder_bn and decoder_stats
    for name in encoder_bn:
        assert torch.equal(before[name], after[name]), name
    assert all(not torch.equal(before[k], after[k]) for k in decoder_stats)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.endswith("conv.weight"))
    assert json.loads((out / "training_args.json").read_text())["learning_rate"] == 5e-5


def test_channels_last_trains_the_same_model(photo_dir, tmp_path):
    common = [
        "--train_data",
        str(photo_dir),
        "--max_train_steps",
        "3",
        "--checkpointing_steps",
        "5",
        "--validation_steps",
        "5",
        "--perceptual_network",
        "none",
        "--lr_scheduler",
        "cosine",
    ]
    train(*common, "--output_dir", str(tmp_path / "default"))
    train(*common, "--output_dir", str(tmp_path / "channels_last"), "--channels_last")
    a, b = weights(tmp_path / "default"), weights(tmp_path / "channels_last")
    assert a.keys() == b.keys()
    for name in a:
        assert b[name].is_contiguous(), name  # exported in the standard layout
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-4, msg=name)
    assert PConvUNet.from_pretrained(tmp_path / "channels_last").config["layer_size"] == 5


def test_missing_imagenet_weights_fail_before_training(photo_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PCONV_HF_HOME", str(tmp_path / "empty_pconv_hf_home"))
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError) as error:
        train_in_code(
            "--train_data",
            str(photo_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "2",
            "--perceptual_network",
            "vgg16",
            "--perceptual_weights",
            "imagenet",
        )
    message = str(error.value)
    assert str(tmp_path / "empty_pconv_hf_home" / "features" / "vgg16-imagenet.safetensors") in message
    assert "bash scripts/fetch_feature_weights.sh" in message
    assert not out.exists()  # stopped before any data, model or output work


def test_non_finite_loss_stops_after_max_skipped_steps(photo_dir, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(training.NonFiniteLossError) as error:
        train_in_code(
            "--train_data",
            str(photo_dir),
            "--output_dir",
            str(out),
            "--max_train_steps",
            "5",
            "--perceptual_network",
            "none",
            "--lambda_hole",
            "nan",
            "--max_skipped_steps",
            "3",
        )
    assert "3 consecutive updates had a non-finite loss" in str(error.value)
    assert not list(out.glob("checkpoint-*"))


# ---------------------------------------------------------------------------------------------------------
# Data sources and the stream


def test_hub_style_dataset_works_offline(tmp_path):
    import datasets

    images = [Image.fromarray(photo(name)) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    table = datasets.Dataset.from_dict(
        {"label": [0, 1, 2, 3], "picture": images},
        features=datasets.Features({"label": datasets.Value("int64"), "picture": datasets.Image()}),
    )
    saved = tmp_path / "saved"
    table.save_to_disk(str(saved))
    parquet = tmp_path / "parquet" / "data"
    parquet.mkdir(parents=True)
    table.to_parquet(str(parquet / "train-00000-of-00001.parquet"))

    for source in (saved, tmp_path / "parquet"):
        stream = load_examples(source)  # "picture" found by its Image feature type
        rows = list(stream)
        assert len(rows) == 4 and set(rows[0]) == {"image"}
        assert decode_image(rows[1]["image"]).size == images[1].size

    result = train(
        "--train_data",
        str(saved),
        "--output_dir",
        str(tmp_path / "out"),
        "--max_train_steps",
        "2",
        "--checkpointing_steps",
        "5",
        "--validation_steps",
        "5",
        "--perceptual_network",
        "none",
    )
    assert result["global_step"] == 2 and sum(result["skipped"].values()) == 0


def make_stream(photo_dir: Path, rank: int = 0, world_size: int = 1, seed: int = 0, **kwargs) -> TrainingStream:
    examples = rank_stream(load_examples(photo_dir), seed=seed, shuffle_buffer_size=4, rank=rank, world_size=world_size)
    return TrainingStream(
        examples,
        resolution=64,
        batch_size=3,
        mask_source=make_mask_source("generated", 64),
        seed=seed,
        rank=rank,
        **kwargs,
    )


def test_grayscale_augmentation_keeps_crops_and_masks(photo_dir):
    colour_names = {"astronaut", "coffee", "chelsea", "rocket", "cat"}
    plain = next(iter(make_stream(photo_dir)))
    stream = make_stream(photo_dir, grayscale_probability=1.0)
    batches = [batch for _, batch in zip(range(3), stream, strict=False)]
    gray = batches[0]
    # Same crops and masks as without the augmentation, only the colour is gone.
    assert gray["ids"] == plain["ids"]
    assert torch.equal(gray["valid_mask"], plain["valid_mask"])
    for batch in batches:
        image = batch["image"]
        assert torch.equal(image[:, 0], image[:, 1]) and torch.equal(image[:, 1], image[:, 2])
    index = next(i for i, name in enumerate(plain["ids"]) if Path(name).stem.split("_")[0] in colour_names)
    assert not torch.equal(plain["image"][index, 0], plain["image"][index, 1])  # the source crop had colour
    luma = 0.299 * plain["image"][index, 0] + 0.587 * plain["image"][index, 1] + 0.114 * plain["image"][index, 2]
    assert (gray["image"][index, 0] - luma).abs().max() < 2 / 255

    half = make_stream(photo_dir, grayscale_probability=0.5)
    converted = [
        torch.equal(img[0], img[1]) for _, batch in zip(range(20), half, strict=False) for img in batch["image"]
    ]
    assert 0.25 < sum(converted) / len(converted) < 0.85  # includes the 2 grayscale photos of 9
    with pytest.raises(ValueError, match="grayscale_probability must be in \\[0, 1\\], got 1.5"):
        make_stream(photo_dir, grayscale_probability=1.5)


def test_lr_schedules():
    factor = training.lr_factor
    assert [factor(s, schedule="constant", warmup=4, total=10) for s in (0, 3, 4, 9)] == [0.25, 1.0, 1.0, 1.0]
    cosine = [factor(s, schedule="cosine", warmup=2, total=12) for s in range(13)]
    assert cosine[:3] == [0.5, 1.0, 1.0]
    assert all(a > b for a, b in zip(cosine[2:12], cosine[3:12], strict=False))
    assert cosine[7] == pytest.approx(0.5) and cosine[12] == pytest.approx(0.0, abs=1e-12)


def test_stream_is_deterministic_split_and_resumable(photo_dir):
    def first(stream, n):
        iterator = iter(stream)
        return [next(iterator) for _ in range(n)]

    a, b = first(make_stream(photo_dir), 4), first(make_stream(photo_dir), 4)
    assert all(
        torch.equal(x["image"], y["image"]) and torch.equal(x["valid_mask"], y["valid_mask"])
        for x, y in zip(a, b, strict=True)
    )
    assert a[0]["image"].shape == (3, 3, 64, 64) and a[0]["valid_mask"].shape == (3, 1, 64, 64)
    assert set(torch.unique(a[0]["valid_mask"]).tolist()) == {0.0, 1.0}
    assert a[3]["state"]["epoch"] == 1  # 9 images, 3 per batch: the fourth batch starts the next epoch
    assert {i for x in a[:3] for i in x["ids"]} == {str(p) for p in photo_dir.iterdir()}

    ranks = [first(make_stream(photo_dir, rank, 2), 1)[0]["ids"] for rank in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])

    position = DataPosition(num_workers=0)
    for batch in a[:2]:
        position.update(batch["state"])
    resumed = make_stream(photo_dir)
    assert resumed.load_resume_state(position.state_dict(), num_workers=0)
    continued = first(resumed, 2)
    assert [x["ids"] for x in continued] == [x["ids"] for x in a[2:4]]
    assert torch.equal(continued[1]["image"], a[3]["image"])


def test_init_from_a_narrower_model_widens_it(photo_dir, tmp_path):
    start = tmp_path / "start"
    torch.manual_seed(0)
    PConvUNet(layer_size=5, base_channels=8, sample_size=64, boundary_blend=True).save_pretrained(start)
    out = tmp_path / "out"
    train(
        "--train_data",
        str(photo_dir),
        "--output_dir",
        str(out),
        "--max_train_steps",
        "1",
        "--checkpointing_steps",
        "5",
        "--validation_steps",
        "5",
        "--perceptual_network",
        "none",
        "--init_from",
        str(start),
        "--finetune",
        "--base_channels",
        "12",
    )
    assert PConvUNet.from_pretrained(out).config["base_channels"] == 12
    assert weights(out)["encoder.0.conv.weight"].shape == (12, 3, 7, 7)
    with pytest.raises(ValueError, match="narrower than --init_from's 12"):
        train_in_code(
            "--train_data",
            str(photo_dir),
            "--output_dir",
            str(tmp_path / "narrow"),
            "--max_train_steps",
            "1",
            "--perceptual_network",
            "none",
            "--init_from",
            str(out),
            "--base_channels",
            "8",
        )


# ---------------------------------------------------------------------------------------------------------
# The settings: TrainingConfig and its flags

REQUIRED = {"train_data": "photos", "output_dir": "out", "max_train_steps": 10}


def test_flags_and_config_agree_on_every_default():
    parser_defaults = vars(
        build_parser().parse_args(["--train_data", "photos", "--output_dir", "out", "--max_train_steps", "10"])
    )
    fields = dataclasses.fields(TrainingConfig)
    assert list(parser_defaults) == [field.name for field in fields]  # one flag per field, in field order
    for field in fields:
        expected = REQUIRED[field.name] if field.default is dataclasses.MISSING else field.default
        assert parser_defaults[field.name] == expected, field.name
    assert training.parse_args(["--train_data", "photos", "--output_dir", "out", "--max_train_steps", "10"]) == (
        TrainingConfig(**REQUIRED)
    )
    assert TrainingConfig(**REQUIRED).learning_rate == training.PAPER_LEARNING_RATE
    assert TrainingConfig(**REQUIRED, finetune=True).learning_rate == training.PAPER_FINETUNE_LEARNING_RATE
    with pytest.raises(SystemExit):  # argparse: the three settings without a default are required flags
        build_parser().parse_args(["--train_data", "photos", "--output_dir", "out"])


@pytest.mark.parametrize(("changes", "message"), [
    ({"train_batch_size": 0}, "--train_batch_size must be >= 1, got 0"),
    ({"max_train_steps": -3}, "--max_train_steps must be >= 1, got -3"),
    ({"resolution": 100, "layer_size": 5}, "--resolution 100 must be a multiple of 2\\*\\*layer_size = 32"),
    ({"lambda_style_initial": 6.0}, "--lambda_style_initial and --style_warmup_steps > 0 go together, got 6.0 and 0"),
    ({"checkpoints_total_limit": 0}, "--checkpoints_total_limit must be >= 1, got 0"),
    ({"native_crops": 1.5}, "--native_crops must be a share in \\[0, 1\\], got 1.5"),
    ({"grayscale_augmentation": -0.1}, "--grayscale_augmentation must be a share in \\[0, 1\\], got -0.1"),
    ({"train_transform": "rotate"}, "--train_transform must be one of .*'resize_flip'.*, got 'rotate'"),
    ({"perceptual_network": "resnet"}, "--perceptual_network must be one of \\['vgg16', 'alexnet', 'none'\\], "
                                       "got 'resnet'"),
    ({"mixed_precision": "fp8"}, "--mixed_precision must be one of \\['no', 'fp16', 'bf16'\\], got 'fp8'"),
    ({"discriminator_adam_beta1": 1.0}, "--discriminator_adam_beta1 must be in \\[0, 1\\), got 1.0"),
])  # fmt: skip
def test_config_rejects_bad_values_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**{**REQUIRED, **changes})
    flags = [item for name, value in {**REQUIRED, **changes}.items() for item in (f"--{name}", str(value))]
    if any(field.metadata["choices"] for field in dataclasses.fields(TrainingConfig) if field.name in changes):
        with pytest.raises(SystemExit):  # argparse knows the choices and refuses first, with a usage message
            training.parse_args(flags)
    else:
        with pytest.raises(ValueError, match=message):  # the command line goes through the same checks
            training.parse_args(flags)


def test_settings_from_a_namespace_or_in_code(capsys):
    settings = training.parse_args([], defaults={**REQUIRED, "seed": 3})
    assert settings.seed == 3 and settings.train_data == "photos"
    namespace = argparse.Namespace(**settings.to_dict())
    assert TrainingConfig.from_namespace(namespace) == settings
    with pytest.raises(ValueError, match="unknown training settings: \\['epochs'\\]"):
        TrainingConfig.from_namespace({**REQUIRED, "epochs": 3})
    with pytest.raises(ValueError, match="missing training settings: \\['output_dir'\\]"):
        TrainingConfig.from_namespace({"train_data": "photos", "max_train_steps": 10})
    with pytest.raises(ValueError, match="unknown training settings: \\['epochs'\\]"):
        training.parse_args([], defaults={"epochs": 3})
    with pytest.raises(ValueError, match="--train_batch_size must be >= 1, got 0"):  # train() checks a namespace too
        training.train(argparse.Namespace(**{**settings.to_dict(), "train_batch_size": 0}))

    # The command line: a bad value is one line on stderr and exit status 1, before any work.
    with pytest.raises(SystemExit) as error:
        train_cli.main(["--train_data", "photos", "--output_dir", "out", "--max_train_steps", "0"])
    assert error.value.code == 1
    assert capsys.readouterr().err == "train_accelerate.py: error: --max_train_steps must be >= 1, got 0\n"
