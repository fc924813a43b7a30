"""Retention removes old aired clips by age or size, never one ahead of air or kept for
replays, and the playlist follows."""

import dagster as dg
import pytest
import yaml

from webtv_dagster import clips
from webtv_dagster.channels import RetentionPolicy
from webtv_dagster.clips import ClipId
from webtv_dagster.lib.names import RANGE_END, RANGE_START
from webtv_dagster.playout.state import PlayoutFolder, PlayoutState
from webtv_dagster.production.retention import (
    StoredClip,
    clips_to_remove,
    intermediates_to_remove,
    stored_clips,
)

from .conftest import TEST_CHANNELS, clip_resources, definitions_for_tests

defs = definitions_for_tests()

DAY = 86_400
NOW = 1_800_000_000.0


def stored(number: int, days_old: float, size: int = 100) -> StoredClip:
    return StoredClip(
        clip_id=f"c-{number:06d}",
        number=number,
        size_bytes=size,
        made_at=NOW - days_old * DAY,
        keys=[],
    )


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
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    # Nothing aired yet (no playout state): nothing goes, however full the bucket.
    assert clips_to_remove(library, everything, aired_through=0, now=NOW) == []


def test_an_object_key_gives_back_its_clip_and_name_and_no_other_key_does():
    clip = ClipId(channel="test-llamas", number=42)
    for name in (clips.BROADCAST_RECORD, clips.preview_name(clips.RAW_TAKE)):
        assert ClipId.from_object_key(clip.object_key(name)) == (clip, name)
    assert ClipId.from_object_key("channels/a-b/clips/a-b-1234567/x.mp4")[0].number == 1234567
    for key in (
        "channels/test-llamas/playlist.json",  # the channel's, not a clip's
        "channels/test-llamas/clips/test-llamas-000042/",  # no name
        "channels/test-llamas/clips/other-000042/raw.mp4",  # another channel's clip id
        "channels/test-llamas/clips/test-llamas-42/raw.mp4",  # not a clip id
        "channels/test-llamas/clips/test-llamas-000042/sub/raw.mp4",  # deeper
        "media/test-llamas/clips/test-llamas-000042/raw.mp4",  # another layout
    ):
        with pytest.raises(ValueError, match="is not the key of a clip's object"):
            ClipId.from_object_key(key)


def test_retention_job_removes_old_clips_and_rebuilds_the_playlist(
    seaweedfs, media_store, tmp_path
):
    document = yaml.safe_load(TEST_CHANNELS.read_text())
    document["channels"][0]["retention"] = {"keep_gb": 2.5e-6, "protect_recent": 1}
    channels_file = tmp_path / "channels.yaml"
    channels_file.write_text(yaml.safe_dump(document))
    keys = []
    for number in range(1, 7):  # six clips of about 1 MB
        clip = ClipId(channel="test-llamas", number=number)
        media_store.put_bytes(clip.object_key(clips.BROADCAST_CLIP), bytes(1_000_000), "video/mp4")
        media_store.put_json(
            clip.object_key(clips.BROADCAST_RECORD),
            {
                "clip_id": clip.key,
                "prompt": "p",
                "seed": number,
                "duration_seconds": 2.667,
                "uri": "s3://x",
                "key": clip.object_key(clips.BROADCAST_CLIP),
            },
        )
        keys.append(clip.key)
    path = PlayoutFolder.of(tmp_path / "data", "test-llamas").state
    path.parent.mkdir(parents=True)
    path.write_text(
        PlayoutState(
            channel="test-llamas",
            title="t",
            publisher_started_at=0,
            updated_at=0,
            aired_through=4,
            unplayed_seconds=0,
            schedule=[],
            up_next=[],
        ).model_dump_json()
    )

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("clips", keys)
        clip_job = defs.resolve_job_def("clip_job")
        made = {}  # runs that made clips 1..3 (all removed) and 3..4 (4 is kept)
        for first, last in [(1, 3), (3, 4)]:
            made[first, last] = instance.create_run_for_job(
                job_def=clip_job,
                status=dg.DagsterRunStatus.SUCCESS,
                tags={RANGE_START: keys[first - 1], RANGE_END: keys[last - 1]},
            ).run_id
        result = defs.resolve_job_def("retention_job").execute_in_process(
            instance=instance,
            resources=clip_resources(
                seaweedfs, media_store.bucket, channels_file, data_dir=tmp_path / "data"
            ),
        )
        assert result.success
        # 6 MB against 2.5 MB: clips 1..3 go; 4 is kept for replays, 5 and 6 have not aired.
        assert [clip.clip_id for clip in stored_clips(media_store, "test-llamas")] == keys[3:]
        listed = media_store.get_json("channels/test-llamas/playlist.json")["entries"]
        assert [entry["clip_id"] for entry in listed] == keys[3:]
        # Dagster forgets them too: their partitions, and the run that made only them.
        assert instance.get_dynamic_partitions("clips") == keys[3:]
        assert instance.get_run_by_id(made[1, 3]) is None
        assert instance.get_run_by_id(made[3, 4]) is not None


