"""What the node tests of the cluster's pull secrets share: an account whose pull Secret the
controller listed, a Deployment run by that account, and the kubelet's refusal to pull.

One copy so that both tests (a registry configured by hand, the operator's registry) wait
for and read the same things the same way.
"""

from __future__ import annotations

from typing import Any

from controller.serviceaccounts.plan import SECRET_REF_ANNOTATION
from imagestream.kube.client import Kube
from imagestream.kube.resources import SERVICEACCOUNTS
from tests.integration.conftest import eventually
from tests.integration.nodecluster import NodeCluster, app_deployment


async def fresh_account(kube: Kube, namespace: str, name: str, timeout_s: float = 120.0) -> str:
    """A new ServiceAccount; the name of the pull Secret the controller listed in it."""
    await kube.create(SERVICEACCOUNTS, namespace, {"metadata": {"name": name}})

    async def listed() -> str | None:
        account = await kube.get(SERVICEACCOUNTS, namespace, name)
        ref = (account["metadata"].get("annotations") or {}).get(SECRET_REF_ANNOTATION)
        names = [e.get("name") for e in account.get("imagePullSecrets") or []]
        return ref if ref in names else None

    return await eventually(listed, timeout_s=timeout_s, what=f"{namespace}/{name}'s pull secret")


def account_deployment(name: str, image: str, account: str) -> dict[str, Any]:
    """The app Deployment run by `account`, pulling every time (no image cached by the node)."""
    deployment = app_deployment(name, image)
    pod = deployment["spec"]["template"]["spec"]
    pod["serviceAccountName"] = account
    pod["containers"][0]["imagePullPolicy"] = "Always"
    return deployment


def pull_refused(cluster: NodeCluster, namespace: str, name: str) -> str | None:
    """The waiting reason of the app's pod once the kubelet failed to pull."""
    for pod in cluster.get("-n", namespace, "pods", "-l", f"app={name}")["items"]:
        for status in pod.get("status", {}).get("containerStatuses") or []:
            waiting = status.get("state", {}).get("waiting") or {}
            if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff"):
                return str(waiting.get("message", waiting["reason"]))
    return None
