"""Calling a pool of duplicated Gradio Spaces through gradio_client.

Public Spaces get crowded, paused and slow. Each call has a timeout; a Space that errors,
refuses, is paused or times out is skipped for the next one in the pool; after a full pass
the pool waits (exponential backoff with jitter) and tries again, and after `rounds` passes
the call fails with every Space's reason. Calls into one pool are bounded, and spread over
its Spaces, per `SpaceConnections`: the state that the pools of one `ModelBackends` share
(backends/registry.py), which closes it with them.

An answer is hostile until checked: its file is fetched from the Space's own origin only (never
read from a path the answer names), streamed to a size cap, then held to the stage's media
limits before anything decodes it; an answer out of bounds counts as that Space's failure and the
call moves on to the next replica.
"""

from __future__ import annotations

import itertools
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from gradio_client import Client, handle_file

from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.media.limits import MediaLimits, check_media
from webtv_dagster.model_endpoints import GradioSpacePool
from webtv_dagster.secrets import mask_text, mask_url, url_secrets

DOWNLOADS = Path(tempfile.gettempdir()) / "webtv-gradio-downloads"


class SpacesUnavailable(RuntimeError):
    """Every Space of a pool failed; the message has each one's last reason."""


class SpaceOutputError(ValueError):
    """A Space answered with something that is not the file we asked for."""


def fill_inputs(template: list[Any], values: Mapping[str, Any]) -> list[Any]:
    """Replaces {placeholders}: a lone "{name}" keeps the value's type, files become uploads."""
    filled = []
    for item in template:
        if isinstance(item, str) and item.startswith("{") and item.endswith("}"):
            name = item[1:-1]
            if name not in values:
                known = ", ".join(sorted(values))
                raise KeyError(f"unknown input placeholder {item!r} (known: {known})")
            value = values[name]
            filled.append(handle_file(str(value)) if isinstance(value, Path) else value)
        elif isinstance(item, str) and "{" in item:
            filled.append(item.format_map(values))
        else:
            filled.append(item)
    return filled


def result_url(result: Any) -> str:
    """The URL of the file in a Space's answer: {video|path|name|value: FileData} or the first
    item; a FileData is {"url": ..., ...}."""
    if isinstance(result, Mapping):
        if isinstance(result.get("url"), str):
            return result["url"]
        for key in ("video", "audio", "path", "name", "value"):
            if result.get(key):
                return result_url(result[key])
    if isinstance(result, list | tuple) and result:
        return result_url(result[0])
    raise SpaceOutputError(f"the Space answered {str(result)[:200]!r}, which holds no file")


# What a Space's answer may say of the call beside its file (a JSON output), and how long a
# text may be: anything else in it is dropped.
ANSWER_DETAILS = ("model", "device", "dtype", "steps", "seconds", "image_conditioned")


def answer_details(result: Any) -> dict[str, str | int | float | bool]:
    """The call's details from an answer of (file, {details}), checked: known keys, plain
    values, short texts."""
    if not isinstance(result, list | tuple) or len(result) < 2 or not isinstance(result[1], dict):
        return {}
    details: dict[str, str | int | float | bool] = {}
    for key in ANSWER_DETAILS:
        value = result[1].get(key)
        if not isinstance(value, str | int | float):  # bool is an int
            continue
        details[key] = value[:40] if isinstance(value, str) else value
    return details


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def download_answer(client: Client, url: str, max_bytes: int, timeout: float) -> Path:
    """Streams the answer's file from the Space's own origin, refusing one past `max_bytes`
    (counted as the bytes arrive, never compressed on the wire where a few bytes can inflate to
    gigabytes) and one that takes longer than `timeout` in all."""
    if _origin(url) != _origin(client.src):
        raise SpaceOutputError("the answer's file is not on the Space's own server")
    suffix = re.sub(r"[^a-z0-9]", "", Path(urlsplit(url).path).suffix.lower())[:5]
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    path = DOWNLOADS / f"{uuid.uuid4().hex}.{suffix or 'bin'}"
    deadline = time.monotonic() + timeout
    received = 0
    try:
        headers = {**client.headers, "Accept-Encoding": "identity"}
        with (
            httpx.stream("GET", url, headers=headers, timeout=timeout) as response,
            path.open("wb") as file,
        ):
            response.raise_for_status()
            if response.headers.get("content-encoding", "identity") != "identity":
                raise SpaceOutputError("the answer's file came compressed, which was not asked")
            for chunk in response.iter_raw():
                received += len(chunk)
                if received > max_bytes:
                    raise SpaceOutputError(f"the answer's file is over {max_bytes / 1e6:g} MB")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the answer's file took over {timeout:g} s to fetch")
                file.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


