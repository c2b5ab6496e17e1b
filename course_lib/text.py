"""Text pages and glyphs rendered with matplotlib's bundled fonts (offline)."""

from __future__ import annotations

import textwrap
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ._checks import check_choice, check_positive_int
from .procedural import NATIVE


def font_dir() -> Path:
    """Matplotlib's bundled TrueType fonts (DejaVu, STIX, Computer Modern)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


SHANNON_TEXT = (
    "A message is a choice among many possible messages, and the engineer must design for every "
    "choice, not only for the one that is sent. The amount of information in a source is measured "
    "by how many choices it can make and how likely each of them is. Letters in ordinary text are "
    "far from independent: after a q comes a u, after a space a few letters are common and others "
    "rare. A model that remembers the last few letters and draws the next one from what followed "
    "the same letters elsewhere writes text that looks like language to a reader who does not "
    "read it closely. Texture is like this too: each pixel depends on the pixels around it, and "
    "a sample of the right neighbourhoods is all one needs to write more of it. "
)


def render_text_page(
    res: int = NATIVE, *, text: str = SHANNON_TEXT, font: str = "DejaVuSerif.ttf"
) -> np.ndarray:
    """A page of black text on white, ``(res, res)`` float in [0, 1], for the Shannon experiment."""
    check_positive_int(res, "res", minimum=32)
    scale = 4  # draw large, then downsample: smoother glyphs
    big = res * scale
    size = int(11 * scale * res / NATIVE)
    face = ImageFont.truetype(str(font_dir() / font), size)
    page = Image.new("L", (big, big), 255)
    draw = ImageDraw.Draw(page)
    chars_per_line = max(8, int(big / (0.52 * size)))
    lines = textwrap.wrap(text * 6, chars_per_line)
    y = int(size * 0.4)
    for line in lines:
        if y > big:
            break
        draw.text((int(size * 0.3), y), line, fill=0, font=face)
        y += int(size * 1.25)
    page = page.resize((res, res), Image.Resampling.LANCZOS)
    return np.asarray(page, dtype=np.float32) / 255.0


GLYPH_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
)


def list_fonts() -> list[str]:
    """The font files usable by :func:`load_glyphs` (those of :data:`GLYPH_FONTS` present)."""
    return [f for f in GLYPH_FONTS if (font_dir() / f).is_file()]


def load_glyphs(
    fonts: list[str] | None = None,
    letters: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    size: int = 32,
) -> tuple[torch.Tensor, list[str]]:
    """Letters rendered in several fonts: the style × content data of the bilinear-model notebook.

    Each glyph is drawn black-on-white... then inverted, so ink is 1 and paper 0, centred by its
    bounding box and scaled to fit 80 % of the square.

    Args:
        fonts: font file names from :func:`list_fonts` (default: all of them).
        letters: the characters, one per content class.
        size: side of each square glyph image.

    Returns:
        ``(glyphs, fonts)``: float32 ``(S, L, 1, size, size)`` in ``[0, 1]`` (S fonts, L letters)
        and the font names in order.
    """
    check_positive_int(size, "size", minimum=8)
    fonts = list_fonts() if fonts is None else list(fonts)
    for f in fonts:
        check_choice(f, "fonts", list_fonts())
    if not letters:
        raise ValueError("`letters` must not be empty")
    out = torch.zeros(len(fonts), len(letters), 1, size, size)
    for s, f in enumerate(fonts):
        for c, ch in enumerate(letters):
            out[s, c, 0] = torch.from_numpy(_render_glyph(f, ch, size))
    return out, fonts


@lru_cache(maxsize=1024)
def _render_glyph(font: str, char: str, size: int) -> np.ndarray:
    big = size * 4
    face = ImageFont.truetype(str(font_dir() / font), int(big * 0.8))
    canvas = Image.new("L", (big * 2, big * 2), 0)
    ImageDraw.Draw(canvas).text((big // 2, big // 2), char, fill=255, font=face)
    box = canvas.getbbox()
    if box is None:
        return np.zeros((size, size), np.float32)
    glyph = canvas.crop(box)
    gw, gh = glyph.size
    k = 0.8 * big / max(gw, gh)
    glyph = glyph.resize((max(1, round(gw * k)), max(1, round(gh * k))), Image.Resampling.LANCZOS)
    square = Image.new("L", (big, big), 0)
    square.paste(glyph, ((big - glyph.size[0]) // 2, (big - glyph.size[1]) // 2))
    square = square.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.float32) / 255.0
