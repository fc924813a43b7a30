"""Viewers' shot requests: one durable, bounded queue per channel, fed by the web viewer and the
chat bots, moderated before anything is made, and drawn from by the prompt stage.

A request is `pending` (waiting for an operator), `approved` (queued for a clip), `scheduled`
(a clip is being made of it: `clip_id`) or `refused` (with the reason and who decided). Every
decision is kept with its reason and decider. Refusals for flooding (rate limit, full queue)
are answered but not stored, so a flood cannot grow the database; what is stored is bounded by
the per-client rate and trimmed by `prune` (the hourly retention job).

The queue is a SQLite database in the data folder (WAL, so the viewer service, chat bots,
sensors and runs on the host share it), written in short transactions.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from webtv_dagster.backends.moderator import (
    MAX_IDEA_CHARACTERS,
    JudgeError,
    Moderator,
    channel_word_list,
    clean_text,
)
from webtv_dagster.channels import Channel
from webtv_dagster.clips import ClipId

MAX_NAME_CHARACTERS = 32
ANONYMOUS = "a viewer"
HISTORY_SECONDS = 30 * 86_400  # decided requests kept this long ...
HISTORY_PER_CHANNEL = 20_000  # ... and at most this many per channel

Status = Literal["pending", "approved", "scheduled", "refused"]
Source = Literal["web", "chat"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    source TEXT NOT NULL,
    client TEXT NOT NULL,
    requester TEXT NOT NULL,
    idea TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    decided_by TEXT NOT NULL,
    received_at REAL NOT NULL,
    decided_at REAL,
    clip_id TEXT UNIQUE,
    announced_at REAL
);
CREATE INDEX IF NOT EXISTS requests_by_status ON requests (channel, status, decided_at);
CREATE INDEX IF NOT EXISTS requests_by_client ON requests (channel, client, received_at);
CREATE TABLE IF NOT EXISTS salt (value BLOB NOT NULL);
"""


class ShotRequest(BaseModel):
    id: str
    channel: str
    source: Source
    requester: str
    idea: str
    status: Status
    reason: str
    decided_by: str
    received_at: float
    decided_at: float | None = None
    clip_id: str | None = None
    announced_at: float | None = None


class Submission(BaseModel):
    """What a requester is told."""

    accepted: bool
    status: Status | Literal["rate_limited", "queue_full", "closed"]
    message: str
    request_id: str | None = None


def is_request_slot(number: int, share: float) -> bool:
    """Whether clip `number` may air a request: `share` of the clip numbers, spread evenly
    (0.25: every fourth), so that no chat can take the channel over."""
    return int(number * share + 1e-9) > int((number - 1) * share + 1e-9)


def request_slots(after: int, share: float, count: int) -> list[int]:
    """The next `count` clip numbers after `after` that may air a request."""
    slots, number = [], after
    while len(slots) < count:
        number += 1
        if is_request_slot(number, share):
            slots.append(number)
    return slots


class RequestQueueUnavailable(RuntimeError):
    """The queue's database cannot be used now (its disk is full, or it is locked for longer
    than the wait): nothing was changed; try again later."""


