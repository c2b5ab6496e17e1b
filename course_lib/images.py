"""Image conversion and small image operations.

Convention (used everywhere in the kit): an image batch is a float32 tensor ``(B, C, H, W)``
with values in ``[0, 1]``; ``C`` is 1 (grey) or 3 (RGB). Conversions to other layouts and
ranges happen only here, in named functions, at the edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ._checks import check_image, check_positive_int, check_size, describe

# ITU-R BT.601 luma weights (as in rgb2gray of most libraries, and in image analogies).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)


# ----------------------------------------------------------------------------- conversion


def from_numpy(array: np.ndarray) -> torch.Tensor:
    """NumPy image ``(H, W)``, ``(H, W, C)`` or ``(B, H, W, C)`` → float32 ``(B, C, H, W)``.

    ``uint8`` arrays are divided by 255; ``uint16`` by 65535; booleans become 0/1; floating
    arrays must already lie in ``[0, 1]`` (they are not rescaled: a value outside is an error).

    Example:
        >>> from_numpy(np.zeros((5, 7, 3), np.uint8)).shape
        torch.Size([1, 3, 5, 7])
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"`array` must be a numpy array; got {describe(array)}")
    if array.dtype == np.uint8:
        x = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        x = array.astype(np.float32) / 65535.0
    elif array.dtype == bool:
        x = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        x = array.astype(np.float32)
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1):
            raise ValueError(
                f"`array` is floating with values in [{np.nanmin(x):.3g}, {np.nanmax(x):.3g}]; "
                "expected [0, 1] (divide by 255 for 8-bit data)"
            )
    else:
        raise TypeError(f"`array` must be uint8, uint16, bool or float; got {array.dtype}")
    if x.ndim == 2:
        x = x[None, :, :, None]
    elif x.ndim == 3:
        x = x[None]
    elif x.ndim != 4:
        raise ValueError(f"`array` must be (H, W), (H, W, C) or (B, H, W, C); got {x.shape}")
    if x.shape[-1] == 4:  # drop alpha
        x = x[..., :3]
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()  # (B,C,H,W)


def to_numpy(image: torch.Tensor) -> np.ndarray:
    """Float tensor ``(B, C, H, W)`` or ``(C, H, W)`` → NumPy float32 ``(B, H, W, C)`` /
    ``(H, W, C)`` on the CPU, values unchanged."""
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        return to_numpy(image[None])[0]
    check_image(image, "image", finite=False)
    return image.detach().to("cpu", torch.float32).permute(0, 2, 3, 1).numpy()


def from_pil(picture: Image.Image) -> torch.Tensor:
    """PIL image → float32 ``(1, C, H, W)`` in ``[0, 1]``; greyscale stays 1 channel,
    everything else becomes RGB."""
    if not isinstance(picture, Image.Image):
        raise TypeError(f"`picture` must be a PIL.Image; got {describe(picture)}")
    if picture.mode not in ("L", "RGB"):
        picture = picture.convert("RGB")
    return from_numpy(np.asarray(picture))


def to_pil(image: torch.Tensor) -> Image.Image:
    """First image of a ``(B, C, H, W)`` batch (or a ``(C, H, W)`` image) → 8-bit PIL image.

    Values are clamped to ``[0, 1]`` (never rescaled) before rounding.
    """
    arr = to_numpy(image if image.ndim == 4 else image[None])[0]
    arr = np.clip(arr, 0.0, 1.0)
    u8 = np.round(arr * 255).astype(np.uint8)
    return Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)


def to_minus1_1(image: torch.Tensor) -> torch.Tensor:
    """``[0, 1]`` → ``[-1, 1]`` (the range tanh generators work in)."""
    return image * 2 - 1


def from_minus1_1(image: torch.Tensor) -> torch.Tensor:
    """``[-1, 1]`` → ``[0, 1]``."""
    return (image + 1) / 2


# ----------------------------------------------------------------------------- files


def load_image(
    path: str | Path, size: int | tuple[int, int] | None = None, *, grayscale: bool = False
) -> torch.Tensor:
    """Read an image file as float32 ``(1, C, H, W)`` in ``[0, 1]`` (C = 3, or 1 if ``grayscale``).

    Args:
        path: the file.
        size: resize to this (an int resizes the *shorter* side, keeping the aspect ratio;
            ``(h, w)`` resizes exactly); ``None`` keeps the size.
        grayscale: return luminance only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path` does not name a file: {path}")
    with Image.open(path) as pic:
        x = from_pil(pic.convert("L" if grayscale else "RGB"))
    return resize(x, size) if size is not None else x


def save_image(image: torch.Tensor, path: str | Path, *, overwrite: bool = False) -> Path:
    """Save the first image of a ``(B, C, H, W)`` batch in ``[0, 1]`` as PNG/JPEG (by suffix).

    Refuses to replace an existing file unless ``overwrite=True``, so nothing a user made is
    lost silently. Values outside ``[0, 1]`` are clamped.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"`path` exists: {path}; pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path)
    return path


