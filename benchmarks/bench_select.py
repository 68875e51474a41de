"""How well the app's "Select object" (OpenCV GrabCut from a dragged box) selects: IoU against reference masks.

    python benchmarks/bench_select.py [--overlays DIR]

The references are drawn by hand as shapes (ellipses and polygons read off the photos on a 50-pixel grid, about
2-3 pixels off along the edges) on scikit-image's bundled photos, plus the synthetic scene of the tests (known
exactly). Each object is selected from its reference's bounding box widened by 10 % a side (a dragged box), then
again with one white dot at the reference's centre of mass ("this is the object"). Prints a markdown table: IoU of
the whole box (what painting the box would fill), of GrabCut from the box, and of GrabCut with the dot; and the
selection's time on this machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]


def load_app():
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


def ellipse(shape, center, axes) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1)
    return mask.astype(bool)


def polygon(shape, points) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.array(points, np.int32)], 1)
    return mask.astype(bool)


def references() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (photo, reference mask of its object)."""
    coffee = data.coffee()
    shape = coffee.shape[:2]
    cup = (
        ellipse(shape, (278, 240), (202, 148))  # the saucer
        | ellipse(shape, (292, 65), (118, 48))  # the cup's rim
        | polygon(shape, [(174, 70), (410, 70), (400, 230), (185, 230)])  # the cup
        | polygon(shape, [(400, 135), (408, 70), (424, 70), (418, 135)])  # the spoon's handle
    )
    astronaut = data.astronaut()
    patch = ellipse(astronaut.shape[:2], (170, 386), (37, 38))
    chelsea = data.chelsea()
    eye = ellipse(chelsea.shape[:2], (173, 116), (33, 29))
    rocket = data.rocket()
    body = polygon(
        rocket.shape[:2], [(321, 127), (313, 138), (310, 160), (310, 395), (334, 395), (334, 160), (331, 138)]
    )
    tests = sys.modules.get("test_app_loop") or import_tests()
    scene, known = tests.synthetic_object()
    return {
        "coffee: cup, saucer and spoon": (coffee, cup),
        "astronaut: mission patch": (astronaut, patch),
        "chelsea: left eye": (chelsea, eye),
        "rocket: the rocket": (rocket, body),
        "synthetic scene (tests)": (np.asarray(scene), known),
    }


def import_tests():
    spec = importlib.util.spec_from_file_location("test_app_loop", ROOT / "tests" / "test_app_loop.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["test_app_loop"] = module
    spec.loader.exec_module(module)
    return module


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def dragged_box(reference: np.ndarray, margin: float = 0.1) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(reference)
    height, width = reference.shape
    grow_x, grow_y = margin * (columns.max() - columns.min()), margin * (rows.max() - rows.min())
    return (
        max(0, int(columns.min() - grow_x)),
        max(0, int(rows.min() - grow_y)),
        min(width, int(columns.max() + 1 + grow_x)),
        min(height, int(rows.max() + 1 + grow_y)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--overlays", type=Path, help="write each selection over its photo here")
    args = parser.parse_args()
    app = load_app()
    print("| object | photo | box alone | GrabCut, box | GrabCut, box + 1 dot | time |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (photo, reference) in references().items():
        box = dragged_box(reference)
        whole = np.zeros_like(reference)
        whole[box[1] : box[3], box[0] : box[2]] = True
        image = Image.fromarray(photo)
        start = time.perf_counter()
        selected = app.select_object(image, box)
        seconds = time.perf_counter() - start
        dot = np.zeros_like(reference)
        rows, columns = np.nonzero(reference)
        center = (int(rows.mean()), int(columns.mean()))
        dot[center[0] - 2 : center[0] + 3, center[1] - 2 : center[1] + 3] = True
        with_dot = app.select_object(image, box, inside=dot)
        size = f"{image.width}×{image.height}"
        print(
            f"| {name} | {size} | {iou(whole, reference):.2f} | {iou(selected, reference):.2f} | "
            f"{iou(with_dot, reference):.2f} | {seconds:.2f} s |"
        )
        if args.overlays is not None:
            args.overlays.mkdir(parents=True, exist_ok=True)
            overlay = photo.copy()
            overlay[selected] = (0.5 * overlay[selected] + [127, 0, 127]).astype(np.uint8)
            edge = reference ^ cv2.erode(reference.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            overlay[edge] = (255, 255, 0)
            Image.fromarray(overlay).save(args.overlays / f"{name.split(':')[0]}.png")


if __name__ == "__main__":
    main()
