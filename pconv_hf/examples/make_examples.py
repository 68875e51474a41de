"""Recreate the app's example photos and painted layers (run from anywhere: ``python make_examples.py``).

Photos come from scikit-image's bundled data (public domain / CC0, see ``skimage.data``); each layer is an RGBA
PNG the size of its photo, transparent except where it is "painted" (the app fills every painted pixel).
"""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).parent
PAINT = (255, 0, 255, 160)  # the app's brush colour: translucent magenta


def painted_layer(height: int, width: int, draw) -> Image.Image:
    alpha = np.zeros((height, width), np.uint8)
    draw(alpha)
    layer = np.zeros((height, width, 4), np.uint8)
    layer[alpha > 0] = PAINT
    return Image.fromarray(layer, "RGBA")


def shuttle(alpha: np.ndarray) -> None:
    """The space shuttle model behind the astronaut."""
    outline = [(384, 0), (446, 0), (458, 120), (466, 200), (472, 252), (474, 292), (360, 292), (350, 230), (372, 150)]
    cv2.fillPoly(alpha, [np.array(outline, np.int32)], 255)


def spoon(alpha: np.ndarray) -> None:
    """The spoon on the saucer."""
    cv2.line(alpha, (414, 72), (378, 250), 255, thickness=24)
    cv2.ellipse(alpha, (366, 284), (44, 44), 0, 0, 360, 255, thickness=-1)


def scratches(alpha: np.ndarray) -> None:
    """Scratches across an old print of the cat."""
    for points in ([(20, 40), (140, 90), (260, 70)], [(300, 20), (330, 150), (420, 210)], [(60, 260), (200, 230)]):
        cv2.polylines(alpha, [np.array(points, np.int32)], False, 255, thickness=7)


EXAMPLES = {
    "astronaut": (data.astronaut, shuttle),
    "coffee": (data.coffee, spoon),
    "chelsea": (data.chelsea, scratches),
}


def main() -> None:
    for name, (load, draw) in EXAMPLES.items():
        photo = load()
        Image.fromarray(photo).save(HERE / f"{name}.jpg", quality=92)
        painted_layer(*photo.shape[:2], draw).save(HERE / f"{name}_mask.png", optimize=True)


if __name__ == "__main__":
    main()
