"""The pure helpers of benchmarks/bench_runtime.py (the benchmark itself takes minutes and is not run here)."""

import copy
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_runtime  # noqa: E402


def test_flop_count_of_a_matmul_and_a_convolution():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert bench_runtime.count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    assert bench_runtime.matmul_flops(4096) == 2 * 4096**3
    x, weight = torch.randn(2, 3, 8, 8), torch.randn(5, 3, 3, 3)
    # Each of the 2 * 5 * 8 * 8 outputs is a 3 * 3 * 3 multiply-add.
    assert bench_runtime.count_flops(lambda: F.conv2d(x, weight, padding=1)) == 2 * (2 * 5 * 8 * 8) * (3 * 3 * 3)
    # Forward and backward: the backward computes the input and weight gradients, twice the forward.
    x.requires_grad_()
    weight.requires_grad_()
    total = bench_runtime.count_flops(lambda: F.conv2d(x, weight, padding=1).sum().backward())
    assert total == 3 * 2 * (2 * 5 * 8 * 8) * (3 * 3 * 3)


def _train_batch(channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    image = torch.rand(2, 3, 32, 32).contiguous(memory_format=memory_format)
    mask = (torch.rand(2, 1, 32, 32) > 0.3).float().contiguous(memory_format=memory_format)
    return image, mask


@pytest.mark.parametrize("channels_last", [True, False])
def test_before_row_reproduces_the_previous_step_with_the_same_results(channels_last):
    """The "before" model: under autocast the last decoder block gets a float32 mask and skip (the input image),
    it upsamples with F.interpolate's backward, and its output and gradients are the shipped step's; the shipped
    model it was copied from is left as it was."""
    torch.manual_seed(0)
    shipped = bench_runtime.PConvUNet(layer_size=4, base_channels=8, sample_size=32).train()
    if channels_last:
        shipped = shipped.to(memory_format=torch.channels_last)
    image, mask = _train_batch(channels_last)
    before = bench_runtime.before_model(shipped)
    assert all("_upsample" not in vars(block) for block in shipped.decoder)  # patched on the copy only

    dtypes = {}
    for name, model in (("shipped", shipped), ("before", before)):

        def record(_, inputs, name=name):  # inputs: x, mask, skip, skip_mask; returns None, so they are kept
            dtypes[name] = {t.dtype for t in inputs[1:]}

        hook = model.decoder[-1].register_forward_pre_hook(record)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(image * mask, mask)
        hook.remove()
    assert dtypes == {"shipped": {torch.bfloat16}, "before": {torch.float32}}

    results = {}
    for name, model in (("shipped", copy.deepcopy(shipped)), ("before", before)):
        step = bench_runtime.TrainStep(model, image, mask)
        output = step(update=False, record_ops=True)
        results[name] = (output, step.gradients(), step.ops)
    assert torch.equal(results["before"][0], results["shipped"][0])
    assert torch.equal(results["before"][1], results["shipped"][1])
    assert bench_runtime.upsampling_check(results["shipped"][2], results["before"][2]) == []
    # Swapped, both rows would be mislabelled.
    assert len(bench_runtime.upsampling_check(results["before"][2], results["shipped"][2])) == 2


def test_markdown_table_and_relative_error():
    table = bench_runtime.markdown_table(["a", "b"], [["x", 1.5]])
    assert table.splitlines() == ["| a | b |", "|---|---:|", "| x | 1.5 |"]
    assert bench_runtime.relative_error(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0])) == 0
    assert bench_runtime.relative_error(torch.tensor([3.0, 0.0]), torch.tensor([3.0, 4.0])) == pytest.approx(0.8)


def test_time_alternating_calls_each_callable_in_turn():
    from bench_speed import time_alternating

    calls = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = time_alternating(fns, repeats=2, device=torch.device("cpu"))
    assert set(times) == set("abc") and all(t >= 0 for t in times.values())
    assert "".join(calls) == "abc" + "abc" + "cba"  # warm-ups, then rounds alternating in direction
