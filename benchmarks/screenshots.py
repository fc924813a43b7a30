"""Remakes the documentation's screenshots from a real stack.

Starts `webtv up` on free ports in a throwaway folder (the embedded demo channel, offline
backends), waits until a made clip (not the ident) is on air, then drives Debian's Chromium
headless with Playwright (no browser is downloaded) and writes:

- docs/images/viewer.png: the web viewer playing the channel, its prompt under "On air";
- docs/images/dagster-broadcast-clip.png: the `broadcast_clip` asset of that clip's partition
  in the Dagster UI, with its metadata and the contact-sheet preview.

Everything it started is stopped afterwards (the ordered stop of `webtv up`; Ctrl-C and SIGTERM
too). About 3-5 minutes on the 2-core machine, most of it waiting for the first clips to air.

`--revision REV` runs the stack from a clean git worktree of REV (this checkout's .venv and
hls.js linked in, the worktree first on PYTHONPATH), for when the working tree is mid-change.

    .venv/bin/python benchmarks/screenshots.py [--out docs/images] [--revision HEAD]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


from webtv_dagster.channels import DEFAULT_CHANNELS_FILE  # noqa: E402
from webtv_dagster.stack.nginx import HLS_JS  # noqa: E402
from webtv_dagster_tests.servers import start_webtv_up  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--autoplay-policy=no-user-gesture-required",
]
SLUG = "llama-jobs"


def _get(url: str, timeout: float = 5) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.read()
    except OSError:
        return None


def _ui_port(log: Path) -> int | None:
    match = re.search(r"Dagster UI on http://[^:]+:(\d+)", log.read_text(errors="replace"))
    return int(match.group(1)) if match else None


def wait_for_clip_on_air(hls_port: int, deadline: float) -> str:
    """The id of a made clip that is on air (or queued) on the demo channel."""
    pattern = re.compile(rf"^{SLUG}-\d+$")
    while time.monotonic() < deadline:
        raw = _get(f"http://127.0.0.1:{hls_port}/state/{SLUG}.json")
        if raw:
            state = json.loads(raw)
            now = time.time()
            aired = [
                entry
                for entry in state.get("schedule", [])
                if pattern.match(entry["clip_id"]) and entry["starts_at"] <= now
            ]
            if aired:
                return aired[-1]["clip_id"]
        time.sleep(3)
    raise TimeoutError("no made clip went on air in time")


def wait_for_ui(ui_port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if _get(f"http://127.0.0.1:{ui_port}/server_info"):
            return
        time.sleep(2)
    raise TimeoutError("the Dagster UI did not answer in time")


def shoot(hls_port: int, ui_port: int, clip_id: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            url = (
                f"http://127.0.0.1:{ui_port}/assets/broadcast_clip"
                f"?view=partitions&partition={clip_id}"
            )
            page.goto(url)
            page.get_by_text("size_bytes").first.wait_for(timeout=120_000)
            skip = page.get_by_role("button", name="Skip")  # Dagster's community invitation
            with contextlib.suppress(Exception):
                skip.wait_for(timeout=5_000)
                skip.click()
            # The preview is Markdown metadata: an image served by the viewer service.
            page.wait_for_function(
                "() => [...document.images].some(i => i.alt === 'frames' && i.naturalWidth > 0)",
                timeout=60_000,
            )
            page.wait_for_timeout(1000)
            page.screenshot(path=str(out / "dagster-broadcast-clip.png"))
            print(f"wrote {out / 'dagster-broadcast-clip.png'} ({url})", flush=True)

            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://127.0.0.1:{hls_port}/#{SLUG}")
            # Playing (as the viewer tests wait for it), then a made clip's prompt on screen.
            try:
                page.wait_for_function(
                    "() => document.getElementById('video').currentTime > 3", timeout=120_000
                )
                page.wait_for_function(
                    "(slug) => (document.getElementById('on-air-prompt').dataset.clipId || '')"
                    ".startsWith(slug + '-')",
                    arg=SLUG,
                    timeout=120_000,
                )
            except Exception:
                page.screenshot(path=str(out / "viewer-failed.png"))
                print(
                    page.evaluate(
                        "() => { const v = document.getElementById('video');"
                        " return [v.currentTime, v.paused, v.readyState, v.src,"
                        " document.body.innerText.slice(0, 400)]; }"
                    )
                )
                raise
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "viewer.png"))
            print(f"wrote {out / 'viewer.png'}", flush=True)

        finally:
            browser.close()


@contextlib.contextmanager
def worktree(revision: str | None, folder: Path):
    """The code to run the stack from: this checkout, or a clean worktree of `revision`."""
    if revision is None:
        yield ROOT
        return
    tree = folder / "code"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
        check=True,
        capture_output=True,
    )
    try:
        (tree / ".venv").symlink_to(ROOT / ".venv")
        # hls.js, where this checkout installed it, where the revision's viewer is.
        viewer = next(
            folder
            for folder in ("webtv_dagster/audience/viewer", "webtv_dagster/viewer")
            if (tree / folder).is_dir()
        )
        (tree / viewer / "node_modules").symlink_to(ROOT / HLS_JS.parents[2].relative_to(ROOT))
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            check=False,
            capture_output=True,
        )


def _stop_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a clip")
    parser.add_argument("--revision", help="run the stack from a clean worktree of this revision")
    parser.add_argument(
        "--hold",
        type=float,
        default=0,
        help="keep the stack up this long before shooting (to look)",
    )
    args = parser.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    for signum in (signal.SIGINT, signal.SIGTERM):  # also in the background, where SIGINT is off
        signal.signal(signum, _stop_on_signal)
    with (
        tempfile.TemporaryDirectory(prefix="webtv-screenshots-") as scratch,
        worktree(args.revision, Path(scratch)) as code,
    ):
        folder = Path(scratch)
        # Not a private folder: nginx's public files stay under it, not in /var/tmp (as root).
        folder.chmod(0o755)
        default_channels = code / DEFAULT_CHANNELS_FILE.relative_to(ROOT)
        channels_file = Path(os.environ.get("WEBTV_CHANNELS_FILE", default_channels))
        extra = {"PYTHONPATH": str(code)} if code != ROOT else {}
        stack = start_webtv_up(folder, channels_file, "webtv", "webtv-embedded-secret", **extra)
        hls_port = int(stack.environment["WEBTV_HLS_PORT"])
        log = folder / "webtv-up.log"
        print(f"stack in {folder}: viewer on http://127.0.0.1:{hls_port}/", flush=True)
        try:
            deadline = time.monotonic() + args.timeout
            while (ui_port := _ui_port(log)) is None:
                if stack.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("webtv up did not start:\n" + log.read_text())
                time.sleep(1)
            clip_id = wait_for_clip_on_air(hls_port, deadline)
            print(f"{clip_id} on air", flush=True)
            wait_for_ui(ui_port, deadline)
            if args.hold:
                print(f"holding {args.hold:g} s: UI on http://127.0.0.1:{ui_port}/", flush=True)
                time.sleep(args.hold)
            shoot(hls_port, ui_port, clip_id, args.out)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):  # let the stop finish
                signal.signal(signum, signal.SIG_IGN)
            stack.process.send_signal(signal.SIGTERM)  # the ordered stop of webtv up
            try:
                stack.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                subprocess.run(
                    [str(ROOT / ".venv" / "bin" / "webtv"), "down"],
                    env=stack.environment,
                    check=False,
                )
                stack.process.kill()
                stack.process.wait()
            print("stack stopped", flush=True)


if __name__ == "__main__":
    main()
