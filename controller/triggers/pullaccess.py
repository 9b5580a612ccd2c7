"""OpenShift's image-puller rule for cross-namespace references (behaviour 16,
docs/openshift-behaviours.md#behaviour-16).

An object in namespace A (a triggered workload, a DeploymentConfig, a BuildConfig) may
follow an ImageStream in namespace B when the service accounts of A may pull from that
stream: `get` on `imagestreams/layers` (group `image.openshift.io`) of the stream in B.
That is the question OpenShift's registry asks of every pull, and what the default
`system:image-puller` RoleBinding of each namespace (to the group
`system:serviceaccounts:<namespace>`) and `oc policy add-role-to-group` grant. We ask it
once, as a (local) SubjectAccessReview in B for the groups every service account of A
carries, before
the planner resolves the trigger; the planner gets the answers as input and stays pure.

Invariants:
- Same-namespace references are never reviewed: a namespace may always follow its own
  streams.
- An answer is remembered for `ttl_s` (per A, B and stream), so a thousand workloads in
  A following one stream in B cost one review per TTL, and a RoleBinding added or
  removed is seen within the TTL. A reconcile that found a denial comes back after the
  TTL (`recheck_after_s`), so a grant takes effect without a restart and without any
  other change to the object: within one TTL plus one requeue.
- A review that fails (API error) raises; the reconcile backs off and no trigger is
  reported "not allowed" on a guess.
- `PullAccess.allow_all()` (`--allow-cross-namespace-triggers`) asks nothing and allows
  everything, as OpenShift's trigger controller, which makes no such check.

Failure it prevents: a workload in one namespace following (and so being able to run)
images of a namespace its service accounts could not pull from, and its opposite, the
official templates (BuildConfigs and Deployments following `openshift/*` streams)
silently doing nothing on a cluster that grants the pull.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

import structlog

from controller.events import EventRecorder
from imagestream.caches import BoundedCache
from imagestream.kube.authorization import ResourceAccess, Review, review_access
from imagestream.kube.client import Kube
from imagestream.objects import Obj, uid_of

log = structlog.get_logger(__name__)

PULLER_ROLE: Final = "system:image-puller"
DEFAULT_TTL_S: Final = 30.0
ANSWERS_REMEMBERED_MAX: Final = 10_000
"""(A, B, stream) answers kept; forgetting one costs one review."""

Reviewer = Callable[[str, str, str], Awaitable[Review]]
"""`review(workload_namespace, stream_namespace, stream)`: may A's service accounts pull?"""


def service_account_groups(namespace: str) -> tuple[str, ...]:
    """The groups every service account of `namespace` is authenticated with."""
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated")


def pull_access(stream_namespace: str, stream: str) -> ResourceAccess:
    """What pulling from a stream takes, as OpenShift's registry asks it."""
    return ResourceAccess(
        verb="get",
        group="image.openshift.io",
        resource="imagestreams",
        subresource="layers",
        namespace=stream_namespace,
        name=stream,
    )


def grant_hint(workload_namespace: str, stream_namespace: str) -> str:
    """The RoleBinding that would allow it, in kubectl's and in oc's spelling."""
    group = f"system:serviceaccounts:{workload_namespace}"
    return (
        f"kubectl create rolebinding {workload_namespace}-image-puller"
        f" --clusterrole={PULLER_ROLE} --group={group} -n {stream_namespace}"
        f" (oc: oc policy add-role-to-group {PULLER_ROLE} {group} -n {stream_namespace})"
    )


def denial_message(workload_namespace: str, stream_namespace: str, stream: str) -> str:
    """One sentence for a Warning Event: what is missing and how to grant it."""
    return (
        f"the service accounts of namespace {workload_namespace!r} may not pull from"
        f" ImageStream {stream_namespace}/{stream} (get imagestreams/layers); to allow"
        f" it: {grant_hint(workload_namespace, stream_namespace)}"
    )


@dataclass(frozen=True)
class PullAnswers:
    """What one reconcile decides with: the reviewed answers for one namespace. Pure."""

    namespace: str
    allowed: frozenset[tuple[str, str]] = frozenset()
    """(stream namespace, stream) pairs A may follow."""
    denied: tuple[tuple[str, str], ...] = ()
    allow_all: bool = False
    recheck_after_s: float | None = None
    """Set when something was denied: when to look again (the answers' TTL)."""

    def namespace_allowed(
        self, workload_namespace: str, stream_namespace: str, stream: str
    ) -> bool:
        """A `NamespacePolicy`: may `stream_namespace/stream` trigger this object?"""
        if self.allow_all or workload_namespace == stream_namespace:
            return True
        return workload_namespace == self.namespace and (stream_namespace, stream) in self.allowed


