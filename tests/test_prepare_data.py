"""scripts/prepare_data.py: the Qt resource reader, the holdout split and the credit parsers (no network, no apt)."""

import hashlib
import importlib.util
import math
import random
import struct
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepare_data():
    spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["prepare_data"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    del sys.modules["prepare_data"]


def build_rcc(tree: dict, compress: set[str] = frozenset()) -> bytes:
    """A version-3 Qt resource file holding ``tree`` ({name: bytes or sub-dict}), laid out as rcc lays it out:
    header, data, names, then the tree with each directory's children in consecutive nodes (breadth first)."""
    data, names = bytearray(), bytearray()
    nodes: list[tuple[int, int, tuple]] = []  # (name offset, flags, payload fields)

    def add_name(name: str) -> int:
        offset = len(names)
        encoded = name.encode("utf-16-be")
        names.extend(struct.pack(">HI", len(encoded) // 2, 0) + encoded)
        return offset

    nodes.append((0, 0x02, ()))  # root; its fields are filled in below
    queue = [(0, tree, "")]
    while queue:
        index, directory, prefix = queue.pop(0)
        first = len(nodes)
        name_offset = nodes[index][0]
        nodes[index] = (name_offset, 0x02, (len(directory), first))
        for name, content in directory.items():
            path = f"{prefix}{name}"
            if isinstance(content, dict):
                queue.append((len(nodes), content, f"{path}/"))
                nodes.append((add_name(name), 0x02, ()))
            else:
                payload = content
                flags = 0
                if path in compress:
                    payload = struct.pack(">I", len(content)) + zlib.compress(content)
                    flags = 0x01
                nodes.append((add_name(name), flags, (len(data),)))
                data.extend(struct.pack(">I", len(payload)) + payload)
    tree_bytes = bytearray()
    for name_offset, flags, fields in nodes:
        if flags & 0x02:
            tree_bytes += struct.pack(">IHII", name_offset, flags, *fields)
        else:
            tree_bytes += struct.pack(">IHHHI", name_offset, flags, 0, 0, *fields)
        tree_bytes += struct.pack(">Q", 0)  # last-modified, present from version 2
    data_offset = 24
    names_offset = data_offset + len(data)
    tree_offset = names_offset + len(names)
    header = b"qres" + struct.pack(">IIIII", 3, tree_offset, data_offset, names_offset, 0)
    return header + bytes(data) + bytes(names) + bytes(tree_bytes)


RCC_TREE = {
    "raw.txt": b"plain bytes \x00\xff",
    "images": {"photo.webp": b"RIFF" + bytes(range(256)) * 4, "deeper": {"nested.bin": b"n" * 1000}},
}


def test_read_rcc_returns_every_file_with_its_path_and_exact_bytes(prepare_data):
    blob = build_rcc(RCC_TREE, compress={"images/photo.webp", "images/deeper/nested.bin"})
    assert b"n" * 1000 not in blob  # the compressed entries really are compressed
    files = prepare_data.read_rcc(blob)
    assert files == {
        "raw.txt": b"plain bytes \x00\xff",
        "images/photo.webp": b"RIFF" + bytes(range(256)) * 4,
        "images/deeper/nested.bin": b"n" * 1000,
    }


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda blob: blob[:-30], "truncated"),  # cuts into the tree
        (lambda blob: b"qrez" + blob[4:], "not a Qt resource"),
        (lambda blob: blob[:4] + struct.pack(">I", 9) + blob[8:], "version 9"),
    ],
)
def test_read_rcc_names_the_problem_of_a_broken_file(prepare_data, mangle, message):
    blob = build_rcc(RCC_TREE, compress={"images/photo.webp"})
    with pytest.raises(ValueError, match=message):
        prepare_data.read_rcc(mangle(blob))


def test_read_rcc_rejects_garbled_compressed_data_and_zstd(prepare_data):
    blob = bytearray(build_rcc({"a.bin": b"x" * 500}, compress={"a.bin"}))
    zlib_start = 24 + 4 + 4  # header, length, uncompressed size
    garbled = blob.copy()
    garbled[zlib_start : zlib_start + 6] = b"\x00" * 6
    with pytest.raises(ValueError, match="cannot decompress 'a.bin'"):
        prepare_data.read_rcc(bytes(garbled))
    zstd = blob.copy()
    flags_at = len(zstd) - 22 + 4  # the file node is the last one; flags follow its name offset
    zstd[flags_at : flags_at + 2] = struct.pack(">H", 0x04)
    with pytest.raises(ValueError, match="zstd"):
        prepare_data.read_rcc(bytes(zstd))


