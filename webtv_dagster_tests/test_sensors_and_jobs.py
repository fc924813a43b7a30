import json
from datetime import UTC

import dagster as dg
import yaml

from webtv_dagster.channels import load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.air.playlist import playlist_refresh_sensor
from webtv_dagster.defs.clip_production.assets import (
    broadcast_clip,
    interpolated_clip,
    raw_take,
    upscaled_take,
)
from webtv_dagster.defs.clip_production.sensor import clip_production_sensor
from webtv_dagster.defs.housekeeping.added_clips import add_clips_job
from webtv_dagster.production.request_counts import queue_path
from webtv_dagster.production.shot_requests import RequestQueue

from .conftest import TEST_CHANNELS, definitions_for_tests, studio_for_tests

defs = definitions_for_tests()

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def apply_partition_requests(instance, result):
    for request in result.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            keys = list(request.partition_keys)
            instance.add_dynamic_partitions(request.partitions_def_name, keys)


def ranges(result):
    return [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in result.run_requests]


def test_definitions_load():
    assert {job.name for job in defs.resolve_all_job_defs()} >= {
        "clip_job",
        "playlist_job",
        "add_clips_job",
        "as_run_job",
    }
    assert "as_run_job_schedule" in {schedule.name for schedule in defs.schedules}
    graph = defs.resolve_asset_graph()
    assert {key.to_user_string() for key in graph.get_all_asset_keys()} == {
        "shot_prompt",
        "raw_take",
        "upscaled_take",
        "interpolated_clip",
        "music_track",
        "broadcast_clip",
        "playlist",
        "on_air_stream",
        "shot_requests",
        "channel_ident",
        "as_run_log",
    }
    assert defs.resolve_job_def("clip_job").executor_def.name == "in_process"


def tick(instance, previous=None, **settings):
    """One evaluation of the buffer sensor after `previous` with the test settings changed by
    `settings`, its partitions applied."""
    cursor = previous.cursor if previous else None
    resources = {"studio": studio_for_tests(**settings)}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = clip_production_sensor(context)
    apply_partition_requests(instance, result)
    return result


def test_buffer_sensor_plans_to_the_target_and_requests_batches(instance):
    result = tick(instance, clips_per_run=4)
    # test-llamas wants 16 s ahead at 2.667 s a clip: 6 clips, planned as two whole runs of 4;
    # test-ocean wants nothing.
    added = [key for r in result.dynamic_partitions_requests for key in r.partition_keys]
    assert added == [f"test-llamas-{n:06d}" for n in range(1, 9)]
    assert not result.run_requests  # new clips wait one tick, in case another booked them

    booking = tick(instance, result, clips_per_run=4)
    # Nothing is ahead of air: the first run makes one clip, so that the channel airs soon.
    assert ranges(booking) == [
        ("test-llamas-000001", "test-llamas-000001"),
        ("test-llamas-000002", "test-llamas-000005"),
        ("test-llamas-000006", "test-llamas-000008"),
    ]
    assert all(r.job_name == "clip_job" for r in booking.run_requests)
    # Earliest deadline first: each run is due once the clips before it have aired.
    priorities = [int(r.tags["dagster/priority"]) for r in booking.run_requests]
    assert priorities[0] > priorities[1] > priorities[2]
    assert priorities[0] - priorities[1] in (2, 3)  # one clip of 2.667 s before the second
    # Each run names the model every stage calls, for the per-model run limits.
    assert booking.run_requests[0].tags["webtv/text_to_video_model"] == "procedural"

    # Next tick: the buffer is full and every clip was requested once.
    again = tick(instance, booking, clips_per_run=4)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []

    # An operator adds clips (job or UI): the sensor requests exactly those.
    add_clips_job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {"add_clip_partitions": {"config": {"channel": "test-ocean", "count": 3}}}
        },
        resources={"studio": studio_for_tests()},
    )
    seen = tick(instance, again, clips_per_run=4)
    assert not seen.run_requests
    manual = tick(instance, seen, clips_per_run=4)
    assert ranges(manual) == [
        ("test-ocean-000001", "test-ocean-000001"),
        ("test-ocean-000002", "test-ocean-000003"),
    ]
    assert json.loads(manual.cursor)["channels"] == {
        "test-llamas": {"requested": 8, "seen": 8},
        "test-ocean": {"requested": 3, "seen": 3},
    }


