"""What both core losses share: input checks, weight masks, reductions, precision and seeded generators.

Imports torch only. Every check raises an exception that names the argument, what was expected and
what came (never ``assert``, which ``python -O`` removes).
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def no_autocast(device: torch.device):
    """A context that disables autocast on ``device``'s type (a no-op on ``meta``, which has no
    autocast and on which shapes and op counts are worked out). Plain Python, so that
    ``torch.compile`` traces it."""
    device_type = torch.device(device).type
    if device_type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def host_to_device(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device``; from the CPU to a GPU through pinned memory and without blocking the
    host (a copy from pageable memory waits for the stream; the caching host allocator keeps the
    pinned buffer until the copy is done). A tensor already off the CPU is moved as ``t.to`` does
    (a no-op where it already is)."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``'mean'``, ``'sum'``, ``'none'``; raise otherwise."""
    return check_choice(reduction, REDUCTIONS, "reduction")


def reduce_per_sample(per_sample: Tensor, reduction: str) -> Tensor:
    """Reduce a per-sample loss of shape ``[N]`` to a scalar (``mean``/``sum``) or keep it (``none``)."""
    if reduction == "mean":
        if per_sample.shape[0] == 0:  # an empty batch: 0 with a gradient, not the NaN of an empty mean
            return per_sample.sum()
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def check_image_pair(pred: Tensor, target: Tensor, pred_name: str = "pred",
                     target_name: str = "target", validate_args: bool = True) -> None:
    """Check two ``(N, C, H, W)`` floating tensors of the same shape and (with ``validate_args``, a
    host read) that both are finite.

    Raises:
        TypeError: if either is not a floating-point tensor.
        ValueError: if either is not 4-D, the shapes differ, or the target holds NaN or Inf.
    """
    check_image(pred, pred_name, finite=validate_args)
    check_image(target, target_name, finite=validate_args)
    if pred.shape != target.shape:
        raise ValueError(f"`{pred_name}` and `{target_name}` must have the same shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def check_image(t: Tensor, name: str, finite: bool = True) -> None:
    """Check one ``(N, C, H, W)`` floating tensor (and, with ``finite``, that it holds no NaN or Inf)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"`{name}` must be a floating-point tensor, got dtype {t.dtype}")
    if t.dim() != 4:
        raise ValueError(f"`{name}` must have shape (N, C, H, W), got {tuple(t.shape)}")
    if finite:
        check_finite(t, name)


def check_finite(t: Tensor, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` if ``t`` holds NaN or Inf."""
    if not torch.isfinite(t).all():
        raise ValueError(f"`{name}` must be finite, but it holds NaN or Inf")


def as_weight_mask(weight: Optional[Tensor], like: Tensor, name: str = "weight",
                   validate_args: bool = True) -> Optional[Tensor]:
    """Turn a per-pixel weight of shape ``(N, H, W)`` or ``(N, 1, H, W)`` into ``(N, 1, H, W)``.

    The mask is returned in ``like``'s dtype and device (floating). Pixels with weight 0 (such as an
    ignored label) are the ones the losses leave out. ``None`` stays ``None``. With
    ``validate_args`` (host reads) the weight must be finite and non-negative; without, a negative or
    NaN weight is returned as 0 (the pixel is ignored), with no host read.

    Raises:
        ValueError: if the shape does not match ``like``'s batch and spatial size, or (with
            ``validate_args``) the weight holds NaN, Inf or a negative value.
    """
    if weight is None:
        return None
    if not isinstance(weight, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor or None, got {type(weight).__name__}")
    n, _, h, w = like.shape
    if weight.dim() == 3:
        weight = weight.unsqueeze(1)
    if weight.dim() != 4 or weight.shape[1] != 1 or weight.shape[0] != n or weight.shape[2:] != (h, w):
        raise ValueError(f"`{name}` must have shape ({n}, {h}, {w}) or ({n}, 1, {h}, {w}), "
                         f"got {tuple(weight.shape)}")
    if validate_args:
        if weight.is_floating_point():
            check_finite(weight, name)
        if bool((weight < 0).any()):
            raise ValueError(f"`{name}` must be non-negative, but it holds a negative value")
    if weight.dtype == torch.bool or not weight.is_floating_point():
        weight = weight.to(torch.float32)
    weight = weight.to(device=like.device, dtype=like.dtype)
    # without validation a negative or NaN weight ignores its pixel (NaN > 0 is False), in both losses
    return torch.where(weight > 0, weight, torch.zeros((), dtype=weight.dtype, device=weight.device))


def compute_dtype(*tensors: Tensor, accumulate: Optional[torch.dtype] = None) -> torch.dtype:
    """The precision a loss computes in: float64 if any input is float64 (or asked), else float32.

    Half-precision inputs (float16, bfloat16) are promoted, because sums of squared differences over
    many pixels or patches overflow or cancel in 16 bits.
    """
    if accumulate is not None:
        if accumulate not in (torch.float32, torch.float64):
            raise ValueError(f"`accumulate_dtype` must be torch.float32 or torch.float64, got {accumulate}")
        return accumulate
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def check_max_size(max_size) -> Optional[int]:
    """Return ``max_size`` if it is a positive int or ``None``; raise ``ValueError`` otherwise."""
    if max_size is None:
        return None
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 1:
        raise ValueError(f"`max_size` must be a positive int or None, got {max_size!r}")
    return max_size


def reduced_size(h: int, w: int, max_size: Optional[int]):
    """``(h, w)`` scaled (aspect ratio kept) so that the longer side is at most ``max_size``."""
    if max_size is None or max(h, w) <= max_size:
        return h, w
    scale = max_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def area_resize(x: Tensor, size) -> Tensor:
    """Area (box-average) resize of ``(N, C, H, W)`` to ``size``; the input itself when already there."""
    size = tuple(size)
    return x if tuple(x.shape[-2:]) == size else torch.nn.functional.interpolate(x, size=size, mode="area")


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``; raise ``ValueError`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    return value


def check_choice(value, choices, name: str):
    """Return ``value`` if it is one of ``choices``; raise ``ValueError`` naming ``name`` otherwise."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}, got {value!r}")
    return value


def check_validate_args(value) -> bool:
    """``validate_args`` must be a plain bool (a tensor here would itself be a host read)."""
    if not isinstance(value, bool):
        raise TypeError(f"`validate_args` must be a bool, got {type(value).__name__}")
    return value


def check_loss_weight(value, name: str = "loss_weight") -> float:
    """Return ``value`` as a float if it is a finite, non-negative real number.

    A negative weight would train the model to maximise the distance (detectron2's YAML uses -1 to mean
    "the task default": the same number in a Python config must not flip the sign silently); a string
    or a bool is a mistake in a config, not a weight.

    Raises:
        TypeError: if ``value`` is not an int or a float (a bool or a string included).
        ValueError: if it is negative, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a non-negative number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite, non-negative number (0 disables the term), got "
                         f"{value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """Return ``value`` if it is a bool; raise ``TypeError`` otherwise (``'False'`` is a non-empty
    string, which Python would read as True)."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_seed(seed) -> int:
    """Return ``seed`` if it is an int (not a bool); raise ``TypeError`` otherwise."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"`seed` must be an int, got {type(seed).__name__}")
    return seed


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: draws from it are bit-identical on every process and
    machine, and the global RNG stream stays untouched."""
    check_seed(seed)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def _is_real(value) -> bool:
    """A real number given as a Python or NumPy scalar (not a bool, a string or a tensor)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(value, name: str, minimum: Optional[float] = None, positive: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number (``>= minimum``, or ``> 0`` with
    ``positive``); raise otherwise.

    Raises:
        TypeError: if ``value`` is not a real number (a string, a bool, None, a tensor).
        ValueError: if it is NaN, infinite or out of range.
    """
    if not _is_real(value):
        raise TypeError(f"`{name}` must be a real number (int or float), got {value!r} "
                        f"({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum:g}, got {value!r}")
    return value


def check_numbers(values, name: str) -> Tuple[float, ...]:
    """A sequence of finite real numbers (or one number) as a tuple of floats; a string is refused
    (it would otherwise be read character by character).

    Raises:
        TypeError: if ``values`` is a string or holds something that is not a real number.
        ValueError: if a value is NaN or infinite.
    """
    if _is_real(values):
        values = (values,)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"`{name}` must be a number or a sequence of numbers, got {values!r} "
                        f"({type(values).__name__})")
    out = []
    for v in values:
        if not _is_real(v):
            raise TypeError(f"`{name}` must be a number or a sequence of numbers, got {values!r} "
                            f"(holding {v!r}, {type(v).__name__})")
        if not math.isfinite(float(v)):
            raise ValueError(f"`{name}` must hold finite numbers, got {tuple(values)!r}")
        out.append(float(v))
    return tuple(out)


#: With ``validate_args``, values outside this interval mean that images (or probabilities, masks)
#: are not in ``[0, 1]``: an SR output overshoots ``[0, 1]`` a little, ``[-1, 1]`` images have pixels
#: below -0.5, ``[0, 255]`` images above 1.5.
UNIT_RANGE_TOLERANCE: Tuple[float, float] = (-0.5, 1.5)


def value_stats(tensors: Dict[str, Tensor],
                masks: Optional[Dict[str, Optional[Tensor]]] = None) -> Dict[str, Tuple[bool, float, float]]:
    """``{name: (finite, min, max)}`` of each tensor, read on the host in one synchronisation. The
    range is that of the finite values where ``masks[name]`` (broadcastable, e.g. ``(N, 1, H, W)``) is
    positive: ignored pixels may hold anything in range. A tensor without such a value has the range
    ``(inf, -inf)``."""
    masks = masks or {}
    parts = []
    for name, t in tensors.items():
        t = t.detach()
        if t.numel() == 0:
            parts.append(torch.tensor([1.0, math.inf, -math.inf], dtype=torch.float64, device=t.device))
            continue
        finite = torch.isfinite(t).all() if t.is_floating_point() else torch.ones((), dtype=torch.bool,
                                                                                  device=t.device)
        values = t.double()
        kept = torch.isfinite(values)
        if masks.get(name) is not None:
            kept = kept & (masks[name].detach() > 0)
        lo = torch.where(kept, values, torch.full_like(values, math.inf)).amin()
        hi = torch.where(kept, values, torch.full_like(values, -math.inf)).amax()
        parts.append(torch.stack([finite.double(), lo, hi]))
    values = torch.stack([p.to(parts[0].device) for p in parts]).tolist() if parts else []
    return {name: (bool(v[0]), v[1], v[2]) for name, v in zip(tensors, values)}


def check_values(tensors: Dict[str, Tensor], value_range: Optional[Tuple[float, float]] = None,
                 expected: str = "", masks: Optional[Dict[str, Optional[Tensor]]] = None) -> None:
    """With ``validate_args``: every tensor finite and, with ``value_range``, inside it where its mask
    (``masks[name]``, optional) is positive (one host read for all of them).

    Raises:
        ValueError: naming the first tensor that holds NaN or Inf, or that lies outside
            ``value_range``, with the range seen and ``expected`` (what the values should be).
    """
    stats = value_stats(tensors, masks)
    for name, (finite, _, _) in stats.items():
        if not finite:
            raise ValueError(f"`{name}` must be finite, but it holds NaN or Inf")
    if value_range is None:
        return
    low, high = value_range
    for name, (_, lo, hi) in stats.items():
        if lo < low or hi > high:
            raise ValueError(f"`{name}` holds values in [{lo:.4g}, {hi:.4g}], but {expected} "
                             f"(values outside [{low:g}, {high:g}] are refused)")