def new_photo_names() -> list[tuple[str, str]]:
    sources = {"gcompris-qt-data": 117, "lomiri-wallpapers-16.04": 14, "palapeli-data": 5}
    return [(source, f"{source}-photo{i}.jpg") for source, count in sources.items() for i in range(count)]


def test_holdout_is_deterministic_spread_across_sources_and_about_ten_percent(prepare_data):
    names = new_photo_names()
    holdout = prepare_data.choose_holdout(names)
    shuffled = names.copy()
    random.Random(0).shuffle(shuffled)
    assert prepare_data.choose_holdout(shuffled) == holdout  # independent of listing order
    for source, count in [("gcompris-qt-data", 117), ("lomiri-wallpapers-16.04", 14), ("palapeli-data", 5)]:
        assert sum(name.startswith(source) for name in holdout) == math.ceil(count / 10)
    assert 0.09 <= len(holdout) / len(names) <= 0.13
    # the documented rule: per source, every 10th name in sha256 order, starting with the first
    palapeli = sorted(
        (n for _, n in names if n.startswith("palapeli")), key=lambda n: hashlib.sha256(n.encode()).digest()
    )
    assert {n for n in holdout if n.startswith("palapeli")} == {palapeli[0]}


def test_splits_never_put_a_photo_in_both_and_keep_old_photos_in_train(prepare_data):
    photo = prepare_data.Photo
    credit = prepare_data.Credit()
    old = [photo("mate-backgrounds", f"p/{i}.jpg", f"mate-backgrounds-{i}.jpg", b"", credit) for i in range(24)]
    new = [photo(source, "p", name, b"", credit) for source, name in new_photo_names()]
    splits = prepare_data.assign_splits(old + new)
    assert set(splits) == {p.name for p in old + new}  # each photo gets exactly one split
    assert all(splits[p.name] == "train" for p in old)
    assert {name for name, split in splits.items() if split == "holdout"} == prepare_data.choose_holdout(
        [(p.package, p.name) for p in new]
    )
    with pytest.raises(prepare_data.PrepareError, match="duplicate"):
        prepare_data.assign_splits(old + old[:1])


GCOMPRIS_README = """\
Copyright: Timothee Giet, 2018-2020
License: CC-BY-SA 4.0
Files:
key.svg
usa/usa.svg

Copyright: Berthold Werner
License: Public Domain
Source: https://commons.wikimedia.org/wiki/File:Trier_Konstantinbasilika_BW_1.JPG
Files:
germany/audaPalatina.webp

Files: heron.webp
Source: https://commons.wikimedia.org/wiki/File:Purpurreiher.jpg
License: CC-BY-SA-4.0
Copyright: Stephan Sprinz
Comments: cropping

Copyright: Tom Harpel
License: CC-BY 2.0
Source: https://commons.wikimedia.org/wiki/File:Onalaska-Practice6.jpg
Files:
america.webp
"""


def test_gcompris_readme_gives_each_file_its_credit_licence_and_source(prepare_data):
    credits = prepare_data.parse_gcompris_readme(GCOMPRIS_README)
    credit = prepare_data.Credit
    assert credits["key.svg"] == credits["usa/usa.svg"] == credit("CC-BY-SA-4.0", "Timothee Giet, 2018-2020")
    # the README's misspelt file name is mapped to the file that exists
    assert "germany/audaPalatina.webp" not in credits
    assert credits["germany/aulaPalatina.webp"] == credit(
        "public-domain", "Berthold Werner", "https://commons.wikimedia.org/wiki/File:Trier_Konstantinbasilika_BW_1.JPG"
    )
    # fields in any order, Files on the same line
    assert credits["heron.webp"] == credit(
        "CC-BY-SA-4.0", "Stephan Sprinz", "https://commons.wikimedia.org/wiki/File:Purpurreiher.jpg"
    )
    assert credits["america.webp"].licence == "CC-BY-2.0"
    assert len(credits) == 5