def test_scheduled_clips_are_booked_once(instance):
    from datetime import datetime

    first = tick(instance)  # the sensor plans test-llamas 1..8 (6 needed, one run of 8)
    schedule = defs.resolve_schedule_def("test_ocean_clip_schedule")
    # Closed here, not when collected: the instance it opens must close before the test's.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 26, 19, tzinfo=UTC),
        resources={"studio": studio_for_tests()},
    ) as context:
        scheduled = schedule.evaluate_tick(context).run_requests
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in scheduled] == [
        ("test-ocean-000001", "test-ocean-000003")
    ]
    # The daemon creates the scheduled run, which plans its clips.
    clip_job = defs.resolve_job_def("clip_job")
    for request in scheduled:
        instance.create_run_for_job(job_def=clip_job, tags=request.tags)
    second = tick(instance, first)
    third = tick(instance, second)
    booked = ranges(second) + ranges(third)
    assert booked == [
        ("test-llamas-000001", "test-llamas-000001"),
        ("test-llamas-000002", "test-llamas-000008"),
    ]


def test_channel_partitions_follow_the_channels_file(tmp_path):
    """The clip sensor adds a partition for each channel of the file and deletes those of
    channels taken out of it, at its next tick: no reload of the definitions."""
    raw = yaml.safe_load(TEST_CHANNELS.read_text())
    with dg.instance_for_test() as fresh:
        tick(fresh)
        assert fresh.get_dynamic_partitions("channels") == ["test-llamas", "test-ocean"]
        raw["channels"] = raw["channels"][1:]
        channels_file = tmp_path / "channels.yaml"
        channels_file.write_text(yaml.safe_dump(raw))
        result = tick(fresh, channels_file=channels_file)
        for request in result.dynamic_partitions_requests:
            if isinstance(request, dg.DeleteDynamicPartitionsRequest):
                for key in request.partition_keys:
                    fresh.delete_dynamic_partition(request.partitions_def_name, key)
        assert fresh.get_dynamic_partitions("channels") == ["test-ocean"]


def test_clips_already_made_are_not_requested_again(instance):
    keys = [f"test-llamas-{n:06d}" for n in range(1, 4)]
    instance.add_dynamic_partitions("clips", keys)
    for key in keys[:2]:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=broadcast_clip.key, partition=key)
        )
    result = tick(instance, tick(instance))
    requested = {key for start, end in ranges(result) for key in (start, end)}
    assert "test-llamas-000001" not in requested and "test-llamas-000002" not in requested
    assert ranges(result)[0][0] == "test-llamas-000003"


def test_add_clips_job_refuses_unknown_channel(instance):
    result = add_clips_job.execute_in_process(
        instance=instance,
        run_config={"ops": {"add_clip_partitions": {"config": {"channel": "nope", "count": 1}}}},
        resources={"studio": studio_for_tests()},
        raise_on_error=False,
    )
    assert not result.success
    assert "no channel 'nope'" in str(result.get_step_failure_events()[0].step_failure_data.error)


def test_playlist_sensor_refreshes_channels_with_new_clips(instance):
    empty = playlist_refresh_sensor(dg.build_sensor_context(instance=instance))
    assert empty.run_requests == [] or empty.run_requests is None
    instance.add_dynamic_partitions("clips", ["test-llamas-000001", "test-ocean-000001"])
    for key in ["test-llamas-000001", "test-ocean-000001"]:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=broadcast_clip.key, partition=key)
        )
    result = playlist_refresh_sensor(dg.build_sensor_context(instance=instance))
    assert sorted(r.partition_key for r in result.run_requests) == ["test-llamas", "test-ocean"]
    quiet = playlist_refresh_sensor(
        dg.build_sensor_context(instance=instance, cursor=result.cursor)
    )
    assert not quiet.run_requests


def fail_first_clip(instance, channels_file):
    """A run of the first clip that fails (no media storage here): broadcast_clip never made."""
    failed = dg.materialize(
        [raw_take, upscaled_take, interpolated_clip, broadcast_clip],
        partition_key="test-llamas-000001",
        instance=instance,
        resources={
            "studio": studio_for_tests(channels_file=channels_file),
            "media_storage": dg.ResourceDefinition.none_resource(),
        },
        raise_on_error=False,
    )
    assert not failed.success


