"""Runtime of the bundled model and of a bf16 training step, measured side by side in one run on this machine.

    python benchmarks/bench_runtime.py [--repeats 5] [--threads N] [--device cpu|cuda]
                                       [--skip_onnx] [--skip_train] [--compile]

Prints markdown tables:

1. Inference with the bundled model (``pconv_hf.load_model()``): eager float32, eager bf16 autocast
   (``inpaint(..., dtype=torch.bfloat16)``) and ONNX Runtime float32 (the bundled model exported to a temporary
   ``.onnx`` file once; the export time is printed below), for a 512x512 photo with strategy "full" and a
   12-megapixel photo with one brush stroke with strategy "crop". Milliseconds per ``inpaint()`` call, the time
   ratio to eager float32, and the largest and mean difference of the hole pixels from eager float32 (grey
   levels, 0-255). Extra row: the network's forward pass alone.
2. Training: one bf16 step (batch 8, 256 px, ``PConvUNet(layer_size=7, base_channels=32)``, channels-last,
   autocast bf16, L1 loss of output vs target, backward, AdamW) of the package as it is ("as shipped"), its FLOPs
   (forward + backward, ``FlopCounterMode``), the achieved TFLOP/s, and its share of this machine's bf16 matmul
   rate (4096x4096 @ 4096x4096) measured in the same run.
3. Other rows of that table, each on a copy of the same initial weights: "before", the step as pconv_hf ran it up
   to 886358c (the image and its mask left in float32 under autocast, which promoted the first layer's mask
   product and the mask products, upsampling and concatenations of the last two decoder blocks to float32;
   PyTorch's own nearest-upsampling backward), reproduced here by a subclass;
   a bound (the mask counts cached: what no change to the mask-count path can beat); and with ``--compile``
   (D) ``torch.compile`` of the shipped model (cold compile time printed below the table). The speed-up column
   is relative to "before".

Cases of a table are timed alternately (one call of each per round, every other round in reverse order, after a
warm-up call each), so a change in machine load hits all alike; the median of ``--repeats`` rounds is reported.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from bench_speed import real_mask, sync, time_alternating
from PIL import Image

import pconv_hf
from pconv_hf import PartialConv2d, PConvUNet
from pconv_hf.model import DecoderBlock

EXAMPLES = Path(pconv_hf.__file__).parent / "examples"
MATMUL_SIZE = 4096
TRAIN_BATCH, TRAIN_SIZE, TRAIN_LAYERS, TRAIN_BASE = 8, 256, 7, 32
# The 12 MP case: a 4000x3000 photo and one brush stroke 40 px wide and about 600 px long.
BIG_SIZE = (3000, 4000)
SHIPPED = "as shipped"
BEFORE = "before: float32 inputs, PyTorch's upsampling backward (pconv_hf <= 886358c)"
TRAIN_LEGEND = """\
Rows: as shipped: the package as it is (under autocast PConvUNet.forward casts the image to bf16, so all masks, mask
products, upsamplings and concatenations are bf16; the decoder's nearest 2x upsampling has a backward that keeps
channels-last); before: the previous forward (image and mask left in float32 under autocast: the first layer and the
last two decoder blocks, full and half resolution, then ran their mask products, upsampling and concatenations in
float32) and F.interpolate's own backward, a subclass here; bound: the shipped step with the mask counts of the
first call reused (not usable in training; bounds any saving in the mask-count path); (D) torch.compile of the
shipped model (cold inductor cache). Speed-up = time of "before" / time of the row. TFLOP/s = FLOPs per step /
median step time; share = that / the bf16 matmul rate. Output / grad rel diff: ||x - x_shipped|| / ||x_shipped|| of
the output and of all gradients of a first step (no update) from the same weights and batch as the shipped step.
Tried and dropped as redundant: PartialConv2d returning its updated mask in the output's dtype rather than its
input's (since the input cast, its input is bf16 in every layer, so this changes nothing)."""
STROKE = ((1700, 1300), (2252, 1535), 40)


