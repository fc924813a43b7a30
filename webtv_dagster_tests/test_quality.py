"""Quality checks before air: what each one catches, and that a clip failing one never reaches
the playlist while the UI shows why."""

import dagster as dg
import pytest

from webtv_dagster import clips
from webtv_dagster.broadcast_profile import BROADCAST_PROFILE
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.air.playlist import playlist
from webtv_dagster.defs.clip_production.assets import broadcast_clip
from webtv_dagster.lib.clip_records import ClipStatus, clip_statuses
from webtv_dagster.lib.clip_steps import QUALITY_CHECK
from webtv_dagster.media.broadcast import normalize_clip
from webtv_dagster.media.ffmpeg import run_ffmpeg
from webtv_dagster.production.quality import CHECK_NAMES, QualityLimits, inspect_broadcast_clip

from .conftest import PUBLIC_URL, TEST_CHANNELS, clip_resources
from .test_clip_pipeline import CLIP_ASSETS

FRAMES = 64


def lavfi_video(path, source: str, frames: int = FRAMES, size: str = "1024x576", fps: int = 24):
    separator = ":" if "=" in source else "="
    picture = f"{source}{separator}s={size}:r={fps}"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            picture,
            "-frames:v",
            str(frames),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(path),
        ],
        "test video",
    )
    return path


def tone(path, seconds: float = 64 / 24):
    run_ffmpeg(
        ["-f", "lavfi", "-i", "sine=f=440:r=48000", "-t", f"{seconds:.4f}", "-ac", "2", str(path)],
        "test tone",
    )
    return path


def failed_checks(path) -> dict[str, str]:
    report = inspect_broadcast_clip(path, "c", FRAMES, BROADCAST_PROFILE, QualityLimits())
    assert [check.name for check in report.checks] == CHECK_NAMES
    assert report.passed == (not report.failures())
    return {check.name: check.reason for check in report.failures()}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qc")
    return {
        "moving": lavfi_video(folder / "moving.mp4", "testsrc2"),
        "black": lavfi_video(folder / "black.mp4", "color=c=black"),
        "tone": tone(folder / "tone.flac"),
        "folder": folder,
    }


def test_a_good_clip_passes_every_check(sources):
    good = sources["folder"] / "good.mp4"
    normalize_clip(sources["moving"], sources["tone"], FRAMES, good, BROADCAST_PROFILE)
    assert failed_checks(good) == {}


def test_black_and_still_pictures_are_caught(sources):
    black = sources["folder"] / "black-clip.mp4"
    normalize_clip(sources["black"], sources["tone"], FRAMES, black, BROADCAST_PROFILE)
    failed = failed_checks(black)
    assert set(failed) == {"not_black", "not_frozen"}
    assert failed["not_black"].startswith("98% of the clip is black")
    assert "at most 50% allowed" in failed["not_black"]


@pytest.mark.parametrize("cycle", [2, 3])
def test_a_picture_flickering_between_a_few_frames_is_caught(sources, cycle):
    # Every frame differs from the one before, yet the clip shows `cycle` pictures over and over.
    flicker = sources["folder"] / f"flicker{cycle}.mp4"
    picture = f"nullsrc=s=1024x576:r=24,geq=lum='40+160*mod(N\\,{cycle})/{cycle}':cb=128:cr=128"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            picture,
            "-frames:v",
            str(FRAMES),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(flicker),
        ],
        "flicker",
    )
    clip = sources["folder"] / f"flicker{cycle}-clip.mp4"
    normalize_clip(flicker, sources["tone"], FRAMES, clip, BROADCAST_PROFILE)
    failed = failed_checks(clip)
    assert set(failed) == {"not_frozen"}, failed
    assert failed["not_frozen"].startswith("100% of the clip is frozen")


def test_a_clip_outside_the_profile_is_caught(sources):
    # Made by hand, not by normalize_clip: 30 fps, 640x360, no fixed keyframe interval, mono.
    off = sources["folder"] / "off-profile.mp4"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=30",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:r=44100",
            "-frames:v",
            "80",
            "-t",
            "2.6667",
            "-ac",
            "1",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            str(off),
        ],
        "off-profile clip",
    )
    failed = failed_checks(off)
    assert "broadcast_profile" in failed and "decodes" in failed
    reason = failed["broadcast_profile"]
    assert "640, 360, 30.0" in reason and "keyframes" in reason and "44100, 1" in reason


