"""One app-owned temp folder for the files handlers hand to gradio (COCO JSON, corrected annotations).

Gradio copies a returned file into its own cache (which the app cleans with `delete_cache`), so ours are needed
only for a moment. A folder per call (`tempfile.mkdtemp`) is never removed: 662 of them after 580 Detect calls.
Here every file goes into one folder, in a subfolder named by its content (the same answer reuses it), only the
newest `keep` are kept, and the folder is removed when the process exits.
"""
from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from pathlib import Path

from detector.fileio import atomic_write

KEEP_FILES = 32


class TempFiles:
    def __init__(self, keep: int = KEEP_FILES, prefix: str = "studio-files-") -> None:
        self.keep = keep
        self.prefix = prefix
        self._folder: Path | None = None
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        if self._folder is None or not self._folder.is_dir():
            self._folder = Path(tempfile.mkdtemp(prefix=self.prefix))
            atexit.register(shutil.rmtree, self._folder, ignore_errors=True)
        return self._folder

    def files(self) -> list[Path]:
        return [p for p in self.folder.glob("*/*") if p.is_file()]

    def write_bytes(self, name: str, data: bytes) -> Path:
        """`name` under this folder (the name the user downloads), holding `data`; prunes the oldest."""
        with self._lock:
            slot = self.folder / hashlib.sha256(name.encode() + b"\0" + data).hexdigest()[:16]
            slot.mkdir(exist_ok=True)
            path = slot / name
            if not path.is_file():
                atomic_write(path, lambda tmp: tmp.write_bytes(data))
            path.touch()  # newest, whether just written or reused
            self._prune()
            return path

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    def copy(self, source: Path) -> Path:
        return self.write_bytes(Path(source).name, Path(source).read_bytes())

    def _prune(self) -> None:
        slots = sorted((p for p in self.folder.iterdir() if p.is_dir()),
                       key=lambda p: max((f.stat().st_mtime_ns for f in p.iterdir()), default=0), reverse=True)
        for old in slots[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)


TEMP = TempFiles()  # one per process: every tab and browser session writes here
