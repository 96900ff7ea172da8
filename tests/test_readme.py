"""Every Python block of the README and of the documentation pages (docs/*.md) runs as written."""
import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
BLOCKS = [(os.path.relpath(path, REPO), block) for path in FILES
          for block in re.findall(r"```python\n(.*?)```", open(path).read(), flags=re.S)]


def test_readme_and_docs_have_python_examples():
    assert sum(1 for path, _ in BLOCKS if path == "README.md") >= 2
    assert sum(1 for path, _ in BLOCKS if path == os.path.join("docs", "losses.md")) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"{p}-{i}" for i, (p, _) in enumerate(BLOCKS)])
def test_python_block_runs(index):
    path, block = BLOCKS[index]
    exec(compile(block, f"{path} python block {index}", "exec"), {})
