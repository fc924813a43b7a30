"""The remote path against real local Gradio servers: full clip, failover, all replicas down."""

import json
import textwrap

import dagster as dg
import pytest

from webtv_dagster import clips
from webtv_dagster.backends import space_pool
from webtv_dagster.backends.registry import OfflineSettings, build_backends
from webtv_dagster.backends.space_pool import SpaceConnections, SpacePool, SpacesUnavailable
from webtv_dagster.backends.text_to_video import SpaceTextToVideo, TakeRequest
from webtv_dagster.channels import StageBackends
from webtv_dagster.clips import ClipId
from webtv_dagster.defs.clip_production.assets import (
    broadcast_clip,
    interpolated_clip,
    music_track,
    raw_take,
    shot_prompt,
    upscaled_take,
)
from webtv_dagster.media.ffmpeg import probe
from webtv_dagster.model_endpoints import GradioSpacePool
from webtv_dagster.spaces.apps import FAMILIES, HOSTILE_ANSWERS, Behaviour, Workshop, launch

from .conftest import clip_resources, free_port_block, latest_metadata
from .fake_llm import FakeLLM
from .test_llm_prompt_writer import GOOD

CLIP_ASSETS = [shot_prompt, raw_take, upscaled_take, interpolated_clip, music_track, broadcast_clip]


@pytest.fixture(scope="module")
def local_spaces():
    """One good replica per family, plus a failing and a hanging text-to-video replica."""
    workshop = Workshop()
    port = free_port_block(8)
    launched = {}
    for offset, (name, family, behaviour) in enumerate(
        [(family, family, Behaviour()) for family in FAMILIES]
        + [
            ("failing", "text_to_video", Behaviour(fail=True)),
            ("hanging", "text_to_video", Behaviour(hang_seconds=8)),
        ]
    ):
        launched[name] = launch(family, port + offset, behaviour, workshop)
    yield {name: space.url for name, space in launched.items()}
    for space in launched.values():
        space.app.close()


@pytest.fixture
def llm():
    server = FakeLLM(json.dumps({"prompts": GOOD}))
    yield server
    server.close()


@pytest.fixture
def connections():
    with SpaceConnections() as connections:
        yield connections


def pool(spaces, connections, **settings):
    config = GradioSpacePool(kind="gradio", family="text_to_video", spaces=spaces, **settings)
    return SpacePool("t2v", config, None, connections)


VALUES = {"prompt": GOOD[0], "seed": 3, "frames": 16, "fps": 8}


def test_a_call_fails_over_past_failing_and_hanging_replicas(
    local_spaces, connections, monkeypatch
):
    monkeypatch.setattr(space_pool.random, "randrange", lambda n: 0)  # start at the first
    spaces = [local_spaces["failing"], local_spaces["hanging"], local_spaces["text_to_video"]]
    path, call = pool(spaces, connections, timeout_seconds=3, rounds=1).call(VALUES)
    assert (call.endpoint, call.attempts) == (local_spaces["text_to_video"], 3)
    assert probe(path).video.frames == 16


def test_all_replicas_down_is_a_clear_error_after_backoff(local_spaces, connections):
    dead = f"http://127.0.0.1:{free_port_block(1)}"
    waits = []
    config = GradioSpacePool(
        kind="gradio",
        family="text_to_video",
        spaces=[dead, local_spaces["failing"]],
        rounds=2,
        backoff_seconds=0.5,
    )
    with pytest.raises(SpacesUnavailable) as error:
        SpacePool("t2v", config, None, connections, sleep=waits.append).call(VALUES)
    message = str(error.value)
    assert "pool 't2v': every Space failed 2 time(s) (4 attempts)" in message
    assert dead in message and local_spaces["failing"] in message
    assert "out of order" in message
    assert len(waits) == 1 and 0.5 <= waits[0] <= 0.75