# --- helpers -------------------------------------------------------------------------------------------------


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as ``torch.utils.flop_counter`` counts them (matmuls and convolutions,
    forward and backward; a multiply-add counts 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_flops(n: int) -> int:
    """FLOPs of an (n, n) @ (n, n) matrix product."""
    return 2 * n**3


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference|| (L2 over all elements, in float32)."""
    return ((value.float() - reference.float()).norm() / reference.float().norm()).item()


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    """A markdown table; the first ``left`` columns are left-aligned, the others right-aligned."""
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i < left else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def default_dtype() -> str:
    """What ``inpaint()`` does without a ``dtype`` argument (the rows here always pass one)."""
    import inspect

    from pconv_hf.inpainting import inpaint

    parameter = inspect.signature(inpaint).parameters.get("dtype")
    default = "no dtype argument" if parameter is None else f"dtype={parameter.default!r}"
    return f"inpaint()'s default: {default}."


def machine_description(device: torch.device) -> str:
    cpu, flags = "", set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not cpu:
                    cpu = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cpu = cpu or platform.processor() or platform.machine()
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    parts = [
        f"CPU: {cpu} ({os.cpu_count()} logical CPUs{', ' + ' '.join(bf16) if bf16 else ''})",
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
    ]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        parts.append("no onnxruntime")
    if device.type == "cuda":
        parts.append(f"GPU: {torch.cuda.get_device_name(device)}")
    return "Machine: " + "; ".join(parts) + f"; device {device}"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


# --- 1. inference --------------------------------------------------------------------------------------------


def example_photo() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut example (512x512 RGB, uint8) and its painted layer as a hole mask (uint8, 255 = fill)."""
    photo = np.asarray(Image.open(EXAMPLES / "astronaut.jpg").convert("RGB"))
    layer = np.asarray(Image.open(EXAMPLES / "astronaut_mask.png").convert("RGBA"))
    return photo, np.where(layer[..., 3] > 0, 255, 0).astype(np.uint8)


def big_photo() -> tuple[np.ndarray, np.ndarray]:
    """A 12 MP photo (the coffee example upscaled to 4000x3000) and one brush stroke (uint8, 255 = fill)."""
    height, width = BIG_SIZE
    small = np.asarray(Image.open(EXAMPLES / "coffee.jpg").convert("RGB"))
    photo = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    mask = np.zeros((height, width), np.uint8)
    start, end, thickness = STROKE
    cv2.line(mask, start, end, 255, thickness)
    return photo, mask


def crop_windows(mask: np.ndarray, resolution: int) -> str:
    try:
        from pconv_hf.inpainting import plan_windows

        windows = plan_windows(mask > 0, resolution)
    except (ImportError, TypeError, ValueError):  # the planner is internal; the label is only a description
        return ""
    sides = ", ".join(f"{h}x{w}" for _, _, h, w in windows)
    return f"; crop: {len(windows)} window{'s' if len(windows) > 1 else ''} ({sides}) -> {resolution} px"


def export_bundled(model: PConvUNet, directory: Path, device: torch.device, threads: int) -> tuple[object, str]:
    """Export the bundled model to ONNX once; an OnnxInpainter on ``device`` (CPU provider as a fallback)."""
    path = directory / "bundled.onnx"
    start = time.perf_counter()
    model.export_onnx(path)
    export_s = time.perf_counter() - start
    start = time.perf_counter()
    note = ""
    try:
        onnx_model = pconv_hf.load_model(path, device=device)
    except ValueError as err:  # e.g. device cuda with the CPU-only onnxruntime package
        onnx_model = pconv_hf.load_model(path, device="cpu")
        note = f" ({err}; fell back to the CPU provider)"
    providers = onnx_model.session.get_providers() if hasattr(onnx_model, "session") else ["?"]
    if providers[0] == "CPUExecutionProvider" and hasattr(onnx_model, "session"):
        # The same thread count as torch, so that the comparison is like for like.
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # ONNX Runtime's idle threads spin for a while after each run; on a small machine that slows whatever is
        # timed next, so they sleep here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        onnx_model.session = onnxruntime.InferenceSession(os.fspath(path), options, providers=providers)
    load_s = time.perf_counter() - start
    size = path.stat().st_size / 2**20
    return onnx_model, (
        f"ONNX export of the bundled model: {export_s:.1f} s (once; {size:.1f} MiB), session creation {load_s:.2f} s, "
        f"providers {providers}, threads {threads if providers[0] == 'CPUExecutionProvider' else 'default'} "
        f"(no spinning){note}"
    )


def hole_difference(result: np.ndarray, reference: np.ndarray, hole: np.ndarray) -> tuple[int, float]:
    """Largest and mean absolute difference of two uint8 results over the hole pixels (grey levels)."""
    difference = np.abs(result.astype(np.int16) - reference.astype(np.int16))[hole > 0]
    return int(difference.max()), float(difference.mean())


def bench_inference(
    model: PConvUNet, onnx_model: object | None, repeats: int, device: torch.device
) -> list[tuple[str, list[list[object]]]]:
    tables = []
    small, small_mask = example_photo()
    big, big_mask = big_photo()
    cases = [
        (f"512x512 photo, strategy full ({(small_mask > 0).mean():.0%} hole)", small, small_mask, "full"),
        (
            f"4000x3000 photo (12 MP), one stroke {STROKE[2]} px wide, ~600 px long "
            f"({(big_mask > 0).mean():.2%} hole), strategy crop{crop_windows(big_mask, model.sample_size)}",
            big,
            big_mask,
            "crop",
        ),
    ]
    shapes: list[torch.Size] = []  # the network's input shape in each case, for a network-only row
    hook = model.register_forward_pre_hook(lambda _, inputs: shapes.append(inputs[0].shape))
    for title, photo, mask, strategy in cases:
        # dtype always explicit: None is float32 (no autocast) for PyTorch models and accepted by ONNX Runtime.
        variants: dict[str, Callable[[], np.ndarray]] = {
            "eager float32": lambda p=photo, m=mask, s=strategy: pconv_hf.inpaint(
                p, m, model=model, strategy=s, dtype=None
            ),
            "eager bf16 autocast": lambda p=photo, m=mask, s=strategy: pconv_hf.inpaint(
                p, m, model=model, strategy=s, dtype=torch.bfloat16
            ),
        }
        if onnx_model is not None:
            variants["ONNX Runtime float32"] = lambda p=photo, m=mask, s=strategy: pconv_hf.inpaint(
                p, m, model=onnx_model, strategy=s, dtype=None
            )
        shapes.clear()
        results = {name: fn() for name, fn in variants.items()}
        # Channels-last like inpaint()'s input (an (N, H, W, C) array permuted), which the convolutions run faster.
        network_input = (
            torch.rand(shapes[0], device=device).contiguous(memory_format=torch.channels_last),
            torch.ones(shapes[0][0], 1, *shapes[0][2:], device=device).contiguous(memory_format=torch.channels_last),
        )

        def network_only(inputs: tuple[torch.Tensor, ...] = network_input) -> None:
            with torch.inference_mode():
                model(*inputs)

        shape = "x".join(map(str, shapes[0]))
        timed = {**variants, f"eager float32, network forward only ({shape})": network_only}
        times = time_alternating(timed, repeats, device)
        reference = times["eager float32"]
        rows = []
        for name in timed:
            row = [name, ms(times[name]), f"{times[name] / reference:.2f}x"]
            if name in results:
                worst, mean = hole_difference(results[name], results["eager float32"], mask)
                row += [worst, f"{mean:.2f}"]
            else:
                row += ["", ""]
            rows.append(row)
        tables.append((title, rows))
    hook.remove()
    return tables


# --- 2./3. training --------------------------------------------------------------------------------------------


class BeforePConvUNet(PConvUNet):
    """The forward pass of pconv_hf up to 886358c: the image is not cast to the autocast dtype. Under autocast the
    image, its mask and the first layer's updated mask then stay float32 (later layers cast their masks to their
    bf16 inputs), so the first layer's mask product and the mask products, upsampling and concatenations of the
    last two decoder blocks (full and half resolution) run in float32, and the convolutions cast them back to
    bf16. The body is that of ``PConvUNet.forward`` without the cast."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self._check_inputs(image, mask)
        mask = mask.to(image.dtype)
        if self.conv_type == "partial":
            x, x_mask = image, mask
        else:
            x, x_mask = image * mask + 0.5 * (1 - mask), None
        skips = [(x, x_mask)]
        for block in self.encoder:
            x, x_mask = block(x, x_mask)
            skips.append((x, x_mask))
        skips.pop()
        for block in self.decoder:
            skip, skip_mask = skips.pop()
            x, x_mask = block(x, x_mask, skip, skip_mask)
        return x


def _interpolate_upsample(self: DecoderBlock, x: torch.Tensor) -> torch.Tensor:
    """``DecoderBlock._upsample`` up to 886358c: ``F.interpolate`` and its own backward, also in training."""
    return F.interpolate(x, scale_factor=2, mode=self.upsampling_mode)


def before_model(model: PConvUNet) -> PConvUNet:
    """A copy of ``model`` (same weights) that runs as pconv_hf did up to 886358c: :class:`BeforePConvUNet`'s
    forward and, in each decoder block of the copy only, :func:`_interpolate_upsample`."""
    model = with_model_class(model, BeforePConvUNet)
    for block in model.decoder:
        block._upsample = types.MethodType(_interpolate_upsample, block)
    return model


def autograd_ops(output: torch.Tensor) -> set[str]:
    """The names of the autograd nodes ``output`` was computed through (e.g. ``UpsampleNearest2DBackward0``)."""
    seen: set[str] = set()
    stack, visited = [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        seen.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen


class CachedMaskPartialConv2d(PartialConv2d):
    """Not an option for training (the masks change every batch): the mask counts of the first call are reused,
    so the step without them bounds what any change to the mask-count path can save. The count is
    ``pconv_hf/layers.py``'s, repeated here."""

    cached: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward_masked(self, masked_input: torch.Tensor, valid_channels: torch.Tensor):
        if self.cached is None:
            with torch.no_grad(), torch.autocast(masked_input.device.type, enabled=False):
                count = F.conv2d(
                    valid_channels.float(), self.window_ones.float(), None, self.stride, self.padding, self.dilation
                )
                updated_mask = (count > 0).float()
                self.cached = (self.window_size / count.clamp(min=1.0) * updated_mask, updated_mask)
        scale, updated_mask = self.cached
        raw = F.conv2d(masked_input, self.weight, None, self.stride, self.padding, self.dilation)
        if self.bias is None:
            output = raw * scale.to(raw.dtype)
        else:
            output = torch.addcmul(self.bias.view(1, -1, 1, 1).to(raw.dtype), raw, scale.to(raw.dtype))
            output = output.mul_(updated_mask.to(raw.dtype))
        return output, updated_mask.to(masked_input.dtype)


def with_layer_class(model: PConvUNet, layer_class: type[PartialConv2d]) -> PConvUNet:
    """A copy of ``model`` whose partial convolutions are ``layer_class`` (same weights)."""
    model = copy.deepcopy(model)
    for module in model.modules():
        if type(module) is PartialConv2d:
            module.__class__ = layer_class
    return model


def with_model_class(model: PConvUNet, model_class: type[PConvUNet]) -> PConvUNet:
    """A copy of ``model`` as a ``model_class`` (same weights)."""
    model = copy.deepcopy(model)
    model.__class__ = model_class
    return model


class TrainStep:
    """One bf16 training step: autocast forward, L1 loss on output vs target, backward, AdamW step."""

    def __init__(
        self,
        model: torch.nn.Module,
        image: torch.Tensor,
        mask: torch.Tensor,
        compile_model: bool = False,
    ):
        self.model, self.image, self.mask = model, image, mask
        self.network = torch.compile(model) if compile_model else model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
        self.ops: set[str] = set()  # autograd nodes of the last call with record_ops=True

    def __call__(self, update: bool = True, record_ops: bool = False) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.image.device.type, dtype=torch.bfloat16):
            output = self.network(self.image * self.mask, self.mask)
        if record_ops:
            self.ops = autograd_ops(output)
        loss = F.l1_loss(output.float(), self.image)
        loss.backward()
        if update:
            self.optimizer.step()
        return output.detach()

    def gradients(self) -> torch.Tensor:
        return torch.cat([p.grad.flatten().float() for p in self.model.parameters() if p.grad is not None])


