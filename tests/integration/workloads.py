"""Builders for the workloads the trigger tests apply, as OpenShift manifests write them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from imagestream.kube.resources import CRONJOBS, DAEMONSETS, DEPLOYMENTS, STATEFULSETS, Resource

TRIGGERS = "image.openshift.io/triggers"


def trigger(
    stream_tag: str,
    container: str,
    *,
    init: bool = False,
    paused: bool = False,
    namespace: str | None = None,
    kind: str = "Deployment",
) -> dict[str, Any]:
    prefix = "spec.jobTemplate.spec.template.spec" if kind == "CronJob" else "spec.template.spec"
    field = "initContainers" if init else "containers"
    source: dict[str, Any] = {"kind": "ImageStreamTag", "name": stream_tag}
    if namespace:
        source["namespace"] = namespace
    entry: dict[str, Any] = {
        "from": source,
        "fieldPath": f'{prefix}.{field}[?(@.name=="{container}")].image',
    }
    if paused:
        entry["paused"] = True
    return entry


def pod_spec(containers: Sequence[str], init_containers: Sequence[str] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {
        # OpenShift manifests use a single space until the trigger fills the image.
        "containers": [{"name": name, "image": " "} for name in containers],
    }
    if init_containers:
        spec["initContainers"] = [{"name": name, "image": " "} for name in init_containers]
    return spec


def workload(
    kind: str,
    name: str,
    triggers: list[dict[str, Any]] | str | None,
    containers: Sequence[str],
    init_containers: Sequence[str] = (),
) -> dict[str, Any]:
    labels = {"app": name}
    template = {"metadata": {"labels": labels}, "spec": pod_spec(containers, init_containers)}
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if triggers is not None:
        value = triggers if isinstance(triggers, str) else json.dumps(triggers)
        metadata["annotations"] = {TRIGGERS: value}
    if kind == "CronJob":
        template["spec"]["restartPolicy"] = "Never"
        return {
            "apiVersion": "batch/v1",
            "kind": kind,
            "metadata": metadata,
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": True,
                "jobTemplate": {"spec": {"template": template}},
            },
        }
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": template}
    if kind in ("Deployment", "StatefulSet"):
        spec["replicas"] = 1
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata, "spec": spec}


RESOURCES: dict[str, Resource] = {
    "Deployment": DEPLOYMENTS,
    "StatefulSet": STATEFULSETS,
    "DaemonSet": DAEMONSETS,
    "CronJob": CRONJOBS,
}


def images(obj: dict[str, Any], *, init: bool = False) -> dict[str, str]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    containers = spec["template"]["spec"].get("initContainers" if init else "containers") or []
    return {c["name"]: c.get("image", "") for c in containers}


def imagestream(name: str, tags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": name},
        "spec": {"tags": tags or []},
    }


async def move_tag(
    kube: Any,
    namespace: str,
    stream: str,
    tag: str,
    reference: str,
    digest: str,
    *,
    attempts: int = 10,
) -> None:
    """Record a tag event as a push would (a status write), re-reading on conflict."""
    from datetime import UTC, datetime

    from imagestream.imagestreams import TagEvent, copy_for_write, record
    from imagestream.kube.errors import Conflict
    from imagestream.kube.resources import IMAGESTREAMS
    from imagestream.timestamps import rfc3339_micro

    for _ in range(attempts):
        current = await kube.get(IMAGESTREAMS, namespace, stream)
        body = copy_for_write(current)
        record(
            body,
            tag,
            TagEvent(
                created=rfc3339_micro(datetime.now(UTC)),
                docker_image_reference=f"{reference}@{digest}",
                image=digest,
                generation=current["metadata"]["generation"],
            ),
        )
        try:
            await kube.replace(IMAGESTREAMS, namespace, stream, body, subresource="status")
            return
        except Conflict:
            continue
    raise AssertionError(f"could not move {namespace}/{stream}:{tag} in {attempts} attempts")