def channels_file(tmp_path, llm, local_spaces, upscaler_spaces=None):
    path = tmp_path / "channels.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            models:
              writer: {{kind: openai, base_url: "{llm.base_url}", model: fake, batch_size: 3}}
              zeroscope:
                kind: gradio
                family: text_to_video
                spaces: ["{local_spaces["failing"]}", "{local_spaces["text_to_video"]}"]
              zeroscope-xl:
                kind: gradio
                family: upscaler
                spaces: {json.dumps(upscaler_spaces or [local_spaces["upscaler"]])}
                rounds: 2
                backoff_seconds: 0.1
              film:
                {{kind: gradio, family: interpolator, spaces: ["{local_spaces["interpolator"]}"]}}
              musicgen: {{kind: gradio, family: music, spaces: ["{local_spaces["music"]}"]}}
            channels:
              - slug: test-remote
                title: Remote Test
                theme: llamas doing human jobs
                style: Pixar style 3D animation
                recurring_details: [a fluffy cream-coloured llama with a red knitted scarf]
                clip_seconds: 2.6666667
                backends:
                  prompt_writer: writer
                  text_to_video: zeroscope
                  upscaler: zeroscope-xl
                  interpolator: film
                  music: musicgen
            """
        )
    )
    return path


def make_clip(instance, key, channels_path, seaweedfs, media_store):
    """Materializes every clip asset of `key` through the channels file's models."""
    instance.add_dynamic_partitions("clips", [key])
    result = dg.materialize(
        CLIP_ASSETS,
        partition_key=key,
        instance=instance,
        resources=clip_resources(seaweedfs, media_store.bucket, channels_path),
    )
    assert result.success
    return result


def test_a_clip_through_the_llm_and_all_four_spaces(
    tmp_path, llm, local_spaces, seaweedfs, media_store
):
    key = "test-remote-000001"
    path = channels_file(tmp_path, llm, local_spaces)
    with dg.instance_for_test() as instance:
        make_clip(instance, key, path, seaweedfs, media_store)
        prompt = latest_metadata(instance, shot_prompt, key)
        assert (prompt["backend"], prompt["endpoint"]) == ("openai", f"{llm.base_url} (fake)")
        take = latest_metadata(instance, raw_take, key)
        assert (take["backend"], take["endpoint"]) == ("zeroscope", local_spaces["text_to_video"])
        assert take["attempts"] in (1, 2)
        assert take["resolution"] == "576x320"
        assert latest_metadata(instance, upscaled_take, key)["endpoint"] == local_spaces["upscaler"]
        interpolated = latest_metadata(instance, interpolated_clip, key)
        assert interpolated["endpoint"] == local_spaces["interpolator"]
        assert (interpolated["frames"], interpolated["fps"]) == (64, 24)
        assert latest_metadata(instance, music_track, key)["endpoint"] == local_spaces["music"]
    final = media_store.download_file(
        ClipId.parse(key).object_key(clips.BROADCAST_CLIP), tmp_path / "final.mp4"
    )
    info = probe(final)
    assert (info.video.width, info.video.height, info.video.frames) == (1024, 576, 64)
    assert info.audio.duration == pytest.approx(64 / 24, abs=1e-3)


def test_all_upscalers_down_fails_the_clip_and_keeps_its_take(
    tmp_path, llm, local_spaces, seaweedfs, media_store
):
    key = "test-remote-000002"
    dead = [f"http://127.0.0.1:{free_port_block(1)}"]
    path = channels_file(tmp_path, llm, local_spaces, upscaler_spaces=dead)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("clips", [key])
        result = dg.materialize(
            CLIP_ASSETS,
            partition_key=key,
            instance=instance,
            raise_on_error=False,
            resources=clip_resources(seaweedfs, media_store.bucket, path),
        )
    assert not result.success
    failure = result.get_step_failure_events()[0]
    assert failure.step_key == "upscaled_take"
    description = failure.step_failure_data.user_failure_data.description
    assert key in description and "upscaler pool 'zeroscope-xl': every Space failed" in description
    raw = media_store.download_file(ClipId.parse(key).object_key(clips.RAW_TAKE), tmp_path / "r")
    assert probe(raw).video.frames == 24


