"""The code location: the definitions under webtv_dagster/defs, with the resources, executor
and clip schedules made from the settings, read once where the location loads."""

from pathlib import Path

import dagster as dg

from webtv_dagster.channels import load_channels
from webtv_dagster.defs.resources import executor, resources_for
from webtv_dagster.defs.schedules import clip_schedules
from webtv_dagster.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster runs for these settings (tests build theirs with their own)."""
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(
            resources=resources_for(settings),
            executor=executor(settings),
            schedules=clip_schedules(load_channels(settings.channels_file)),
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
