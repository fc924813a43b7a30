"""The channel ident's title is drawn as written: symbols, templates and every script."""

import numpy as np
import pytest

from webtv_dagster.media.ffmpeg import run_ffmpeg
from webtv_dagster.production.ident import write_title
from webtv_dagster_tests.frames import decode_luma_frames


@pytest.fixture(scope="module")
def black_video(tmp_path_factory):
    video = tmp_path_factory.mktemp("ident") / "black.mp4"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=1024x576:r=24",
            "-frames:v",
            "2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(video),
        ],
        "a black video",
    )
    return video


def drawn(black_video, tmp_path, title: str) -> np.ndarray:
    """The luma of the first frame with `title` written on it."""
    output = tmp_path / f"{abs(hash(title))}.mp4"
    write_title(black_video, title, output)
    return decode_luma_frames(output)[0].astype(int)


def text_width(luma: np.ndarray) -> int:
    columns = np.flatnonzero((luma > 128).any(axis=0))
    return int(columns[-1] - columns[0]) if columns.size else 0


def test_symbols_and_templates_are_drawn_as_written(black_video, tmp_path):
    with_percent = drawn(black_video, tmp_path, "100% Llamas")
    without = drawn(black_video, tmp_path, "100 Llamas")
    assert text_width(with_percent) > text_width(without) + 20  # the % is there
    # A template is text: drawn twice a second apart, it does not change (no clock).
    import time

    clock = drawn(black_video, tmp_path, "%{localtime} {\\b1}bold\\N")
    time.sleep(1.1)
    assert np.array_equal(clock, drawn(black_video, tmp_path, "%{localtime} {\\b1}bold\\N"))
    # An override block is text too: drawn, braces and all, far wider than the word alone.
    assert (
        text_width(drawn(black_video, tmp_path, "{\\b1}x"))
        > text_width(drawn(black_video, tmp_path, "x")) + 50
    )


@pytest.mark.parametrize("first, second", [("日", "本"), ("한", "국"), ("🎬", "📺")])
def test_every_script_gets_real_glyphs_not_boxes(black_video, tmp_path, first, second):
    """A glyph no font has is drawn as the same empty box whatever the character: two
    different characters drawn alike means boxes."""
    one, other = drawn(black_video, tmp_path, first), drawn(black_video, tmp_path, second)
    assert text_width(one) > 10 and text_width(other) > 10
    assert not np.array_equal(one, other)
