"""From parsed push records to persisted ImageStream tag events.

The webhook's promise is "acknowledged means persisted": `Intake.apply()`
returns only after every tag it moves is written (or found already
written), and raises `IntakeUnavailable` when that cannot be done within the
write budget, so the handler answers 503 and the sender retries. Recording
the same push again changes nothing, which is what makes those retries, and
every at-least-once sender, safe.

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
from datetime import UTC, datetime

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
)
from imagestream.registry_access import RegistryAccess
from imagestream.registry_client import ResolveError
from imagestream.timestamps import rfc3339_micro
from webhook.config import Receiver
from webhook.events import Ignored, ParsedNotification, PushRecord
from webhook.targets import DockerImageTagIndex, Target, integrated_target

log = structlog.get_logger(__name__)

WRITE_BUDGET_S = 5.0
SEEN_EVENTS_MAX = 4096


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
    write_budget_s: float = WRITE_BUDGET_S
    watched_namespaces: frozenset[str] = frozenset()
    """Empty: every namespace. Otherwise pushes for others are acknowledged and ignored:
    in namespaced mode we may not write there, and refusing would block the sender."""
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _seen: BoundedCache[str, None] = field(default_factory=lambda: BoundedCache(SEEN_EVENTS_MAX))

    async def apply(self, receiver: Receiver, parsed: ParsedNotification) -> IntakeResult:
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
                updates[key].append((self._update(record, target, digest, failure), target, digest))
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
        if receiver.integrated:
            # An integrated registry is reached under several names (the
            # Service inside, a route outside); the receiver's `registry`
            # names the one recorded, as OpenShift records its internal name.
            canonical = receiver.registry or registry
            if canonical != registry:
                targets += self.index.followers(canonical, record.repository, record.tag)
            integrated = integrated_target(record, registry=canonical)
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
        elif not targets:
            ignored.append(
                Ignored(
                    "no_matching_imagestream_tag",
                    record.event_id,
                    f"{registry}/{record.repository}:{record.tag}",
                )
            )
        return targets

    async def _digest(
        self, receiver: Receiver, record: PushRecord, targets: list[Target]
    ) -> tuple[str, TagCondition | None]:
        """The digest to record, or the import failure to record instead."""
        if record.digest and receiver.verify != "registry":
            return record.digest, None
        registry = record.registry or receiver.registry
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
        self, record: PushRecord, target: Target, digest: str, failure: TagCondition | None
    ) -> TagUpdate:
        if failure is not None or not digest:
            return TagUpdate(tag=target.tag, failure=failure, event_id=record.event_id)
        created = _rfc3339(record.pushed_at or self.clock())
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
        except RecordError as error:
            raise IntakeUnavailable(str(error)) from error
        applied = []
        for (update, target, digest), outcome in zip(entries, results, strict=True):
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
        return applied, []

    def _remember(self, event_ids: list[str]) -> None:
        for event_id in event_ids:
            if event_id:
                self._seen.put(event_id, None)


def _rfc3339(moment: datetime) -> str:
    return rfc3339_micro(moment)
