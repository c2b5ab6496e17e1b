"""Image-to-image translation data, offline first: unpaired domains (for CycleGAN, UNIT/MUNIT,
CUT) and paired data (for pix2pix), all generated here from bundled material, plus a loader for
real datasets in the standard ``trainA/ trainB/ testA/ testB/`` layout and an explicit download
of a classic one (horse2zebra).

Every image is float32 ``(n, 3, size, size)`` in ``[0, 1]`` on the CPU; move it with ``.to``.

=================  ========  ===========================================================
name               kind      A → B
=================  ========  ===========================================================
``sans2serif``     unpaired  letters in sans-serif fonts → letters in serif fonts
``bricks2grass``   unpaired  shapes filled with bricks → shapes filled with grass
``photo2painted``  unpaired  photo crops → photo crops re-rendered in a flat "painted" look
``labels2texture`` paired    a label map (flat colours) → the same regions filled with textures
``edges2photo``    paired    the edges of a photo crop → the photo crop
=================  ========  ===========================================================

Example:
    >>> A, B = unpaired("bricks2grass", 4, 32)
    >>> tuple(A.shape), tuple(B.shape)
    ((4, 3, 32, 32), (4, 3, 32, 32))
    >>> A, B = paired("labels2texture", 2, 32)  # B[i] is the translation of A[i]

Taught in: ``notebooks/10_pix2pix.ipynb`` (paired) and ``notebooks/11_cyclegan.ipynb`` (unpaired).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_choice, check_positive_int
from ._download import Download, fetch
from .images import load_image, resize
from .samples import list_fonts, load_glyphs, load_sample

# ----------------------------------------------------------------------------- catalogue


def _sans2serif(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng_a, rng_b = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    return _glyph_set(SANS, n, size, rng_a), _glyph_set(SERIF, n, size, rng_b)


def _bricks2grass(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng_a, rng_b = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    return _textured_shapes("bricks", n, size, rng_a), _textured_shapes("grass", n, size, rng_b)


def _photo2painted(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng_a, rng_b = np.random.default_rng([seed, 0]), np.random.default_rng([seed, 1])
    return _photo_crops(n, size, rng_a), painted(_photo_crops(n, size, rng_b))


def _labels2texture(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return _labels_and_textures(n, size, np.random.default_rng([seed, 2]))


def _edges2photo(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    photos = _photo_crops(n, size, np.random.default_rng([seed, 2]))
    return edges(photos), photos


@dataclass(frozen=True, kw_only=True)
class DomainPair:
    """One entry of :func:`list_domains`.

    Attributes:
        name: the name to pass to :func:`unpaired` or :func:`paired`.
        kind: ``"unpaired"`` or ``"paired"``.
        a: what domain A holds.
        b: what domain B holds.
        description: one line for people: what a translation should change and keep.
        make: ``make(n, size, seed) -> (A, B)``, each float32 ``(n, 3, size, size)`` in
            ``[0, 1]``; the same seed gives the same images and leaves the global RNGs alone.
    """

    name: str
    kind: str
    a: str
    b: str
    description: str
    make: Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor]]


_DOMAINS = {
    d.name: d
    for d in [
        DomainPair(
            name="sans2serif",
            kind="unpaired",
            a="letters in sans-serif fonts",
            b="letters in serif fonts",
            description="change the strokes' style (add serifs), keep the letter",
            make=_sans2serif,
        ),
        DomainPair(
            name="bricks2grass",
            kind="unpaired",
            a="shapes filled with bricks",
            b="shapes filled with grass",
            description="change the texture inside the shape, keep the shape and its place",
            make=_bricks2grass,
        ),
        DomainPair(
            name="photo2painted",
            kind="unpaired",
            a="photo crops",
            b="photo crops in a flat painted look",
            description="change the rendering (flat colours, dark outlines), keep the scene",
            make=_photo2painted,
        ),
        DomainPair(
            name="labels2texture",
            kind="paired",
            a="label maps (one flat colour per class)",
            b="the same regions filled with each class's texture",
            description="make texture where the label map has flat colour",
            make=_labels2texture,
        ),
        DomainPair(
            name="edges2photo",
            kind="paired",
            a="edge maps (black lines on white)",
            b="the photo crops they came from",
            description="fill in colour and shading between the lines",
            make=_edges2photo,
        ),
    ]
}


def list_domains(kind: str | None = None) -> list[DomainPair]:
    """The offline translation data sets (optionally only ``kind``: "unpaired" or "paired")."""
    if kind is not None:
        check_choice(kind, "kind", ["unpaired", "paired"])
    return [d for d in _DOMAINS.values() if kind is None or d.kind == kind]


def _check_request(name: str, kind: str, n: int, size: int) -> None:
    names = [d.name for d in list_domains(kind)]
    if name in _DOMAINS and name not in names:
        other = "paired" if kind == "unpaired" else "unpaired"
        raise ValueError(f"`name` {name!r} is a {other} data set; call {other}({name!r}, ...)")
    check_choice(name, "name", names)
    check_positive_int(n, "n")
    check_positive_int(size, "size", minimum=16)


def unpaired(name: str, n: int, size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two unpaired sets of images, ``n`` from domain A and ``n`` from domain B.

    A[i] and B[i] have nothing to do with each other (they are drawn independently): there is
    no ground-truth translation, which is what CycleGAN is for.

    Args:
        name: ``"sans2serif"``, ``"bricks2grass"`` or ``"photo2painted"`` (see
            :func:`list_domains`).
        n: images per domain.
        size: height and width in pixels (at least 16).
        seed: the same seed gives the same images; the global RNGs are not touched.

    Returns:
        ``(A, B)``, each float32 ``(n, 3, size, size)`` in ``[0, 1]`` on the CPU.

    Raises:
        ValueError: an unknown name (with suggestions), a paired name, ``n < 1`` or ``size < 16``.

    Example:
        >>> A, B = unpaired("sans2serif", 3, 32, seed=1)
        >>> A.shape
        torch.Size([3, 3, 32, 32])
    """
    _check_request(name, "unpaired", n, size)
    return _DOMAINS[name].make(n, size, seed)


