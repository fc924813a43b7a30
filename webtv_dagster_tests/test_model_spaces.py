"""Real model code end to end: tiny random-weight LTX-Video, its latent upsampler and MusicGen,
served by the real Gradio apps of `webtv spaces --model`, called through the real Space pools
by the real clip assets; the clip passes quality control and airs."""

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pytest
from gradio_client import Client

from webtv_dagster import clips
from webtv_dagster.backends.space_pool import SpaceConnections, SpacePool
from webtv_dagster.backends.text_to_video import SpaceTextToVideo, TakeRequest
from webtv_dagster.channels import load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.air.playlist import playlist
from webtv_dagster.defs.clip_production.assets import (
    broadcast_clip,
    interpolated_clip,
    music_track,
    raw_take,
    upscaled_take,
)
from webtv_dagster.media.ffmpeg import probe, run_ffmpeg
from webtv_dagster.media.frames import decode_rgb_frames
from webtv_dagster.model_endpoints import SPACE_PRESETS, GradioSpacePool
from webtv_dagster.spaces.apps import Workshop, serve
from webtv_dagster.spaces.generators import LtxVideoGenerator, MissingWeights
from webtv_dagster.spaces.model_apps import (
    ModelSpec,
    launch_model_space,
    ltx_video_app,
)

from .conftest import clip_resources, free_port_block, latest_metadata, wait_for
from .test_space_backends import CLIP_ASSETS
from .tiny_models import tiny_weights


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def model_spaces(weights):
    """The three real-model apps, as `webtv spaces --model` serves them."""
    workshop, port = Workshop(), free_port_block(3)
    specs = [
        f"ltx-video={weights['ltx-video']}",
        f"ltx-upscaler={weights['ltx-upsampler']},{weights['ltx-video']}",
        f"musicgen={weights['musicgen']}",
    ]
    launched = [
        launch_model_space(ModelSpec.parse(spec), port + offset, 4, workshop)
        for offset, spec in enumerate(specs)
    ]
    yield {space.family: space.url for space in launched}
    for space in launched:
        space.app.close()


