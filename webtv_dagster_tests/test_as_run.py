"""The as-run log's own rules: entries written once each, in timeline order, across restarts;
never half a line on a full disk; days past the retention removed; its CSV; the day's asset.
What it says is checked against what subscribers received in test_dump.py."""

import csv
import datetime
import errno
import io
import os

import dagster as dg
import pytest

from webtv_dagster.cli import main
from webtv_dagster.playout.as_run import AsRunEntry, AsRunLog, AsRunRecorder, as_run_key
from webtv_dagster.playout.state import PlayoutFolder, ScheduledClip

from .conftest import TEST_CHANNELS, clip_resources

SLUG = "test-llamas"
NOON = datetime.datetime(2026, 12, 5, 12, tzinfo=datetime.UTC).timestamp()


def scheduled(number: int, at: float, seconds: float = 4.0, **fields) -> ScheduledClip:
    return ScheduledClip(
        clip_id=f"{SLUG}-{number:06d}",
        prompt=f"prompt {number}",
        duration_seconds=seconds,
        starts_at=NOON + at,
        stream_seconds=at,
        **{"origin": "new", **fields},
    )


def written(folder) -> list[tuple]:
    log = AsRunLog(folder, days_kept=31)
    return [
        (e.clip_id, e.event, e.stream_start, e.stream_end, round(e.started_at - NOON, 2))
        for day in log.days()
        for e in log.entries(day)
    ]


def test_each_clip_is_written_once_when_sent_whole_with_its_times_from_the_reports(tmp_path):
    folder = tmp_path / "as-run"
    schedule = [scheduled(1, 0.0), scheduled(2, 4.0, requested_by="alice"), scheduled(3, 8.0)]
    recorder = AsRunRecorder(AsRunLog(folder, 31), SLUG)
    recorder.resume(schedule, None)
    assert written(folder) == []
    # Reports: the publisher sends in real time, 0.3 s later than the schedule said.
    for sent in (0.25, 2.0, 4.1, 6.0):
        recorder.sent(schedule, sent, NOON + 0.3 + sent)
    assert written(folder) == [(f"{SLUG}-000001", "aired", 0.0, 4.0, 0.3)]
    # Clip 2 is cut on air at 6 s: the schedule shortens it; clip 3 moves back to the cut.
    recorder.cut(4.0, "taken down on air after 2.0 s (wrong picture)")
    schedule = [schedule[0], scheduled(2, 4.0, 2.0, requested_by="alice"), scheduled(3, 6.0)]
    recorder.sent(schedule, 6.25, NOON + 6.55)
    assert written(folder)[1] == (f"{SLUG}-000002", "cut", 4.0, 6.0, 4.3)
    # The playout dies 1 s into clip 3; the next resumes it by its last report (7 s): clip 3
    # keeps its scheduled start, and nothing is written twice.
    restarted = AsRunRecorder(AsRunLog(folder, 31), SLUG)
    restarted.resume(schedule, 7.0)
    # Back on air after 2 s off: the new publisher goes on from 7 s at NOON + 9.3.
    for sent in (7.25, 9.0, 10.0):
        restarted.sent(schedule, sent, NOON + 2.3 + sent)
    entries = AsRunLog(folder, 31).entries("2026-12-05")
    assert [e.clip_id for e in entries] == [f"{SLUG}-00000{n}" for n in (1, 2, 3)]
    clip2, clip3 = entries[1], entries[2]
    assert clip2.requested_by == "alice" and "wrong picture" in clip2.reason
    assert (clip3.started_at - NOON, round(clip3.ended_at - NOON, 2)) == (6.0, 12.3)


def test_a_restart_writes_what_the_last_playout_sent_whole_and_did_not_write(tmp_path):
    folder = tmp_path / "as-run"
    schedule = [scheduled(1, 0.0), scheduled(2, 4.0), scheduled(3, 8.0)]
    first = AsRunRecorder(AsRunLog(folder, 31), SLUG)
    first.sent(schedule, 4.05, NOON + 4.05)  # clip 1 written; killed before clip 2's end
    AsRunRecorder(AsRunLog(folder, 31), SLUG).resume(schedule, 9.0)
    assert [row[:4] for row in written(folder)] == [
        (f"{SLUG}-000001", "aired", 0.0, 4.0),
        (f"{SLUG}-000002", "aired", 4.0, 8.0),  # as scheduled: its reports were lost
    ]


def test_a_full_disk_leaves_no_half_line_and_the_entry_is_written_later(tmp_path, monkeypatch):
    folder = tmp_path / "as-run"
    schedule = [scheduled(1, 0.0), scheduled(2, 4.0)]
    recorder = AsRunRecorder(AsRunLog(folder, 31), SLUG)
    recorder.sent(schedule, 4.0, NOON + 4.0)
    real_write = os.write

    def disk_fills_mid_line(fd, data):
        real_write(fd, data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_fills_mid_line)
    with pytest.raises(OSError):
        recorder.sent(schedule, 8.0, NOON + 8.0)
    monkeypatch.undo()
    assert len(written(folder)) == 1  # clip 1, whole; nothing of clip 2
    recorder.sent(schedule, 8.25, NOON + 8.25)  # room again: clip 2 at the next report
    assert [row[0] for row in written(folder)] == [f"{SLUG}-000001", f"{SLUG}-000002"]
    assert written(folder)[1][4] == 4.0  # its start as reported before the disk filled


