"""The full stack for half an hour with a fault injected in turn, measured as a viewer sees it.

Runs `webtv up` (supervisord, SeaweedFS, nginx-rtmp, Dagster code server, webserver and daemon,
the playout) on free ports in a fresh folder, with the demo channel's prompts written by an
OpenAI-compatible stand-in and its takes rendered by a local Zeroscope look-alike Space, both
served by this process so that they can misbehave on cue. An RTMP subscriber watches the
channel throughout. Faults, one per window:

  publisher killed, RTMP server killed (every nginx process), S3 killed, S3 hung 30 s,
  garbage and truncated clips in the playout's cache, garbage and truncated clips in S3,
  the Space down 60 s (its only replica), the LLM answering junk for 60 s;
  hung 30 s (SIGSTOP): the publisher, the playout, nginx (every process), the viewer service,
  the Dagster webserver, code server and daemon;
  `webtv up` killed and started again; `webtv up` and supervisord killed and `webtv up` started
  again; a power loss (every process of the stack killed at once) and `webtv up` again;
  the data folder's disk full for 60 s (when run as root: the folder is a tmpfs of its own).

For each it prints the longest wall-clock time without a new frame (off air), the video
timestamp steps over one frame and the largest, the clips the playout skipped, the clip runs
that failed and the alerts the webhook received (for a power loss also the seconds from `webtv
up` to the first frame); at the end, any secret found in any log.

Usage: .venv/bin/python benchmarks/fault_soak.py [--window 185] [--only TEXT ...]
       (24 windows: about 75 min; --only "hung" re-runs the hangs alone)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml
from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster.backends.prompt_writer import RuleBasedPromptWriter
from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, load_channels
from webtv_dagster.media_store import MediaStore
from webtv_dagster.playout.state import PlayoutFolder, read_state
from webtv_dagster.public_site import public_folder
from webtv_dagster.spaces.apps import Behaviour, Workshop, launch
from webtv_dagster.stack.nginx import publish_url
from webtv_dagster.stack.nginx_process import nginx_of
from webtv_dagster.stack.processes import stack_processes
from webtv_dagster.stack.programs import playout_program
from webtv_dagster.stack.supervisord import StackSupervisor
from webtv_dagster.storage import StorageError
from webtv_dagster_tests.air_monitor import AirMonitor
from webtv_dagster_tests.servers import free_port_block, start_webtv_up

SLUG = "llama-jobs"
SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "soak-s3-secret-7f3a9",
    "SOAK_LLM_KEY": "sk-soak-llm-secret-51c2",
    "WEBHOOK_PATH": "/hooks/soak-webhook-secret-9e0d",
}


class StandIns:
    """The LLM stand-in and webhook receiver (one HTTP server) and the local Space."""

    def __init__(self, channel):
        self.channel = channel
        self.junk = False
        self.alerts: list[dict] = []
        self.writer = RuleBasedPromptWriter()
        self.seed = 0
        stand_ins = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.startswith(SECRETS["WEBHOOK_PATH"]):
                    stand_ins.alerts.append({"at": time.time(), **body})
                    answer = {}
                else:
                    answer = stand_ins.completion(body)
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *_):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", free_port_block(1)), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.space_port = free_port_block(1)
        self.workshop = Workshop()
        self.space = launch("text_to_video", self.space_port, Behaviour(), self.workshop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_port}"

    def completion(self, request: dict) -> dict:
        """Fresh prompts from the rule-based writer, or junk while `junk` is set."""
        if self.junk:
            content = "Sure! Here are some ideas: llamas, more llamas {not json"
        else:
            recent = re.findall(r"^- (.+)$", request["messages"][1]["content"], re.MULTILINE)
            prompts = []
            while len(prompts) < 2:
                self.seed += 1
                prompt = self.writer.write(self.channel, self.seed, recent + prompts).prompt
                prompts.append(prompt)
            content = json.dumps({"prompts": prompts})
        return {
            "id": "soak",
            "object": "chat.completion",
            "created": 0,
            "model": "soak",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": content},
                }
            ],
        }

    def space_down(self, seconds: float) -> None:
        self.space.app.close()
        time.sleep(seconds)
        self.space = launch("text_to_video", self.space_port, Behaviour(), self.workshop)


def channels_file(folder: Path, stand_ins: StandIns) -> Path:
    document = yaml.safe_load(DEFAULT_CHANNELS_FILE.read_text())
    document["models"] = {
        "soak-llm": {
            "kind": "openai",
            "base_url": f"{stand_ins.url}/v1",
            "model": "soak",
            "api_key_env": "SOAK_LLM_KEY",
            "batch_size": 2,
        },
        "soak-zeroscope": {
            "kind": "gradio",
            "family": "text_to_video",
            "spaces": [f"http://127.0.0.1:{stand_ins.space_port}"],
        },
    }
    document["channels"][0]["backends"] = {
        "prompt_writer": "soak-llm",
        "text_to_video": "soak-zeroscope",
    }
    path = folder / "channels.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    load_channels(path)
    return path


def upcoming_clips(data_dir: Path, store: MediaStore) -> list[dict]:
    """Playlist entries after what the playout aired (the ones a fault can still hit)."""
    state = read_state(data_dir, SLUG)
    through = state.aired_through if state else 0
    try:
        playlist = store.get_json(f"channels/{SLUG}/playlist.json")
    except (FileNotFoundError, StorageError):
        return []
    return [e for e in playlist["entries"] if int(e["clip_id"].rsplit("-", 1)[1]) > through + 2]


def corrupt(kind: str, where: str, data_dir: Path, store: MediaStore) -> str:
    """Damages the copy in the cache or in S3 of the next clip ahead of air (waiting up to two
    minutes for production to put one there; else the newest clip, which replays); returns its
    id."""
    deadline = time.monotonic() + 120
    while not (upcoming := upcoming_clips(data_dir, store)) and time.monotonic() < deadline:
        time.sleep(2)
    if upcoming:
        entry = upcoming[0]
    else:
        entry = store.get_json(f"channels/{SLUG}/playlist.json")["entries"][-1]
    cached = PlayoutFolder.of(data_dir, SLUG).cache / f"{entry['clip_id']}.mp4"
    if where == "cache":
        deadline = time.monotonic() + 60
        while not cached.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        if not cached.exists():
            return f"(none: {entry['clip_id']} was not cached in time)"
        good = cached.read_bytes()
        cached.write_bytes(os.urandom(len(good)) if kind == "garbage" else good[:200_000])
    else:
        key = f"channels/{SLUG}/{entry['path']}"
        good = store.get_bytes(key)
        damaged = os.urandom(len(good)) if kind == "garbage" else good[:200_000]
        store.put_bytes(key, damaged, "video/mp4")
        cached.unlink(missing_ok=True)
    return entry["clip_id"]


def failed_clip_runs(home: Path, since: float) -> int:
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(
            dg.RunsFilter(job_name="clip_job", statuses=[dg.DagsterRunStatus.FAILURE]), limit=200
        )
    return sum(1 for r in records if r.create_timestamp.timestamp() >= since)


def secrets_in_logs(folder: Path) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix not in {".mp4", ".ts", ".flac", ".dat", ".idx"}:
            text = path.read_bytes()
            found += [
                f"{name} in {path}" for name, value in SECRETS.items() if value.encode() in text
            ]
    return found


def disk_of_its_own(folder: Path, size: str = "4g") -> bool:
    """Mounts a tmpfs on `folder` (as root), so that the disk-full fault fills it alone."""
    if os.geteuid() != 0:
        return False
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
        ).returncode
        == 0
    )


def fill_disk(folder: Path, seconds: float) -> None:
    """Fills the folder's filesystem to the last byte for `seconds`, then frees it."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                out.write(b"\0" * 2**20)
                out.flush()
    time.sleep(seconds)
    filler.unlink()


