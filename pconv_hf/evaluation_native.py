"""The native-size protocol: photos at their own size with object-removal masks, scored on the hole.

    pconv-evaluate --protocol native --data DIR [DIR ...] --output_dir OUT [--model DIR] [--masks DIR] \
        [--baselines telea,ns,shiftmap,unet:DIR] [--masks_per_bucket 1] [--inpaint_options resolution=1024]

The paper's protocol (``pconv_hf.evaluation``) scores 256-px crops; people fill 1-16 MP photos. Here every photo
of ``--data`` is used at its own size (EXIF-upright), in three size classes (<= 1 MP, 1-4 MP, > 4 MP). Each photo
gets ``masks_per_bucket`` masks per hole-ratio bucket (1-5, 5-10, 10-15, 15-30 %) of the kinds people paint
(``pconv_hf.masks.object_mask``: strokes, blobs, silhouettes, taken in turn), drawn from ``--seed`` and saved
as PNG files (white = hole) so that later runs compare on the same masks (``--masks DIR`` reads them back).

Metrics, on the hole only: PSNR of the hole pixels; SSIM on the hole's bounding box (padded by 16 px); LPIPS
(v0.1 AlexNet) on that box downscaled to at most 512 px; and the time of each fill. Every method (the model
through ``inpaint()``, OpenCV's diffusion fills Telea and Navier-Stokes, its exemplar fill shift-map, other saved
models) fills the same (photo, mask) pairs. The report gives the means per size class and bucket and per mask
kind and bucket, and the margins of every method over the better diffusion fill and over shift-map.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .images import displayed_size, list_images, open_image, to_hole_mask
from .inpainting import inpaint
from .masks import OBJECT_BUCKETS, OBJECT_KINDS, bucket_label, object_mask
from .metrics import lpips, lpips_available, shiftmap_fill, ssim

SIZE_CLASSES: tuple[tuple[str, float, float], ...] = (
    ("<=1 MP", 0.0, 1.0),
    ("1-4 MP", 1.0, 4.0),
    (">4 MP", 4.0, math.inf),
)
"""(label, low, high]: megapixels of a photo."""
BOX_PAD = 16
LPIPS_SIDE = 512
PSNR_MAX_DB = 100.0

FillFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(photo (H, W, 3) uint8, hole (H, W) bool) -> filled photo (H, W, 3) uint8``."""


@dataclass(frozen=True)
class Case:
    """One (photo, mask) pair of the protocol."""

    photo: Path
    mask: Path
    size_class: str
    bucket: str
    kind: str


def size_class(height: int, width: int) -> str:
    """The label of the first of :data:`SIZE_CLASSES` (in ascending order) the photo's megapixels fit under."""
    megapixels = height * width / 1e6
    return next(label for label, _, high in SIZE_CLASSES if megapixels <= high)


def list_photos(folders: Iterable[str | Path]) -> list[Path]:
    """Every image file of the folders (not recursive), sorted by folder then name."""
    photos = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"--data folder {str(folder)!r} does not exist or is not a folder")
        photos += list_images(folder)
    if not photos:
        raise ValueError("no photos found in --data")
    return photos


def make_cases(photos: list[Path], mask_dir: str | Path, *, masks_per_bucket: int = 1, seed: int = 2026) -> list[Case]:
    """Draw and save the masks of every photo (``<photo>__<bucket>__<k>-<kind>.png``, white = hole) into the
    empty or missing ``mask_dir``, and return the cases. The same photos and seed give the same masks."""
    if masks_per_bucket < 1:
        raise ValueError(f"masks_per_bucket must be >= 1, got {masks_per_bucket}")
    mask_dir = Path(mask_dir)
    if mask_dir.is_dir() and any(mask_dir.glob("*.png")):
        raise ValueError(f"mask folder {str(mask_dir)!r} already holds masks; read them with --masks or use a new one")
    mask_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for index, photo in enumerate(tqdm(photos, desc="masks", unit="photo")):
        height, width = _photo_size(photo)
        for bucket_index, bucket in enumerate(OBJECT_BUCKETS):
            for k in range(masks_per_bucket):
                kind = OBJECT_KINDS[(index + bucket_index + k) % len(OBJECT_KINDS)]
                rng = np.random.default_rng([seed, index, bucket_index, k])
                valid = object_mask(height, width, kind, bucket, rng)
                path = mask_dir / f"{photo.stem}__{bucket_label(bucket)}__{k}-{kind}.png"
                Image.fromarray(np.where(valid == 0, 255, 0).astype(np.uint8)).save(path)
                cases.append(Case(photo, path, size_class(height, width), bucket_label(bucket), kind))
    return cases


