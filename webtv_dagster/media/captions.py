"""What is drawn over pictures: text with libass (FFmpeg's `ass` filter), ASS scripts whose text
is drawn as written, in every script (libass falls back font by font: CJK, emoji, right-to-left),
a logo image in a corner (FFmpeg's `overlay`), and where they land on the picture.

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
class Overlay:
    """What is drawn over a clip: an ASS script, a logo image fitted into `logo_size` (width,
    height) at `logo_margins` (right, top) from the top right corner, or both."""

    script: Path | None = None
    logo: Path | None = None
    logo_size: tuple[int, int] = (0, 0)
    logo_margins: tuple[int, int] = (0, 0)

    def inputs(self) -> list[str]:
        """FFmpeg input options for the logo (none without one): a decoded picture of at most
        LOGO_MAX_PIXELS, whatever the file claims."""
        if self.logo is None:
            return []
        return ["-max_pixels", str(LOGO_MAX_PIXELS), "-i", str(self.logo)]

    def graph(self, video: str, logo_input: int, output: str) -> str:
        """Filter graph text drawing this overlay over the stream `[video]` into `[output]`,
        the logo being FFmpeg input number `logo_input`."""
        drawn = f"[{video}]" + (ass_filter(self.script) if self.script is not None else "null")
        if self.logo is None:
            return f"{drawn}[{output}]"
        (width, height), (right, top) = self.logo_size, self.logo_margins
        return (
            f"{drawn}[under];"
            f"[{logo_input}:v]scale={width}:{height}:force_original_aspect_ratio=decrease,"
            f"format=rgba,colorchannelmixer=aa={LOGO_OPACITY}[logo];"
            # One picture, repeated over every frame (overlay's eof_action).
            f"[under][logo]overlay=W-w-{right}:{top}:format=auto[{output}]"
        )


LOGO_MAX_PIXELS = 4096 * 4096
LOGO_OPACITY = 0.85  # a bug sits on the picture, not over it


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


def drawn_box(overlay: Overlay, width: int, height: int, seconds: float, fps: int) -> Box | None:
    """Where anything of `overlay` is drawn over `seconds` (None: nothing is): the overlay alone
    on black and on white, every frame, the pixels that differ from their background in
    either (a dark logo shows on white, white text on black)."""
    import numpy as np  # here: playouts import this module (their slate) and stay light

    lit = np.zeros((height, width), dtype=bool)
    for background in ("black", "white"):
        raw = run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                f"color=c={background}:s={width}x{height}:r={fps}",
                *overlay.inputs(),
                "-filter_complex",
                overlay.graph("0:v", 1, "drawn") + ";[drawn]format=gray[out]",
                "-map",
                "[out]",
                "-t",
                f"{seconds}",
                "-f",
                "rawvideo",
                "pipe:1",
            ],
            f"measuring where the graphics draw (on {background})",
        )
        frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width)
        if background == "black":
            lit |= frames.max(axis=0) > 24
        else:
            lit |= frames.min(axis=0) < 255 - 24
    rows, columns = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    if not rows.size:
        return None
    return Box(int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)
