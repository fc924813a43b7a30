"""Text drawn on pictures with libass (FFmpeg's `ass` filter): ASS scripts whose text is drawn
as written, in every script (libass falls back font by font: CJK, emoji, right-to-left), and
where they land on the picture.

Nothing of a text is a template or an override: a backslash or a brace would start an ASS
escape or override block, so each backslash gets a word joiner after it and braces are escaped;
`%` and `%{localtime}` mean nothing to libass (they would to drawtext).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from webtv_dagster.media.ffmpeg import run_ffmpeg

STYLE_FORMAT = (
    "Format: Name, Fontname, Fontsize, PrimaryColour, BackColour, OutlineColour, BorderStyle, "
    "Outline, Shadow, Alignment, MarginL, MarginR, MarginV"
)
# The share of each side outside the title-safe area (SMPTE RP 2046-1: the middle 90%).
TITLE_SAFE_MARGIN = 0.05


def ass_text(text: str) -> str:
    """`text` on one line, as an ASS event draws it literally."""
    text = " ".join(text.split())
    return text.replace("\\", "\\\u2060").replace("{", "\\{").replace("}", "\\}")


def ass_time(seconds: float) -> str:
    centiseconds = max(0, round(seconds * 100))
    hours, rest = divmod(centiseconds, 360_000)
    minutes, rest = divmod(rest, 6_000)
    return f"{hours}:{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"


def ass_script(width: int, height: int, styles: list[str], events: list[str]) -> str:
    """A script of `styles` ("Style: ..." lines in STYLE_FORMAT) and `events` ("Dialogue: ..."
    lines: Layer, Start, End, Style, Text) on a width x height picture."""
    return (
        "[Script Info]\nScriptType: v4.00+\nWrapStyle: 0\n"
        f"PlayResX: {width}\nPlayResY: {height}\n\n"
        f"[V4+ Styles]\n{STYLE_FORMAT}\n" + "\n".join(styles) + "\n\n"
        "[Events]\nFormat: Layer, Start, End, Style, Text\n" + "\n".join(events) + "\n"
    )


def ass_filter(script: Path) -> str:
    """The filter that draws `script` (a path of ours: no quote or colon in it)."""
    return f"ass='{script}'"


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive

    def inside(self, other: Box) -> bool:
        return (
            self.left >= other.left
            and self.top >= other.top
            and self.right <= other.right
            and self.bottom <= other.bottom
        )


def title_safe(width: int, height: int) -> Box:
    x, y = round(width * TITLE_SAFE_MARGIN), round(height * TITLE_SAFE_MARGIN)
    return Box(x, y, width - x, height - y)


def drawn_box(script: Path, width: int, height: int, seconds: float, fps: int) -> Box | None:
    """Where anything of `script` is drawn over `seconds` (None: nothing is): the script alone
    on black, every frame, pixels brighter than black."""
    import numpy as np  # here: playouts import this module (their slate) and stay light

    raw = run_ffmpeg(
        ["-f", "lavfi", "-i", f"color=c=black:s={width}x{height}:r={fps}", "-t", f"{seconds}"]
        + ["-vf", ass_filter(script), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        f"measuring where {script.name} draws",
    )
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width)
    lit = frames.max(axis=0) > 24
    rows, columns = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if not rows.size:
        return None
    return Box(int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)