def paired(name: str, n: int, size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` aligned pairs: ``B[i]`` is the right answer for input ``A[i]`` (pix2pix's data).

    Args:
        name: ``"labels2texture"`` or ``"edges2photo"`` (see :func:`list_domains`).
        n: pairs.
        size: height and width in pixels (at least 16).
        seed: the same seed gives the same pairs; the global RNGs are not touched.

    Returns:
        ``(A, B)``, each float32 ``(n, 3, size, size)`` in ``[0, 1]`` on the CPU.

    Raises:
        ValueError: an unknown or unpaired name, ``n < 1`` or ``size < 16``.

    Example:
        >>> A, B = paired("edges2photo", 2, 32)
        >>> A.shape == B.shape
        True
    """
    _check_request(name, "paired", n, size)
    return _DOMAINS[name].make(n, size, seed)


# ----------------------------------------------------------------------------- glyphs

SANS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "cmss10.ttf")
SERIF = (
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
)
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _glyph_set(fonts: tuple[str, ...], n: int, size: int, rng: np.random.Generator):
    """``n`` random (font, letter) glyphs as dark ink on light paper, ``(n, 3, size, size)``."""
    available = [f for f in fonts if f in list_fonts()]
    if not available:  # pragma: no cover - matplotlib always ships DejaVu
        raise RuntimeError(f"none of the fonts {fonts} is installed with matplotlib")
    glyphs, _ = load_glyphs(available, LETTERS, size)  # (S, L, 1, size, size), ink = 1
    s = rng.integers(0, len(available), n)
    c = rng.integers(0, len(LETTERS), n)
    ink = glyphs[torch.from_numpy(s), torch.from_numpy(c)]  # (n, 1, size, size)
    return (1 - ink).expand(-1, 3, -1, -1).contiguous()


# ----------------------------------------------------------------------------- textures


@lru_cache(maxsize=16)
def _texture(name: str, res: int) -> torch.Tensor:
    """A texture sample as ``(3, res, res)``; grass (a grey photo) is tinted green."""
    x = load_sample(name, res, channels=3)[0]
    if name == "grass":
        g = x[:1]
        x = torch.cat([0.55 * g + 0.05, 0.85 * g + 0.15, 0.35 * g]).clamp(0, 1)
    return x


def _texture_crop(name: str, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random ``(3, size, size)`` crop of a texture shown at a scale that suits ``size``."""
    res = 2 * size  # a crop shows a quarter of the texture: about four rows of bricks
    tex = _texture(name, res)
    top, left = rng.integers(0, res - size + 1, 2)
    return tex[:, top : top + size, left : left + size]


def _shape_mask(size: int, rng: np.random.Generator) -> torch.Tensor:
    """A random filled shape (disc, square, triangle or ring), ``(size, size)`` in {0, 1}."""
    t = (torch.arange(size) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    cy, cx = rng.uniform(0.35, 0.65, 2)
    r = rng.uniform(0.2, 0.33)
    kind = rng.integers(0, 4)
    dy, dx = y - cy, x - cx
    if kind == 0:
        mask = dy**2 + dx**2 < r**2
    elif kind == 1:
        angle = rng.uniform(0, np.pi / 2)
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        mask = (u.abs() < r * 0.85) & (v.abs() < r * 0.85)
    elif kind == 2:
        mask = (dy < r * 0.7) & (dy > -r) & (dx.abs() < (dy + r) * 0.6)
    else:
        d = (dy**2 + dx**2).sqrt()
        mask = (d < r) & (d > r * 0.5)
    return mask.float()


def _textured_shapes(texture: str, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Shapes filled with ``texture`` on a plain light background, ``(n, 3, size, size)``."""
    paper = torch.tensor([0.93, 0.91, 0.86]).view(3, 1, 1)
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        mask = _shape_mask(size, rng)[None]  # (1, size, size)
        out[i] = mask * _texture_crop(texture, size, rng) + (1 - mask) * paper
    return out


LABEL_CLASSES = ("bricks", "grass", "rocks", "weave")
LABEL_COLOURS = torch.tensor(
    [[0.85, 0.25, 0.20], [0.25, 0.75, 0.30], [0.45, 0.45, 0.85], [0.95, 0.80, 0.25]]
)


def _labels_and_textures(n: int, size: int, rng: np.random.Generator):
    """Label maps of a few random blobs (one flat colour per class) and their textured versions.

    The regions are a Voronoi partition of the square with random sites: each cell gets a
    random class.
    """
    t = (torch.arange(size) + 0.5) / size
    y, x = torch.meshgrid(t, t, indexing="ij")
    labels_out, textures_out = torch.empty(n, 3, size, size), torch.empty(n, 3, size, size)
    for i in range(n):
        k = int(rng.integers(3, 7))
        sites = torch.from_numpy(rng.random((k, 2))).float()
        d = (y[..., None] - sites[:, 0]) ** 2 + (x[..., None] - sites[:, 1]) ** 2  # (H, W, k)
        cell = d.argmin(-1)  # (H, W)
        cls = torch.from_numpy(rng.integers(0, len(LABEL_CLASSES), k))[cell]  # (H, W)
        labels_out[i] = LABEL_COLOURS[cls].permute(2, 0, 1)  # (3, H, W)
        fills = torch.stack([_texture_crop(c, size, rng) for c in LABEL_CLASSES])  # (K, 3, H, W)
        textures_out[i] = fills.gather(0, cls[None, None].expand(1, 3, -1, -1))[0]
    return labels_out, textures_out


# ----------------------------------------------------------------------------- photos

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper")


@lru_cache(maxsize=8)
def _photo(name: str, res: int) -> torch.Tensor:
    return load_sample(name, res, channels=3)[0]


def _photo_crops(n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """Random crops of the bundled photos, each showing 1/4 to 1/2 of the photo's width."""
    out = torch.empty(n, 3, size, size)
    res = max(4 * size, 128)
    for i in range(n):
        photo = _photo(PHOTOS[int(rng.integers(0, len(PHOTOS)))], res)
        side = int(rng.integers(res // 4, res // 2 + 1))
        top, left = rng.integers(0, res - side + 1, 2)
        crop = photo[None, :, top : top + side, left : left + side]
        out[i] = resize(crop, (size, size))[0]
    return out


def painted(photos: torch.Tensor, *, levels: int = 5, smooth: int = 2) -> torch.Tensor:
    """A simple "painted" look: smooth, flatten colours to ``levels`` per channel, ink the edges.

    Args:
        photos: ``(B, 3, H, W)`` in ``[0, 1]``.
        levels: colour levels per channel after posterising.
        smooth: radius of the box blur applied before posterising (0 = none).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``, on the input's device.
    """
    x = photos
    if smooth:
        k = 2 * smooth + 1
        x = F.avg_pool2d(F.pad(x, (smooth,) * 4, mode="replicate"), k, stride=1)
    flat = torch.round(x * (levels - 1)) / (levels - 1)
    flat = 0.85 * flat + 0.15 * x  # a little of the original shading shows through
    outline = edges(x, threshold=0.35)  # 1 on paper, 0 on the lines
    return (flat * (0.3 + 0.7 * outline) + 0.04).clamp(0, 1)


def edges(photos: torch.Tensor, *, threshold: float = 0.2) -> torch.Tensor:
    """Black lines on white where the luminance gradient (Sobel) is steep.

    Args:
        photos: ``(B, 3, H, W)`` in ``[0, 1]``.
        threshold: gradient magnitude (luminance units per pixel, Sobel-scaled) above which a
            pixel is a line.

    Returns:
        ``(B, 3, H, W)`` with values in ``{0, 1}`` (0 = line), on the input's device.
    """
    lum = (photos * photos.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True)
    sobel = photos.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 4
    kernel = torch.stack([sobel, sobel.T])[:, None]  # (2, 1, 3, 3)
    grad = F.conv2d(F.pad(lum, (1, 1, 1, 1), mode="replicate"), kernel)  # (B, 2, H, W)
    line = grad.pow(2).sum(1, keepdim=True).sqrt() > threshold * 0.5
    return (~line).float().expand(-1, 3, -1, -1).contiguous()


# ----------------------------------------------------------------------------- real folders

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageFolderDomains:
    """Unpaired images in the CycleGAN layout: ``root/trainA``, ``root/trainB`` (and ``testA``,
    ``testB``), any image files inside (grey images become RGB).

    Args:
        root: the data set folder (the one holding ``trainA/`` and ``trainB/``).
        split: ``"train"`` or ``"test"``.
        size: images are resized (shorter side) and centre-cropped to ``size × size``.

    Raises:
        FileNotFoundError: ``root`` or one of the two split folders is missing.
        ValueError: a split folder holds no images.

    Example:
        >>> data = ImageFolderDomains("datasets/horse2zebra", size=64)  # doctest: +SKIP
        >>> A, B = data.load(16)  # two (16, 3, 64, 64) tensors in [0, 1]   # doctest: +SKIP
    """

    def __init__(self, root: str | Path, split: str = "train", *, size: int = 128) -> None:
        check_choice(split, "split", ["train", "test"])
        check_positive_int(size, "size", minimum=16)
        self.root, self.split, self.size = Path(root), split, size
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"`root` is not a folder: {self.root}. Expected a data set folder holding "
                f"{split}A/ and {split}B/ (download_dataset('horse2zebra', ...) makes one; "
                f"offline, use course_lib.domains.unpaired with one of {_offline_names()})"
            )
        self.files_a = self._files("A")
        self.files_b = self._files("B")

    def _files(self, side: str) -> list[Path]:
        folder = self.root / f"{self.split}{side}"
        if not folder.is_dir():
            present = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise FileNotFoundError(
                f"missing folder {folder}; a CycleGAN data set has trainA/ trainB/ testA/ testB/ "
                f"(found: {present or 'no folders'})"
            )
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(
                f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)} files)"
            )
        return files

    def __len__(self) -> int:
        """The larger of the two domains (as in CycleGAN's unaligned data set)."""
        return max(len(self.files_a), len(self.files_b))

    def __repr__(self) -> str:
        return (
            f"ImageFolderDomains({str(self.root)!r}, split={self.split!r}, size={self.size}): "
            f"{len(self.files_a)} A images, {len(self.files_b)} B images"
        )

    def _read(self, path: Path) -> torch.Tensor:
        x = load_image(path, self.size)  # (1, 3, h, w), shorter side = size
        top = (x.shape[-2] - self.size) // 2
        left = (x.shape[-1] - self.size) // 2
        return x[0, :, top : top + self.size, left : left + self.size]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``i`` of A and image ``i`` of B (each wraps around), ``(3, size, size)`` each."""
        return (
            self._read(self.files_a[i % len(self.files_a)]),
            self._read(self.files_b[i % len(self.files_b)]),
        )

    def load(self, n: int | None = None, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random images from each domain (all of the smaller one's count when ``None``),
        drawn independently, as two ``(n, 3, size, size)`` tensors in ``[0, 1]``, like
        :func:`unpaired`."""
        n = min(len(self.files_a), len(self.files_b)) if n is None else n
        check_positive_int(n, "n")
        rng = np.random.default_rng(seed)
        pick_a = rng.choice(len(self.files_a), n, replace=n > len(self.files_a))
        pick_b = rng.choice(len(self.files_b), n, replace=n > len(self.files_b))
        A = torch.stack([self._read(self.files_a[j]) for j in pick_a])
        B = torch.stack([self._read(self.files_b[j]) for j in pick_b])
        return A, B


# ----------------------------------------------------------------------------- downloads


DATASETS: dict[str, Download] = {
    "horse2zebra": Download(
        url="https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/horse2zebra.zip",
        sha256=None,
        description="horses and zebras from ImageNet (CycleGAN, Zhu et al. 2017), 256x256, ~110 MB",
    ),
}


def _offline_names() -> str:
    return ", ".join(d.name for d in list_domains("unpaired"))


def download_dataset(name: str, root: str | Path, *, timeout: float = 60.0) -> Path:
    """Download and unpack a classic unpaired data set into ``root/name`` (once).

    Announces what it downloads and checks the pinned SHA-256. If ``root/name/trainA`` already
    exists nothing is fetched.

    Args:
        name: ``"horse2zebra"``.
        root: the folder that will hold ``name/``.
        timeout: seconds to wait for the server.

    Returns:
        The data set folder ``root/name`` (pass it to :class:`ImageFolderDomains`).

    Raises:
        RuntimeError: the download failed (offline? the message names the offline domains) or
            the hash does not match.
    """
    check_choice(name, "name", list(DATASETS))
    entry, target = DATASETS[name], Path(root) / name
    if (target / "trainA").is_dir():
        return target
    data = fetch(
        entry.url,
        name=name,
        description=entry.description,
        sha256=entry.sha256,
        offline_hint=(
            "These domains need no network: course_lib.domains.unpaired(name, n, size) with "
            f"name one of {_offline_names()}; or unpack {entry.url.rsplit('/', 1)[-1]} into "
            f"{target} yourself."
        ),
        timeout=timeout,
    )
    _unpack(data, target)
    return target


def _unpack(data: bytes, target: Path) -> None:
    """Unzip ``data`` (one top folder, or the split folders directly) into ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        archive = Path(tmp) / "data.zip"
        archive.write_bytes(data)
        out = Path(tmp) / "out"
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():  # refuse paths that escape the folder
                dest = (out / member).resolve()
                if not dest.is_relative_to(out.resolve()):
                    raise RuntimeError(f"refusing to unpack {member!r}: it leaves the folder")
            zf.extractall(out)
        tops = [p for p in out.iterdir() if p.is_dir()]
        source = tops[0] if len(tops) == 1 and not (out / "trainA").is_dir() else out
        if not (source / "trainA").is_dir():
            found = sorted(p.name for p in source.iterdir())
            raise RuntimeError(f"the archive has no trainA/ folder (found {found})")
        shutil.move(str(source), str(target))