def test_failed_clips_are_replaced_in_the_buffer(instance):
    first = tick(instance, clips_per_run=2)  # 6 clips: three whole runs
    fail_first_clip(instance, TEST_CHANNELS)
    again = tick(instance, first, clips_per_run=2)
    added = [key for r in again.dynamic_partitions_requests for key in r.partition_keys]
    assert added == ["test-llamas-000007", "test-llamas-000008"]  # one replaced: a whole run
    # The failed clip was booked (its run failed): only the others are requested, then the
    # replacements. Nothing airable is ahead of clip 2: its run makes it alone.
    assert ranges(again) == [
        ("test-llamas-000002", "test-llamas-000002"),
        ("test-llamas-000003", "test-llamas-000004"),
        ("test-llamas-000005", "test-llamas-000006"),
    ]
    assert ranges(tick(instance, again, clips_per_run=2)) == [
        ("test-llamas-000007", "test-llamas-000008")
    ]


def test_the_request_of_a_failed_clip_goes_back_to_the_front_of_the_queue(instance, tmp_path):
    raw = yaml.safe_load(TEST_CHANNELS.read_text())
    raw["channels"][0]["requests"] = {"enabled": True, "approval": "auto", "share": 1.0}
    channels_file = tmp_path / "channels.yaml"
    channels_file.write_text(yaml.safe_dump(raw))
    settings = {"channels_file": channels_file, "data_dir": tmp_path}
    channel = load_channels(channels_file).channels[0]
    queue = RequestQueue(queue_path(tmp_path))
    first, second = (
        queue.submit(channel, idea, "Ann", "web", f"c{n}", []).request_id
        for n, idea in enumerate(["the llama on a unicycle", "the llama on skis"])
    )
    assert queue.claim(channel, ClipId(channel=channel.slug, number=1)).id == first
    before = tick(instance, **settings)
    fail_first_clip(instance, channels_file)
    tick(instance, before, **settings)
    released = queue.get(first)
    assert (released.status, released.clip_id) == ("approved", None)
    # It keeps its place: the next clip made of a request is made of it, not of the later one.
    assert queue.claim(channel, ClipId(channel=channel.slug, number=7)).id == first
    assert queue.get(second).status == "approved"


def test_aired_clips_leave_the_buffer(instance, tmp_path):
    from webtv_dagster.playout.state import PlayoutFolder, PlayoutState

    first = tick(instance, data_dir=tmp_path, clips_per_run=2)
    path = PlayoutFolder.of(tmp_path, "test-llamas").state
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
    # Six clips planned, four aired: two are left, so four more keep 16 s ahead.
    again = tick(instance, first, data_dir=tmp_path, clips_per_run=2)
    added = [key for r in again.dynamic_partitions_requests for key in r.partition_keys]
    assert added == [f"test-llamas-{n:06d}" for n in range(7, 11)]


def test_the_stream_is_observed_from_the_playout_state(instance, tmp_path):
    import time

    from webtv_dagster.defs.air.on_air import on_air_stream_sensor
    from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, ScheduledClip

    resources = {"studio": studio_for_tests(data_dir=tmp_path)}
    assert on_air_stream_sensor(
        dg.build_sensor_context(instance=instance, resources=resources)
    ).skip_reason
    now = time.time()
    path = PlayoutFolder.of(tmp_path, "test-llamas").state
    path.parent.mkdir(parents=True)
    clip = ScheduledClip(
        clip_id="test-llamas-000003",
        prompt="a llama bakes",
        starts_at=now - 1,
        stream_seconds=99,
        duration_seconds=8,
    )
    path.write_text(
        PlayoutState(
            channel="test-llamas",
            title="t",
            publisher_started_at=now - 100,
            updated_at=now,
            aired_through=3,
            unplayed_seconds=24,
            schedule=[clip],
            up_next=[],
        ).model_dump_json()
    )
    result = on_air_stream_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (observation,) = result.asset_events
    assert observation.partition == "test-llamas"
    assert observation.metadata["on_air"].value == "test-llamas-000003"
    assert observation.metadata["prompt"].value == "a llama bakes"
    assert observation.metadata["unplayed_seconds"].value == 24
    assert observation.metadata["uptime_seconds"].value >= 100


def test_taken_down_clips_leave_the_buffer(instance):
    first = tick(instance, clips_per_run=2)  # test-llamas 1..6 planned: 16 s ahead
    for key, on_air in [
        ("test-llamas-000002", "taken down"),
        ("test-llamas-000003", "taken down"),
        ("test-llamas-000003", "restored"),
    ]:
        instance.report_runless_asset_event(
            dg.AssetObservation(
                asset_key=broadcast_clip.key, partition=key, metadata={"on_air": on_air}
            )
        )
    again = tick(instance, first, clips_per_run=2)
    # Clip 2 will not air (clip 3 was put back): one more clip keeps 16 s ahead, a run of two.
    added = [key for r in again.dynamic_partitions_requests for key in r.partition_keys]
    assert added == ["test-llamas-000007", "test-llamas-000008"]


