"""A font that draws a given text: Pillow's bundled font has Latin letters without accents only,
so class names such as `blé`, `пшеница` or `玉米` take the first installed font that has
their characters (Pillow finds fonts by file name in the system's font folders)."""

from __future__ import annotations

import functools
import logging

from PIL import ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
SIZE = 11  # pixels
CANDIDATES = (
    "DejaVuSans.ttf",  # most Linux systems: Latin, Greek, Cyrillic, Arabic, Hebrew
    "NotoSans-Regular.ttf",
    "Arial Unicode.ttf",  # macOS
    "arialuni.ttf",  # Windows with Office
    "arial.ttf",  # Windows
    "NotoSansCJK-Regular.ttc",  # Chinese, Japanese, Korean
    "NotoSansCJKsc-Regular.otf",
    "wqy-zenhei.ttc",
    "msyh.ttc",  # Windows, Chinese
    "PingFang.ttc",  # macOS, Chinese
)
NOT_A_CHARACTER = "\U0010fffd"  # a private-use code point no font draws: its .notdef glyph
log = logging.getLogger(__name__)


@functools.cache
def font_for(text: str) -> Font:
    """The first installed candidate font that draws every character of `text`, else the one
    that draws most of them (logged once per text), else Pillow's bundled font."""
    fonts = [*installed_fonts(), ImageFont.load_default()]
    counts = [drawn(font, text) for font in fonts]
    needed = sum(not ch.isspace() for ch in text)
    best = max(range(len(fonts)), key=lambda i: (counts[i], -i))  # the first of the most
    if counts[best] < needed:
        log.info(
            "no installed font draws every character of %r: its legend entry shows boxes "
            "(install fonts-noto-cjk or fonts-noto to see it)", text,
        )  # fmt: skip
    return fonts[best]


@functools.cache
def installed_fonts() -> tuple[Font, ...]:
    """The candidate fonts found on this machine, in order."""
    found = []
    for name in CANDIDATES:
        try:
            found.append(ImageFont.truetype(name, SIZE))
        except OSError:
            continue
    return tuple(found)


def drawn(font: Font, text: str) -> int:
    """How many of the characters of `text` (spaces aside) `font` has a glyph for: a missing
    one renders as the font's .notdef glyph, like a code point no font has."""
    missing = _glyph(font, NOT_A_CHARACTER)
    return sum(not ch.isspace() and _glyph(font, ch) != missing for ch in text)


def _glyph(font: Font, character: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(character)
    return mask.size, bytes(mask)
