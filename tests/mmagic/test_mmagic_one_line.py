"""The one line of the MMagic page (docs/mmagic.md; the README copies it) on mmagic SR baselines the
project does not ship: the model builds from the user's config, a train step runs, and each term (pixel
and perceptual) is finite, logged and has a gradient."""
import os
import re

import pytest
import torch

pytest.importorskip("mmagic")
from mmengine.config import Config  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmagic.registry import MODELS  # noqa: E402
from mmagic.structures import DataSample  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGE = os.path.join(REPO, "docs", "mmagic.md")
README = os.path.join(REPO, "README.md")
ONE_LINE = r"^(model = dict\(pixel_loss=.*\))$"

BASELINES = [  # (shipped config, scale); RDN (22M parameters) takes over a minute per case on 2 cores
    pytest.param("mmagic::rdn/rdn_x4c64b16_1xb16-1000k_div2k.py", 4, marks=pytest.mark.slow),
    ("mmagic::srcnn/srcnn_x4k915_1xb16-1000k_div2k.py", 4),
    ("mmagic::swinir/swinir_x2s64w8d4e60_8xb4-lr2e-4-500k_div2k.py", 2),
]


def page_lines():
    """The one line per loss that the MMagic page's "The one line" section gives."""
    text = open(PAGE).read()
    section = text.split("## The one line\n", 1)[1].split("\n## ", 1)[0]
    lines = re.findall(ONE_LINE, section, flags=re.M)
    assert len(lines) == 2, section
    return lines


def test_the_readme_gives_the_pages_line():
    lines = re.findall(ONE_LINE, open(README).read(), flags=re.M)
    assert lines and set(lines) <= set(page_lines())


def _raw_batch(scale, batch=2):
    lq_size = 16 // scale  # tiny: 16x16 ground truths (two 7x7 patches across)
    g = torch.Generator().manual_seed(0)
    gts = [torch.rand(3, lq_size * scale, lq_size * scale, generator=g) * 255 for _ in range(batch)]
    return dict(inputs=[torch.nn.functional.avg_pool2d(gt[None], scale)[0] for gt in gts],
                data_samples=[DataSample(gt_img=gt) for gt in gts])


@pytest.mark.parametrize("line", page_lines(), ids=("gpl", "patch-mmd"))
@pytest.mark.parametrize("base, scale", BASELINES, ids=("rdn_x4", "srcnn_x4", "swinir_x2"))
def test_one_line_trains_an_unshipped_baseline(tmp_path, base, scale, line):
    path = tmp_path / "user_config.py"
    path.write_text(f"_base_ = {base!r}\n{line}\n")
    cfg = Config.fromfile(str(path))
    assert "custom_imports" not in cfg
    init_default_scope("mmagic")
    model = MODELS.build(cfg.model)
    base_loss, term_loss = model.pixel_loss.base, model.pixel_loss.perceptual
    assert type(base_loss).__name__ == Config.fromstring(f"_base_ = {base!r}\n", ".py").model.pixel_loss.type

    # Each term on its own has a finite value and a gradient on the generator.
    data = model.data_preprocessor(_raw_batch(scale), True)
    pred = model.forward_tensor(data["inputs"], data["data_samples"])
    gt = data["data_samples"].gt_img
    params = [p for p in model.generator.parameters() if p.requires_grad]
    for term in (base_loss, term_loss):
        value = term(pred, gt)
        assert torch.isfinite(value) and value > 0, type(term).__name__
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), type(term).__name__
        assert all(g is None or torch.isfinite(g).all() for g in grads)

    # A train step as the runner makes it: the editor returns one loss, the hub holds both terms.
    hub = MessageHub.get_instance(f"one_line_{tmp_path.name}")
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    log_vars = model.train_step(_raw_batch(scale), optim)
    assert set(log_vars) == {"loss"} and torch.isfinite(log_vars["loss"])
    pix = hub.log_scalars["train/loss_pix"].current()
    term = hub.log_scalars[f"train/{term_loss.loss_name}"].current()
    assert pix > 0 and term > 0
    assert log_vars["loss"].item() == pytest.approx(pix + term, rel=1e-5)
