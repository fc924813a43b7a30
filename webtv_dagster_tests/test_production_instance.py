"""The production instance: the project's settings with PostgreSQL storage, against a real
PostgreSQL started by the test."""

import dagster as dg
import psycopg2

from webtv_dagster.defs.clip_production.assets import shot_prompt
from webtv_dagster.stack.instance import write_instance_yaml

from .conftest import TEST_CHANNELS, clip_resources


def test_clips_are_made_on_postgres_storage_with_the_queue_and_limits(
    postgres, seaweedfs, media_store, tmp_path, monkeypatch
):
    for variable, value in postgres.items():
        monkeypatch.setenv(variable, value)
    home = tmp_path / "dagster-home"
    written = write_instance_yaml(home, postgres=True).read_text()
    assert postgres["DAGSTER_PG_PASSWORD"] not in written  # read from the environment

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 4 and queue.tag_concurrency_limits
        assert instance.run_monitoring_enabled

        key = "test-llamas-000001"
        instance.add_dynamic_partitions("clips", [key])
        resources = clip_resources(seaweedfs, media_store.bucket, TEST_CHANNELS)
        result = dg.materialize(
            [shot_prompt], partition_key=key, instance=instance, resources=resources
        )
        assert result.success

    # What Dagster recorded lives in PostgreSQL.
    connection = psycopg2.connect(
        host="127.0.0.1", port=int(postgres["DAGSTER_PG_PORT"]), user="dagster", dbname="dagster"
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchone() == ("SUCCESS",)
        cursor.execute("SELECT partition FROM dynamic_partitions")
        assert (key,) in cursor.fetchall()
    connection.close()
