"""Cost of the random-CNN perceptual loss (forward + backward) against what users already pay.

    python tools/benchmark.py random-cnn [--device cpu|cuda] [--quick]

For each shape: median seconds and peak memory of one forward + backward of
:class:`randperc_plugins.losses.RandomCNNPerceptualLoss`, at its defaults, unbalanced
(``balance='none'``, release 0.2's default: the cost of the layer balance) and at full resolution
(``max_size=None``), as ratios to

* the framework model's train step measured in the same run: PSPNet-R50-D8 (mmseg's Cityscapes config)
  for the segmentation shape, EDSR x4 (mmagic's DIV2K config) for the SR shapes;
* mmagic's VGG-19 ``PerceptualLoss`` as SR configs use it (``layer_weights={'34': 1.0}``, relu5_4) with
  random weights (none can be downloaded), forward + backward on the same shape (on 3 channels for
  the segmentation shape: it only takes RGB).

Full shapes: segmentation batch 2, 19 classes, 512x1024 (softmax probabilities vs one-hot); SR batch 16
at 96x96 and batch 4 at 480x480. ``--quick`` (the default on a CPU) uses segmentation 256x512 and SR
batch 4 at 96x96 and batch 1 at 480x480. Framework columns read ``n/a`` where mmseg or mmagic cannot be
imported. Results are ratios within one run, on one machine; read them as such.
"""
from __future__ import annotations

import argparse
import contextlib
from typing import Callable, Dict, List, Optional

import torch

from .common import format_table, mib, peak_memory_call, time_in_turns

from ..losses.random_cnn import DEFAULT_MAX_SIZE, RandomCNNPerceptualLoss

COLUMNS = ["case", "shape", "setting", "loss s", "loss peak MiB", "model step s", "ratio to step",
           "VGG loss s", "ratio to VGG"]


def _seg_inputs(n, c, h, w, device):
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(n, c, h, w, generator=g), dim=1).to(device).requires_grad_(True)
    label = torch.randint(0, c, (n, h, w), generator=g)
    one_hot = torch.nn.functional.one_hot(label, c).permute(0, 3, 1, 2).float().to(device)
    return probs, one_hot


def _sr_inputs(n, h, w, device):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(n, 3, h, w, generator=g).to(device).requires_grad_(True)
    return pred, torch.rand(n, 3, h, w, generator=g).to(device)


def _loss_step(loss_fn, pred, target):
    def step():
        pred.grad = None
        loss_fn(pred, target).backward()
    return step


def _vgg_perceptual_loss(device):
    """mmagic's PerceptualLoss with random VGG-19 weights, or None without mmagic."""
    try:
        import mmagic.models.losses.perceptual_loss as mm_pl
        import torchvision
    except Exception:  # noqa: BLE001 - any import failure means: not available here
        return None
    random_vgg19 = lambda *args, **kwargs: torchvision.models.vgg19(weights=None)  # noqa: E731
    # mmagic builds VGG with `pretrained=True`, which downloads weights; use random ones instead.
    with _patched(mm_pl.vgg, "vgg19", random_vgg19):
        loss = mm_pl.PerceptualLoss(layer_weights={"34": 1.0}, vgg_type="vgg19",
                                    perceptual_weight=1.0, style_weight=0.0, norm_img=False,
                                    pretrained="")
    return loss.to(device)


