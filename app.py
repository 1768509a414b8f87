"""House-number digit detector studio: `python app.py [--checkpoint CKPT] [--data DATA] [--device cpu]`.

Starts on the shipped model (assets/default.safetensors) and validation set (assets/valid.json +
assets/valid/); when either is missing the app still starts and says what is missing and how to fix it.
The logic lives in the `studio` package; this file only parses arguments and lays out the tabs.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home (and no network here)

if TYPE_CHECKING:  # gradio and torch take ~10 s to import: only serving needs them, not `--help`
    import gradio as gr

    from studio.session import Studio

SHIPPED_CHECKPOINT = "assets/default.safetensors"  # for --help only; the real default is detector.checkpoint's
SHIPPED_DATA = "assets"
TITLE = "House-number digit detector studio"
CONCURRENCY = 2
MAX_UPLOAD = "64mb"  # larger uploads are refused by gradio before they reach our code
DELETE_CACHE = (900, 3600)  # every 15 min gradio deletes its cached uploads/outputs older than 1 h (and at exit)
STATE_SESSIONS = 1000  # browser sessions whose gr.State gradio keeps (least recently used go first)
CSS = """
.number-row {display: flex; flex-wrap: wrap; gap: 18px;}
.number-read {padding: 6px 14px; border-radius: 8px; background: var(--block-background-fill);
              border: 1px solid var(--border-color-primary);}
.number-file {font-size: 0.85em; opacity: 0.7;}
.number-digits {font-size: 3.2em; font-weight: 800; letter-spacing: 0.08em; line-height: 1.1;
                 overflow-wrap: anywhere;}
.number-detail {font-size: 0.8em; opacity: 0.7;}
/* the failure gallery keeps its 6 columns (studio.ui_validation.GALLERY_COLUMNS): gradio widens fewer thumbnails
   to fill the row, and a lone one (one confusion cell's image) then shows as a blank strip */
#failure-gallery .grid-container {grid-template-columns: repeat(6, minmax(100px, 1fr)) !important;}
"""


def build_demo(studio: Studio) -> gr.Blocks:
    import gradio as gr

    from studio.review_views import ReviewViews
    from studio.ui_about import build_about_tab
    from studio.ui_controls import threshold_controls
    from studio.ui_detect import build_detect_tab
    from studio.ui_review import build_review_tab
    from studio.ui_validation import build_validation_tab
    from studio.validation import ValidationViews

    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(f"## {TITLE}")
        gr.Markdown(studio.status_markdown(), elem_id="status")
        controls = threshold_controls(studio.default_thresholds())
        with gr.Tabs():
            with gr.Tab("Detect", id="detect", elem_id="tab-detect"):
                build_detect_tab(studio, controls)
            with gr.Tab("Validation & failures", id="validation", elem_id="tab-validation") as validation_tab:
                build_validation_tab(studio, controls, ValidationViews(studio), validation_tab)
            with gr.Tab("Annotation review", id="review", elem_id="tab-review"):
                build_review_tab(studio, ReviewViews(studio))
            with gr.Tab("Model & data", id="about", elem_id="tab-about"):
                build_about_tab(studio)
    demo.queue(default_concurrency_limit=CONCURRENCY)
    return demo


def launch(demo: gr.Blocks, studio: Studio, host: str = "127.0.0.1", port: int | None = None,
           prevent_thread_lock: bool = False, quiet: bool = False):
    """Serve the demo; only the samples and validation images may be served as files."""
    from studio.ui_review import REVIEW_KEYS_HEAD

    allowed = [str(p) for p in (studio.samples_dir, studio.image_dir) if p.is_dir()]
    return demo.launch(server_name=host, server_port=port, prevent_thread_lock=prevent_thread_lock, quiet=quiet,
                       allowed_paths=allowed, ssr_mode=False, css=CSS, head=REVIEW_KEYS_HEAD, show_error=True,
                       footer_links=["api"], max_file_size=MAX_UPLOAD, state_session_capacity=STATE_SESSIONS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=f"{TITLE}: a Gradio app for the digit detector.")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help=f"model checkpoint (.safetensors; default: the shipped model, {SHIPPED_CHECKPOINT})")
    p.add_argument("--data", type=Path, default=None,
                   help="HW2 data folder: uses DATA/valid.json and DATA/valid/ "
                        f"(default: the shipped set in {SHIPPED_DATA}/)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for the network)")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--no-disk-cache", action="store_true", help="do not keep validation predictions on disk")
    return p.parse_args(argv)


def serve(args: argparse.Namespace, prevent_thread_lock: bool = False) -> gr.Blocks:
    """Load model and data once, report what is missing on the console too, and serve the UI."""
    from studio.session import Studio

    studio = Studio(args.checkpoint, args.data, device=args.device, disk_cache=not args.no_disk_cache)
    for line in studio.status_markdown().split("  \n"):
        print(line.replace("**", "").replace("`", ""), flush=True)
    demo = build_demo(studio)
    launch(demo, studio, host=args.host, port=args.port, prevent_thread_lock=prevent_thread_lock)
    return demo


def main(argv: list[str] | None = None) -> None:
    serve(parse_args(argv))


if __name__ == "__main__":
    main()