def test_intermediates_go_a_day_after_their_clip_passed_qc_the_rest_stays():
    def clip(number, passed_hours_ago):
        passed = None if passed_hours_ago is None else NOW - passed_hours_ago * 3_600
        return StoredClip(
            clip_id=f"c-{number:06d}",
            number=number,
            size_bytes=10,
            made_at=NOW,
            keys=[],
            passed_at=passed,
            intermediate_bytes=8,
        )

    library = [clip(1, 30), clip(2, 23), clip(3, None), clip(4, 48)]
    library[3].intermediate_bytes = 0  # already removed
    policy = RetentionPolicy()  # keeps every clip, intermediates 24 h
    assert numbers(intermediates_to_remove(library, policy, NOW)) == [1]
    keep_all = RetentionPolicy(keep_intermediates_hours=None)
    assert intermediates_to_remove(library, keep_all, NOW) == []
    assert clips_to_remove(library, policy, aired_through=4, now=NOW) == []


def test_dagster_forgets_week_old_housekeeping_runs_and_observations(instance):
    import time

    from webtv_dagster.lib.history import forget_old_observations, forget_old_runs

    instance.add_dynamic_partitions("clips", ["test-llamas-000001"])
    playlist_run = instance.create_run_for_job(
        job_def=defs.resolve_job_def("playlist_job"), status=dg.DagsterRunStatus.SUCCESS
    ).run_id
    clip_run = instance.create_run_for_job(
        job_def=defs.resolve_job_def("clip_job"),
        status=dg.DagsterRunStatus.SUCCESS,
        tags={RANGE_START: "test-llamas-000001", RANGE_END: "test-llamas-000001"},
    ).run_id
    stream = dg.AssetKey("on_air_stream")
    instance.report_runless_asset_event(
        dg.AssetObservation(stream, partition="test-llamas", metadata={"on_air": "x"})
    )
    now = time.time()
    jobs = [job.name for job in defs.resolve_all_job_defs()]
    # Within the week: everything stays.
    assert forget_old_runs(instance, now, jobs) == 0
    assert forget_old_observations(instance, stream, now) == 0
    # Eight days on: the playlist run and the observation go; the clip run goes with its clip.
    later = now + 8 * DAY
    assert forget_old_runs(instance, later, jobs) == 1
    assert instance.get_run_by_id(playlist_run) is None
    assert instance.get_run_by_id(clip_run) is not None
    assert forget_old_observations(instance, stream, later) == 1
    assert not instance.fetch_observations(stream, limit=10).records


def test_retention_forgets_old_runs_of_every_job_and_old_events_of_every_asset(
    seaweedfs, media_store, tmp_path, monkeypatch
):
    """Whatever job or asset the definitions hold (ident_job, review_requests_job and the
    shot_requests observations were once missed): a week on, the retention job forgets them."""
    import time
    import types
    import uuid

    from webtv_dagster.defs.housekeeping import retention

    SUCCESS = dg.DagsterRunStatus.SUCCESS
    jobs = [job.name for job in defs.resolve_all_job_defs()]
    assets = sorted(defs.resolve_all_asset_keys())
    assert {"ident_job", "review_requests_job"} <= set(jobs)
    assert dg.AssetKey("shot_requests") in assets
    with dg.instance_for_test() as instance:
        runs = {
            name: instance.add_run(
                dg.DagsterRun(job_name=name, run_id=str(uuid.uuid4()), status=SUCCESS)
            ).run_id
            for name in jobs
        }
        for key in assets:
            instance.report_runless_asset_event(dg.AssetObservation(key, metadata={"seen": 1}))
        later = time.time() + 8 * DAY
        monkeypatch.setattr(retention, "time", types.SimpleNamespace(time=lambda: later))
        result = defs.resolve_job_def("retention_job").execute_in_process(
            instance=instance,
            resources=clip_resources(
                seaweedfs, media_store.bucket, TEST_CHANNELS, data_dir=tmp_path / "data"
            ),
        )
        assert result.success
        assert [name for name, run_id in runs.items() if instance.get_run_by_id(run_id)] == []
        observed = [key for key in assets if instance.fetch_observations(key, limit=1).records]
        assert observed == []
