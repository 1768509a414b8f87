"""Datasets and loaders over detector.hw2 records.

Two choices make runs reproducible and resumable:
- the sampler yields `(epoch, index)`, and each training sample is augmented under a generator seeded by
  (seed, epoch, index), so augmentation does not depend on the number of workers, on which worker loads
  the sample, or on whether the run was resumed in the middle;
- the order comes from DistributedSampler (a permutation seeded by seed + epoch, sharded by rank, also with
  one process), and a resumed epoch skips the batches already done.
A bad image (unreadable, truncated) is reported, not fatal: the sample is replaced by the next readable one
and the bad file travels with the batch, so the main process logs it once by name.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision.transforms import v2

from detector.hw2 import ImageRecord
from detector.images import ImageLoadError, load_rgb
from training.augment import make_sample

log = logging.getLogger("training")
_PURE = v2.ToPureTensor()


@dataclass(frozen=True)
class BadImage:
    image_id: int
    path: str
    error: str


class BadImageLog:
    """Logs each bad file once per run, however many epochs and workers meet it."""

    def __init__(self) -> None:
        self.seen: dict[str, BadImage] = {}

    def report(self, bad: Sequence[BadImage]) -> None:
        for item in bad:
            if item.path not in self.seen:
                self.seen[item.path] = item
                log.warning("skipping unreadable image %s (image_id %d): %s", item.path, item.image_id, item.error)


class RecordDataset(Dataset):
    """Decoded images of a list of records, optionally all held in RAM as uint8 arrays."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        if not records:
            raise ValueError("no images to load (empty split)")
        self.records = list(records)
        self._cache: dict[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def preload(self, threads: int = 4) -> list[BadImage]:
        """Decode every image once in this process, so forked workers share the arrays; returns the bad ones."""
        def read(index: int) -> np.ndarray | BadImage:
            try:
                return np.array(load_rgb(self.records[index].path))
            except ImageLoadError as err:
                return self._bad(index, err)

        with ThreadPoolExecutor(max(1, threads)) as pool:
            decoded = list(pool.map(read, range(len(self))))
        self._cache = {i: a for i, a in enumerate(decoded) if isinstance(a, np.ndarray)}
        return [b for b in decoded if isinstance(b, BadImage)]

    def _bad(self, index: int, err: Exception) -> BadImage:
        record = self.records[index]
        return BadImage(record.image_id, str(record.path), str(err))

    def load(self, index: int) -> np.ndarray:
        if self._cache is not None:
            if index in self._cache:
                return self._cache[index]
            raise ImageLoadError(f"{self.records[index].path}: unreadable (found when caching)")
        return np.array(load_rgb(self.records[index].path))

    def first_readable(self, index: int) -> tuple[int, np.ndarray, list[BadImage]]:
        """The image at `index`, or the next readable one after it, and the bad ones passed on the way."""
        bad: list[BadImage] = []
        for step in range(len(self)):
            i = (index + step) % len(self)
            try:
                return i, self.load(i), bad
            except ImageLoadError as err:
                bad.append(self._bad(i, err))
        raise RuntimeError(f"none of the {len(self)} images can be read; first error: {bad[0].error}")


class TrainDataset(RecordDataset):
    """(image float tensor, target dict, bad images) for a key (epoch, index)."""

    def __init__(self, records: Sequence[ImageRecord], transform: Callable, seed: int) -> None:
        super().__init__(records)
        self.transform = transform
        self.seed = seed

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[BadImage]]:
        epoch, index = key
        i, array, bad = self.first_readable(index)
        record = self.records[i]
        image, target = make_sample(array, record.boxes, record.category_ids)
        # v2 transforms draw from torch's global RNG: fork it so the sample's randomness is its own
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
            image, target = self.transform(image, target)
        image, target = _PURE(image, target)  # plain tensors for the model (no tv_tensors metadata)
        return image, target, bad


class EvalDataset(RecordDataset):
    """(image_id, uint8 HxWx3 array or BadImage) for a key (epoch, index): the Predictor does the rest."""

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, np.ndarray | BadImage]:
        _, index = key
        try:
            return self.records[index].image_id, self.load(index)
        except ImageLoadError as err:
            return self.records[index].image_id, self._bad(index, err)


class EpochSampler(Sampler):
    """DistributedSampler's order (seed + epoch, sharded by rank) as (epoch, index) keys, resumable mid-epoch."""

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int, rank: int = 0, world: int = 1) -> None:
        self.inner = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.inner.set_epoch(epoch)
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in islice(iter(self.inner), self.skip, None):
            yield self.epoch, index

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)


def collate_train(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]], list[BadImage]]:
    images, targets, bad = zip(*batch, strict=False)
    return list(images), list(targets), [b for items in bad for b in items]


def collate_eval(batch: list) -> list[tuple[int, Any]]:
    return list(batch)


def make_loader(dataset: Dataset, sampler: EpochSampler, batch_size: int, workers: int, collate: Callable,
                pin_memory: bool, seed: int) -> DataLoader:
    # The loader's own generator: drawing worker seeds must not advance the global RNG the model's
    # proposal sampling uses, or a resumed run would diverge from an uninterrupted one.
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate,
        pin_memory=pin_memory, persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed),
        prefetch_factor=4 if workers > 0 else None,
    )


def data_description(data_dir: Path, counts: dict[str, int]) -> dict[str, Any]:
    """What a checkpoint records about its training data: path, image counts, synth settings if synthetic."""

    out: dict[str, Any] = {"data": str(data_dir.resolve()), "counts": counts}
    meta = data_dir / "synth_meta.json"
    if meta.is_file():
        try:
            synth = json.loads(meta.read_text(encoding="utf-8"))
            # the generator's settings, not its per-image list (megabytes at full size, in every checkpoint)
            out["synth"] = synth.get("generator", synth) if isinstance(synth, dict) else synth
        except (OSError, ValueError) as err:
            out["synth"] = f"unreadable synth_meta.json ({err})"
    return out
