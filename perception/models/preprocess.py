"""Input normalisation shared by the models, the streaming pipeline and the trainer.

The backbones come from torchvision's ImageNet recipes, so images are normalised with ImageNet's
mean and standard deviation after scaling uint8 to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(
    images: torch.Tensor, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD
) -> torch.Tensor:
    """Normalise (..., 3, H, W) images: uint8 in [0, 255] or float in [0, 1] -> zero-mean, unit-std float."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) float images to `size` = (H, W) with antialiased bilinear sampling (a no-op when equal)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