_MASK_NAME = re.compile(r"^(?P<stem>.+)__(?P<bucket>[0-9.]+-[0-9.]+)__(?P<k>\d+)-(?P<kind>[a-z]+)$")


def read_cases(photos: list[Path], mask_dir: str | Path) -> list[Case]:
    """The cases of masks saved by ``make_cases`` for these photos (matched by file stem)."""
    by_stem = {photo.stem: photo for photo in photos}
    cases = []
    for path in sorted(Path(mask_dir).glob("*.png")):
        match = _MASK_NAME.match(path.stem)
        if not match:
            raise ValueError(f"mask file {path.name!r} is not named <photo>__<bucket>__<k>-<kind>.png")
        photo = by_stem.get(match["stem"])
        if photo is None:
            continue
        height, width = _photo_size(photo)
        cases.append(Case(photo, path, size_class(height, width), match["bucket"], match["kind"]))
    if not cases:
        raise ValueError(f"no mask in {str(mask_dir)!r} belongs to the --data photos")
    return cases


def _photo_size(path: Path) -> tuple[int, int]:
    """(height, width) as displayed, from the file's header: no full decode of a 16-MP photo per mask."""
    width, height = displayed_size(path, "photo")
    return height, width


def _rgb_array(path: Path) -> np.ndarray:
    return np.asarray(open_image(path, "photo").convert("RGB"))


# --- metrics ------------------------------------------------------------------------------------------------


def hole_box(hole: np.ndarray, pad: int = BOX_PAD) -> tuple[slice, slice]:
    rows, cols = np.flatnonzero(hole.any(axis=1)), np.flatnonzero(hole.any(axis=0))
    height, width = hole.shape
    return (
        slice(max(0, rows[0] - pad), min(height, rows[-1] + 1 + pad)),
        slice(max(0, cols[0] - pad), min(width, cols[-1] + 1 + pad)),
    )


def hole_metrics(result: np.ndarray, target: np.ndarray, hole: np.ndarray, with_lpips: bool = True) -> dict:
    """PSNR of the hole pixels, SSIM of the hole's box, LPIPS of the box at <= 512 px (uint8 RGB arrays)."""
    error = (result[hole].astype(np.float64) - target[hole].astype(np.float64)) / 255
    mse = float(np.mean(error**2))
    metrics = {"psnr": PSNR_MAX_DB if mse == 0 else min(PSNR_MAX_DB, 10 * math.log10(1 / mse))}
    box = hole_box(hole)
    out, ref = _tensor(result[box]), _tensor(target[box])
    metrics["ssim"] = float(ssim(out, ref)[0]) if min(out.shape[-2:]) >= 11 else float("nan")
    if with_lpips:
        side = max(out.shape[-2:])
        if side > LPIPS_SIDE:
            size = tuple(max(32, round(s * LPIPS_SIDE / side)) for s in out.shape[-2:])
            out = torch.nn.functional.interpolate(out, size=size, mode="area")
            ref = torch.nn.functional.interpolate(ref, size=size, mode="area")
        metrics["lpips"] = float(lpips(out, ref)[0]) if min(out.shape[-2:]) >= 32 else float("nan")
    return metrics