@contextlib.contextmanager
def _patched(obj, name, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _vgg_step(vgg, shape, device) -> Optional[Callable[[], object]]:
    if vgg is None:
        return None
    n, _, h, w = shape
    pred, target = _sr_inputs(n, h, w, device)

    def step():
        pred.grad = None
        vgg(pred, target)[0].backward()
    return step


def _pspnet_step(size, batch, device) -> Optional[Callable[[], object]]:
    try:
        import mmseg  # noqa: F401
    except ImportError:  # the framework is not installed: no step to compare with
        return None
    from . import _framework_models as fm

    model = fm.build_pspnet_r50(size=size).to(device)
    data = fm.to_device(fm.seg_batch(model, size=size, batch=batch), device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    return lambda: fm.train_step(model, data, optimizer)


def _edsr_step(gt_size, batch, device) -> Optional[Callable[[], object]]:
    try:
        import mmagic  # noqa: F401
    except ImportError:  # the framework is not installed: no step to compare with
        return None
    from . import _framework_models as fm

    model = fm.build_edsr().to(device)
    data = fm.sr_batch(model, lq_size=gt_size // 4, batch=batch)
    samples = data["data_samples"]
    samples = [s.to(device) for s in samples] if isinstance(samples, list) else samples.to(device)
    data = {"inputs": data["inputs"].to(device), "data_samples": samples}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    return lambda: fm.train_step(model, data, optimizer)


def _ratio(a, b):
    return None if a is None or b is None else a / b


def _case_rows(case: str, shape, losses: Dict[str, Callable[[], object]],
               step: Optional[Callable[[], object]], vgg: Optional[Callable[[], object]],
               device: torch.device, repeat: int) -> List[Dict[str, object]]:
    """Time the losses, the model step and the VGG loss of one case in turn (a, b, c, a, b, c, ...),
    so that a change in the machine's load affects them alike; median of ``repeat`` turns each."""
    fns = dict(losses)
    if step is not None:
        fns["step"] = step
    if vgg is not None:
        fns["vgg"] = vgg
    for fn in fns.values():
        fn()  # warm-up
    seconds = time_in_turns(fns, device, repeat)
    step_s, vgg_s = seconds.get("step"), seconds.get("vgg")
    rows = []
    for label, fn in losses.items():
        rows.append({"case": case, "shape": "x".join(map(str, shape)), "setting": label,
                     "loss s": seconds[label], "loss peak MiB": mib(peak_memory_call(fn, device)),
                     "model step s": step_s, "ratio to step": _ratio(seconds[label], step_s),
                     "VGG loss s": vgg_s, "ratio to VGG": _ratio(seconds[label], vgg_s)})
    return rows


def run(device: torch.device, quick: bool, repeat: Optional[int] = None) -> List[Dict[str, object]]:
    """Rows (dicts keyed by :data:`COLUMNS`) for a Markdown table."""
    repeat = repeat if repeat is not None else (1 if quick else 3)
    seg = (2, 19, 256, 512) if quick else (2, 19, 512, 1024)
    sr_small = (4, 3, 96, 96) if quick else (16, 3, 96, 96)
    sr_large = (1, 3, 480, 480) if quick else (4, 3, 480, 480)
    settings = [(f"max_size={DEFAULT_MAX_SIZE} (default)", {}), ("balance='none' (0.2)", {"balance": "none"}),
                ("max_size=None", {"max_size": None})]
    vgg = _vgg_perceptual_loss(device)

    pred, target = _seg_inputs(*seg, device)
    losses = {label: _loss_step(RandomCNNPerceptualLoss(**kw).to(device), pred, target)
              for label, kw in settings}
    rows = _case_rows("seg vs PSPNet-R50", seg, losses, _pspnet_step(seg[2:], seg[0], device),
                      _vgg_step(vgg, (seg[0], 3, *seg[2:]), device), device, repeat)
    del pred, target, losses

    for shape in (sr_small, sr_large):
        pred, target = _sr_inputs(shape[0], shape[2], shape[3], device)
        losses = {label: _loss_step(RandomCNNPerceptualLoss(**kw).to(device), pred, target)
                  for label, kw in settings
                  # full resolution is the same computation as the default below max_size
                  if not ("max_size" in kw and max(shape[2:]) <= (DEFAULT_MAX_SIZE or 0))}
        rows += _case_rows("SR vs EDSR x4", shape, losses, _edsr_step(shape[2], shape[0], device),
                           _vgg_step(vgg, shape, device), device, repeat)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help="smaller shapes, one timed repeat (the default on a CPU)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (torch.set_num_threads); 1 gives stable ratios on a shared "
                             "machine, where OpenMP threads wait on each other")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed repeats per case, median kept (default: 1 with quick shapes, else 3)")
    parser.add_argument("--full", action="store_true",
                        help="the training shapes even on a CPU (minutes per PSPNet step)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    quick = args.quick or (device.type == "cpu" and not args.full)
    rows = run(device, quick, args.repeat)
    print(f"Random-CNN perceptual loss, forward + backward, {device.type}, "
          f"{torch.get_num_threads()} threads{', quick shapes' if quick else ''}")
    print(format_table(rows, COLUMNS))


if __name__ == "__main__":
    main()
