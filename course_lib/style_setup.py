"""Set-up shared by the feed-forward style-transfer notebooks: which VGG-19 layers carry style,
which photos train and which test, and random training crops.

Used by ``notebooks/08_fast_style_transfer.ipynb`` (Johnson et al.) and
``notebooks/09_adain.ipynb`` (Huang & Belongie). Nothing here is a graded piece: the Gram
matrix is written again in each notebook that uses it (taught in notebook 06).

Layer names follow :class:`course_lib.features.VGGFeatures` (VGG-19, ``relu{block}_{conv}``).

Example:
    >>> STYLE_LAYERS[:2]
    ('relu1_1', 'relu2_1')
    >>> g = torch.Generator().manual_seed(0)
    >>> pool = [torch.rand(1, 3, 20, 24, generator=g)]
    >>> tuple(random_crops(pool, size=8, batch=3, generator=g).shape)
    (3, 3, 8, 8)
"""

from __future__ import annotations

import torch

from ._checks import check_positive_int
from .images import random_crop
from .samples import load_sample

#: Style layers of Gatys et al. (2016) on VGG-19: the first ReLU of each block. Notebooks 08 and
#: 09 use a prefix of this list (shallower on a CPU).
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

#: Johnson et al.'s (2016) style layers, for reference: they are **VGG-16**'s, which
#: :class:`~course_lib.features.VGGFeatures` (VGG-19) does not provide.
JOHNSON_VGG16_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

#: Photos the networks train on, and photos held out to test them (bundled samples).
TRAIN_PHOTOS = ("astronaut", "rocket", "grace_hopper", "camera")
TEST_PHOTOS = ("chelsea", "coffee")


def style_layers(depth: int) -> list[str]:
    """The first ``depth`` Gatys style layers, e.g. ``["relu1_1", "relu2_1", "relu3_1"]`` for 3.

    Raises:
        ValueError: ``depth`` is not in 1..5.
    """
    check_positive_int(depth, "depth")
    if depth > len(STYLE_LAYERS):
        raise ValueError(f"`depth` must be between 1 and {len(STYLE_LAYERS)}; got {depth}")
    return list(STYLE_LAYERS[:depth])


def load_photos(
    names: tuple[str, ...] | list[str], size: int, *, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """Bundled samples as RGB, each ``(1, 3, size, size)`` float32 in [0, 1] on ``device``."""
    return [load_sample(name, size, channels=3, device=device) for name in names]


def random_crops(
    pool: list[torch.Tensor], *, size: int, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch`` random ``size``×``size`` crops, each from a random image of ``pool`` at a random
    place, flipped left–right with probability ½.

    Args:
        pool: images ``(1, C, H, W)`` with ``H, W >= size`` (sizes may differ), one device.
        size: side of the crops.
        batch: number of crops.
        generator: a CPU ``torch.Generator``; the same state gives the same crops.

    Returns:
        ``(batch, C, size, size)`` on the pool's device.

    Raises:
        ValueError: empty ``pool``, ``size`` or ``batch`` below 1, or a crop larger than an image.
        TypeError: ``size`` or ``batch`` is not an int.
    """
    if not pool:
        raise ValueError("`pool` must hold at least one image (1, C, H, W); got an empty list")
    check_positive_int(size, "size")
    check_positive_int(batch, "batch")
    small = [tuple(im.shape[-2:]) for im in pool if min(im.shape[-2:]) < size]
    if small:
        raise ValueError(f"every image of `pool` must be at least {size}x{size}; got {small}")
    crops = []
    for _ in range(batch):
        k = int(torch.randint(len(pool), (1,), generator=generator))
        crop = random_crop(pool[k], size, generator=generator)
        crops.append(crop.flip(-1) if torch.rand(1, generator=generator) < 0.5 else crop)
    return torch.cat(crops)  # (batch, C, size, size)
