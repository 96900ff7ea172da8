"""A test-only mmengine hook: after the first iteration, each rank writes a hash of every buffer of the
editor's pixel loss, so a test can compare the random loss networks across ranks."""
import hashlib
import os

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


class SRLossWeightsProbe(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter != 0:
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        lines = []
        for name, buf in sorted(model.named_buffers()):
            if name.startswith("pixel_loss."):
                digest = hashlib.sha256(buf.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
                lines.append(f"{name} {tuple(buf.shape)} {digest}")
        path = os.path.join(runner.work_dir, f"sr_loss_weights_rank{get_rank()}.txt")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
