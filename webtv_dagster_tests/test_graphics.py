"""On-air graphics: the bug (a title or a logo) and the lower third drawn into the broadcast
clip, viewers' names drawn as written in every script, inside the title-safe area, which
quality control measures."""

from pathlib import Path

import numpy as np
import pytest

from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.channels import BUG_IMAGE_MAX_BYTES, OnAirGraphics, load_channels
from webtv_dagster.cli import main
from webtv_dagster.media.captions import Overlay, ass_filter, ass_script, drawn_box, title_safe
from webtv_dagster.media.ffmpeg import MediaToolError, run_ffmpeg
from webtv_dagster.production.graphics import (
    checked_bug_image,
    clip_overlay,
    graphics_script,
    shot_caption,
)
from webtv_dagster.production.quality import _check_graphics

WIDTH, HEIGHT = BROADCAST_PROFILE.width, BROADCAST_PROFILE.height
REFERENCE = Path(__file__).with_name("reference") / "lower-third-hostile-name.png"
HOSTILE = "Zoë \"100%\" c:\\path {\\b1}bold\\N %{localtime} مرحبا 'x'"
PROMPT = "the llama, a fluffy cream-coloured llama with a red knitted scarf, baking bread"


@pytest.fixture
def channel(llama_channel):
    graphics = OnAirGraphics(bug=True, lower_third=True, lower_third_seconds=3)
    return llama_channel.model_copy(update={"graphics": graphics})


def write(tmp_path, script: str) -> Path:
    path = tmp_path / f"g{abs(hash(script))}.ass"
    path.write_text(script, encoding="utf-8")
    return path


def frame_at(script: Path, seconds: float) -> np.ndarray:
    """The graphics alone on black at `seconds` (24 fps), as grey levels."""
    raw = run_ffmpeg(
        ["-f", "lavfi", "-i", f"color=c=black:s={WIDTH}x{HEIGHT}:r=24", "-t", f"{seconds + 0.1}"]
        + ["-vf", ass_filter(script), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"],
        "drawing graphics",
    )
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, HEIGHT, WIDTH)
    return frames[round(seconds * 24)].astype(int)


