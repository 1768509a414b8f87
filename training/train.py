"""`python -m training train`: one run, from data and config to a run folder.

Run folder (runs/train/<name>/):
  config.json                  the resolved TrainConfig (what `resume` reads back)
  weights/last.safetensors     model after the latest completed step boundary (a detector checkpoint)
  weights/last_state.pt        optimizer, scheduler, scaler, epoch/step, RNG states, best metric, epoch meter;
                               tensors and plain values only, read with torch.load(weights_only=True)
  weights/last.json            only while a new pair is being switched in (training/last_checkpoint.py)
  weights/best.safetensors     the epoch with the best valid mAP, with thresholds calibrated on valid
  metrics.jsonl                one JSON object per finished epoch
  train.log, plots/*.png
Every file is written atomically, and the last pair is replaced as one (training/last_checkpoint.py): a crash
or a full disk at any instant leaves a pair that resumes. Both files carry the same `state_id`, which resume
checks. Weights holding NaN/inf are never saved.
"""
from __future__ import annotations

import errno
import json
import logging
import math
import random
import shlex
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from detector.checkpoint import CheckpointMeta, read_state_dict, save_checkpoint, update_meta
from detector.fileio import atomic_write, atomic_write_text
from detector.hw2 import Split, load_annotation_file, load_split
from detector.models import build_model, count_parameters, finalize_config
from detector.provenance import split_fingerprints
from training import distributed
from training.augment import build_train_transform
from training.config import ConfigError, TrainConfig, effective_workers, from_json
from training.data import (
    BadImageLog,
    EpochSampler,
    EvalDataset,
    TrainDataset,
    collate_eval,
    collate_train,
    data_description,
    make_loader,
)
from training.engine import EpochMeter, StepContext, StopRequest, check_finite_weights, train_one_epoch
from training.evaluate import EvalSet, calibrate_thresholds, collect_candidates, split_metrics, validation_thresholds
from training.last_checkpoint import POINTER, STATE, WEIGHTS, has_checkpoint, recover, save_pair
from training.losses import MIXED, BoxHeadLoss, install_box_loss

log = logging.getLogger("training")
# what may differ on resume: how the run executes, never the recipe (same lr schedule, data, epochs)
RESUMABLE_CHANGES = ("device", "workers", "progress", "plots", "coco_backend")


class TrainingInterrupted(Exception):
    """A stop request (Ctrl-C / SIGTERM) ended the run after saving weights/last; the message says how to resume."""


class DiskFullError(Exception):
    """The disk filled up while saving; the previous checkpoint pair is intact and the message says how to resume."""