def test_damaged_and_silent_clips_are_caught(sources):
    good = sources["folder"] / "good2.mp4"
    normalize_clip(sources["moving"], sources["tone"], FRAMES, good, BROADCAST_PROFILE)
    damaged = sources["folder"] / "damaged.mp4"
    data = bytearray(good.read_bytes())
    for index in range(len(data) // 2, len(data) // 2 + 30_000, 7):
        data[index] = 0  # headers intact, media damaged
    damaged.write_bytes(bytes(data))
    assert "decodes" in failed_checks(damaged)

    silent = sources["folder"] / "silent.mp4"
    run_ffmpeg(
        [
            "-i",
            str(good),
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=48000:cl=stereo",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "copy",
            "-c:a",
            "aac",
            "-shortest",
            str(silent),
        ],
        "silent clip",
    )
    failed = failed_checks(silent)
    assert "not_silent" in failed and "loudness" in failed
    assert "-inf LUFS" in failed["loudness"]


def clip_evaluation(instance, result, key: str) -> dg.AssetCheckEvaluation:
    """The clip's one `broadcast_quality` evaluation in the run."""
    (evaluation,) = [
        evaluation
        for entry in instance.all_logs(
            result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
        if (evaluation := entry.dagster_event.event_specific_data).partition == key
    ]
    return evaluation


def check_results(instance, result, key: str) -> dict[str, tuple[bool, str]]:
    """Each quality check's verdict on the clip in the run, (passed, reason), after checking
    that the instance records the same verdict for the clip's partition."""
    evaluation = clip_evaluation(instance, result, key)
    results = {}
    for name in CHECK_NAMES:
        verdict, _, reason = evaluation.metadata[name].value.partition(": ")
        results[name] = (verdict == "passed", reason)
    assert evaluation.passed == all(passed for passed, _ in results.values())
    check_key = dg.AssetCheckKey(broadcast_clip.key, QUALITY_CHECK)
    (info,) = instance.event_log_storage.get_asset_check_partition_info(
        [check_key], partition_keys=[key]
    )
    assert info.latest_execution_status.value == ("SUCCEEDED" if evaluation.passed else "FAILED")
    return results


def test_black_and_corrupt_clips_never_reach_the_playlist_and_say_why(
    seaweedfs, media_store, tmp_path, sources
):
    resources = clip_resources(seaweedfs, media_store.bucket, TEST_CHANNELS)
    good, black, corrupt = "test-llamas-000001", "test-llamas-000002", "test-llamas-000003"
    range_tags = {
        "dagster/asset_partition_range_start": good,
        "dagster/asset_partition_range_end": corrupt,
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("clips", [good, black, corrupt])
        instance.add_dynamic_partitions("channels", ["test-llamas"])
        made = dg.materialize(
            CLIP_ASSETS[:-1], instance=instance, resources=resources, tags=range_tags
        )
        assert made.success
        # The black clip's interpolated picture is replaced by black frames, as a broken model
        # might return them.
        media_store.upload_file(
            sources["black"], ClipId.parse(black).object_key(clips.INTERPOLATED_CLIP), "video/mp4"
        )
        # The corrupt one's is cut short, as an interrupted download would leave it.
        corrupt_key = ClipId.parse(corrupt).object_key(clips.INTERPOLATED_CLIP)
        media_store.put_bytes(corrupt_key, media_store.get_bytes(corrupt_key)[:5000], "video/mp4")
        result = dg.materialize(
            [broadcast_clip],
            instance=instance,
            resources=resources,
            tags=range_tags,
            raise_on_error=False,
        )
        assert not result.success
        (failure,) = result.get_step_failure_events()
        description = failure.step_failure_data.user_failure_data.description
        assert f"{black}: failed quality checks: not_black: 98% of the clip is black" in description
        assert f"{corrupt}: MediaToolError" in description and "interpolated.mp4" in description

        # Dagster: the good clip is materialized and passed every check; the black one is
        # failed, with each failing check's reason, and counts as failed for the buffer.
        assert instance.get_materialized_partitions(broadcast_clip.key) == {good}
        assert all(passed for passed, _ in check_results(instance, result, good).values())
        black_checks = check_results(instance, result, black)
        assert black_checks["not_black"][0] is False
        assert black_checks["not_black"][1].startswith("98% of the clip is black")
        assert black_checks["loudness"][0] is True
        # A failed clip's evaluation links its preview by URL; a passed one carries none.
        assert clip_evaluation(instance, result, black).metadata["preview"].value == (
            f"![frames]({PUBLIC_URL}/previews/test-llamas/{black}/broadcast.preview.jpg)"
        )
        assert "preview" not in clip_evaluation(instance, result, good).metadata
        statuses = clip_statuses(instance, [good, black, corrupt])
        assert statuses == {
            good: ClipStatus.MATERIALIZED,
            black: ClipStatus.FAILED,
            corrupt: ClipStatus.FAILED,
        }

        # S3: both clips and their quality reports are kept; only the good one is airable.
        for key in (good, black):
            clip = ClipId.parse(key)
            assert media_store.get_json(clip.object_key(clips.QUALITY_REPORT))["clip_id"] == key
            media_store.download_file(clip.object_key(clips.BROADCAST_CLIP), tmp_path / key)
        for key in (black, corrupt):
            with pytest.raises(FileNotFoundError):
                media_store.get_json(ClipId.parse(key).object_key(clips.BROADCAST_RECORD))
        assert dg.materialize(
            [playlist], instance=instance, resources=resources, partition_key="test-llamas"
        ).success
        listed = media_store.get_json("channels/test-llamas/playlist.json")["entries"]
        assert [entry["clip_id"] for entry in listed] == [good]