def test_a_hostile_name_is_drawn_as_written_like_the_reference(channel, tmp_path):
    script = write(tmp_path, graphics_script(channel, BROADCAST_PROFILE, PROMPT, None, HOSTILE))
    picture = frame_at(script, 2.0)
    # The reference was drawn by this code once, looked at (every character as written, the
    # Arabic joined right to left) and committed: a change of escaping or layout shows here.
    reference = run_ffmpeg(
        ["-i", str(REFERENCE), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"], "reference"
    )
    expected = np.frombuffer(reference, dtype=np.uint8).reshape(HEIGHT, WIDTH).astype(int)
    rows = slice(HEIGHT * 3 // 4, HEIGHT)  # the lower third, where the name is
    assert np.abs(picture[rows] - expected[rows]).mean() < 0.5
    # Templates are text: the same a second later (drawtext would print the clock).
    assert np.array_equal(picture, frame_at(script, 2.0))


def test_the_lower_third_fades_in_after_the_cut_and_leaves(channel, tmp_path):
    script = write(tmp_path, graphics_script(channel, BROADCAST_PROFILE, PROMPT, None, "Ann"))
    lower = slice(HEIGHT // 2, HEIGHT)
    left = slice(0, WIDTH // 2)
    at = {t: frame_at(script, t)[lower, left].max() for t in (0.1, 2.0, 4.0)}
    assert at[0.1] < 30 and at[2.0] > 200 and at[4.0] < 30, at  # from 0.5 s for 3 s
    # The bug stays the whole clip, top right.
    top_right = frame_at(script, 4.0)[: HEIGHT // 4, WIDTH // 2 :]
    assert top_right.max() > 100


def test_graphics_stay_inside_the_title_safe_area_and_qc_says_when_not(channel, tmp_path):
    long = "the llama " + "ever so " * 30 + "slowly"
    script = write(tmp_path, graphics_script(channel, BROADCAST_PROFILE, long, None, "x" * 32))
    box = drawn_box(Overlay(script=script), WIDTH, HEIGHT, 4.0, 24)
    assert box is not None and box.inside(title_safe(WIDTH, HEIGHT)), box
    assert _check_graphics(Overlay(script=script), 4.0, BROADCAST_PROFILE)[0]
    assert len(shot_caption(long, None)) <= 60
    # Text at the picture's corner is outside: quality control fails the clip.
    style = "Style: S,DejaVu Sans,40,&H00FFFFFF,&H00000000,&H00000000,1,2,0,7,0,0,0"
    corner = write(
        tmp_path, ass_script(WIDTH, HEIGHT, [style], ["Dialogue: 0,0:00:00.00,0:00:04.00,S,corner"])
    )
    passed, reason, _ = _check_graphics(Overlay(script=corner), 4.0, BROADCAST_PROFILE)
    assert not passed and "outside the title-safe" in reason


def test_a_broadcast_clip_carries_its_graphics_and_passes_quality_control(
    channel, broadcast_clips, tmp_path
):
    from webtv_dagster.media.broadcast import normalize_clip
    from webtv_dagster.production.quality import QualityLimits, inspect_broadcast_clip

    script = write(tmp_path, graphics_script(channel, BROADCAST_PROFILE, PROMPT, None, "Ann"))
    music = tmp_path / "music.flac"
    run_ffmpeg(["-i", str(broadcast_clips[0]), "-vn", "-c:a", "flac", str(music)], "music")
    output = tmp_path / "broadcast.mp4"
    overlay = Overlay(script=script)
    normalize_clip(broadcast_clips[0], music, 64, output, BROADCAST_PROFILE, overlay)
    report = inspect_broadcast_clip(
        output, "test-llamas-000001", 64, BROADCAST_PROFILE, QualityLimits(), overlay
    )
    checks = {check.name: check for check in report.checks}
    # (A solid colour is "frozen" to quality control: that check is not this test's.)
    for name in ("decodes", "duration", "broadcast_profile", "loudness", "graphics_title_safe"):
        assert checks[name].passed, checks[name].reason
    assert checks["graphics_title_safe"].reason == "inside the title-safe area"
    # The clip (solid red) has the lower third on it at 2 s, not at 0.1 s.
    raw = run_ffmpeg(
        ["-i", str(output), "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"], "decoding"
    )
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, HEIGHT, WIDTH).astype(int)
    lower_left = (slice(HEIGHT * 3 // 4, HEIGHT), slice(0, WIDTH // 2))
    assert frames[48][lower_left].max() > 200 and frames[2][lower_left].max() < 120


def make_logo(path: Path, colour: str = "0x2060FF") -> Path:
    """A 320x160 logo: a coloured disc on a transparent ground (PNG with alpha)."""
    run_ffmpeg(
        ["-f", "lavfi", "-i", f"color=c={colour}:s=320x160,format=rgba"]
        + ["-vf", "geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(lt(hypot(X-160,Y-80),70),255,0)'"]
        + ["-frames:v", "1", str(path)],
        "making a logo",
    )
    return path


def test_a_logo_bug_is_drawn_top_right_inside_the_safe_area(llama_channel, tmp_path):
    """The bug as a logo (PNG with alpha) replaces the title there: a dark logo too is measured
    by quality control (drawn on white as well as black), and the lower third stays text."""
    logo = make_logo(tmp_path / "logo.png", colour="0x101010")
    graphics = OnAirGraphics(bug_image=logo, lower_third=True, lower_third_seconds=2)
    channel = llama_channel.model_copy(update={"graphics": graphics})
    overlay = clip_overlay(channel, BROADCAST_PROFILE, PROMPT, None, None, tmp_path)
    assert overlay is not None and overlay.logo == logo
    assert "Bug," not in overlay.script.read_text().split("[Events]")[1]  # no title bug
    box = drawn_box(Overlay(logo=logo, **_geometry(overlay)), WIDTH, HEIGHT, 1.0, 24)
    safe = title_safe(WIDTH, HEIGHT)
    # The disc: fitted into a quarter of the width and an eighth of the height, top right.
    assert box is not None and box.inside(safe), box
    assert box.right > WIDTH * 0.85 and box.top < HEIGHT * 0.15, box
    assert box.bottom - box.top == pytest.approx(2 * 70 * (HEIGHT // 8) / 160, abs=3)
    assert _check_graphics(overlay, 3.0, BROADCAST_PROFILE)[0]
    # A logo pushed to the corner is outside: quality control says so.
    corner = Overlay(logo=logo, logo_size=overlay.logo_size, logo_margins=(0, 0))
    passed, reason, _ = _check_graphics(corner, 1.0, BROADCAST_PROFILE)
    assert not passed and "outside the title-safe" in reason


def _geometry(overlay: Overlay) -> dict:
    return {"logo_size": overlay.logo_size, "logo_margins": overlay.logo_margins}


def test_a_broadcast_clip_carries_its_logo(llama_channel, broadcast_clips, tmp_path):
    from webtv_dagster.media.broadcast import normalize_clip

    logo = make_logo(tmp_path / "logo.png")
    channel = llama_channel.model_copy(update={"graphics": OnAirGraphics(bug_image=logo)})
    overlay = clip_overlay(channel, BROADCAST_PROFILE, PROMPT, None, None, tmp_path)
    assert overlay.script is None  # a logo and no lower third: nothing for libass
    music = tmp_path / "music.flac"
    run_ffmpeg(["-i", str(broadcast_clips[0]), "-vn", "-c:a", "flac", str(music)], "music")
    output = tmp_path / "broadcast.mp4"
    normalize_clip(broadcast_clips[0], music, 64, output, BROADCAST_PROFILE, overlay)
    raw = run_ffmpeg(["-i", str(output), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], "rgb")
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, HEIGHT, WIDTH, 3).astype(int)
    assert len(frames) == 64
    box = drawn_box(Overlay(logo=logo, **_geometry(overlay)), WIDTH, HEIGHT, 1.0, 24)
    middle = ((box.top + box.bottom) // 2, (box.left + box.right) // 2)
    for frame in (frames[0], frames[63]):  # on the first frame and the last
        red, green, blue = frame[middle]
        assert blue > red + 60 and blue > green + 60, frame[middle]  # blue, blended at 85%
        assert frame[HEIGHT // 2, WIDTH // 2][0] > 150  # the clip itself (red) elsewhere


def test_a_bug_image_is_read_from_the_channels_files_folder_and_checked(tmp_path):
    folder = tmp_path / "config"
    folder.mkdir()
    make_logo(folder / "logo.png")
    channels = folder / "channels.yaml"
    channels.write_text(
        "channels:\n  - {slug: x, title: X, theme: llamas, style: Pixar,\n"
        "     graphics: {bug_image: logo.png}}\n"
    )
    loaded = load_channels(channels).channels[0].graphics.bug_image
    assert loaded == folder / "logo.png"
    assert main(["check", str(channels)]) == 0
    # Not a picture, too big, missing: the check (and `webtv up`) says which and what to do.
    (folder / "logo.png").write_bytes(b"GIF89a not really")
    with pytest.raises(SystemExit) as stop:
        main(["check", str(channels)])
    assert "is not a picture FFmpeg reads (graphics.bug_image" in str(stop.value.code)
    # A small file of a huge picture (a decompression bomb) is refused before it is decoded.
    run_ffmpeg(
        ["-f", "lavfi", "-i", "color=s=5000x4000", "-frames:v", "1", str(folder / "logo.png")],
        "a huge picture",
    )
    assert (folder / "logo.png").stat().st_size < BUG_IMAGE_MAX_BYTES
    with pytest.raises(SystemExit) as stop:
        main(["check", str(channels)])
    assert "is not a picture FFmpeg reads" in str(stop.value.code)
    (folder / "logo.png").write_bytes(b"\0" * (BUG_IMAGE_MAX_BYTES + 1))
    with pytest.raises(MediaToolError, match="2.0 MB, over 2 MB"):
        checked_bug_image(loaded)
    (folder / "logo.png").unlink()
    with pytest.raises(SystemExit) as stop:
        main(["check", str(channels)])
    assert "cannot be read (graphics.bug_image in the channels file)" in str(stop.value.code)
    channels.write_text(channels.read_text().replace("logo.png", "logo.svg"))
    with pytest.raises(SystemExit) as stop:
        main(["check", str(channels)])
    assert "a bug image is one of .png, .jpg, .jpeg, .webp" in str(stop.value.code)


def test_the_broadcast_asset_draws_the_logo_and_records_it(
    instance, seaweedfs, media_store, tmp_path
):
    """Through the real assets: the broadcast clip of a channel with a logo and a lower third
    passes quality control, and its record names the logo's file and digest."""
    import hashlib

    import dagster as dg
    import yaml

    from webtv_dagster import clips
    from webtv_dagster.clips import ClipId
    from webtv_dagster.defs.clip_production.assets import broadcast_clip

    from .conftest import TEST_CHANNELS, clip_resources, latest_metadata
    from .test_clip_pipeline import CLIP_ASSETS

    logo = make_logo(tmp_path / "logo.png")
    raw = yaml.safe_load(TEST_CHANNELS.read_text())
    llamas = next(c for c in raw["channels"] if c["slug"] == "test-llamas")
    llamas["graphics"] = {"bug_image": str(logo), "lower_third": True}
    channels = tmp_path / "channels.yaml"
    channels.write_text(yaml.safe_dump(raw))
    key = "test-llamas-000001"
    instance.add_dynamic_partitions("clips", [key])
    resources = clip_resources(seaweedfs, media_store.bucket, channels)
    result = dg.materialize(CLIP_ASSETS, partition_key=key, instance=instance, resources=resources)
    assert result.success
    metadata = latest_metadata(instance, broadcast_clip, key)
    digest = hashlib.sha256(logo.read_bytes()).hexdigest()[:16]
    assert metadata["bug_image"] == f"logo.png sha256:{digest}"
    quality = media_store.get_json(ClipId.parse(key).object_key(clips.QUALITY_REPORT))
    check = next(c for c in quality["checks"] if c["name"] == "graphics_title_safe")
    assert check["passed"] and check["reason"] == "inside the title-safe area"
    clip = media_store.download_file(
        ClipId.parse(key).object_key(clips.BROADCAST_CLIP), logo.parent / "b.mp4"
    )
    raw_rgb = run_ffmpeg(
        ["-i", str(clip), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], "rgb"
    )
    first = np.frombuffer(raw_rgb, dtype=np.uint8).reshape(HEIGHT, WIDTH, 3).astype(int)
    channel = load_channels(channels).channels[0]
    drawn = clip_overlay(channel, BROADCAST_PROFILE, "x", None, None, tmp_path)
    box = drawn_box(Overlay(logo=logo, **_geometry(drawn)), WIDTH, HEIGHT, 0.1, 24)
    red, green, blue = first[(box.top + box.bottom) // 2, (box.left + box.right) // 2]
    assert blue > red + 60 and blue > green + 60
