"""Take the README's picture of the Annotation review tab: `python docs/screenshot_review.py [--out docs/review_tab.png]`.

Starts the app on the shipped model and a copy of the shipped validation set (so no review decision lands in
assets/), opens the tab in Debian's headless Chromium with Playwright, shows the first unlabelled-digit
suggestion and saves the tab down to its keys help as a 256-colour PNG (under 300 KB).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parent.parent


def take(out: Path) -> Path:
    from playwright.sync_api import sync_playwright

    import app
    from detector.checkpoint import DEFAULT_CHECKPOINT
    from studio.paths import DEFAULT_DATA
    from studio.session import Studio

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        shutil.copytree(DEFAULT_DATA / "valid", data / "valid")
        shutil.copy(DEFAULT_DATA / "valid.json", data / "valid.json")
        studio = Studio(DEFAULT_CHECKPOINT, data, device="cpu", disk_cache=False)
        demo = app.build_demo(studio)
        app.launch(demo, studio, port=None, prevent_thread_lock=True, quiet=True)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(demo.local_url)
                page.get_by_role("tab", name="Annotation review").click()
                page.locator("#review-find").click()
                page.locator('#review-list [data-testid="cell-0-1"]').wait_for(timeout=300_000)
                kinds = [page.locator(f'#review-list [data-testid="cell-{i}-3"]') for i in range(50)]  # the kind
                row = next((i for i, cell in enumerate(kinds) if cell.count() and "unlabelled" in cell.inner_text()), 0)
                page.locator(f'#review-list [data-testid="cell-{row}-1"]').click()
                page.wait_for_function("() => document.querySelector('#review-current textarea, "
                                       "#review-current input').value", timeout=60_000)
                page.locator("#review-editor canvas").wait_for(timeout=60_000)
                page.wait_for_timeout(2000)  # the picture loads and the loading shade fades
                shot = Path(tmp) / "tab.png"
                tab = page.locator("#tab-review").bounding_box()
                bottom = max(page.locator(f"#{e}").bounding_box()["y"] + page.locator(f"#{e}").bounding_box()["height"]
                             for e in ("review-editor", "review-keys"))  # the empty download box below is left out
                page.screenshot(path=str(shot), full_page=True, clip={"x": tab["x"], "y": tab["y"], "width": tab["width"],
                                                                      "height": bottom + 12 - tab["y"]})
                browser.close()
        finally:
            demo.close()
        Image.open(shot).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "review_tab.png")
    out = take(p.parse_args().out)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
