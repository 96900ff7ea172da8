"""Offline analyses of the losses on small task inputs (no training, no download).

* :mod:`.task_inputs`: what the analyses feed the losses: crops of scikit-image's photographs with a
  bicubic super-resolution prediction, segmentation label maps with logits of a chosen quality.
* :mod:`.layer_shares`: each compared layer's share of the random-CNN loss and of its gradient
  (``tools/layer_shares.py``).
"""
