"""Training-free perceptual losses for dense prediction and image synthesis."""

__version__ = "0.1.0"
