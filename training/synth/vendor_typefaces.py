"""Rebuild the vendored typeface library (training/synth/typefaces/) from the family list.

    python -m training.synth.vendor_typefaces [--list training/synth/typefaces.txt] [--out training/synth/typefaces]

Why vendored: typefaces found on the machine made the same seed draw different data on different machines.
This script is the only part that needs the network (the npm registry for @fontsource packages, Debian's
archive for deb: entries) and fontTools; the generator only reads the .ttf files with Pillow.

Each family becomes one or two small TrueType files subset to the characters the generator draws, with
hinting and layout tables dropped (glyphs are rasterised large and resized) and the lining figures made the
default where the font has an `lnum` feature. The manifest records, per file, what the licences require to
travel with it (copyright line, licence id) and where it came from (package, version, sha256).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_LIST = HERE / "typefaces.txt"
DEFAULT_OUT = HERE / "typefaces"
CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz -."
ALLOWED_LICENCES = {"OFL-1.1": "OFL-1.1.txt", "Apache-2.0": "Apache-2.0.txt", "UFL-1.0": "UFL-1.0.txt"}
# how each licence names itself in a licence file, a Debian copyright file or a font's licence records
LICENCE_MARKERS = {"OFL-1.1": ("SIL Open Font License", "SIL OPEN FONT LICENSE", "OFL-1.1", "scripts.sil.org/OFL",
                               "openfontlicense.org"),
                   "Apache-2.0": ("Apache License", "Apache-2.0", "apache.org/licenses/LICENSE-2.0"),
                   "UFL-1.0": ("Ubuntu Font Licence", "UBUNTU FONT LICENCE", "UFL-1.0", "font.ubuntu.com/ufl")}
LICENCE_HEADINGS = {"OFL-1.1": "SIL OPEN FONT LICENSE", "Apache-2.0": "Apache License",
                    "UFL-1.0": "UBUNTU FONT LICENCE"}
CATEGORIES = ("sans", "condensed", "serif", "slab", "rounded", "display", "stencil", "script", "handwriting",
              "mono")
STYLE_NAMES = {100: "Thin", 200: "ExtraLight", 300: "Light", 400: "Regular", 500: "Medium", 600: "SemiBold",
               700: "Bold", 800: "ExtraBold", 900: "Black"}


@dataclass(frozen=True)
class Entry:
    source: str  # "@fontsource/<id>" or "deb:<package>:<file name>"
    category: str
    weights: tuple[int, ...]


def read_list(path: Path) -> list[Entry]:
    entries, seen = [], set()
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (2, 3) or fields[1] not in CATEGORIES:
            raise SystemExit(f"{path}:{n}: expected '<source> <category> [weights]' with a category in "
                             f"{CATEGORIES}, got {line!r}")
        if fields[0] in seen:
            raise SystemExit(f"{path}:{n}: {fields[0]} is listed twice; keep one line")
        seen.add(fields[0])
        weights = tuple(int(w) for w in fields[2].split(",")) if len(fields) == 3 else (400,)
        entries.append(Entry(fields[0], fields[1], weights))
    return entries


@dataclass
class Fetched:
    family: str
    licence: str
    copyright: str
    version: str
    licence_text: str
    fonts: dict[int, bytes]  # weight -> font file bytes (any format fontTools reads)


def _run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
    return done.stdout


def fetch_fontsource(name: str, weights: tuple[int, ...], tmp: Path) -> Fetched:
    out = _run(["npm", "pack", "--silent", name, "--pack-destination", str(tmp)], tmp)
    tgz = tmp / out.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        def read(member: str) -> bytes:
            f = tar.extractfile(f"package/{member}")
            assert f is not None
            return f.read()
        meta = json.loads(read("metadata.json"))
        version = json.loads(read("package.json"))["version"]
        names = set(tar.getnames())
        available = [w for w in meta["weights"] if "normal" in meta["styles"]]
        fonts = {}
        for want in weights:
            w = min(available, key=lambda a: (abs(a - want), a))
            stem = f"files/{meta.get('id') or meta['fontId']}-{meta.get('defSubset', 'latin')}-{w}-normal"
            member = next((f"{stem}.{ext}" for ext in ("woff", "woff2") if f"package/{stem}.{ext}" in names), None)
            if member is None:
                raise RuntimeError(f"{name} has no {w} normal font file in its default subset")
            fonts[w] = read(member)
        # some packages carry no LICENSE file: then the font's own licence record (name ids 13, 14) must say it
        licence_text = (read("LICENSE").decode("utf-8", "replace") if "package/LICENSE" in names
                        else _licence_record(next(iter(fonts.values()))))
    # older packages name the licence only by a URL: then the licence text says which it is
    licence = meta["license"]
    declared = licence["type"] if isinstance(licence, dict) else _licence_named_in(licence_text)
    attribution = licence.get("attribution", "") if isinstance(licence, dict) else ""
    return Fetched(family=meta.get("family") or meta["fontName"], licence=declared, copyright=attribution.strip(),
                   version=version, licence_text=licence_text, fonts=fonts)


def _licence_named_in(text: str) -> str:
    """The one allowed licence a licence text or Debian copyright file names, or why there is not one."""
    found = [lic for lic, marks in LICENCE_MARKERS.items() if any(m in text for m in marks)]
    return found[0] if len(found) == 1 else f"not one allowed licence named in its licence text (found {found})"


def fetch_debian(source: str, tmp: Path) -> Fetched:
    _, package, filename = source.split(":", 2)
    _run(["apt-get", "download", "-q", package], tmp)
    deb = next(tmp.glob(f"{package}_*.deb"))
    root = tmp / "x"
    _run(["dpkg-deb", "-x", str(deb), str(root)], tmp)
    font = next(root.rglob(filename), None)
    if font is None:
        raise RuntimeError(f"{package} has no file {filename}")
    copyright_file = root / "usr/share/doc" / package / "copyright"
    text = copyright_file.read_text("utf-8", "replace") if copyright_file.exists() else ""
    licence = _licence_named_in(text)  # DEP-5 files may name several: exactly one allowed licence is required
    version = deb.name.split("_")[1]
    return Fetched(family="", licence=licence, copyright="", version=version, licence_text=text,
                   fonts={400: font.read_bytes()})


def _use_lining_figures(font) -> None:
    """Point the digits' cmap entries at the `lnum` substitutes: old-style figures do not look like house numbers."""
    if "GSUB" not in font:
        return
    table = font["GSUB"].table
    if table.FeatureList is None or table.LookupList is None:
        return
    lookups = {i for rec in table.FeatureList.FeatureRecord if rec.FeatureTag == "lnum"
               for i in rec.Feature.LookupListIndex}
    mapping: dict[str, str] = {}
    for i in sorted(lookups):
        lookup = table.LookupList.Lookup[i]
        for sub in lookup.SubTable:
            sub = getattr(sub, "ExtSubTable", sub)
            mapping.update(getattr(sub, "mapping", None) or {})
    if not mapping:
        return
    for cmap in font["cmap"].tables:
        for d in "0123456789":
            g = cmap.cmap.get(ord(d))
            if g in mapping:
                cmap.cmap[ord(d)] = mapping[g]


