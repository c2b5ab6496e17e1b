"""Portilla–Simoncelli texture statistics: the complex steerable pyramid and its joint statistics.

Taught in notebook 05 (built there step by step, with checks); notebook 06 imports it from here
for its comparison of methods. Grey images only (the paper's colour extension is an exercise).

Everything runs on the input's device and in its dtype (float32 images give complex64 bands):
the frequency masks are built on that device, there are no host round trips and no float64 on
the hot path, so the same code runs on a GPU.

Example:
    >>> stats = ps_statistics(torch.rand(1, 1, 32, 32), n_scales=2)
    >>> stats["highpass_var"].shape
    torch.Size([1, 1])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_image, check_positive_int

__all__ = [
    "steerable_pyramid",
    "ps_statistics",
    "ps_vector",
    "group_scales",
    "ps_loss",
    "group_errors",
    "synthesise",
]


def _check_grey(image: object, n_scales: int, name: str = "image") -> torch.Tensor:
    check_positive_int(n_scales, "n_scales")
    image = check_image(image, name, channels=1)
    h, w = image.shape[-2:]
    if h % 2**n_scales or w % 2**n_scales:
        raise ValueError(
            f"`{name}` must have sides divisible by 2**n_scales = {2**n_scales}; got {h}x{w}"
        )
    return image


def _polar_grid(h: int, w: int, *, device, dtype=torch.float32):
    """Log2 radius (Nyquist = 1) and angle of each centred FFT bin, each ``(H, W)``."""
    fy = (torch.arange(h, device=device, dtype=dtype) - h // 2) / (h / 2)
    fx = (torch.arange(w, device=device, dtype=dtype) - w // 2) / (w / 2)
    y, x = torch.meshgrid(fy, fx, indexing="ij")
    rad = torch.sqrt(x**2 + y**2)
    rad[h // 2, w // 2] = rad[h // 2, w // 2 - 1]  # avoid log(0) at DC
    return torch.log2(rad), torch.atan2(y, x)


def _raised_cosine(log_rad: torch.Tensor, start: float):
    """High-pass 0 → 1 over one octave from ``log2 r = start``; low-pass ``sqrt(1 - hi²)``."""
    t = (log_rad - start).clamp(0, 1)
    return torch.cos(math.pi / 2 * (1 - t)), torch.cos(math.pi / 2 * t)


def steerable_pyramid(
    image: torch.Tensor, *, n_scales: int = 3, n_orientations: int = 4
) -> dict[str, object]:
    """Complex steerable pyramid, built in the Fourier domain (Portilla & Simoncelli 2000).

    Args:
        image: float ``(B, 1, H, W)``, any range; ``H`` and ``W`` divisible by ``2**n_scales``.
        n_scales: number of band-pass scales.
        n_orientations: oriented bands per scale.

    Returns:
        dict with ``"highpass"`` ``(B, 1, H, W)`` real; ``"bands"``: a list over scales of complex
        ``(B, K, H/2^s, W/2^s)``; ``"lowpass"``: a list over scales plus the residual of real
        ``(B, 1, h, w)``. All on the input's device. The real parts form a tight frame.
    """
    _check_grey(image, n_scales)
    check_positive_int(n_orientations, "n_orientations")
    dev, real = image.device, image.dtype
    h, w = image.shape[-2:]
    order = n_orientations - 1
    const = (
        (2 ** (2 * order))
        * math.factorial(order) ** 2
        / (n_orientations * math.factorial(2 * order))
    )
    dft = torch.fft.fftshift(torch.fft.fft2(image), dim=(-2, -1))  # (B, 1, H, W) complex
    log_rad, angle = _polar_grid(h, w, device=dev, dtype=real)
    hi0, lo0 = _raised_cosine(log_rad, -1.0)
    highpass = torch.fft.ifft2(torch.fft.ifftshift(dft * hi0, dim=(-2, -1))).real
    lo = dft * lo0
    thetas = torch.arange(n_orientations, device=dev, dtype=real) * math.pi / n_orientations
    bands, lowpass = [], []
    for _ in range(n_scales):
        hh, ww = lo.shape[-2:]
        log_rad, angle = _polar_grid(hh, ww, device=dev, dtype=real)
        lowpass.append(torch.fft.ifft2(torch.fft.ifftshift(lo, dim=(-2, -1))).real)
        hi, lo_mask = _raised_cosine(log_rad, -2.0)
        diff = torch.remainder(angle - thetas.view(-1, 1, 1) + math.pi, 2 * math.pi) - math.pi
        amask = 2 * math.sqrt(const) * torch.cos(diff) ** order * (diff.abs() < math.pi / 2)
        band_dft = (-1j) ** order * lo * amask * hi  # (B, K, h, w)
        bands.append(torch.fft.ifft2(torch.fft.ifftshift(band_dft, dim=(-2, -1))))
        lo = (lo * lo_mask)[..., hh // 4 : hh // 4 + hh // 2, ww // 4 : ww // 4 + ww // 2] / 4
    lowpass.append(torch.fft.ifft2(torch.fft.ifftshift(lo, dim=(-2, -1))).real)
    return {"highpass": highpass, "bands": bands, "lowpass": lowpass}


def _moments(x: torch.Tensor):
    """Mean, variance, skew, kurtosis over the last two dims of ``(B, N, h, w)``: 4 × ``(B, N)``."""
    mean = x.mean(dim=(-2, -1))
    d = x - mean[..., None, None]
    var = d.pow(2).mean(dim=(-2, -1))
    skew = d.pow(3).mean(dim=(-2, -1)) / var.clamp_min(1e-12) ** 1.5
    kurt = d.pow(4).mean(dim=(-2, -1)) / var.clamp_min(1e-12) ** 2
    return mean, var, skew, kurt


def _autocorr(x: torch.Tensor, width: int) -> torch.Tensor:
    """Central ``width²`` of the circular autocorrelation of ``(B, N, h, w)`` ÷ variance, half."""
    d = x - x.mean(dim=(-2, -1), keepdim=True)
    f = torch.fft.fft2(d)
    ac = torch.fft.fftshift(torch.fft.ifft2(f * f.conj()).real, dim=(-2, -1)) / d[0, 0].numel()
    h, w = ac.shape[-2:]
    r = width // 2
    ac = ac[..., h // 2 - r : h // 2 + r + 1, w // 2 - r : w // 2 + r + 1]
    ac = ac / ac[..., r, r].clamp_min(1e-12)[..., None, None]
    return ac.flatten(-2)[..., : (width**2 + 1) // 2]


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlations of the maps of ``a (B, N, h, w)``, ``b (B, M, h, w)``: ``(B, N, M)``."""
    a = a - a.mean(dim=(-2, -1), keepdim=True)
    b = b - b.mean(dim=(-2, -1), keepdim=True)
    cov = torch.einsum("bnhw,bmhw->bnm", a, b) / a[0, 0].numel()
    sa = a.pow(2).mean(dim=(-2, -1)).sqrt()
    sb = b.pow(2).mean(dim=(-2, -1)).sqrt()
    return cov / (sa[..., :, None] * sb[..., None, :]).clamp_min(1e-12)


