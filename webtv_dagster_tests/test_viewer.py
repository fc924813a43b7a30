"""The web viewer in headless Chromium (Debian's, driven by Playwright): it plays each channel
live, and the prompt it shows belongs to the clip in the picture."""

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from webtv_dagster.audience.watching import WatchingCount
from webtv_dagster.playout.as_run import AsRunLog
from webtv_dagster.playout.channel import ChannelPlayout, read_state
from webtv_dagster.playout.state import PlayoutFolder
from webtv_dagster.public_site import rtmp_statistics_url
from webtv_dagster.stack.programs import playout_program

from .air_monitor import AirMonitor
from .conftest import CLIP_COLOURS, upload_playlist, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
RGB = {"red": (255, 0, 0), "lime": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
SAMPLE = """() => {
    const video = document.getElementById("video");
    const canvas = document.createElement("canvas");
    canvas.width = 16; canvas.height = 9;
    const context = canvas.getContext("2d");
    context.drawImage(video, 0, 0, 16, 9);
    const prompt = document.getElementById("on-air-prompt");
    return {
        rgb: Array.from(context.getImageData(8, 4, 1, 1).data.slice(0, 3)),
        position: window.webtvViewer.position(),
        clipId: prompt.dataset.clipId || null,
        prompt: prompt.textContent,
        currentTime: video.currentTime,
        player: window.webtvViewer.player,
        title: document.getElementById("channel-title").textContent,
        guide: Array.from(document.querySelectorAll("#guide li")).map((li) => li.dataset.clipId),
    };
}"""


def colour_of(rgb) -> str:
    return min(RGB, key=lambda name: sum((a - b) ** 2 for a, b in zip(RGB[name], rgb, strict=True)))


@pytest.fixture
def channels_on_air(rtmp_server, media_store, channels, broadcast_clips, tmp_path):
    """Both test channels on air, clip N of each in colour CLIP_COLOURS[N % 4]."""
    data_dir = tmp_path / "data"
    playouts = []
    for channel in channels.channels:
        upload_playlist(media_store, channel, {n: broadcast_clips[n % 4] for n in range(1, 13)})
        url = rtmp_server.publish_url(channel.slug)
        playouts.append(ChannelPlayout(media_store, channel, url, data_dir, 2**28))
    threads = [threading.Thread(target=playout.run) for playout in playouts]
    for thread in threads:
        thread.start()
    yield data_dir
    for playout in playouts:
        playout.stop.set()
    for thread in threads:
        thread.join(timeout=60)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is required for the viewer tests: run scripts/test")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def open_viewer(browser, rtmp_server, query: str, slug: str):
    page = browser.new_page()
    page.goto(f"http://127.0.0.1:{rtmp_server.http_port}/{query}#{slug}")
    wait_for(lambda: page.evaluate(SAMPLE)["currentTime"] > 1, 90, "the video playing")
    return page


def clip_colour(clip_id: str) -> str:
    return CLIP_COLOURS[int(clip_id.rsplit("-", 1)[1]) % 4]


def samples(page, count: int) -> list[dict]:
    taken = []
    for _ in range(count):
        taken.append(page.evaluate(SAMPLE))
        time.sleep(0.4)
    return taken


def test_the_prompt_on_screen_belongs_to_the_clip_in_the_picture(
    browser, rtmp_server, channels_on_air
):
    # The viewer service's count of who watches (`webtv viewer-service` runs it).
    slugs = ["test-llamas", "test-ocean"]
    statistics = rtmp_statistics_url(rtmp_server.http_port)
    watching = WatchingCount(channels_on_air, slugs, statistics).start()
    try:
        watched_and_counted(browser, rtmp_server, channels_on_air)
    finally:
        watching.close()


def watched_and_counted(browser, rtmp_server, channels_on_air) -> None:
    page = open_viewer(browser, rtmp_server, "", "test-llamas")
    taken = samples(page, 25)
    assert {s["player"] for s in taken} == {"hls.js"}
    assert taken[-1]["currentTime"] - taken[0]["currentTime"] > 5  # live, not stalled
    state = read_state(channels_on_air, "test-llamas")
    scheduled = {clip.clip_id: clip for clip in state.schedule}
    checked = 0
    for sample in taken:
        clip = scheduled.get(sample["clipId"])
        assert clip is not None, f"the viewer shows {sample['clipId']}, not on the schedule"
        assert sample["prompt"] == clip.prompt
        into = sample["position"] - clip.stream_seconds
        if 0.1 < into < clip.duration_seconds - 0.1:  # clear of a cut: the frame must agree
            assert colour_of(sample["rgb"]) == clip_colour(clip.clip_id), sample
            checked += 1
    assert checked >= 15
    # The guide lists what follows the clip on screen, in order.
    guide = taken[-1]["guide"]
    assert guide and guide == sorted(guide) and guide[0] > taken[-1]["clipId"]
    # The page says who watches: itself, an HLS player; an RTMP subscriber counts too.
    wait_for(lambda: page.inner_text("#watching") == "1 watching", 30, "1 watching")
    with AirMonitor(rtmp_server.publish_url("test-llamas")) as subscriber:
        subscriber.wait_for_frames(24)
        wait_for(lambda: page.inner_text("#watching") == "2 watching", 30, "2 watching")
        # Each clip that ends now says so in the as-run log.
        as_run = AsRunLog(PlayoutFolder.of(channels_on_air, "test-llamas").as_run, 31)
        wait_for(
            lambda: any(e.viewers == 2 for e in as_run.entries(as_run.days()[-1])),
            30,
            "a clip's end watched by 2 in the as-run log",
        )

    page.click("text=Deep Blue Test")
    wait_for(
        lambda: (page.evaluate(SAMPLE)["clipId"] or "").startswith("test-ocean"),
        60,
        "the ocean channel's prompt",
    )
    ocean = samples(page, 5)
    assert {s["title"] for s in ocean} == {"Deep Blue Test"}
    assert ocean[-1]["currentTime"] > ocean[0]["currentTime"]
    assert page.url.endswith("#test-ocean")


def test_native_hls_plays_and_shows_a_scheduled_prompt(browser, rtmp_server, channels_on_air):
    page = open_viewer(browser, rtmp_server, "?player=native", "test-llamas")
    first, *_, last = samples(page, 8)
    assert first["player"] == last["player"] == "native"
    assert last["currentTime"] - first["currentTime"] > 2
    state = read_state(channels_on_air, "test-llamas")
    prompts = {clip.clip_id: clip.prompt for clip in state.schedule}
    assert last["clipId"] in prompts and last["prompt"] == prompts[last["clipId"]]


def test_a_viewer_watching_through_a_publisher_and_a_server_death_plays_on(
    browser, tmp_path, broadcast_clips, llama_channel
):
    """On the supervised stack: the publisher killed, then every nginx process. Each time the
    page (never reloaded) plays again within 10 s, its prompt still matching the picture."""
    import subprocess

    from .test_stack import TEST_CHANNELS, supervised_stack

    with supervised_stack(tmp_path, TEST_CHANNELS) as stack:
        clips = {n: broadcast_clips[n % 4] for n in range(1, 13)}
        upload_playlist(stack.store, llama_channel, clips)
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{stack.http_port}/#test-llamas")
        wait_for(lambda: page.evaluate(SAMPLE)["currentTime"] > 3, 90, "the video playing")
        stalls: dict[str, float] = {}
        for fault in ("publisher", "rtmp server"):
            playout = stack.pids()[playout_program("test-llamas")]
            if fault == "publisher":
                kill = ["pkill", "-9", "-P", str(playout), "-f", "ffmpeg .*-re "]
            else:
                kill = ["pkill", "-9", "-g", str(stack.pids()["rtmp"])]
            subprocess.run(kill, check=True)
            # For 30 s, the longest time in which the picture did not move.
            last_move, played, longest_stall = time.monotonic(), [], 0.0
            while time.monotonic() - last_move < 12 and len(played) < 120:
                played.append(page.evaluate("document.getElementById('video').currentTime"))
                if len(played) > 1 and played[-1] > played[-2]:
                    longest_stall = max(longest_stall, time.monotonic() - last_move)
                    last_move = time.monotonic()
                time.sleep(0.25)
            assert longest_stall <= 10, f"{fault}: the picture stood still {longest_stall:.1f} s"
            assert played[-1] - played[0] > 20, f"{fault}: it did not play on"
            stalls[fault] = longest_stall
            after = samples(page, 10)
            assert after[-1]["currentTime"] > after[0]["currentTime"], fault
            state = read_state(stack.data_dir, "test-llamas")
            scheduled = {clip.clip_id: clip for clip in state.schedule}
            agreeing = 0
            for sample in after:
                clip = scheduled.get(sample["clipId"])
                assert clip is not None and sample["prompt"] == clip.prompt, (fault, sample)
                into = sample["position"] - clip.stream_seconds
                if 0.1 < into < clip.duration_seconds - 0.1:
                    assert colour_of(sample["rgb"]) == clip_colour(clip.clip_id), (fault, sample)
                    agreeing += 1
            assert agreeing >= 5, fault
        page.close()
    print(f"longest time the picture stood still after each fault: {stalls}")


@contextmanager
def requests_channel_on_air(rtmp_server, media_store, broadcast_clips, tmp_path, clips: int):
    """The test channel taking requests (auto approval, every clip a request slot), on air with
    `clips` clips behind the real viewer service; yields (channel, channels file, data dir)."""
    from webtv_dagster.channels import load_channels

    from .test_viewer_service import ViewerServiceProcess, requests_channels_file

    data_dir = rtmp_server.root.parent / "data"
    channels_file = requests_channels_file(tmp_path / "channels.yaml")
    channel = load_channels(channels_file).channels[0]
    upload_playlist(media_store, channel, {n: broadcast_clips[n % 4] for n in range(1, clips + 1)})
    service = ViewerServiceProcess(data_dir, channels_file, media_store).start()
    playout = ChannelPlayout(
        media_store, channel, rtmp_server.publish_url(channel.slug), data_dir, 2**28
    )
    thread = threading.Thread(target=playout.run)
    thread.start()
    try:
        yield channel, channels_file, data_dir
    finally:
        playout.shutdown()
        thread.join(timeout=30)
        service.stop()


def test_a_shot_requested_in_the_viewer_airs_with_its_credit(
    browser, rtmp_server, media_store, seaweedfs, broadcast_clips, instance, tmp_path
):
    """A viewer suggests a shot in Chromium; the request is queued (auto approval), made into a
    clip by the real assets, aired, and the viewer says who asked for it while it airs."""
    import dagster as dg

    from webtv_dagster.backends.moderator import MAX_IDEA_CHARACTERS
    from webtv_dagster.defs.clip_production.assets import CLIP_STAGES
    from webtv_dagster.playout.playlist import Playlist, build_playlist, publish_playlist
    from webtv_dagster.production.shot_requests import MAX_NAME_CHARACTERS

    from .conftest import clip_resources, studio_for_tests

    with requests_channel_on_air(rtmp_server, media_store, broadcast_clips, tmp_path, 8) as (
        channel,
        channels_file,
        data_dir,
    ):
        page = open_viewer(browser, rtmp_server, "", channel.slug)
        wait_for(lambda: page.is_visible("#suggest"), 20, "the suggest box")
        # The box takes what the service takes, counted in characters (maxlength counts UTF-16
        # units: 100 emoji filled a box of 200 where the service takes 200 characters).
        page.type("#idea", "\U0001f999" * 150 + "x" * 60)
        typed = page.evaluate("[...document.getElementById('idea').value].length")
        assert typed == MAX_IDEA_CHARACTERS, typed
        most = page.get_attribute("#requester", "data-max-characters")
        assert int(most) == MAX_NAME_CHARACTERS
        page.fill("#idea", "the llama conducting a choir of geese")
        page.fill("#requester", "Zoë")
        page.click("#suggest-form button")
        wait_for(lambda: "in the queue" in page.inner_text("#suggest-answer"), 20, "the answer")
        wait_for(lambda: "choir of geese" in page.inner_text("#requests"), 20, "the request listed")
        # A 200-letter word where viewers' words are shown does not widen the page.
        width = page.evaluate("document.documentElement.scrollWidth")
        page.evaluate(
            """word => {
              for (const where of ["#requests", "#guide"]) {
                const item = document.createElement("li");
                item.textContent = word;
                document.querySelector(where).append(item);
              }
              document.querySelector(".prompt").textContent = word;
            }""",
            "w" * 200,
        )
        assert page.evaluate("document.documentElement.scrollWidth") <= max(
            width, page.evaluate("window.innerWidth")
        )

        # The pipeline makes the next clip of the channel: a request slot (share 1.0).
        resources = clip_resources(seaweedfs, media_store.bucket, channels_file)
        resources["studio"] = studio_for_tests(channels_file=channels_file, data_dir=data_dir)
        key = f"{channel.slug}-000009"
        instance.add_dynamic_partitions("clips", [key])
        made = dg.materialize(
            CLIP_STAGES, partition_key=key, instance=instance, resources=resources
        )
        assert made.success
        (entry,) = build_playlist(media_store, channel, range(9, 10)).entries
        assert entry.requested_by == "Zoë"
        listed = media_store.get_json(f"channels/{channel.slug}/playlist.json")
        current = Playlist.model_validate(listed)
        publish_playlist(
            media_store, current.model_copy(update={"entries": [*current.entries, entry]})
        )

        def credit_on_screen():
            sample = page.evaluate(SAMPLE)
            credit = page.inner_text("#credit") if page.is_visible("#credit") else ""
            return sample["clipId"] == key and "Requested by Zoë" in credit and sample

        sample = wait_for(credit_on_screen, 90, "the requested clip on air with its credit")
        assert "choir of geese" in sample["prompt"]
        # Before and after it, no credit: a clip nobody requested names nobody.
        wait_for(lambda: page.evaluate(SAMPLE)["clipId"] != key, 30, "the next clip")
        assert not page.is_visible("#credit")


def test_the_operators_dump_button_cuts_the_clip_on_screen(
    browser, rtmp_server, media_store, broadcast_clips, tmp_path
):
    """With ?operator, the viewer shows a dump button; one click (token and reason asked in
    dialogs) takes the clip on screen off air, and the playout cuts it."""
    from webtv_dagster.playout.takedowns import read_takedowns

    from .test_viewer_service import OPERATOR_TOKEN

    with requests_channel_on_air(rtmp_server, media_store, broadcast_clips, tmp_path, 12) as (
        channel,
        _,
        data_dir,
    ):
        plain = open_viewer(browser, rtmp_server, "", channel.slug)
        assert not plain.is_visible("#dump")  # viewers have no dump button
        page = open_viewer(browser, rtmp_server, "?operator", channel.slug)
        answers = iter([OPERATOR_TOKEN, "offensive picture"])
        page.on("dialog", lambda dialog: dialog.accept(next(answers)))
        wait_for(lambda: page.is_visible("#dump"), 20, "the dump button")
        on_screen = page.evaluate(SAMPLE)["clipId"]
        page.click("#dump")
        wait_for(lambda: "taken off air" in page.inner_text("#operator-status"), 20, "the answer")
        takedown = read_takedowns(media_store, channel.slug).clips[on_screen]
        assert takedown.reason == "dumped from the viewer: offensive picture"

        # HLS shows the air seconds late: the clip on screen may have left the air already.
        # If it was still on air, the playout cut it; it never airs again either way.
        time.sleep(6)
        state = read_state(data_dir, channel.slug)
        entries = [c for c in state.schedule if c.clip_id == on_screen]
        cut = [s for s in state.skipped if s.clip_id == on_screen and s.taken_down]
        if entries and entries[-1].starts_at + 64 / 24 > takedown.taken_down_at + 1.5:
            assert cut and "offensive picture" in cut[0].reason, (entries, state.skipped)
        assert all(c.starts_at < takedown.taken_down_at for c in entries)


def test_the_stream_plays_through_its_timestamp_wrap(
    browser, rtmp_server, media_store, llama_channel, broadcast_clips, tmp_path
):
    """The channel's timeline 40 s before its timestamps restart from 0 (FLV_FOLD_SECONDS,
    24.30 days: FFmpeg's FLV timestamps, 31 bits of milliseconds, would wrap by themselves at
    24.86 days), as a playout resumes it from its state: an RTMP subscriber and the viewer page
    (hls.js in Chromium) play through it with no freeze and no reconnect, and past it the
    prompt on screen still belongs to the clip in the picture."""
    from webtv_dagster.playout.publisher import FLV_FOLD_SECONDS
    from webtv_dagster.playout.state import PlayoutFolder, PlayoutState, ScheduledClip, write_state

    from .air_monitor import FRAME_MS, AirMonitor

    slug, fold, clip_seconds = llama_channel.slug, FLV_FOLD_SECONDS, 64 / 24
    data_dir = tmp_path / "data"
    upload_playlist(media_store, llama_channel, {n: broadcast_clips[n % 4] for n in range(1, 41)})
    before = ScheduledClip(
        clip_id=f"{slug}-000040",
        prompt="the clip before the restart",
        duration_seconds=clip_seconds,
        starts_at=time.time() - 60,
        stream_seconds=fold - 40 - clip_seconds,
    )
    PlayoutFolder.of(data_dir, slug).path.mkdir(parents=True)
    write_state(
        data_dir,
        PlayoutState(
            channel=slug,
            title=llama_channel.title,
            publisher_started_at=0.0,
            updated_at=time.time(),
            unplayed_seconds=0.0,
            schedule=[before],
            up_next=[],
        ),
    )
    playout = ChannelPlayout(
        media_store, llama_channel, rtmp_server.publish_url(slug), data_dir, 2**28
    )
    thread = threading.Thread(target=playout.run)
    with AirMonitor(rtmp_server.publish_url(slug)) as subscriber:
        thread.start()
        try:
            subscriber.wait_for_frames(24, timeout=60)
            page = open_viewer(browser, rtmp_server, "", slug)
            # Until the page has played 25 s past the fold: its playhead, every 0.4 s.
            taken, longest_stall, last_move = [], 0.0, time.monotonic()
            scheduled = {}  # every clip the state listed meanwhile (it keeps the last ten)
            while not taken or (taken[-1]["position"] or 0) < fold + 25:
                taken.append(page.evaluate(SAMPLE))
                scheduled |= {c.clip_id: c for c in read_state(data_dir, slug).schedule}
                if len(taken) > 1 and taken[-1]["currentTime"] > taken[-2]["currentTime"]:
                    longest_stall = max(longest_stall, time.monotonic() - last_move)
                    last_move = time.monotonic()
                stalled = [(t["currentTime"], t["position"]) for t in taken[-5:]]
                assert time.monotonic() - last_move < 10, f"the page's video stopped: {stalled}"
                assert len(taken) < 400, f"the page never played past the fold: {taken[-1]}"
                time.sleep(0.4)
            page.close()
        finally:
            playout.shutdown()
            thread.join(timeout=30)
    # The subscriber: one connection, never long without a frame, and one step at the fold:
    # back by the fold, a frame on (its FLV reader takes it for a 32-bit wrap and adds 2**32).
    frames = subscriber.video()
    off_air = subscriber.longest_gap(frames[0].wall, frames[-1].wall)
    (step,) = subscriber.steps_over_one_frame()
    print(f"off air {off_air:.2f} s, the page stood still {longest_stall:.2f} s, step {step}")
    assert subscriber.connections == 1
    # Under load a publisher may stall and be replaced (1.5 s without output): about 2 s.
    assert off_air < 3.0
    assert abs((step + round(fold * 1000)) % 2**32 - FRAME_MS) <= 2, step
    # The page: it played on (the same bound as the subscriber's, plus one sample's 0.4 s), and
    # past the fold each prompt belongs to the picture.
    assert longest_stall < 3.4, f"the picture stood still {longest_stall:.1f} s"
    checked = 0
    for sample in taken:
        if sample["position"] is None or sample["position"] < fold + 1:
            continue
        clip = scheduled.get(sample["clipId"])
        assert clip is not None and sample["prompt"] == clip.prompt, sample
        into = sample["position"] - clip.stream_seconds
        if 0.1 < into < clip.duration_seconds - 0.1:
            assert colour_of(sample["rgb"]) == clip_colour(clip.clip_id), sample
            checked += 1
    assert checked >= 20
