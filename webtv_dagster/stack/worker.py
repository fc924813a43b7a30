"""A Celery worker for the run steps of WEBTV_EXECUTOR=celery deployments (`webtv worker`): it
executes steps taken from the broker's `dagster` queue, against the settings' Dagster
instance."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from webtv_dagster.settings import Settings, child_environment
from webtv_dagster.stack.instance import dagster_home


def become_worker(settings: Settings, name: str, concurrency: int) -> None:
    """Replaces this process with a Celery worker named `name` running `concurrency` steps at
    once (signals then reach Celery directly)."""
    # dagster_celery.app reads its broker from a module named dagster_celery_config.
    config_dir = (settings.data_dir / "celery" / name).resolve()
    config_dir.mkdir(parents=True, exist_ok=True)
    backend = settings.celery_backend or settings.celery_broker
    (config_dir / "dagster_celery_config.py").write_text(
        f"broker_url = {settings.celery_broker!r}\nresult_backend = {backend!r}\n"
    )
    # The jobs it reconstructs run their steps on Celery too.
    settings = settings.model_copy(
        update={"executor": "celery", "dagster_home": dagster_home(settings)}
    )
    environment = child_environment(settings)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(config_dir), environment.get("PYTHONPATH")])
    )
    pool = ["--pool", "solo"] if concurrency == 1 else ["--concurrency", str(concurrency)]
    celery = str(Path(sys.executable).with_name("celery"))
    command = [
        celery,
        "-A",
        "dagster_celery.app",
        "worker",
        "-Q",
        "dagster",
        "-n",
        f"{name}@%h",
        "--prefetch-multiplier=1",
        "--loglevel",
        "INFO",
        *pool,
    ]
    print(f"webtv: worker {name} on the `dagster` queue of the Celery broker", flush=True)
    os.execve(celery, command, environment)
