"""Independent float64 reference of the random-CNN loss: the layer sequence rebuilt as a flat list,
plain ``F`` calls, and the per-layer balances written from their definitions."""
import torch
import torch.nn.functional as F

def seeded_rand(*shape, seed=0, dtype=torch.float64):
    """Uniform [0, 1) values from a local generator seeded with ``seed``."""
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


_ACTS = {"relu": torch.relu, "tanh": torch.tanh, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
         "identity": lambda t: t}


def reference_features(x, weights, widths, activation="relu", pooling="max", kernel_size=3, mask=None):
    """``{layer name: (features, mask)}`` of every layer up to the last given weight."""
    ws = [w.double() for w in weights]
    seq = []
    for s, stage in enumerate(widths, 1):
        for i in range(1, len(stage) + 1):
            seq += [("conv", f"conv{s}_{i}"), ("act", f"relu{s}_{i}")]
        if pooling != "none":
            seq.append(("pool", f"pool{s}"))
    out, k, m = {}, 0, mask
    for kind, name in seq:
        if kind == "conv":
            if k == len(ws):
                break
            x = F.conv2d(x, ws[k], padding=kernel_size // 2)
            k += 1
        elif kind == "act":
            x = _ACTS[activation](x)
        else:
            # 2x2 windows, the last one clipped on odd sizes (ceil mode)
            hh, ww = x.shape[-2:]
            x = F.pad(x, (0, ww % 2, 0, hh % 2), value=-float("inf") if pooling == "max" else 0.0)
            if pooling == "max":
                x = F.max_pool2d(x, 2)
            else:
                count = F.pad(torch.ones(1, 1, hh, ww, dtype=x.dtype), (0, ww % 2, 0, hh % 2))
                x = F.avg_pool2d(x, 2) / F.avg_pool2d(count, 2)
            if m is not None:
                cm = F.pad(torch.ones(1, 1, hh, ww, dtype=m.dtype), (0, ww % 2, 0, hh % 2))
                m = F.avg_pool2d(F.pad(m, (0, ww % 2, 0, hh % 2)), 2) / F.avg_pool2d(cm, 2)
        out[name] = (x, m)
    return out


def _unit(a):
    return a / torch.sqrt((a ** 2).sum(1, keepdim=True) + 1e-10)


def _elementwise(diff, distance):
    if distance == "l1":
        return diff.abs()
    if distance == "mse":
        return diff ** 2
    return torch.where(diff.abs() < 1, 0.5 * diff ** 2, diff.abs() - 0.5)


def reference_gains(weights, widths, layers, activation="relu", pooling="max", kernel_size=3,
                    distance="l1", normalize=False):
    """Each layer's gain: its mean distance to zero for a uniform [0, 1) input ``(1, C, 96, 96)``
    drawn with seed 0, over the input's own mean distance to zero."""
    r = torch.rand(1, weights[0].shape[1], 96, 96, generator=torch.Generator().manual_seed(0),
                   dtype=torch.float64)
    feats = reference_features(r, weights, widths, activation, pooling, kernel_size)
    gains = []
    for name in layers:
        f = feats[name][0]
        f = _unit(f) if normalize else f
        gains.append(_elementwise(f, distance).mean() / _elementwise(r, distance).mean())
    return gains


def reference_distance(pred, target, weights, widths, layers, activation="relu", pooling="max",
                       kernel_size=3, mask=None, layer_weights=None, distance="l1", normalize=False,
                       max_size=None, loss_weight=1.0, balance="init"):
    """Per sample: sum over layers of ``lambda_l * term_l`` (``balance``, default 'init' as the core's: 'none'; 'init' divides
    ``term_l`` by the layer's gain, 'target' by the target features' mean distance to zero plus
    ``1e-3`` times the gain), times ``loss_weight``."""
    pred, target = pred.double(), target.double()
    n, _, h, w = pred.shape
    if mask is not None:
        mask = mask.double().reshape(n, 1, h, w)
        pred = torch.where(mask > 0, pred, torch.zeros_like(pred))
        target = torch.where(mask > 0, target, torch.zeros_like(target))
    if max_size is not None and max(h, w) > max_size:
        s = max_size / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        pred = F.adaptive_avg_pool2d(pred, size)
        target = F.adaptive_avg_pool2d(target, size)
        if mask is not None:
            mask = F.adaptive_avg_pool2d(mask, size)
    kw = dict(activation=activation, pooling=pooling, kernel_size=kernel_size)
    fx, fy = (reference_features(pred, weights, widths, mask=mask, **kw),
              reference_features(target, weights, widths, **kw))
    gains = reference_gains(weights, widths, layers, distance=distance, normalize=normalize, **kw) \
        if balance != "none" else None
    lw = [1.0] * len(layers) if layer_weights is None else layer_weights
    total = torch.zeros(n, dtype=torch.float64)
    for i, (name, lam) in enumerate(zip(layers, lw)):
        a, m = fx[name]
        b = fy[name][0]
        if normalize:
            a, b = _unit(a), _unit(b)
        if m is None:
            m = torch.ones(n, 1, *a.shape[-2:], dtype=a.dtype)

        def masked_mean(d):
            return (d * m).sum((1, 2, 3)) / (m.sum((1, 2, 3)).clamp_min(1e-12) * d.shape[1])

        per = masked_mean(_elementwise(a - b, distance))
        if balance == "init":
            per = per / gains[i]
        elif balance == "target":
            per = per / (masked_mean(_elementwise(b, distance)) + 1e-3 * gains[i])
        total = total + lam * per
    return loss_weight * total


SPEC_KEYS = ("widths", "pooling", "activation", "init", "kernel_size", "layers")


def reference_case(case, spec_defaults):
    """A reference test case, a dict of loss settings (``mask=True`` for a mask), split into
    ``(pred, target, mask, spec_kw, max_size, comparison settings)`` on 2x3x13x11 float64 inputs."""
    case = dict(case)
    pred, target = seeded_rand(2, 3, 13, 11, seed=1), seeded_rand(2, 3, 13, 11, seed=2)
    mask = None
    if case.pop("mask", False):
        mask = (seeded_rand(2, 1, 13, 11, seed=3) > 0.3).double() * seeded_rand(2, 1, 13, 11, seed=4)
    spec_kw = {**spec_defaults, **{k: case.pop(k) for k in SPEC_KEYS if k in case}}
    return pred, target, mask, spec_kw, case.pop("max_size", None), case


def reference_for(loss, pred, target, mask, spec_kw, max_size, settings, loss_weight=1.0):
    """:func:`reference_distance` for a module built from ``spec_kw`` and ``settings``."""
    net_kw = {k: spec_kw[k] for k in ("pooling", "activation", "kernel_size") if k in spec_kw}
    return reference_distance(pred, target, loss.random_weights(), spec_kw["widths"], loss.layers,
                              mask=mask, max_size=max_size, loss_weight=loss_weight, **net_kw, **settings)