def is_disk_full(err: BaseException) -> bool:
    """ENOSPC/EDQUOT however the writer reports it: torch.save raises RuntimeError with the OSError as its
    context, safetensors a SafetensorError whose message carries the OS error."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(seen) for text in ("No space left on device", "Disk quota exceeded")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class EpochReport:
    """A finished epoch as its steps fill it in: the metrics.jsonl line and what the steps decided."""

    epoch: int  # 1-based
    lr: float  # the scheduler's lr for the epoch
    seconds: float  # this process's training time
    record: dict[str, Any]  # the metrics.jsonl line
    evaluated: bool = False
    improved: bool = False  # a new best valid mAP


@dataclass
class RunState:
    """Where the run is: `epoch` epochs finished, `step` steps into the next one, and the best so far."""

    epoch: int = 0
    step_meter: EpochMeter = field(default_factory=EpochMeter)
    best_map: float = float("-inf")
    best_epoch: int = 0


# ------------------------------------------------------------------------------------------ run folder
def new_run_dir(config: TrainConfig) -> Path:
    name = config.name or f"{config.preset}-{config.loss}"
    base = Path(config.project) / name
    if config.exist_ok or not base.exists():
        return base
    n = 2
    while (Path(config.project) / f"{name}{n}").exists():
        n += 1
    return Path(config.project) / f"{name}{n}"


def find_resume_dir(resume: str, project: str) -> Path:
    if resume.lower() in ("true", "1", "yes", "last"):
        candidates = sorted([*Path(project).glob(f"*/weights/{STATE}"), *Path(project).glob(f"*/weights/{POINTER}")],
                            key=lambda p: p.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"resume=true: no run with weights/{STATE} under {project}")
        return candidates[-1].parent.parent
    path = Path(resume)
    if path.is_file():  # e.g. resume=RUN/weights/last_state.pt
        path = path.parent.parent if path.parent.name == "weights" else path.parent
    if not path.is_dir():
        raise ConfigError(f"resume={resume}: no such run folder")
    if not (path / "config.json").is_file():
        raise ConfigError(f"resume={resume}: {path} has no config.json, so it is not a run folder (give the folder "
                          "that holds config.json and weights/)")
    if not has_checkpoint(path / "weights"):
        raise ConfigError(f"resume={resume}: {path} has config.json but no weights/{STATE}: the run stopped before "
                          "saving its first checkpoint, so there is nothing to resume; start it again (its command "
                          "with exist_ok=true reuses the folder)")
    return path


def resume_config(resume: str, overrides: dict[str, Any], project: str) -> tuple[TrainConfig, Path]:
    run_dir = find_resume_dir(resume, project)
    config = from_json(run_dir / "config.json")
    changed = {k: v for k, v in overrides.items() if k not in ("resume", "project") and getattr(config, k, None) != v}
    refused = sorted(set(changed) - set(RESUMABLE_CHANGES))
    if refused:
        raise ConfigError(f"resume: {refused} cannot change when resuming {run_dir} (only {', '.join(RESUMABLE_CHANGES)} can); "
                          "start a new run instead (weights=RUN/weights/best.safetensors starts from its weights)")
    for key, value in changed.items():
        setattr(config, key, value)
    config.resume = str(run_dir)
    config.validate()
    return config, run_dir


# ------------------------------------------------------------------------------------------ logging
class _TqdmHandler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def setup_logging(run_dir: Path | None, info: distributed.DistInfo) -> None:
    for handler in list(log.handlers):  # an earlier run in this process (tests, benchmarks) had its own log file
        handler.close()
        log.removeHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    if not info.is_main:
        log.addHandler(logging.NullHandler())
        return
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(console)
    if run_dir is not None:
        file_handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)


# ------------------------------------------------------------------------------------------ RNG state
def rng_state() -> dict[str, Any]:
    """Every RNG the run draws from, as tensors and plain values (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------ data
def _limit(split: Split, max_images: int) -> Split:
    if max_images > 0:
        split.records = split.records[:max_images]
    return split


def load_extra_val(spec: str) -> Split:
    path = Path(spec)
    if path.is_dir():
        split = load_split(path, "valid")
        split.name = path.name
        return split
    if path.suffix == ".json" and path.is_file():
        return load_annotation_file(path, path.parent / path.stem)
    raise ConfigError(f"extra_val={spec}: neither an HW2 folder (with valid.json and valid/) nor a COCO json file")


def _unique_names(splits: list[Split]) -> list[str]:
    names: list[str] = []
    for split in splits:
        name, n = split.name, 2
        while name in names or name == "valid":
            name, n = f"{split.name}{n}", n + 1
        names.append(name)
    return names


# ------------------------------------------------------------------------------------------ the run
class Trainer:
    """Holds a run's pieces; `run()` trains to the end or raises TrainingInterrupted / NonFiniteLossError."""

    def __init__(self, config: TrainConfig, run_dir: Path | None, info: distributed.DistInfo, device: torch.device,
                 command: str) -> None:
        self.config, self.info, self.device, self.command = config, info, device, command
        self.run_dir = distributed.broadcast(info, str(run_dir) if run_dir else None)
        self.run_dir = Path(self.run_dir)
        self.weights_dir = self.run_dir / "weights"
        self.bad_images = BadImageLog()
        self.amp_dtype = self._amp_dtype()
        self.model_config = config.model_config()
        self.saved: tuple[int, int] | None = None  # (epoch, step) of the last pair saved or resumed from

    def _amp_dtype(self) -> torch.dtype | None:
        if self.config.amp == "none":
            return None
        if self.device.type != "cuda":
            log.info("amp=%s is for CUDA only; training in float32 on %s", self.config.amp, self.device)
            return None
        if self.config.amp == "bf16" and not torch.cuda.is_bf16_supported():
            log.warning("this GPU has no bf16; using fp16 with a GradScaler instead")
            return torch.float16
        return torch.bfloat16 if self.config.amp == "bf16" else torch.float16

    # -- setup
    def _build_data(self) -> None:
        c, info = self.config, self.info
        workers = effective_workers(c.workers)
        pin = self.device.type == "cuda"
        train = _limit(load_split(c.data, "train"), c.max_images)
        valid = _limit(load_split(c.data, "valid"), c.max_images)
        extras = [_limit(load_extra_val(spec), c.max_images) for spec in c.extra_val]
        for split in [train, valid, *extras]:
            log.info("%s", split.report.summary())
        self.train_set = TrainDataset(train.records, build_train_transform(c), c.seed)
        extra_names = _unique_names(extras)
        eval_splits = [("valid", valid), *zip(extra_names, extras, strict=False)]
        eval_datasets = [(name, EvalDataset(split.records)) for name, split in eval_splits]
        if c.cache:
            started, cached = time.perf_counter(), 0
            for dataset in [self.train_set] + [d for _, d in eval_datasets]:
                bad = dataset.preload(threads=max(workers, 1))
                self.bad_images.report(bad)
                cached += len(dataset) - len(bad)
            log.info("cached %d images in RAM in %.1fs", cached, time.perf_counter() - started)
        self.train_sampler = EpochSampler(self.train_set, shuffle=True, seed=c.seed, rank=info.rank, world=info.world)
        self.train_loader = make_loader(self.train_set, self.train_sampler, c.batch, workers, collate_train, pin, c.seed)
        val_batch = c.val_batch or 2 * c.batch
        self.eval_sets = []
        for name, dataset in eval_datasets:
            sampler = EpochSampler(dataset, shuffle=False, seed=c.seed, rank=info.rank, world=info.world)
            self.eval_sets.append(EvalSet(name, dataset.records,
                                          make_loader(dataset, sampler, val_batch, workers, collate_eval, pin, c.seed)))
        self.data_info = data_description(Path(c.data), {"train": len(train), "valid": len(valid),
                                                         **{n: len(s) for n, s in zip(extra_names, extras, strict=False)}})
        # content hashes of the images, so a review can tell whether this model saw the split it reviews
        self.data_info["fingerprints"] = split_fingerprints({"train": train.records, "valid": valid.records})

    def _build_model(self) -> None:
        c = self.config
        seed_everything(c.seed)
        self.model_config = finalize_config(self.model_config, c.weights)  # saved configs rebuild the same net
        model = build_model(self.model_config, weights=c.weights)
        self.box_loss = install_box_loss(model, BoxHeadLoss(
            kind=c.loss, iou_start_epoch=c.iou_start_epoch, iou_lambda=c.iou_lambda, iou_lambda_step=c.iou_lambda_step,
            iou_lambda_max=c.iou_lambda_max, box_loss_weight=c.box_loss_weight))
        if c.train_sizes:  # torchvision picks one per image in train mode and the last one in eval mode
            model.transform.min_size = (*c.train_sizes, self.model_config.min_size)
        model.to(self.device)
        self.model = model
        self.ddp: torch.nn.Module = model  # wrapped after a resume has loaded the weights
        params = [p for p in model.parameters() if p.requires_grad]
        if c.optimizer == "adamw":
            self.optimizer: torch.optim.Optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=c.lr, momentum=0.9, weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=c.epochs, eta_min=c.min_lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        log.info("model %s (%s, %.1fM parameters, input %d-%d px), weights=%s, loss=%s, device=%s%s",
                 c.preset, self.model_config.backbone, count_parameters(model) / 1e6, self.model_config.min_size,
                 self.model_config.max_size, c.weights, c.loss, self.device,
                 f" x {self.info.world} processes" if self.info.enabled else "")

    # -- checkpoints
    def _meta(self, metrics: dict[str, Any], state_id: str, epoch: int) -> CheckpointMeta:
        training = {**self.data_info, "command": self.command, "config": self.config.to_dict(), "epoch": epoch,
                    "run_dir": str(self.run_dir.resolve()), "state_id": state_id}
        return CheckpointMeta(config=self.model_config, thresholds=validation_thresholds(self.config), training=training,
                              metrics=metrics)

    def _save_last(self, state: RunState, metrics: dict[str, Any]) -> None:
        state_id = f"e{state.epoch}-s{state.step_meter.steps}-{uuid.uuid4().hex[:8]}"
        meta = self._meta(metrics, state_id, state.epoch)
        payload = {
            "state_id": state_id, "epoch": state.epoch, "meter": state.step_meter.to_state(),
            "best_map": state.best_map, "best_epoch": state.best_epoch,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(),
        }

        def write_state(tmp: Path) -> None:
            with tmp.open("wb") as f:  # through a Python file, a full disk surfaces as OSError(ENOSPC)
                torch.save(payload, f)

        save_pair(self.weights_dir, lambda path: save_checkpoint(path, self.model.state_dict(), meta),
                  lambda path: atomic_write(path, write_state), state_id)
        self.saved = (state.epoch, state.step_meter.steps)

    def _load_last(self) -> RunState:
        payload = torch.load(self.weights_dir / STATE, map_location="cpu", weights_only=True)
        weights, meta = read_state_dict(self.weights_dir / WEIGHTS)
        if meta.training.get("state_id") != payload["state_id"]:
            raise ConfigError(f"{self.weights_dir}: {WEIGHTS} ({meta.training.get('state_id')}) and {STATE} "
                              f"({payload['state_id']}) are from different steps (a crash between their two writes, "
                              "which older versions allowed); cannot resume exactly. Start a new run from its "
                              f"weights: weights={self.weights_dir / WEIGHTS}")
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.scaler.load_state_dict(payload["scaler"])
        set_rng_state(payload["rng"])
        state = RunState(epoch=int(payload["epoch"]), step_meter=EpochMeter.from_state(payload["meter"]),
                         best_map=float(payload["best_map"]), best_epoch=int(payload["best_epoch"]))
        self.saved = (state.epoch, state.step_meter.steps)
        log.info("resumed %s at epoch %d, step %d (best mAP %.4f at epoch %d)", self.run_dir, state.epoch + 1,
                 state.step_meter.steps, state.best_map, state.best_epoch)
        return state

    @contextmanager
    def _saving(self, what: str) -> Iterator[None]:
        """A full disk while writing `what` stops the run with what is still good and how to go on."""
        try:
            yield
        except Exception as err:
            if not is_disk_full(err):
                raise
            if self.saved is None:
                good = ("no checkpoint was saved yet, so free space and start the run again "
                        f"(exist_ok=true reuses {self.run_dir})")
            else:
                epoch, step = self.saved
                at = f"epoch {epoch}" + (f", step {step} of epoch {epoch + 1}" if step else "")
                good = (f"the last good checkpoint is {at} ({self.weights_dir / WEIGHTS}); free space and resume "
                        f"with `python -m training train resume={self.run_dir}`")
            raise DiskFullError(f"disk full while saving {what}; {good}") from err

    def _start_files(self, state: RunState) -> None:
        if self.config.resume:
            self._metrics_file_upto(state.epoch)
        else:
            for stale in ("metrics.jsonl", "threshold_sweep.json"):  # a reused folder (exist_ok) starts afresh
                (self.run_dir / stale).unlink(missing_ok=True)
        # the recipe, with any change a resume made (e.g. more epochs)
        recipe = json.dumps({**self.config.to_dict(), "resume": ""}, indent=2) + "\n"
        atomic_write_text(self.run_dir / "config.json", recipe)

    def _metrics_file_upto(self, epoch: int) -> None:
        """Drop metrics lines after the resumed epoch (written before a crash that lost their checkpoint)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["epoch"] <= epoch:
                    lines.append(line)
            except (ValueError, KeyError, TypeError):
                log.warning("dropping a damaged line of %s: %.80s", path, line)
        atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8"))

    def _append_metrics(self, record: dict[str, Any]) -> None:
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    # -- evaluation
    def _evaluate(self) -> dict[str, dict[str, Any]] | None:
        results: dict[str, dict[str, Any]] = {}
        for eval_set in self.eval_sets:
            candidates = collect_candidates(self.model, self.model_config, eval_set.loader, self.device, self.amp_dtype,
                                            self.info, self.bad_images, self.config.progress, f"eval {eval_set.name}")
            if candidates is not None:
                results[eval_set.name] = split_metrics(eval_set.records, candidates, self.config)
        return results if self.info.is_main else None

    def _plot(self) -> None:
        if not self.config.plots:
            return
        from training.plots import plot_run

        try:
            plot_run(self.run_dir)
        except Exception as err:  # a plot must never cost a training run
            log.warning("plotting failed: %s", err)

    # -- main loop
    def run(self) -> Path:
        c, info = self.config, self.info
        self._build_data()
        self._build_model()
        state = RunState()
        if c.resume:
            state = self._load_last()
        if info.is_main:
            with self._saving("the run's config.json and metrics.jsonl"):
                self._start_files(state)
        if info.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=device_ids)
        steps = math.ceil(len(self.train_sampler.inner) / c.batch)
        log.info("run folder %s; %d train images, %d steps per epoch, epochs %d..%d", self.run_dir,
                 len(self.train_set), steps, state.epoch + 1, c.epochs)
        with StopRequest() as stop:
            context = StepContext(
                optimizer=self.optimizer, scaler=self.scaler, device=self.device, amp_dtype=self.amp_dtype,
                warmup_iters=c.warmup_iters, grad_clip=c.grad_clip, epochs=c.epochs, stop=stop, info=info,
                bad_images=self.bad_images, progress=c.progress)
            for epoch in range(state.epoch, c.epochs):
                self._run_epoch(epoch, state, context)
                if epoch + 1 < c.epochs:
                    self._stop_if_requested(state, stop)
            self._finish(state)
        return self.run_dir

    def _run_epoch(self, epoch: int, state: RunState, context: StepContext) -> None:
        """The training loop, then the epoch's steps in order (detectron2's hooks idea). Every rank trains, reduces
        the losses and evaluates (sharded); rank 0 alone then keeps the best, checkpoints, logs and plots."""
        lr = self._train(epoch, state, context)
        report = self._epoch_report(epoch, lr, state)
        self._evaluate_epoch(report)
        self.scheduler.step()
        state.epoch, state.step_meter = epoch + 1, EpochMeter()
        if self.info.is_main:
            for step in (self._keep_best, self._checkpoint, self._log_epoch, self._plot_epoch):
                step(report, state)

    def _train(self, epoch: int, state: RunState, context: StepContext) -> float:
        """The epoch's (remaining) steps; returns its scheduled lr. A stop request saves the last pair and ends the run."""
        self.box_loss.epoch = epoch + 1
        lr = self.optimizer.param_groups[0]["lr"]
        self.train_sampler.set_epoch(epoch, skip=state.step_meter.steps * self.config.batch)
        finished = train_one_epoch(self.ddp, self.train_loader, context, epoch=epoch, meter=state.step_meter)
        # before anything is evaluated or saved; on every rank (they hold the same weights), so all stop together
        check_finite_weights(self.model, f"in epoch {epoch + 1}, by step {state.step_meter.steps}", lr)
        if not finished:
            if self.info.is_main:
                with self._saving(f"epoch {epoch + 1}, step {state.step_meter.steps}"):
                    self._save_last(state, {})
            raise TrainingInterrupted(
                f"stopped at epoch {epoch + 1}, step {state.step_meter.steps}; saved {self.weights_dir / 'last.safetensors'}."
                f" Resume with: python -m training train resume={self.run_dir}")
        return lr

    def _epoch_report(self, epoch: int, lr: float, state: RunState) -> EpochReport:
        """The epoch's metrics line so far: mean losses over all ranks' steps (an all-reduce), time and throughput."""
        meter = distributed.sum_floats(self.info, {**state.step_meter.sums, "_steps": state.step_meter.steps}, self.device)
        steps = meter.pop("_steps")
        seconds = state.step_meter.seconds
        record: dict[str, Any] = {
            "epoch": epoch + 1, "epochs": self.config.epochs, "lr": lr, "time_s": round(seconds, 3), "eval_s": 0.0,
            "images_per_s": round(state.step_meter.images / max(seconds, 1e-9), 2), "steps": state.step_meter.steps,
            **{k: v / max(steps, 1) for k, v in meter.items()},
        }
        if self.box_loss.kind in MIXED:
            record["iou_lambda"] = self.box_loss.mix_weight
        return EpochReport(epoch=epoch + 1, lr=lr, seconds=seconds, record=record)

    def _evaluate_epoch(self, report: EpochReport) -> None:
        """Every eval_every epochs and the last: every validation set; rank 0 adds the figures to the record."""
        if report.epoch % self.config.eval_every and report.epoch != self.config.epochs:
            return
        report.evaluated = True
        started = time.perf_counter()
        results = self._evaluate()
        report.record["eval_s"] = round(time.perf_counter() - started, 3)
        if results is not None:
            report.record["valid"] = results.pop("valid")
            if results:
                report.record["extra"] = results

    def _keep_best(self, report: EpochReport, state: RunState) -> None:
        valid = report.record.get("valid")
        if valid is not None and valid["AP"] > state.best_map:
            state.best_map, state.best_epoch, report.improved = valid["AP"], report.epoch, True
        report.record["best_AP"] = state.best_map if math.isfinite(state.best_map) else None
        report.record["best_epoch"] = state.best_epoch

    def _checkpoint(self, report: EpochReport, state: RunState) -> None:
        """The metrics line, best (if it improved) and the last pair; metrics lines past the resumed epoch are
        dropped on resume."""
        summary = {k: v for k, v in report.record.get("valid", {}).items() if k != "per_class_AP"}
        with self._saving(f"epoch {report.epoch}"):
            self._append_metrics(report.record)
            if report.improved:  # before last: a crash between the two redoes this epoch, which rewrites best
                save_checkpoint(self.weights_dir / "best.safetensors", self.model.state_dict(),
                                self._meta({"epoch": report.epoch, "valid": summary}, "best", report.epoch))
            self._save_last(state, {"epoch": report.epoch, "valid": summary})

    def _log_epoch(self, report: EpochReport, state: RunState) -> None:
        c, record, valid = self.config, report.record, report.record.get("valid")
        log.info("epoch %d/%d  loss %.4f  lr %.2e  %.1f img/s  %.0fs%s", report.epoch, c.epochs,
                 record.get("loss", float("nan")), report.lr, record["images_per_s"], report.seconds,
                 f"  | valid mAP {valid['AP']:.4f} AP50 {valid['AP50']:.4f} number acc {valid['number_accuracy']:.4f}"
                 f" (at score {c.val_score}){'  *best*' if report.improved else ''}" if valid else "")
        for name, extra in record.get("extra", {}).items():
            log.info("           %s mAP %.4f AP50 %.4f number acc %.4f", name, extra["AP"], extra["AP50"],
                     extra["number_accuracy"])

    def _plot_epoch(self, report: EpochReport, state: RunState) -> None:
        if report.evaluated:
            self._plot()

    def _stop_if_requested(self, state: RunState, stop: StopRequest) -> None:
        """A stop that came during evaluation acts after the epoch's checkpoint is written."""
        if distributed.any_flags(self.info, [stop.requested], self.device)[0]:
            raise TrainingInterrupted(
                f"stopped after epoch {state.epoch}; saved {self.weights_dir / 'last.safetensors'}."
                f" Resume with: python -m training train resume={self.run_dir}")

    def _finish(self, state: RunState) -> None:
        """Calibrate the number threshold on valid with the best weights and store it in best.safetensors.

        Rank 0 alone does it (other ranks wait): it needs only the best weights, which rank 0 wrote.
        """
        if self.info.is_main:
            best = self.weights_dir / "best.safetensors"
            weights, meta = read_state_dict(best)
            self.model.load_state_dict(weights)
            valid = self.eval_sets[0]
            loader = valid.loader
            if self.info.enabled:  # the sharded loader would wait for the other ranks; read all of valid here
                dataset = loader.dataset
                loader = make_loader(dataset, EpochSampler(dataset, shuffle=False, seed=self.config.seed), loader.batch_size,
                                     0, collate_eval, False, self.config.seed)
            candidates = collect_candidates(self.model, self.model_config, loader, self.device, self.amp_dtype,
                                            distributed.DistInfo(), self.bad_images, self.config.progress, "calibrate")
            assert candidates is not None
            calibration = calibrate_thresholds(valid.records, candidates, self.config)
            thresholds, sweep = calibration.thresholds, calibration.points()
            with self._saving("the calibrated thresholds"):  # a resume of a finished run redoes only this
                update_meta(best, thresholds=thresholds,
                            metrics={**meta.metrics, "number_accuracy_calibrated": calibration.accuracy,
                                     "threshold_sweep": sweep, "calibration": calibration.summary()})
                atomic_write_text(self.run_dir / "threshold_sweep.json",
                                  json.dumps({"best": thresholds.to_dict(), "points": sweep}, indent=2) + "\n")
            self._plot()
            log.info("done: best valid mAP %.4f at epoch %d; number threshold %.2f gives number accuracy %.4f on "
                     "valid (%.4f with per-digit thresholds %s); %s", state.best_map, state.best_epoch,
                     thresholds.number_score, calibration.accuracy_global, calibration.accuracy,
                     dict(thresholds.number_score_by_digit) or "none", best)
        distributed.barrier(self.info)


def train(config: TrainConfig, command: str | None = None) -> Path:
    """Train with `config` (a fresh run, or config.resume set); returns the run folder."""
    info, device = distributed.setup(config.device)
    try:
        run_dir: Path | None = None
        if info.is_main:
            run_dir = Path(config.resume) if config.resume else new_run_dir(config)
            (run_dir / "weights").mkdir(parents=True, exist_ok=True)
        setup_logging(run_dir, info)
        if run_dir is not None:  # before any rank reads the pair (Trainer's broadcast waits for this)
            for line in recover([run_dir / "weights", run_dir]):
                log.info("%s", line)
        trainer = Trainer(config, run_dir, info, device, command or shlex.join(sys.argv))
        return trainer.run()
    finally:
        distributed.cleanup(info)
