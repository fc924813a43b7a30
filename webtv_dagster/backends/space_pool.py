"""Calling a pool of duplicated Gradio Spaces through gradio_client.

Public Spaces get crowded, paused and slow. Each call has a timeout; a Space that errors,
refuses, is paused or times out is skipped for the next one in the pool; after a full pass
the pool waits (exponential backoff with jitter) and tries again, and after `rounds` passes
the call fails with every Space's reason. Calls into one pool are bounded per process.
"""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gradio_client import Client, handle_file

from webtv_dagster.backends.model_call import ModelCall
from webtv_dagster.model_endpoints import GradioSpacePool
from webtv_dagster.secrets import mask_text, mask_url, url_secrets

DOWNLOADS = Path(tempfile.gettempdir()) / "webtv-gradio-downloads"
_semaphores: dict[str, threading.Semaphore] = {}
_clients: dict[str, Client] = {}
_in_flight: dict[str, int] = {}  # calls this process has running on each Space
_lock = threading.Lock()


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


def result_file(result: Any) -> Path:
    """The local file in a Space's answer: a path, {video|path|name: ...} or the first item."""
    if isinstance(result, str | Path) and Path(result).is_file():
        return Path(result)
    if isinstance(result, Mapping):
        for key in ("video", "path", "name", "value"):
            if result.get(key):
                return result_file(result[key])
    if isinstance(result, list | tuple) and result:
        return result_file(result[0])
    raise SpaceOutputError(f"the Space answered {str(result)[:200]!r}, which holds no file")


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


class SpacePool:
    def __init__(
        self,
        name: str,
        config: GradioSpacePool,
        token: str | None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.name = name
        self.config = config
        self._token = token
        self._sleep = sleep
        with _lock:
            self._semaphore = _semaphores.setdefault(
                name, threading.Semaphore(config.max_concurrent_calls)
            )
        # Start each pool at a random Space so that processes spread their load.
        self._turn = itertools.count(random.randrange(len(config.spaces)))

    def _client(self, space: str) -> Client:
        with _lock:
            client = _clients.get(space)
        if client is None:
            client = Client(
                space,
                token=self._token,
                verbose=False,
                download_files=str(DOWNLOADS),
                httpx_kwargs={"timeout": self.config.timeout_seconds},
            )
            with _lock:
                _clients[space] = client
        return client

    @staticmethod
    def _reserve_least_busy(candidates: list[str]) -> str:
        """The candidate with the fewest calls running (earliest on ties), counted as busy.

        A Space's queue takes work even while busy, so calls must be spread here."""
        with _lock:
            space = min(candidates, key=lambda candidate: _in_flight.get(candidate, 0))
            _in_flight[space] = _in_flight.get(space, 0) + 1
        return space

    def _call_space(self, space: str, inputs: list[Any]) -> Path:
        call = self.config.call
        try:
            job = self._client(space).submit(
                *inputs, api_name=call.api_name, fn_index=call.fn_index
            )
            try:
                return result_file(job.result(timeout=self.config.timeout_seconds))
            except TimeoutError:
                job.cancel()
                raise TimeoutError(f"no answer within {self.config.timeout_seconds:g} s") from None
        except BaseException:
            with _lock:  # the Space may have restarted: reconnect next time
                _clients.pop(space, None)
            raise

    def fetch(self, values: Mapping[str, Any], receive: Callable[[Path], None]) -> ModelCall:
        """Calls the pool and hands the answer's file to `receive`, then deletes the download."""
        answer, call = self.call(values)
        try:
            receive(answer)
        finally:
            answer.unlink(missing_ok=True)
        return call

    def call(self, values: Mapping[str, Any]) -> tuple[Path, ModelCall]:
        """Calls the pool's endpoint with the inputs filled from `values`; returns the file."""
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
                    space = self._reserve_least_busy(untried)
                    untried.remove(space)
                    try:
                        path = self._call_space(space, inputs)
                        shown = mask_url(space)
                        return path, ModelCall(backend=self.name, endpoint=shown, attempts=attempts)
                    except Exception as error:  # any failure of one Space moves on to the next
                        reasons[mask_url(space)] = mask_text(_describe(error), url_secrets(space))
                    finally:
                        with _lock:
                            _in_flight[space] -= 1
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
