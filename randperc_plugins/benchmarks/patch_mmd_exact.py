"""Benchmark of the exact Patch-MMD on whole images: the fused kernels per operand precision, the
blocked PyTorch sums and geomloss, with their errors against float64.

    python tools/benchmark.py patch-mmd-exact [--device cuda|cpu] [--sides 128 256 512] [--quick]

Every case is a forward and a backward pass of the MMD² between two ``1x3xSxS`` images with 7x7
patches at stride 1 (``(S - 6)^2`` patches each) and the 4 default bandwidths. Rows:

* ``fused fp32`` / ``fused tf32`` / ``fused bf16``: :func:`patch_mmd` ``method='exact'`` with
  ``precision=...`` (the Triton kernels on a CUDA device; on a CPU the PyTorch sums, one row);
* ``blocks``: the blocked PyTorch sums with the blocks the device gets by default;
* ``geomloss``: ``SamplesLoss('gaussian', blur=sigma, backend='tensorized')`` summed over the 4
  bandwidths, where the optional geomloss is installed and its ``N x N`` matrices fit;
* the relative error of the MMD² against the blocked sums in float64 (sides up to ``--ref-max``).

Times are medians of runs taken in turns (:mod:`.common`); the first row is the reference of the
``x`` column. Peak memory is the device's (CUDA) or the process's resident set (CPU).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Callable, Dict, List

import torch

from ..losses._kernel_sums import fused_kernels
from ..losses.patch_mmd import default_sigmas, patch_mmd
from .common import format_table, mib, peak_memory_call, time_in_turns

try:  # optional extra
    from geomloss import SamplesLoss
except ImportError:  # pragma: no cover - depends on the environment
    SamplesLoss = None

PATCH = 7


def _pair(side: int, device: torch.device):
    g = torch.Generator().manual_seed(side)
    x = torch.rand(1, 3, side, side, generator=g)
    # the target: the prediction smoothed and shifted, so that the MMD is small but not 0
    y = torch.nn.functional.avg_pool2d(x, 3, 1, 1).roll(1, -1)
    return x.to(device), y.to(device)


def _case(x: torch.Tensor, y: torch.Tensor, fused: bool = True,
          **settings) -> Callable[[], torch.Tensor]:
    def run():
        xg = x.detach().requires_grad_()
        with fused_kernels(fused):
            value = patch_mmd(xg, y, patch_size=PATCH, method="exact", validate_args=False,
                              **settings)
        value.sum().backward()
        return value.detach()
    return run


def _geomloss_case(x: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
    unfold = torch.nn.Unfold(PATCH)
    losses = [SamplesLoss("gaussian", blur=s, backend="tensorized") for s in default_sigmas(PATCH)]

    def run():
        xg = x.detach().requires_grad_()
        p, q = unfold(xg).transpose(1, 2), unfold(y).transpose(1, 2)
        # geomloss returns MMD^2 / 2 per bandwidth; the default weights are 1/4 each
        value = sum(loss(p, q) for loss in losses) * 2.0 / len(losses)
        value.sum().backward()
        return value.detach()
    return run


def measure(side: int, device: torch.device, ref_max: int, repeat: int) -> List[Dict[str, object]]:
    """Rows of one image side (see the module docstring)."""
    x, y = _pair(side, device)
    cases: Dict[str, Callable[[], torch.Tensor]] = {}
    if device.type == "cuda":
        for precision in ("fp32", "tf32", "bf16"):
            cases[f"fused {precision}"] = _case(x, y, precision=precision)
        cases["blocks"] = _case(x, y, fused=False)
    else:
        cases["blocks"] = _case(x, y)
    patches = (side - PATCH + 1) ** 2
    if SamplesLoss is not None and _dense_fits(patches, device):
        cases["geomloss"] = _geomloss_case(x, y)
    reference = None
    if side <= ref_max:
        reference = float(_case(x.double(), y.double())())
    values, rows = {}, []
    for name, fn in list(cases.items()):  # warm-up (and compilation); a failing case is a row
        try:
            values[name] = float(fn())
        except Exception as e:  # noqa: BLE001
            del cases[name]
            rows.append({"side": side, "patches": (side - PATCH + 1) ** 2, "method": name,
                         "seconds": f"{type(e).__name__}: {str(e)[:100]}"})
    times = time_in_turns(cases, device, repeat=repeat)
    first = next(iter(times.values()))
    for name, fn in cases.items():
        rows.append({
            "side": side, "patches": patches, "method": name,
            "seconds": round(times[name], 4), "x": round(times[name] / first, 3),
            "peak MiB": mib(peak_memory_call(fn, device)),
            "rel. error": (None if reference is None
                           else float(f"{abs(values[name] - reference) / abs(reference):.2e}")),
        })
    return rows


def _dense_fits(patches: int, device: torch.device) -> bool:
    """Whether geomloss' three ``N x N`` float32 matrices (and as many temporaries) fit."""
    need = 6 * 4 * patches * patches
    if device.type == "cuda":
        return need < torch.cuda.mem_get_info(device)[0] // 2
    return need < 8 << 30


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tools/benchmark.py patch-mmd-exact", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sides", type=int, nargs="+", default=None,
                        help="image sides (default 128 256 512 on a GPU, 32 48 on a CPU)")
    parser.add_argument("--ref-max", type=int, default=256,
                        help="largest side with a float64 reference (default 256)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the smallest side only")
    parser.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sides = args.sides or ([128, 256, 512] if device.type == "cuda" else [32, 48])
    if args.quick:
        sides = sides[:1]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"exact Patch-MMD, 7x7 patches, 4 bandwidths, fwd+bwd, on {name} (torch {torch.__version__})")
    rows: List[Dict[str, object]] = []
    for side in sides:
        rows += measure(side, device, args.ref_max, args.repeat)
    print(format_table(rows, ["side", "patches", "method", "seconds", "x", "peak MiB", "rel. error"]))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "rows": rows}, f, indent=1)
    return 0
