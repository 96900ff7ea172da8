"""Patch-MMD: the perceptual distance of infinitely wide random CNNs, computed with no network.

Amir and Weiss, "Understanding and Simplifying Perceptual Distances", CVPR 2021, show that the
perceptual distance of an infinitely wide random CNN between two images equals the maximum mean
discrepancy (MMD) between the distributions of their small patches, and compute that MMD directly.
This module does the same, in memory linear in the number of patches:

* :func:`extract_patches` (``_patch_sets``) turns images (and optional pixel masks) into patch sets
  and patch validity; ``_patch_sets`` also cuts the local windows, normalises the patches and pads
  images smaller than a patch;
* ``method='exact'`` (``_kernel_sums``): every kernel sum is taken block by block (a custom autograd
  Function that recomputes the blocks in the backward pass instead of keeping them);
* ``method='random_features'`` (``_random_features``): random Fourier features of the Gaussian kernel
  (Rahimi and Recht, "Random Features for Large-Scale Kernel Machines", NeurIPS 2007), linear in the
  number of patches;
* :func:`patch_mmd` (the measure: MMD² per sample), :func:`patch_mmd_loss` (the loss: MMD or MMD²,
  reduced and weighted) and :class:`PatchMMDLoss` (the loss as a module, settings checked once into a
  :class:`PatchMMDSpec`).

Imports torch only.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ._kernel_sums import _mmd_exact
from ._patch_kernels import ArcCosineKernel, GaussianKernel
from ._patch_sets import (_NORMALIZATIONS, _crop_windows, _downsample, _mean_over_windows,
                          _normalize_patches, _pad_to_size, _shrink, _subset_indices, extract_patches)
from ._arc_cosine_features import _draw_cnn_weights, _fixed_cnn_weights, _mmd_random_cnn
from ._random_features import _draw_features, _fixed_features, _mmd_random_features
from .utils import (as_weight_mask, check_bool, check_choice, check_image, check_loss_weight,
                     check_max_size, check_numbers, check_positive_int, check_reduction, check_seed,
                     check_validate_args, compute_dtype, no_autocast, reduce_per_sample,
                     seeded_generator)

__all__ = ["patch_mmd", "patch_mmd_loss", "PatchMMDLoss", "PatchMMDSpec", "extract_patches",
           "default_sigmas", "DEFAULT_SIGMA_FACTORS", "AUTO_EXACT_RATIO",
           "DEFAULT_RANDOM_CNN_DEPTH", "AUTO_RANDOM_CNN_RATIO", "AUTO_RANDOM_CNN_LAYER_COST",
           "PRECISIONS"]

#: Bandwidths, as multiples of ``patch_size ** 2``, of the default sum of Gaussian kernels.
#: Taken from the code that continues Amir and Weiss' work (github.com/ariel415el/
#: PerceptualLossExperiments), for images in ``[0, 1]``; not stated in the paper itself.
DEFAULT_SIGMA_FACTORS: Tuple[float, ...] = (0.1, 0.05, 0.025, 0.01)

#: ``method='auto'`` computes the exact MMD while the larger patch set of a pyramid level holds at
#: most ``AUTO_EXACT_RATIO * num_features * len(sigmas)`` patches, and random features above. The
#: exact sums cost about ``N^2`` kernel values (each a product with ``d`` and an ``exp`` per
#: bandwidth), the random features about ``N * num_features`` cos/sin values per bandwidth, so the
#: break-even size grows with ``num_features * len(sigmas)``; the factor is the break-even measured
#: on the CPU (fwd+bwd, 7x7 RGB patches, d = 147, and 3x3 patches of 19 classes, d = 171: 300 to
#: 500 patches with the defaults).
AUTO_EXACT_RATIO: float = 0.1

#: With ``kernel='random_cnn'``, ``method='auto'`` computes the exact MMD while the larger patch set
#: of a level holds at most ``AUTO_RANDOM_CNN_RATIO * F (d + (depth - 1) F) / (d +
#: AUTO_RANDOM_CNN_LAYER_COST * depth)`` patches (``F = num_features``): the network costs ``F (d +
#: (depth - 1) F)`` products per patch, a kernel value ``d`` products and one arc-cosine step per
#: layer (an arccos, a square root and a few products, forward and backward: about 20 products).
#: The ratio is the break-even measured on the CPU (fwd+bwd, 2 threads, d = 27 and 147, depth 1 to
#: 7, 64 to 256 features: 0.04 to 0.25, on a loaded machine, hence only to a factor of 3). With the
#: defaults (7x7 RGB patches, depth 7, 1024 features) the exact sums run up to about 2,200 patches.
AUTO_RANDOM_CNN_RATIO: float = 0.1
AUTO_RANDOM_CNN_LAYER_COST: float = 20.0

_ESTIMATORS = ("biased", "unbiased")

#: Operand precisions of the exact method's fused CUDA kernels (:mod:`._kernels.triton_sums`):
#: ``'fp32'`` (IEEE products, the default), ``'tf32'`` and ``'bf16'`` (tensor-core products); the
#: sums are accumulated in float32 and added up in float64 in every case. The PyTorch path (CPU,
#: float64, or no Triton) computes in float32 or float64 whatever this says.
PRECISIONS = ("fp32", "tf32", "bf16")
_KERNELS = ("gaussian", "random_cnn")

#: ReLU layers of the random CNN that ``kernel='random_cnn'`` stands for by default: the network of
#: the code that continues Amir and Weiss' work is a 3x3 convolution followed by six 1x1
#: convolutions; reading each convolution as followed by its ReLU (our reading of that code, not a
#: statement of the paper) gives 7.
DEFAULT_RANDOM_CNN_DEPTH: int = 7
_METHODS = ("exact", "random_features", "auto")


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def default_sigmas(patch_size: int) -> Tuple[float, ...]:
    """The default bandwidths ``DEFAULT_SIGMA_FACTORS * patch_size ** 2`` (for images in ``[0, 1]``).

    Example:
        >>> default_sigmas(7)
        (4.9, 2.45, 1.225, 0.49)
    """
    return tuple(round(f * patch_size ** 2, 12) for f in DEFAULT_SIGMA_FACTORS)


def _check_weights(weights: Optional[Sequence[float]], count: int, name: str,
                   what: str) -> Tuple[float, ...]:
    """Non-negative weights, one per ``what``; ``None`` gives equal weights summing to 1."""
    if weights is None:
        return tuple(1.0 / count for _ in range(count))
    weights = check_numbers(weights, name)
    if len(weights) != count:
        raise ValueError(f"`{name}` must hold one weight per {what} ({count}), got {len(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"`{name}` must be finite, non-negative and not all 0, got {weights}")
    return weights


def _check_sigmas(sigmas: Optional[Sequence[float]], patch_size: int) -> Tuple[float, ...]:
    if sigmas is None:
        return default_sigmas(patch_size)
    if isinstance(sigmas, (int, float)) and not isinstance(sigmas, bool):
        sigmas = (sigmas,)
    if isinstance(sigmas, (str, bytes)) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) for s in sigmas):
        raise TypeError(f"`sigmas` must be a number or a sequence of numbers (bandwidths for images in "
                        f"[0, 1]), got {sigmas!r}")
    sigmas = tuple(float(s) for s in sigmas)
    if len(sigmas) == 0 or any(not math.isfinite(s) or s <= 0 for s in sigmas):
        raise ValueError(f"`sigmas` must be a non-empty sequence of positive bandwidths, got {sigmas}")
    return sigmas


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchMMDSpec:
    """The settings of Patch-MMD, checked once (see :func:`patch_mmd` for their meaning).

    ``sigmas``, ``sigma_weights`` and ``level_weights`` given as ``None`` are resolved to their
    defaults (:func:`default_sigmas`, equal weights summing to 1), so a spec holds plain tuples;
    with ``kernel='random_cnn'`` the first two are ``()`` and ``depth`` is resolved (7 by default).
    ``window_stride`` given as ``None`` with a ``window_size`` is resolved to ``window_size // 2``.

    Example:
        >>> PatchMMDSpec(patch_size=3).sigmas
        (0.9, 0.45, 0.225, 0.09)
    """

    patch_size: int = 7
    stride: int = 1
    sigmas: Optional[Tuple[float, ...]] = None
    sigma_weights: Optional[Tuple[float, ...]] = None
    kernel: str = "gaussian"
    depth: Optional[int] = None
    estimator: str = "biased"
    levels: int = 1
    level_weights: Optional[Tuple[float, ...]] = None
    method: str = "exact"
    block_size: Optional[int] = None
    num_features: int = 1024
    max_patches: Optional[int] = None
    accumulate_dtype: Optional[torch.dtype] = None
    max_size: Optional[int] = None
    window_size: Optional[int] = None
    window_stride: Optional[int] = None
    normalize: str = "none"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        def put(name, value):
            object.__setattr__(self, name, value)

        put("patch_size", check_positive_int(self.patch_size, "patch_size"))
        put("stride", check_positive_int(self.stride, "stride"))
        put("levels", check_positive_int(self.levels, "levels"))
        if self.block_size is not None:
            put("block_size", check_positive_int(self.block_size, "block_size"))
        check_choice(self.precision, PRECISIONS, "precision")
        put("num_features", check_positive_int(self.num_features, "num_features"))
        if self.max_patches is not None:
            check_positive_int(self.max_patches, "max_patches")
        check_choice(self.estimator, _ESTIMATORS, "estimator")
        check_choice(self.method, _METHODS, "method")
        if self.accumulate_dtype is not None:
            compute_dtype(accumulate=self.accumulate_dtype)  # validates it
        check_choice(self.kernel, _KERNELS, "kernel")
        if self.kernel == "random_cnn":
            given = [name for name in ("sigmas", "sigma_weights")
                     if getattr(self, name) not in (None, ())]
            if given:
                raise ValueError(f"{', '.join(f'`{n}`' for n in given)} set the Gaussian kernels and "
                                 f"do not apply with `kernel`='random_cnn' (which has `depth`)")
            put("sigmas", ())
            put("sigma_weights", ())
            put("depth", DEFAULT_RANDOM_CNN_DEPTH if self.depth is None
                else check_positive_int(self.depth, "depth"))
        else:
            if self.depth is not None:
                raise ValueError(f"`depth` applies only to `kernel`='random_cnn', got depth="
                                 f"{self.depth!r} with `kernel`={self.kernel!r}")
            put("sigmas", _check_sigmas(self.sigmas, self.patch_size))
            put("sigma_weights", _check_weights(self.sigma_weights, len(self.sigmas),
                                                "sigma_weights", "sigma"))
        put("level_weights", _check_weights(self.level_weights, self.levels, "level_weights",
                                            "level"))
        put("max_size", check_max_size(self.max_size))
        check_choice(self.normalize, _NORMALIZATIONS, "normalize")
        if self.window_size is None:
            if self.window_stride is not None:
                raise ValueError(f"`window_stride`={self.window_stride!r} needs a `window_size` (None "
                                 f"compares the whole images)")
        else:
            check_positive_int(self.window_size, "window_size")
            if self.window_size < self.patch_size:
                raise ValueError(f"`window_size` must be at least `patch_size`={self.patch_size} (a "
                                 f"window holds whole patches), got {self.window_size}")
            put("window_stride", check_positive_int(
                max(1, self.window_size // 2) if self.window_stride is None else self.window_stride,
                "window_stride"))


_SPEC_FIELDS = tuple(f.name for f in fields(PatchMMDSpec))


def _split_settings(settings: dict) -> Tuple[PatchMMDSpec, dict]:
    """``(spec, rest)``: the keyword arguments that are :class:`PatchMMDSpec` fields, and the others."""
    spec = PatchMMDSpec(**{k: v for k, v in settings.items() if k in _SPEC_FIELDS})
    return spec, {k: v for k, v in settings.items() if k not in _SPEC_FIELDS}


def _empty_batch(pred: Tensor, target: Tensor, spec: PatchMMDSpec, return_terms: bool):
    """The MMD² of an empty batch: ``(0,)`` zeros that still reach ``pred`` in the graph (the batch size
    is a shape: no host read), and empty terms under the keys a batch would have."""
    dtype = compute_dtype(pred, target, accumulate=spec.accumulate_dtype)
    total = pred.sum(dim=(1, 2, 3)).to(dtype) * 0
    if not return_terms:
        return total
    keys = ["random_cnn"] if spec.kernel == "random_cnn" else list(spec.sigmas)
    return total, {(level, key): total for level in range(spec.levels) for key in keys}


def _check_sizes(pred: Tensor, target: Tensor, spec: PatchMMDSpec) -> None:
    """Batch and channels must agree, and the spatial size too with windows; an image smaller than
    a patch is fine (it is padded)."""
    if pred.shape[0] != target.shape[0]:
        raise ValueError(f"`pred` and `target` must have the same batch size, got {pred.shape[0]} "
                         f"and {target.shape[0]}")
    if pred.shape[1] != target.shape[1]:
        raise ValueError(f"`pred` and `target` must have the same number of channels, got "
                         f"{pred.shape[1]} (shape {tuple(pred.shape)}) and {target.shape[1]} "
                         f"(shape {tuple(target.shape)})")
    if spec.window_size is not None and pred.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"with `window_size`={spec.window_size}, `pred` and `target` must have the "
                         f"same spatial size (a window compares the same place in both), got "
                         f"{tuple(pred.shape[-2:])} and {tuple(target.shape[-2:])}")


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------
def patch_mmd(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
              target_weight: Optional[Tensor] = None, patch_size: int = 7, stride: int = 1,
              sigmas: Optional[Sequence[float]] = None,
              sigma_weights: Optional[Sequence[float]] = None, kernel: str = "gaussian",
              depth: Optional[int] = None, estimator: str = "biased", levels: int = 1,
              level_weights: Optional[Sequence[float]] = None,
              method: str = "exact", block_size: Optional[int] = None, num_features: int = 1024,
              max_patches: Optional[int] = None, accumulate_dtype: Optional[torch.dtype] = None,
              max_size: Optional[int] = None, window_size: Optional[int] = None,
              window_stride: Optional[int] = None, normalize: str = "none",
              precision: str = "fp32", seed: int = 0,
              redraw: bool = False,
              generator: Optional[torch.Generator] = None, return_terms: bool = False,
              validate_args: bool = True):
    r"""Squared maximum mean discrepancy between the patch distributions of ``pred`` and ``target``
    (the measure form: per sample, unreduced; :func:`patch_mmd_loss` is the loss form).

    For images :math:`x` (``pred``) and :math:`y` (``target``) let :math:`P` and :math:`Q` be their sets of ``patch_size x patch_size``
    patches at ``stride``, flattened to vectors of length :math:`d = C k^2`, and

    .. math::

        k(a, b) = \sum_s w_s \exp\left(-\frac{\lVert a - b\rVert^2}{2\sigma_s^2}\right), \qquad
        \mathrm{MMD}^2 = \frac{1}{|P|^2}\sum_{p, p'} k(p, p') + \frac{1}{|Q|^2}\sum_{q, q'} k(q, q')
                        - \frac{2}{|P||Q|}\sum_{p, q} k(p, q)

    (``estimator='biased'``, the V-statistic, which is :math:`\ge 0` and 0 for ``pred == target``).
    ``'unbiased'`` leaves the diagonal :math:`p = p'`, :math:`q = q'` out of the two within-set means
    (dividing by :math:`|P|(|P| - 1)`); a set with a single valid patch then has no pair and its
    within-set term is taken as 0. With ``levels > 1`` the same is computed on a pyramid of 2x2
    average-pooled images, :math:`\sum_l \lambda_l \mathrm{MMD}^2_l`.

    Local windows (``window_size``, ``window_stride``) average the MMD² over windows at the same place
    in both images; ``normalize`` removes each patch's (or each channel's) mean; ``kernel='random_cnn'``
    is the arc-cosine kernel of an infinitely wide random ReLU CNN of ``depth`` layers; ``method``
    chooses exact blocked sums, random features, or (``'auto'``) by patch count. Images smaller than a
    patch are replicate-padded to one. Everything is computed in float32 (float64 for float64 inputs,
    or as ``accumulate_dtype`` asks) with autocast disabled. The defaults (7x7 patches, four Gaussian
    bandwidths :func:`default_sigmas`, for images in ``[0, 1]``), the windows, the kernel and the
    methods are explained in the documentation, docs/losses.md ("Patch-MMD in detail").

    Args:
        pred: images ``(N, C, H, W)``, floating point.
        target: images ``(N, C, H', W')``, the same ``N`` and ``C``; the size may differ.
        weight: optional pixel weights of ``pred``, ``(N, H, W)`` or ``(N, 1, H, W)``, and of
            ``target`` too unless ``target_weight`` is given. A patch that touches a pixel of weight 0
            (e.g. an ignored label) is left out of its distribution; other weights count as 1. A sample
            whose ``pred`` or ``target`` keeps no patch gives 0 (with a zero gradient). Weights are not
            differentiated.
        target_weight: pixel weights of ``target`` when they differ from ``weight`` (a target of
            another size, or a mask on one side only: pass ones for the other).
        patch_size: side ``k`` of the square patches.
        stride: step between patches.
        sigmas: kernel bandwidths; ``None`` for :func:`default_sigmas` ``(patch_size)``.
        sigma_weights: kernel weights :math:`w_s`; ``None`` for equal weights summing to 1.
        kernel: ``'gaussian'`` (the sum of Gaussians, default) or ``'random_cnn'`` (the kernel of
            an infinitely wide random ReLU CNN, see above).
        depth: ReLU layers of that CNN (``kernel='random_cnn'`` only); ``None`` for 7.
        estimator: ``'biased'`` or ``'unbiased'``.
        levels: number of pyramid levels (each level halves the size; a level smaller than a patch
            is padded).
        level_weights: weights :math:`\lambda_l`; ``None`` for equal weights summing to 1.
        method: ``'exact'``, ``'random_features'`` or ``'auto'``.
        block_size: rows of the kernel blocks of the exact method's PyTorch path (memory ``N *
            block_size^2``); ``None`` (default) for 512 on the CPU (the fastest there, 256 to 2048
            measured) and, on a GPU, the largest power of two up to 8192 that fits a quarter of the
            free memory. The fused CUDA kernels use no blocks.
        num_features: random features per bandwidth (``num_features // 2`` cos/sin pairs,
            rounded up).
        max_patches: if set, each pyramid level keeps this many patches, a random subset of the
            positions drawn like the features (the same positions in ``pred`` and ``target`` when
            their sizes agree, so ``MMD(x, x)`` stays 0).
        accumulate_dtype: ``torch.float32`` or ``torch.float64`` to force the computation precision.
        max_size: if set, each image is first area-resized so that its longer side is at most this
            many pixels (aspect ratio kept), for large dense outputs such as segmentation maps. With a
            mask, masked pixels are zeroed before the averaging (so they get exactly no gradient) and
            a resized pixel stays valid only if every pixel it averages is valid.
        window_size: side of the local windows in pixels (at every level; at least ``patch_size``);
            ``None`` (default) compares the whole images. 32 is the continuing work's choice.
        window_stride: step between windows; ``None`` for ``window_size // 2``. Needs
            ``window_size``.
        normalize: ``'none'`` (default), ``'mean'`` or ``'channel_mean'``.
        precision: operands of the exact method's fused CUDA kernels: ``'fp32'`` (default,
            within 1e-4 relative of float64 on images in ``[0, 1]``), ``'tf32'`` or ``'bf16'``
            (tensor cores; their errors are stated in :mod:`._kernels.triton_sums`). Sums are
            accumulated in float32 in every case. No effect elsewhere.
        seed: seed of the random features and of the ``max_patches`` subset.
        redraw: draw new random features (and patch subsets) at each call.
        generator: CPU ``torch.Generator`` to draw from when ``redraw`` is set.
        return_terms: also return the breakdown ``{(level, sigma): (N,)}``: each bandwidth's
            share of each level, :math:`\lambda_l w_s \mathrm{MMD}^2_{l,s}`; the terms sum to
            the total. Costs one pass of the exact sums per bandwidth (the random features are
            split at no extra cost). With ``kernel='random_cnn'``, one term per level, key
            ``(level, 'random_cnn')``.
        validate_args: check the inputs' values (NaN, Inf, negative weights and, with the default
            Gaussian bandwidths, kept values of magnitude above 4: those bandwidths are made for
            ``[0, 1]``), which reads them on the host; pass ``False`` on a training path (shapes and
            settings are always checked; docs/losses.md, "What is checked, and when"). Without it a negative
            or NaN weight counts as 0 (the pixel is ignored).

    Returns:
        MMD² per sample, shape ``(N,)``, in float32 (float64 for float64 inputs); with
        ``return_terms``, ``(mmd2, terms)``.

    Shape:
        - pred: :math:`(N, C, H, W)`, target: :math:`(N, C, H', W')`, weights:
          :math:`(N, [1,] H, W)` and :math:`(N, [1,] H', W')`
        - output: :math:`(N,)`

    Raises:
        TypeError: if ``pred`` or ``target`` is not a floating-point tensor.
        ValueError: if ``pred`` and ``target`` differ in batch or channel count (or, with
            ``window_size``, in spatial size), an input holds NaN or Inf (with ``validate_args``), or
            an argument is out of range.

    Example:
        >>> pred, target = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
        >>> d = patch_mmd(pred, target, patch_size=5)
        >>> d.shape
        torch.Size([2])
        >>> bool((patch_mmd(pred, pred, patch_size=5) < 1e-6).all())
        True
        >>> cnn = patch_mmd(pred - 0.5, target - 0.5, patch_size=3, kernel="random_cnn", depth=7)
        >>> cnn.shape, bool((cnn > 0).all())
        (torch.Size([2]), True)
        >>> local = patch_mmd(pred, target, patch_size=3, window_size=12, normalize="channel_mean")
        >>> local.shape  # the mean over 3x3 windows of 12x12 pixels at stride 6
        torch.Size([2])
        >>> patch_mmd(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 5, 5), patch_size=7).shape  # padded
        torch.Size([1])
    """
    spec = PatchMMDSpec(patch_size=patch_size, stride=stride, sigmas=sigmas,
                        sigma_weights=sigma_weights, kernel=kernel, depth=depth,
                        estimator=estimator, levels=levels,
                        level_weights=level_weights, method=method, block_size=block_size,
                        num_features=num_features, max_patches=max_patches,
                        accumulate_dtype=accumulate_dtype, max_size=max_size,
                        window_size=window_size, window_stride=window_stride, normalize=normalize,
                        precision=precision)
    if check_bool(redraw, "redraw") and generator is None:
        generator = _redraw_generator(check_seed(seed))
    return _patch_mmd(pred, target, weight, target_weight, spec, check_seed(seed),
                      generator if (redraw or generator is not None) else None,
                      return_terms, check_validate_args(validate_args))


def _block_size(block_size: Optional[int], device: torch.device, rows: int) -> int:
    """The rows of the exact method's blocks: ``block_size`` when given; else 512 on the CPU (the
    fastest there, 256 to 2048 measured) and, on a GPU, the largest power of two up to 8192 whose
    blocks (about eight ``rows x block x block`` float32 temporaries) take at most a quarter of the
    memory free on the device when it is first asked (few, large blocks: launches and Python
    overhead grow with the number of blocks). The fused kernels of a CUDA device with Triton do
    not use blocks."""
    if block_size is not None:
        return block_size
    if device.type != "cuda":
        return 512
    free = _free_device_memory(device)
    block = 8192
    while block > 512 and rows * block * block * 32 > free // 4:
        block //= 2
    return block


@functools.lru_cache(maxsize=None)
def _free_device_memory(device: torch.device) -> int:
    """Bytes free on a CUDA ``device`` the first time it is asked (a driver query, not a stream
    synchronisation, made once per device)."""
    return int(torch.cuda.mem_get_info(device)[0])


def _auto_is_exact(spec: PatchMMDSpec, patches: int, dim: int) -> bool:
    """``method='auto'``: whether the exact sums are the cheaper for a level of ``patches`` patches."""
    if spec.kernel == "gaussian":
        return patches <= AUTO_EXACT_RATIO * spec.num_features * len(spec.sigmas)
    width = spec.num_features
    features = width * (dim + (spec.depth - 1) * width)  # products per patch of the network
    pair = dim + AUTO_RANDOM_CNN_LAYER_COST * spec.depth  # cost of one kernel value, in products
    return patches <= AUTO_RANDOM_CNN_RATIO * features / pair


@functools.lru_cache(maxsize=None)
def _redraw_generator(seed: int) -> torch.Generator:
    """The process-wide generator of ``redraw=True`` without a ``generator``, one per ``seed``."""
    return seeded_generator(seed)


def _patch_mmd(pred: Tensor, target: Tensor, weight: Optional[Tensor],
               target_weight: Optional[Tensor], spec: PatchMMDSpec, seed: int,
               draw: Optional[torch.Generator], return_terms: bool, validate_args: bool):
    """:func:`patch_mmd` with checked settings; ``draw`` is the generator of redrawn features."""
    check_image(pred, "pred", finite=validate_args)
    check_image(target, "target", finite=validate_args)
    _check_sizes(pred, target, spec)
    if pred.shape[0] == 0:
        return _empty_batch(pred, target, spec, return_terms)
    if draw is not None and not isinstance(draw, torch.Generator):
        raise TypeError(f"`generator` must be a torch.Generator or None, got {type(draw).__name__}")
    if target_weight is None:
        target_weight = weight

    dtype = compute_dtype(pred, target, accumulate=spec.accumulate_dtype)
    sigmas, weights = spec.sigmas, spec.sigma_weights
    with no_autocast(pred.device):
        mx = as_weight_mask(weight, pred, "weight", validate_args)
        my = as_weight_mask(target_weight, target, "target_weight" if target_weight is not weight
                            else "weight", validate_args)
        xs, ys = pred.to(dtype), target.to(dtype)
        mx = None if mx is None else mx.to(dtype)
        my = None if my is None else my.to(dtype)
        if (validate_args and spec.kernel == "gaussian"
                and spec.sigmas == default_sigmas(spec.patch_size)):
            _check_unit_range(xs, mx, ys, my)
        if spec.max_size is not None:
            xs, mx = _shrink(xs, mx, spec.max_size)
            ys, my = _shrink(ys, my, spec.max_size)
        subset_gen = draw if draw is not None else (
            seeded_generator(seed) if spec.max_patches else None)
        total, terms = None, {}
        n, k = pred.shape[0], spec.patch_size
        for level in range(spec.levels):
            if level > 0:
                xs, mx = _downsample(xs, mx)
                ys, my = _downsample(ys, my)
            xl, mxl = _pad_to_size(xs, mx, k)
            yl, myl = _pad_to_size(ys, my, k)
            windows = 1
            if spec.window_size is not None:
                xl, mxl, windows = _crop_windows(xl, mxl, spec.window_size, spec.window_stride)
                yl, myl, _ = _crop_windows(yl, myl, spec.window_size, spec.window_stride)
            P, a = extract_patches(xl, k, spec.stride, mxl)
            Q, b = extract_patches(yl, k, spec.stride, myl)
            P = _normalize_patches(P, pred.shape[1], spec.normalize)
            Q = _normalize_patches(Q, pred.shape[1], spec.normalize)
            if spec.max_patches is not None:
                ip = _subset_indices(P.shape[1], spec.max_patches, subset_gen, P.device)
                iq = ip if (ip is not None and Q.shape[1] == P.shape[1]) else \
                    _subset_indices(Q.shape[1], spec.max_patches, subset_gen, Q.device)
                if ip is not None:
                    P, a = P[:, ip], a[:, ip]
                if iq is not None:
                    Q, b = Q[:, iq], b[:, iq]
            weighted = mx is not None or my is not None
            use_exact = spec.method == "exact" or (
                spec.method == "auto"
                and _auto_is_exact(spec, max(P.shape[1], Q.shape[1]), P.shape[2]))
            # kernel values of one exact pass: at most n * block_size^2, as for whole images
            block = _block_size(spec.block_size, P.device, n)
            side = min(max(P.shape[1], Q.shape[1]), block)
            rows = max(n, n * block ** 2 // side ** 2)
            exact = functools.partial(_mmd_exact, estimator=spec.estimator, block_size=block,
                                      precision=spec.precision)
            # one (windows,) term per key: the kernel's, or each bandwidth's with return_terms
            if spec.kernel == "random_cnn":
                keys = ["random_cnn"]
                kernel = ArcCosineKernel(spec.depth, P.shape[2])
                if use_exact:
                    per_term = [_by_rows(exact, rows, P, Q, a, b, kernel)]
                else:
                    layers = (_draw_cnn_weights(P.shape[2], spec.num_features, spec.depth, draw,
                                                P.device, dtype) if draw is not None else
                              _fixed_cnn_weights(P.shape[2], spec.num_features, spec.depth, seed,
                                                 P.device, dtype))
                    # n windows at a time: the feature chunks are those of a batch of n images
                    per_term = [_by_rows(_mmd_random_cnn, n, P, Q, a, b, layers, spec.estimator,
                                         weighted, kernel)]
            elif use_exact:
                keys = list(sigmas)
                if return_terms:
                    per_term = [_by_rows(exact, rows, P, Q, a, b, GaussianKernel((s,), (w,)))
                                for s, w in zip(sigmas, weights)]
                else:
                    per_term = [_by_rows(exact, rows, P, Q, a, b, GaussianKernel(sigmas, weights))]
            else:
                keys = list(sigmas)
                if draw is not None:
                    feats = _draw_features(P.shape[2], spec.num_features, sigmas, weights, draw,
                                           P.device, dtype)
                else:
                    feats = _fixed_features(P.shape[2], spec.num_features, sigmas, weights, seed,
                                            P.device, dtype)
                out = _by_rows(_mmd_random_features, n, P, Q, a, b, feats, spec.estimator, weights,
                               weighted, per_sigma=return_terms)
                per_term = out if return_terms else [out]
            if windows > 1:
                per_term = [_mean_over_windows(v, a, b, windows) for v in per_term]
            lam = spec.level_weights[level]
            if return_terms:
                for key, v in zip(keys, per_term):
                    terms[(level, key)] = v * lam
            mmd = (per_term[0] if len(per_term) == 1 else torch.stack(per_term).sum(0)) * lam
            total = mmd if total is None else total + mmd
    return (total, terms) if return_terms else total


#: The default bandwidths are meant for values in [0, 1]; beyond this magnitude (0..255 images, say)
#: every pair of patches is so far apart that every kernel value is 0: a constant loss, no gradient.
_UNIT_RANGE_LIMIT = 4.0


def _check_unit_range(pred: Tensor, pred_mask: Optional[Tensor], target: Tensor,
                      target_mask: Optional[Tensor]) -> None:
    """With the default bandwidths, kept values of magnitude above ``_UNIT_RANGE_LIMIT`` are a
    mistake (one host read for both tensors; pixels of weight <= 0 do not count)."""
    if pred.numel() == 0 or target.numel() == 0:
        return
    magnitudes = [(t.detach().abs() if m is None else t.detach().abs() * (m > 0)).amax()
                  for t, m in ((pred, pred_mask), (target, target_mask))]
    seen = max(torch.stack(magnitudes).tolist())
    if seen > _UNIT_RANGE_LIMIT:
        raise ValueError(f"`pred` or `target` holds values of magnitude {seen:g}, but the default "
                         f"`sigmas` are for images in [0, 1] (every kernel value would be 0: a constant "
                         f"loss with no gradient); scale the images to [0, 1] or pass `sigmas`")


def _by_rows(mmd_fn, rows: int, P: Tensor, Q: Tensor, a: Tensor, b: Tensor, *args, **kwargs):
    """``mmd_fn(P, Q, a, b, ...)`` on groups of at most ``rows`` patch sets (the windows of the
    samples), concatenated; one call when they fit (whole images)."""
    if P.shape[0] <= rows:
        return mmd_fn(P, Q, a, b, *args, **kwargs)
    parts = [mmd_fn(P[i:i + rows], Q[i:i + rows], a[i:i + rows], b[i:i + rows], *args, **kwargs)
             for i in range(0, P.shape[0], rows)]
    if isinstance(parts[0], list):  # one (rows,) per bandwidth
        return [torch.cat(per_sigma) for per_sigma in zip(*parts)]
    return torch.cat(parts)


def patch_mmd_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                   squared: bool = False, reduction: str = "mean", loss_weight: float = 1.0,
                   return_terms: bool = False, validate_args: bool = True, **settings):
    r"""Patch-MMD as a loss (the loss form of :func:`patch_mmd`): per sample the MMD
    (``squared=False``, default: :math:`\sqrt{\max(\mathrm{MMD}^2, 0)}`, whose gradient is taken as 0
    where the MMD² is :math:`\le 0`, so it is finite at ``pred == target``) or the MMD²
    (``squared=True``), reduced over the batch and multiplied by ``loss_weight``.

    Args:
        pred, target, weight: as in :func:`patch_mmd`.
        squared: the MMD² instead of the MMD.
        reduction: ``'mean'`` (default) or ``'sum'`` over the batch, or ``'none'`` for ``(N,)``.
        loss_weight: multiplies the result.
        return_terms: also return :func:`patch_mmd`'s breakdown, reduced and weighted like the
            loss (so the terms sum to it); needs ``squared=True`` (square roots do not add up).
        validate_args: as in :func:`patch_mmd`.
        **settings: the other keyword arguments of :func:`patch_mmd` (``patch_size``, ``sigmas``,
            ``method``, ``seed``, ``redraw``, ``target_weight``, ...).

    Returns:
        A scalar, or ``(N,)`` with ``reduction='none'``; with ``return_terms``, ``(loss, terms)``.

    Example:
        >>> pred = torch.rand(2, 3, 24, 24, requires_grad=True)
        >>> loss = patch_mmd_loss(pred, torch.rand(2, 3, 24, 24), patch_size=5)
        >>> loss.backward()
        >>> loss.shape
        torch.Size([])
    """
    unknown = set(settings) - set(_SPEC_FIELDS) - {"target_weight", "seed", "redraw", "generator"}
    if unknown:
        raise TypeError(f"patch_mmd_loss() got unexpected keyword arguments {sorted(unknown)}")
    spec, rest = _split_settings(settings)
    seed, generator = check_seed(rest.get("seed", 0)), rest.get("generator")
    if check_bool(rest.get("redraw", False), "redraw") and generator is None:
        generator = _redraw_generator(seed)
    return _patch_mmd_loss(pred, target, weight, rest.get("target_weight"), spec, seed, generator,
                           check_bool(squared, "squared"), check_reduction(reduction),
                           check_loss_weight(loss_weight),
                           return_terms, check_validate_args(validate_args))


def _patch_mmd_loss(pred, target, weight, target_weight, spec: PatchMMDSpec, seed: int,
                    draw: Optional[torch.Generator], squared: bool, reduction: str,
                    loss_weight: float, return_terms: bool, validate_args: bool):
    if return_terms and not squared:
        raise ValueError("`return_terms` needs `squared=True`: the terms of the MMD² add up, the "
                         "square roots of the terms do not")
    if isinstance(target, Tensor):
        # the loss treats the target as a constant, as the random-CNN loss does (`patch_mmd`, the
        # measure, stays differentiable in both inputs)
        target = target.detach()
    out = _patch_mmd(pred, target, weight, target_weight, spec, seed, draw, return_terms,
                     validate_args)
    if return_terms:
        mmd2, terms = out
        terms = {k: reduce_per_sample(v, reduction) * loss_weight for k, v in terms.items()}
        return reduce_per_sample(mmd2, reduction) * loss_weight, terms
    loss = out if squared else _SafeSqrt.apply(out)
    return reduce_per_sample(loss, reduction) * loss_weight


class _SafeSqrt(torch.autograd.Function):
    """``sqrt(max(v, 0))`` whose gradient is 0 (not Inf or NaN) where ``v <= 0``."""

    @staticmethod
    def forward(ctx, v: Tensor) -> Tensor:  # type: ignore[override]
        out = v.clamp(min=0).sqrt()
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        pos = out > 0
        return torch.where(pos, grad / (2.0 * torch.where(pos, out, torch.ones_like(out))),
                           torch.zeros_like(grad))


class PatchMMDLoss(nn.Module):
    r"""Patch-MMD perceptual loss (Amir and Weiss, CVPR 2021) between a prediction and a target: the
    module form of :func:`patch_mmd_loss`.

    The settings are checked once, here, into :attr:`spec` (a :class:`PatchMMDSpec`); ``forward``
    is one call. The module holds no parameters and no persistent buffers: its ``state_dict()`` is
    empty, so adding it leaves checkpoints unchanged. With ``redraw=True`` it draws from its own
    generator seeded with ``seed`` (not saved in checkpoints).

    Args:
        patch_size, stride, sigmas, sigma_weights, kernel, depth: as in :func:`patch_mmd`.
        estimator, levels, level_weights, method, block_size, num_features: as in :func:`patch_mmd`.
        max_patches, accumulate_dtype, max_size, window_size, window_stride: as in :func:`patch_mmd`.
        normalize, precision: as in :func:`patch_mmd` (each setting is a field of
            :class:`PatchMMDSpec`, with the function's name and default).
        seed, redraw: as in :func:`patch_mmd`.
        squared: the MMD² instead of the MMD.
        reduction: ``'mean'``, ``'sum'`` or ``'none'`` over the batch.
        loss_weight: factor of the loss.
        validate_args: check input values on the host (NaN, Inf, negative weights, the range of
            the default bandwidths), as :func:`patch_mmd`; default True. The target is a constant here
            (no gradient flows to it, as in the random-CNN loss); :func:`patch_mmd`, the measure, is
            differentiable in both inputs.
            Adapters pass False on the training path.

    Shape:
        - pred, target: :math:`(N, C, H, W)`; weight: :math:`(N, H, W)` or :math:`(N, 1, H, W)`
        - output: scalar, or :math:`(N,)` with ``reduction='none'``

    Example:
        >>> loss = PatchMMDLoss(patch_size=5)
        >>> pred = torch.rand(2, 3, 24, 24, requires_grad=True)
        >>> out = loss(pred, torch.rand(2, 3, 24, 24))
        >>> out.backward()
        >>> out.shape, len(loss.state_dict())
        (torch.Size([]), 0)
        >>> local = PatchMMDLoss(patch_size=3, window_size=16, normalize="channel_mean")
        >>> local.spec.window_stride
        8
    """

    def __init__(self, *, patch_size: int = 7, stride: int = 1,
                 sigmas: Optional[Sequence[float]] = None,
                 sigma_weights: Optional[Sequence[float]] = None, kernel: str = "gaussian",
                 depth: Optional[int] = None, estimator: str = "biased", levels: int = 1,
                 level_weights: Optional[Sequence[float]] = None, method: str = "exact",
                 block_size: Optional[int] = None, num_features: int = 1024,
                 max_patches: Optional[int] = None, accumulate_dtype: Optional[torch.dtype] = None,
                 max_size: Optional[int] = None, window_size: Optional[int] = None,
                 window_stride: Optional[int] = None, normalize: str = "none",
                 precision: str = "fp32", seed: int = 0, redraw: bool = False, squared: bool = False,
                 reduction: str = "mean", loss_weight: float = 1.0, validate_args: bool = True) -> None:
        super().__init__()
        self.spec = PatchMMDSpec(
            patch_size=patch_size, stride=stride, sigmas=sigmas, sigma_weights=sigma_weights,
            kernel=kernel, depth=depth, estimator=estimator, levels=levels,
            level_weights=level_weights, method=method, block_size=block_size,
            num_features=num_features, max_patches=max_patches, accumulate_dtype=accumulate_dtype,
            max_size=max_size, window_size=window_size, window_stride=window_stride,
            normalize=normalize, precision=precision)
        self.seed = seed
        self.redraw = check_bool(redraw, "redraw")
        self.squared = check_bool(squared, "squared")
        self.reduction = check_reduction(reduction)
        self.loss_weight = check_loss_weight(loss_weight)
        self.validate_args = check_validate_args(validate_args)
        self._generator = seeded_generator(seed) if redraw else None
        check_seed(seed)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                target_weight: Optional[Tensor] = None, return_terms: bool = False):
        """Loss between ``pred`` and ``target``; ``weight`` masks the pixels of both (0 = ignored),
        or of ``pred`` only when ``target_weight`` masks the target's (as in :func:`patch_mmd`).

        With ``return_terms`` (and ``squared=True``) also the per-level, per-bandwidth terms."""
        return _patch_mmd_loss(pred, target, weight, target_weight, self.spec, self.seed, self._generator,
                               self.squared, self.reduction, self.loss_weight, return_terms,
                               self.validate_args)

    def extra_repr(self) -> str:
        s = self.spec
        kernel = (f"sigmas={s.sigmas}" if s.kernel == "gaussian"
                  else f"kernel='random_cnn', depth={s.depth}")
        return (f"patch_size={s.patch_size}, stride={s.stride}, {kernel}, "
                f"estimator={s.estimator!r}, levels={s.levels}, method={s.method!r}, "
                f"window_size={s.window_size}, window_stride={s.window_stride}, "
                f"normalize={s.normalize!r}, squared={self.squared}, reduction={self.reduction!r}, "
                f"loss_weight={self.loss_weight}")
