"""ValidatingAdmissionPolicies for tests: the API server itself refusing what we write.

A real refusal (422, the policy's message in the Status) is how the tests
show that a refused write is told apart from a stale read, and that one
refused event never fails the others. The policy and its binding share a
name and apply in one namespace only, so tests never refuse each other.
"""

from __future__ import annotations

import contextlib
from typing import Any

from imagestream.kube.client import Kube
from imagestream.kube.errors import NotFound
from imagestream.kube.resources import Resource

VALIDATING_ADMISSION_POLICIES = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicies",
    "ValidatingAdmissionPolicy",
    namespaced=False,
)
VALIDATING_ADMISSION_POLICY_BINDINGS = Resource(
    "admissionregistration.k8s.io",
    "v1",
    "validatingadmissionpolicybindings",
    "ValidatingAdmissionPolicyBinding",
    namespaced=False,
)


async def refuse_in_namespace(
    kube: Kube,
    *,
    name: str,
    namespace: str,
    rule: dict[str, Any],
    expression: str,
    message: str,
    operations: tuple[str, ...] = ("UPDATE",),
) -> None:
    """Refuse `operations` (UPDATEs) matching `rule` in `namespace` unless `expression`
    (CEL) holds."""
    await kube.create(
        VALIDATING_ADMISSION_POLICIES,
        None,
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{**rule, "operations": list(operations)}]},
                "validations": [{"expression": expression, "message": message}],
            },
        },
    )
    await kube.create(
        VALIDATING_ADMISSION_POLICY_BINDINGS,
        None,
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    )


async def remove_policy(kube: Kube, name: str) -> None:
    for resource in (VALIDATING_ADMISSION_POLICY_BINDINGS, VALIDATING_ADMISSION_POLICIES):
        with contextlib.suppress(NotFound):
            await kube.delete(resource, None, name)