class SpaceConnections:
    """What the Space pools of one owner share: a gradio client per Space, the calls running on
    each Space, and each pool's bound on the calls it has running at once. The owner (the
    `ModelBackends` that `build_backends` made) closes it when its work is done; a closed one
    connects again if it is called."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: dict[str, Client] = {}
        self._in_flight: dict[str, int] = {}  # calls running on each Space
        self._bounds: dict[str, threading.Semaphore] = {}

    def bound(self, pool: str, max_calls: int) -> threading.Semaphore:
        """The semaphore that bounds the calls into `pool` (the first pool of a name sets it)."""
        with self._lock:
            return self._bounds.setdefault(pool, threading.Semaphore(max_calls))

    def client(self, space: str, token: str | None, timeout: float) -> Client:
        """The Space's client, connected on first use."""
        with self._lock:
            client = self._clients.get(space)
        if client is None:
            client = Client(
                space,
                token=token,
                verbose=False,
                download_files=False,  # fetched by download_answer, bounded
                httpx_kwargs={"timeout": timeout},
            )
            with self._lock:
                self._clients[space] = client
        return client

    def forget(self, space: str) -> None:
        """Drops the Space's client (it may have restarted): the next call connects again."""
        with self._lock:
            self._clients.pop(space, None)

    def reserve_least_busy(self, candidates: list[str]) -> str:
        """The candidate with the fewest calls running (earliest on ties), counted as busy
        until `release`.

        A Space's queue takes work even while busy, so calls must be spread here."""
        with self._lock:
            space = min(candidates, key=lambda candidate: self._in_flight.get(candidate, 0))
            self._in_flight[space] = self._in_flight.get(space, 0) + 1
        return space

    def release(self, space: str) -> None:
        with self._lock:
            self._in_flight[space] -= 1

    def close(self) -> None:
        """Closes every client (each holds a heartbeat thread to its Space)."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> SpaceConnections:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class SpacePool:
    def __init__(
        self,
        name: str,
        config: GradioSpacePool,
        token: str | None,
        connections: SpaceConnections,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.config = config
        self._token = token
        self.connections = connections
        self._sleep = sleep
        self._semaphore = connections.bound(name, config.max_concurrent_calls)
        # Start each pool at a random Space so that processes spread their load.
        self._turn = itertools.count(random.randrange(len(config.spaces)))

    def _call_space(
        self, space: str, inputs: list[Any], limits: MediaLimits | None
    ) -> tuple[Path, dict[str, str | int | float | bool]]:
        call, timeout = self.config.call, self.config.timeout_seconds
        try:
            client = self.connections.client(space, self._token, timeout)
            job = client.submit(*inputs, api_name=call.api_name, fn_index=call.fn_index)
            try:
                result = job.result(timeout=timeout)
            except TimeoutError:
                job.cancel()
                raise TimeoutError(f"no answer within {timeout:g} s") from None
            max_bytes = int(self.config.max_answer_mb * 1e6)
            answer = download_answer(client, result_url(result), max_bytes, timeout)
            if limits is not None:
                try:
                    check_media(answer, limits)
                except BaseException:
                    answer.unlink(missing_ok=True)
                    raise
            return answer, answer_details(result)
        except BaseException:
            self.connections.forget(space)
            raise

    def fetch(
        self,
        values: Mapping[str, Any],
        limits: MediaLimits,
        receive: Callable[[Path], None],
    ) -> ModelCall:
        """Calls the pool and hands the answer's file, within `limits`, to `receive`; then
        deletes the download."""
        answer, call = self.call(values, limits)
        try:
            receive(answer)
        finally:
            answer.unlink(missing_ok=True)
        return call

    def call(
        self, values: Mapping[str, Any], limits: MediaLimits | None = None
    ) -> tuple[Path, ModelCall]:
        """Calls the pool's endpoint with the inputs filled from `values`; returns the file, the
        first answer within `limits`."""
        inputs = fill_inputs(self.config.call.inputs, values)
        spaces = self.config.spaces
        reasons: dict[str, str] = {}
        attempts = 0
        for round_index in range(self.config.rounds):
            start = next(self._turn) % len(spaces)
            untried = spaces[start:] + spaces[:start]
            while untried:
                attempts += 1
                with self._semaphore:
                    space = self.connections.reserve_least_busy(untried)
                    untried.remove(space)
                    try:
                        path, details = self._call_space(space, inputs, limits)
                        shown = mask_url(space)
                        call = ModelCall(
                            backend=self.name, endpoint=shown, attempts=attempts, details=details
                        )
                        return path, call
                    except Exception as error:  # any failure of one Space moves on to the next
                        reasons[mask_url(space)] = mask_text(_describe(error), url_secrets(space))
                    finally:
                        self.connections.release(space)
            if round_index + 1 < self.config.rounds:
                delay = self.config.backoff_seconds * 2**round_index
                self._sleep(delay * random.uniform(1.0, 1.5))
        details = "; ".join(f"{space}: {why}" for space, why in reasons.items())
        raise SpacesUnavailable(
            f"{self.config.family} pool {self.name!r}: every Space failed "
            f"{self.config.rounds} time(s) ({attempts} attempts): {details}"
        )


class SpaceBackend:
    """Base of the backends that run on a pool of Spaces; `name` is the model's name."""

    def __init__(self, pool: SpacePool):
        self.pool = pool
        self.name = pool.name
