"""From parsed push records to persisted ImageStream tag events.

The webhook's promise is "acknowledged means persisted": `Intake.apply()`
returns only after every tag it moves is written (or found already
written), and raises `IntakeUnavailable` when that cannot be done within the
write budget, so the handler answers 503 and the sender retries. Recording
the same push again changes nothing, which is what makes those retries, and
every at-least-once sender, safe.

An `integrated` receiver speaks for the integrated registry alone: the host
it records is always `--integrated-registry`, and a payload naming any other
host is acknowledged and ignored (`not_integrated_registry`). Otherwise one
authenticated request could point a stream, and every workload following
it, at a host of the sender's choosing.

A payload's push time is evidence, not truth: "a late event never moves a
tag back" compares push times, so the time recorded is bounded by the time
of receipt (`bounded_push_time`). A time after receipt counts as receipt
time, or one event claiming a push in 2099 would pin its tag against every
real push until then; a time older than any sender redelivers
(`PUSH_TIME_MAX_AGE`) is a zero or reset clock and counts as receipt time
too, or a real push from that sender would never move a tag (and a year
below 1000 is not even an RFC 3339 timestamp the API server takes).

An event the API server refuses as invalid (422: the schema, an admission
policy) is the sender's error, not an outage: it is reported as ignored with
`invalid_event` and the server's reason, and the events written with it are
applied (the recorder isolates it). Raising `IntakeUnavailable` for it
would answer 503 on every redelivery, forever, and wedge a distribution
registry's queue behind it.

A forged or mistaken event cannot move a tag to an image the registry does
not have when the receiver says `verify: registry`: the digest recorded is
then the one the registry serves for that tag right now, and a failure to
ask is recorded as `ImportSuccess=False` on the tags concerned, as OpenShift
records a failed import.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from imagestream.caches import BoundedCache
from imagestream.imagestreams import TagCondition, TagEvent
from imagestream.recording import (
    CreateSpec,
    NamespaceMissing,
    RecordError,
    StreamMissing,
    StreamRecorder,
    TagUpdate,
    UpdateRefused,
)
from imagestream.references import normalize_registry
from imagestream.registry_access import RegistryAccess
from imagestream.registry_client import ResolveError
from imagestream.timestamps import rfc3339_micro
from webhook.config import Receiver
from webhook.events import Ignored, ParsedNotification, PushRecord
from webhook.targets import DockerImageTagIndex, Target, integrated_target

log = structlog.get_logger(__name__)

WRITE_BUDGET_S = 5.0
SEEN_EVENTS_MAX = 4096
INVALID_EVENT = "invalid_event"
"""The reason for an event that can never be stored: the API server refuses it (422)."""
PUSH_TIME_MAX_AGE = timedelta(days=7)
"""Longer than any sender redelivers: Pub/Sub keeps an unacknowledged message 7 days,
Event Grid and EventBridge retry for 24 hours, Harbor and GitHub for less; distribution
retries forever but in order, so receipt times keep its order."""


def bounded_push_time(pushed_at: datetime | None, received: datetime) -> datetime:
    """The push time to record: the payload's, if it lies within what receipt allows.

    A push happens before its notification is received, and no sender delivers
    later than `PUSH_TIME_MAX_AGE`; outside that window the payload's clock is
    wrong (or lies), and the event counts as pushed when it was received,
    like an event that names no time.
    """
    if pushed_at is None or pushed_at > received or pushed_at < received - PUSH_TIME_MAX_AGE:
        return received
    return pushed_at


class IntakeUnavailable(Exception):
    """Could not persist within the budget; answer 503 and let the sender retry."""


@dataclass(frozen=True)
class Applied:
    imagestream: str
    tag: str
    digest: str
    event_id: str
    duplicate: bool

    def to_json(self) -> dict[str, object]:
        return {
            "imagestream": self.imagestream,
            "tag": self.tag,
            "digest": self.digest,
            "eventId": self.event_id,
            "duplicate": self.duplicate,
        }


@dataclass
class IntakeResult:
    applied: list[Applied] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "applied": [a.to_json() for a in self.applied],
            "ignored": [
                {"reason": i.reason, "eventId": i.event_id, "detail": i.detail}
                for i in self.ignored
            ],
        }


@dataclass
class Intake:
    recorder: StreamRecorder
    index: DockerImageTagIndex
    registry_access: RegistryAccess | None = None
    integrated_registry: str = ""
    """`host[:port]` of the integrated registry (`--integrated-registry`): the only host an
    `integrated` receiver records. Empty: integrated receivers record nothing."""
    live_integrated_registry: Callable[[], str] | None = None
    """The integrated registry now (the cluster image configuration's
    `status.internalRegistryHostname`, else the flag); none: `integrated_registry`."""
    write_budget_s: float = WRITE_BUDGET_S
    watched_namespaces: frozenset[str] = frozenset()
    """Empty: every namespace. Otherwise pushes for others are acknowledged and ignored:
    in namespaced mode we may not write there, and refusing would block the sender."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _seen: BoundedCache[str, None] = field(default_factory=lambda: BoundedCache(SEEN_EVENTS_MAX))

    async def apply(self, receiver: Receiver, parsed: ParsedNotification) -> IntakeResult:
        received = self.clock()
        result = IntakeResult(ignored=list(parsed.ignored))
        updates: dict[tuple[str, str], list[tuple[TagUpdate, Target, str]]] = defaultdict(list)
        creates: dict[tuple[str, str], CreateSpec] = {}
        for record in parsed.records:
            if record.event_id and record.event_id in self._seen:
                # Fast path for a redelivery; the persisted status stays the
                # truth (a lost cache only costs a no-op comparison).
                result.ignored.append(Ignored("duplicate_event", record.event_id))
                continue
            targets = self.targets(receiver, record, result.ignored)
            if not targets:
                continue
            digest, failure = await self._digest(receiver, record, targets)
            for target in targets:
                key = (target.namespace, target.stream)
                if target.create_repository:
                    creates[key] = CreateSpec(docker_image_repository=target.create_repository)
                update = self._update(record, target, digest, failure, received=received)
                updates[key].append((update, target, digest))
        if not updates:
            return result
        try:
            async with asyncio.timeout(self.write_budget_s):
                outcomes = await asyncio.gather(
                    *(
                        self._record(namespace, stream, entries, creates.get((namespace, stream)))
                        for (namespace, stream), entries in updates.items()
                    )
                )
        except TimeoutError as error:
            raise IntakeUnavailable(f"not persisted within {self.write_budget_s}s") from error
        for applied, ignored in outcomes:
            result.applied.extend(applied)
            result.ignored.extend(ignored)
        # Only events that reached a tag are remembered: one that matched no
        # tag may match a spec tag added since, when it is delivered again.
        self._remember([a.event_id for a in result.applied])
        return result

    def targets(
        self, receiver: Receiver, record: PushRecord, ignored: list[Ignored]
    ) -> list[Target]:
        """The tags `record` moves (pure: the index lookup); why none, appended to `ignored`."""
        if receiver.integrated:
            return self._integrated_targets(receiver, record, ignored)
        registry = record.registry or receiver.registry
        if not registry:
            ignored.append(
                Ignored(
                    "no_registry_host",
                    record.event_id,
                    "the payload names no registry; configure `registry`",
                )
            )
            return []
        targets = self.index.followers(registry, record.repository, record.tag)
        if not targets:
            ignored.append(
                Ignored(
                    "no_matching_imagestream_tag",
                    record.event_id,
                    f"{registry}/{record.repository}:{record.tag}",
                )
            )
        return targets

    def current_integrated_registry(self) -> str:
        if self.live_integrated_registry is not None:
            return self.live_integrated_registry() or self.integrated_registry
        return self.integrated_registry

    def integrated_names(self, receiver: Receiver) -> frozenset[str]:
        """The hosts a payload on `receiver` may name: the integrated registry, and the
        receiver's `registry` (another name it is reached under, such as its route)."""
        names = {self.current_integrated_registry(), receiver.registry} - {""}
        return frozenset(normalize_registry(name) for name in names)

    def _integrated_targets(
        self, receiver: Receiver, record: PushRecord, ignored: list[Ignored]
    ) -> list[Target]:
        integrated_registry = self.current_integrated_registry()
        if not integrated_registry:
            # The process refuses to start like this (webhook/app.py); a
            # collaborator built by hand must not record a payload's host either.
            ignored.append(
                Ignored("not_integrated_registry", record.event_id, "no --integrated-registry")
            )
            return []
        names = self.integrated_names(receiver)
        # No host in the payload: the integrated registry's own notification
        # (its receiver is authenticated), so the integrated registry.
        if record.registry and normalize_registry(record.registry) not in names:
            ignored.append(
                Ignored(
                    "not_integrated_registry",
                    record.event_id,
                    f"{record.registry}/{record.repository}:{record.tag}: this receiver "
                    f"records pushes to {integrated_registry} only",
                )
            )
            return []
        # Spec tags may name the integrated registry under any of its names.
        targets: list[Target] = []
        for name in sorted(names):
            targets += self.index.followers(name, record.repository, record.tag)
        integrated = integrated_target(record, registry=integrated_registry)
        if (
            isinstance(integrated, Target)
            and self.watched_namespaces
            and integrated.namespace not in self.watched_namespaces
        ):
            integrated = "namespace_not_watched"
        if isinstance(integrated, Target):
            targets.append(integrated)
        elif not targets:
            ignored.append(Ignored(integrated, record.event_id, record.repository))
        return targets

    async def _digest(
        self, receiver: Receiver, record: PushRecord, targets: list[Target]
    ) -> tuple[str, TagCondition | None]:
        """The digest to record, or the import failure to record instead."""
        if record.digest and receiver.verify != "registry":
            return record.digest, None
        registry = (
            self.current_integrated_registry()
            if receiver.integrated
            else record.registry or receiver.registry
        )
        if self.registry_access is None:
            return record.digest, self._failure("InternalError", "no registry client configured")
        try:
            resolved = await self.registry_access.resolve(
                registry=registry,
                repository=record.repository,
                tag=record.tag,
                namespace=targets[0].namespace,
                insecure=receiver.insecure or any(t.insecure for t in targets),
            )
        except (ResolveError, ValueError) as error:
            reason = str(getattr(error, "reason", "InternalError"))
            message = str(getattr(error, "message", error))
            log.info(
                "push_verification_failed",
                event_id=record.event_id,
                reason=reason,
                repository=record.repository,
                tag=record.tag,
            )
            return "", self._failure(reason, message)
        return resolved.digest, None

    def _failure(self, reason: str, message: str) -> TagCondition:
        return TagCondition(
            reason=reason,
            message=message,
            generation=0,
            last_transition_time=_rfc3339(self.clock()),
        )

    def _update(
        self,
        record: PushRecord,
        target: Target,
        digest: str,
        failure: TagCondition | None,
        *,
        received: datetime,
    ) -> TagUpdate:
        if failure is not None or not digest:
            return TagUpdate(tag=target.tag, failure=failure, event_id=record.event_id)
        created = _rfc3339(bounded_push_time(record.pushed_at, received))
        event = TagEvent(
            created=created,
            docker_image_reference=f"{target.name}@{digest}",
            image=digest,
            generation=0,
        )
        return TagUpdate(tag=target.tag, event=event, event_id=record.event_id)

    async def _record(
        self,
        namespace: str,
        stream: str,
        entries: list[tuple[TagUpdate, Target, str]],
        create: CreateSpec | None,
    ) -> tuple[list[Applied], list[Ignored]]:
        try:
            results = await self.recorder.record(
                namespace, stream, [update for update, _, _ in entries], create=create
            )
        except StreamMissing:
            return [], [
                Ignored("imagestream_not_found", entries[0][0].event_id, f"{namespace}/{stream}")
            ]
        except NamespaceMissing:
            return [], [Ignored("namespace_not_found", entries[0][0].event_id, namespace)]
        except UpdateRefused as error:
            if not error.results:  # the stream itself was refused, and with it every update
                return [], [Ignored(INVALID_EVENT, u.event_id, str(error)) for u, _, _ in entries]
            results = error.results
        except RecordError as error:
            raise IntakeUnavailable(str(error)) from error
        applied, ignored = [], []
        for (update, target, digest), outcome in zip(entries, results, strict=True):
            if outcome.refused:
                # The sender's error, not an outage: acknowledged with the
                # reason (or refused, on strict receivers), never 503.
                ignored.append(
                    Ignored(
                        INVALID_EVENT,
                        update.event_id,
                        f"{namespace}/{stream}:{target.tag}: {outcome.refused}",
                    )
                )
                continue
            applied.append(
                Applied(
                    imagestream=f"{namespace}/{stream}",
                    tag=target.tag,
                    digest=digest,
                    event_id=update.event_id,
                    duplicate=outcome.duplicate,
                )
            )
            if not outcome.duplicate:
                log.info(
                    "tag_recorded",
                    imagestream=f"{namespace}/{stream}",
                    tag=target.tag,
                    digest=digest,
                    event_id=update.event_id,
                )
        return applied, ignored

    def _remember(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            if event_id:
                self._seen.put(event_id, None)


def _rfc3339(moment: datetime) -> str:
    return rfc3339_micro(moment)