def subset(data: bytes) -> bytes:
    from fontTools import subset as ft_subset
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(data), recalcTimestamp=False)
    font.flavor = None
    _use_lining_figures(font)
    options = ft_subset.Options()
    options.hinting = False
    options.layout_features = []
    options.notdef_outline = True
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]  # copyright, names, licence description and URL
    options.drop_tables += ["DSIG", "GPOS", "GSUB", "GDEF", "STAT", "MVAR", "HVAR", "VVAR"]
    sub = ft_subset.Subsetter(options)
    sub.populate(unicodes=[ord(c) for c in CHARS])
    sub.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def _font_names(data: bytes) -> tuple[str, str, str]:
    """Family name, copyright notice, and the characters of CHARS the font does not have."""
    from fontTools.ttLib import TTFont

    font = TTFont(io.BytesIO(data))
    name = font["name"]
    family = name.getDebugName(16) or name.getDebugName(1) or ""
    cmap = font.getBestCmap()
    missing = "".join(c for c in CHARS if ord(c) not in cmap)
    return family, (name.getDebugName(0) or "").strip(), missing


# house-number sizes (real digits: median 29 px tall) at sub-pixel offsets, as the generator places them
SMALL_BOXES = ((3.7, 2.2, 15.0, 30.0), (10.3, 5.6, 21.0, 40.0))
MAX_INK_LOSS_PX = 3.0


