"""What a quick-look PNG says under its legend."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

ROW = 18  # px, as geo.predict.quicklook's LEGEND_ROW


def assert_last_line(path: Path, text: str) -> None:
    """The quick-look's last line, under its legend, is `text`, drawn in grey in DejaVu Sans
    (skips without the font)."""
    try:
        dejavu = ImageFont.truetype("DejaVuSans.ttf", 11)
    except OSError:
        pytest.skip("needs the DejaVu Sans font (Debian: fonts-dejavu-core)")
    picture = Image.open(path).convert("RGB")
    top = picture.height - 4 - ROW
    shown = picture.crop((6, top, picture.width, top + ROW))
    expected = Image.new("RGB", shown.size, (255, 255, 255))
    ImageDraw.Draw(expected).text((0, 1), text, fill=(90, 90, 90), font=dejavu)
    assert shown.tobytes() == expected.tobytes(), text