def test_clips_of_runs_canceled_by_a_stop_are_booked_again_once(instance):
    from webtv_dagster.lib.names import REBOOK_OF
    from webtv_dagster.stack.instance import STOPPED_WITH_STACK_TAG

    first = tick(instance)  # test-llamas 1..6 planned
    stopped = instance.create_run_for_job(
        job_def=defs.resolve_job_def("clip_job"),
        tags={
            RANGE_START: "test-llamas-000001",
            RANGE_END: "test-llamas-000005",
            "webtv/text_to_video_model": "procedural",
            STOPPED_WITH_STACK_TAG: "true",
            "dagster/priority": "-1800000000",
        },
        status=dg.DagsterRunStatus.CANCELED,
    )
    again = tick(instance, first)
    rebook = [r for r in again.run_requests if r.tags.get(REBOOK_OF) == stopped.run_id]
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in rebook] == [
        ("test-llamas-000001", "test-llamas-000005")
    ]
    assert rebook[0].run_key == f"rebook:{stopped.run_id}:test-llamas-000001"
    assert rebook[0].asset_selection is None  # nothing was made: every stage
    assert rebook[0].tags["webtv/text_to_video_model"] == "procedural"
    assert rebook[0].tags["dagster/priority"] == "-1800000000"  # its deadline stays
    # Once its run exists, the canceled run is left alone.
    instance.create_run_for_job(
        job_def=defs.resolve_job_def("clip_job"),
        tags=rebook[0].tags,
        status=dg.DagsterRunStatus.STARTED,
    )
    assert not [r for r in tick(instance, again).run_requests if REBOOK_OF in r.tags]


def test_runs_that_failed_as_a_whole_or_were_re_executed_are_not_booked_again(instance):
    """A run killed for memory (no step failed: the run did) would fail the same way again,
    forever; a run an operator re-executed from the UI is being made already."""
    from webtv_dagster.lib.names import REBOOK_OF

    first = tick(instance)
    job = defs.resolve_job_def("clip_job")
    killed = instance.create_run_for_job(
        job_def=job,
        tags={RANGE_START: "test-llamas-000001", RANGE_END: "test-llamas-000002"},
        status=dg.DagsterRunStatus.FAILURE,
    )
    again = tick(instance, first)
    assert not [r for r in again.run_requests if r.tags.get(REBOOK_OF) == killed.run_id]
    stopped = instance.create_run_for_job(
        job_def=job,
        tags={
            RANGE_START: "test-llamas-000003",
            RANGE_END: "test-llamas-000004",
            "webtv/stopped_with_stack": "true",
        },
        status=dg.DagsterRunStatus.CANCELED,
    )
    instance.create_run_for_job(
        job_def=job,
        tags={
            RANGE_START: "test-llamas-000003",
            RANGE_END: "test-llamas-000004",
            "dagster/parent_run_id": stopped.run_id,
        },
        status=dg.DagsterRunStatus.STARTED,
    )
    assert not [
        r for r in tick(instance, again).run_requests if r.tags.get(REBOOK_OF) == stopped.run_id
    ]


def test_clips_the_playout_skipped_are_recorded_on_their_partition(instance, tmp_path):
    import time

    from webtv_dagster.defs.air.on_air import on_air_stream_sensor
    from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, SkippedClip

    resources = {"studio": studio_for_tests(data_dir=tmp_path)}
    tick(instance)  # test-llamas 1..6 exist
    path = PlayoutFolder.of(tmp_path, "test-llamas").state
    path.parent.mkdir(parents=True)
    skip = SkippedClip(clip_id="test-llamas-000002", reason="it remuxes to 30 frames", at=1e9)
    path.write_text(
        PlayoutState(
            channel="test-llamas",
            title="t",
            publisher_started_at=0,
            updated_at=time.time(),
            aired_through=3,
            unplayed_seconds=0,
            schedule=[],
            up_next=[],
            skipped=[skip],
        ).model_dump_json()
    )
    first = on_air_stream_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (observation,) = [e for e in first.asset_events if e.asset_key == broadcast_clip.key]
    assert observation.partition == "test-llamas-000002"
    assert observation.metadata["reason"].value == "it remuxes to 30 frames"
    # Recorded once: the next tick has nothing new to say about it.
    again = on_air_stream_sensor(
        dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources)
    )
    assert not [e for e in again.asset_events if e.asset_key == broadcast_clip.key]
