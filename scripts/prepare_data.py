"""Fetch and prepare every training photo from Debian packages, with per-photo credits and licences.

    python scripts/prepare_data.py --out_dir data/photos --deb_dir data/debs [--small_copy data/photos-1024]

Sources (all photographs, picked by eye; renders, drawings, icons and textures are left out):
- the 24 photos of lomiri-wallpapers-20.04, mate-backgrounds and plasma-workspace-wallpapers used so far;
- gcompris-qt-data: photos stored as WebP inside Qt resource (.rcc) files, short side >= 512 px;
- lomiri-wallpapers-16.04: its photos (not the render umang_by_Abhishek_Mudgal.jpg);
- palapeli-data: the five puzzle photos in usr/share/palapeli/collection.
Debian's opencv-doc is never used: its images are reserved for independent evaluation.

Writes into ``--out_dir``: ``train/`` and ``holdout/`` (JPEG quality 95, long side at most ``--max_side``,
never upscaled, named ``<package>-<name>.jpg``), ``validation/`` (scikit-image's photos, PNG), ``manifest.csv``
(one row per photo: split, package, path inside it, size, licence, credit) and ``CREDITS.md``. The holdout is
about 10 % of the new photos, chosen from file names alone, so it is the same on every run. The script owns
``train/`` and ``holdout/``: *.jpg files already there are deleted first. ``--small_copy DIR`` writes the same
layout again with long side at most ``--small_side`` (1024 px: about 40 MiB, small enough to ship to a GPU machine).

Needs ``dpkg`` and, for packages missing from ``--deb_dir``, ``apt-get download`` (run ``apt-get update`` first).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import io
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from PIL import Image, ImageOps
from tqdm import tqdm

Image.MAX_IMAGE_PIXELS = 60_000_000  # the largest photo (lomiri 16.04 "seeding") has 16 Mpx

# (Debian package, path inside it) of the photographs used before this script gathered more sources.
# ukui-wallpapers was also fetched then but none of its images was a photograph, so it is no longer fetched.
OLD_PHOTOS = [
    ("lomiri-wallpapers-20.04", "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    *[
        ("mate-backgrounds", f"usr/share/backgrounds/mate/nature/{name}.jpg")
        for name in [
            "Aqua",
            "Blinds",
            "Dune",
            "FreshFlower",
            "Garden",
            "GreenMeadow",
            "LadyBird",
            "RainDrops",
            "Storm",
            "TwoWings",
            "Wood",
            "YellowFlower",
        ]
    ],
    *[
        ("plasma-workspace-wallpapers", f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg")
        for name in [
            "BytheWater",
            "ColdRipple",
            "ColorfulCups",
            "DarkestHour",
            "EveningGlow",
            "FallenLeaf",
            "Grey",
            "Kite",
            "OneStandsOut",
            "Path",
            "summer_1am",
        ]
    ],
]
GCOMPRIS = "gcompris-qt-data"
# Activities whose resources hold photographs; every image in them with short side >= 512 px was inspected by
# eye and is a photograph (the smaller ones in clickgame are fish sprites).
GCOMPRIS_RCC = [
    "erase",
    "explore_monuments",
    "explore_world_animals",
    "explore_farm_animals",
    "explore_world_music",
    "clickgame",
]
GCOMPRIS_MIN_SIDE = 512
# File names misspelt in the gcompris credit READMEs -> the file they mean.
GCOMPRIS_README_TYPOS = {"germany/audaPalatina.webp": "germany/aulaPalatina.webp"}
LOMIRI_16 = "lomiri-wallpapers-16.04"
LOMIRI_16_NOT_PHOTOS = {"umang_by_Abhishek_Mudgal.jpg"}  # an abstract render
PALAPELI = "palapeli-data"
NEW_SOURCES = [GCOMPRIS, LOMIRI_16, PALAPELI]
PACKAGES = sorted({package for package, _ in OLD_PHOTOS} | set(NEW_SOURCES))
FORBIDDEN_PACKAGES = {"opencv-doc"}  # reserved for independent evaluation

# scikit-image's bundled photographs (no download needed); grayscale ones are stored as RGB.
VALIDATION_PHOTOS = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "stereo_motorcycle",
    "camera",
    "coins",
    "grass",
    "gravel",
    "brick",
]
# From the docstrings of skimage.data.
VALIDATION_CREDITS = {
    "astronaut": ("public-domain", "NASA"),
    "coffee": ("CC0-1.0", "Rachel Michetti"),
    "chelsea": ("CC0-1.0", "Stefan van der Walt"),
    "rocket": ("public-domain", "SpaceX"),
    "stereo_motorcycle": (
        "unknown",
        "Middlebury 2014 stereo benchmark (Nesic, Westling, Wang, Kitajima, Krathwohl, Scharstein)",
    ),
    "camera": ("CC0-1.0", "Lav Varshney"),
    "coins": ("no-known-copyright-restrictions", "Brooklyn Museum"),
    "grass": ("CC0-1.0", "linolafett (DeviantArt)"),
    "gravel": ("CC0-1.0", "CC0Textures"),
    "brick": ("CC0-1.0", "CC0Textures"),
}
HOLDOUT_EVERY = 10
MANIFEST_FIELDS = ["file", "split", "package", "version", "path", "width", "height", "licence", "credit", "source_url"]
# Licences whose terms ask for the author to be named wherever the photo is redistributed.
NO_ATTRIBUTION_NEEDED = {"CC0-1.0", "public-domain", "no-known-copyright-restrictions"}


class PrepareError(Exception):
    """A problem the user can fix (missing tool, unavailable package); reported as one line."""


# --- Qt resource (.rcc) files ---------------------------------------------------------------------------------------

RCC_COMPRESSED_ZLIB = 0x01
RCC_DIRECTORY = 0x02
RCC_COMPRESSED_ZSTD = 0x04


def read_rcc(data: bytes) -> dict[str, bytes]:
    """Every file in a Qt binary resource (format version 1 to 3), by its path, uncompressed.

    Layout (qtbase/src/corelib/io/qresource.cpp): a header ``"qres"``, version, then the offsets of the tree, data
    and names sections (and flags from version 3), all 32-bit big-endian. A tree node is 14 bytes (22 from version 2,
    which adds a 64-bit modification time): name offset, flags, then for a directory child count and index of the
    first child, else locale and data offset. A name is its length in UTF-16 units, a hash and UTF-16BE text. A data
    entry is a 32-bit length and its bytes; zlib-compressed ones start with the 32-bit uncompressed size.

    Raises:
        ValueError: the bytes are not a valid resource file (naming what is wrong), or an entry is zstd-compressed.
    """
    if len(data) < 20 or data[:4] != b"qres":
        raise ValueError("not a Qt resource file: it does not start with b'qres' and a 20-byte header")
    version, tree_offset, data_offset, names_offset = struct.unpack_from(">4I", data, 4)
    if not 1 <= version <= 3:
        raise ValueError(f"unsupported Qt resource format version {version} (expected 1 to 3)")
    node_size = 14 if version == 1 else 22

    def unpack(fmt: str, offset: int, what: str) -> tuple[int, ...]:
        if offset < 0 or offset + struct.calcsize(fmt) > len(data):
            raise ValueError(f"truncated Qt resource file: {what} at byte {offset} lies past its end ({len(data)})")
        return struct.unpack_from(fmt, data, offset)

    def read_name(node: int) -> str:
        (name_offset,) = unpack(">I", tree_offset + node * node_size, f"tree node {node}")
        length, _hash = unpack(">HI", names_offset + name_offset, f"name of tree node {node}")
        start = names_offset + name_offset + 6
        if start + 2 * length > len(data):
            raise ValueError(f"truncated Qt resource file: name of tree node {node} runs past its end")
        return data[start : start + 2 * length].decode("utf-16-be")

    def read_file(node: int, path: str, flags: int) -> bytes:
        (entry_offset,) = unpack(">I", tree_offset + node * node_size + 10, f"tree node {node}")
        (size,) = unpack(">I", data_offset + entry_offset, f"data of {path!r}")
        start = data_offset + entry_offset + 4
        if start + size > len(data):
            raise ValueError(f"truncated Qt resource file: data of {path!r} ({size} bytes) runs past its end")
        payload = data[start : start + size]
        if flags & RCC_COMPRESSED_ZSTD:
            raise ValueError(f"{path!r} is zstd-compressed, which this reader does not support")
        if flags & RCC_COMPRESSED_ZLIB:
            if size < 4:
                raise ValueError(f"garbled Qt resource file: compressed {path!r} is shorter than its size field")
            (expected,) = struct.unpack_from(">I", payload)
            try:
                payload = zlib.decompress(payload[4:])
            except zlib.error as error:
                raise ValueError(f"garbled Qt resource file: cannot decompress {path!r}: {error}") from None
            if len(payload) != expected:
                raise ValueError(f"garbled Qt resource file: {path!r} is {len(payload)} bytes, header says {expected}")
        return payload

    files: dict[str, bytes] = {}
    stack = [(0, "")]  # (tree node, its parent's path); node 0 is the unnamed root directory
    visited = set()
    while stack:
        node, parent = stack.pop()
        if node in visited:
            raise ValueError(f"garbled Qt resource file: tree node {node} is reached twice")
        visited.add(node)
        _, flags = unpack(">IH", tree_offset + node * node_size, f"tree node {node}")
        path = f"{parent}/{read_name(node)}" if node else ""
        if flags & RCC_DIRECTORY:
            count, first = unpack(">II", tree_offset + node * node_size + 6, f"tree node {node}")
            stack.extend((child, path) for child in range(first, first + count))
        else:
            files[path.lstrip("/")] = read_file(node, path.lstrip("/"), flags)
    return files


# --- credits and licences -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credit:
    """Who made a photo, under which licence (SPDX-like, "public-domain" or "unknown"), and where it came from."""

    licence: str = "unknown"
    author: str = ""
    source_url: str = ""


def normalize_licence(text: str) -> str:
    """An SPDX-like spelling of the licence names found in the packages ("CC-BY-SA 4.0" -> "CC-BY-SA-4.0")."""
    text = " ".join(text.split())
    lowered = text.lower()
    if lowered in {"public domain", "public-domain", "pd"}:
        return "public-domain"
    if lowered in {"fdl", "gnu-fdl", "gfdl", "gnu fdl"}:
        return "GFDL"  # version not stated
    if lowered == "lgplv3":
        return "LGPL-3.0"
    match = re.fullmatch(r"(CC[- ]BY(?:[- ]SA|[- ]ND|[- ]NC)*|CC0)[- ]?v?(\d\.\d)", text, flags=re.IGNORECASE)
    if match:
        return f"{re.sub(r'[ ]', '-', match[1]).upper()}-{match[2]}"
    return text


def _clean_author(text: str) -> str:
    """Copyright lines joined, without e-mail addresses or stray characters."""
    lines = [re.sub(r"\s*<[^>]*>", "", line).strip(" ,´") for line in text.splitlines()]
    return "; ".join(line for line in lines if line)


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """Blank-line separated ``Field: value`` blocks (Debian copyright format); continuation lines are indented."""
    stanzas: list[dict[str, str]] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            match = re.match(r"^([A-Za-z][\w-]*):\s?(.*)$", line)
            if match and not line[:1].isspace():
                key = match[1].lower()
                fields[key] = match[2].strip()
            elif key is not None and line.strip() and line.strip() != ".":
                fields[key] = f"{fields[key]}\n{line.strip()}".strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def parse_gcompris_readme(text: str) -> dict[str, Credit]:
    """Credits of a gcompris resource README: stanzas of Copyright, License, Source and Files.

    Returns:
        file path relative to the README's folder -> its credit. ``Files:`` lists names on its own line and on the
        following (unindented) lines, which :func:`parse_stanzas` would not treat as part of the field.
    """
    credits: dict[str, Credit] = {}
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        files: list[str] = []
        in_files = False
        for line in block.splitlines():
            match = re.match(r"^([A-Za-z][\w-]*):\s*(.*)$", line)
            if match:
                key, value = match[1].lower(), match[2].strip()
                in_files = key == "files"
                if in_files:
                    files.extend(value.split())
                else:
                    fields[key] = value
            elif in_files and line.strip():
                files.extend(line.split())
        credit = Credit(
            licence=normalize_licence(fields.get("license", "unknown")),
            author=_clean_author(fields.get("copyright", "")),
            source_url=fields.get("source", ""),
        )
        for name in files:
            credits[GCOMPRIS_README_TYPOS.get(name, name)] = credit
    return credits


def credit_from_debian_copyright(text: str, inner_path: str) -> Credit:
    """The credit the Debian copyright file gives the file at ``inner_path`` (a path inside the installed package).

    The file's ``Files:`` patterns are upstream source paths, so a pattern matches when it matches the end of the
    installed path; failing that, a pattern whose last part names the file; failing that, ``*``. Within the best of
    these, the last stanza wins, as the format specifies.
    """
    path = PurePosixPath(inner_path)
    tiers: list[list[dict[str, str]]] = [[], [], []]
    for stanza in parse_stanzas(text):
        for pattern in stanza.get("files", "").split():
            if pattern.startswith("debian/"):
                continue
            if pattern == "*":
                tiers[2].append(stanza)
            elif fnmatch.fnmatchcase(str(path), f"*/{pattern}"):
                tiers[0].append(stanza)
            elif not any(c in pattern for c in "*?[") and PurePosixPath(pattern).name == path.name:
                tiers[1].append(stanza)
    for tier in tiers:
        if tier:
            stanza = tier[-1]
            return Credit(
                normalize_licence(stanza.get("license", "unknown").splitlines()[0]),
                _clean_author(stanza.get("copyright", "")),
            )
    return Credit()


def credit_from_desktop_file(text: str) -> Credit:
    """Author, licence and web page of a KDE ``.desktop`` file (palapeli's puzzles)."""
    fields = dict(re.findall(r"^X-KDE-PluginInfo-(\w+)=(.*)$", text, flags=re.MULTILINE))
    return Credit(
        normalize_licence(fields.get("License", "unknown")),
        fields.get("Author", "").strip(),
        fields.get("Website", "").strip(),
    )


def credit_from_plasma_metadata(text: str) -> Credit:
    """Author and licence of a Plasma wallpaper's ``metadata.json``."""
    plugin = json.loads(text)["KPlugin"]
    authors = ", ".join(author["Name"] for author in plugin.get("Authors", []))
    return Credit(normalize_licence(plugin.get("License", "unknown")), authors, plugin.get("Website", ""))


# --- the photos -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One photograph: where it comes from, its encoded bytes, and the file it becomes."""

    package: str
    path: str  # inside the package; for .rcc members "<rcc path>:/<member path>"
    name: str  # output file name
    data: bytes
    credit: Credit

    @property
    def is_new(self) -> bool:
        return self.package in NEW_SOURCES


def choose_holdout(names: list[tuple[str, str]], every: int = HOLDOUT_EVERY) -> set[str]:
    """Within each source, every ``every``-th photo in the order of the sha256 of its file name, starting at the first.

    Each source thus gives ceil(n / every) photos (at least one), and the pick depends only on the file names, not on
    how the photos were listed.

    Args:
        names: (source, output file name) of each candidate photo; file names must be unique.

    Returns:
        the file names of the holdout photos.
    """
    if len({name for _, name in names}) != len(names):
        raise ValueError("choose_holdout needs unique file names")
    by_source: dict[str, list[str]] = {}
    for source, name in names:
        by_source.setdefault(source, []).append(name)
    holdout = set()
    for source_names in by_source.values():
        ordered = sorted(source_names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
        holdout.update(ordered[::every])
    return holdout


def assign_splits(photos: list[Photo]) -> dict[str, str]:
    """Output file name -> "train" or "holdout"; only new photos can be held out, the old ones stay in train."""
    names = [photo.name for photo in photos]
    if len(set(names)) != len(names):
        raise PrepareError(f"duplicate output names: {sorted({n for n in names if names.count(n) > 1})}")
    holdout = choose_holdout([(photo.package, photo.name) for photo in photos if photo.is_new])
    return {photo.name: "holdout" if photo.name in holdout else "train" for photo in photos}


def deb_version(deb: Path) -> str:
    """The version in a ``<package>_<version>_<arch>.deb`` file name (``%3a`` is the epoch's colon)."""
    parts = deb.name.split("_")
    return unquote(parts[1]) if len(parts) == 3 else ""


def fetch_packages(packages: list[str], deb_dir: Path, into: Path) -> dict[str, tuple[Path, str]]:
    """Extract each package into ``into/<package>``, reusing ``deb_dir/<package>_*.deb`` or downloading it there.

    Returns:
        package -> (its extracted root, its version).
    """
    if forbidden := FORBIDDEN_PACKAGES & set(packages):
        raise PrepareError(f"{sorted(forbidden)} is reserved for independent evaluation and must not be fetched")
    if shutil.which("dpkg") is None:
        raise PrepareError("dpkg is not installed; this script needs a Debian-based system (dpkg -x)")
    deb_dir.mkdir(parents=True, exist_ok=True)
    roots = {}
    for package in tqdm(packages, desc="packages", unit="pkg"):
        debs = sorted(deb_dir.glob(f"{package}_*.deb"))
        if len(debs) > 1:
            raise PrepareError(f"several .debs of {package} in {deb_dir}: {[d.name for d in debs]}; keep one")
        if not debs:
            if shutil.which("apt-get") is None:
                raise PrepareError(f"{package} is not in {deb_dir} and apt-get is not installed to download it")
            result = subprocess.run(["apt-get", "download", package], cwd=deb_dir, capture_output=True, text=True)
            debs = sorted(deb_dir.glob(f"{package}_*.deb"))
            if result.returncode != 0 or not debs:
                reason = (result.stderr.strip().splitlines() or ["no .deb was written"])[-1]
                raise PrepareError(f"cannot fetch {package} (run apt-get update first?): {reason}")
        root = into / package
        result = subprocess.run(["dpkg", "-x", str(debs[0]), str(root)], capture_output=True, text=True)
        if result.returncode != 0:
            raise PrepareError(f"dpkg -x {debs[0]} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
        roots[package] = (root, deb_version(debs[0]))
    return roots


def copyright_text(root: Path, package: str) -> str:
    return (root / "usr/share/doc" / package / "copyright").read_text(encoding="utf-8", errors="replace")


def old_photos(roots: dict[str, tuple[Path, str]]) -> Iterator[Photo]:
    for package, inner in OLD_PHOTOS:
        root = roots[package][0]
        source = root / inner
        if package == "plasma-workspace-wallpapers":
            wallpaper = source.parents[2]  # <name>/contents/images/2560x1600.jpg
            name = wallpaper.name
            credit = credit_from_plasma_metadata((wallpaper / "metadata.json").read_text(encoding="utf-8"))
        else:
            name = source.stem
            credit = credit_from_debian_copyright(copyright_text(root, package), inner)
        yield Photo(package, inner, f"{package}-{name}.jpg", source.read_bytes(), credit)


def gcompris_photos(root: Path) -> Iterator[Photo]:
    for activity in GCOMPRIS_RCC:
        rcc_path = f"usr/share/gcompris-qt/rcc/{activity}.rcc"
        members = read_rcc((root / rcc_path).read_bytes())
        credits: dict[str, Credit] = {}
        for member, data in members.items():
            if PurePosixPath(member).name == "README":
                folder = PurePosixPath(member).parent
                for name, credit in parse_gcompris_readme(data.decode("utf-8", errors="replace")).items():
                    credits[str(folder / name)] = credit
        for member, data in sorted(members.items()):
            if PurePosixPath(member).suffix.lower() not in {".webp", ".jpg", ".jpeg", ".png"}:
                continue
            with Image.open(io.BytesIO(data)) as image:
                if min(image.size) < GCOMPRIS_MIN_SIDE:
                    continue
            name = f"{GCOMPRIS}-{activity}-{PurePosixPath(member).stem}.jpg"
            yield Photo(GCOMPRIS, f"{rcc_path}:/{member}", name, data, credits.get(member, Credit()))


def lomiri_16_photos(root: Path) -> Iterator[Photo]:
    copyright_file = copyright_text(root, LOMIRI_16)
    for source in sorted((root / "usr/share/backgrounds").glob("*.jpg")):
        if source.name in LOMIRI_16_NOT_PHOTOS:
            continue
        inner = str(source.relative_to(root))
        credit = credit_from_debian_copyright(copyright_file, inner)
        yield Photo(LOMIRI_16, inner, f"{LOMIRI_16}-{source.stem}.jpg", source.read_bytes(), credit)


def palapeli_photos(root: Path) -> Iterator[Photo]:
    for source in sorted((root / "usr/share/palapeli/collection").glob("*.jpg")):
        desktop = source.with_suffix(".desktop")
        credit = credit_from_desktop_file(desktop.read_text(encoding="utf-8")) if desktop.exists() else Credit()
        inner = str(source.relative_to(root))
        yield Photo(PALAPELI, inner, f"{PALAPELI}-{source.stem}.jpg", source.read_bytes(), credit)


# --- writing --------------------------------------------------------------------------------------------------------


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """``image`` with its long side at most ``max_side`` px (never upscaled)."""
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def manifest_row(
    file: str, split: str, package: str, version: str, path: str, size: tuple[int, int], credit: Credit
) -> dict[str, str | int]:
    return {
        "file": file,
        "split": split,
        "package": package,
        "version": version,
        "path": path,
        "width": size[0],
        "height": size[1],
        "licence": credit.licence,
        "credit": credit.author,
        "source_url": credit.source_url,
    }


def write_manifest(rows: list[dict[str, str | int]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def credits_markdown(rows: list[dict[str, str | int]]) -> str:
    """CREDITS.md: every photo's author and source, grouped by licence, attribution-requiring licences first."""
    by_licence: dict[str, list[dict[str, str | int]]] = {}
    for row in rows:
        by_licence.setdefault(str(row["licence"]), []).append(row)
    order = sorted(by_licence, key=lambda licence: (licence in NO_ATTRIBUTION_NEEDED, licence == "unknown", licence))
    lines = [
        "# Photo credits",
        "",
        "Every photo in this data set, its author and licence, as stated by the Debian package it comes from",
        "(or by scikit-image for the validation photos). Photos under CC-BY, CC-BY-SA, GFDL, GPL or LGPL may be",
        "redistributed only with this attribution; the copies here are resized and re-encoded as JPEG.",
        "",
    ]
    for licence in order:
        if licence in NO_ATTRIBUTION_NEEDED:
            needs = "no attribution required"
        elif licence == "unknown":
            needs = "licence not stated by the source; credit the author"
        else:
            needs = "attribution required"
        count = len(by_licence[licence])
        lines += [f"## {licence} ({count} photo{'s' * (count != 1)}; {needs})", ""]
        for row in sorted(by_licence[licence], key=lambda r: str(r["file"])):
            author = row["credit"] or "author not stated"
            source = f", <{row['source_url']}>" if row["source_url"] else ""
            lines.append(
                f"- `{row['file']}`: {author}{source}. From Debian package `{row['package']}` "
                f"{row['version']}, `{row['path']}`."
            )
        lines.append("")
    return "\n".join(lines)


def clear_jpegs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.jpg"):
        stale.unlink()


def folder_size(folder: Path) -> int:
    return sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())


def write_validation(out_dir: Path) -> list[dict[str, str | int]]:
    """scikit-image's photos as PNG, converted to RGB but otherwise as bundled (all are at most 640 px)."""
    import skimage
    from skimage import data

    folder = out_dir / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in VALIDATION_PHOTOS:
        pixels = getattr(data, name)()
        pixels = pixels[0] if isinstance(pixels, tuple) else pixels  # stereo_motorcycle: (left, right, disparity)
        image = Image.fromarray(pixels).convert("RGB")
        image.save(folder / f"{name}.png")
        licence, author = VALIDATION_CREDITS[name]
        rows.append(
            manifest_row(
                f"validation/{name}.png",
                "validation",
                "scikit-image",
                skimage.__version__,
                f"skimage.data.{name}",
                image.size,
                Credit(licence, author),
            )
        )
    return rows


def prepare(out_dir: Path, deb_dir: Path, max_side: int, small_copy: Path | None, small_side: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        roots = fetch_packages(PACKAGES, deb_dir, Path(tmp))
        photos = [
            *old_photos(roots),
            *gcompris_photos(roots[GCOMPRIS][0]),
            *lomiri_16_photos(roots[LOMIRI_16][0]),
            *palapeli_photos(roots[PALAPELI][0]),
        ]
    splits = assign_splits(photos)

    targets = [(out_dir, max_side)] + ([(small_copy, small_side)] if small_copy else [])
    for folder, _ in targets:
        clear_jpegs(folder / "train")
        clear_jpegs(folder / "holdout")
    rows: dict[Path, list[dict[str, str | int]]] = {folder: [] for folder, _ in targets}
    for photo in tqdm(photos, desc="photos", unit="photo"):
        image = decode(photo.data)
        split = splits[photo.name]
        for folder, side in targets:
            resized = shrink(image, side)
            resized.save(folder / split / photo.name, quality=95)
            version = roots[photo.package][1]
            rows[folder].append(
                manifest_row(
                    f"{split}/{photo.name}", split, photo.package, version, photo.path, resized.size, photo.credit
                )
            )
    for folder, _ in targets:
        rows[folder] += write_validation(folder)
    train = {path.name for path in (out_dir / "train").glob("*.jpg")}
    assert not train & {path.name for path in (out_dir / "holdout").glob("*.jpg")}, "holdout photo in train/"

    for folder, _ in targets:
        write_manifest(rows[folder], folder / "manifest.csv")
        (folder / "CREDITS.md").write_text(credits_markdown(rows[folder]), encoding="utf-8")
    report(rows[out_dir], out_dir, small_copy)


def report(rows: list[dict[str, str | int]], out_dir: Path, small_copy: Path | None) -> None:
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (str(row["package"]), str(row["split"]))
        counts[key] = counts.get(key, 0) + 1
    for (package, split), count in sorted(counts.items()):
        print(f"{package:30s} {split:10s} {count:4d}")
    unknown = [str(row["file"]) for row in rows if row["licence"] == "unknown"]
    if unknown:
        print(f"licence unknown for {len(unknown)} photos: {', '.join(unknown)}")
    print(f"{len(rows)} photos, {folder_size(out_dir) / 2**20:.1f} MiB in {out_dir}")
    if small_copy:
        print(f"small copy: {folder_size(small_copy) / 2**20:.1f} MiB in {small_copy}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", type=Path, required=True, help="gets train/, holdout/, validation/, manifest")
    parser.add_argument(
        "--deb_dir",
        type=Path,
        help=".debs found here are reused, missing ones downloaded here (default: a temporary folder)",
    )
    parser.add_argument("--max_side", type=int, default=2048, help="long side of stored photos, in px (no upscaling)")
    parser.add_argument("--small_copy", type=Path, help="also write a copy with a smaller long side here")
    parser.add_argument("--small_side", type=int, default=1024, help="long side of the --small_copy photos, in px")
    args = parser.parse_args(argv)
    if args.max_side < 1 or args.small_side < 1:
        parser.error("--max_side and --small_side must be positive")
    if args.small_copy and args.small_copy.resolve() == args.out_dir.resolve():
        parser.error("--small_copy must differ from --out_dir")
    try:
        if args.deb_dir:
            prepare(args.out_dir, args.deb_dir, args.max_side, args.small_copy, args.small_side)
        else:
            with tempfile.TemporaryDirectory() as deb_dir:
                prepare(args.out_dir, Path(deb_dir), args.max_side, args.small_copy, args.small_side)
    except PrepareError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