def _double_phase_up(band: torch.Tensor) -> torch.Tensor:
    """Upsample a complex band ``(B, K, h, w)`` ×2 and double its phase: ``c² / |c|``."""
    up = torch.complex(
        F.interpolate(band.real, scale_factor=2, mode="bilinear", align_corners=False),
        F.interpolate(band.imag, scale_factor=2, mode="bilinear", align_corners=False),
    )
    return up**2 / up.abs().clamp_min(1e-8)


def _odd_at_most(width: int, limit: int) -> int:
    w = min(width, limit)
    return w if w % 2 else w - 1


def ps_statistics(
    image: torch.Tensor, *, n_scales: int = 3, n_orientations: int = 4, width: int = 7
) -> dict[str, torch.Tensor]:
    """Portilla–Simoncelli statistics of grey images, by group.

    Args:
        image: float ``(B, 1, H, W)`` in ``[0, 1]``; ``H``, ``W`` divisible by ``2**n_scales``.
        n_scales, n_orientations: the pyramid's (see :func:`steerable_pyramid`).
        width: odd side of the autocorrelation windows.

    Returns:
        dict group name → ``(B, n)`` on the input's device, in this order: ``pixel``,
        ``magnitude_autocorr``, ``magnitude_std``, ``cross_orientation``, ``lowpass_skew_kurt``,
        ``lowpass_autocorr``, ``lowpass_std``, ``cross_scale_magnitude`` and
        ``cross_scale_phase`` (only with two or more scales), ``highpass_var``.
    """
    check_positive_int(width, "width")
    pyr = steerable_pyramid(image, n_scales=n_scales, n_orientations=n_orientations)
    mean, var, skew, kurt = _moments(image)
    stats = {
        "pixel": torch.cat([mean, var, skew, kurt, image.amin((-2, -1)), image.amax((-2, -1))], 1)
    }
    mags = [band.abs() for band in pyr["bands"]]
    stats["magnitude_autocorr"] = torch.cat([_autocorr(m, width).flatten(1) for m in mags], 1)
    stats["magnitude_std"] = torch.cat([_moments(m)[1].sqrt() for m in mags], 1)
    iu = torch.triu_indices(n_orientations, n_orientations, 1, device=image.device)
    stats["cross_orientation"] = torch.cat([_corr(m, m)[:, iu[0], iu[1]] for m in mags], 1)
    lows = pyr["lowpass"][1:]
    lmom = [_moments(lo) for lo in lows]
    stats["lowpass_skew_kurt"] = torch.cat([torch.cat([m[2], m[3]], 1) for m in lmom], 1)
    stats["lowpass_autocorr"] = torch.cat(
        [_autocorr(lo, _odd_at_most(width, lo.shape[-1] - 1)).flatten(1) for lo in lows], 1
    )
    stats["lowpass_std"] = torch.cat([m[1].sqrt() for m in lmom], 1)
    cross_mag, cross_real = [], []
    for s in range(n_scales - 1):
        parent = _double_phase_up(pyr["bands"][s + 1])
        cross_mag.append(_corr(mags[s], parent.abs()).flatten(1))
        parent_ri = torch.cat([parent.real, parent.imag], 1)
        cross_real.append(_corr(pyr["bands"][s].real, parent_ri).flatten(1))
    if cross_mag:
        stats["cross_scale_magnitude"] = torch.cat(cross_mag, 1)
        stats["cross_scale_phase"] = torch.cat(cross_real, 1)
    stats["highpass_var"] = _moments(pyr["highpass"])[1]
    return stats


