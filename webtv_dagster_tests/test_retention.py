"""Retention removes old aired clips by age or size, never one ahead of air or kept for
replays, and the playlist follows."""

import dagster as dg
import yaml

from webtv_dagster import clips
from webtv_dagster.channels import RetentionPolicy
from webtv_dagster.clips import ClipId
from webtv_dagster.definitions import defs
from webtv_dagster.playout.state import PlayoutState, state_path
from webtv_dagster.retention import StoredClip, clips_to_remove, stored_clips

from .conftest import TEST_CHANNELS, clip_resources

DAY = 86_400
NOW = 1_800_000_000.0


def stored(number: int, days_old: float, size: int = 100) -> StoredClip:
    return StoredClip(clip_id=f"c-{number:06d}", number=number, size_bytes=size,
                      made_at=NOW - days_old * DAY, keys=[])  # fmt: skip


def numbers(chosen: list[StoredClip]) -> list[int]:
    return [clip.number for clip in chosen]


def test_age_and_size_limits_spare_unaired_and_replayed_clips():
    library = [stored(n, days_old=13 - n) for n in range(1, 13)]  # clip 1 is 12 days old
    # Aired through 8, the last 2 aired kept for replays: only 1..6 may go.
    by_age = RetentionPolicy(keep_days=7, protect_recent=2)
    assert numbers(clips_to_remove(library, by_age, aired_through=8, now=NOW)) == [1, 2, 3, 4, 5]
    by_size = RetentionPolicy(keep_gb=900e-9, protect_recent=2)  # 900 bytes: 9 clips of 100
    assert numbers(clips_to_remove(library, by_size, aired_through=8, now=NOW)) == [1, 2, 3]
    everything = RetentionPolicy(keep_days=0.001, keep_gb=1e-9, protect_recent=2)
    assert numbers(clips_to_remove(library, everything, aired_through=8, now=NOW)) == [
        1, 2, 3, 4, 5, 6,
    ]  # fmt: skip
    # Nothing aired yet (no playout state): nothing goes, however full the bucket.
    assert clips_to_remove(library, everything, aired_through=0, now=NOW) == []


def test_retention_job_removes_old_clips_and_rebuilds_the_playlist(
    seaweedfs, media_store, tmp_path, monkeypatch
):
    document = yaml.safe_load(TEST_CHANNELS.read_text())
    document["channels"][0]["retention"] = {"keep_gb": 2.5e-6, "protect_recent": 1}
    channels_file = tmp_path / "channels.yaml"
    channels_file.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("WEBTV_DATA_DIR", str(tmp_path / "data"))
    keys = []
    for number in range(1, 7):  # six clips of about 1 MB
        clip = ClipId(channel="test-llamas", number=number)
        media_store.put_bytes(clip.object_key(clips.BROADCAST_CLIP), bytes(1_000_000), "video/mp4")
        media_store.put_json(clip.object_key(clips.BROADCAST_RECORD), {
            "clip_id": clip.key, "prompt": "p", "seed": number, "duration_seconds": 2.667,
            "uri": "s3://x", "key": clip.object_key(clips.BROADCAST_CLIP),
        })  # fmt: skip
        keys.append(clip.key)
    path = state_path(tmp_path / "data", "test-llamas")
    path.parent.mkdir(parents=True)
    path.write_text(PlayoutState(
        channel="test-llamas", title="t", publisher_started_at=0, updated_at=0,
        aired_through=4, unplayed_seconds=0, schedule=[], up_next=[],
    ).model_dump_json())  # fmt: skip

    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("retention_job").execute_in_process(
            instance=instance,
            resources=clip_resources(seaweedfs, media_store.bucket, channels_file),
        )
        assert result.success
        # 6 MB against 2.5 MB: clips 1..3 go; 4 is kept for replays, 5 and 6 have not aired.
        assert [clip.clip_id for clip in stored_clips(media_store, "test-llamas")] == keys[3:]
        listed = media_store.get_json("channels/test-llamas/playlist.json")["entries"]
        assert [entry["clip_id"] for entry in listed] == keys[3:]
        removed = instance.fetch_observations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("broadcast_clip")), limit=10
        ).records
        assert sorted(r.partition_key for r in removed) == keys[:3]
