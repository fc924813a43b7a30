"""The air on Kubernetes: one pod that holds nginx (RTMP/HLS), the viewer service and every
channel's playout, as `webtv up` runs them on one host.

They must share a pod: a playout publishes to nginx on 127.0.0.1 and nginx takes publishing
from loopback only; nginx proxies the viewer's API to the viewer service's Unix socket in the
data folder; and nginx serves the playouts' state files from it. The pod's containers share
its network and one data volume. Dagster (its webserver, daemon and run pods) runs from the
official Helm chart (deploy/kubernetes/values.yaml); the two meet in S3 only.
"""

from __future__ import annotations

from typing import Any

from webtv_dagster.settings import Settings

DATA_DIR = "/data"
CHANNELS_DIR = "/etc/webtv"
# What the pods read: the settings and the secrets the Helm chart's pods read too.
CONFIG_MAP, SECRET, CHANNELS_CONFIG_MAP = "webtv-config", "webtv-secrets", "webtv-channels"


def _container(name: str, image: str, args: list[str], settings: Settings) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "args": args,
        "env": [
            {"name": "WEBTV_DATA_DIR", "value": DATA_DIR},
            {"name": "WEBTV_CHANNELS_FILE", "value": f"{CHANNELS_DIR}/channels.yaml"},
            {"name": "WEBTV_HTTP_LISTEN", "value": "0.0.0.0"},
            {"name": "WEBTV_RTMP_PORT", "value": str(settings.rtmp_port)},
            {"name": "WEBTV_HLS_PORT", "value": str(settings.hls_port)},
        ],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}, {"secretRef": {"name": SECRET}}],
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "channels", "mountPath": CHANNELS_DIR, "readOnly": True},
        ],
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def air_manifests(slugs: list[str], image: str, settings: Settings) -> list[dict[str, Any]]:
    """The Deployment of the air pod (one replica: a playout lock is per machine) and the
    Service in front of its viewer port."""

    def labels() -> dict[str, str]:  # a copy each time: no YAML anchors in the output
        return {"app.kubernetes.io/name": "webtv-air"}

    rtmp = _container("rtmp-server", image, ["rtmp-server"], settings)
    rtmp["ports"] = [{"name": "http", "containerPort": settings.hls_port}]
    # Hung, not only dead: the same HTTP probe the watchdog makes.
    rtmp["livenessProbe"] = {
        "httpGet": {"path": "/channels.json", "port": "http"},
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "failureThreshold": 3,
    }
    containers = [
        rtmp,
        _container("viewer-service", image, ["viewer-service"], settings),
        # /metrics, /healthz and /readyz behind nginx (no watchdog of `webtv up` here).
        _container("monitoring", image, ["monitoring"], settings),
        *(_container(f"playout-{slug}", image, ["playout", slug], settings) for slug in slugs),
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "webtv-air", "labels": labels()},
        "spec": {
            "replicas": 1,
            # Never two pods at once: the new one starts when the old one has stopped.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels()},
            "template": {
                "metadata": {"labels": labels()},
                "spec": {
                    "containers": containers,
                    "volumes": [
                        # The cache of clips and the state: rebuilt from S3 after a move.
                        {"name": "data", "emptyDir": {}},
                        {"name": "channels", "configMap": {"name": CHANNELS_CONFIG_MAP}},
                    ],
                    "terminationGracePeriodSeconds": int(settings.stop_grace_seconds) + 10,
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "webtv-air", "labels": labels()},
        "spec": {
            "selector": labels(),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    return [deployment, service]
