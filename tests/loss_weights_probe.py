"""A test-only mmengine hook: after the first iteration, each rank writes a hash of every buffer of the
model whose name contains ``match`` (the loss holding the random network), so that a test can compare
the loss networks across ranks: ``loss_weights_rank{rank}.txt`` in the work dir."""
import hashlib
import os

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


class LossWeightsProbe(Hook):
    def __init__(self, match: str) -> None:
        self.match = match

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter != 0:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        lines = []
        for name, buf in sorted(model.named_buffers()):
            if self.match in name:
                digest = hashlib.sha256(buf.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
                lines.append(f"{name} {tuple(buf.shape)} {digest}")
        with open(os.path.join(runner.work_dir, f"loss_weights_rank{get_rank()}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
