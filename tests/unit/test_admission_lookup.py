"""Image lookup (webhook/admission/lookup.py): which names resolve, and to what."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.admission.lookup import RESOLVE_NAMES, local_names, resolve, rewrite, unresolved

DIGEST = "sha256:" + "cd" * 32
REFERENCE = f"quay.io/team/app@{DIGEST}"


def stream(*, local: bool = True, policy: str = "Source", repository: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {
        "tags": [
            {
                "tag": "v1",
                "items": [{"dockerImageReference": REFERENCE, "image": DIGEST, "created": "x"}],
            }
        ]
    }
    if repository:
        status["dockerImageRepository"] = repository
    return {
        "metadata": {"name": "app"},
        "spec": {
            "lookupPolicy": {"local": local},
            "tags": [{"name": "v1", "referencePolicy": {"type": policy}}],
        },
        "status": status,
    }


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("app:v1", REFERENCE),
        ("app", None),  # latest has no image and the stream no repository
        (f"app@{DIGEST}", REFERENCE),
        ("app:v2", None),
        ("docker.io/app:v1", None),
        ("team/app:v1", None),
        ("localhost:5000/app:v1", None),
        ("App:v1", None),
    ],
)
def test_resolve(image: str, expected: str | None) -> None:
    assert resolve(image, stream(), force=False) == expected


def test_local_reference_policy_pulls_through_the_integrated_registry() -> None:
    found = stream(policy="Local", repository="registry.local:5000/ns/app")
    assert resolve("app:v1", found, force=False) == f"registry.local:5000/ns/app@{DIGEST}"
    # A tag without an image yet points at the stream's repository, never at Docker Hub.
    assert resolve("app:v9", found, force=False) == "registry.local:5000/ns/app:v9"


def test_policy_off_resolves_only_when_forced() -> None:
    assert resolve("app:v1", stream(local=False), force=False) is None
    assert resolve("app:v1", stream(local=False), force=True) == REFERENCE


def pod(*images: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"annotations": annotations or {}},
        "spec": {
            "initContainers": [{"name": "init", "image": images[0]}],
            "containers": [{"name": f"c{i}", "image": i_} for i, i_ in enumerate(images)],
        },
    }


def test_rewrite_pod_and_templates() -> None:
    out = rewrite(pod("app:v1", "nginx:1"), "Pod", {"app": stream()})
    assert out is not None
    assert [c["image"] for c in out["spec"]["containers"]] == [REFERENCE, "nginx:1"]
    assert out["spec"]["initContainers"][0]["image"] == REFERENCE
    assert local_names(pod("app:v1", "nginx:1", "a/b:1"), "Pod") == {"app", "nginx"}
    cronjob = {"spec": {"jobTemplate": {"spec": {"template": pod("app:v1")}}}}
    rewritten = rewrite(cronjob, "CronJob", {"app": stream()})
    assert rewritten is not None
    template = rewritten["spec"]["jobTemplate"]["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == REFERENCE


def test_annotation_on_the_template_forces_resolution() -> None:
    template = pod("app:v1", annotations={RESOLVE_NAMES: "*"})
    deployment = {"metadata": {}, "spec": {"template": template}}
    out = rewrite(deployment, "Deployment", {"app": stream(local=False)})
    assert out is not None
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == REFERENCE
    assert rewrite(pod("app:v1"), "Pod", {"app": stream(local=False)}) is None


def test_nothing_to_change_is_none() -> None:
    assert rewrite(pod("nginx"), "Pod", {}) is None
    assert rewrite({"spec": {}}, "Service", {"app": stream()}) is None


def test_unresolved_names_are_read_again() -> None:
    names = unresolved(pod("app:v1", "base:1"), "Pod", {"app": stream(local=False)})
    assert names == {"app"}
    assert unresolved(pod("app:v1"), "Pod", {"app": stream()}) == set()
