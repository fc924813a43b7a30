"""An operator pulls a clip off air with a reason; it leaves the playlist at once, stays off
through rebuilds, and can be put back."""

import dagster as dg
import pytest

from webtv_dagster import clips
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.air.playlist import playlist
from webtv_dagster.playout.playlist import PLAYLIST_JSON, Playlist
from webtv_dagster.playout.takedowns import read_takedowns

from .conftest import TEST_CHANNELS, clip_resources, definitions_for_tests

SLUG = "test-llamas"
defs = definitions_for_tests()


def store_airable_clip(store, number: int) -> str:
    """A broadcast record for clip `number`, as the broadcast stage writes it after QC."""
    clip = ClipId(channel=SLUG, number=number)
    store.put_json(
        clip.object_key(clips.BROADCAST_RECORD),
        {
            "clip_id": clip.key,
            "prompt": f"prompt {number}",
            "seed": number,
            "duration_seconds": 64 / 24,
            "uri": "s3://x",
            "key": clip.object_key("broadcast.mp4"),
        },
    )
    return clip.key


def listed(store) -> list[str]:
    raw = store.get_json(f"channels/{SLUG}/{PLAYLIST_JSON}")
    return [entry.clip_id for entry in Playlist.model_validate(raw).entries]


def take_down(instance, resources, **config):
    job = defs.resolve_job_def("take_down_job")
    return job.execute_in_process(
        run_config={"ops": {"take_down_clip": {"config": config}}},
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )


@pytest.fixture
def resources(seaweedfs, media_store):
    return clip_resources(seaweedfs, media_store.bucket, TEST_CHANNELS)


def test_a_taken_down_clip_leaves_the_playlist_and_stays_off(media_store, resources, tmp_path):
    from webtv_dagster.playout.playlist import unaired_entries

    keys = [store_airable_clip(media_store, n) for n in (1, 2, 3)]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("channels", [SLUG])  # as the clip sensor's first tick
        # The playlist lists the channel's clips up to its highest partition (4 is being made).
        instance.add_dynamic_partitions("clips", [f"{SLUG}-{n:06d}" for n in range(1, 5)])
        assert dg.materialize(
            [playlist], partition_key=SLUG, instance=instance, resources=resources
        ).success
        assert listed(media_store) == keys

        result = take_down(instance, resources, clip_id=keys[1], reason="llama has five legs")
        assert result.success
        assert listed(media_store) == [keys[0], keys[2]]
        assert read_takedowns(media_store, SLUG).clips[keys[1]].reason == "llama has five legs"
        observation = (
            instance.fetch_observations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("broadcast_clip"), asset_partitions=[keys[1]]
                ),
                limit=1,
            )
            .records[0]
            .asset_observation
        )
        assert observation.metadata["reason"].value == "llama has five legs"

        # A later rebuild (new clips landing) keeps it off; the playout never picks it.
        keys.append(store_airable_clip(media_store, 4))
        assert dg.materialize(
            [playlist], partition_key=SLUG, instance=instance, resources=resources
        ).success
        assert listed(media_store) == [keys[0], keys[2], keys[3]]
        current = Playlist.model_validate(media_store.get_json(f"channels/{SLUG}/{PLAYLIST_JSON}"))
        assert [e.clip_id for e in unaired_entries(current, through=1)] == [keys[2], keys[3]]

        # Without a reason, or for a clip of no channel, the job refuses and changes nothing.
        refused = take_down(instance, resources, clip_id=keys[0], reason=" ")
        assert not refused.success
        assert "say why test-llamas-000001 is taken down" in str(
            refused.get_step_failure_events()[0].step_failure_data.user_failure_data.description
        )
        assert not take_down(instance, resources, clip_id="nope-000001", reason="x").success
        assert listed(media_store) == [keys[0], keys[2], keys[3]]

        assert take_down(instance, resources, clip_id=keys[1], restore=True).success
        assert listed(media_store) == keys
        assert read_takedowns(media_store, SLUG).clips == {}


def test_every_take_down_of_a_clip_is_kept_in_its_history(media_store):
    from webtv_dagster.playout.takedowns import restore
    from webtv_dagster.playout.takedowns import take_down as record_take_down

    clip = ClipId(channel=SLUG, number=3)
    record_take_down(media_store, clip, "a sixth leg")
    record_take_down(media_store, clip, "and a seventh")  # a second take-down, not a new reason
    assert restore(media_store, clip).reason == "and a seventh"
    assert restore(media_store, clip) is None  # not taken down any more
    again = record_take_down(media_store, clip, "the legs again")
    assert [record.reason for record in again.earlier] == ["a sixth leg", "and a seventh"]
    assert again.earlier[0].restored_at is None  # replaced by the second, not put back
    assert again.earlier[1].restored_at is not None
    assert read_takedowns(media_store, SLUG).clips[clip.key] == again
