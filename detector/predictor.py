"""Run a detector once per image and keep its raw candidates, so thresholds can be changed without it.

The model runs with a low score floor and NMS switched off (IoU threshold 1.0 keeps every box), and returns
boxes in original-image pixels. Score and NMS thresholds are then applied to these cached candidates by
`detector.refilter`, which is what makes the app's sliders instant and lets evaluation sweep thresholds.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from PIL import Image
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d
from torchvision.transforms.v2 import functional as F

from detector.checkpoint import CheckpointMeta, load_checkpoint
from detector.detections import Detections
from detector.images import ImageLoadError, ImageSource, load_rgb
from detector.zoom import ZoomConfig, zoom_candidates

DEFAULT_SCORE_FLOOR = 0.01
DEFAULT_MAX_CANDIDATES = 300


def resolve_device(device: str | None) -> torch.device:
    """'auto' (or None) picks CUDA when present; an unavailable device is a clear error, not a crash later."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine; use --device cpu")
    return dev


def fold_batchnorm(module: torch.nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution in an nn.Sequential into that convolution
    (the BatchNorm becomes Identity); returns how many were folded. Inference only: a folded model cannot train."""
    folded = 0
    for parent in module.modules():
        if not isinstance(parent, torch.nn.Sequential):
            continue
        names = list(parent._modules)
        for conv_name, bn_name in zip(names, names[1:], strict=False):
            conv, bn = parent._modules[conv_name], parent._modules[bn_name]
            fixed = isinstance(bn, FrozenBatchNorm2d) or (isinstance(bn, torch.nn.BatchNorm2d) and not bn.training)
            if not (isinstance(conv, torch.nn.Conv2d) and fixed):
                continue
            parent._modules[conv_name] = fuse_conv_bn_eval(conv.eval(), bn.eval())  # type: ignore[arg-type]
            parent._modules[bn_name] = torch.nn.Identity()
            folded += 1
    return folded


class PointwiseAsLinear(torch.nn.Module):
    """A 1x1 convolution (stride 1, no padding, no groups) computed as one matrix product over the channel axis.

    At batch 1 PyTorch sends such a convolution on a small feature map to its reference kernel, which copies a
    channels-last input back to NCHW first; a matmul on the NHWC view of the same memory copies nothing."""

    def __init__(self, conv: torch.nn.Conv2d) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(conv.weight.detach().flatten(1).clone(), requires_grad=False)
        self.bias = None if conv.bias is None else torch.nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)


def pointwise_as_linear(module: torch.nn.Module) -> int:
    """Replace every plain 1x1 convolution inside `module` by PointwiseAsLinear; returns how many. Inference only."""
    swapped = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if (isinstance(child, torch.nn.Conv2d) and child.kernel_size == (1, 1) and child.stride == (1, 1)
                    and child.padding == (0, 0) and child.dilation == (1, 1) and child.groups == 1):
                setattr(parent, name, PointwiseAsLinear(child))
                swapped += 1
    return swapped


def with_proposals(model: torch.nn.Module, proposals: int) -> torch.nn.Module:
    """A view of a torchvision detector that keeps `proposals` RPN proposals when predicting and shares every weight
    and submodule with `model`, which is left as it was (no setting is switched back and forth, so threads that
    share the model never see another caller's value)."""
    own = cast(RegionProposalNetwork, model.rpn)
    rpn = copy.copy(own)
    rpn._post_nms_top_n = {**own._post_nms_top_n, "testing": proposals}
    view = copy.copy(model)
    view._modules = {**model._modules, "rpn": rpn}
    return view


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    return F.to_dtype(F.to_image(image), torch.float32, scale=True)


@dataclass
class Predictor:
    """A loaded model in raw-candidate mode plus the checkpoint metadata it came with."""

    model: torch.nn.Module
    meta: CheckpointMeta
    device: torch.device
    score_floor: float = DEFAULT_SCORE_FLOOR
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    zoom: ZoomConfig | None = ZoomConfig()  # re-read small numbers from a crop (detector.zoom); None: one pass
    _crop_view: tuple[int, torch.nn.Module] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        heads = cast(RoIHeads, self.model.roi_heads)
        heads.score_thresh = self.score_floor
        heads.nms_thresh = 1.0  # NMS happens later, on the cached candidates
        heads.detections_per_img = self.max_candidates
        self.model.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | None = "auto", **kwargs: Any) -> Predictor:
        dev = resolve_device(device)
        loaded = load_checkpoint(path, device=dev)
        # A convolution followed by a frozen BatchNorm is one affine map: folding saves a pass over every feature
        # map of the backbone (benchmarks/inference_latency.py); detections agree to 1e-4 (tests).
        fold_batchnorm(loaded.model.eval())
        if dev.type == "cpu":
            # oneDNN's convolutions run faster on NHWC: 45 -> 39 ms per image for the shipped default on 2 cores
            # (benchmarks/inference_latency.py), same detections to 1e-5. Only here, never on a model in training.
            loaded.model.backbone.to(memory_format=torch.channels_last)
            # 1x1 convolutions as matmuls on the NHWC view: 32.3 -> 30.9 ms (1.04x) on 68 images, idle, same detections.
            pointwise_as_linear(loaded.model)
        return cls(model=loaded.model, meta=loaded.meta, device=dev, **kwargs)

    def input_scale(self, width: int, height: int) -> float:
        """Model input pixels per image pixel: torchvision scales the short side to min_size unless the long side
        would pass max_size."""
        transform = cast(GeneralizedRCNNTransform, self.model.transform)
        return min(transform.min_size[-1] / min(width, height), transform.max_size / max(width, height))

    def check_fits(self, image: Image.Image, label: str) -> None:
        """Refuse an image the model's resize would squash to a side under 1 px (an image over max_size:1 loses its
        short side)."""
        transform = cast(GeneralizedRCNNTransform, self.model.transform)
        width, height = image.size
        if math.floor(min(width, height) * self.input_scale(width, height)) < 1:
            raise ImageLoadError(
                f"{label}: a {width}x{height} image is too thin for this model, whose input is at most "
                f"{transform.max_size} px long: its short side would shrink below 1 px; crop or pad it to an aspect "
                f"ratio under {transform.max_size}:1")

    @torch.inference_mode()
    def candidates_or_errors(self, images: Sequence[ImageSource],
                             batch_size: int = 8) -> list[Detections | ImageLoadError]:
        """Raw candidates for each image (any mode/size; loaded with detector.images.load_rgb), or the
        ImageLoadError (naming it) that keeps it from the model; one bad image never costs the others."""
        out: list[Detections | ImageLoadError] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            slots: list[Detections | ImageLoadError | None] = [None] * len(chunk)
            ready: list[tuple[int, str, torch.Tensor]] = []
            for i, source in enumerate(chunk):
                label = str(source) if isinstance(source, (str, Path)) else f"image {start + i + 1} of {len(images)}"
                try:
                    image = load_rgb(source, name=label)
                    self.check_fits(image, label)
                except ImageLoadError as err:
                    slots[i] = err
                    continue
                except Exception as err:  # a decoder bug on a hostile file costs that image, not the batch
                    slots[i] = ImageLoadError(f"{label}: could not be read ({type(err).__name__}: {str(err)[:200]})")
                    continue
                ready.append((i, label, image_to_tensor(image).to(self.device)))
            for (i, label, tensor), result in zip(ready, self._run([(label, t) for _, label, t in ready]), strict=False):
                slots[i] = self._zoomed(label, tensor, result)
            assert all(slot is not None for slot in slots)
            out.extend(slots)  # type: ignore[arg-type]  # every slot is filled
        return out

    def _zoomed(self, label: str, tensor: torch.Tensor, first: Detections | ImageLoadError) -> Detections | ImageLoadError:
        """The first pass, or its re-reading from crops when the number is small in the model's input."""
        if self.zoom is None or isinstance(first, ImageLoadError):
            return first

        def run(crop: torch.Tensor) -> Detections:
            result = self._run_same_size([(label, crop.contiguous())], self._crop_model())[0]
            if isinstance(result, ImageLoadError):
                raise result
            return result

        try:
            return zoom_candidates(tensor, first, self.meta.thresholds, self.input_scale(tensor.shape[2], tensor.shape[1]),
                                   run, self.zoom, self.max_candidates)
        except ImageLoadError:
            return first  # a crop the model cannot take: the first pass stands

    def _crop_model(self) -> torch.nn.Module:
        """The model the zoom's crop passes run: a view keeping the zoom's crop_proposals, made once per setting."""
        proposals = self.zoom.crop_proposals if self.zoom else None
        if proposals is None:
            return self.model
        if self._crop_view is None or self._crop_view[0] != proposals:
            self._crop_view = (proposals, with_proposals(self.model, proposals))
        return self._crop_view[1]

    def _run(self, batch: list[tuple[str, torch.Tensor]]) -> list[Detections | ImageLoadError]:
        """Forward passes over images of one size each: torchvision pads a batch to its largest image, and that
        padding changes the features near a smaller image's edges, so an image batched with larger neighbours
        could read differently from the same image alone (an upload read 5616 where the CLI read 561)."""
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, (_, tensor) in enumerate(batch):
            by_size.setdefault(tuple(tensor.shape), []).append(i)
        out: list[Detections | ImageLoadError | None] = [None] * len(batch)
        for indices in by_size.values():
            for i, result in zip(indices, self._run_same_size([batch[i] for i in indices]), strict=False):
                out[i] = result
        return out  # type: ignore[return-value]  # every slot is filled

    def _run_same_size(self, batch: list[tuple[str, torch.Tensor]],
                       model: torch.nn.Module | None = None) -> list[Detections | ImageLoadError]:
        """One forward pass (of `model`: the zoom's crop view, or the model); should it fail, each image alone, so
        the error lands on the image that caused it."""
        if not batch:
            return []
        try:
            return [Detections(r["boxes"].float().cpu(), r["scores"].float().cpu(), r["labels"].cpu())
                    for r in (self.model if model is None else model)([t for _, t in batch])]
        except (RuntimeError, ValueError) as err:
            if len(batch) > 1:
                return [result for item in batch for result in self._run_same_size([item], model)]
            label, tensor = batch[0]
            return [ImageLoadError(f"{label}: the model failed on this {tensor.shape[2]}x{tensor.shape[1]} image "
                                   f"({type(err).__name__}: {str(err)[:200]})")]

    def candidates(self, images: Sequence[ImageSource], batch_size: int = 8) -> list[Detections]:
        """Raw candidates for each image; the first image that cannot be used raises its ImageLoadError, which names
        it (candidates_or_errors returns the errors in place instead)."""
        results = self.candidates_or_errors(images, batch_size)
        for result in results:
            if isinstance(result, ImageLoadError):
                raise result
        return results  # type: ignore[return-value]  # no errors left

    def candidates_for_paths(
        self, items: Iterable[tuple[int, Path]], batch_size: int = 8, progress: bool = True, total: int | None = None
    ) -> Iterator[tuple[int, Detections | Exception]]:
        """(image_id, candidates) for each (image_id, path); an image that cannot be used yields its error."""
        from tqdm import tqdm

        items = list(items)
        bar = tqdm(total=total or len(items), disable=not progress, unit="img", desc="predict")
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            for (image_id, _), result in zip(chunk, self.candidates_or_errors([p for _, p in chunk], batch_size), strict=False):
                yield image_id, result
            bar.update(len(chunk))
        bar.close()