def _ink_loss(mask, box: tuple[float, float, float, float]) -> float:
    """How far the placed ink (coverage >= 0.5) falls short of the box it was scaled to, in pixels."""
    import numpy as np

    from training.synth.render import place_glyph

    x, y, w, h = box
    patch, ox, oy = place_glyph(mask, x, y, w, h)
    ys, xs = np.nonzero(patch > 0.5)
    if len(xs) == 0:
        return max(w, h)
    return max(xs.min() + ox - x, x + w - (xs.max() + ox + 1), ys.min() + oy - y, y + h - (ys.max() + oy + 1))


def _check_draws(file: str, data: bytes, missing: str) -> None:
    """Vendor only faces the generator can use: every digit and distractor letter, ten distinct equal-height
    digits (no old-style figures), and strokes that still read at house-number size (no vanishing hairlines)."""
    from training.synth.fonts import DIGITS, DISTRACTOR_LETTERS, Typeface, draws_digits, face_glyph

    lacking = "".join(c for c in DIGITS + DISTRACTOR_LETTERS if c in missing)
    if lacking:
        raise RuntimeError(f"{file} has no glyph for {lacking!r}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file
        path.write_bytes(data)
        face = Typeface(f"vendoring:{file}", "any", str(path))
        if not draws_digits(face):
            raise RuntimeError(f"{file} fails the generator's digit checks (old-style or uneven figures)")
        masks = [face_glyph(face, d) for d in DIGITS]
        loss = max(_ink_loss(m, box) for m in masks for box in SMALL_BOXES)
        if loss > MAX_INK_LOSS_PX:
            raise RuntimeError(f"{file}: hairlines vanish at house-number size (ink {loss:.1f} px short of its box)")
        native = max(_ink_loss(m, (10.3, 5.6, m.shape[1], m.shape[0])) for m in masks)
        if native > 1.5:  # at its own size a glyph only loses sub-pixel fringes
            raise RuntimeError(f"{file}: strokes break up when resampled (ink {native:.1f} px short of its box)")


def _licence_record(data: bytes) -> str:
    from fontTools.ttLib import TTFont

    name = TTFont(io.BytesIO(data))["name"]
    return "\n".join(name.getDebugName(i) or "" for i in (13, 14))


def _is_cff(data: bytes) -> bool:
    return data[:4] == b"OTTO"


def _file_stem(family: str, weight: int) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "", family) + "-" + STYLE_NAMES.get(weight, f"W{weight}")