def test_days_past_the_retention_are_removed_as_a_new_day_begins(tmp_path):
    folder = tmp_path / "as-run"
    folder.mkdir()
    for day in ("2026-11-01", "2026-12-02", "2026-12-03", "2026-12-04", "notes"):
        (folder / f"{day}.jsonl").write_text("")
    log = AsRunLog(folder, days_kept=3)
    log.append(
        AsRunEntry(
            channel=SLUG,
            clip_id=f"{SLUG}-000004",
            event="skipped",
            started_at=NOON,
            ended_at=NOON,
            reason="its copy does not match its record",
        )
    )
    assert log.days() == ["2026-12-03", "2026-12-04", "2026-12-05"]


def as_run_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_webtv_as_run_prints_the_days_asked_as_csv(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    log = AsRunLog(PlayoutFolder.of(data_dir, SLUG).as_run, 31)
    recorder = AsRunRecorder(log, SLUG)
    day_before = [scheduled(1, -86400.0, origin="replay")]
    recorder.sent(day_before, -86396.0, NOON - 86396.0)
    recorder.skipped(f"{SLUG}-000002", 'taken down: "wrong", really', NOON)
    monkeypatch.setenv("WEBTV_CHANNELS_FILE", str(TEST_CHANNELS))
    monkeypatch.setenv("WEBTV_DATA_DIR", str(data_dir))
    assert main(["as-run", SLUG, "--since", "2026-12-04", "--until", "2026-12-05"]) == 0
    rows = as_run_rows(capsys.readouterr().out)
    assert [(r["clip_id"], r["event"], r["origin"]) for r in rows] == [
        (f"{SLUG}-000001", "aired", "replay"),
        (f"{SLUG}-000002", "skipped", ""),
    ]
    assert rows[0]["started_at_utc"] == "2026-12-04T12:00:00.000+00:00"
    assert (rows[0]["seconds"], rows[0]["stream_start"], rows[0]["stream_end"]) == (
        "4.000",
        "-86400.000",
        "-86396.000",
    )
    assert rows[1]["reason"] == 'taken down: "wrong", really'
    assert main(["as-run", SLUG, "--since", "2026-12-05"]) == 0
    assert len(as_run_rows(capsys.readouterr().out)) == 1
    with pytest.raises(SystemExit):
        main(["as-run", SLUG, "--since", "yesterday"])
    with pytest.raises(
        SystemExit, match="no as-run log of .no-such-channel.*there are: test-llamas"
    ):
        main(["as-run", "no-such-channel"])


def test_the_as_run_asset_puts_each_channels_day_in_the_bucket(tmp_path, seaweedfs, media_store):
    from webtv_dagster.defs.air.as_run import as_run_log

    data_dir = tmp_path / "data"
    log = AsRunLog(PlayoutFolder.of(data_dir, SLUG).as_run, 31)
    recorder = AsRunRecorder(log, SLUG)
    schedule = [scheduled(1, 0.0), scheduled(2, 4.0, requested_by="bob"), scheduled(3, 8.0)]
    schedule[2] = schedule[2].model_copy(update={"clip_id": "ident", "origin": "ident"})
    yesterday = NOON - 86400  # a day's partition exists once the day is over
    recorder.sent(schedule, 12.0, yesterday + 12.0)
    recorder.skipped(f"{SLUG}-000004", "taken down", yesterday + 12)
    stale = as_run_key(SLUG, "2026-10-01")  # past the retention of 31 days
    media_store.put_bytes(stale, b"old", "text/csv")
    resources = clip_resources(seaweedfs, media_store.bucket, TEST_CHANNELS, data_dir=data_dir)
    result = dg.materialize([as_run_log], partition_key="2026-12-04", resources=resources)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("as_run_log")
    metadata = materialization.metadata
    assert metadata["channels"].value == 1 and metadata[f"{SLUG}_entries"].value == 4
    summary = metadata["summary"].value
    assert f"| {SLUG} | 2 | 0 | 0 | 1 | 1 | 0.00 | 4 | - |" in summary
    rows = as_run_rows(media_store.get_bytes(as_run_key(SLUG, "2026-12-04")).decode())
    assert [r["clip_id"] for r in rows] == [
        f"{SLUG}-000001",
        f"{SLUG}-000002",
        "ident",
        f"{SLUG}-000004",
    ]
    assert [o.key for o in media_store.list_objects(f"channels/{SLUG}/as-run/")] == [
        as_run_key(SLUG, "2026-12-04")
    ]


def test_a_restart_finds_where_the_log_ended_from_the_files_end(tmp_path):
    """The last clip aired is found reading back from the file's end, however many refusals
    were written after it (more than the first piece read), and in an earlier day's file."""
    from webtv_dagster.playout.as_run import TAIL_BYTES

    folder = tmp_path / "as-run"
    log = AsRunLog(folder, 31)
    recorder = AsRunRecorder(log, SLUG)
    recorder.sent([scheduled(1, 0.0), scheduled(2, 4.0)], 8.0, NOON - 86400 + 8.0)
    assert AsRunLog(folder, 31).last_stream_end() == 8.0  # yesterday's file
    refusal = "its copy does not match its record " * 20
    for n in range(TAIL_BYTES // len(refusal) * 2):
        recorder.skipped(f"{SLUG}-{n + 3:06d}", refusal, NOON + n)
    assert log.path("2026-12-05").stat().st_size > 2 * TAIL_BYTES
    recorder.sent([scheduled(9, 8.0)], 12.0, NOON - 86400 + 12.0)
    for n in range(TAIL_BYTES // len(refusal) * 2):
        recorder.skipped(f"{SLUG}-{n + 10:06d}", refusal, NOON - 86400 + 20 + n)
    assert AsRunRecorder(AsRunLog(folder, 31), SLUG).logged_through == 12.0