def ps_vector(
    image: torch.Tensor, *, n_scales: int = 3, n_orientations: int = 4, width: int = 7
) -> torch.Tensor:
    """All statistics of ``(B, 1, H, W)`` concatenated into one ``(B, N)`` vector (group order)."""
    stats = ps_statistics(image, n_scales=n_scales, n_orientations=n_orientations, width=width)
    return torch.cat(list(stats.values()), dim=1)


def group_scales(
    target: dict[str, torch.Tensor], *, floor: float = 1e-6
) -> dict[str, torch.Tensor]:
    """The typical size of each group of a target's statistics: its root mean square, ``(B, 1)``.

    Notebook 05's normalised loss divides every statistic by its group's scale, so that a group
    of tiny numbers (the high-pass variance, ~1e-3) counts as much per entry as a group of
    correlations (~1). ``floor`` keeps an all-zero group from dividing by zero.
    """
    return {
        k: v.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(floor) for k, v in target.items()
    }


def ps_loss(
    stats: dict[str, torch.Tensor],
    target: dict[str, torch.Tensor],
    scales: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Σ_groups Σ_entries ((stat − target) / scale_group)², averaged over the batch.

    Args:
        stats: :func:`ps_statistics` of the image being optimised, ``(B, n_g)`` per group.
        target: the texture's, ``(B or 1, n_g)`` per group (detached).
        scales: per group ``(B or 1, 1)``; default :func:`group_scales` of ``target``.
            Pass all ones for the raw (unnormalised) loss.

    Returns:
        a scalar tensor.
    """
    if scales is None:
        scales = group_scales(target)
    total = 0.0
    for name, t in target.items():
        total = total + ((stats[name] - t) / scales[name]).pow(2).sum(1).mean()
    return total


def group_errors(
    stats: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, float]:
    """Relative error of each group, ``‖stat − target‖ / ‖target‖`` (first image of the batch)."""
    return {
        k: float((stats[k][0] - t[0]).norm() / t[0].norm().clamp_min(1e-12))
        for k, t in target.items()
    }


def synthesise(
    texture: torch.Tensor,
    *,
    size: int | None = None,
    steps: int = 100,
    generator: torch.Generator | None = None,
    n_scales: int = 3,
    n_orientations: int = 4,
    width: int = 7,
    normalise: bool = True,
    progress: bool = True,
):
    """Portilla–Simoncelli synthesis by L-BFGS on the pixels (notebook 05).

    Args:
        texture: float ``(1, 1, h, w)`` in ``[0, 1]``, sides divisible by ``2**n_scales``.
        size: output side (default: the texture's height); divisible by ``2**n_scales``.
        steps: L-BFGS iterations.
        generator: seeds the starting noise (Gaussian with the texture's mean and std).
        normalise: divide each statistic by its group's scale (:func:`group_scales`); ``False``
            is the raw squared distance, whose high-pass variance comes out far too high.

    Returns:
        :class:`course_lib.optim.OptimResult`; ``.image`` is ``(1, 1, size, size)``.
    """
    from .optim import optimize_image

    _check_grey(texture, n_scales, "texture")
    size = texture.shape[-2] if size is None else check_positive_int(size, "size")
    if size % 2**n_scales:
        raise ValueError(f"`size` must be divisible by 2**n_scales = {2**n_scales}; got {size}")
    opts = dict(n_scales=n_scales, n_orientations=n_orientations, width=width)
    target = {k: v.detach() for k, v in ps_statistics(texture, **opts).items()}
    scales = group_scales(target) if normalise else {k: torch.ones(()) for k in target}
    noise = torch.randn((1, 1, size, size), generator=generator).to(texture)
    init = (texture.mean() + texture.std() * noise).clamp(0, 1)
    return optimize_image(
        lambda im: ps_loss(ps_statistics(im, **opts), target, scales),
        init,
        steps=steps,
        progress=progress,
        desc=f"P&S {size}px",
    )
