"""Research code beside the product, not installed: the offline demo (``demo``), the ablation of the
losses' settings (``ablation``), the loss-weight calibration (``calibration``) and the analyses behind
the defaults (``analysis``), and the toy datasets they and the tests train on (``datasets``).

The wheel holds ``randperc_plugins`` only. ``tools/`` puts the repository root on ``sys.path`` to import
this package, and pytest does so through ``pythonpath`` in ``pyproject.toml``.
"""