def matmul_products(device: torch.device) -> tuple[Callable[[], None], int]:
    """A callable computing bf16 (n, n) @ (n, n) products (n = MATMUL_SIZE), and how many it computes per call."""
    a = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=torch.bfloat16, device=device)
    b = torch.randn(MATMUL_SIZE, MATMUL_SIZE, dtype=torch.bfloat16, device=device)
    per_call = 1 if device.type == "cpu" else 20  # a GPU takes well under a millisecond for one

    def products() -> None:
        for _ in range(per_call):
            torch.mm(a, b)

    return products, per_call


def bench_training(repeats: int, device: torch.device, compile_model: bool) -> tuple[list[list[object]], list[str]]:
    torch.manual_seed(0)
    base = PConvUNet(layer_size=TRAIN_LAYERS, base_channels=TRAIN_BASE, sample_size=TRAIN_SIZE)
    base = base.to(device, memory_format=torch.channels_last).train()
    image = torch.rand(TRAIN_BATCH, 3, TRAIN_SIZE, TRAIN_SIZE, device=device).contiguous(
        memory_format=torch.channels_last
    )
    mask = real_mask(TRAIN_SIZE, TRAIN_BATCH, device).contiguous(memory_format=torch.channels_last)

    steps = {
        BEFORE: TrainStep(before_model(base), image, mask),
        SHIPPED: TrainStep(copy.deepcopy(base), image, mask),
        "bound: mask counts cached (no mask-count work at all)": TrainStep(
            with_layer_class(base, CachedMaskPartialConv2d), image, mask
        ),
    }
    if compile_model:
        steps["(D) torch.compile(model), default mode"] = TrainStep(
            copy.deepcopy(base), image, mask, compile_model=True
        )
    notes: list[str] = []
    flops = count_flops(lambda: steps[SHIPPED](update=False))

    # Same weights, same batch: each variant's output and gradients against the shipped step's (first call, no
    # update; for torch.compile this call compiles).
    checks = {}
    for name, step in list(steps.items()):
        sync(device)
        start = time.perf_counter()
        try:
            output = step(update=False, record_ops=name in (SHIPPED, BEFORE))
        except Exception as err:  # noqa: BLE001 -- torch.compile can fail in many ways; the table says so
            if name in (SHIPPED, BEFORE):
                raise
            notes.append(f"{name}: failed, no row: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
            del steps[name]
            continue
        sync(device)
        checks[name] = (time.perf_counter() - start, output.float(), step.gradients())
    _, ref_output, ref_gradients = checks[SHIPPED]

    # The matmul is timed in the same rounds as the steps, so that it sees the same machine load.
    matmul = f"bf16 matmul {MATMUL_SIZE}x{MATMUL_SIZE} @ {MATMUL_SIZE}x{MATMUL_SIZE}"
    products, per_call = matmul_products(device)
    times = time_alternating({**steps, matmul: products}, repeats, device)
    matmul_s = times[matmul] / per_call
    matmul_tflops = matmul_flops(MATMUL_SIZE) / matmul_s / 1e12
    reference = times[BEFORE]
    rows = []
    for name in steps:
        first_s, output, gradients = checks[name]
        tflops = flops / times[name] / 1e12
        rows.append(
            [
                name,
                ms(times[name]),
                f"{reference / times[name]:.2f}x",
                f"{tflops:.3f}",
                f"{tflops / matmul_tflops:.1%}",
                f"{relative_error(output, ref_output):.2g}",
                f"{relative_error(gradients, ref_gradients):.2g}",
            ]
        )
        if name.startswith("(D)"):
            notes.append(f"(D) torch.compile: first call (compilation + one step without update) {first_s:.1f} s")
            notes.append(f"(D) {_dynamo_summary()}")
    rows.append(
        [
            matmul,
            ms(matmul_s),
            "",
            f"{matmul_tflops:.3f}",
            "100%",
            "",
            "",
        ]
    )
    notes += upsampling_check(steps[SHIPPED].ops, steps[BEFORE].ops)
    notes.insert(0, f"FLOPs per step (forward + backward, FlopCounterMode): {flops / 1e9:.1f} GFLOP")
    return rows, notes


def upsampling_check(shipped_ops: set[str], before_ops: set[str]) -> list[str]:
    """Warnings when the two rows did not upsample as their labels say (from their autograd nodes)."""
    custom, plain = "_NearestUpsample2xBackward", "UpsampleNearest2DBackward0"
    notes = []
    if custom not in shipped_ops:
        notes.append(f"Warning: the {SHIPPED} step did not run pconv_hf's _NearestUpsample2x; its row is mislabelled")
    if custom in before_ops or plain not in before_ops:
        notes.append("Warning: the before step did not upsample through F.interpolate alone; its row is mislabelled")
    return notes


def _dynamo_summary() -> str:
    try:
        from torch._dynamo.utils import counters

        graphs = counters["stats"]["unique_graphs"]
        breaks = sum(counters["graph_break"].values())
        return f"torch.compile: {graphs} graph(s), {breaks} graph break(s)"
    except (ImportError, KeyError, AttributeError):
        return "torch.compile: graph count unavailable"


# --- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per table (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch (and ONNX Runtime) CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--skip_onnx", action="store_true", help="no ONNX export and no ONNX Runtime rows")
    parser.add_argument("--skip_train", action="store_true", help="no training-step table")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row to the training table")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    started = time.perf_counter()
    compile_cache = None
    if args.compile:
        # A fresh inductor cache, so that the compile time is a cold compile's.
        compile_cache = tempfile.TemporaryDirectory(prefix="bench_runtime_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = compile_cache.name
    print(machine_description(device))
    print(f"Command: {' '.join(['python', *sys.argv])}\n")

    model = pconv_hf.load_model(device=device)
    print(f"## Inference, bundled model ({pconv_hf.DEFAULT_CHECKPOINT.name}: {model.config})\n")
    with tempfile.TemporaryDirectory() as directory:
        onnx_model, onnx_note = None, "ONNX: skipped (--skip_onnx)"
        if not args.skip_onnx:
            try:
                onnx_model, onnx_note = export_bundled(model, Path(directory), device, torch.get_num_threads())
            except (ImportError, ValueError, RuntimeError) as err:  # e.g. no onnxscript; the other rows still run
                onnx_note = f"ONNX: export or session failed, no ONNX Runtime rows: {type(err).__name__}: {err}"
        for title, rows in bench_inference(model, onnx_model, args.repeats, device):
            print(f"### {title}\n")
            headers = ["runtime", "ms / call", "time vs eager fp32", "max abs diff (hole)", "mean abs diff (hole)"]
            print(markdown_table(headers, rows))
            print()
        print(onnx_note)
        print("Differences: result vs eager float32, grey levels 0-255, over the hole pixels (the rest is copied).")
        print(f"{default_dtype()}\n")

    if not args.skip_train:
        rows, notes = bench_training(args.repeats, device, args.compile)
        print(
            f"## Training step: batch {TRAIN_BATCH}, {TRAIN_SIZE} px, PConvUNet(layer_size={TRAIN_LAYERS}, "
            f"base_channels={TRAIN_BASE}), channels-last, autocast bf16, L1 loss, backward, AdamW\n"
        )
        headers = [
            "step",
            "ms / step",
            "speed-up vs before",
            "TFLOP/s",
            "share of matmul",
            "output rel diff",
            "grad rel diff",
        ]
        print(markdown_table(headers, rows))
        print()
        for note in notes:
            print(note)
        print(TRAIN_LEGEND)
    print(f"\nTotal time: {time.perf_counter() - started:.0f} s")
    if compile_cache is not None:
        compile_cache.cleanup()


if __name__ == "__main__":
    main()
