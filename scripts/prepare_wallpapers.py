"""Fetch the photographic wallpapers of four Debian packages (training data) and skimage photos (validation).

    python scripts/prepare_wallpapers.py --train_dir data/wallpapers --validation_dir data/validation

Needs `apt-get download` (run `apt-get update` once first). Only photographs are kept: the packages also
hold abstract renders and logos, which would teach the model the wrong statistics. Images are stored with
their short side at most ``--max_side`` px (JPEG, quality 95) so decoding them does not dominate training.
The validation photos come from scikit-image and never appear in the training set.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

# (Debian package, path inside it) of every photograph in the four packages, picked by eye.
PHOTOS = [
    ("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    *[
        ("mate-backgrounds", f"usr/share/backgrounds/mate/nature/{name}.jpg")
        for name in (
            "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
            "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower",
        )
    ],
    *[
        ("plasma-workspace-wallpapers", f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg")
        for name in (
            "BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
            "Grey", "Kite", "OneStandsOut", "Path", "summer_1am",
        )
    ],
]
PACKAGES = ["plasma-workspace-wallpapers", "mate-backgrounds", "ukui-wallpapers", "lomiri-wallpapers-20.04"]
# scikit-image's bundled photographs (no download needed); grayscale ones are stored as RGB.
VALIDATION_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle", "camera", "coins", "grass",
                     "gravel", "brick"]


def extract_packages(packages: list[str], into: Path) -> None:
    for package in packages:
        subprocess.run(["apt-get", "download", package], cwd=into, check=True, capture_output=True)
    for deb in sorted(into.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(into / "root")], check=True)


def save_photo(image: Image.Image, path: Path, max_side: int) -> None:
    image = image.convert("RGB")
    scale = max_side / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    image.save(path, quality=95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_dir", type=Path, required=True, help="where the training photos go")
    parser.add_argument("--validation_dir", type=Path, help="where the held-out skimage photos go")
    parser.add_argument("--max_side", type=int, default=1024, help="shorter side of stored photos, in px")
    args = parser.parse_args()

    args.train_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        extract_packages(PACKAGES, Path(tmp))
        for package, inner in PHOTOS:
            source = Path(tmp) / "root" / inner
            name = source.parts[-4] if "contents" in source.parts else source.stem
            save_photo(Image.open(source), args.train_dir / f"{package}-{name}.jpg", args.max_side)
    print(f"{len(PHOTOS)} training photos in {args.train_dir}")

    if args.validation_dir:
        from skimage import data

        args.validation_dir.mkdir(parents=True, exist_ok=True)
        for name in VALIDATION_PHOTOS:
            pixels = getattr(data, name)()
            pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo_motorcycle: (left, right, disp)
            save_photo(Image.fromarray(pixels), args.validation_dir / f"{name}.png", args.max_side)
        print(f"{len(VALIDATION_PHOTOS)} validation photos in {args.validation_dir}")


if __name__ == "__main__":
    main()
