"""How long a slider move costs: detector.refilter on ~300 cached candidates per image.

Budget: < 5 ms per image. Baselines, measured in the same run on the same candidates:
- 'per-class loop': a hand-written loop calling torchvision's nms once per class;
- 'roi_heads.postprocess': torchvision's full RoIHeads.postprocess_detections on the head outputs that
  would produce those candidates (300 proposals x 10 classes: decode, softmax, clip, score cut, NMS),
  i.e. what re-filtering costs when the head's outputs, not the candidates, are cached.
Then a whole split (3,340 images) through refilter_many, against one NMS over all images at once.

Run: python benchmarks/refilter_latency.py [--images 3340] [--calls 1000]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import nms

from detector.categories import NUM_CLASSES
from detector.detections import Detections
from detector.refilter import refilter, refilter_many


def head_outputs(seed: int, proposals: int = 300) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Proposals clustered on a few digits, class logits and box deltas, like a Faster R-CNN box head's."""
    g = torch.Generator().manual_seed(seed)
    digits = int(torch.randint(1, 6, (1,), generator=g))
    h = 20 + 60 * float(torch.rand(1, generator=g))
    centres = torch.stack([torch.arange(digits) * 0.6 * h + 40, torch.full((digits,), h)], 1)
    pick = torch.randint(0, digits, (proposals,), generator=g)
    xy = centres[pick] + torch.randn(proposals, 2, generator=g) * h * 0.15
    wh = torch.stack([torch.full((proposals,), 0.5 * h), torch.full((proposals,), h)], 1)
    wh = wh * (0.7 + 0.6 * torch.rand(proposals, 2, generator=g))
    boxes = torch.cat([xy - wh / 2, xy + wh / 2], 1).clamp(min=0)
    logits = torch.randn(proposals, NUM_CLASSES, generator=g)
    good = torch.rand(proposals, generator=g) < 0.3  # well-placed proposals favour their cluster's digit,
    logits[torch.arange(proposals)[good], 1 + pick[good]] += 5  # the rest favour background
    logits[~good, 0] += 5
    deltas = torch.randn(proposals, NUM_CLASSES * 4, generator=g) * 0.1
    return boxes, logits, deltas


def make_heads(score_thresh: float, nms_thresh: float, detections: int) -> RoIHeads:
    return RoIHeads(None, None, None, 0.5, 0.5, 512, 0.25, None, score_thresh, nms_thresh, detections)


def candidates_from(raw: RoIHeads, boxes, logits, deltas, size=(200, 400)) -> Detections:
    """The model's cached output: score floor 0.01, NMS off (IoU 1.0), up to 3,000 per image."""
    (out,), (sc,), (lab,) = raw.postprocess_detections(logits, deltas, [boxes], [size])
    keep = torch.argsort(sc, descending=True)[:300]  # ~300 candidates, as the app caches them
    return Detections(out[keep], sc[keep], lab[keep])


def per_class_loop(c: Detections, threshold: float, iou: float) -> Detections:
    keep_all = []
    for label in range(1, NUM_CLASSES):
        idx = torch.nonzero((c.labels == label) & (c.scores >= threshold)).flatten()
        if len(idx):
            keep_all.append(idx[nms(c.boxes[idx], c.scores[idx], iou)])
    if not keep_all:
        return Detections.empty()
    idx = torch.cat(keep_all)
    return c.select(idx[torch.argsort(c.scores[idx], descending=True)])


def one_global_nms(by_id: dict[int, Detections], threshold: float, iou: float) -> dict[int, Detections]:
    """All images in one nms call, boxes offset per (image, class) group (batched_nms's coordinate trick,
    in float64 so 36,000 groups of offsets stay exact) — the obvious 'vectorised' batch."""
    ids = list(by_id)
    cat = Detections(*(torch.cat([getattr(by_id[i], f) for i in ids]) for f in ("boxes", "scores", "labels")))
    image_index = torch.repeat_interleave(torch.arange(len(ids)), torch.tensor([len(by_id[i]) for i in ids]))
    mask = cat.scores >= threshold
    keep = torch.nonzero(mask).flatten()
    groups = image_index[keep] * NUM_CLASSES + cat.labels[keep]
    boxes = cat.boxes[keep].double()
    boxes = boxes + (groups * (boxes.max() + 1)).double()[:, None]
    keep = keep[nms(boxes, cat.scores[keep].double(), iou)]
    kept_image = image_index[keep]
    return {i: cat.select(keep[kept_image == k]) for k, i in enumerate(ids)}


def time_ms(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3340)
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per variant, cycling over 50 images")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the app handles one request per thread
    raw = make_heads(0.01, 1.0, 3000)
    heads = [head_outputs(seed) for seed in range(50)]
    cands = [candidates_from(raw, *h) for h in heads]
    print(f"torch {torch.__version__}, 1 thread; candidates per image: "
          f"median {statistics.median(len(c) for c in cands)}, lowest score {min(float(c.scores.min()) for c in cands):.3f}")

    for threshold in (0.01, 0.5):
        post = make_heads(threshold, 0.5, 100)
        rows = {
            "roi_heads.postprocess (baseline)":
                lambda h, post=post: post.postprocess_detections(h[1], h[2], [h[0]], [(200, 400)]),
            "per-class loop + nms": lambda c, t=threshold: per_class_loop(c, t, 0.5),
            "refilter (batched_nms)": lambda c, t=threshold: refilter(c, t, 0.5),
            "refilter class-agnostic": lambda c, t=threshold: refilter(c, t, 0.5, class_agnostic=True),
        }
        print(f"\nper image, score threshold {threshold}, NMS IoU 0.5 ({args.calls} calls over 50 images, ms)")
        print(f"{'variant':36s} {'median':>8s} {'p95':>8s} {'vs baseline':>12s}")
        base = None
        for name, fn in rows.items():
            inputs = heads if name.startswith("roi_heads") else cands
            counter = iter(range(10**9))
            med, p95 = time_ms(lambda fn=fn, inputs=inputs, counter=counter: fn(inputs[next(counter) % len(inputs)]), args.calls)
            base = base or med
            print(f"{name:36s} {med:8.3f} {p95:8.3f} {base / med:11.1f}x")
        same = all(torch.equal(refilter(c, threshold, 0.5).boxes, per_class_loop(c, threshold, 0.5).boxes) for c in cands)
        print(f"refilter == per-class loop on all 50 images: {same}")

    print("\nwhole split, threshold 0.5, NMS IoU 0.5 (best of 3)")
    print(f"{'variant':44s} {'images':>7s} {'total s':>8s} {'ms/image':>9s} {'vs baseline':>12s}")
    base = None
    for name, images, fn in (
        ("per-class loop per image (baseline)", args.images, lambda d: {i: per_class_loop(c, 0.5, 0.5) for i, c in d.items()}),
        ("refilter_many (per-image batched_nms)", args.images, lambda d: refilter_many(d, 0.5, 0.5)),
        # Quadratic in the split's box count, so only a slice: it is far slower per image even so.
        ("one global nms, offsets per (image, class)", min(300, args.images), lambda d: one_global_nms(d, 0.5, 0.5)),
    ):
        by_id = {i: cands[i % len(cands)] for i in range(images)}
        best = min(time_ms(lambda fn=fn, by_id=by_id: fn(by_id), 1)[0] for _ in range(3)) / 1e3
        per_image = best / images * 1e3
        base = base or per_image
        print(f"{name:44s} {images:7d} {best:8.3f} {per_image:9.3f} {base / per_image:11.2f}x")

if __name__ == "__main__":
    main()
