"""On-device augmentation for self-training: ClassMix masks, colour jitter, Gaussian blur, MIC masks.

Every random choice comes from an explicit ``torch.Generator`` (CPU), so a step is reproducible from
(seed, step) alone and a resumed run draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.v2.functional as TF


def classmix_masks(labels: torch.Tensor, ignore_index: int, generator: torch.Generator) -> torch.Tensor:
    """For each source label map pick half of its classes (rounded up); ``[B,1,H,W]`` float mask of their pixels."""
    masks = []
    for label in labels:
        classes = torch.unique(label)
        classes = classes[classes != ignore_index]
        if classes.numel() == 0:
            masks.append(torch.zeros_like(label, dtype=torch.float32))
            continue
        order = torch.randperm(classes.numel(), generator=generator)
        chosen = classes[order[: (classes.numel() + 1) // 2].to(classes.device)]
        masks.append(torch.isin(label, chosen).float())
    return torch.stack(masks).unsqueeze(1)


def mix(mask: torch.Tensor, pasted: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``mask * pasted + (1 - mask) * background``; mask ``[B,1,H,W]``, tensors ``[B,C,H,W]`` or ``[B,H,W]``."""
    if pasted.dim() == 3:
        mask = mask[:, 0]
        return torch.where(mask.bool(), pasted, background)
    return mask * pasted + (1 - mask) * background


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def color_jitter(images: torch.Tensor, strength: float, probability: float, generator: torch.Generator) -> torch.Tensor:
    """DACS colour jitter (brightness, contrast, saturation, hue all ``strength``) on images in [0, 1]."""
    if strength <= 0:
        return images
    out = []
    for image in images:
        if float(torch.rand((), generator=generator)) < probability:
            image = TF.adjust_brightness(image, _uniform(generator, 1 - strength, 1 + strength))
            image = TF.adjust_contrast(image, _uniform(generator, 1 - strength, 1 + strength))
            image = TF.adjust_saturation(image, _uniform(generator, 1 - strength, 1 + strength))
            image = TF.adjust_hue(image, _uniform(generator, -min(strength, 0.5), min(strength, 0.5)))
        out.append(image.clamp(0, 1))
    return torch.stack(out)


def gaussian_blur(images: torch.Tensor, probability: float, generator: torch.Generator) -> torch.Tensor:
    """DACS blur: sigma uniform in [0.15, 1.15], kernel about a tenth of the image height, with ``probability``."""
    height = images.shape[-2]
    kernel = int(math.floor(math.ceil(0.1 * height) - 0.5 + math.ceil(0.1 * height) % 2))
    kernel = max(kernel | 1, 3)
    out = []
    for image in images:
        if float(torch.rand((), generator=generator)) < probability:
            sigma = _uniform(generator, 0.15, 1.15)
            image = TF.gaussian_blur(image, kernel_size=[kernel, kernel], sigma=[sigma, sigma])
        out.append(image)
    return torch.stack(out)


def strong_augment(
    images: torch.Tensor, jitter_strength: float, jitter_p: float, blur: bool, generator: torch.Generator
) -> torch.Tensor:
    images = color_jitter(images, jitter_strength, jitter_p, generator)
    if blur:
        images = gaussian_blur(images, 0.5, generator)
    return images


def block_mask(
    shape: tuple[int, int, int], block_size: int, ratio: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """MIC: ``[B,1,H,W]`` mask that keeps (1) or drops (0) each ``block_size`` square; ``ratio`` of blocks dropped."""
    batch, height, width = shape
    rows, cols = math.ceil(height / block_size), math.ceil(width / block_size)
    keep = (torch.rand(batch, 1, rows, cols, generator=generator) > ratio).float().to(device)
    keep = keep.repeat_interleave(block_size, dim=2).repeat_interleave(block_size, dim=3)
    return keep[:, :, :height, :width]