def channels_file(tmp_path, spaces):
    path = tmp_path / "channels.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            models:
              ltx-video:
                {{kind: gradio, family: text_to_video, preset: ltx-video,
                  spaces: ["{spaces["text_to_video"]}"], inputs: ["{{prompt}}", "{{seed}}",
                  "{{frames}}", 2, "{{fps}}", "{{width}}", "{{height}}", 1.0, ""]}}
              ltx-upscaler:
                {{kind: gradio, family: upscaler, preset: ltx-upscaler,
                  spaces: ["{spaces["upscaler"]}"]}}
              musicgen: {{kind: gradio, family: music, preset: musicgen,
                          spaces: ["{spaces["music"]}"]}}
            channels:
              - slug: test-llamas
                title: Llama Test Channel
                theme: llamas doing human jobs
                style: Pixar style 3D animation
                clip_seconds: 2.6666667
                backends:
                  text_to_video: ltx-video
                  upscaler: ltx-upscaler
                  music: musicgen
            """
        )
    )
    return path


def test_a_clip_made_by_real_model_code_passes_quality_control_and_airs(
    tmp_path, model_spaces, seaweedfs, media_store, rtmp_server
):
    from webtv_dagster.playout.channel import ChannelPlayout, read_state

    key = "test-llamas-000001"
    path = channels_file(tmp_path, model_spaces)
    resources = clip_resources(seaweedfs, media_store.bucket, path)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("channels", ["test-llamas"])
        instance.add_dynamic_partitions("clips", [key])
        made = dg.materialize(
            CLIP_ASSETS, partition_key=key, instance=instance, resources=resources
        )
        assert made.success
        take = latest_metadata(instance, raw_take, key)
        assert (take["backend"], take["endpoint"]) == ("ltx-video", model_spaces["text_to_video"])
        # The preset's shape: 512x288 at 24 fps for the whole clip and the frame it starts from.
        assert (take["resolution"], take["fps"], take["frames"]) == ("512x288", 24, 65)
        assert (take["model_model"], take["model_device"], take["model_steps"]) == (
            "ltx-video",
            "cpu",
            2,
        )
        assert take["model_dtype"] == "float32" and take["model_seconds"] > 0
        upscaled = latest_metadata(instance, upscaled_take, key)
        assert (upscaled["model_model"], upscaled["resolution"]) == ("ltx-upsampler", "1024x576")
        interpolated = latest_metadata(instance, interpolated_clip, key)
        assert interpolated["backend"] == "none"
        assert interpolated["endpoint"] == "nothing interpolated: native 24 fps"
        music = latest_metadata(instance, music_track, key)
        assert (music["model_model"], music["endpoint"]) == ("musicgen", model_spaces["music"])
        final = latest_metadata(instance, broadcast_clip, key)
        assert (final["resolution"], final["frames"]) == ("1024x576", 64)
        quality = media_store.get_json(ClipId.parse(key).object_key(clips.QUALITY_REPORT))
        assert quality["passed"], quality
        listing = dg.materialize(
            [playlist], partition_key="test-llamas", instance=instance, resources=resources
        )
        assert listing.success

    channel = load_channels(path).channels[0]
    playout = ChannelPlayout(
        media_store,
        channel,
        rtmp_server.publish_url("test-llamas"),
        tmp_path / "data",
        cache_bytes=50 * 2**20,
    )
    thread = threading.Thread(target=playout.run)
    thread.start()
    try:
        wait_for(
            lambda: (state := read_state(tmp_path / "data", "test-llamas")) and state.aired_through,
            what="the clip on air",
        )
        state = read_state(tmp_path / "data", "test-llamas")
        assert state.schedule[0].clip_id == key
    finally:
        playout.stop.set()
        thread.join(timeout=60)


def test_missing_weights_name_the_model_and_the_command_that_downloads_it(tmp_path):
    with pytest.raises(MissingWeights) as error:
        LtxVideoGenerator(tmp_path / "LTX-Video")
    assert "hf download Lightricks/LTX-Video-0.9.7-distilled" in str(error.value)
    assert str(tmp_path / "LTX-Video") in str(error.value)

    served = subprocess.run(
        [sys.executable, "-m", "webtv_dagster.cli", "spaces", "--model", f"musicgen={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == 1
    assert "hf download facebook/musicgen-small" in served.stderr
    assert "Traceback" not in served.stderr


class HeldGenerator:
    """The real tiny LTX-Video, held before each call until the test lets it go."""

    def __init__(self, generator: LtxVideoGenerator):
        self.generator, self.started, self.go = generator, threading.Event(), threading.Event()

    def render(self, *arguments):
        self.started.set()
        self.go.wait(timeout=60)
        return self.generator.render(*arguments)


def test_a_call_past_the_queue_limit_is_refused_at_once(weights):
    held = HeldGenerator(LtxVideoGenerator(weights["ltx-video"]))
    port = free_port_block(1)
    space = serve(ltx_video_app(held, Workshop()), "text_to_video", port, queue_size=1)
    inputs = ("a llama chef", 1, 9, 1, 24, 64, 64, 1.0, "")
    try:
        with ThreadPoolExecutor(3) as pool:
            # One call runs (held), one waits in the queue; the third is one too many.
            running = pool.submit(Client(space.url).predict, *inputs, api_name="/run")
            assert held.started.wait(timeout=60)
            waiting = pool.submit(Client(space.url).predict, *inputs, api_name="/run")
            wait_for(lambda: queue_size(space) == 1, what="the second call in the queue")
            with pytest.raises(Exception, match="(?i)queue is full"):
                Client(space.url).predict(*inputs, api_name="/run")
            held.go.set()
            for call in (running, waiting):
                video, generation = call.result(timeout=120)
                assert generation["model"] == "ltx-video"
                assert probe(Path(video)).video.frames == 9
    finally:
        held.go.set()
        space.app.close()


def queue_size(space) -> int:
    return httpx.get(f"{space.url}/gradio_api/queue/status", timeout=5).json()["queue_size"]


def picture(path, source):
    run_ffmpeg(
        ["-f", "lavfi", "-i", f"{source}=s=512x288", "-frames:v", "1", str(path)], "a picture"
    )
    return path


def test_a_take_that_continues_a_scene_is_built_from_the_frame_it_is_given(model_spaces, tmp_path):
    """LTX-Video's image-to-video through the preset's call: the take is conditioned on the
    picture, and only on it (same picture and seed: the same take; another picture: another)."""
    inputs = list(SPACE_PRESETS["ltx-video"].call.inputs)
    inputs[3] = 2  # steps: the tiny model needs no more
    config = GradioSpacePool(
        kind="gradio",
        family="text_to_video",
        preset="ltx-video",
        spaces=[model_spaces["text_to_video"]],
        inputs=inputs,
    )
    black = picture(tmp_path / "black.png", "color")  # black
    bars = picture(tmp_path / "bars.png", "testsrc2")
    with SpaceConnections() as connections:
        backend = SpaceTextToVideo(SpacePool("ltx-video", config, None, connections))

        def take(name, first_frame):
            request = TakeRequest(prompt="the llama", seed=5, seconds=1.0, first_frame=first_frame)
            call = backend.render(request, tmp_path / name)
            return call, decode_rgb_frames(tmp_path / name, 512, 288).astype(int)

        from_black, black_frames = take("black.mp4", black)
        _, black_again = take("black-again.mp4", black)
        _, bars_frames = take("bars.mp4", bars)
        alone, _ = take("alone.mp4", None)
    assert from_black.details["image_conditioned"] is True
    assert alone.details["image_conditioned"] is False
    assert np.array_equal(black_frames, black_again)
    assert np.abs(black_frames[0] - bars_frames[0]).mean() > 1.0
