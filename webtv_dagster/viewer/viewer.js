// The channel viewer: plays a channel's HLS stream and shows the prompt of the clip on screen
// with what comes next, from the playout's state (/state/<slug>.json).
//
// Which clip is on screen is worked out on the stream's own timeline: with hls.js, each HLS
// fragment is named by its stream timestamp (nginx `hls_fragment_naming timestamp`), so the
// playhead's stream position is exact. Native HLS players (Safari, iOS) do not say which
// fragment plays; there the position is estimated from the wall clock and the live latency.
"use strict";

const FRAGMENT_SECONDS = 2; // hls_fragment in the nginx configuration
const STATE_POLL_MS = 1000;
const RETRY_MS = 3000;

const video = document.getElementById("video");
const promptBox = document.getElementById("on-air-prompt");
const guide = document.getElementById("guide");
const statusLine = document.getElementById("player-status");
const forcedPlayer = new URLSearchParams(location.search).get("player"); // "hls.js" | "native"

const viewer = {
  slug: null,
  player: null, // "hls.js" or "native"
  hls: null,
  fragment: null, // {streamSeconds, mediaSeconds} of the fragment under the playhead (hls.js)
  state: null,
  onAir: null, // the schedule entry whose prompt is on screen
  // The playhead's position on the stream's timeline, in seconds, or null before playback.
  position() {
    if (!this.state || video.readyState < 2) return null;
    if (this.player === "hls.js") {
      if (!this.fragment) return null;
      return this.fragment.streamSeconds + (video.currentTime - this.fragment.mediaSeconds);
    }
    const seekable = video.seekable;
    const latency = seekable.length ? seekable.end(seekable.length - 1) - video.currentTime : 0;
    // The newest listed fragment ended, on average, half a fragment ago.
    const shownAt = Date.now() / 1000 - latency - FRAGMENT_SECONDS / 2;
    return shownAt - this.state.publisher_started_at;
  },
};
window.webtvViewer = viewer; // for the browser tests and the curious

function pickPlayer() {
  const hlsJs = window.Hls && window.Hls.isSupported();
  const native = video.canPlayType("application/vnd.apple.mpegurl") !== "";
  if (forcedPlayer === "native" && native) return "native";
  // hls.js wherever Media Source Extensions exist: it tells which fragment plays, so the
  // prompt on screen follows the picture to the frame. Native HLS otherwise.
  if (hlsJs) return "hls.js";
  return native ? "native" : null;
}

function streamTimestamp(url) {
  const match = /-(\d+)\.ts(\?|$)/.exec(url);
  return match ? Number(match[1]) / 90000 : null;
}

function stopPlayer() {
  if (viewer.hls) viewer.hls.destroy();
  viewer.hls = null;
  viewer.fragment = null;
  video.removeAttribute("src");
  video.load();
}

function startPlayer() {
  stopPlayer();
  const source = `/hls/${viewer.slug}/live.m3u8`;
  const slug = viewer.slug;
  const retry = () => setTimeout(() => viewer.slug === slug && startPlayer(), RETRY_MS);
  viewer.player = pickPlayer();
  if (viewer.player === "hls.js") {
    const hls = new window.Hls({ liveSyncDurationCount: 2 });
    hls.on(window.Hls.Events.FRAG_CHANGED, (_, data) => {
      const frag = data.frag;
      const streamSeconds = streamTimestamp(frag.relurl || frag.url);
      // The name is the timestamp of the fragment's first keyframe, which is where its video
      // starts (its audio starts a little earlier: frag.start is the earliest of the two).
      const video = frag.elementaryStreams && frag.elementaryStreams.video;
      const mediaSeconds = video && Number.isFinite(video.startPTS) ? video.startPTS : frag.start;
      if (streamSeconds !== null) viewer.fragment = { streamSeconds, mediaSeconds };
    });
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else {
        statusLine.textContent = "The channel is not on air yet; retrying…";
        retry();
      }
    });
    hls.loadSource(source);
    hls.attachMedia(video);
    viewer.hls = hls;
  } else if (viewer.player === "native") {
    video.src = source;
    video.onerror = () => {
      statusLine.textContent = "The channel is not on air yet; retrying…";
      retry();
    };
  } else {
    statusLine.textContent = "This browser cannot play HLS video.";
    return;
  }
  video.play().catch(() => {}); // muted autoplay; the controls remain if the browser refuses
}

