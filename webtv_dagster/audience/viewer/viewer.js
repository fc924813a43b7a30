// The channel viewer: plays a channel's HLS stream and shows the prompt of the clip on screen
// with what comes next, from the playout's state (/state/<slug>.json); and, from the viewer
// service (/api/<slug>/guide.json), who requested a clip, the viewers' requests waiting, and a
// box to suggest a shot. With ?operator in the address, a button takes the clip on screen off
// air (the operator token is asked once and kept for the browser tab).
//
// Which clip is on screen is worked out on the stream's own timeline: with hls.js, each HLS
// fragment is named by its stream timestamp (nginx `hls_fragment_naming timestamp`), so the
// playhead's stream position is exact. Native HLS players (Safari, iOS) do not say which
// fragment plays; there the position is estimated from the wall clock and the live latency.
"use strict";

const FRAGMENT_SECONDS = 2; // hls_fragment in the nginx configuration
const STATE_POLL_MS = 1000;
const GUIDE_POLL_MS = 3000;
const WATCHING_POLL_MS = 5000; // the viewer service counts every 2 s
const RETRY_MS = 3000;
const operator = new URLSearchParams(location.search).has("operator");

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
  guide: null, // the viewer service's guide: credits by clip, viewers' requests
  onAir: null, // the schedule entry whose prompt is on screen
  // The playhead's position on the stream's timeline, in seconds, or null before playback.
  position() {
    if (!this.state || video.readyState < 2) return null;
    if (this.player === "hls.js") {
      if (!this.fragment) return null;
      const since = video.currentTime - this.fragment.mediaSeconds;
      return unwrapped(this.fragment.streamSeconds + since);
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

// A position from a fragment's timestamp, on the playout's timeline. The stream's timestamps
// restart from 0 every `timestamps_restart_every` seconds of it (24.30 days): past one restart,
// a timestamp is the position less a multiple of that, the one that lands nearest the playout's
// schedule (a player lags the air by seconds, the restarts are weeks apart).
function unwrapped(seconds) {
  const { schedule, timestamps_restart_every: every } = viewer.state;
  if (!schedule.length || !every) return seconds;
  const reference = schedule[schedule.length - 1].stream_seconds;
  return seconds + Math.round((reference - seconds) / every) * every;
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
  showCredit();
}

function creditOf(clipId) {
  return (viewer.guide && viewer.guide.credits[clipId]) || null;
}

function showCredit() {
  const name = viewer.onAir ? creditOf(viewer.onAir.clip_id) : null;
  const credit = document.getElementById("credit");
  credit.hidden = !name;
  document.getElementById("credit-name").textContent = name || "";
  document.getElementById("dump").hidden = !(operator && viewer.onAir && viewer.onAir.clip_id !== "ident");
}

function formatAt(unixSeconds) {
  const seconds = unixSeconds - Date.now() / 1000;
  if (seconds < 3600) return formatIn(seconds);
  return `at ${new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
}

function showRequests() {
  const guideData = viewer.guide;
  document.getElementById("suggest").hidden = !(guideData && guideData.takes_requests);
  if (!guideData) return;
  const list = document.getElementById("requests");
  list.replaceChildren(
    ...guideData.requests.map((request) => {
      const item = document.createElement("li");
      const when = document.createElement("time");
      when.textContent = request.expected_at ? `about ${formatAt(request.expected_at)}` : request.message;
      const by = document.createElement("span");
      by.className = "by";
      by.textContent = ` by ${request.requested_by}`;
      item.append(when, request.idea, by);
      item.dataset.requestId = request.id;
      return item;
    }),
  );
  document.getElementById("requests-empty").hidden = guideData.requests.length > 0;
}

async function pollGuide() {
  const slug = viewer.slug;
  try {
    const response = await fetch(`/api/${slug}/guide.json`, { cache: "no-store" });
    if (slug !== viewer.slug || !response.ok) return;
    viewer.guide = await response.json();
    showRequests();
    showCredit();
  } catch (error) {
    // The guide is extra: the picture and the prompt go on without it.
  }
}

// Keeps a box at the characters the service takes (code points: maxlength counts UTF-16 units).
function keepToMaxCharacters(event) {
  const box = event.target;
  const characters = [...box.value];
  const most = Number(box.dataset.maxCharacters);
  if (characters.length > most) box.value = characters.slice(0, most).join("");
}

async function suggestShot(event) {
  event.preventDefault();
  const answer = document.getElementById("suggest-answer");
  const idea = document.getElementById("idea");
  const name = document.getElementById("requester");
  try {
    const response = await fetch(`/api/${viewer.slug}/requests`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ idea: idea.value, name: name.value }),
    });
    const body = await response.json().catch(() => ({}));
    answer.textContent = body.message || body.error || "Too many requests: try again in a moment.";
    answer.dataset.status = body.status || String(response.status);
    if (body.accepted) idea.value = "";
    pollGuide();
  } catch (error) {
    answer.textContent = "Cannot reach the server; try again.";
  }
}

async function dumpClip() {
  const clip = viewer.onAir;
  if (!clip) return;
  let token = sessionStorage.getItem("webtvOperatorToken");
  if (!token) {
    token = prompt("Operator token (WEBTV_OPERATOR_TOKEN)");
    if (!token) return;
  }
  const reason = prompt(`Take ${clip.clip_id} off air now. Why?`, "") || "";
  const response = await fetch(`/api/${viewer.slug}/dump`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify({ clip_id: clip.clip_id, reason }),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) sessionStorage.setItem("webtvOperatorToken", token);
  else if (response.status === 401) sessionStorage.removeItem("webtvOperatorToken");
  document.getElementById("operator-status").textContent = response.ok
    ? `${clip.clip_id} taken off air`
    : body.error || `refused (${response.status})`;
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
      const name = creditOf(clip.clip_id);
      if (name) {
        const by = document.createElement("span");
        by.className = "by";
        by.textContent = ` (requested by ${name})`;
        item.append(by);
      }
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

// "N watching": HLS players and RTMP subscribers, as the viewer service counts them (hidden
// while it does not).
async function pollWatching() {
  const slug = viewer.slug;
  const shown = document.getElementById("watching");
  try {
    const response = await fetch("/watching.json", { cache: "no-store" });
    const watching = response.ok ? await response.json() : null;
    const counted = watching && watching.channels[slug];
    // By the server's clock (its Date header): the viewer's own may be off.
    const now = Date.parse(response.headers.get("Date")) / 1000;
    const fresh = watching && now - watching.updated_at < 30;
    if (slug !== viewer.slug) return;
    shown.hidden = !(counted && fresh);
    if (!shown.hidden) shown.textContent = `${counted.hls + counted.rtmp} watching`;
  } catch (error) {
    shown.hidden = true;
  }
}

function tuneTo(channel) {
  viewer.slug = channel.slug;
  viewer.state = null;
  viewer.guide = null;
  viewer.onAir = null;
  document.getElementById("channel-title").textContent = channel.title;
  document.getElementById("xmltv").href = `/xmltv/${channel.slug}.xml`;
  document.getElementById("suggest-answer").textContent = "";
  document.title = `${channel.title} · AI WebTV`;
  for (const button of document.querySelectorAll("#channels button")) {
    button.setAttribute("aria-current", String(button.dataset.slug === channel.slug));
  }
  if (location.hash !== `#${channel.slug}`) history.replaceState(null, "", `#${channel.slug}`);
  promptBox.textContent = "Tuning in…";
  delete promptBox.dataset.clipId;
  guide.replaceChildren();
  pollState();
  pollGuide();
  pollWatching();
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
  document.getElementById("suggest-form").addEventListener("submit", suggestShot);
  for (const box of document.querySelectorAll("[data-max-characters]")) {
    box.addEventListener("input", keepToMaxCharacters);
  }
  document.getElementById("dump").addEventListener("click", dumpClip);
  setInterval(pollState, STATE_POLL_MS);
  setInterval(pollGuide, GUIDE_POLL_MS);
  setInterval(pollWatching, WATCHING_POLL_MS);
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