def hang(pid: int, seconds: float, group: bool = False) -> None:
    """Freezes the process (or its whole process group) for `seconds` (SIGSTOP), then lets
    it go on, if it was not replaced meanwhile."""
    signal_it = os.killpg if group else os.kill
    signal_it(pid, signal.SIGSTOP)
    time.sleep(seconds)
    with contextlib.suppress(ProcessLookupError):
        signal_it(pid, signal.SIGCONT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=185, help="seconds per fault")
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="only the faults whose name contains TEXT (repeatable): a re-run of some",
    )
    add_plot_argument(parser)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="webtv-soak-"))
    own_disk = disk_of_its_own(folder)
    channel = load_channels(DEFAULT_CHANNELS_FILE).channels[0]
    stand_ins = StandIns(channel)
    stack = start_webtv_up(
        folder,
        channels_file(folder, stand_ins),
        "soak",
        SECRETS["AWS_SECRET_ACCESS_KEY"],
        SOAK_LLM_KEY=SECRETS["SOAK_LLM_KEY"],
        WEBTV_ALERT_WEBHOOK_URL=stand_ins.url + SECRETS["WEBHOOK_PATH"],
    )
    up, store, data_dir, rtmp_port = stack.process, stack.store, stack.data_dir, stack.rtmp_port
    # `webtv up` is started again by the faults that kill it, on the same ports and settings.
    running = {"up": up}
    again_after: dict[str, float] = {}

    def webtv_up_again(fault: str) -> None:
        started = time.monotonic()
        log = (folder / "webtv-up.log").open("a")
        running["up"] = subprocess.Popen(
            up.args, env=stack.environment, stdout=log, stderr=subprocess.STDOUT
        )
        frames = len(viewer.video())
        while len(viewer.video()) <= frames + 24 and time.monotonic() - started < 120:
            time.sleep(0.1)
        again_after[fault] = round(time.monotonic() - started, 2)

    def kill_manager(and_supervisord: bool) -> None:
        supervisord = int((data_dir / "supervisor" / "supervisord.pid").read_text())
        running["up"].kill()
        running["up"].wait()
        if and_supervisord:
            os.kill(supervisord, signal.SIGKILL)
        time.sleep(5)

    def power_loss() -> None:
        """Every process of the stack killed at once, as a power cut does (nginx is found by its
        pid file: it writes its title over its environment)."""
        everything = [pid for pid, folder in stack_processes() if folder == str(data_dir)]
        everything += nginx_of(public_folder(data_dir))
        running["up"].kill()
        for pid_ in everything:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid_, signal.SIGKILL)
        running["up"].wait()
        time.sleep(3)

    url = publish_url(rtmp_port, SLUG)
    print(f"soak in {folder}; waiting for the first clips to air", flush=True)
    supervisor = None
    while supervisor is None:
        time.sleep(1)
        supervisor = StackSupervisor.connect(data_dir)

    def pid(name: str) -> int:
        """The pid of a supervisord program, by its name (group:program when grouped)."""
        group, _, program = name.rpartition(":")
        supervisor = None
        while supervisor is None:  # a fault may have replaced supervisord
            supervisor = StackSupervisor.connect(data_dir)
            time.sleep(0 if supervisor else 1)
        return next(
            i["pid"]
            for i in supervisor.processes()
            if (i["group"], i["name"]) in {(group, program), (program, program)}
        )

    def publisher() -> int:
        playout = pid(playout_program(SLUG))
        found = subprocess.run(
            ["pgrep", "-P", str(playout), "-f", "ffmpeg .*-re "], capture_output=True, text=True
        )
        return int(found.stdout.split()[0])

    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        state = read_state(data_dir, SLUG)
        if state and state.aired_through >= 3 and len(upcoming_clips(data_dir, store)) >= 4:
            break
        time.sleep(5)

    def hang_s3() -> None:
        os.kill(pid("s3"), signal.SIGSTOP)
        time.sleep(30)
        os.kill(pid("s3"), signal.SIGCONT)

    corrupted: list[str] = []
    faults = [
        (
            "publisher killed",
            lambda: subprocess.run(
                ["pkill", "-9", "-P", str(pid(playout_program(SLUG))), "-f", "ffmpeg .*-re "]
            ),
        ),
        ("RTMP server killed", lambda: subprocess.run(["pkill", "-9", "-g", str(pid("rtmp"))])),
        ("S3 killed", lambda: os.kill(pid("s3"), signal.SIGKILL)),
        ("S3 hung 30 s", hang_s3),
        (
            "garbage clip in the cache",
            lambda: corrupted.append(corrupt("garbage", "cache", data_dir, store)),
        ),
        (
            "truncated clip in the cache",
            lambda: corrupted.append(corrupt("truncated", "cache", data_dir, store)),
        ),
        ("garbage clip in S3", lambda: corrupted.append(corrupt("garbage", "s3", data_dir, store))),
        (
            "truncated clip in S3",
            lambda: corrupted.append(corrupt("truncated", "s3", data_dir, store)),
        ),
        ("Space down 60 s", lambda: stand_ins.space_down(60)),
        ("publisher hung 30 s", lambda: hang(publisher(), 30)),
        ("playout hung 30 s", lambda: hang(pid(playout_program(SLUG)), 30)),
        ("RTMP server hung 30 s", lambda: hang(pid("rtmp"), 30, group=True)),
        ("viewer service hung 30 s", lambda: hang(pid("viewer-service"), 30)),
        ("Dagster webserver hung 30 s", lambda: hang(pid("dagster-webserver"), 30)),
        ("Dagster code server hung 30 s", lambda: hang(pid("dagster-code-server"), 30)),
        ("Dagster daemon hung 30 s", lambda: hang(pid("dagster-daemon"), 30)),
        (
            "webtv up killed, started again",
            lambda: (kill_manager(False), webtv_up_again("webtv up killed, started again")),
        ),
        (
            "webtv up and supervisord killed, webtv up again",
            lambda: (
                kill_manager(True),
                webtv_up_again("webtv up and supervisord killed, webtv up again"),
            ),
        ),
        (
            "power loss, webtv up again",
            lambda: (power_loss(), webtv_up_again("power loss, webtv up again")),
        ),
        *([("disk full 60 s", lambda: fill_disk(folder, 60))] if own_disk else []),
        (
            "LLM answering junk 60 s",
            lambda: (
                setattr(stand_ins, "junk", True),
                time.sleep(60),
                setattr(stand_ins, "junk", False),
            ),
        ),
    ]
    if args.only:
        faults = [f for f in faults if any(text in f[0] for text in args.only)]
    rows = []
    try:
        with AirMonitor(url) as viewer:
            viewer.wait_for_frames(48, timeout=120)
            soak_started = time.monotonic()
            for name, inject in faults:
                started, wall = time.monotonic(), time.time()
                skipped_before = len(read_state(data_dir, SLUG).skipped)
                alerts_before = len(stand_ins.alerts)
                inject()
                time.sleep(max(0.0, args.window - (time.monotonic() - started)))
                state = read_state(data_dir, SLUG)
                rows.append(
                    {
                        "fault": name,
                        "off air (s)": round(viewer.longest_gap(started), 2),
                        "steps over one frame": len(viewer.steps_over_one_frame(started)),
                        "largest step (ms)": max(viewer.steps_over_one_frame(started), default=0),
                        "up to on air (s)": again_after.get(name, ""),
                        "clips skipped": [s.clip_id for s in state.skipped[skipped_before:]],
                        "clip runs failed": failed_clip_runs(data_dir / "dagster", wall),
                        "alerts": [a["title"] for a in stand_ins.alerts[alerts_before:]],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            minutes = (time.monotonic() - soak_started) / 60
    finally:
        running["up"].send_signal(signal.SIGTERM)
        running["up"].wait(timeout=120)
    try:
        report(args, folder, rows, faults, minutes, corrupted, viewer)
    finally:  # the logs read and kept beside it, the folder's own disk goes
        if own_disk:
            kept = folder.with_name(f"{folder.name}-logs")
            for log in [folder / "webtv-up.log", *folder.glob("data/**/*.log")]:
                (kept / log.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(log, kept / log.relative_to(folder))
            print(f"logs kept in {kept}")
            subprocess.run(["umount", "--lazy", str(folder)])


def report(args, folder: Path, rows, faults, minutes: float, corrupted, viewer) -> None:
    """The table, the secrets found in the stack's logs, the stop's lines and the plot."""
    leaks = secrets_in_logs(folder)
    print(f"\n{len(faults)} faults in {minutes:.1f} min; deliberately corrupted: {corrupted}")
    print("| " + " | ".join(rows[0]) + " |")
    print("|---" * len(rows[0]) + "|")
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")
    print(f"secrets found in logs: {len(leaks)} {leaks[:5]}")
    print(f"frames seen: {len(viewer.video())}, subscriber connections: {viewer.connections}")
    up_log = (folder / "webtv-up.log").read_text().splitlines()
    stopped = [line for line in up_log if "stop" in line]
    print("stop:", *stopped[-3:], sep="\n  ")
    if args.plot:
        faults_named = [row["fault"] for row in rows]
        save_plot(
            args.plot,
            "Fault soak: what each fault cost a viewer",
            [
                Panel(
                    "longest time off air",
                    "barh",
                    faults_named,
                    {"s": [row["off air (s)"] for row in rows]},
                    xlabel="s",
                    target=5.0,
                    target_label="target: 5 s",
                    value_format="{:.2f}",
                ),
                Panel(
                    "video steps over one frame",
                    "barh",
                    faults_named,
                    {"steps": [row["steps over one frame"] for row in rows]},
                    xlabel="steps",
                    value_format="{:.0f}",
                ),
            ],
            note=f"{len(faults)} faults in {minutes:.1f} min, --window {args.window:g} s; "
            f"frames seen {len(viewer.video())}",
        )


if __name__ == "__main__":
    main()