def test_concurrent_calls_spread_over_the_replicas(local_spaces, connections, monkeypatch):
    """Pools that share their owner's connections (the clips of one step) spread their calls."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(space_pool.random, "randrange", lambda n: 0)  # all start at the first
    workshop = Workshop()
    port = free_port_block(2)
    slow = [launch("text_to_video", port + i, Behaviour(delay_seconds=2), workshop) for i in (0, 1)]
    urls = [space.url for space in slow]
    try:
        with ThreadPoolExecutor(max_workers=2) as threads:
            calls = list(
                threads.map(
                    lambda _: pool(urls, connections, max_concurrent_calls=2).call(VALUES)[1],
                    [0, 1],
                )
            )
    finally:
        for space in slow:
            space.app.close()
    assert sorted(call.endpoint for call in calls) == sorted(urls)


def test_backends_share_one_owner_of_connections_and_close_its_clients(
    local_spaces, monkeypatch, tmp_path
):
    """The Space pools of one build share their connections (bounds, busy counts, clients);
    another build has its own; closing the backends closes the clients they opened."""
    closed = []
    close = space_pool.Client.close
    monkeypatch.setattr(space_pool.Client, "close", lambda c: (closed.append(c.src), close(c)))
    models = {
        "zeroscope": GradioSpacePool(
            kind="gradio", family="text_to_video", spaces=[local_spaces["text_to_video"]]
        ),
        "musicgen": GradioSpacePool(kind="gradio", family="music", spaces=[local_spaces["music"]]),
    }
    choice = StageBackends(text_to_video="zeroscope", music="musicgen")
    with build_backends(choice, models, OfflineSettings()) as backends:
        shared = {backends.text_to_video.pool.connections, backends.music.pool.connections}
        assert shared == {backends.connections}
        other = build_backends(choice, models, OfflineSettings())
        assert other.connections is not backends.connections
        backends.text_to_video.render(
            TakeRequest(prompt=GOOD[0], seed=3, frames=16), tmp_path / "take.mp4"
        )
        assert closed == []
    assert [url.rstrip("/") for url in closed] == [local_spaces["text_to_video"].rstrip("/")]


SECRET = "sekrit-in-url"


def with_credentials(url: str) -> str:
    return url.replace("http://", f"http://webtv:{SECRET}@", 1)


def test_credentials_in_endpoint_urls_are_never_recorded(
    tmp_path, llm, local_spaces, seaweedfs, media_store, capfd
):
    # Every model's URL carries a user and password; the clip is made through all of them.
    key = "test-remote-000001"
    llm.base_url = with_credentials(llm.base_url)
    spaces = {family: with_credentials(url) for family, url in local_spaces.items()}
    path = channels_file(tmp_path, llm, spaces)
    with dg.instance_for_test() as instance:
        result = make_clip(instance, key, path, seaweedfs, media_store)
        take = latest_metadata(instance, raw_take, key)
        masked = local_spaces["text_to_video"].replace("http://", "http://***@")
        assert take["endpoint"] == masked
        events = json.dumps([str(entry) for entry in instance.all_logs(result.run_id)])
    assert SECRET not in events
    stored = [
        media_store.get_bytes(listed.key)
        for listed in media_store.list_objects("channels/test-remote/")
        if listed.key.endswith(".json")
    ]
    assert stored and all(SECRET.encode() not in data for data in stored)
    assert SECRET not in "".join(capfd.readouterr())


def test_urls_lose_their_secrets_and_keep_the_rest():
    from webtv_dagster.secrets import mask_text, mask_url, url_secrets

    url = "https://user:pa55@api.example.com:8443/v1/chat?model=x&api_key=abc123&sig=zz#frag"
    assert mask_url(url) == "https://***@api.example.com:8443/v1/chat?model=x&api_key=***&sig=***"
    assert mask_url(url, keep_path=False) == "https://***@api.example.com:8443/<secret path>"
    assert mask_url("http://127.0.0.1:7860/") == "http://127.0.0.1:7860/"
    assert mask_url("http://[::1]:99999/") == "***"  # unreadable port: nothing shown
    assert sorted(url_secrets(url)) == ["abc123", "pa55", "user", "zz"]
    assert mask_text(f"could not reach {url}", url_secrets(url)).count("***") == 4


@pytest.fixture(scope="module")
def hostile_spaces():
    """A text-to-video replica per hostile answer (spaces.apps.HOSTILE_ANSWERS)."""
    workshop = Workshop()
    port = free_port_block(len(HOSTILE_ANSWERS))
    launched = {
        kind: launch("text_to_video", port + offset, Behaviour(answer=kind), workshop)
        for offset, kind in enumerate(HOSTILE_ANSWERS)
    }
    yield {kind: space.url for kind, space in launched.items()}
    for space in launched.values():
        space.app.close()


def test_answers_out_of_bounds_fail_over_to_the_next_replica(
    hostile_spaces, local_spaces, connections, monkeypatch, tmp_path
):
    """Each hostile answer is refused before any stage decodes it, for a stated reason, and
    the take comes from the next replica; nothing refused is left on disk."""
    monkeypatch.setattr(space_pool.random, "randrange", lambda n: 0)  # start at the first
    request = TakeRequest(prompt=GOOD[0], seed=3, frames=16)
    downloads = set(space_pool.DOWNLOADS.glob("*"))
    hostile = list(hostile_spaces.values())
    backend = SpaceTextToVideo(
        pool([*hostile, local_spaces["text_to_video"]], connections, rounds=1, max_answer_mb=6)
    )
    call = backend.render(request, tmp_path / "take.mp4")
    assert (call.endpoint, call.attempts) == (local_spaces["text_to_video"], len(hostile) + 1)
    take = probe(tmp_path / "take.mp4").video
    assert (take.width, take.height, take.frames) == (576, 320, 16)

    with pytest.raises(SpacesUnavailable) as error:
        SpaceTextToVideo(pool(hostile, connections, rounds=1, max_answer_mb=6)).render(
            request, tmp_path / "never.mp4"
        )
    reasons = str(error.value)
    for kind, reason in {
        "two-hour video": "7200.0 s of video; at most 16.0 s accepted",
        "still image": "a still",
        "giant picture": "8192x64 pictures; at most 4096x4096 accepted",
        "no video": "no video stream",
        "not media": "not a media file ffprobe can read",
    }.items():
        assert f"{hostile_spaces[kind]}: " in reasons
        assert reason in reasons.split(f"{hostile_spaces[kind]}: ")[1].split("; http")[0], kind
    with pytest.raises(SpacesUnavailable, match="the answer's file is over 0.01 MB"):
        tiny = pool([local_spaces["text_to_video"]], connections, rounds=1, max_answer_mb=0.01)
        SpaceTextToVideo(tiny).render(request, tmp_path / "never.mp4")
    assert set(space_pool.DOWNLOADS.glob("*")) <= downloads
    assert not (tmp_path / "never.mp4").exists()


def test_a_compressed_answer_is_refused_before_it_is_inflated(tmp_path):
    """A few hundred compressed bytes can inflate to gigabytes past any size check made after
    decompression: the file must come as it is, or not at all."""
    import gzip
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from types import SimpleNamespace

    bomb = gzip.compress(bytes(50_000_000))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            self.wfile.write(bomb)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        origin = f"http://127.0.0.1:{server.server_port}/"
        client = SimpleNamespace(src=origin, headers={})
        with pytest.raises(space_pool.SpaceOutputError, match="came compressed"):
            space_pool.download_answer(client, origin + "file=take.mp4", 1_000_000, 10)
        # And from another server, nothing is fetched at all.
        with pytest.raises(space_pool.SpaceOutputError, match="not on the Space's own server"):
            space_pool.download_answer(client, "http://127.0.0.2:9/take.mp4", 1_000_000, 10)
    finally:
        server.shutdown()
        server.server_close()
