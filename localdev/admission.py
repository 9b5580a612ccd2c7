"""Registering our admission webhooks with a local control plane (`imagestream dev`, tests).

The chart registers them with a `service:` clientConfig (charts/.../templates/
admission-webhooks.yaml); here the API server runs on this host and reaches the webhook on
loopback, so the clientConfig is a `url:`. The webhooks, their rules and their failure
policies are the chart's (docs/admission.md#failure-policy): change one, change both.

The `caBundle` is left out: the webhook process keeps it (webhook/admission/tls.py), and a
server-side apply from here never takes it away, since this field manager never owns it.
"""

from __future__ import annotations

import contextlib
from typing import Any

from imagestream.kube.client import APPLY_PATCH, Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import (
    MUTATING_WEBHOOK_CONFIGURATIONS,
    VALIDATING_WEBHOOK_CONFIGURATIONS,
)

FIELD_MANAGER = "imagestream-localdev"
WORKLOADS = [
    ("", ["pods", "replicationcontrollers"]),
    ("apps", ["deployments", "statefulsets", "daemonsets", "replicasets"]),
    ("batch", ["jobs", "cronjobs"]),
    ("apps.openshift.io", ["deploymentconfigs"]),
]


def _rule(group: str, resources: list[str]) -> dict[str, Any]:
    return {
        "apiGroups": [group],
        "apiVersions": ["*"] if group in ("", "apps", "batch") else ["v1"],
        "resources": resources,
        "operations": ["CREATE", "UPDATE"],
        "scope": "Namespaced",
    }


def _webhook(
    name: str,
    url: str,
    rules: list[dict[str, Any]],
    failure_policy: str,
    namespace_selector: dict[str, Any] | None,
) -> dict[str, Any]:
    webhook: dict[str, Any] = {
        "name": name,
        "clientConfig": {"url": url},
        "rules": rules,
        "failurePolicy": failure_policy,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "timeoutSeconds": 5,
        "matchPolicy": "Equivalent",
    }
    if namespace_selector is not None:
        webhook["namespaceSelector"] = namespace_selector
    return webhook


def webhook_configurations(
    name: str,
    base_url: str,
    *,
    namespace_selector: dict[str, Any] | None = None,
    lookup_namespace_selector: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Mutating- and ValidatingWebhookConfiguration named `name`, calling `base_url`.

    `lookup_namespace_selector` (default: `namespace_selector`) limits image lookup, which
    sees every Pod: `imagestream dev` keeps it out of kube-system.
    """
    lookup_selector = lookup_namespace_selector or namespace_selector
    defaults = f"{base_url}/admission/defaults"
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            _webhook(
                "imagestreams.defaults.imagestream-controller.io",
                defaults,
                [_rule("image.openshift.io", ["imagestreams"])],
                "Ignore",
                namespace_selector,
            ),
            _webhook(
                "builds-deployments.defaults.imagestream-controller.io",
                defaults,
                [
                    _rule("build.openshift.io", ["buildconfigs", "builds"]),
                    _rule("apps.openshift.io", ["deploymentconfigs"]),
                ],
                "Fail",
                namespace_selector,
            ),
            _webhook(
                "image-lookup.imagestream-controller.io",
                f"{base_url}/admission/image-lookup",
                [_rule(group, resources) for group, resources in WORKLOADS],
                "Ignore",
                lookup_selector,
            ),
        ],
    }
    validating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            _webhook(
                "imagestreams.validate.imagestream-controller.io",
                f"{base_url}/admission/validate",
                [_rule("image.openshift.io", ["imagestreams"])],
                "Ignore",
                namespace_selector,
            ),
        ],
    }
    return mutating, validating


async def register_admission(
    kube: Kube,
    name: str,
    base_url: str,
    *,
    namespace_selector: dict[str, Any] | None = None,
    lookup_namespace_selector: dict[str, Any] | None = None,
) -> None:
    mutating, validating = webhook_configurations(
        name,
        base_url,
        namespace_selector=namespace_selector,
        lookup_namespace_selector=lookup_namespace_selector,
    )
    for resource, body in (
        (MUTATING_WEBHOOK_CONFIGURATIONS, mutating),
        (VALIDATING_WEBHOOK_CONFIGURATIONS, validating),
    ):
        await kube.patch(
            resource,
            None,
            name,
            body,
            patch_type=APPLY_PATCH,
            field_manager=FIELD_MANAGER,
            force=True,
        )


async def unregister_admission(kube: Kube, name: str) -> None:
    for resource in (MUTATING_WEBHOOK_CONFIGURATIONS, VALIDATING_WEBHOOK_CONFIGURATIONS):
        with contextlib.suppress(NotFound):
            await kube.delete(resource, None, name)