@dataclass
class PullAccess:
    """The reviews, remembered for `ttl_s`. `review=None`: no check (allow everything)."""

    review: Reviewer | None
    ttl_s: float = DEFAULT_TTL_S
    clock: Callable[[], float] = time.monotonic
    _answers: BoundedCache[tuple[str, str, str], tuple[float, bool]] = field(
        default_factory=lambda: BoundedCache(ANSWERS_REMEMBERED_MAX)
    )
    """(A, B, stream) -> (when it was asked, allowed)."""

    @classmethod
    def reviewing(cls, kube: Kube, *, ttl_s: float = DEFAULT_TTL_S) -> PullAccess:
        async def review(workload_namespace: str, stream_namespace: str, stream: str) -> Review:
            return await review_access(
                kube,
                pull_access(stream_namespace, stream),
                groups=service_account_groups(workload_namespace),
            )

        return cls(review=review, ttl_s=ttl_s)

    @classmethod
    def allow_all_namespaces(cls) -> PullAccess:
        return cls(review=None)

    async def answers(self, namespace: str, stream_keys: Iterable[str]) -> PullAnswers:
        """The answers for an object in `namespace` following `namespace/stream` keys.

        Raises the API error of a review that failed (`imagestream.kube.errors`).
        """
        if self.review is None:
            return PullAnswers(namespace=namespace, allow_all=True)
        allowed: set[tuple[str, str]] = set()
        denied: list[tuple[str, str]] = []
        for key in sorted(set(stream_keys)):
            stream_namespace, _, stream = key.partition("/")
            if stream_namespace == namespace or not stream:
                continue
            if await self._allowed(namespace, stream_namespace, stream):
                allowed.add((stream_namespace, stream))
            else:
                denied.append((stream_namespace, stream))
        return PullAnswers(
            namespace=namespace,
            allowed=frozenset(allowed),
            denied=tuple(denied),
            recheck_after_s=self.ttl_s if denied else None,
        )

    async def _allowed(self, namespace: str, stream_namespace: str, stream: str) -> bool:
        assert self.review is not None
        key = (namespace, stream_namespace, stream)
        now = self.clock()
        remembered = self._answers.get(key)
        if remembered is not None and now - remembered[0] < self.ttl_s:
            return remembered[1]
        answer = await self.review(namespace, stream_namespace, stream)
        self._answers.put(key, (now, answer.allowed))
        log.info(
            "pull_access_reviewed",
            namespace=namespace,
            imagestream=f"{stream_namespace}/{stream}",
            allowed=answer.allowed,
            reason=answer.reason,
            evaluation_error=answer.evaluation_error,
        )
        return answer.allowed


@dataclass
class DenialNotices:
    """One Warning per stream an object newly may not follow, not one per reconcile.

    For objects whose plan has no per-trigger outcomes (BuildConfigs); the trigger loop
    reports denials as trigger outcomes (`controller.triggers.warnings`). Remembered by
    object key and uid, so a recreated object is told again; forgetting one (bounded)
    costs one repeated Warning.
    """

    events: EventRecorder
    _said: BoundedCache[str, tuple[str, frozenset[tuple[str, str]]]] = field(
        default_factory=lambda: BoundedCache(ANSWERS_REMEMBERED_MAX)
    )

    async def announce(self, key: str, obj: Obj, answers: PullAnswers) -> None:
        uid = uid_of(obj)
        remembered = self._said.get(key)
        said = remembered[1] if remembered is not None and remembered[0] == uid else frozenset()
        denied = frozenset(answers.denied)
        self._said.put(key, (uid, denied))
        for stream_namespace, stream in sorted(denied - said):
            log.info(
                "pull_access_denied",
                key=key,
                imagestream=f"{stream_namespace}/{stream}",
            )
            await self.events.post(
                obj,
                type_="Warning",
                reason="TriggerNamespaceNotAllowed",
                action="Resolve",
                note=denial_message(answers.namespace, stream_namespace, stream),
            )
