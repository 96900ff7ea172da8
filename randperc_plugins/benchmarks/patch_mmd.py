"""Benchmark of the patch-MMD loss: exact blocked vs naive dense vs geomloss vs random features.

    python tools/benchmark.py patch-mmd [--device cpu|cuda] [--quick] [--kernels [N]]

Every case is a forward and a backward pass of the MMD² between two images with 7x7 RGB patches
(d = 147) at stride 1; N is the number of patches per image. Times and peak memories are reported
as ratios to the exact method measured in the same run (see :mod:`.common`), relative errors
against the exact MMD² in float64 (in float32 where float64 would take too long).

Table 1 (one bandwidth, sigma = 2.45, so that geomloss' single-bandwidth Gaussian
``SamplesLoss('gaussian', blur=sigma, backend='tensorized')``, which returns MMD²/2, compares):

* ``exact``: :func:`patch_mmd` ``method='exact'`` (float32, default blocks of 512);
* ``dense``: the naive form, ``cdist`` + ``exp`` of the three full kernel matrices (quadratic memory);
* ``geomloss``: when the optional ``geomloss`` is installed;
* ``rf``: ``method='random_features'`` with 1024 features.

The dense forms run only where their estimated memory fits (on a 2-core CPU with 23 GB, N <= 16k by
default, N <= 4k with ``--quick``); the exact and random-feature methods run up to N = 64k by
default (N = 8k with ``--quick``). Table 2 is the SR training shapes: batches of 4 crops of the sizes
MMagic's DIV2K configs train on (96, 128 and 196; only 96 with ``--quick``), with the default 4
bandwidths, against a 2x down-and-up-sampled prediction, for several ``num_features``; the errors are
averaged over ``SR_SEEDS`` feature draws.

``--kernels N`` prints instead one table at N patches (2025 by default): the exact method with
``kernel='random_cnn'`` (depth 7) against the exact Gaussian sums (one and four bandwidths), timed in
turns in the same process.
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from .common import (format_table, mib, peak_memory_call, synchronize,
                             time_in_turns)
from ..losses.patch_mmd import extract_patches, patch_mmd

try:  # optional extra
    from geomloss import SamplesLoss
except ImportError:  # pragma: no cover - depends on the environment
    SamplesLoss = None

PATCH = 7
SIGMA = 2.45  # one of the default bandwidths for 7x7 patches (0.05 * 7^2)
SR_FEATURES = (1024, 2048, 3072)  # random features per bandwidth in the SR table
SR_SEEDS = 20  # the error of one draw varies by about half its mean: 5 draws were not enough
SR_BATCH = 4  # time and memory grow linearly with the batch for every method: ratios do not depend on it
#: crop sides of MMagic's DIV2K configs (``PairedRandomCrop(gt_patch_size=...)``)
SR_SHAPES = ((96, "EDSR x2"), (128, "MSRResNet x4"), (196, "EDSR x4"))
SIDES = {1024: 38, 2025: 51, 4096: 70, 8100: 96, 16384: 134, 32761: 187, 65536: 262}


def _image(side: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A natural RGB crop (skimage's astronaut when available) or smooth random noise, in [0, 1]."""
    try:
        from skimage import data
        img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255.0
        crops = []
        g = torch.Generator().manual_seed(seed)
        for _ in range(batch):
            r, c = (int(torch.randint(0, 512 - side + 1, (1,), generator=g)) for _ in range(2))
            crops.append(img[:, r:r + side, c:c + side])
        return torch.stack(crops)
    except ImportError:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(batch, 3, side // 4 + 1, side // 4 + 1, generator=g)
        return F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)