DEBIAN_COPYRIGHT = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example

Files: *
Copyright: 2010, Upstream Team <team@example.org>
License: GPL-2+

Files: nature/Aqua.jpg
       nature/Garden.jpg
Copyright: 2008, Charles Barbin <barbinch@example.org>
License: GPL-2+

Files: 16.04/Bridge_by_Sander_Klootwijk.jpg
Copyright: 2018. Sander Klootwijk
License: CC-BY-SA-4.0

Files: debian/*
Copyright: 2020, Packager
License: Expat

License: CC-BY-SA-4.0
 Attribution-ShareAlike 4.0 International
 .
 Files: not/a/stanza.jpg
"""


def test_debian_copyright_matches_installed_paths_to_upstream_patterns(prepare_data):
    def credit(path: str):
        return prepare_data.credit_from_debian_copyright(DEBIAN_COPYRIGHT, path)

    # a continuation line of Files: counts, and e-mail addresses are dropped
    assert credit("usr/share/backgrounds/mate/nature/Garden.jpg") == prepare_data.Credit(
        "GPL-2+", "2008, Charles Barbin"
    )
    # upstream folder 16.04/ is not in the installed path: matched by file name
    assert credit("usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg").licence == "CC-BY-SA-4.0"
    # anything else falls back to "Files: *", never to debian/*
    assert credit("usr/share/backgrounds/Other.jpg") == prepare_data.Credit("GPL-2+", "2010, Upstream Team")


def test_desktop_and_plasma_metadata_credits(prepare_data):
    desktop = "[Desktop Entry]\nX-KDE-PluginInfo-Author=Eric Pouhier\nX-KDE-PluginInfo-License=FDL\n"
    desktop += "X-KDE-PluginInfo-Website=http://commons.wikimedia.org/wiki/Image:EPO_2432_wiki.jpg\n"
    assert prepare_data.credit_from_desktop_file(desktop) == prepare_data.Credit(
        "GFDL", "Eric Pouhier", "http://commons.wikimedia.org/wiki/Image:EPO_2432_wiki.jpg"
    )
    metadata = '{"KPlugin": {"Authors": [{"Name": "Risto Saukonp\\u00e4\\u00e4"}], "License": "LGPLv3"}}'
    assert prepare_data.credit_from_plasma_metadata(metadata) == prepare_data.Credit("LGPL-3.0", "Risto Saukonpää")


def test_credits_markdown_groups_by_licence_and_flags_attribution(prepare_data):
    row = dict.fromkeys(prepare_data.MANIFEST_FIELDS, "")
    rows = [
        {**row, "file": "train/a.jpg", "licence": "CC0-1.0", "credit": "Alice"},
        {**row, "file": "train/b.jpg", "licence": "CC-BY-SA-4.0", "credit": "Bob", "source_url": "https://x/b"},
        {**row, "file": "holdout/c.jpg", "licence": "CC-BY-SA-4.0", "credit": "Carol"},
    ]
    text = prepare_data.credits_markdown(rows)
    by_sa = text.index("## CC-BY-SA-4.0 (2 photos; attribution required)")
    cc0 = text.index("## CC0-1.0 (1 photo; no attribution required)")
    assert by_sa < text.index("`holdout/c.jpg`: Carol") < text.index("`train/b.jpg`: Bob, <https://x/b>") < cc0
    assert text.index("`train/a.jpg`: Alice") > cc0


def test_missing_dpkg_is_one_line_and_exit_status_1(prepare_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_data.shutil, "which", lambda _: None)
    with pytest.raises(SystemExit) as exit_info:
        prepare_data.main(["--out_dir", str(tmp_path / "out"), "--deb_dir", str(tmp_path / "debs")])
    message = str(exit_info.value.code)
    assert message.startswith("error: dpkg is not installed") and "\n" not in message
    assert not (tmp_path / "out").exists()  # nothing written before the tools are checked


def test_opencv_doc_is_never_fetched(prepare_data, tmp_path):
    with pytest.raises(prepare_data.PrepareError, match="reserved for independent evaluation"):
        prepare_data.fetch_packages(["mate-backgrounds", "opencv-doc"], tmp_path, tmp_path)
