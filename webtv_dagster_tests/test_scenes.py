"""Continuity: a channel's clips in scenes, each take after a scene's first starting from the
last frame of the take before it, a scene's prompts written as its sequence of shots, and a
scene never split between runs."""

import dagster as dg
import numpy as np
import pytest
import yaml

from webtv_dagster import clips
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.clip_production.assets import raw_take, shot_prompt
from webtv_dagster.media.ffmpeg import probe
from webtv_dagster.media.frames import decode_rgb_frames
from webtv_dagster.production.planning import run_batches, whole_scenes

from .conftest import TEST_CHANNELS, clip_resources, latest_metadata

SLUG = "test-llamas"


def numbers(batches):
    return [[clip.number for clip in batch] for batch in batches]


def test_a_scene_is_never_split_between_runs_and_the_buffer_ends_on_a_scene():
    due = [ClipId(channel=SLUG, number=n) for n in range(1, 11)]
    # Clip 10 opens a fourth scene, which fits beside the third.
    assert numbers(run_batches(due, 4, scene_clips=3)) == [[1, 2, 3], [4, 5, 6], [7, 8, 9, 10]]
    assert numbers(run_batches(due, 2, scene_clips=3))[0] == [1, 2, 3]  # never a split
    assert numbers(run_batches(due, 6, scene_clips=3)) == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10]]
    # A channel with nothing ahead airs its first scene as soon as that is made.
    assert numbers(run_batches(due, 6, start_with_one=True, scene_clips=3)) == [
        [1, 2, 3],
        [4, 5, 6, 7, 8, 9],
        [10],
    ]
    # Lone shots batch as before.
    assert numbers(run_batches(due, 4)) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert numbers(run_batches(due, 4, start_with_one=True))[:2] == [[1], [2, 3, 4, 5]]
    assert [whole_scenes(5, 0, 3), whole_scenes(2, 4, 3), whole_scenes(0, 4, 3)] == [6, 2, 0]
    assert whole_scenes(5, 0, 1) == 5


@pytest.fixture
def scene_channels(tmp_path):
    document = yaml.safe_load(TEST_CHANNELS.read_text())
    document["channels"][0]["scene_clips"] = 2
    path = tmp_path / "channels.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def materialize(instance, resources, keys):
    return dg.materialize(
        [shot_prompt, raw_take],
        instance=instance,
        resources=resources,
        tags={
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        },
        raise_on_error=False,
    )


def frames_of(store, key, tmp_path):
    path = store.download_file(ClipId.parse(key).object_key(clips.RAW_TAKE), tmp_path / key)
    video = probe(path).video
    return decode_rgb_frames(path, video.width, video.height).astype(np.int16)


def test_each_take_of_a_scene_starts_from_the_last_frame_of_the_one_before(
    instance, seaweedfs, media_store, scene_channels, tmp_path
):
    keys = [f"{SLUG}-{n:06d}" for n in range(1, 5)]
    instance.add_dynamic_partitions("clips", keys)
    resources = clip_resources(seaweedfs, media_store.bucket, scene_channels, parallel_clips=2)
    assert materialize(instance, resources, keys).success
    takes = {key: frames_of(media_store, key, tmp_path) for key in keys}

    def difference(a, b):
        return float(np.abs(a - b).mean())

    # Clips 1-2 and 3-4 are scenes: the second take opens on the first one's last picture (up
    # to the encoder's rounding), and is its own shot after that.
    for first, second in ((keys[0], keys[1]), (keys[2], keys[3])):
        assert difference(takes[second][0], takes[first][-1]) < 2.0
        assert difference(takes[second][-1], takes[first][-1]) > 10.0
        metadata = latest_metadata(instance, raw_take, second)
        assert metadata["continues"] == first and "continuity" not in metadata
    # A new scene starts from its own prompt.
    assert difference(takes[keys[2]][0], takes[keys[1]][-1]) > 10.0
    assert "continues" not in latest_metadata(instance, raw_take, keys[2])

    # The shots of a scene share its subject, setting and lighting, not their action or camera.
    prompts = [latest_metadata(instance, shot_prompt, key)["prompt"] for key in keys]
    for first, second in ((0, 1), (2, 3)):
        shared = set(prompts[first].split(", ")) & set(prompts[second].split(", "))
        assert any(part.startswith("in ") for part in shared), (prompts[first], prompts[second])
        assert prompts[first] != prompts[second]


def test_a_take_that_continues_a_scene_waits_for_the_take_before_it(
    instance, seaweedfs, media_store, scene_channels
):
    key = f"{SLUG}-000002"
    instance.add_dynamic_partitions("clips", [key])
    resources = clip_resources(seaweedfs, media_store.bucket, scene_channels)
    result = materialize(instance, resources, [key])
    assert not result.success
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert f"make {SLUG}-000001 first (a scene's takes are made in order)" in message
