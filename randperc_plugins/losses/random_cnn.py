"""Generic Perceptual Loss: prediction and target compared through a frozen, randomly weighted CNN.

Liu, Chen, Chen, Yin and Shen, "Generic Perceptual Loss for Modeling Structured Output Dependencies",
CVPR 2021 (arXiv:2103.10571), show that the features of a randomly initialised, never trained deep
CNN capture the structure of outputs: comparing prediction and target through several of its layers
improves semantic and instance segmentation and depth estimation over a pixel loss alone, and in
super-resolution a random network is on par with a pretrained VGG as the loss network.

* :class:`RandomCNNSpec`: the random network (VGG-style stages of 3x3 convolutions, an activation,
  a pooling between stages), its initialisation and the compared layers;
* :func:`random_cnn_weights`: the one place where weights are drawn (seeded CPU generator, float32);
* :func:`random_cnn_features`: the forward pass, returning the compared layers;
* :func:`random_cnn_distance` (the measure, per sample), :func:`random_cnn_perceptual_loss` (the
  loss, reduced and weighted) and :class:`RandomCNNPerceptualLoss` (the loss as a module).

Imports torch only.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .utils import (area_resize, as_weight_mask, check_bool, check_choice, check_image_pair,
                     check_loss_weight, check_max_size, check_number, check_numbers,
                     check_reduction, check_validate_args,
                     compute_dtype, host_to_device, no_autocast, reduce_per_sample, reduced_size,
                     seeded_generator)

__all__ = ["RandomCNNSpec", "RandomCNNPerceptualLoss", "random_cnn_distance",
           "random_cnn_perceptual_loss",
           "random_cnn_weights", "random_cnn_features", "random_cnn_layer_gains", "layer_names",
           "gpl_positions", "VGG19_WIDTHS", "VGG19_HALF_WIDTHS", "VGG19_QUARTER_WIDTHS",
           "DEFAULT_LAYERS", "DEFAULT_MAX_SIZE", "DEFAULT_SEED",
           "BALANCES"]

#: Convolution widths of VGG-19's five stages (Simonyan and Zisserman, 2015), the network the
#: Generic Perceptual Loss paper randomises.
VGG19_WIDTHS: Tuple[Tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))

#: VGG-19 at half width: about a quarter of the cost (to the default layers, a forward and backward
#: pass on 16x3x96x96 costs 50 GFLOP against 197 at full width and 344 for a VGG-19 loss to relu5_4).
VGG19_HALF_WIDTHS: Tuple[Tuple[int, ...], ...] = tuple(tuple(w // 2 for w in s) for s in VGG19_WIDTHS)

#: VGG-19 at a quarter width, for one-channel 28x28 ROI masks: to the default layers 17 GFLOP forward
#: and backward at 256 ROIs, against 267 at full width.
VGG19_QUARTER_WIDTHS: Tuple[Tuple[int, ...], ...] = tuple(tuple(w // 4 for w in s) for s in VGG19_WIDTHS)

#: Layers compared by default: the last activation of the first three stages (our choice, the
#: paper does not state it; see :class:`RandomCNNPerceptualLoss`).
DEFAULT_LAYERS: Tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4")

#: Default ``max_size``: the loss is computed on inputs whose longer side is at most this many pixels
#: (chosen with ``tools/benchmark.py random-cnn``; see :class:`RandomCNNPerceptualLoss`).
DEFAULT_MAX_SIZE: Optional[int] = 256

#: Default seed of the random network.
DEFAULT_SEED: int = 0

_ACTIVATIONS = ("relu", "leaky_relu", "tanh", "identity")
_POOLINGS = ("max", "avg", "none")
_INITS = ("gpl", "kaiming", "xavier", "normal")
_DISTANCES = ("l1", "mse", "smooth_l1")
#: Per-layer balances of the random-CNN loss (see :func:`random_cnn_distance`).
BALANCES: Tuple[str, ...] = ("none", "init", "target")
#: Side of the square reference input from which :func:`random_cnn_layer_gains` measures the gains:
#: the SR training crop size, large enough that stage 5 still has 6x6 locations.
_GAIN_REFERENCE_SIZE = 96
#: Seed of the reference input's local generator (the same input for every network seed).
_GAIN_REFERENCE_SEED = 0
#: ``balance='target'``: ``epsilon`` of the denominator, in the distance's units of the input (a
#: mean absolute value of 1e-3 for 'l1'), times the layer's gain, so that it means the same at
#: every layer and with every initialisation; a target 100x darker than a 19-class one-hot map
#: (mean 1/19) still weighs its own magnitude.
_TARGET_EPS = 1e-3
_LEAKY_SLOPE = 0.2
_NORM_EPS = 1e-10
_MASK_EPS = 1e-12
#: On CUDA the frozen network runs in ``channels_last`` memory format (cuDNN's tensor-core kernels are
#: NHWC; the benchmark's ``gpu`` command measures the loss with this off and on).
_CHANNELS_LAST_ON_CUDA = True


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
def _as_widths(widths) -> Tuple[Tuple[int, ...], ...]:
    try:
        stages = tuple(tuple(stage) if isinstance(stage, (list, tuple)) else (stage,) for stage in widths)
    except TypeError:
        raise ValueError(f"`widths` must be a sequence of stages, each a sequence of positive ints, "
                         f"got {widths!r}") from None
    ok = len(stages) > 0 and all(
        len(s) > 0 and all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in s)
        for s in stages)
    if not ok:
        raise ValueError(f"`widths` must be a non-empty sequence of stages, each a non-empty "
                         f"sequence of positive ints, got {widths!r}")
    return stages


@dataclass(frozen=True)
class RandomCNNSpec:
    """A VGG-style random network: stages of ``k x k`` convolutions, each followed by an activation,
    with a 2x2 pooling of stride 2 after every stage; and the layers whose features are compared.

    Layers are named like VGG's: ``conv{s}_{i}`` (the ``i``-th convolution of stage ``s``, before
    its activation), ``relu{s}_{i}`` (after it; also called ``act{s}_{i}``, whatever the
    activation), ``pool{s}`` (after the pooling that ends stage ``s``), all 1-based. The network is
    cut after the deepest compared layer, so unused stages cost nothing.

    Args:
        widths: output channels of each convolution, stage by stage. Default: VGG-19's.
        kernel_size: an odd int, or one per stage; padding keeps the spatial size ('same').
        activation: ``'relu'`` (default, as VGG), ``'leaky_relu'`` (slope 0.2), ``'tanh'`` or
            ``'identity'``.
        pooling: ``'max'`` (default, as VGG), ``'avg'`` or ``'none'`` (no downsampling). Pooling uses
            ``ceil_mode``, so an odd size keeps its last row/column and a 1-pixel map stays 1 pixel.
        layers: the compared layers. Default :data:`DEFAULT_LAYERS`.
        init: ``'gpl'`` (default; the paper's scheme as read in third-party code citing it: the
            convolution at 1-based position ``l`` of the layer sequence, activations and pools
            counted, is drawn from ``N(0, 2 / (l * fan_in))``), ``'kaiming'`` (``N(0, gain^2 /
            fan_in)``), ``'xavier'`` (``N(0, gain^2 * 2 / (fan_in + fan_out))``) or ``'normal'``
            (``N(0, init_std^2)``). Biases are 0 (there are none).
        init_std: standard deviation for ``init='normal'``.
    """

    widths: Tuple[Tuple[int, ...], ...] = VGG19_WIDTHS
    kernel_size: Union[int, Tuple[int, ...]] = 3
    activation: str = "relu"
    pooling: str = "max"
    layers: Tuple[str, ...] = DEFAULT_LAYERS
    init: str = "gpl"
    init_std: float = 0.01

    def __post_init__(self) -> None:
        widths = _as_widths(self.widths)
        object.__setattr__(self, "widths", widths)
        ks = self.kernel_size
        ks = tuple(ks) if isinstance(ks, (list, tuple)) else (ks,) * len(widths)
        if len(ks) != len(widths) or any(
                not isinstance(k, int) or isinstance(k, bool) or k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"`kernel_size` must be an odd positive int or one per stage "
                             f"({len(widths)}), got {self.kernel_size!r}")
        object.__setattr__(self, "kernel_size", ks)
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {_ACTIVATIONS}, got {self.activation!r}")
        if self.pooling not in _POOLINGS:
            raise ValueError(f"`pooling` must be one of {_POOLINGS}, got {self.pooling!r}")
        if self.init not in _INITS:
            raise ValueError(f"`init` must be one of {_INITS}, got {self.init!r}")
        check_number(self.init_std, "init_std", positive=True)
        layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
        if len(layers) == 0:
            raise ValueError("`layers` must name at least one layer, got an empty sequence")
        known = layer_names(widths, self.pooling)
        canonical = []
        for name in layers:
            key = name.replace("act", "relu", 1) if isinstance(name, str) and name.startswith("act") \
                else name
            if key not in known:
                raise ValueError(f"`layers` holds {name!r}, which is not a layer of this network; "
                                 f"known: {', '.join(known)}")
            if key in canonical:
                raise ValueError(f"`layers` names {name!r} twice")
            canonical.append(key)
        # Compare in network order, whatever order they were given in.
        object.__setattr__(self, "layers", tuple(sorted(canonical, key=known.index)))

    @property
    def num_convs(self) -> int:
        """Convolutions up to the deepest compared layer (those that are drawn and run)."""
        deepest = self.layers[-1]
        count = 0
        for s, stage in enumerate(self.widths, 1):
            for i in range(1, len(stage) + 1):
                count += 1
                if deepest in (f"conv{s}_{i}", f"relu{s}_{i}"):
                    return count
            if deepest == f"pool{s}":
                return count
        raise AssertionError("unreachable: layers are validated")  # pragma: no cover


def layer_names(widths=VGG19_WIDTHS, pooling: str = "max") -> List[str]:
    """All layer names of a network with these ``widths``, in order (``pool{s}`` only if pooling)."""
    names = []
    for s, stage in enumerate(_as_widths(widths), 1):
        for i in range(1, len(stage) + 1):
            names += [f"conv{s}_{i}", f"relu{s}_{i}"]
        if pooling != "none":
            names.append(f"pool{s}")
    return names


def gpl_positions(widths=VGG19_WIDTHS) -> List[int]:
    """1-based position ``l`` of every convolution in the layer sequence conv, act, ..., pool, ...

    Pools are counted after every stage (as in VGG's ``features``), whatever ``pooling`` is, so that
    the initialisation does not change with the pooling type.

    Example:
        >>> gpl_positions(((64, 64), (128, 128)))
        [1, 3, 6, 8]
    """
    positions, pos = [], 0
    for stage in _as_widths(widths):
        for _ in stage:
            positions.append(pos + 1)
            pos += 2
        pos += 1
    return positions


def _gain(activation: str) -> float:
    if activation == "relu":
        return math.sqrt(2.0)
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", _LEAKY_SLOPE)
    if activation == "tanh":
        return 5.0 / 3.0
    return 1.0


def _conv_shapes(spec: RandomCNNSpec, in_channels: int) -> List[Tuple[int, int, int, int]]:
    shapes, c_in = [], in_channels
    for stage, k in zip(spec.widths, spec.kernel_size):
        for c_out in stage:
            shapes.append((c_out, c_in, k, k))
            c_in = c_out
    return shapes[:spec.num_convs]


def random_cnn_weights(spec: RandomCNNSpec, in_channels: int, seed: int = DEFAULT_SEED,
                       generator: Optional[torch.Generator] = None) -> List[Tensor]:
    """Draw the convolution weights of ``spec`` for ``in_channels`` input channels.

    The only place where the random network's weights are drawn: in float32 on the CPU, from a local
    generator seeded with ``seed`` (or from ``generator``, which advances), so the same arguments give
    bit-identical weights on every process, machine and device, and the global RNG is untouched.
    Only the convolutions up to the deepest compared layer are drawn; the draw of a convolution does
    not depend on the ones after it. Biases are zero and omitted.

    Args:
        spec: the network.
        in_channels: channels of the compared tensors (``C`` in ``(N, C, H, W)``).
        seed: seed of the local generator; ignored when ``generator`` is given.
        generator: a CPU generator to draw from instead (``redraw=True`` uses one that advances).

    Returns:
        One float32 CPU tensor ``(C_out, C_in, k, k)`` per convolution.

    Example:
        >>> ws = random_cnn_weights(RandomCNNSpec(widths=((8,), (16,)), layers=("relu2_1",)), 3)
        >>> [tuple(w.shape) for w in ws]
        [(8, 3, 3, 3), (16, 8, 3, 3)]
    """
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise ValueError(f"`in_channels` must be a positive int, got {in_channels!r}")
    gen = seeded_generator(seed) if generator is None else generator
    gain = _gain(spec.activation)
    positions = gpl_positions(spec.widths)
    weights = []
    for shape, pos in zip(_conv_shapes(spec, in_channels), positions):
        fan_out, fan_in = shape[0] * shape[2] * shape[3], shape[1] * shape[2] * shape[3]
        if spec.init == "gpl":
            std = math.sqrt(2.0 / (pos * fan_in))
        elif spec.init == "kaiming":
            std = gain / math.sqrt(fan_in)
        elif spec.init == "xavier":
            std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        else:
            std = float(spec.init_std)
        w = torch.randn(shape, generator=gen, dtype=torch.float32, device="cpu")
        weights.append(w.mul_(std))
    return weights


def _activate(x: Tensor, activation: str) -> Tensor:
    if activation == "relu":
        return F.relu(x)
    if activation == "leaky_relu":
        return F.leaky_relu(x, _LEAKY_SLOPE)
    if activation == "tanh":
        return torch.tanh(x)
    return x


def _pool(x: Tensor, pooling: str) -> Tensor:
    if pooling == "max":
        return F.max_pool2d(x, 2, 2, ceil_mode=True)
    return F.avg_pool2d(x, 2, 2, ceil_mode=True)


def random_cnn_features(x: Tensor, weights: Sequence[Tensor], spec: RandomCNNSpec,
                        mask: Optional[Tensor] = None) -> "OrderedDict[str, Tuple[Tensor, Optional[Tensor]]]":
    """Run ``x`` through the random network and return the compared layers, in network order.

    Args:
        x: ``(N, C, H, W)``, in the weights' dtype and device.
        weights: from :func:`random_cnn_weights` (converted to ``x``'s dtype and device).
        spec: the network.
        mask: optional ``(N, 1, H, W)`` per-pixel weight; it is average-pooled (2x2, stride 2,
            ``ceil_mode``) wherever the features are pooled, so every layer gets the mean weight of the
            pixels each location covers.

    Returns:
        ``{layer name: (features (N, C_l, H_l, W_l), mask (N, 1, H_l, W_l) or None)}``.
    """
    wanted = set(spec.layers)
    out: "OrderedDict[str, Tuple[Tensor, Optional[Tensor]]]" = OrderedDict()
    k = 0
    for s, (stage, ks) in enumerate(zip(spec.widths, spec.kernel_size), 1):
        for i in range(1, len(stage) + 1):
            x = F.conv2d(x, weights[k], padding=ks // 2)
            k += 1
            if f"conv{s}_{i}" in wanted:
                out[f"conv{s}_{i}"] = (x, mask)
            x = _activate(x, spec.activation)
            if f"relu{s}_{i}" in wanted:
                out[f"relu{s}_{i}"] = (x, mask)
            if len(out) == len(wanted):
                return out
        if spec.pooling != "none":
            x = _pool(x, spec.pooling)
            if mask is not None:
                mask = F.avg_pool2d(mask, 2, 2, ceil_mode=True)
            if f"pool{s}" in wanted:
                out[f"pool{s}"] = (x, mask)
                if len(out) == len(wanted):
                    return out
    return out  # pragma: no cover - every compared layer is reached


@functools.lru_cache(maxsize=8)
def _cached_weights(spec: RandomCNNSpec, in_channels: int, seed: int) -> Tuple[Tensor, ...]:
    """The functional form's weights, drawn once per ``(spec, in_channels, seed)``."""
    return tuple(random_cnn_weights(spec, in_channels, seed))


def random_cnn_layer_gains(spec: RandomCNNSpec, weights: Sequence[Tensor], *, distance: str = "l1",
                           normalize: bool = False) -> Tensor:
    r"""Each compared layer's gain at initialisation: how much larger its term is than the input's.

    With :math:`r` a fixed reference input (``(1, C, 96, 96)``, uniform in :math:`[0, 1)`, drawn
    from a local generator with seed 0: the global RNG is untouched), :math:`d` the element-wise
    distance and :math:`\phi_l` the (optionally normalised) features of layer :math:`l`,

    .. math::

        G_l = \frac{\operatorname{mean}_{c,h,w}\, d\big(\phi_l(r)\big)}
                   {\operatorname{mean}_{c,h,w}\, d(r)},

    that is the layer's term for :math:`r` against an all-zero target (whose features are zero: the
    network has no bias), divided by the same distance in pixel space. ``balance='init'`` divides
    every layer's term by its :math:`G_l`, which puts the terms in the units of the input.

    Why a noise input, and why it is enough: the random weights have zero mean, so the expected
    second moment of a convolution's output depends on the input only through its energy, not its
    spatial structure, and with ReLU (or leaky ReLU, or none), max or average pooling and no bias
    the network is positively homogeneous: :math:`\phi_l(a r) = a \phi_l(r)` for :math:`a > 0`, so
    the gains do not depend on the input's scale either (for ``'l1'``; ``'mse'`` gains are squared
    ones). What is left, the response of ReLU and max pooling to spatial correlation and the borders,
    moves the ratios ``G_l / G_relu1_2`` of ``relu2_2`` and ``relu3_4`` by 0.65x-1.08x when the
    reference is replaced by smooth noise, ``|N(0, 1)|`` noise, 256x256 noise, crops of photographs or
    one-hot label maps (measured, 3 and 19 channels; smoother inputs give the deeper layers smaller
    gains), against the 2,300x by which ``init='gpl'`` shrinks ``relu3_4`` relative to Kaiming's. With
    ``'tanh'`` the network is not homogeneous and the gains hold for inputs of about this range.

    Args:
        spec: the network and its compared layers.
        weights: its convolution weights (:func:`random_cnn_weights`); the gains are computed on their
            device, in float64.
        distance, normalize: as in :func:`random_cnn_distance`.

    Returns:
        ``(L,)`` float64, one gain per compared layer, in network order, on the weights' device.

    Example:
        >>> spec = RandomCNNSpec(layers=("relu1_2", "relu3_4"))
        >>> gains = random_cnn_layer_gains(spec, random_cnn_weights(spec, 3))
        >>> bool(gains[1] < gains[0] / 100)  # 'gpl' shrinks the deeper layers' features
        True
    """
    check_choice(distance, _DISTANCES, "distance")
    weights = list(weights)
    device = weights[0].device
    ws = [w.detach().to(torch.float64) for w in weights]
    size = (1, ws[0].shape[1], _GAIN_REFERENCE_SIZE, _GAIN_REFERENCE_SIZE)
    reference = host_to_device(torch.rand(size, generator=seeded_generator(_GAIN_REFERENCE_SEED),
                                          dtype=torch.float64), device)
    with torch.no_grad(), no_autocast(device):
        feats = random_cnn_features(reference, ws, spec)
        input_size = _distance(reference, distance).mean()
        gains = []
        for fx, _ in feats.values():
            if normalize:
                fx = _normalize(fx)
            gains.append(_distance(fx, distance).mean() / input_size)
    return torch.stack(gains)


@functools.lru_cache(maxsize=8)
def _cached_gains(spec: RandomCNNSpec, in_channels: int, seed: int, distance: str,
                  normalize: bool) -> Tensor:
    """The gains of the seeded network, computed once per ``(spec, in_channels, seed, distance,
    normalize)`` (float64, CPU; never modified in place)."""
    return random_cnn_layer_gains(spec, _cached_weights(spec, in_channels, seed), distance=distance,
                                  normalize=normalize)


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def _check_layer_weights(layer_weights, layers: Sequence[str]) -> Tuple[float, ...]:
    if layer_weights is None:
        return tuple(1.0 for _ in layers)
    if isinstance(layer_weights, dict):
        given = {}
        for name, w in layer_weights.items():
            key = name.replace("act", "relu", 1) if name.startswith("act") else name
            given[key] = w
        unknown = set(given) - set(layers)
        if unknown:
            raise ValueError(f"`layer_weights` names {sorted(unknown)}, which are not compared "
                             f"layers {tuple(layers)}")
        values = check_numbers(tuple(given.get(name, 0.0) for name in layers), "layer_weights")
    else:
        values = check_numbers(layer_weights, "layer_weights")
        if len(values) != len(layers):
            raise ValueError(f"`layer_weights` must hold one weight per compared layer "
                             f"({len(layers)}: {tuple(layers)}), got {len(values)}")
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ValueError(f"`layer_weights` must be finite and non-negative, got {values}")
    return values


def _distance(diff: Tensor, distance: str) -> Tensor:
    if distance == "l1":
        return diff.abs()
    if distance == "mse":
        return diff * diff
    return F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none", beta=1.0)


def _normalize(f: Tensor) -> Tensor:
    # f / ||f||_2 over channels; rsqrt(sum + eps) keeps the gradient finite at f = 0.
    return f * torch.rsqrt(f.pow(2).sum(dim=1, keepdim=True) + _NORM_EPS)


# ----------------------------------------------------------------------------------------------
# Functional
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Comparison:
    """How the features are compared, checked once: per-layer weights, distance, normalisation and
    the working size."""

    layer_weights: Tuple[float, ...]
    distance: str
    normalize: bool
    max_size: Optional[int]
    balance: str = "init"
    autocast: bool = True

    @classmethod
    def build(cls, spec: RandomCNNSpec, layer_weights=None, distance: str = "l1",
              normalize: bool = False, max_size: Optional[int] = DEFAULT_MAX_SIZE,
              balance: str = "init", autocast: bool = True) -> "_Comparison":
        return cls(_check_layer_weights(layer_weights, spec.layers),
                   check_choice(distance, _DISTANCES, "distance"), check_bool(normalize, "normalize"),
                   check_max_size(max_size), check_choice(balance, BALANCES, "balance"),
                   check_bool(autocast, "autocast"))


def random_cnn_distance(
        pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
        spec: Optional[RandomCNNSpec] = None, weights: Optional[Sequence[Tensor]] = None,
        seed: int = DEFAULT_SEED, layer_weights=None, distance: str = "l1",
        normalize: bool = False, max_size: Optional[int] = DEFAULT_MAX_SIZE, balance: str = "init",
        autocast: bool = True, return_terms: bool = False, validate_args: bool = True):
    r"""Generic Perceptual Loss as a measure: per sample, the distance between the features of ``pred``
    and ``target`` in several layers of a frozen, randomly weighted CNN (Liu et al., CVPR 2021).
    :func:`random_cnn_perceptual_loss` is the loss form (reduced and weighted).

    With :math:`\phi_l` the features of compared layer :math:`l` (:math:`C_l` channels), :math:`g =
    [w > 0]` the valid pixels, :math:`m_l` the weight ``w`` average-pooled to layer :math:`l`'s size
    and :math:`d` the element-wise distance, the loss of sample :math:`n` is

    .. math::

        \ell_n = \sum_l \lambda_l \,
            \frac{\sum_{c,h,w} m_l[n,h,w]\; d\big(\phi_l(g \odot x)[n,c,h,w]
                  - \phi_l(g \odot y)[n,c,h,w]\big)}
                 {C_l \, \max\big(\sum_{h,w} m_l[n,h,w],\ \varepsilon\big)}

    where :math:`x, y` are ``pred`` and ``target`` (area-resized so that their longer side is at most
    ``max_size``) and :math:`\lambda_l` the layer weights. Without
    ``weight`` it is the plain mean of :math:`d` over each layer's features.

    Per-layer balance. Write :math:`T_l(a, b)` for the fraction above (layer :math:`l`'s term before
    :math:`\lambda_l`). Under ``init='gpl'`` the deeper layers' features are orders of magnitude
    smaller (``relu3_4``'s about 2,300x smaller than with Kaiming's initialisation), so unbalanced their
    terms are under 1% of the loss and of its gradient: the loss is in effect a shallow one.
    ``balance`` divides each term by a scale of its layer:

    * ``'none'``: :math:`T_l` as it is (release 0.2's default);
    * ``'init'`` (default): :math:`T_l / G_l`, with :math:`G_l` the layer's gain at initialisation
      (:func:`random_cnn_layer_gains`: its term for a fixed noise input against zero, over that input's
      own mean distance to zero). Computed once per ``(spec, C, seed, distance, normalize)`` from the
      seeded network and cached (the module keeps it in a non-persistent buffer): no cost per call,
      no host read. The terms are then in the units of the input;
    * ``'target'``: :math:`T_l(x, y) / \big(T_l(y, 0) + \epsilon\, G_l\big)` per sample, with
      :math:`T_l(y, 0)` the target features' mean distance to zero (with the same mask weights; the
      target carries no gradient) and :math:`\epsilon = 10^{-3}`: a relative error per layer, which
      does not change when both inputs are scaled (``'l1'``, ``'mse'``) and follows each sample's
      content.

    With ReLU (or leaky ReLU, or none), max or average pooling and no bias the network is positively
    homogeneous, so both balances divide out any per-layer scale of the initialisation: ``'gpl'``
    and ``'kaiming'`` then give the same loss. Either balance lifts every default layer to at least
    a third of an equal share of the loss and of its gradient on the SR, segmentation and instance-mask
    inputs of ``tools/layer_shares.py`` (docs/losses.md, "Layer shares"). ``'init'`` is the default
    (the evidence: docs/ablation.md). The balance sets the loss's scale, so
    ``loss_weight`` is calibrated with it (``tools/calibrate_loss_weight.py``).

    How the mask travels: pixels of weight 0 are set to 0 in both ``pred`` and ``target`` before the
    network (so they get exactly zero gradient, and look like the convolutions' zero padding); the
    weight itself is area-resized with the inputs and average-pooled wherever the features are
    pooled, and weights each layer's distance. A fully masked sample gives exactly 0, finite, with a
    gradient (of zeros).

    Args:
        pred: prediction ``(N, C, H, W)``, floating point (float16 and bfloat16 are computed in
            float32), any size: ``C`` class probabilities for segmentation, RGB for super-resolution
            (any range; the loss is positively homogeneous, scaling both inputs by ``a`` scales it by
            ``a`` for ``'l1'``), 1 channel for a mask head.
        target: ``(N, C, H, W)``, same shape; must be finite. It is a constant: no gradient flows
            to it.
        weight: optional per-pixel weight ``(N, 1, H, W)`` or ``(N, H, W)``, non-negative; 0 marks
            ignored pixels.
        spec: the random network and compared layers; default :class:`RandomCNNSpec()` (VGG-19
            widths, ``'gpl'`` initialisation, :data:`DEFAULT_LAYERS`).
        weights: prebuilt convolution weights from :func:`random_cnn_weights` (e.g. a module's
            buffers); default: drawn from ``spec``, ``C`` and ``seed`` (and cached).
        seed: seed of the random network when ``weights`` is not given.
        layer_weights: one non-negative weight per compared layer (a sequence in network order, or a
            dict by layer name, missing layers weighing 0); default 1 each.
        distance: ``'l1'`` (default), ``'mse'`` or ``'smooth_l1'`` (Huber with ``beta = 1``).
        normalize: divide every feature vector by its L2 norm over channels first (as LPIPS does).
        max_size: compute the loss on inputs area-resized so that the longer side is at most this
            many pixels (aspect ratio kept); ``None`` keeps the full resolution. Default
            :data:`DEFAULT_MAX_SIZE`.
        balance: ``'init'`` (default), ``'none'`` or ``'target'``: the per-layer balance above.
            With ``weights`` given, ``'init'`` and ``'target'`` compute the gains from them at every
            call (a forward pass of the 96x96 reference input); with ``weights=None`` or in the module,
            once.
        autocast: under an enabled ``torch.autocast`` (and float16, bfloat16 or float32 inputs), run
            the frozen network in autocast's 16-bit dtype and compute the distances and sums in
            float32 (default True); ``False`` keeps the network in float32 under autocast too
            (release 0.2's behaviour). At bfloat16 the loss is within 1% of float32's (tested). On
            CUDA the network also runs in
            ``channels_last`` memory format.
        return_terms: also return the breakdown ``{layer: (N,)}``, each layer's weighted term
            :math:`\lambda_l \cdot(\dots)`; the terms sum to the total.
        validate_args: check the inputs' values (finite ``pred`` and ``target``, a finite
            non-negative ``weight``), which reads them on the host; pass ``False`` on a training path
            (shapes and settings are always checked; docs/losses.md, "What is checked, and when"). Without it
            a negative or NaN weight counts as 0, as in Patch-MMD.

    Returns:
        ``(N,)`` in float32 (float64 for float64 inputs), whatever the input dtype; with
        ``return_terms``, ``(distance, terms)``.

    Shape:
        - pred, target: :math:`(N, C, H, W)`, any :math:`H, W \geq 1` (pooling uses ``ceil_mode``:
          maps smaller than the network's total downsampling shrink to 1x1 and stay so).
        - weight: :math:`(N, 1, H, W)` or :math:`(N, H, W)`.
        - output: :math:`(N,)`.

    Raises:
        TypeError: if ``pred`` or ``target`` is not a floating-point tensor.
        ValueError: if the shapes differ, ``target`` holds NaN or Inf (with ``validate_args``), ``C`` is not the channel count
            ``weights`` were drawn for, ``weight`` has the wrong shape or a negative value, or an
            argument is out of range.

    Example:
        >>> pred = torch.rand(2, 3, 32, 32, requires_grad=True)
        >>> target = torch.rand(2, 3, 32, 32)
        >>> d = random_cnn_distance(pred, target)
        >>> d.shape
        torch.Size([2])
        >>> d, terms = random_cnn_distance(pred, target, return_terms=True)
        >>> list(terms)
        ['relu1_2', 'relu2_2', 'relu3_4']
        >>> _, plain = random_cnn_distance(pred, target, balance="none", return_terms=True)
        >>> bool((plain["relu3_4"] < plain["relu1_2"] / 100).all())  # 'gpl' unbalanced: relu3_4 barely counts
        True
        >>> _, balanced = random_cnn_distance(pred, target, return_terms=True)  # balance='init'
        >>> bool((balanced["relu3_4"] > balanced["relu1_2"] / 10).all())
        True
        >>> _, kaiming = random_cnn_distance(pred, target, spec=RandomCNNSpec(init="kaiming"),
        ...                                  balance="init", return_terms=True)
        >>> torch.allclose(balanced["relu3_4"], kaiming["relu3_4"], rtol=1e-4)  # the init's scale is gone
        True
    """
    spec = RandomCNNSpec() if spec is None else spec
    if not isinstance(spec, RandomCNNSpec):
        raise TypeError(f"`spec` must be a RandomCNNSpec or None, got {type(spec).__name__}")
    comparison = _Comparison.build(spec, layer_weights, distance, normalize, max_size, balance,
                                   autocast)
    checked = _checked_weights(spec, weights, pred, seed)
    gains = None
    if comparison.balance != "none":
        gains = (_cached_gains(spec, pred.shape[1], seed, comparison.distance, comparison.normalize)
                 if weights is None else random_cnn_layer_gains(
                     spec, checked, distance=comparison.distance, normalize=comparison.normalize))
    return _random_cnn_distance(pred, target, weight, spec, comparison, checked, gains,
                                return_terms, check_validate_args(validate_args))


def random_cnn_perceptual_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                               reduction: str = "mean", loss_weight: float = 1.0,
                               return_terms: bool = False, validate_args: bool = True,
                               **settings):
    r"""Generic Perceptual Loss: :func:`random_cnn_distance` reduced over the batch and multiplied by
    ``loss_weight`` (the loss form; :class:`RandomCNNPerceptualLoss` is the module).

    Args:
        pred, target, weight: as in :func:`random_cnn_distance`.
        reduction: ``'mean'`` (default) or ``'sum'`` over the batch, or ``'none'`` for ``(N,)``.
        loss_weight: multiplies the result.
        return_terms: also return the per-layer terms, reduced and weighted like the loss (so they
            sum to it).
        validate_args: as in :func:`random_cnn_distance`.
        **settings: the other keyword arguments of :func:`random_cnn_distance` (``spec``,
            ``weights``, ``seed``, ``layer_weights``, ``distance``, ``normalize``, ``max_size``,
            ``balance``).

    Returns:
        A scalar, or ``(N,)`` with ``reduction='none'``; with ``return_terms``, ``(loss, terms)``.

    Example:
        >>> pred = torch.rand(2, 3, 32, 32, requires_grad=True)
        >>> loss = random_cnn_perceptual_loss(pred, torch.rand(2, 3, 32, 32))
        >>> loss.backward()
        >>> loss.shape
        torch.Size([])
    """
    reduction = check_reduction(reduction)
    out = random_cnn_distance(pred, target, weight, return_terms=return_terms,
                              validate_args=validate_args, **settings)
    return _reduce_and_weight(out, reduction, check_loss_weight(loss_weight))


def _reduce_and_weight(out, reduction: str, loss_weight: float):
    """The loss form of a measure's output (a ``(N,)`` tensor, or it and its terms)."""
    if isinstance(out, tuple):
        total, terms = out
        return (reduce_per_sample(total, reduction) * loss_weight,
                {k: reduce_per_sample(v, reduction) * loss_weight for k, v in terms.items()})
    return reduce_per_sample(out, reduction) * loss_weight


def _checked_weights(spec: RandomCNNSpec, weights: Optional[Sequence[Tensor]], pred: Tensor,
                     seed: int) -> Sequence[Tensor]:
    """The convolution weights for ``pred``'s channel count: given (and checked), or cached."""
    check_image_pair(pred, pred, validate_args=False)  # names `pred` if it is no image
    if weights is None:
        return _cached_weights(spec, pred.shape[1], seed)
    weights = list(weights)
    if len(weights) != spec.num_convs:
        raise ValueError(f"`weights` must hold {spec.num_convs} convolution weights for this "
                         f"`spec`, got {len(weights)}")
    return weights


def _random_cnn_distance(pred: Tensor, target: Tensor, weight: Optional[Tensor],
                         spec: RandomCNNSpec, comparison: _Comparison, weights: Sequence[Tensor],
                         gains: Optional[Tensor], return_terms: bool, validate_args: bool):
    """:func:`random_cnn_distance` with checked settings (``gains``: the layers' gains, needed by a
    balance, else None)."""
    check_image_pair(pred, target, validate_args=validate_args)
    mask = as_weight_mask(weight, pred, "weight", validate_args)
    n, c, h, w = pred.shape
    if weights[0].shape[1] != c:
        raise ValueError(f"`pred` has {c} channels, but the random network was built for "
                         f"`in_channels`={weights[0].shape[1]}")

    dtype = compute_dtype(pred, target)
    device = pred.device
    # The network runs in `net_dtype`: `dtype`, or autocast's 16-bit dtype under an enabled autocast;
    # the distances and their sums are computed in `dtype` either way (autocast itself is off in here).
    net_dtype = _network_dtype(device.type, dtype, comparison.autocast)
    with no_autocast(device):
        # weights redrawn on the CPU reach a GPU without blocking the host
        ws = [host_to_device(wt, device).to(net_dtype) for wt in weights]
        x = pred.to(dtype)
        y = target.to(dtype)
        if mask is not None:
            mask = mask.to(dtype).clamp(min=0)  # weight <= 0: ignored, as Patch-MMD does
            gate = (mask > 0).to(dtype)
            x = x * gate
            y = y * gate
        size = reduced_size(h, w, comparison.max_size)
        x, y = area_resize(x, size), area_resize(y, size)
        if mask is not None:
            mask = area_resize(mask, size)
        x, y = x.to(net_dtype), y.to(net_dtype)
        if device.type == "cuda" and _CHANNELS_LAST_ON_CUDA:
            ws = [wt.contiguous(memory_format=torch.channels_last) for wt in ws]
            x = x.contiguous(memory_format=torch.channels_last)
            y = y.contiguous(memory_format=torch.channels_last)

        feats_x = random_cnn_features(x, ws, spec, mask)
        with torch.no_grad():
            feats_y = random_cnn_features(y, ws, spec)

        if gains is not None:
            gains = host_to_device(gains, device).to(dtype)
        total = torch.zeros(n, dtype=dtype, device=device)
        terms = OrderedDict()
        for i, ((name, (fx, m)), lam) in enumerate(zip(feats_x.items(), comparison.layer_weights)):
            fy = feats_y[name][0]
            fx, fy = fx.to(dtype), fy.to(dtype)  # 16-bit features: their difference in `dtype`
            if comparison.normalize:
                fx, fy = _normalize(fx), _normalize(fy)
            layer = _layer_mean(_distance(fx - fy, comparison.distance), m)
            if comparison.balance == "init":
                layer = layer / gains[i]
            elif comparison.balance == "target":
                # the target is a constant (its features carry no gradient): a per-sample scale
                scale = _layer_mean(_distance(fy, comparison.distance), m) + _TARGET_EPS * gains[i]
                layer = layer / scale
            terms[name] = lam * layer
            total = total + terms[name]
        return (total, terms) if return_terms else total


def _network_dtype(device_type: str, dtype: torch.dtype, follow_autocast: bool) -> torch.dtype:
    """``dtype``, or autocast's 16-bit dtype when autocast is enabled for ``device_type``, followed, and
    ``dtype`` is float32 (float64 inputs ask for float64 and get it)."""
    # `meta` (where shapes and op counts are worked out) has no autocast to follow
    if (follow_autocast and dtype == torch.float32 and device_type != "meta"
            and torch.is_autocast_enabled(device_type)):
        return torch.get_autocast_dtype(device_type)
    return dtype


def _layer_mean(d: Tensor, m: Optional[Tensor]) -> Tensor:
    """Per sample, the mean of ``d`` ``(N, C, H, W)`` over channels and locations weighted by ``m``
    ``(N, 1, H, W)`` (the plain mean without one)."""
    if m is None:
        return d.mean(dim=(1, 2, 3))
    num = (d.sum(dim=1, keepdim=True) * m).sum(dim=(1, 2, 3))
    den = m.sum(dim=(1, 2, 3)).clamp_min(_MASK_EPS) * d.shape[1]
    return num / den


# ----------------------------------------------------------------------------------------------
# Module
# ----------------------------------------------------------------------------------------------
class RandomCNNPerceptualLoss(nn.Module):
    r"""Generic Perceptual Loss (Liu et al., CVPR 2021): ``pred`` and ``target`` compared through a
    frozen, randomly weighted VGG-style CNN. See :func:`random_cnn_distance` for the maths.

    The weights are drawn once (on the first call when ``in_channels`` is None) by
    :func:`random_cnn_weights` from a local generator seeded with ``seed``, in float32 on the CPU, then
    moved to the input's device. They are non-persistent buffers without gradient: ``state_dict()``
    is empty, so a model carrying this loss saves exactly the keys it would without it, and the module
    owns no parameter (DDP needs no gradient synchronisation for it).

    Defaults and where they come from:

    * network: VGG-19 widths and 3x3 convolutions, ReLU, 2x2 max pooling: VGG is the network the paper
      randomises (its pilot experiment swaps the pretrained VGG of a perceptual loss for a random one).
    * initialisation ``'gpl'``: ``N(0, 2 / (l * fan_in))`` for the convolution at position ``l``,
      zero bias: the paper proposes an initialisation that keeps gradient scales stable; this form is
      what third-party code citing the paper uses (not verified against the paper's text). With ReLU,
      max pooling and no bias the network is positively homogeneous, so this equals Kaiming's
      initialisation followed by a fixed factor per layer: deeper layers give smaller features.
    * layers :data:`DEFAULT_LAYERS` (``relu1_2, relu2_2, relu3_4``: the last activation of the first
      three stages, receptive field 48 pixels, equal weights), distance ``'l1'`` (as mmagic's
      ``PerceptualLoss``), fixed weights: our choices; the paper states none of them that we could
      find. The layers were chosen by measuring each layer's L1 term alone (a 128x128 photograph,
      5x5 box blur):

      ==========  =======  =======  =======  =======  =======
      init        relu1_2  relu2_2  relu3_4  relu4_4  relu5_4
      ==========  =======  =======  =======  =======  =======
      'gpl'       1.9e-2   3.0e-3   1.9e-5   4.5e-8   3.9e-11
      'kaiming'   3.3e-2   3.6e-2   4.3e-2   5.4e-2   4.7e-2
      ==========  =======  =======  =======  =======  =======

      Unbalanced, with ``'gpl'``, stages 4 and 5 would add less than 1e-5 of the loss (and of its
      gradient) for about +55% of the cost, and even relu3_4 gives about 0.1% of it. Hence the
      default ``balance='init'`` (see :func:`random_cnn_distance`): each layer's term is divided by
      its gain at initialisation, every compared layer then counts (the layer shares in docs/losses.md), and
      'gpl' and 'kaiming' give the same loss. The network stops after stage 3 for the cost (a deeper
      one is the ablation arm ``gpl_deeper``). ``balance='none'`` is release 0.2's loss.
    * ``max_size=256``: chosen with ``tools/benchmark.py random-cnn`` (table in docs/benchmarks.md) so
      that the loss costs a few percent of a PSPNet-R50 training step on a 512x1024 Cityscapes batch;
      SR patches (96x96) are not resized. ``max_size=None`` computes it at full resolution.

    Args:
        in_channels: channels of the compared tensors; ``None`` (default) takes them from the first
            call.
        widths, kernel_size, activation, pooling, layers, init, init_std: the random network, see
            :class:`RandomCNNSpec`.
        seed: seed of the random network (default 0).
        redraw: draw new weights at every call (from a generator seeded with ``seed`` that
            advances), as an ablation of a fixed network.
        layer_weights, distance, normalize, max_size, balance, autocast: see :func:`random_cnn_distance`. With a
            balance, the layers' gains are computed once (from the seeded network, also with
            ``redraw``) and kept in the non-persistent buffer ``layer_gains`` (float64).
        reduction, loss_weight: see :func:`random_cnn_perceptual_loss`.
        validate_args: check input values on the host (finite ``pred`` and ``target``, a finite
            non-negative weight); default True. Adapters pass False on the training path.

    Shape:
        - pred, target: :math:`(N, C, H, W)`, any size.
        - weight: :math:`(N, 1, H, W)` or :math:`(N, H, W)`, optional.
        - output: :math:`()`, or :math:`(N,)` with ``reduction='none'``; float32 (float64 for float64
          inputs).

    Raises:
        ValueError: if ``pred`` has a channel count other than ``in_channels`` (or the first call's),
            and as :func:`random_cnn_distance`.
        TypeError: if an input is not a floating-point tensor.

    Example:
        >>> loss_fn = RandomCNNPerceptualLoss()
        >>> probs = torch.softmax(torch.randn(2, 19, 64, 128, requires_grad=True), dim=1)
        >>> one_hot = torch.nn.functional.one_hot(torch.randint(0, 19, (2, 64, 128)), 19)
        >>> loss = loss_fn(probs, one_hot.permute(0, 3, 1, 2).float())
        >>> loss.backward()
        >>> loss_fn.state_dict()
        OrderedDict()
    """

    def __init__(self, in_channels: Optional[int] = None, *,
                 widths: Sequence[Sequence[int]] = VGG19_WIDTHS,
                 kernel_size: Union[int, Sequence[int]] = 3, activation: str = "relu",
                 pooling: str = "max", layers: Sequence[str] = DEFAULT_LAYERS,
                 init: str = "gpl", init_std: float = 0.01, seed: int = DEFAULT_SEED,
                 redraw: bool = False, layer_weights=None, distance: str = "l1",
                 normalize: bool = False, max_size: Optional[int] = DEFAULT_MAX_SIZE,
                 balance: str = "init", autocast: bool = True, reduction: str = "mean",
                 loss_weight: float = 1.0, validate_args: bool = True) -> None:
        super().__init__()
        self.spec = RandomCNNSpec(widths=widths, kernel_size=kernel_size, activation=activation,
                                  pooling=pooling, layers=layers, init=init, init_std=init_std)
        if in_channels is not None and (not isinstance(in_channels, int) or isinstance(in_channels, bool)
                                        or in_channels < 1):
            raise ValueError(f"`in_channels` must be a positive int or None, got {in_channels!r}")
        seeded_generator(seed)  # validates `seed`
        self.in_channels = in_channels
        self.seed = seed
        self.redraw = check_bool(redraw, "redraw")
        self.comparison = _Comparison.build(self.spec, layer_weights, distance, normalize, max_size,
                                            balance, autocast)
        self.reduction = check_reduction(reduction)
        self.loss_weight = check_loss_weight(loss_weight)
        self.validate_args = check_validate_args(validate_args)
        self._generator: Optional[torch.Generator] = None
        self._num_weights = 0
        if in_channels is not None:
            self._set_weights(random_cnn_weights(self.spec, in_channels, seed))

    @property
    def layers(self) -> Tuple[str, ...]:
        """The compared layers, in network order."""
        return self.spec.layers

    def _set_weights(self, weights: List[Tensor], device: Optional[torch.device] = None) -> None:
        for i, w in enumerate(weights):
            self.register_buffer(f"weight_{i}", w if device is None else w.to(device),
                                 persistent=False)
        self._num_weights = len(weights)
        self._set_gains(weights[0].shape[1], device)

    def _set_gains(self, in_channels: int, device: Optional[torch.device] = None) -> None:
        """With a balance: the layers' gains (:func:`random_cnn_layer_gains`) as a non-persistent
        float64 buffer, moved with the module like the weights. They are the seeded network's, also
        with ``redraw`` (they measure the architecture and initialisation, which every draw shares)."""
        if self.comparison.balance == "none" or hasattr(self, "layer_gains"):
            return
        gains = _cached_gains(self.spec, in_channels, self.seed, self.comparison.distance,
                              self.comparison.normalize).clone()
        self.register_buffer("layer_gains", gains if device is None else gains.to(device),
                             persistent=False)

    def random_weights(self) -> List[Tensor]:
        """The convolution weights (buffers); empty before the first call when ``in_channels=None``."""
        return [getattr(self, f"weight_{i}") for i in range(self._num_weights)]

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, layers={self.spec.layers}, init={self.spec.init!r}, "
                f"seed={self.seed}, distance={self.comparison.distance!r}, "
                f"max_size={self.comparison.max_size}, balance={self.comparison.balance!r}, "
                f"redraw={self.redraw}")

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                return_terms: bool = False):
        """Loss of ``pred`` against ``target`` ``(N, C, H, W)``; ``weight`` ``(N, [1,] H, W)`` optional.

        With ``return_terms`` also the per-layer terms (reduced and weighted like the loss)."""
        weights = self._weights_for(pred)
        out = _random_cnn_distance(pred, target, weight, self.spec, self.comparison, weights,
                                   getattr(self, "layer_gains", None), return_terms,
                                   self.validate_args)
        return _reduce_and_weight(out, self.reduction, self.loss_weight)

    def _weights_for(self, pred: Tensor) -> Sequence[Tensor]:
        """The network for ``pred``: drawn on the first call (``in_channels=None``), or anew at each
        call (``redraw``). The channel count is a shape: checking it reads nothing on the host."""
        check_image_pair(pred, pred, validate_args=False)  # names `pred` if it is no image
        c = pred.shape[1]
        if self.in_channels is None:
            self.in_channels = c
        elif c != self.in_channels:
            raise ValueError(f"`pred` has {c} channels, but the random network was built for "
                             f"`in_channels`={self.in_channels}")
        if self.redraw:
            if self._generator is None:
                self._generator = seeded_generator(self.seed)
                self._set_gains(c, pred.device)
            return random_cnn_weights(self.spec, c, generator=self._generator)
        if self._num_weights == 0:
            self._set_weights(random_cnn_weights(self.spec, c, self.seed), device=pred.device)
        return self.random_weights()