def _tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1)[None].float() / 255


# --- methods ------------------------------------------------------------------------------------------------


def opencv_fill(flags: int, radius: float = 3.0) -> FillFn:
    def fill(photo: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return cv2.inpaint(photo, hole.view(np.uint8) * 255, radius, flags)

    return fill


def model_fill(model, **options) -> FillFn:
    """A fill through ``inpaint()`` with ``options`` (strategy, resolution, dtype, ...)."""

    def fill(photo: np.ndarray, hole: np.ndarray) -> np.ndarray:
        return inpaint(model, photo, hole.view(np.uint8) * 255, **options)

    return fill


BASELINES: dict[str, tuple[str, FillFn]] = {
    "telea": ("Telea", opencv_fill(cv2.INPAINT_TELEA)),
    "ns": ("Navier-Stokes", opencv_fill(cv2.INPAINT_NS)),
    "shiftmap": ("Shift-map", shiftmap_fill),
}
"""``--baselines`` name -> (display name, fill): OpenCV's classical methods."""
DIFFUSION = ("Telea", "Navier-Stokes")
"""Display names of the diffusion fills, which smear the border inwards; margins are over the better of them."""
EXEMPLAR = ("Shift-map",)
"""Display name of the exemplar fill, which copies the photo's own texture into the hole."""
CLASSICAL = DIFFUSION + EXEMPLAR


# --- running ------------------------------------------------------------------------------------------------


def run_protocol(
    methods: dict[str, FillFn],
    cases: list[Case],
    with_lpips: bool | None = None,
    reuse: dict[tuple[str, str, str], dict] | None = None,
) -> list[dict]:
    """Every method on every case: one row per (case, method) with the metrics and the fill's seconds. Rows found
    in ``reuse`` (keyed by photo name, mask name and method, :func:`read_rows`) are taken as they are."""
    with_lpips = lpips_available() if with_lpips is None else with_lpips
    reuse = reuse or {}
    rows = []
    photo_path, photo = None, None
    for case in tqdm(cases, desc="native protocol", unit="mask"):
        todo = {name: fill for name, fill in methods.items() if (case.photo.name, case.mask.name, name) not in reuse}
        rows.extend(reuse[case.photo.name, case.mask.name, name] for name in methods if name not in todo)
        if not todo:
            continue
        if case.photo != photo_path:
            photo_path, photo = case.photo, _rgb_array(case.photo)
        hole = to_hole_mask(case.mask, photo.shape[0], photo.shape[1])
        for name, fill in todo.items():
            start = time.perf_counter()
            result = np.asarray(fill(photo, hole))
            seconds = time.perf_counter() - start
            if not np.array_equal(result[~hole], photo[~hole]):
                raise AssertionError(f"{name} changed pixels outside the hole of {case.mask.name}")
            row = {**asdict(case), "photo": case.photo.name, "mask": case.mask.name, "method": name}
            rows.append({**row, **hole_metrics(result, photo, hole, with_lpips), "seconds": seconds})
    return rows


GROUPINGS = {"size_class": "size", "kind": "kind"}
"""Row field a summary can group by -> its table's first column header."""


def summarize(rows: list[dict], by: str = "size_class") -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Mean metrics per size class (``by="size_class"``) or mask kind (``by="kind"``), "all" too -> bucket ("all"
    too) -> method -> metric (with "count")."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {tuple(GROUPINGS)}, got {by!r}")
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for row in rows:
        for group in (row[by], "all"):
            for bucket in (row["bucket"], "all"):
                groups[group, bucket, row["method"]].append(row)
    table: dict = defaultdict(lambda: defaultdict(dict))
    for (group, bucket, method), members in groups.items():
        means = {
            key: float(np.nanmean([m[key] for m in members]))
            for key in ("psnr", "ssim", "lpips", "seconds")
            if key in members[0]
        }
        table[group][bucket][method] = {**means, "count": len(members)}
    return {group: dict(buckets) for group, buckets in table.items()}


