"""PConvUNet: architecture, gradients, BatchNorm freezing and Hub I/O."""

import json
import os
import time

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from pconv_hf import PConvUNet
from pconv_hf import model as model_module
from pconv_hf.model import count_parameters, widen


def paper_parameter_count() -> int:
    """Parameters of the paper's 512 px network (Table in the supplementary), counted by hand."""
    encoder = [(3, 64, 7), (64, 128, 5), (128, 256, 5), (256, 512, 3)] + [(512, 512, 3)] * 4
    decoder = [(512 + 512, 512)] * 4 + [(512 + 256, 256), (256 + 128, 128), (128 + 64, 64), (64 + 3, 3)]
    total = 0
    for i, (c_in, c_out, k) in enumerate(encoder):
        total += c_in * c_out * k * k
        total += c_out if i == 0 else 2 * c_out  # first layer: bias, no BN; others: BN weight and bias
    for i, (c_in, c_out) in enumerate(decoder):
        total += c_in * c_out * 9
        total += c_out if i == len(decoder) - 1 else 2 * c_out  # last layer: bias, no BN
    return total


def test_parameter_count_matches_the_paper():
    model = PConvUNet(layer_size=8, base_channels=64, sample_size=512)
    assert count_parameters(model) == paper_parameter_count()
    assert count_parameters(PConvUNet(layer_size=8, sample_size=512, conv_type="plain")) == paper_parameter_count()


def test_layer_shapes_follow_the_paper():
    model = PConvUNet(layer_size=8, base_channels=64, sample_size=512)
    encoder = [(block.conv.in_channels, block.conv.out_channels, block.conv.kernel_size[0]) for block in model.encoder]
    assert encoder[:4] == [(3, 64, 7), (64, 128, 5), (128, 256, 5), (256, 512, 3)]
    assert all(block.conv.stride == (2, 2) for block in model.encoder)
    assert isinstance(model.encoder[0].norm, torch.nn.Identity)
    last = model.decoder[-1]
    assert (last.conv.in_channels, last.conv.out_channels) == (67, 3)
    assert last.conv.bias is not None and isinstance(last.norm, torch.nn.Identity)
    assert isinstance(model.decoder[0].activation, torch.nn.LeakyReLU)
    assert model.decoder[0].activation.negative_slope == 0.2


@pytest.mark.parametrize("conv_type", ["partial", "plain"])
@pytest.mark.parametrize("mask_channels", [1, 3])
def test_output_shape_and_values(conv_type, mask_channels):
    torch.manual_seed(0)
    model = PConvUNet(layer_size=4, base_channels=4, sample_size=32, conv_type=conv_type).eval()
    image = torch.rand(2, 3, 32, 48)
    mask = (torch.rand(2, mask_channels, 32, 48) > 0.3).float()
    output = model(image, mask)
    assert output.shape == (2, 3, 32, 48)
    assert torch.isfinite(output).all()


def test_hole_content_is_ignored_by_the_partial_model(tiny_model):
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 64)
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 10:30, 20:40] = 0
    other = image.clone()
    other[..., 10:30, 20:40] = torch.rand(1, 3, 20, 20)
    torch.testing.assert_close(tiny_model(image, mask), tiny_model(other, mask))


def test_every_parameter_gets_a_gradient(tiny_model):
    torch.manual_seed(0)
    tiny_model.train()
    image = torch.rand(2, 3, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.2).float()
    tiny_model(image, mask).sub(image).abs().mean().backward()
    for name, parameter in tiny_model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_deterministic(tiny_model):
    image = torch.rand(1, 3, 64, 64)
    mask = (torch.rand(1, 1, 64, 64) > 0.5).float()
    assert torch.equal(tiny_model(image, mask), tiny_model(image, mask))