def _degrade(x: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A plausible prediction: 2x down- and up-sampled, plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    small = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False,
                          antialias=True)
    up = F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return (up + 0.01 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _dense_mmd(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    P, _ = extract_patches(x, PATCH)
    Q, _ = extract_patches(y, PATCH)
    out = []
    for p, q in zip(P, Q):
        def k(a, b):
            return torch.exp(-torch.cdist(a, b).pow(2) / (2 * sigma * sigma)).mean()
        out.append(k(p, p) + k(q, q) - 2 * k(p, q))
    return torch.stack(out)


def _geomloss_mmd(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    P, _ = extract_patches(x, PATCH)
    Q, _ = extract_patches(y, PATCH)
    loss = SamplesLoss("gaussian", blur=sigma, backend="tensorized")
    return 2 * loss(P.contiguous(), Q.contiguous())  # geomloss returns MMD²/2


def _fwd_bwd(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x, y) -> Callable[[], float]:
    def run() -> float:
        xx = x.detach().clone().requires_grad_()
        v = fn(xx, y)
        v.sum().backward()
        return v
    return run


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    a, ref = a.detach().double().cpu(), ref.detach().double().cpu()
    return float(((a - ref).abs() / ref.abs()).mean())


def _measure(fns: Dict[str, Callable], x, y, device,
             repeat: Optional[int] = None) -> Dict[str, dict]:
    """Time (fwd+bwd), peak memory and value of each case. With ``repeat > 1`` the cases are warmed up,
    then timed in turn (see ``time_in_turns``); with ``repeat == 1`` the first call is the time
    (for the slowest cases, where a warm-up is a small part of a call); ``None`` picks it from the
    slowest first call (:func:`_repeats`)."""
    runs = {name: _fwd_bwd(fn, x, y) for name, fn in fns.items()}
    out = {}
    for name, run in runs.items():
        start = time.perf_counter()
        value = run()
        synchronize(device)
        out[name] = {"method": name, "time_s": time.perf_counter() - start, "value": value.detach()}
    if repeat is None:
        repeat = _repeats(max(c["time_s"] for c in out.values()))
    if repeat > 1:
        for name, seconds in time_in_turns(runs, device, repeat).items():
            out[name]["time_s"] = seconds
    for name, run in runs.items():
        out[name]["peak_mib"] = mib(peak_memory_call(run, device))
    return out


def _repeats(first_seconds: float) -> int:
    """Enough turns for about 2 s of the slowest case (3 to 15), one above 20 s."""
    return 1 if first_seconds > 20 else max(3, min(15, round(2.0 / max(first_seconds, 1e-3))))


def _dense_bytes(n: int) -> int:
    # the three N x N matrices, their distances and what autograd keeps (measured: ~2.3 GB at 8100)
    return 36 * n * n


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def run(device: torch.device, quick: bool) -> List[dict]:
    """Both tables as rows (dicts with a ``table`` key)."""
    rows: List[dict] = []
    sizes = [1024, 2025, 4096, 8100] if quick else list(SIDES)
    dense_max = 4096 if quick else 16384
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
        dense_ok = lambda n: _dense_bytes(n) < 0.8 * free  # noqa: E731
    else:
        dense_ok = lambda n: n <= dense_max and _dense_bytes(n) < 0.7 * _available_bytes()  # noqa: E731
    previous: Dict[str, Optional[float]] = {}
    for n in sizes:
        side = SIDES[n]
        x = _image(side, seed=n).to(device)
        y = _degrade(x.cpu()).to(device)
        kw = dict(patch_size=PATCH, sigmas=(SIGMA,))
        float64_ref = n <= (8100 if device.type == "cuda" else 4096)
        ref = patch_mmd(x.double(), y.double(), **kw) if float64_ref else None
        fns = {"exact": lambda a, b: patch_mmd(a, b, **kw)}
        if dense_ok(n):
            fns["dense"] = lambda a, b: _dense_mmd(a, b, SIGMA)
            if SamplesLoss is not None:
                fns["geomloss"] = lambda a, b: _geomloss_mmd(a, b, SIGMA)
        fns["rf"] = lambda a, b: patch_mmd(a, b, method="random_features", **kw)
        cases = _measure(fns, x, y, device)
        exact = cases["exact"]
        if ref is None:
            ref = exact["value"]
        for c in cases.values():
            value = c.pop("value")
            c.update(table="scaling", N=n, ref="float64" if float64_ref else "exact float32",
                     rel_err=None if (c is exact and not float64_ref) else _rel(value, ref))
            c["time_vs_exact"] = c["time_s"] / exact["time_s"]
            c["mem_vs_exact"] = (None if c["peak_mib"] is None or not exact["peak_mib"]
                                 else c["peak_mib"] / exact["peak_mib"])
            prev = previous.get(c["method"])
            c["mem_growth"] = (None if prev is None or c["peak_mib"] is None or not prev
                               else c["peak_mib"] / prev)
            previous[c["method"]] = c["peak_mib"]
            rows.append(c)
        for m in ("dense", "geomloss"):
            if m not in cases:
                previous[m] = None
                rows.append({"table": "scaling", "N": n, "method": m,
                             "note": f"skipped: needs ~{_dense_bytes(n) / 2**30:.0f} GiB"
                             if SamplesLoss is not None or m == "dense" else "geomloss not installed"})

    # SR training shapes: batches of the crops of the DIV2K configs, default bandwidths
    for side, config in (SR_SHAPES[:1] if quick else SR_SHAPES):
        batch = SR_BATCH
        x = _image(side, batch=batch, seed=7).to(device)
        y = _degrade(x.cpu()).to(device)
        exact = _measure({"exact": lambda a, b: patch_mmd(a, b, patch_size=PATCH)}, x, y, device,
                         1 if side > 128 else 2)["exact"]
        ref = exact.pop("value")  # exact in float32 (float64 would dominate the run)
        exact.update(rel_err=0.0, mmd_rel_err=0.0, loss_rel_err=0.0)
        fns = {f"rf D={d}": (lambda a, b, d=d: patch_mmd(a, b, patch_size=PATCH,
                                                          method="random_features", num_features=d))
               for d in SR_FEATURES}
        sr_rows = [exact]
        for name, row in _measure(fns, x, y, device, 3).items():
            row.pop("value")
            d = int(name.split("=")[1])
            # the error depends on the draw: average it over a few seeds (forward only)
            draws = [patch_mmd(x, y, patch_size=PATCH, method="random_features", num_features=d,
                               seed=seed).detach() for seed in range(SR_SEEDS)]
            row["rel_err"] = sum(_rel(v, ref) for v in draws) / SR_SEEDS
            row["mmd_rel_err"] = sum(_rel(v.clamp(min=0).sqrt(), ref.sqrt()) for v in draws) / SR_SEEDS
            row["loss_rel_err"] = sum(_rel(v.clamp(min=0).sqrt().mean(), ref.sqrt().mean())
                                      for v in draws) / SR_SEEDS
            sr_rows.append(row)
        n = (side - PATCH + 1) ** 2
        for c in sr_rows:
            c.update(table="sr", shape=f"{batch}x3x{side}x{side} ({config})", N=f"{batch}x{n}",
                     speedup=exact["time_s"] / c["time_s"])
            rows.append(c)
    return rows


def kernel_rows(device: torch.device, n: int = 2025) -> List[dict]:
    """The exact method per kernel at ``n`` patches (a key of ``SIDES``), fwd+bwd, in turns."""
    x = _image(SIDES[n], seed=n).to(device)
    y = _degrade(x.cpu()).to(device)
    fns = {"gaussian, 1 sigma": lambda a, b: patch_mmd(a, b, patch_size=PATCH, sigmas=(SIGMA,)),
           "gaussian, 4 sigmas": lambda a, b: patch_mmd(a, b, patch_size=PATCH),
           "random_cnn, depth 7": lambda a, b: patch_mmd(a, b, patch_size=PATCH, kernel="random_cnn")}
    cases = _measure(fns, x, y, device)
    base = cases["gaussian, 1 sigma"]["time_s"]
    for c in cases.values():
        c.pop("value")
        c.update(table="kernels", N=n, time_vs_gaussian=c["time_s"] / base)
    return list(cases.values())


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sweep (a few minutes on a CPU)")
    parser.add_argument("--kernels", type=int, nargs="?", const=2025, choices=sorted(SIDES),
                        metavar="N", help="only compare the exact kernels at N patches (2025)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.kernels:
        print(f"## Patch-MMD exact, fwd+bwd, 7x7 RGB patches, per kernel, {device}, "
              f"{torch.get_num_threads()} threads\n")
        print(format_table(kernel_rows(device, args.kernels),
                           ["N", "method", "time_s", "time_vs_gaussian", "peak_mib"]))
        return
    rows = run(device, args.quick)
    print(f"## Patch-MMD, fwd+bwd, 7x7 RGB patches (d = 147), one sigma = {SIGMA}, {device}, "
          f"{torch.get_num_threads()} threads\n")
    print(format_table([r for r in rows if r["table"] == "scaling"],
                       ["N", "method", "time_s", "time_vs_exact", "peak_mib", "mem_vs_exact",
                        "mem_growth", "rel_err", "ref", "note"]))
    print("\nmem_growth: peak memory over that of the previous N (N about doubles: ~2 is linear, "
          "~4 quadratic).\n")
    print("## SR training shapes (7x7 patches, 4 default sigmas), fwd+bwd\n")
    print(format_table([r for r in rows if r["table"] == "sr"],
                       ["shape", "N", "method", "time_s", "speedup", "peak_mib", "rel_err",
                        "mmd_rel_err", "loss_rel_err"]))
    print(f"\nrel_err: mean over the batch of |MMD² - exact| / exact; mmd_rel_err: the same for the "
          f"MMD (what PatchMMDLoss returns by default); loss_rel_err: for the batch mean of the MMD "
          f"(the loss value of a step). Each averaged over {SR_SEEDS} feature draws.")


if __name__ == "__main__":
    main()