function formatIn(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  return `in ${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

// The prompt of the clip under the playhead; called for every frame shown.
function showOnAir() {
  const position = viewer.position();
  if (position === null) return;
  const current = viewer.state.schedule.find(
    (clip) => clip.stream_seconds <= position && position < clip.stream_seconds + clip.duration_seconds,
  );
  const changed = !viewer.onAir || viewer.onAir.stream_seconds !== current?.stream_seconds;
  if (current && changed) {
    viewer.onAir = current;
    promptBox.textContent = current.prompt;
    promptBox.dataset.clipId = current.clip_id;
    statusLine.textContent = "";
    showGuide();
  }
}

function showGuide() {
  const state = viewer.state;
  if (!state) return;
  const position = viewer.position();
  const schedule = state.schedule;
  const now = position === null ? schedule.length && schedule[0].stream_seconds : position;
  const after = viewer.onAir ? viewer.onAir.stream_seconds : now;
  const upcoming = schedule
    .filter((clip) => clip.stream_seconds > after)
    .map((clip) => ({ ...clip, startsIn: clip.stream_seconds - now }));
  const last = schedule[schedule.length - 1];
  let next = last ? last.stream_seconds + last.duration_seconds : 0;
  for (const clip of state.up_next) {
    upcoming.push({ ...clip, startsIn: next - now });
    next += clip.duration_seconds;
  }
  document.getElementById("guide-empty").hidden = upcoming.length > 0;
  guide.replaceChildren(
    ...upcoming.map((clip) => {
      const item = document.createElement("li");
      const when = document.createElement("time");
      when.textContent = formatIn(clip.startsIn);
      item.append(when, clip.prompt);
      item.dataset.clipId = clip.clip_id;
      return item;
    }),
  );
}

async function pollState() {
  const slug = viewer.slug;
  try {
    const response = await fetch(`/state/${slug}.json`, { cache: "no-store" });
    if (slug !== viewer.slug) return;
    if (response.ok) {
      viewer.state = await response.json();
    } else {
      viewer.state = null;
      promptBox.textContent = "Waiting for the channel to go on air…";
      guide.replaceChildren();
    }
  } catch (error) {
    statusLine.textContent = "Cannot reach the server; retrying…";
  }
}

function tuneTo(channel) {
  viewer.slug = channel.slug;
  viewer.state = null;
  viewer.onAir = null;
  document.getElementById("channel-title").textContent = channel.title;
  document.title = `${channel.title} · AI WebTV`;
  for (const button of document.querySelectorAll("#channels button")) {
    button.setAttribute("aria-current", String(button.dataset.slug === channel.slug));
  }
  if (location.hash !== `#${channel.slug}`) history.replaceState(null, "", `#${channel.slug}`);
  promptBox.textContent = "Tuning in…";
  delete promptBox.dataset.clipId;
  guide.replaceChildren();
  pollState();
  startPlayer();
}

async function main() {
  const channels = await (await fetch("/channels.json", { cache: "no-store" })).json();
  const nav = document.getElementById("channels");
  for (const channel of channels) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = channel.title;
    button.dataset.slug = channel.slug;
    button.addEventListener("click", () => tuneTo(channel));
    nav.append(button);
  }
  const wanted = channels.find((channel) => `#${channel.slug}` === location.hash);
  tuneTo(wanted || channels[0]);
  document.getElementById("unmute").addEventListener("click", (event) => {
    video.muted = !video.muted;
    event.target.textContent = video.muted ? "Sound on" : "Sound off";
  });
  setInterval(pollState, STATE_POLL_MS);
  setInterval(() => {
    showOnAir();
    showGuide();
  }, 500);
  if ("requestVideoFrameCallback" in video) {
    const everyFrame = () => {
      showOnAir();
      video.requestVideoFrameCallback(everyFrame);
    };
    video.requestVideoFrameCallback(everyFrame);
  }
}

main();