@pytest.mark.parametrize(
    "image_shape, mask_shape, message",
    [
        ((1, 4, 64, 64), (1, 1, 64, 64), "image must be a tensor of shape"),
        ((1, 3, 64, 64), (1, 2, 64, 64), "mask must be a tensor of shape"),
        ((1, 3, 64, 64), (1, 1, 32, 64), "does not match"),
    ],
)
def test_bad_inputs_raise_value_error(tiny_model, image_shape, mask_shape, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(torch.rand(image_shape), torch.ones(mask_shape))


def test_any_size_works_as_if_odd_levels_had_one_more_row_of_hole(tiny_model):
    """H and W need not be multiples of 2**layer_size: a level of odd size is padded with one row or column of
    hole. So a photo padded with hole to a multiple, where every level pads as a whole, gives the same output
    where the padding reaches no level's odd edge (here: a photo one row short of a multiple, whose padding is
    that one row at every level) and an output of the photo's own size."""
    assert tiny_model.size_multiple == 1
    generator = torch.Generator().manual_seed(5)
    image = torch.rand(1, 3, 63, 64, generator=generator)
    mask = (torch.rand(1, 1, 63, 64, generator=generator) > 0.3).float()
    with torch.no_grad():
        output = tiny_model(image, mask)
        padded = tiny_model(F.pad(image, (0, 0, 0, 1)), F.pad(mask, (0, 0, 0, 1)))
    assert output.shape == image.shape
    torch.testing.assert_close(output, padded[:, :, :63], rtol=1e-5, atol=1e-5)
    for height, width in ((1, 1), (7, 130), (33, 32)):
        assert tiny_model(torch.rand(1, 3, height, width), torch.ones(1, 1, height, width)).shape == (
            1,
            3,
            height,
            width,
        )


def test_soft_mask_is_rejected(tiny_model):
    with pytest.raises(ValueError, match="only 0"):
        tiny_model(torch.rand(1, 3, 64, 64), torch.full((1, 1, 64, 64), 0.5))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_size=0), "layer_size"),
        (dict(base_channels=0), "base_channels"),
        (dict(upsampling_mode="area"), "upsampling_mode"),
        (dict(conv_type="gated"), "conv_type"),
        (dict(layer_size=7, sample_size=200), "sample_size"),
    ],
)
def test_bad_config_raises_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PConvUNet(**kwargs)


def test_freeze_encoder_bn_survives_train_and_freezes_statistics(tiny_model):
    tiny_model.freeze_encoder_bn()
    tiny_model.train()
    encoder_bn = [m for m in tiny_model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    decoder_bn = [m for m in tiny_model.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert encoder_bn and decoder_bn
    assert not any(m.training for m in encoder_bn) and all(m.training for m in decoder_bn)
    assert not any(p.requires_grad for m in encoder_bn for p in m.parameters())
    before = [m.running_mean.clone() for m in encoder_bn + decoder_bn]
    tiny_model(torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.3).float())
    after = [m.running_mean for m in encoder_bn + decoder_bn]
    assert all(torch.equal(b, a) for b, a in zip(before[: len(encoder_bn)], after[: len(encoder_bn)]))
    assert all(not torch.equal(b, a) for b, a in zip(before[len(encoder_bn) :], after[len(encoder_bn) :]))
    tiny_model.freeze_encoder_bn(False)
    assert all(m.training for m in encoder_bn)


# --- Hub I/O -----------------------------------------------------------------------------------------------


def test_save_and_load_round_trip(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["README.md", "config.json", "model.safetensors"]
    # Same permissions as any file the user writes (umask), so a shared model folder is readable by others.
    assert (tmp_path / "model.safetensors").stat().st_mode == (tmp_path / "config.json").stat().st_mode
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["layer_size"] == 5 and config["base_channels"] == 8 and config["sample_size"] == 64
    card = (tmp_path / "README.md").read_text()
    assert "library_name: pconv_hf" in card and "arxiv.org/abs/1804.07723" in card

    loaded = PConvUNet.from_pretrained(tmp_path)
    assert not loaded.training
    image = torch.rand(2, 3, 64, 64)
    mask = (torch.rand(2, 1, 64, 64) > 0.4).float()
    assert torch.equal(loaded(image, mask), tiny_model(image, mask))


def test_plain_baseline_round_trip(tmp_path):
    model = PConvUNet(layer_size=4, base_channels=4, sample_size=32, conv_type="plain").eval()
    model.save_pretrained(tmp_path)
    loaded = PConvUNet.from_pretrained(tmp_path)
    assert loaded.conv_type == "plain"
    image, mask = torch.rand(1, 3, 32, 32), (torch.rand(1, 1, 32, 32) > 0.4).float()
    assert torch.equal(loaded(image, mask), model(image, mask))


def test_half_precision_weights_load_into_float32(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "fp32")
    tiny_model.save_pretrained(tmp_path / "fp16", weights_dtype=torch.float16)
    size = {name: (tmp_path / name / "model.safetensors").stat().st_size for name in ("fp32", "fp16")}
    assert size["fp16"] < 0.6 * size["fp32"]
    loaded = PConvUNet.from_pretrained(tmp_path / "fp16")
    assert loaded.dtype == torch.float32
    image, mask = torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) > 0.4).float()
    torch.testing.assert_close(loaded(image, mask), tiny_model(image, mask), rtol=0.05, atol=0.05)
    assert tiny_model.dtype == torch.float32  # saving in half did not touch the model


