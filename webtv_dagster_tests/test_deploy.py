"""The Kubernetes deployment's Dagster settings (deploy/kubernetes/values.yaml) are valid for the
pinned dagster-k8s, and its run limits cover the same tags as the project's dagster.yaml."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from dagster._config import process_config
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_k8s import K8sRunLauncher, k8s_job_executor

from webtv_dagster.defs.resources import executor
from webtv_dagster.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
VALUES = yaml.safe_load((ROOT / "deploy/kubernetes/values.yaml").read_text())


def snake(value):
    """Helm values are camelCase; the instance configuration the chart renders is snake_case."""
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)(?=[A-Z])", "_", k).lower(): snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(item) for item in value]
    return value


def test_the_run_launcher_config_is_valid():
    launcher = snake(VALUES["runLauncher"]["config"]["k8sRunLauncher"])
    # The chart renders config map and secret references as their names, in the run pods'
    # namespace and image (filled by the chart from the user deployment).
    launcher["env_config_maps"] = [ref["name"] for ref in launcher["env_config_maps"]]
    launcher["env_secrets"] = [ref["name"] for ref in launcher["env_secrets"]]
    launcher.update(
        instance_config_map="dagster-instance",
        service_account_name="dagster",
        dagster_home="/opt/dagster/dagster_home",
    )
    assert process_config(K8sRunLauncher.config_type(), launcher).success
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"


def test_the_run_queue_limits_are_valid_and_cover_the_project_tags():
    queue = snake(VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"])
    for limit in queue["tag_concurrency_limits"]:  # values of limits stay as Dagster spells them
        if isinstance(limit.get("value"), dict):
            limit["value"] = {"applyLimitPerUniqueValue": True}
    assert process_config(QueuedRunCoordinator.config_type(), queue).success
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    project_keys = {
        limit["key"] for limit in project["concurrency"]["runs"]["tag_concurrency_limits"]
    }
    assert {limit["key"] for limit in queue["tag_concurrency_limits"]} == project_keys


def test_steps_run_as_kubernetes_jobs_with_the_k8s_executor():
    chosen = executor(Settings(executor="k8s"))
    assert chosen.name == k8s_job_executor.name
    assert process_config(k8s_job_executor.config_schema.config_type, {"max_concurrent": 8}).success
    deployment = VALUES["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "webtv_dagster.definitions", "-a", "defs"]


def test_the_air_pod_holds_nginx_and_every_playout_and_its_manifests_validate():
    """The playout publishes to nginx on 127.0.0.1 and nginx takes publishing from loopback
    only: they share a pod, its network and its data volume. Validated offline against the
    Kubernetes schemas that kubernetes-validate ships (strict: no unknown fields)."""
    import kubernetes_validate

    from webtv_dagster.channels import load_channels

    from .conftest import TEST_CHANNELS

    printed = subprocess.run(
        [sys.executable, "-m", "webtv_dagster.cli", "kubernetes-air", "--image", "reg/webtv:1"],
        env={**os.environ, "WEBTV_CHANNELS_FILE": str(TEST_CHANNELS)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    manifests = list(yaml.safe_load_all(printed))
    version = kubernetes_validate.utils.latest_version()
    for manifest in manifests:
        kubernetes_validate.validate(manifest, version, strict=True)
    deployment, service = manifests
    pod = deployment["spec"]["template"]["spec"]
    names = [container["name"] for container in pod["containers"]]
    slugs = [channel.slug for channel in load_channels(TEST_CHANNELS).channels]
    assert names == [
        "rtmp-server",
        "viewer-service",
        "monitoring",
        *(f"playout-{slug}" for slug in slugs),
    ]
    for container in pod["containers"]:
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        assert mounts["data"] == "/data"
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["WEBTV_DATA_DIR"] == "/data" and env["WEBTV_HTTP_LISTEN"] == "0.0.0.0"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert service["spec"]["ports"][0]["targetPort"] == "http"