def _cells(summary: dict) -> Iterable[tuple[str, str, dict]]:
    """(group, bucket, cell) in table order: size classes or kinds in their own order, then "all"."""
    order = [label for label, _, _ in SIZE_CLASSES] + list(OBJECT_KINDS)
    groups = [label for label in order if label in summary] + ["all"]
    for group in groups:
        for bucket in [bucket_label(b) for b in OBJECT_BUCKETS] + ["all"]:
            cell = summary.get(group, {}).get(bucket)
            if cell:
                yield group, bucket, cell


def format_native_table(summary: dict, header: str = "size") -> str:
    """A markdown table: group (size class, or mask kind with ``header="kind"``), bucket, count, then PSNR / SSIM /
    LPIPS / seconds per fill of every method."""
    methods = list(summary["all"]["all"])
    lines = [f"| {header} | holes | n | " + " | ".join(methods) + " |", "|" + "---|" * (3 + len(methods))]
    for size, bucket, cell in _cells(summary):
        values = [
            f"{cell[m]['psnr']:.2f} / {cell[m]['ssim']:.4f} / {cell[m].get('lpips', math.nan):.4f} / "
            f"{cell[m]['seconds']:.2f} s"
            for m in methods
        ]
        lines.append(f"| {size} | {bucket} | {next(iter(cell.values()))['count']} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def format_margins(
    summary: dict, methods: list[str], against: tuple[str, ...] = DIFFUSION, header: str = "size"
) -> str:
    """Each of ``methods`` over the better of the ``against`` methods: PSNR (dB), SSIM, LPIPS (% change)."""
    lines = [f"| {header} | holes | " + " | ".join(methods) + " |", "|" + "---|" * (2 + len(methods))]
    for size, bucket, cell in _cells(summary):
        lines.append(f"| {size} | {bucket} | " + " | ".join(_margin(cell, m, against) for m in methods) + " |")
    return "\n".join(lines)


def margins(cell: dict, method: str, against: tuple[str, ...] = DIFFUSION) -> tuple[float, float, float] | None:
    """(PSNR dB, SSIM, LPIPS %) of ``method`` over the better of ``against`` (by default Telea / Navier-Stokes;
    ``EXEMPLAR`` for shift-map) in one summary cell: the highest PSNR and SSIM, the lowest LPIPS among them."""
    reference = [cell[m] for m in against if m in cell and m != method]
    if not reference or method not in cell:
        return None
    ours = cell[method]
    best_lpips = min(c.get("lpips", math.nan) for c in reference)
    return (
        ours["psnr"] - max(c["psnr"] for c in reference),
        ours["ssim"] - max(c["ssim"] for c in reference),
        100 * (ours.get("lpips", math.nan) / best_lpips - 1),
    )


def _margin(cell: dict, method: str, against: tuple[str, ...]) -> str:
    values = margins(cell, method, against)
    return "" if values is None else f"{values[0]:+.2f} / {values[1]:+.4f} / {values[2]:+.1f} %"


def report(rows: list[dict]) -> tuple[dict, dict, str]:
    """The summaries of ``rows`` by size class and by mask kind, and the Markdown report: both tables, then the
    margins of every other method over the better of Telea / Navier-Stokes and of every non-classical method over
    shift-map (each part only where its reference methods ran), per size class and per kind."""
    by_size, by_kind = summarize(rows), summarize(rows, by="kind")
    methods = list(by_size["all"]["all"])
    parts = [
        "PSNR (hole) / SSIM (hole box) / LPIPS (box <= 512 px) / seconds per fill, per size class:",
        format_native_table(by_size),
        "Per mask kind:",
        format_native_table(by_kind, header="kind"),
    ]
    for against, name, shown in (
        (DIFFUSION, "the better of Telea / Navier-Stokes", [m for m in methods if m not in DIFFUSION]),
        (EXEMPLAR, "shift-map", [m for m in methods if m not in CLASSICAL]),
    ):
        if shown and any(m in methods for m in against):
            parts.append(f"Margin over {name}: PSNR dB / SSIM / LPIPS %")
            parts.append(format_margins(by_size, shown, against))
            parts.append(format_margins(by_kind, shown, against, header="kind"))
    return by_size, by_kind, "\n\n".join(parts)


