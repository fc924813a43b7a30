"""The code location: the definitions under webtv_dagster/defs, with the resources, executor
and clip schedules made from the settings, read once where the location loads; what Dagster
keeps records of (every job and asset loaded, for retention); and the policy every asset
shares (its owners), applied once here."""

from pathlib import Path

import dagster as dg

from webtv_dagster.channels import load_channels
from webtv_dagster.defs.clip_production.schedules import clip_schedules
from webtv_dagster.defs.resources import executor, resources_for
from webtv_dagster.lib.resources import DagsterHistory
from webtv_dagster.settings import Settings

OWNERS = ["team:webtv"]


def build_definitions(settings: Settings) -> dg.Definitions:
    """Everything Dagster runs for these settings (tests build theirs with their own)."""
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    definitions = dg.Definitions.merge(
        loaded,
        dg.Definitions(
            resources={**resources_for(settings), "dagster_history": DagsterHistory.of(loaded)},
            executor=executor(settings),
            schedules=clip_schedules(load_channels(settings.channels_file)),
        ),
    )
    return definitions.map_resolved_asset_specs(
        func=lambda spec: spec.replace_attributes(owners=OWNERS)
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
