"""The planner's cost and inputs are bounded: a channel's backlog, the clips added at once, the
seconds kept ahead; a large history or one broken channel does not stop the others."""

import dagster as dg
import pytest

from webtv_dagster.channels import ChannelConfigError, load_channels
from webtv_dagster.defs.clip_production import sensor
from webtv_dagster.defs.housekeeping.added_clips import add_clips_job
from webtv_dagster.lib.clip_records import add_clips, latest_clip_number
from webtv_dagster.production.planning import MAX_BACKLOG_CLIPS, BacklogFull

from .conftest import TEST_CHANNELS, definitions_for_tests, studio_for_tests
from .test_sensors_and_jobs import ranges, tick


def llamas():
    return load_channels(TEST_CHANNELS).channels[0]


def test_a_backlog_of_thousands_is_planned_without_error_and_not_grown(instance):
    # The old planner asked Dagster for 4 records per unaired clip and failed past 2,500.
    add_clips(instance, llamas(), 500, aired_through=0)
    instance.add_dynamic_partitions(
        "clips", [f"test-llamas-{n:06d}" for n in range(501, MAX_BACKLOG_CLIPS + 1)]
    )
    first = tick(instance)
    assert not first.dynamic_partitions_requests  # far more than 16 s ahead already
    assert latest_clip_number(instance, "test-llamas") == MAX_BACKLOG_CLIPS
    # Every clip is booked by the next tick, in bounded batches, none twice.
    booked = tick(instance, first)
    assert ranges(booked)[0] == ("test-llamas-000001", "test-llamas-000001")
    assert ranges(booked)[-1][1] == f"test-llamas-{MAX_BACKLOG_CLIPS:06d}"
    assert not tick(instance, booked).run_requests


def test_clips_past_the_backlog_cap_are_refused_with_how_many_fit(instance):
    add_clips(instance, llamas(), 500, aired_through=0)
    with pytest.raises(BacklogFull, match=r"add at most 1500"):
        add_clips(instance, llamas(), MAX_BACKLOG_CLIPS, aired_through=0)
    # Clips that aired make room again.
    assert add_clips(instance, llamas(), 5, aired_through=500)[0].key == "test-llamas-000501"
    result = add_clips_job.execute_in_process(
        instance=instance,
        run_config={
            "ops": {"add_clip_partitions": {"config": {"channel": "test-llamas", "count": 501}}}
        },
        resources={"studio": studio_for_tests()},
        raise_on_error=False,
    )
    error = str(result.get_step_failure_events()[0].step_failure_data.error)
    assert "count must be between 1 and 500, not 501" in error


def test_a_channel_that_fails_to_plan_does_not_stop_the_others(instance, monkeypatch):
    plan = sensor.plan_channel

    def broken_for_llamas(channel, *args):
        if channel.slug == "test-llamas":
            raise RuntimeError("a fault in this channel's planning")
        return plan(channel, *args)

    instance.add_dynamic_partitions("clips", ["test-ocean-000001", "test-llamas-000001"])
    monkeypatch.setattr(sensor, "plan_channel", broken_for_llamas)
    first = tick(instance)
    second = tick(instance, first)
    assert ranges(second) == [("test-ocean-000001", "test-ocean-000001")]
    # Once the fault is gone, the channel's clip is booked: nothing was lost meanwhile.
    monkeypatch.setattr(sensor, "plan_channel", plan)
    third = tick(instance, second)
    assert ("test-llamas-000001", "test-llamas-000001") in ranges(third)


def test_the_cursor_of_the_previous_planner_is_read(instance):
    instance.add_dynamic_partitions("clips", [f"test-llamas-{n:06d}" for n in range(1, 7)])
    old = '{"test-llamas": {"requested": 6, "seen": 6}, "test-ocean": {"requested": 0, "seen": 0}}'
    result = tick(instance, dg.SensorResult(cursor=old))
    assert not result.run_requests and not result.dynamic_partitions_requests


@pytest.mark.parametrize("ahead", ["1e12", ".inf", ".nan", "3601"])
def test_ahead_seconds_beyond_an_hour_or_not_a_number_is_refused(tmp_path, ahead):
    path = tmp_path / "channels.yaml"
    path.write_text(
        f"channels:\n  - {{slug: a, title: A, theme: t, style: s, ahead_seconds: {ahead}}}\n"
    )
    with pytest.raises(ChannelConfigError, match="ahead_seconds"):
        load_channels(path)


def test_the_playlist_lists_the_clips_past_air_and_recent_ones_not_the_history(media_store):
    from webtv_dagster import clips
    from webtv_dagster.clips import ClipId
    from webtv_dagster.playout.playlist import REPLAY_CLIPS, build_playlist, playlist_window

    channel = llamas()
    start = 999_990  # across the six-digit boundary, three months into a channel's life
    for number in range(start, start + 40):
        clip = ClipId(channel=channel.slug, number=number)
        media_store.put_json(
            clip.object_key(clips.BROADCAST_RECORD),
            {
                "clip_id": clip.key,
                "prompt": "p",
                "seed": 1,
                "duration_seconds": 2.667,
                "uri": "s3://x",
                "key": clip.object_key(clips.BROADCAST_CLIP),
            },
        )
    aired_through, highest = start + 29, start + 45  # the last six are still being made
    window = playlist_window(aired_through, highest, MAX_BACKLOG_CLIPS)
    assert window == range(aired_through - REPLAY_CLIPS + 1, highest + 1)
    listed = build_playlist(media_store, channel, window).entries
    numbers = [ClipId.parse(entry.clip_id).number for entry in listed]
    assert numbers == list(range(aired_through - REPLAY_CLIPS + 1, start + 40))
    assert listed[-1].clip_id == "test-llamas-1000029"
    # However long the backlog, the window holds at most the cap past air.
    assert len(playlist_window(0, 10**6, MAX_BACKLOG_CLIPS)) == MAX_BACKLOG_CLIPS + REPLAY_CLIPS


def test_a_schedule_whose_clips_do_not_fit_the_backlog_skips_its_tick_saying_why(instance):
    from datetime import UTC, datetime

    ocean = load_channels(TEST_CHANNELS).channels[1]
    add_clips(instance, ocean, 500, aired_through=0)
    instance.add_dynamic_partitions(
        "clips", [f"test-ocean-{n:06d}" for n in range(501, MAX_BACKLOG_CLIPS)]
    )
    schedule = definitions_for_tests().resolve_schedule_def("test_ocean_clip_schedule")
    # Closed here, not when collected: the instance it opens must close before the test's.
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 26, 19, tzinfo=UTC),
        resources={"studio": studio_for_tests()},
    ) as context:
        result = schedule.evaluate_tick(context)
    assert not result.run_requests
    assert "add at most 1" in result.skip_message
    assert latest_clip_number(instance, "test-ocean") == MAX_BACKLOG_CLIPS - 1
