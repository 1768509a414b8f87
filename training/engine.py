"""One training epoch (the shape of torchvision's references/detection/engine.py), with a clean stop.

Every step ends at a boundary where the run can be saved and resumed exactly: the stop request (Ctrl-C)
is only acted on after the optimiser step, and one all-reduce per step agrees across DDP ranks on
"stop" and "loss not finite or exploded", so all ranks leave together.
"""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from detector.fileio import nonfinite_tensors
from training.data import BadImageLog
from training.distributed import DistInfo, any_flags

# Faster R-CNN's summed losses are O(1) (a fresh head starts near 4); a loss this high means the weights have
# already diverged, and the next step typically turns them NaN, so it stops the run like a NaN does
EXPLODED_LOSS = 1e4
LOWER_LR = ("Lower lr (a new run: resume keeps the recipe), add warmup_iters or grad_clip; "
            "weights=RUN/weights/best.safetensors starts it from the best good epoch.")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf or exploded; the message names the epoch and step. Nothing is saved after it."""


class NonFiniteWeightsError(NonFiniteLossError):
    """The weights hold NaN/inf (a finite loss's step can still overflow them); they are never saved."""


def check_finite_weights(model: torch.nn.Module, where: str, lr: float) -> None:
    """Raise NonFiniteWeightsError if any floating parameter or buffer holds NaN/inf; run before every save."""
    state = model.state_dict()  # parameters and buffers
    bad = nonfinite_tensors(state)
    if bad:
        raise NonFiniteWeightsError(
            f"the weights became non-finite {where} ({len(bad)} of {len(state)} tensors hold NaN/inf, e.g. "
            f"{bad[0]}; lr={lr:.3g}). Training stopped without saving them; the checkpoints from earlier epochs "
            f"are untouched. {LOWER_LR}")


class StopRequest:
    """First Ctrl-C (or SIGTERM) asks the loop to stop at the next step boundary; a second one kills."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # the next one is not gentle

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a notebook worker): no handler
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class EpochMeter:
    """Loss sums, steps, images and seconds of one epoch; saved mid-epoch so a resumed epoch reports it whole."""

    sums: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    images: int = 0
    seconds: float = 0.0

    def add(self, losses: dict[str, float], images: int) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1
        self.images += images

    def to_state(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "steps": self.steps, "images": self.images, "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EpochMeter:
        return cls(dict(state["sums"]), int(state["steps"]), int(state["images"]), float(state["seconds"]))


def warmup_factor(step: int, warmup_iters: int, start_factor: float = 1e-3) -> float:
    """torchvision references' linear warm-up: from start_factor to 1 over warmup_iters steps."""
    if step >= warmup_iters:
        return 1.0
    alpha = step / warmup_iters
    return start_factor * (1 - alpha) + alpha


@dataclass(frozen=True)
class StepContext:
    """What every step of a run trains with; fixed for the run, so train_one_epoch takes only the epoch and meter."""

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for float32
    warmup_iters: int  # linear warm-up over the first steps of epoch 1
    grad_clip: float  # max gradient norm, 0 = off
    epochs: int  # for the progress bar
    stop: StopRequest
    info: DistInfo
    bad_images: BadImageLog
    progress: bool


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, context: StepContext, *, epoch: int,
                    meter: EpochMeter) -> bool:
    """Train from step `meter.steps` of 0-based `epoch` to its end; False when stopped early by request."""
    c = context
    optimizer, device, info = c.optimizer, c.device, c.info
    model.train()
    scheduled = [group["lr"] for group in optimizer.param_groups]  # this epoch's lr from the scheduler
    planned = meter.steps + len(loader)  # a resumed epoch's loader holds only its remaining steps
    warmup = min(c.warmup_iters, planned) if epoch == 0 else 0
    params = [p for group in optimizer.param_groups for p in group["params"]]
    bar = tqdm(total=planned, initial=meter.steps, desc=f"epoch {epoch + 1}/{c.epochs}",
               unit="step", disable=not (c.progress and info.is_main), dynamic_ncols=True, leave=False)
    completed = True
    started = time.perf_counter()
    try:
        for images, targets, bad in loader:
            c.bad_images.report(bad)
            if meter.steps < warmup:
                factor = warmup_factor(meter.steps, warmup)
                for group, lr in zip(optimizer.param_groups, scheduled, strict=False):
                    group["lr"] = lr * factor
            images = [image.to(device, non_blocking=True) for image in images]
            targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, dtype=c.amp_dtype or torch.float32, enabled=c.amp_dtype is not None):
                loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
            optimizer.zero_grad(set_to_none=True)
            c.scaler.scale(loss).backward()
            if c.grad_clip > 0:
                c.scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
            c.scaler.step(optimizer)
            c.scaler.update()

            values = {k: float(v.detach()) for k, v in loss_dict.items()}
            total = sum(values.values())
            bad_loss, stop_now = any_flags(info, [not math.isfinite(total) or total > EXPLODED_LOSS, c.stop.requested],
                                           device)
            if bad_loss:
                parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                what = "is not finite" if not math.isfinite(total) else f"exploded (above {EXPLODED_LOSS:g})"
                raise NonFiniteLossError(
                    f"loss {what} at epoch {epoch + 1}, step {meter.steps + 1} of {planned}"
                    f" (loss={total:.4g}: {parts}, lr={optimizer.param_groups[0]['lr']:.3g}). Training stopped; "
                    f"the checkpoints from earlier epochs are untouched. {LOWER_LR}")
            meter.add({"loss": total, **values}, len(images) * info.world)
            elapsed = meter.seconds + time.perf_counter() - started
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}", img_s=f"{meter.images / max(elapsed, 1e-9):.1f}",
                            lr=f"{optimizer.param_groups[0]['lr']:.2e}")
            if stop_now:
                completed = False
                break
    finally:
        meter.seconds += time.perf_counter() - started
        bar.close()
        for group, lr in zip(optimizer.param_groups, scheduled, strict=False):
            group["lr"] = lr  # the scheduler's recursive formula needs its own value back
    return completed