def test_strict_loading_rejects_missing_and_unexpected_keys(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    weights = safetensors.torch.load_file(tmp_path / "model.safetensors")
    weights["extra.weight"] = torch.zeros(1)
    del weights["decoder.0.conv.weight"]
    safetensors.torch.save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="missing keys.*decoder.0.conv.weight.*unexpected keys.*extra.weight"):
        PConvUNet.from_pretrained(tmp_path)


def test_loading_rejects_weights_of_another_config(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "base_channels": 16}))
    with pytest.raises(ValueError, match="do not fit its config"):
        PConvUNet.from_pretrained(tmp_path)


def test_pickle_weights_are_never_loaded(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    torch.save(tiny_model.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing model.safetensors"):
        PConvUNet.from_pretrained(tmp_path)


def test_unknown_hub_id_fails_fast_offline():
    start = time.perf_counter()
    with pytest.raises(ValueError, match="'nobody/no-such-pconv'.*HF_HUB_OFFLINE"):
        PConvUNet.from_pretrained("nobody/no-such-pconv")
    assert time.perf_counter() - start < 5


def test_missing_local_directory_is_named():
    with pytest.raises(ValueError, match="'./no/such/dir' is not a directory"):
        PConvUNet.from_pretrained("./no/such/dir")


def fake_hub_cache(model: PConvUNet, cache_dir, repo_id: str = "user/pconv") -> None:
    """Save ``model`` into ``cache_dir`` laid out as huggingface_hub's cache of ``repo_id``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    model.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_hub_id_loads_from_the_local_cache(tiny_model, tmp_path):
    """The repo-id path, offline, through a Hub cache laid out as huggingface_hub writes it."""
    fake_hub_cache(tiny_model, tmp_path)
    loaded = PConvUNet.from_pretrained("user/pconv", cache_dir=tmp_path)
    image, mask = torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) > 0.4).float()
    assert torch.equal(loaded(image, mask), tiny_model(image, mask))


def test_config_property_rebuilds_the_model(tiny_model):
    twin = PConvUNet(**tiny_model.config)
    assert twin.config == tiny_model.config
    assert [p.shape for p in twin.parameters()] == [p.shape for p in tiny_model.parameters()]


def test_a_required_config_key_may_come_from_the_caller(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "layer_size"}))
    with pytest.raises(ValueError, match="config.json is missing the key.s. 'layer_size'"):
        PConvUNet.from_pretrained(tmp_path)
    assert PConvUNet.from_pretrained(tmp_path, layer_size=tiny_model.layer_size).config == tiny_model.config


def test_a_model_too_large_for_this_machine_is_refused_before_anything_is_allocated(monkeypatch):
    monkeypatch.setattr("pconv_hf.model.free_memory", lambda: 2**20)  # 1 MiB available
    with pytest.raises(ValueError, match=r"^base_channels 64 with layer_size 7 makes [\d,]+ weights .* more memory"):
        PConvUNet()
    with torch.device("meta"):  # nothing is allocated there, so nothing is too large
        assert PConvUNet().device.type == "meta"
    monkeypatch.setattr("pconv_hf.model.free_memory", lambda: None)  # where it cannot tell, it builds
    assert PConvUNet(layer_size=5, base_channels=8, sample_size=64).device.type == "cpu"


@pytest.mark.parametrize(
    "config",
    [{"layer_size": 5, "base_channels": 8, "sample_size": 64}, {}, {"boundary_blend": True}, {"in_channels": 1}],
)
def test_the_weight_estimate_behind_the_memory_check_is_within_1_percent(config):
    model = PConvUNet(**config)
    channels = model_module._encoder_channels(model.layer_size, model.config["base_channels"])
    kernels = [7, 5, 5, *[3] * (model.layer_size - 3)]
    estimate = model_module._weight_count(channels, kernels, model.in_channels)
    assert abs(estimate - count_parameters(model)) <= 0.01 * count_parameters(model)


def test_encoder_bn_freeze_covers_sync_batchnorm(tiny_model):
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(tiny_model)
    model.freeze_encoder_bn()
    model.train()
    encoder_bn = [m for m in model.encoder.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert encoder_bn and not any(m.training or m.weight.requires_grad for m in encoder_bn)


@pytest.mark.parametrize("upsampling_mode", ["bilinear", "bicubic"])
def test_smooth_upsampling_modes_ignore_hole_content(upsampling_mode):
    torch.manual_seed(0)
    model = PConvUNet(layer_size=4, base_channels=4, sample_size=32, upsampling_mode=upsampling_mode).eval()
    image, mask = torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    mask[..., 4:20, 8:24] = 0
    other = image.clone()
    other[..., 4:20, 8:24] = 1.0
    torch.testing.assert_close(model(image, mask), model(other, mask))


@pytest.fixture
def unreachable_hub(monkeypatch):
    """Online mode, but the Hub endpoint is a closed port on this machine."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")


def test_unreachable_hub_fails_fast_with_the_id(unreachable_hub):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="'nobody/no-such-pconv'.*unreachable"):
        PConvUNet.from_pretrained("nobody/no-such-pconv")
    assert time.perf_counter() - start < 10


