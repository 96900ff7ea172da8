"""The config files of ``tools/train_net.py``, in either of detectron2's forms: a YAML file merged into
``get_cfg()`` (with :func:`randperc_plugins.detectron2.add_randperc_config`'s keys), whose ``_BASE_`` may
name a config of detectron2's installed model zoo as ``"detectron2::<model-zoo path>"``, or a LazyConfig
(a ``.py`` file). Imports detectron2 inside the functions.
"""
from __future__ import annotations

import os

#: Prefix of a YAML ``_BASE_`` that names a config of detectron2's installed model zoo (the form
#: mmengine's ``'mmdet::...'`` bases have): resolved with ``detectron2.model_zoo.get_config_file``.
ZOO_PREFIX = "detectron2::"


def is_lazy_config(path: str) -> bool:
    """Whether ``path`` names a LazyConfig (a ``.py`` file) rather than a YAML config."""
    return path.endswith(".py")


def _merge_yaml(cfg, path: str) -> None:
    import yaml
    from detectron2 import model_zoo

    with open(path) as f:
        data = yaml.safe_load(f) or {}
    base = data.pop("_BASE_", None)
    if base is not None:
        if base.startswith(ZOO_PREFIX):
            # detectron2 resolves the rest of the chain (the zoo's own relative `_BASE_`s)
            cfg.merge_from_file(model_zoo.get_config_file(base[len(ZOO_PREFIX):]))
        else:
            _merge_yaml(cfg, base if os.path.isabs(base) else os.path.join(os.path.dirname(path), base))
    cfg.merge_from_other_cfg(type(cfg)(data))


def load_config(path: str):
    """A config file of either form: a LazyConfig (``.py``, ``LazyConfig.load``) or a YAML file merged
    into ``get_cfg()`` with :func:`randperc_plugins.detectron2.add_randperc_config`'s keys.

    A YAML ``_BASE_`` may name a config of detectron2's installed model zoo as
    ``"detectron2::COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml"`` (a relative path into the
    installed package would not be portable); other ``_BASE_`` paths are relative to the file, as in
    detectron2.
    """
    from detectron2.config import LazyConfig, get_cfg

    from .detectron2 import add_randperc_config

    if not os.path.isfile(path):
        raise FileNotFoundError(f"`config_file` {path!r} does not exist")
    if is_lazy_config(path):
        return LazyConfig.load(path)
    cfg = add_randperc_config(get_cfg())
    _merge_yaml(cfg, path)
    return cfg
