"""weights/last.safetensors + weights/last_state.pt: the pair exact resume needs, replaced as one.

Two files cannot be renamed in one step, so a save never overwrites the current pair first. It writes the new
pair beside it (last.next.safetensors, last_state.next.pt), commits it by atomically writing last.json, which
names the new pair, moves the pair into place and removes last.json. So at every instant one complete pair is
current: without last.json (also every run written before it existed) the fixed names, with it the pair it
names, at its pending name or, once moved, at its fixed name. A crash or a full disk before the commit leaves
the previous pair; `recover` finishes a switch a crash cut short and removes what a crash left behind.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from detector.fileio import atomic_write_text

WEIGHTS, STATE, POINTER = "last.safetensors", "last_state.pt", "last.json"
PENDING = {WEIGHTS: "last.next.safetensors", STATE: "last_state.next.pt"}


def has_checkpoint(weights_dir: Path) -> bool:
    """A saved pair exists (possibly still to be moved into place by `recover`)."""
    return (weights_dir / STATE).is_file() or (weights_dir / POINTER).is_file()


def save_pair(weights_dir: Path, write_weights: Callable[[Path], object], write_state: Callable[[Path], object],
              state_id: str) -> None:
    """Write the new pair with each writer (each must write atomically) and switch to it as one step."""
    pending = [weights_dir / PENDING[WEIGHTS], weights_dir / PENDING[STATE]]
    pointer = weights_dir / POINTER
    try:
        write_weights(pending[0])
        write_state(pending[1])
        atomic_write_text(pointer, json.dumps({"weights": pending[0].name, "state": pending[1].name,
                                               "state_id": state_id}) + "\n")  # the commit
    except BaseException:
        if not pointer.exists():  # not committed: the previous pair stays current; free the space
            for path in pending:
                path.unlink(missing_ok=True)
        raise
    _fsync_dir(weights_dir)
    _move_into_place(weights_dir)


def recover(folders: list[Path]) -> list[str]:
    """Finish an interrupted switch in the weights folder (folders[0]) and delete temp files a crash left in
    `folders`; returns one line per thing done, for the log."""
    weights_dir, done = folders[0], []
    if (weights_dir / POINTER).is_file():
        _move_into_place(weights_dir)
        done.append(f"finished moving the checkpoint pair saved just before a crash into {weights_dir}")
    stale = [weights_dir / name for name in PENDING.values()]  # written, never committed
    stale += [path for folder in folders for path in sorted(folder.glob(".*.tmp"))]  # atomic_write's temp files
    for path in stale:
        if path.is_file():
            path.unlink()
            done.append(f"removed {path}, left by a save that a crash or a full disk interrupted")
    return done


def _move_into_place(weights_dir: Path) -> None:
    """Idempotent: safe to redo after a crash at any point inside it."""
    for final, pending in PENDING.items():
        if (weights_dir / pending).exists():
            os.replace(weights_dir / pending, weights_dir / final)
    _fsync_dir(weights_dir)
    (weights_dir / POINTER).unlink(missing_ok=True)
    _fsync_dir(weights_dir)


def _fsync_dir(folder: Path) -> None:
    """Make renames durable in order (a power cut must not reorder the commit and the moves)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; renames there are still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
