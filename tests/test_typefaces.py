"""The vendored typeface library: where faces come from, what travels with them, how they are split."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.synth import render_sample
from training.synth.fonts import (
    DISTRACTOR_LETTERS,
    HERSHEY_FACES,
    MANIFEST,
    TYPEFACE_DIR,
    all_typefaces,
    draws_digits,
    font_search_paths,
    manifest,
)
from training.synth.styles import TYPEFACE_GROUP_WEIGHTS, heldout_families, typeface_share, typefaces
from training.synth.vendor_typefaces import ALLOWED_LICENCES, CATEGORIES, CHARS, DEFAULT_LIST, read_list

REPO = Path(__file__).resolve().parents[1]


def test_typefaces_come_only_from_the_vendored_folder_and_opencv() -> None:
    files = {TYPEFACE_DIR / row["file"] for row in manifest()}
    faces = all_typefaces()
    for face in faces:
        if face.group == "hershey":
            assert face.source in HERSHEY_FACES and face.name == f"Hershey-{face.source}"
        else:
            assert Path(face.source) in files, face
    assert font_search_paths() == [str(TYPEFACE_DIR)]
    assert len(faces) == len(HERSHEY_FACES) + len(files)
    assert len({f.family for f in faces}) >= 300


def test_every_manifest_entry_is_licensed_attributed_sourced_and_intact() -> None:
    doc = json.loads(MANIFEST.read_text())
    assert doc["characters"] == CHARS
    rows = doc["files"]
    for row in rows:
        where = row["file"]
        assert row["licence"] in ALLOWED_LICENCES, where
        assert (TYPEFACE_DIR / "LICENSES" / ALLOWED_LICENCES[row["licence"]]).stat().st_size > 1000, where
        assert len(row["copyright"]) > 5 and row["family"] and row["style"], where
        assert row["source"].startswith(("@fontsource/", "deb:fonts-")) and row["version"], where
        assert row["category"] in CATEGORIES, where
        assert hashlib.sha256((TYPEFACE_DIR / where).read_bytes()).hexdigest() == row["sha256"], where
    on_disk = {p.name for p in TYPEFACE_DIR.iterdir() if p.is_file()} - {MANIFEST.name}
    assert on_disk == {row["file"] for row in rows}  # nothing unlisted, nothing missing
    assert len({row["family"] for row in rows}) >= 300
    assert max(sum(1 for r in rows if r["family"] == f) for f in {r["family"] for r in rows}) <= 2
    size = sum(p.stat().st_size for p in TYPEFACE_DIR.rglob("*") if p.is_file())
    assert size < 6e6, f"{size / 1e6:.1f} MB"


def test_every_face_passes_the_glyph_checks_here_too() -> None:
    """The checks ran when the library was vendored; this machine's FreeType must agree, or faces would differ."""
    for face in all_typefaces():
        assert draws_digits(face), face
    for row in manifest():  # the distractor letters are there too (drawing them all would double the time)
        assert not set(DISTRACTOR_LETTERS) & set(row["missing"]), row["file"]


def test_heldout_share_holds_out_whole_families_in_every_category() -> None:
    faces = all_typefaces()
    by_family: dict[str, set[str]] = {}
    for face in faces:
        by_family.setdefault(face.family, set()).add(typeface_share(face.name))
    assert all(len(shares) == 1 for shares in by_family.values())
    held = heldout_families()
    share = len(held & set(by_family)) / len(by_family)
    assert 0.2 <= share <= 0.3, share
    for name in ("train", "heldout"):
        groups = {f.group for f in typefaces(name)[0]}
        assert groups == set(TYPEFACE_GROUP_WEIGHTS) == set(CATEGORIES) | {"hershey"}, name
    _, p = typefaces("all")
    groups = np.array([f.group for f in typefaces("all")[0]])
    for group, weight in TYPEFACE_GROUP_WEIGHTS.items():
        assert p[groups == group].sum() == pytest.approx(weight / sum(TYPEFACE_GROUP_WEIGHTS.values()))


_RENDER = ("import hashlib, numpy as np; from training.synth import render_sample; "
           "img, boxes, cats, meta = render_sample(np.random.default_rng({seed})); "
           "print(hashlib.sha256(img.tobytes()).hexdigest(), meta['typeface'])")


def test_same_seed_renders_the_same_image_in_this_process_and_a_fresh_one() -> None:
    for seed in (21, 22):
        first, again = render_sample(np.random.default_rng(seed)), render_sample(np.random.default_rng(seed))
        assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
        assert first[3] == again[3]
    done = subprocess.run([sys.executable, "-c", _RENDER.format(seed=21)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256(render_sample(np.random.default_rng(21))[0].tobytes()).hexdigest()
    assert done.stdout.split() == [digest, render_sample(np.random.default_rng(21))[3]["typeface"]]


def test_the_committed_list_is_what_was_vendored(tmp_path: Path) -> None:
    entries = read_list(DEFAULT_LIST)
    vendored = {row["source"] for row in manifest()}
    assert vendored <= {e.source for e in entries}
    for row in manifest():
        entry = next(e for e in entries if e.source == row["source"])
        assert row["category"] == entry.category, row["file"]
    bad = tmp_path / "list.txt"
    bad.write_text("@fontsource/oswald gothic\n")
    with pytest.raises(SystemExit, match="category"):
        read_list(bad)
