"""What the stage previews of one clip cost in CPU, before and after a change, in the same run.

Makes one clip of the demo channel (8 s) with the offline backends on a throwaway SeaweedFS,
then, for each stage's output, repeats what `ClipProduction` does to preview it, with the code
of `--before` (a git revision: its media/preview.py, loaded from git) and with the working
tree's: the stage's probe plus the contact sheet or waveform. CPU time is that of the FFmpeg
and ffprobe processes and of this one, user + system, per stage, averaged over `--repeat`
rounds that alternate before and after.

Usage: .venv/bin/python benchmarks/preview_cost.py [--before 6f91bcf] [--repeat 10]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

from plotting import Panel, add_plot_argument, save_plot

from webtv_dagster import clips
from webtv_dagster.backends.registry import OfflineSettings, build_backends
from webtv_dagster.channels import DEFAULT_CHANNELS_FILE, load_channels
from webtv_dagster.clips import ClipId
from webtv_dagster.media import preview
from webtv_dagster.media.ffmpeg import probe
from webtv_dagster.media_store import MediaStore
from webtv_dagster.production.stages import ClipProduction
from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS
from webtv_dagster_tests.servers import free_port_block, start_embedded_s3

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = [
    clips.RAW_TAKE,
    clips.UPSCALED_TAKE,
    clips.INTERPOLATED_CLIP,
    clips.MUSIC_TRACK,
    clips.BROADCAST_CLIP,
]


def make_stage_outputs(folder: Path) -> dict[str, Path]:
    """One clip of the demo channel, every stage, offline; returns each output's local copy."""
    file = load_channels(DEFAULT_CHANNELS_FILE)
    channel = file.channels[0]
    s3 = start_embedded_s3(
        folder / "s3",
        free_port_block(max(PORT_OFFSETS.values()) + 1),
        "media",
        "bench",
        "bench-secret",
    )
    try:
        store = MediaStore("media", s3.endpoint_url, "us-east-1", "bench", "bench-secret")
        backends = build_backends(channel.backends, file.models, OfflineSettings())
        clip = ClipId(channel=channel.slug, number=1)
        with ClipProduction(store, channel, backends) as production:
            production.write_shot_prompt(clip)
            for stage in (
                production.render_raw_take,
                production.upscale_take,
                production.interpolate_clip,
                production.compose_music,
                production.assemble_broadcast_clip,
            ):
                stage(clip)
        return {name: store.download_file(clip.object_key(name), folder / name) for name in OUTPUTS}
    finally:
        s3.stop()


def module_at(revision: str) -> types.ModuleType:
    """media/preview.py as it was at `revision`."""
    source = subprocess.run(
        ["git", "show", f"{revision}:webtv_dagster/media/preview.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = types.ModuleType(f"preview_at_{revision}")
    exec(compile(source, f"{revision}:webtv_dagster/media/preview.py", "exec"), module.__dict__)
    return module


def before_preview(old: types.ModuleType) -> Callable[[Path], bytes]:
    def run(output: Path) -> bytes:
        media = probe(output)
        if media.video is None:
            return old.waveform_png(output)
        return old.contact_sheet_jpeg(output)

    return run


def after_preview(output: Path) -> bytes:
    media = probe(output, keyframes=True)
    if media.video is None:
        return preview.waveform_png(output)
    return preview.contact_sheet_jpeg(output, media.video)


def probe_only(output: Path) -> bytes:
    """What every stage spends without a preview: its own probe."""
    probe(output)
    return b""


def cpu_seconds() -> float:
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(usage.ru_utime + usage.ru_stime for usage in used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="6f91bcf", help="git revision of the old previews")
    parser.add_argument("--repeat", type=int, default=10)
    add_plot_argument(parser)
    args = parser.parse_args()
    variants = {
        "before": before_preview(module_at(args.before)),
        "after": after_preview,
        "probe": probe_only,
    }
    with tempfile.TemporaryDirectory(prefix="webtv-preview-cost-") as scratch:
        outputs = make_stage_outputs(Path(scratch))
        spent = {(variant, name): 0.0 for variant in variants for name in outputs}
        sizes = {}
        for _ in range(args.repeat):
            for name, path in outputs.items():
                for variant, make in variants.items():
                    started = cpu_seconds()
                    sizes[variant, name] = len(make(path))
                    spent[variant, name] += cpu_seconds() - started
    print(
        f"CPU seconds per stage output, mean of {args.repeat}: the stage's probe plus its "
        "preview, and the preview alone (less the probe alone)"
    )
    print(
        f"{'output':18} {'before':>8} {'after':>8} {'ratio':>6}   {'preview alone':>18} "
        f"{'ratio':>6}  bytes"
    )
    totals = dict.fromkeys(variants, 0.0)
    means = {}
    for name in outputs:
        mean = means[name] = {variant: spent[variant, name] / args.repeat for variant in variants}
        for variant in variants:
            totals[variant] += mean[variant]
        print(_row(name, mean) + f"  {sizes['before', name]}/{sizes['after', name]}")
    print(_row("one clip", totals))
    if args.plot:
        labels = [*outputs, "one clip"]
        rows = [*means.values(), totals]
        save_plot(
            args.plot,
            "Stage previews: CPU seconds per stage output, before and after",
            [
                Panel(
                    "probe + preview",
                    "bar",
                    labels,
                    {
                        f"before ({args.before})": [row["before"] for row in rows],
                        "after (the code run)": [row["after"] for row in rows],
                    },
                    ylabel="CPU s",
                    value_format="{:.2f}",
                ),
                Panel(
                    "preview alone (less the probe)",
                    "bar",
                    labels,
                    {
                        f"before ({args.before})": [row["before"] - row["probe"] for row in rows],
                        "after (the code run)": [row["after"] - row["probe"] for row in rows],
                    },
                    ylabel="CPU s",
                    value_format="{:.2f}",
                ),
            ],
            note=f"one 8 s clip of the demo channel, mean of {args.repeat} rounds",
        )


def _row(label: str, cpu: dict[str, float]) -> str:
    before, after, alone = cpu["before"], cpu["after"], cpu["probe"]
    only_before, only_after = before - alone, after - alone
    return (
        f"{label:18} {before:8.3f} {after:8.3f} {after / before:6.2f}   "
        f"{only_before:8.3f} {only_after:8.3f} {only_after / only_before:6.2f}"
    )


if __name__ == "__main__":
    main()