def test_unreachable_hub_still_loads_a_cached_model(unreachable_hub, tiny_model, tmp_path):
    fake_hub_cache(tiny_model, tmp_path)
    start = time.perf_counter()
    loaded = PConvUNet.from_pretrained("user/pconv", cache_dir=tmp_path)
    assert time.perf_counter() - start < 10
    assert loaded.config == tiny_model.config


def test_auto_dtype_picks_bf16_only_where_the_device_has_it(monkeypatch):
    from pconv_hf import runtime

    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert runtime.autocast_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert runtime.autocast_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert runtime.autocast_dtype("auto", "cpu") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert runtime.autocast_dtype("auto", "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert runtime.autocast_dtype("auto", "cuda:0") is None
    assert runtime.autocast_dtype("auto", "mps") is None
    # Explicit choices are taken as given, whatever the device.
    assert runtime.autocast_dtype("float32", "cuda") is None
    assert runtime.autocast_dtype(torch.float32, "cpu") is None
    assert runtime.autocast_dtype("bfloat16", "cpu") == torch.bfloat16
    assert runtime.autocast_dtype(torch.float16, "cpu") == torch.float16
    with pytest.raises(ValueError, match="'fp8'"):
        runtime.autocast_dtype("fp8", "cpu")


def test_inpaint_auto_dtype_follows_the_decision(monkeypatch, tiny_model):
    """inpaint()'s default runs the forward pass under the autocast dtype the decision function picks."""
    from pconv_hf import runtime

    seen = []
    original_forward = type(tiny_model).forward

    def spy(self, image, mask):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return original_forward(self, image, mask)

    monkeypatch.setattr(type(tiny_model), "forward", spy)
    photo = np.zeros((64, 64, 3), np.uint8)
    hole = np.zeros((64, 64), bool)
    hole[20:30, 20:30] = True
    for flags, expected in ((frozenset({"amx_bf16"}), torch.bfloat16), (frozenset({"avx2"}), None)):
        monkeypatch.setattr(runtime, "_cpu_flags", lambda flags=flags: flags)
        tiny_model.inpaint(photo, hole)
        assert seen[-1] == expected
    tiny_model.inpaint(photo, hole, dtype="float32")
    assert seen[-1] is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_nearest_upsample_backward_matches_interpolate(dtype, channels_last):
    """The training path's 2x nearest upsampling: same values and gradients as F.interpolate, for the channel-sliced
    gradients a concatenation hands it, in both memory formats."""
    from pconv_hf.model import _NearestUpsample2x

    torch.manual_seed(0)
    base = torch.randn(2, 6, 5, 7, dtype=dtype)
    if channels_last:
        base = base.to(memory_format=torch.channels_last)
    ours, reference = base.clone().requires_grad_(), base.clone().requires_grad_()
    out = _NearestUpsample2x.apply(ours)
    expected = torch.nn.functional.interpolate(reference, scale_factor=2, mode="nearest")
    assert torch.equal(out, expected)
    grad = torch.randn(2, 9, 10, 14, dtype=dtype)[:, 2:8]  # a channel slice, contiguous in no layout
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(ours.grad, reference.grad, rtol=0, atol=1e-2 if dtype == torch.bfloat16 else 1e-6)
    assert ours.grad.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_bf16_training_step_casts_inputs_once(tiny_model):
    """Under autocast the forward pass casts image and mask to bf16 up front: the output is the same as letting the
    first convolution cast, and the gradients flow to every parameter."""
    image, mask = torch.rand(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.3).float()
    tiny_model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = tiny_model(image * mask, mask)
        loss = output.float().abs().mean()
    loss.backward()
    assert output.shape == image.shape and torch.isfinite(output).all()
    assert all(p.grad is not None for p in tiny_model.parameters() if p.requires_grad)


def _randomise_batchnorm(model: PConvUNet) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_()
            module.bias.data.normal_()


@pytest.mark.parametrize("kwargs", [{"boundary_blend": True}, {"conv_type": "plain"}])
@pytest.mark.parametrize("base_channels", [16, 12])
def test_widen_computes_the_same_function(kwargs, base_channels):
    torch.manual_seed(0)
    model = PConvUNet(layer_size=5, base_channels=8, sample_size=64, **kwargs)
    _randomise_batchnorm(model)
    wide = widen(model.eval(), base_channels)
    assert wide.config == {**model.config, "base_channels": base_channels}
    assert not wide.training and count_parameters(wide) > 2 * count_parameters(model)
    image = torch.rand(2, 3, 64, 64)
    valid = (torch.rand(2, 1, 64, 64) > 0.4).float()
    with torch.no_grad():
        torch.testing.assert_close(wide(image, valid), model(image, valid), atol=1e-5, rtol=1e-5)
    # Training mode with the encoder's BN frozen (the fine-tune): decoder BN uses batch statistics, copies agree.
    model.train().freeze_encoder_bn()
    wide = widen(model, base_channels)
    assert wide.training and wide._encoder_bn_frozen
    with torch.no_grad():
        torch.testing.assert_close(wide(image, valid), model(image, valid), atol=1e-5, rtol=1e-5)


def test_widened_copies_grow_apart_and_refuse_narrowing():
    torch.manual_seed(0)
    model = PConvUNet(layer_size=4, base_channels=4, sample_size=32, boundary_blend=True)
    wide = widen(model, 8)
    weight = wide.encoder[0].conv.weight
    # Channel 4+ copies an existing channel exactly; the next layer splits the copied weights between them.
    copies = [(j, int(torch.nonzero((weight[:4] == weight[j]).flatten(1).all(1))[0])) for j in range(4, 8)]
    image, valid = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.3).float()
    wide(image, valid).square().mean().backward()
    with torch.no_grad():
        for param in wide.parameters():
            param -= 0.1 * param.grad
    assert all(not torch.equal(weight[j], weight[source]) for j, source in copies)
    with pytest.raises(ValueError, match="above the model's 8"):
        widen(wide, 8)


