"""The code location's resources and executor, made from the settings it read once (the
resource classes are lib/resources.py's)."""

import dagster as dg
from pydantic import SecretStr

from webtv_dagster.lib.resources import AlertWebhook, S3MediaStorage, Studio
from webtv_dagster.production.previews import public_base_url
from webtv_dagster.settings import Settings


def _secret(value: SecretStr | None, variable: str) -> dg.EnvVar | None:
    # Set secrets stay EnvVars, so their values never show in the UI; unset S3 keys fall back
    # to boto3's own chain (instance roles, ~/.aws).
    return dg.EnvVar(variable) if value is not None and value.get_secret_value() else None


def executor(settings: Settings) -> dg.ExecutorDefinition:
    """Where a run's steps execute. In process by default: clip runs parallelize across clips
    inside each step, and a process per step only adds start-up time. Celery spreads the steps
    of every run over workers on other machines (`webtv worker`), Kubernetes over pods, with
    media in S3 and the instance in PostgreSQL."""
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        backend = settings.celery_backend or settings.celery_broker
        return celery_executor.configured({"broker": settings.celery_broker, "backend": backend})
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        # A pod per step, with the run pod's image and environment (deploy/kubernetes).
        return k8s_job_executor.configured({"max_concurrent": 8})
    if settings.executor == "multiprocess":
        # A forkserver forks each step from a process that has imported Dagster already.
        return dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}})
    return dg.in_process_executor


def resources_for(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The code location's resources, from the settings it read once."""
    return {
        "media_storage": S3MediaStorage(
            public_url=public_base_url(settings),
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=_secret(settings.aws_access_key_id, "AWS_ACCESS_KEY_ID"),
            secret_access_key=_secret(settings.aws_secret_access_key, "AWS_SECRET_ACCESS_KEY"),
        ),
        "alert_webhook": AlertWebhook(
            url=_secret(settings.alert_webhook_url, "WEBTV_ALERT_WEBHOOK_URL") or "",
            apprise_urls=_secret(settings.alert_urls, "WEBTV_ALERT_URLS") or "",
        ),
        "studio": Studio.from_settings(settings),
    }