def vendor_one(entry: Entry) -> tuple[list[dict], dict[str, bytes], str]:
    """(manifest rows, file name -> bytes, licence text) for one family; raises on anything not allowed."""
    with tempfile.TemporaryDirectory() as tmp:
        if entry.source.startswith("deb:"):
            got = fetch_debian(entry.source, Path(tmp))
        else:
            got = fetch_fontsource(entry.source, entry.weights, Path(tmp))
    if got.licence not in ALLOWED_LICENCES:
        raise RuntimeError(f"licence {got.licence!r} is not one of {sorted(ALLOWED_LICENCES)}; drop it from the list")
    if _licence_named_in(got.licence_text) != got.licence:
        # metadata can be wrong (fontsource labels DejaVu's Bitstream Vera licence OFL): the text decides
        raise RuntimeError(f"declared {got.licence} but its licence text does not name that licence alone; "
                           "drop it from the list")
    rows, files = [], {}
    for weight, data in sorted(got.fonts.items()):
        small = subset(data)
        family, font_copyright, missing = _font_names(small)
        family = got.family or family
        copyright_line = " ".join((got.copyright or font_copyright).split())
        if not copyright_line:
            raise RuntimeError("no copyright line in the package metadata or the font")
        file = _file_stem(family, weight) + (".otf" if _is_cff(small) else ".ttf")
        _check_draws(file, small, missing)
        files[file] = small
        rows.append({"file": file, "family": family, "style": STYLE_NAMES.get(weight, f"W{weight}"),
                     "weight": weight, "category": entry.category, "licence": got.licence,
                     "missing": missing, "copyright": copyright_line, "source": entry.source, "version": got.version,
                     "sha256": hashlib.sha256(small).hexdigest()})
    return rows, files, got.licence_text


def write_manifest(path: Path, rows: list[dict]) -> None:
    doc = {"about": "Typefaces vendored by training/synth/vendor_typefaces.py from training/synth/typefaces.txt; "
                    "subset to the characters the generator draws. Each file keeps its licence: see licence, "
                    "copyright and LICENSES/.",
           "characters": CHARS, "files": []}
    lines = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows)  # one line per file: small diffs
    path.write_text(json.dumps(doc, ensure_ascii=False).replace('"files": []', '"files": [\n' + lines + '\n]') + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", type=Path, default=DEFAULT_LIST)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--jobs", type=int, default=6, help="downloads in parallel")
    args = ap.parse_args(argv)
    for tool in ("npm", "apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            print(f"warning: {tool} not found; entries that need it will fail", file=sys.stderr)
    entries = read_list(args.list)
    fresh = args.out.with_name(args.out.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    (fresh / "LICENSES").mkdir(parents=True)
    manifest, failed = [], []
    licence_texts: dict[str, str] = {}  # licence id -> its text, from the first package that carries it
    with ThreadPoolExecutor(args.jobs) as pool:
        results = pool.map(lambda e: (e, _try(vendor_one, e)), entries)
        for entry, (result, error) in results:
            if error:
                failed.append(f"{entry.source}: {error}")
                print(f"skipped {entry.source}: {error}", file=sys.stderr)
                continue
            rows, files, text = result
            heading = LICENCE_HEADINGS[rows[0]["licence"]]
            if heading in text and rows[0]["licence"] not in licence_texts and entry.source.startswith("@"):
                licence_texts[rows[0]["licence"]] = text[text.index(heading):].strip() + "\n"
            for name, data in files.items():
                if (fresh / name).exists():
                    failed.append(f"{entry.source}: {name} already written by another entry")
                    break
                (fresh / name).write_bytes(data)
            else:
                manifest += rows
    for licence, file in ALLOWED_LICENCES.items():
        text = licence_texts.get(licence)
        if text is None:
            failed.append(f"no family carried the {licence} text; LICENSES/{file} is missing")
        else:
            (fresh / "LICENSES" / file).write_text(text)
    manifest.sort(key=lambda r: r["file"])
    write_manifest(fresh / "manifest.json", manifest)
    shutil.rmtree(args.out, ignore_errors=True)
    fresh.rename(args.out)
    families = {r["family"] for r in manifest}
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(families)} families, {len(manifest)} files, {size / 1e6:.2f} MB in {args.out}; "
          f"{len(failed)} entries skipped")
    for line in failed:
        print("  " + line)
    return 0


def _try(fn, *args):
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001 - reported per entry, the rest of the list still vendors
        return None, f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    raise SystemExit(main())