@pytest.mark.parametrize(
    "kwargs", [{}, {"boundary_blend": True}, {"conv_type": "plain"}, {"upsampling_mode": "bilinear"}]
)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("size", [(48, 64), (45, 67)])
def test_inference_path_computes_what_training_computes(kwargs, memory_format, size):
    """Without gradients the decoder convolves before upsampling (DecoderBlock._forward_subpixel), and in eval
    mode every feature map is kept 0 in its holes in place with BatchNorm folded into the convolutions
    (``premasked``): the same output and masks as the training path, in float64 to rounding, in either memory
    format (inpaint()'s images arrive channels-last), also where levels have odd sizes (padded and cropped)."""
    torch.manual_seed(3)
    model = PConvUNet(layer_size=4, base_channels=8, **kwargs).double().eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
        for module in model.modules():  # statistics far from (0, 1), so that folding them is tested
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.5)
                module.running_var.uniform_(0.2, 3.0)
    image = torch.rand(2, 3, *size, dtype=torch.float64).contiguous(memory_format=memory_format)
    # A shared mask for one image, a per-channel one for the other (a batch holds one shape: both 3-channel).
    mask = (torch.rand(2, 1, *size) > 0.4).double().repeat(1, 3, 1, 1)
    mask[1, 1] = (torch.rand(*size) > 0.4).double()
    mask[0, :, 8:40, 10:50] = 0
    original = image.clone()
    masks = {}
    for grad in (True, False):
        hooks = [
            block.register_forward_hook(lambda module, args, out, g=grad: masks.setdefault(g, []).append(out[1]))
            for block in model.decoder
        ]
        with torch.set_grad_enabled(grad):
            output = model(image, mask)
        for hook in hooks:
            hook.remove()
        masks.setdefault(("output", grad), output)
    assert masks["output", False].shape == (2, 3, *size)
    torch.testing.assert_close(masks["output", False], masks["output", True], rtol=1e-10, atol=1e-10)
    assert torch.equal(image, original)  # the in-place inference never writes into its input
    if memory_format == torch.channels_last and kwargs.get("conv_type") != "plain":
        # The decoder keeps the encoder's format (a mix makes every elementwise operation a slow transposition).
        assert masks["output", False].stride(1) == 1  # channels innermost (a cropped view where sizes are odd)
    for fast, slow in zip(masks[False], masks[True]):
        assert (fast is None) == (slow is None)
        if fast is not None:
            assert fast.dtype == slow.dtype and torch.equal(fast, slow)