def write_results(
    rows: list[dict], summary: dict, output_dir: str | Path, table: str, by_kind: dict | None = None
) -> None:
    """native_rows.csv, native_results.json (by size class), native_results_by_kind.json, native_table.md."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "native_rows.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (output_dir / "native_results.json").write_text(json.dumps(summary, indent=2))
    if by_kind is not None:
        (output_dir / "native_results_by_kind.json").write_text(json.dumps(by_kind, indent=2))
    (output_dir / "native_table.md").write_text(table + "\n")


def read_rows(path: str | Path, methods: Iterable[str]) -> dict[tuple[str, str, str], dict]:
    """The rows of ``methods`` in an earlier run's ``native_rows.csv``, keyed as :func:`run_protocol`'s ``reuse``:
    the deterministic OpenCV fills need not run again (shift-map alone costs more than everything else). The masks
    must be the same files (same --masks folder): rows are matched by photo and mask file name."""
    wanted = set(methods)
    try:
        with open(path, newline="") as file:
            records = list(csv.DictReader(file))
    except OSError as err:
        raise ValueError(f"cannot read the rows file {str(path)!r}: {err.strerror or err}") from err
    columns = {"photo", "mask", "size_class", "bucket", "kind", "method", "psnr", "ssim", "seconds"}
    if records and not columns <= set(records[0]):
        raise ValueError(f"{str(path)!r} is not a native_rows.csv: it lacks {sorted(columns - set(records[0]))}")
    rows = {}
    for record in records:
        if record["method"] in wanted:
            numbers = {key: float(record[key]) for key in ("psnr", "ssim", "lpips", "seconds") if key in record}
            rows[record["photo"], record["mask"], record["method"]] = {**record, **numbers}
    return rows


def parse_inpaint_options(text: str) -> dict:
    """``"strategy=crop,resolution=1024,refine=False"`` -> ``inpaint()`` keyword arguments (ints, floats and
    booleans converted)."""
    options: dict = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"inpaint options must be key=value pairs separated by commas, got {item!r}")
        converted: object = value
        if value in ("True", "False"):
            converted = value == "True"
        else:
            for kind in (int, float):
                try:
                    converted = kind(value)
                    break
                except ValueError:
                    continue
        options[key] = converted
    return options


def evaluate(
    methods: dict[str, FillFn],
    data: Iterable[str | Path],
    output_dir: str | Path,
    masks: str | Path | None = None,
    masks_per_bucket: int = 1,
    seed: int = 2026,
    with_lpips: bool | None = None,
) -> tuple[dict, str]:
    """Fill every (photo, mask) case of the held-out folders ``data`` with each of ``methods`` (name -> fill, e.g.
    :func:`model_fill` and :data:`BASELINES`), score the holes and write masks (unless ``masks`` names a folder of an
    earlier run), rows, summary and table to ``output_dir``. Returns the summary and the Markdown table."""
    if not 1 <= masks_per_bucket <= 100:
        raise ValueError(f"--masks_per_bucket must be from 1 to 100, got {masks_per_bucket}")
    photos = list_photos(data)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"--output_dir {str(output_dir)!r} exists and is not a folder")
    if masks:
        cases = read_cases(photos, masks)
    else:
        cases = make_cases(photos, output_dir / "masks", masks_per_bucket=masks_per_bucket, seed=seed)
    rows = run_protocol(methods, cases, with_lpips=with_lpips)
    summary, by_kind, table = report(rows)
    write_results(rows, summary, output_dir, table, by_kind)
    return summary, table
