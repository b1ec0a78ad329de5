"""Side by side, in one process: our training step and LA evaluation vs the UA-MT reference code.

    python benchmarks/bench_reference.py                      # CPU, 2 threads, both parts
    python benchmarks/bench_reference.py --skip-eval --reps 5 # training steps only
    python benchmarks/bench_reference.py --eval-stride 47 31 8 # fewer windows (a quick look)
    python benchmarks/bench_reference.py --device cuda        # GPU: ours in bf16 autocast, reference fp32

**Training step** (Mean Teacher and UA-MT): the reference loop body of UA-MT's
``train_LA_meanteacher_certainty_unlabel.py`` (and its Mean-Teacher form), re-implemented here from
the published algorithm: numpy ``RandomRotFlip`` + ``RandomCrop`` + ``ToTensor`` on every item, the
V-Net in PyTorch's default (contiguous) memory format, teacher noise clamp(0.1 N, +-0.2), a no-grad
EMA forward, UA-MT's T = 8 stochastic passes run two copies at a time into a preallocated buffer,
CE + foreground Dice on the labelled half, softmax-MSE consistency (masked by entropy for UA-MT),
SGD, then the per-parameter EMA loop. Ours: :class:`sfr_teach.ssl.batches.CropBatcher` +
``build_method(...).step`` + backward + SGD + ``after_step``, exactly the body of
:func:`sfr_teach.ssl.trainer.train`. Same batch 4 (2 labelled), patch, filters, threads, and the same
network class (:class:`sfr_teach.nets.VNet` is the reference layout, see ``VNet.load_reference``).
Repetitions alternate (ref, ours, ref, ours, ...) so that a machine shared with other work slows both
alike; the table gives the median seconds per step and the ratio.

**Evaluation**: one real LA volume (``--data-dir``, else ``$SFR_LA_DIR``, else ``data/LA``: :func:`sfr_teach.data.paths.resolve_la_dir`),
one set of V-Net weights (random unless ``--weights`` names a ``model.pt``), predicted by the
reference ``test_single_case`` patch loop (numpy windows one at a time, softmax to the host, numpy
score and count maps) and by :func:`sfr_teach.evaluate.sliding_window_predict` (the package path);
prints both times, the ratio, and whether the label maps agree (voxel fraction, and exactly).

Prints the machine, torch threads and ``uptime`` load before and after: absolute times on a shared
machine are noisy, the interleaved ratio much less so.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stitching import cpu_name  # noqa: E402

from sfr_teach.config import get_config  # noqa: E402
from sfr_teach.nets import VNet  # noqa: E402
from sfr_teach.ssl.ramps import sigmoid_rampup  # noqa: E402


def load_avg() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------ reference training loop body
def ref_item(image: np.ndarray, label: np.ndarray, patch, rng: np.random.RandomState):
    """UA-MT's RandomRotFlip -> RandomCrop -> ToTensor on one (H, W, D) volume."""
    k = rng.randint(0, 4)
    image, label = np.rot90(image, k), np.rot90(label, k)
    axis = rng.randint(0, 2)
    image, label = np.flip(image, axis).copy(), np.flip(label, axis).copy()
    pads = [max(p - s, 0) for p, s in zip(patch, image.shape)]
    if any(pads):
        widths = [(p // 2 + 3, p - p // 2 + 3) if p else (0, 0) for p in pads]
        image = np.pad(image, widths, mode="constant")
        label = np.pad(label, widths, mode="constant")
    starts = [rng.randint(0, s - p + 1) for s, p in zip(image.shape, patch)]
    box = tuple(slice(a, a + p) for a, p in zip(starts, patch))
    img = image[box].reshape(1, *patch).astype(np.float32)
    return torch.from_numpy(img), torch.from_numpy(label[box].astype(np.int64))


def ref_dice_loss(score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """UA-MT's foreground Dice loss: 1 - (2 sum(s t) + eps) / (sum(s^2) + sum(t^2) + eps)."""
    target = target.float()
    eps = 1e-5
    inter = (score * target).sum()
    return 1 - (2 * inter + eps) / ((score * score).sum() + (target * target).sum() + eps)


class ReferenceStep:
    """One iteration of the reference Mean Teacher (``uamt=False``) or UA-MT loop, contiguous format."""

    def __init__(self, net: VNet, rc, uamt: bool, dev: torch.device, volumes, seed: int = 0):
        self.model = net.to(dev).train()
        self.ema = copy.deepcopy(net).to(dev).train()
        for p in self.ema.parameters():
            p.detach_()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=rc.lr, momentum=rc.momentum,
                                   weight_decay=rc.weight_decay)
        self.rc, self.uamt, self.dev, self.volumes = rc, uamt, dev, volumes
        self.rng = np.random.RandomState(seed)
        self.T = 8

    def batch(self, it: int):
        n_lab = self.rc.labeled_bs
        idx = [0] * n_lab + [1 + (it * 2 + j) % (len(self.volumes) - 1) for j in range(self.rc.batch_size - n_lab)]
        items = [ref_item(*self.volumes[i], self.rc.patch_size, self.rng) for i in idx]
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])

    def __call__(self, it: int) -> float:
        rc, lbs = self.rc, self.rc.labeled_bs
        volume_batch, label_batch = self.batch(it)
        volume_batch, label_batch = volume_batch.to(self.dev), label_batch.to(self.dev)
        unl = volume_batch[lbs:]
        ema_inputs = unl + torch.clamp(torch.randn_like(unl) * 0.1, -0.2, 0.2)
        outputs = self.model(volume_batch)
        with torch.no_grad():
            ema_output = self.ema(ema_inputs)
        if self.uamt:
            vr = unl.repeat(2, 1, 1, 1, 1)
            stride = vr.shape[0] // 2
            preds = torch.zeros([stride * self.T, 2, *rc.patch_size], device=self.dev)
            for i in range(self.T // 2):
                noisy = vr + torch.clamp(torch.randn_like(vr) * 0.1, -0.2, 0.2)
                with torch.no_grad():
                    preds[2 * stride * i : 2 * stride * (i + 1)] = self.ema(noisy)
            preds = F.softmax(preds, dim=1).reshape(self.T, stride, 2, *rc.patch_size).mean(0)
            uncertainty = -1.0 * torch.sum(preds * torch.log(preds + 1e-6), dim=1, keepdim=True)
        loss_seg = F.cross_entropy(outputs[:lbs], label_batch[:lbs])
        outputs_soft = F.softmax(outputs, dim=1)
        loss_dice = ref_dice_loss(outputs_soft[:lbs, 1], label_batch[:lbs] == 1)
        supervised = 0.5 * (loss_seg + loss_dice)
        weight = rc.consistency * sigmoid_rampup(it // 150, rc.consistency_rampup)
        dist = (F.softmax(outputs[lbs:], dim=1) - F.softmax(ema_output, dim=1)) ** 2
        if self.uamt:
            threshold = (0.75 + 0.25 * sigmoid_rampup(it, rc.steps)) * math.log(2)
            mask = (uncertainty < threshold).float()
            dist = torch.sum(mask * dist) / (2 * torch.sum(mask) + 1e-16)
        else:
            dist = torch.mean(dist)
        loss = supervised + weight * dist
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        alpha = min(1 - 1 / (it + 1), rc.ema_decay)
        for ema_p, p in zip(self.ema.parameters(), self.model.parameters()):
            ema_p.data.mul_(alpha).add_(p.data, alpha=1 - alpha)
        return float(loss.detach())


class OurStep:
    """One iteration of :func:`sfr_teach.ssl.trainer.train`'s loop body (channels_last_3d, bf16 on CUDA)."""

    def __init__(self, net: VNet, rc, method: str, dev: torch.device, volumes, seed: int = 0):
        from sfr_teach.ssl import build_method
        from sfr_teach.ssl.batches import CropBatcher
        from sfr_teach.torch_utils import autocast

        self.fmt = torch.channels_last_3d
        self.student = net.to(dev).to(memory_format=self.fmt)
        self.method = build_method(method, self.student, rc, 2)
        self.method.need_unlabeled_logits = False
        self.method.train()
        self.opt = torch.optim.SGD(self.method.parameters(), lr=rc.lr, momentum=rc.momentum,
                                   weight_decay=rc.weight_decay)
        lab = [{"image": volumes[0][0][None].astype(np.float32), "label": volumes[0][1][None].astype(np.uint8)}]
        unl = [{"image": v[0][None].astype(np.float32)} for v in volumes[1:]]
        bl = rc.labeled_bs
        self.batcher = CropBatcher(lab, unl, rc.patch_size, bl, rc.batch_size - bl, seed)
        self.dev, self.autocast = dev, autocast

    def __call__(self, it: int) -> float:
        batch = {k: v.to(self.dev, non_blocking=True) for k, v in self.batcher.batch(it).items()}
        batch["image"] = batch["image"].contiguous(memory_format=self.fmt)
        with self.autocast(self.dev):
            res = self.method.step(batch, it)
        self.opt.zero_grad(set_to_none=True)
        res.loss.backward()
        self.opt.step()
        self.method.after_step(it)
        return float(res.loss.detach())


def bench_training(args, dev: torch.device) -> list:
    rc = get_config("paper").retrain
    rc.patch_size, rc.n_filters = tuple(args.train_patch), args.filters
    rng = np.random.default_rng(0)
    shape = tuple(int(p * 1.5) for p in rc.patch_size)  # volumes larger than the patch, as LA crops
    volumes = [(rng.standard_normal(shape).astype(np.float32), (rng.random(shape) > 0.7).astype(np.uint8))
               for _ in range(5)]
    rows = []
    for method in args.methods:
        torch.manual_seed(0)
        net = VNet(n_classes=2, n_filters=rc.n_filters)
        steps = {"reference": ReferenceStep(copy.deepcopy(net), rc, method == "ua_mt", dev, volumes),
                 "ours": OurStep(copy.deepcopy(net), rc, method, dev, volumes)}
        times = {k: [] for k in steps}
        cpu = {k: [] for k in steps}
        for it in range(args.warmup + args.reps):
            for name, step in steps.items():
                _sync(dev)
                t, c = time.perf_counter(), time.process_time()
                step(it)
                _sync(dev)
                if it >= args.warmup:
                    times[name].append(time.perf_counter() - t)
                    cpu[name].append(time.process_time() - c)
        ref, ours = statistics.median(times["reference"]), statistics.median(times["ours"])
        rc_, oc_ = statistics.median(cpu["reference"]), statistics.median(cpu["ours"])
        rows.append((f"training step {method}", ref, ours))
        rows.append((f"training step {method}, CPU seconds (all threads)", rc_, oc_))
        print(f"  {method}: reference {ref:.3f} s/step, ours {ours:.3f} s/step, ratio {ref / ours:.2f}x; "
              f"CPU s/step ref {rc_:.3f}, ours {oc_:.3f}, ratio {rc_ / oc_:.2f}x "
              f"(runs: ref {[round(t, 2) for t in times['reference']]}, ours {[round(t, 2) for t in times['ours']]})",
              flush=True)
    return rows


# ------------------------------------------------------------------ evaluation
def ref_test_single_case(net, image: np.ndarray, stride_xy: int, stride_z: int, patch, num_classes: int, dev):
    """The reference ``test_single_case`` loop: one numpy window at a time, score/count maps on the host."""
    w, h, d = image.shape
    pads = [max(p - s, 0) for p, s in zip(patch, image.shape)]
    widths = [(p // 2, p - p // 2) for p in pads]
    if any(pads):
        image = np.pad(image, widths, mode="constant", constant_values=0)
    ww, hh, dd = image.shape
    sx = math.ceil((ww - patch[0]) / stride_xy) + 1
    sy = math.ceil((hh - patch[1]) / stride_xy) + 1
    sz = math.ceil((dd - patch[2]) / stride_z) + 1
    score_map = np.zeros((num_classes,) + image.shape, dtype=np.float32)
    cnt = np.zeros(image.shape, dtype=np.float32)
    for x in range(sx):
        xs = min(stride_xy * x, ww - patch[0])
        for y in range(sy):
            ys = min(stride_xy * y, hh - patch[1])
            for z in range(sz):
                zs = min(stride_z * z, dd - patch[2])
                box = (slice(xs, xs + patch[0]), slice(ys, ys + patch[1]), slice(zs, zs + patch[2]))
                window = torch.from_numpy(image[box][None, None].astype(np.float32)).to(dev)
                with torch.no_grad():
                    prob = F.softmax(net(window), dim=1).cpu().numpy()[0]
                score_map[(slice(None), *box)] += prob
                cnt[box] += 1
    score_map = score_map / cnt[None]
    label_map = np.argmax(score_map, axis=0)
    if any(pads):
        crop = tuple(slice(a, a + n) for (a, _), n in zip(widths, (w, h, d)))
        label_map = label_map[crop]
    return label_map, sx * sy * sz


def calibrate_batchnorm(net: VNet, image: np.ndarray, patch) -> None:
    """Batch-norm running statistics = the mean of two centre windows of ``image`` (train-mode pass)."""
    from sfr_teach.data.transforms import center_crop_or_pad

    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    window = torch.from_numpy(center_crop_or_pad(image, patch).astype(np.float32))[None, None]
    net.train()
    with torch.no_grad():
        net(window.repeat(2, 1, 1, 1, 1))
    net.eval()


def bench_evaluation(args, dev: torch.device) -> list:
    from sfr_teach.data import LADataset
    from sfr_teach.data.paths import resolve_la_dir
    from sfr_teach.evaluate import sliding_window_predict

    ds = LADataset(resolve_la_dir(args.data_dir))
    name = args.case or (ds.test_names or ds.train_names)[0]
    image = ds.load(name).image.astype(np.float32)
    torch.manual_seed(0)
    net = VNet(n_classes=2, n_filters=args.filters)
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=False)
        net.load_state_dict(state.get("student", state))
    else:  # random weights with batch-norm statistics of this volume, so the label map is not one class
        calibrate_batchnorm(net, image, tuple(args.eval_patch))
    ref_net = copy.deepcopy(net).to(dev).eval()  # the reference: default memory format, fp32
    our_net = copy.deepcopy(net).to(dev).to(memory_format=torch.channels_last_3d)  # as the trainer returns it
    patch, (sxy, _, sz) = tuple(args.eval_patch), args.eval_stride
    print(f"  volume {name} {image.shape}, patch {patch}, stride {tuple(args.eval_stride)}, "
          f"weights {'from ' + str(args.weights) if args.weights else 'random (seed 0)'}", flush=True)
    times = {"reference": [], "ours": []}
    for _ in range(args.eval_reps):
        _sync(dev)
        t = time.perf_counter()
        ref_label, n_win = ref_test_single_case(ref_net, image, sxy, sz, patch, 2, dev)
        _sync(dev)
        times["reference"].append(time.perf_counter() - t)
        t = time.perf_counter()
        prob = sliding_window_predict(our_net, image, patch, tuple(args.eval_stride), 2, device=dev,
                                      batch_size=args.eval_batch)
        _sync(dev)
        times["ours"].append(time.perf_counter() - t)
    ours_label = prob.argmax(0)
    agree = float((ours_label == ref_label).mean())
    ref, ours = statistics.median(times["reference"]), statistics.median(times["ours"])
    print(f"  {n_win} windows: reference {ref:.1f} s, ours {ours:.1f} s (batch {args.eval_batch}), "
          f"ratio {ref / ours:.2f}x; label maps agree on {agree:.6f} of voxels "
          f"({'identical' if agree == 1.0 else f'{int((ours_label != ref_label).sum())} differ'}), "
          f"foreground {float(ref_label.mean()):.3f}", flush=True)
    return [(f"LA evaluation ({n_win} windows)", ref, ours)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (ours runs bf16 autocast on CUDA, as the trainer)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2: the classroom laptop)")
    ap.add_argument("--methods", nargs="+", default=["mean_teacher", "ua_mt"], choices=["mean_teacher", "ua_mt"])
    ap.add_argument("--train-patch", nargs=3, type=int, default=[64, 64, 48])
    ap.add_argument("--filters", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3, help="timed training steps per side")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--data-dir", default=None, help="LA folder holding train.list (default $SFR_LA_DIR)")
    ap.add_argument("--case", default=None, help="LA volume name (default: the first test volume)")
    ap.add_argument("--weights", default=None, help="a V-Net model.pt / checkpoint.pt (default random weights)")
    ap.add_argument("--eval-patch", nargs=3, type=int, default=[112, 112, 80])
    ap.add_argument("--eval-stride", nargs=3, type=int, default=[18, 18, 4], help="x y z (x and y must match)")
    ap.add_argument("--eval-batch", type=int, default=4, help="windows per forward in our evaluation")
    ap.add_argument("--eval-reps", type=int, default=1)
    args = ap.parse_args(argv)
    if args.eval_stride[0] != args.eval_stride[1]:
        ap.error("--eval-stride: the reference loop has one stride for x and y; give equal x and y")
    dev = torch.device(args.device)
    if dev.type == "cpu":
        torch.set_num_threads(args.threads)
    print(f"machine: {cpu_name()} ({os.cpu_count()} logical cores), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()} (interop {torch.get_num_interop_threads()}); device {dev}"
          + (f" {torch.cuda.get_device_name(0)} (ours bf16 autocast, reference fp32)" if dev.type == "cuda" else ""))
    print(f"before: {load_avg()}", flush=True)
    rows = []
    if not args.skip_train:
        print(f"training: batch 4 (2 labelled), patch {tuple(args.train_patch)}, {args.filters} filters, "
              f"{args.reps} interleaved repetitions after {args.warmup} warm-up", flush=True)
        rows += bench_training(args, dev)
    if not args.skip_eval:
        print("evaluation:", flush=True)
        rows += bench_evaluation(args, dev)
    print(f"after: {load_avg()}\n")
    print("| what | reference s | ours s | ratio (ref / ours) |\n|---|---|---|---|")
    for what, ref, ours in rows:
        print(f"| {what} | {ref:.3f} | {ours:.3f} | {ref / ours:.2f}x |")


if __name__ == "__main__":
    main()
