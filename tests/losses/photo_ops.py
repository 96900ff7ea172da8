"""Image degradations for the tests on real photographs, done by scikit-image (an independent library)."""
import numpy as np
import torch
from skimage.filters import gaussian


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(N, C, H, W)`` with reflected borders, in ``x``'s dtype."""
    blurred = np.stack([gaussian(img, sigma=sigma, mode="reflect", channel_axis=0, preserve_range=True)
                        for img in x.detach().cpu().double().numpy()])
    return torch.from_numpy(blurred).to(x.dtype)
