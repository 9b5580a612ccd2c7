"""DeploymentConfig builders and waits shared by the rollout and build tests."""

from __future__ import annotations

from typing import Any

from imagestream.kube.client import Kube
from imagestream.kube.resources import DEPLOYMENTCONFIGS, REPLICATIONCONTROLLERS
from tests.integration.conftest import eventually

Obj = dict[str, Any]


def dc_manifest(
    name: str,
    *,
    image: str = "example/app:1",
    image_triggers: list[Obj] = (),  # type: ignore[assignment]
    replicas: int = 1,
    strategy: Obj | None = None,
    config_change: bool = True,
    **spec: Any,
) -> Obj:
    containers = [{"name": "web", "image": image}]
    body: Obj = {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"app": name},
            "triggers": ([{"type": "ConfigChange"}] if config_change else [])
            + list(image_triggers),
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}},
            **spec,
        },
    }
    if strategy is not None:
        body["spec"]["strategy"] = strategy
    return body


def image_change(stream_tag: str, *, automatic: bool = True) -> Obj:
    return {
        "type": "ImageChange",
        "imageChangeParams": {
            "automatic": automatic,
            "containerNames": ["web"],
            "from": {"kind": "ImageStreamTag", "name": stream_tag},
        },
    }


async def versions(kube: Kube, namespace: str, name: str) -> dict[str, Obj]:
    rcs, _ = await kube.list(
        REPLICATIONCONTROLLERS,
        namespace,
        label_selector=f"openshift.io/deployment-config.name={name}",
    )
    return {rc["metadata"]["name"]: rc for rc in rcs}


def phase(rc: Obj) -> str:
    return str(rc["metadata"]["annotations"].get("openshift.io/deployment.phase", ""))


def condition(dc: Obj, type_: str) -> Obj:
    return next((c for c in dc.get("status", {}).get("conditions") or [] if c["type"] == type_), {})


async def rolled_out(kube: Kube, namespace: str, name: str, version: int) -> Obj:
    """Wait until `version` is the latest, its RC is Complete and the status says so."""

    async def check() -> Obj | None:
        dc = await kube.get(DEPLOYMENTCONFIGS, namespace, name)
        rc = (await versions(kube, namespace, name)).get(f"{name}-{version}")
        done = (
            dc.get("status", {}).get("latestVersion") == version
            and rc is not None
            and phase(rc) == "Complete"
            and condition(dc, "Progressing").get("reason") == "NewReplicationControllerAvailable"
            and condition(dc, "Progressing")
            .get("message", "")
            .startswith(f'replication controller "{name}-{version}"')
        )
        return dc if done else None

    return await eventually(check, what=f"{namespace}/{name} version {version} rolled out")


async def change_template(kube: Kube, namespace: str, name: str, value: str) -> None:
    """A pod template change (ConfigChange), as `oc set env` would make one."""
    await kube.patch(
        DEPLOYMENTCONFIGS,
        namespace,
        name,
        {"spec": {"template": {"metadata": {"annotations": {"change": value}}}}},
    )