# ----------------------------------------------------------------------------- geometry


def resize(
    image: torch.Tensor, size: int | tuple[int, int], *, antialias: bool = True
) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` with bilinear interpolation.

    ``size`` as an int sets the shorter side (aspect ratio kept); ``(h, w)`` sets both.
    Output values stay in ``[0, 1]`` (clamped after interpolation).
    """
    check_image(image, "image")
    if isinstance(size, int) and not isinstance(size, bool):
        check_positive_int(size, "size")
        h, w = image.shape[-2:]
        scale = size / min(h, w)
        out = (max(1, round(h * scale)), max(1, round(w * scale)))
    else:
        out = check_size(size, "size")
    if tuple(image.shape[-2:]) == out:
        return image
    y = F.interpolate(image, size=out, mode="bilinear", align_corners=False, antialias=antialias)
    return y.clamp(0, 1)


def center_crop(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The central ``size`` crop of ``(B, C, H, W)``; raises if the image is smaller."""
    h, w = check_size(size, "size")
    check_image(image, "image", min_size=(h, w))
    top = (image.shape[-2] - h) // 2
    left = (image.shape[-1] - w) // 2
    return image[..., top : top + h, left : left + w]


def random_crop(
    image: torch.Tensor, size: int | tuple[int, int], *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random ``size`` crop (the same window for the whole batch) of ``(B, C, H, W)``."""
    h, w = check_size(size, "size")
    check_image(image, "image", min_size=(h, w))
    top = int(torch.randint(0, image.shape[-2] - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, image.shape[-1] - w + 1, (1,), generator=generator))
    return image[..., top : top + h, left : left + w]


def extract_patches(image: torch.Tensor, size: int, *, stride: int = 1) -> torch.Tensor:
    """All ``size × size`` patches of ``(B, C, H, W)`` (valid positions, row-major order).

    Returns:
        ``(B, N, C, size, size)`` with
        ``N = ((H - size) // stride + 1) * ((W - size) // stride + 1)``,
        on the input's device and dtype.
    """
    check_positive_int(size, "size")
    check_positive_int(stride, "stride")
    check_image(image, "image", min_size=size)
    b, c = image.shape[:2]
    cols = F.unfold(image, kernel_size=size, stride=stride)  # (B, C*size*size, N)
    return cols.transpose(1, 2).reshape(b, -1, c, size, size)  # (B, N, C, size, size)


# ----------------------------------------------------------------------------- colour


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` of ``(B, 3, H, W)`` → ``(B, 1, H, W)``.

    A 1-channel input is returned unchanged.
    """
    check_image(image, "image", channels=(1, 3))
    if image.shape[1] == 1:
        return image
    w = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image * w).sum(dim=1, keepdim=True)


def to_grayscale(image: torch.Tensor, *, channels: int = 1) -> torch.Tensor:
    """Luminance, repeated to ``channels`` (1 or 3) channels."""
    y = luminance(image)
    return y.expand(-1, channels, -1, -1).contiguous() if channels == 3 else y


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """RGB ``(B, 3, H, W)`` in ``[0, 1]`` → YIQ ``(B, 3, H, W)``.

    Y lies in ``[0, 1]``; I and Q are signed.
    """
    check_image(image, "image", channels=3)
    m = _RGB_TO_YIQ.to(image.device, image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_yiq` (values may leave ``[0, 1]``; clamp before display)."""
    check_image(image, "image", channels=3)
    m = torch.linalg.inv(_RGB_TO_YIQ).to(image.device, image.dtype)
    return torch.einsum("ij,bjhw->bihw", m, image)


def match_color(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Give ``source`` the per-channel mean and standard deviation of ``target``.

    Both ``(B, C, H, W)`` in ``[0, 1]`` with the same ``C``; the result is clamped to ``[0, 1]``.
    """
    check_image(source, "source")
    check_image(target, "target", channels=source.shape[1])
    sm, ss = source.mean((2, 3), keepdim=True), source.std((2, 3), keepdim=True)
    tm, ts = target.mean((2, 3), keepdim=True), target.std((2, 3), keepdim=True)
    return ((source - sm) / (ss + 1e-8) * ts + tm).clamp(0, 1)