class RequestQueue:
    """Every channel's requests, in the SQLite database at `path`."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
                db.executescript(SCHEMA)
        except sqlite3.OperationalError as error:
            raise RequestQueueUnavailable(f"the request queue {path}: {error}") from None
        with self._connection(immediate=True) as db:
            if db.execute("SELECT COUNT(*) FROM salt").fetchone()[0] == 0:
                db.execute("INSERT INTO salt VALUES (?)", (secrets.token_bytes(32),))
            self._salt = db.execute("SELECT value FROM salt").fetchone()[0]
        path.chmod(0o600)  # viewers' names and ideas

    @contextlib.contextmanager
    def _connection(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        """A transaction; SQLite's operational failures (a full disk, a lock held too long)
        are RequestQueueUnavailable, and roll it back."""
        try:
            with self._transaction(immediate) as db:
                yield db
        except sqlite3.OperationalError as error:
            raise RequestQueueUnavailable(f"the request queue {self.path}: {error}") from None

    @contextlib.contextmanager
    def _transaction(self, immediate: bool) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def client_key(self, client: str) -> str:
        """A client's address or chat login as stored: keyed hash, not the address itself."""
        return hmac.new(self._salt, client.encode(), hashlib.sha256).hexdigest()[:24]

    def submit(
        self,
        channel: Channel,
        idea: str,
        requester: str,
        source: Source,
        client: str,
        moderators: Sequence[Moderator],
        now: float | None = None,
    ) -> Submission:
        """Takes a viewer's idea: refused politely if requests are closed, the viewer asks too
        often or the queue is full; then moderated (each moderator in turn, the first refusal
        wins) and stored as approved (auto approval), pending (operator approval, or a judge
        that did not answer) or refused, with the reason."""
        now = time.time() if now is None else now
        policy = channel.requests
        if not policy.enabled:
            return Submission(
                accepted=False, status="closed", message=f"{channel.title} does not take requests"
            )
        idea = clean_text(idea, MAX_IDEA_CHARACTERS + 1)
        requester = clean_text(requester, MAX_NAME_CHARACTERS) or ANONYMOUS
        client = self.client_key(client)
        refusal = self._flood_refusal(channel, client, now)
        if refusal is not None:
            return refusal
        status: Status = "approved" if policy.approval == "auto" else "pending"
        reason, decided_by = "passed moderation", "auto approval"
        if policy.approval == "operator":
            reason, decided_by = "waiting for an operator", ""
        # The name is shown beside the idea (the viewer, the guide, XMLTV, chat): the same word
        # list. A refused name is not kept.
        blocked = channel_word_list(channel).first_match(requester)
        if blocked is not None:
            status, decided_by = "refused", "word list"
            reason = f"the name contains {blocked!r}, which this channel does not show"
            requester, moderators = ANONYMOUS, []
        for moderator in moderators:
            try:
                verdict = moderator.judge(idea, channel)
            except JudgeError as error:
                status, reason, decided_by = "pending", f"held for an operator: {error}", ""
                break
            if not verdict.allowed:
                status, reason, decided_by = "refused", verdict.reason, verdict.decided_by
                break
        request = ShotRequest(
            id=secrets.token_hex(6),
            channel=channel.slug,
            source=source,
            requester=requester,
            idea=idea,
            status=status,
            reason=reason,
            decided_by=decided_by,
            received_at=now,
            decided_at=now if decided_by else None,
        )
        with self._connection(immediate=True) as db:
            # Checked again in the write transaction: others may have queued meanwhile.
            refusal = self._flood_refusal(channel, client, now, db)
            if refusal is not None:
                return refusal
            db.execute(
                "INSERT INTO requests (id, channel, source, client, requester, idea, status, "
                "reason, decided_by, received_at, decided_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    request.id,
                    request.channel,
                    source,
                    client,
                    requester,
                    idea,
                    status,
                    reason,
                    decided_by,
                    now,
                    request.decided_at,
                ),
            )
        return Submission(
            accepted=status != "refused",
            status=status,
            request_id=request.id,
            message={
                "approved": "Thanks! Your idea is in the queue.",
                "pending": "Thanks! A moderator will look at your idea.",
                "refused": f"Sorry, not this one: {reason}.",
            }[status],
        )

    def _flood_refusal(
        self, channel: Channel, client: str, now: float, db: sqlite3.Connection | None = None
    ) -> Submission | None:
        policy = channel.requests
        with contextlib.ExitStack() as stack:
            db = db or stack.enter_context(self._connection())
            recent = db.execute(
                "SELECT COUNT(*), MIN(received_at) FROM requests "
                "WHERE channel = ? AND client = ? AND received_at > ?",
                (channel.slug, client, now - policy.per_client_seconds),
            ).fetchone()
            waiting = db.execute(
                "SELECT COUNT(*) FROM requests WHERE channel = ? AND status IN "
                "('pending', 'approved')",
                (channel.slug,),
            ).fetchone()[0]
        if recent[0] >= policy.per_client:
            wait = recent[1] + policy.per_client_seconds - now
            return Submission(
                accepted=False,
                status="rate_limited",
                message=f"You have sent {recent[0]} ideas lately; try again in "
                f"{max(1, round(wait))} s.",
            )
        if waiting >= policy.max_queue:
            return Submission(
                accepted=False,
                status="queue_full",
                message=f"The queue is full ({waiting} ideas waiting); try again later.",
            )
        return None

    def decide(
        self, request_id: str, approve: bool, reason: str, decided_by: str, now: float | None = None
    ) -> ShotRequest:
        """An operator's decision on a pending request (or a refusal of an approved one not yet
        made into a clip)."""
        reason = clean_text(reason, 300) or ("approved" if approve else "refused by an operator")
        with self._connection(immediate=True) as db:
            request = self._get(db, request_id)
            if request is None:
                raise KeyError(f"no shot request {request_id!r}")
            allowed = {"pending"} if approve else {"pending", "approved"}
            if request.status not in allowed:
                raise ValueError(
                    f"request {request_id} is {request.status}; it cannot be "
                    + ("approved" if approve else "refused")
                )
            status = "approved" if approve else "refused"
            db.execute(
                "UPDATE requests SET status = ?, reason = ?, decided_by = ?, decided_at = ? "
                "WHERE id = ?",
                (status, reason, decided_by, time.time() if now is None else now, request_id),
            )
            return self._get(db, request_id)

    def claim(self, channel: Channel, clip: ClipId) -> ShotRequest | None:
        """The request the clip is made of: the one it already holds (a rerun), else, if the
        clip is a request slot, the oldest approved request, now scheduled on it."""
        with self._connection(immediate=True) as db:
            held = db.execute("SELECT * FROM requests WHERE clip_id = ?", (clip.key,)).fetchone()
            if held is not None:
                return ShotRequest(**dict(held))
            if not channel.requests.enabled or not is_request_slot(
                clip.number, channel.requests.share
            ):
                return None
            row = db.execute(
                "SELECT id FROM requests WHERE channel = ? AND status = 'approved' "
                "ORDER BY decided_at, received_at LIMIT 1",
                (channel.slug,),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE requests SET status = 'scheduled', clip_id = ? WHERE id = ?",
                (clip.key, row["id"]),
            )
            return self._get(db, row["id"])

    def release(self, clip_ids: Sequence[str]) -> list[str]:
        """Puts the requests of clips that failed back at the front of the queue (they keep
        their place: the order is by decision time), so that another clip is made of them;
        returns their ids."""
        if not clip_ids:
            return []
        marks = ",".join("?" * len(clip_ids))
        with self._connection(immediate=True) as db:
            rows = db.execute(
                f"UPDATE requests SET status = 'approved', clip_id = NULL WHERE status = "
                f"'scheduled' AND clip_id IN ({marks}) RETURNING id",
                tuple(clip_ids),
            ).fetchall()
        return [row[0] for row in rows]

    def get(self, request_id: str) -> ShotRequest | None:
        with self._connection() as db:
            return self._get(db, request_id)

    @staticmethod
    def _get(db: sqlite3.Connection, request_id: str) -> ShotRequest | None:
        row = db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        return ShotRequest(**{k: row[k] for k in row.keys() if k != "client"}) if row else None

    def listed(
        self, slug: str, statuses: Sequence[Status], limit: int = 100, newest: bool = False
    ) -> list[ShotRequest]:
        """The channel's requests in these statuses, oldest first (queue order), or the newest
        first."""
        marks = ",".join("?" * len(statuses))
        order = "decided_at DESC, received_at DESC" if newest else "decided_at, received_at"
        with self._connection() as db:
            rows = db.execute(
                f"SELECT * FROM requests WHERE channel = ? AND status IN ({marks}) "
                f"ORDER BY decided_at IS NULL, {order} LIMIT ?",
                (slug, *statuses, limit),
            ).fetchall()
        return [ShotRequest(**{k: row[k] for k in row.keys() if k != "client"}) for row in rows]

    def of_clips(self, clip_ids: Sequence[str]) -> dict[str, ShotRequest]:
        """The requests these clips are made of, by clip id."""
        if not clip_ids:
            return {}
        marks = ",".join("?" * len(clip_ids))
        with self._connection() as db:
            rows = db.execute(
                f"SELECT * FROM requests WHERE clip_id IN ({marks})", tuple(clip_ids)
            ).fetchall()
        requests = [ShotRequest(**{k: r[k] for k in r.keys() if k != "client"}) for r in rows]
        return {request.clip_id: request for request in requests}

    def mark_announced(self, request_id: str, now: float | None = None) -> None:
        with self._connection(immediate=True) as db:
            db.execute(
                "UPDATE requests SET announced_at = ? WHERE id = ?",
                (time.time() if now is None else now, request_id),
            )

    def prune(self, now: float | None = None) -> int:
        """Forgets decided requests older than HISTORY_SECONDS, and each channel's oldest beyond
        HISTORY_PER_CHANNEL; waiting ones are kept. Returns how many were forgotten."""
        now = time.time() if now is None else now
        with self._connection(immediate=True) as db:
            gone = db.execute(
                "DELETE FROM requests WHERE status IN ('refused', 'scheduled') AND decided_at < ?",
                (now - HISTORY_SECONDS,),
            ).rowcount
            channels = [row[0] for row in db.execute("SELECT DISTINCT channel FROM requests")]
            for slug in channels:
                gone += db.execute(
                    "DELETE FROM requests WHERE id IN (SELECT id FROM requests WHERE channel = ? "
                    "AND status IN ('refused', 'scheduled') ORDER BY decided_at DESC "
                    "LIMIT -1 OFFSET ?)",
                    (slug, HISTORY_PER_CHANNEL),
                ).rowcount
        return gone
