"""Every test here builds in mmseg's registries: tests of several frameworks share one process, and
mmengine's default scope, which decides where a short `type` name is looked up, is process-wide."""
import pytest


@pytest.fixture(autouse=True)
def mmseg_default_scope():
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmseg"):
        yield
