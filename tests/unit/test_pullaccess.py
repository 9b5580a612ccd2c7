"""The image-puller rule's bookkeeping (behaviour 16): what is asked, what is remembered
for how long, and the policy the planners get. The reviews themselves are the API
server's (tests/integration/test_image_puller.py asks the real one)."""

from __future__ import annotations

import pytest

from controller.triggers.outcomes import Reason
from controller.triggers.pullaccess import (
    PullAccess,
    PullAnswers,
    Reviewer,
    denial_message,
    grant_hint,
    pull_access,
    service_account_groups,
)
from controller.triggers.resolve import resolve_image_stream_tag
from imagestream.kube.authorization import Review
from imagestream.kube.errors import Terminal


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reviewer(allowed: set[tuple[str, str, str]], asked: list[tuple[str, str, str]]) -> Reviewer:
    async def review(namespace: str, stream_namespace: str, stream: str) -> Review:
        asked.append((namespace, stream_namespace, stream))
        return Review(allowed=(namespace, stream_namespace, stream) in allowed)

    return review


def test_the_question_is_the_registrys_for_every_service_account_of_the_namespace() -> None:
    access = pull_access("openshift", "httpd")
    assert access.to_json() == {
        "verb": "get",
        "group": "image.openshift.io",
        "resource": "imagestreams",
        "subresource": "layers",
        "namespace": "openshift",
        "name": "httpd",
    }
    # A RoleBinding to system:authenticated (OpenShift's `openshift` namespace) or to
    # the namespace's service-account group must both count.
    assert service_account_groups("app") == (
        "system:serviceaccounts",
        "system:serviceaccounts:app",
        "system:authenticated",
    )


def test_the_warning_names_the_rolebinding_in_both_spellings() -> None:
    assert grant_hint("app", "openshift") == (
        "kubectl create rolebinding app-image-puller --clusterrole=system:image-puller"
        " --group=system:serviceaccounts:app -n openshift"
        " (oc: oc policy add-role-to-group system:image-puller system:serviceaccounts:app"
        " -n openshift)"
    )
    assert denial_message("app", "openshift", "redis").startswith(
        "the service accounts of namespace 'app' may not pull from ImageStream openshift/redis"
    )


async def test_same_namespace_is_never_asked_and_answers_are_kept_for_the_ttl() -> None:
    asked: list[tuple[str, str, str]] = []
    clock = Clock()
    access = PullAccess(
        review=reviewer({("app", "openshift", "httpd")}, asked), ttl_s=10.0, clock=clock
    )
    answers = await access.answers("app", ["app/own", "openshift/httpd", "openshift/redis"])
    assert asked == [("app", "openshift", "httpd"), ("app", "openshift", "redis")]
    assert answers.namespace_allowed("app", "app", "own")
    assert answers.namespace_allowed("app", "openshift", "httpd")
    assert not answers.namespace_allowed("app", "openshift", "redis")
    assert answers.denied == (("openshift", "redis"),)
    assert answers.recheck_after_s == 10.0

    clock.now += 9.9
    await access.answers("app", ["openshift/httpd", "openshift/redis"])
    assert len(asked) == 2, "answers younger than the TTL are not asked again"
    clock.now += 0.2
    again = await access.answers("app", ["openshift/redis"])
    assert asked[2:] == [("app", "openshift", "redis")]
    assert again.denied == (("openshift", "redis"),)


async def test_all_allowed_asks_for_no_recheck() -> None:
    asked: list[tuple[str, str, str]] = []
    access = PullAccess(review=reviewer({("app", "shared", "s")}, asked))
    answers = await access.answers("app", ["shared/s"])
    assert answers.denied == () and answers.recheck_after_s is None


async def test_no_check_allows_everything_and_asks_nothing() -> None:
    answers = await PullAccess.allow_all_namespaces().answers("app", ["other/s"])
    assert answers.namespace_allowed("app", "other", "s")
    assert answers.recheck_after_s is None


def test_a_denied_stream_is_never_read_and_says_how_to_allow_it() -> None:
    read: list[tuple[str, str]] = []

    def get_stream(namespace: str, name: str) -> None:
        read.append((namespace, name))

    answers = PullAnswers(namespace="app", denied=(("openshift", "redis"),))
    resolved = resolve_image_stream_tag(
        workload_namespace="app",
        stream_namespace="openshift",
        stream="redis",
        tag="7-el9",
        get_stream=get_stream,
        namespace_allowed=answers.namespace_allowed,
    )
    assert not isinstance(resolved, str)
    assert resolved.reason is Reason.NAMESPACE_NOT_ALLOWED
    assert "--clusterrole=system:image-puller --group=system:serviceaccounts:app" in (
        resolved.message
    )
    assert read == []


def test_answers_for_one_namespace_do_not_allow_another() -> None:
    answers = PullAnswers(namespace="app", allowed=frozenset({("openshift", "redis")}))
    assert not answers.namespace_allowed("elsewhere", "openshift", "redis")


async def test_a_failed_review_raises_and_is_not_remembered_as_a_refusal() -> None:
    calls: list[str] = []

    async def failing(namespace: str, stream_namespace: str, stream: str) -> Review:
        calls.append(stream)
        if len(calls) == 1:
            raise Terminal("403: localsubjectaccessreviews is forbidden", status=403)
        return Review(allowed=True)

    access = PullAccess(review=failing)
    with pytest.raises(Terminal):
        await access.answers("app", ["openshift/httpd"])
    # The next reconcile asks again (nothing was guessed) and gets the real answer.
    answers = await access.answers("app", ["openshift/httpd"])
    assert answers.namespace_allowed("app", "openshift", "httpd")
    assert calls == ["httpd", "httpd"]
