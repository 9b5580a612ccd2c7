"""`POST /v1/events/<receiver>`: one route per configured receiver.

Each failure has one answer (docs/delivery-semantics.md#one-request-step-by-step):

| situation                                         | answer |
|---------------------------------------------------|--------|
| persisted, or already recorded (duplicate)        | 200 + JSON of what was applied and ignored |
| authenticated but irrelevant (pull, blob, ...)    | 200, counted by reason |
| malformed or wrong media type                     | 400 / 415; 200 for `distribution` |
| an event the API server refuses as invalid        | 422, the rest applied; distribution: 200 |
| body not decodable as its Content-Encoding says   | 400, before authentication |
| missing or wrong credentials                      | 401, before parsing; nothing is written |
| sender over its `rateLimit`                       | 429 + Retry-After, before parsing |
| body over the limit                               | 413, before the body is buffered |
| body not sent within BODY_TIMEOUT_S               | 408 |
| not ready, or cannot persist within the budget    | 503 + Retry-After |
| unknown receiver                                  | 404 |

NB: distribution retries every answer that is not 2xx/3xx forever, one
event at a time, so one event we refuse would block every later push from
that registry. Its receivers therefore answer 200 (with the reason in the
body) for input they can authenticate but not use
(docs/delivery-semantics.md#leniency-for-distributions-unusable-input).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from webhook.auth import Authenticator
from webhook.config import Receiver
from webhook.events import BadPayload, Ignored, UnsupportedMediaType
from webhook.intake import INVALID_EVENT, Applied, Intake, IntakeUnavailable
from webhook.limits import SenderLimits
from webhook.parsers import parse_notification

log = structlog.get_logger(__name__)

RETRY_AFTER_S = "2"
BODY_TIMEOUT_S = 30.0
"""A body must arrive within this (slow headers are cut by the server's header timeout)."""
LENIENT_TYPES = frozenset({"distribution"})


@dataclass
class WebhookMetrics:
    requests: Counter
    events: Counter
    duration: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WebhookMetrics:
        return cls(
            requests=Counter(
                "imagestream_webhook_requests",
                "Webhook requests by receiver and HTTP status.",
                ["receiver", "code"],
                registry=registry,
            ),
            events=Counter(
                "imagestream_webhook_events",
                "Events by receiver and outcome (applied, duplicate, or the reason ignored).",
                ["receiver", "outcome"],
                registry=registry,
            ),
            duration=Histogram(
                "imagestream_webhook_request_duration_seconds",
                "Time from request to answer.",
                ["receiver"],
                registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
        )


@dataclass
class ReceiverRoutes:
    receivers: Mapping[str, Receiver]
    authenticators: Mapping[str, Authenticator]
    intake: Intake
    ready: Callable[[], Awaitable[bool]]
    metrics: WebhookMetrics
    max_body_bytes: int
    limits: SenderLimits | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/events/{receiver}", self.handle),
            web.post("/v1/events/{receiver}/{secret}", self.handle),
        ]

    async def handle(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        name = request.match_info["receiver"]
        receiver = self.receivers.get(name)
        if receiver is None:
            return web.json_response({"error": f"no receiver named {name!r}"}, status=404)
        response = await self._handle(request, receiver)
        self.metrics.requests.labels(name, str(response.status)).inc()
        self.metrics.duration.labels(name).observe(time.monotonic() - started)
        return response

    async def _handle(self, request: web.Request, receiver: Receiver) -> web.Response:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return _error(413, f"body over {self.max_body_bytes} bytes")
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                body = await request.read()
        except TimeoutError:
            return _error(408, f"body not received within {BODY_TIMEOUT_S:.0f}s")
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body over {self.max_body_bytes} bytes")
        except web.RequestPayloadError as error:
            # A body that cannot be decoded as its Content-Encoding says (not
            # gzip, say): the sender's mistake, not ours.
            return _error(400, f"unreadable body: {error}")
        authenticator = self.authenticators[receiver.name]
        if not authenticator.authenticate(
            headers=request.headers, body=body, path_secret=request.match_info.get("secret")
        ):
            return _error(401, "missing or invalid credentials")
        wait_s = self.limits.retry_after(receiver.name) if self.limits is not None else None
        if wait_s is not None:
            response = _error(429, "over this sender's rate limit")
            response.headers["Retry-After"] = str(wait_s)
            return response
        lenient = receiver.type in LENIENT_TYPES
        try:
            parsed = parse_notification(
                receiver.type,
                headers=request.headers,
                body=body,
                receiver=receiver.name,
                default_registry=receiver.registry,
            )
        except UnsupportedMediaType as error:
            return self._refuse(receiver, 415, "unsupported_media_type", str(error), lenient)
        except BadPayload as error:
            return self._refuse(receiver, 400, "malformed_payload", str(error), lenient)
        if not parsed.records:
            self._count(receiver, [], parsed.ignored)
            return web.json_response(
                {
                    "applied": [],
                    "ignored": [
                        {"reason": i.reason, "eventId": i.event_id, "detail": i.detail}
                        for i in parsed.ignored
                    ],
                }
            )
        if not await self.ready():
            return _unavailable("not ready: the API server is unreachable or caches are syncing")
        try:
            result = await self.intake.apply(receiver, parsed)
        except IntakeUnavailable as error:
            log.warning("intake_unavailable", receiver=receiver.name, error=str(error))
            return _unavailable(str(error))
        self._count(receiver, result.applied, result.ignored)
        if not lenient and any(i.reason == INVALID_EVENT for i in result.ignored):
            # The sender's error, shown in its delivery log; the other events
            # of the notification are applied, and listed. Never 503: a retry
            # cannot help.
            refused = result.to_json() | {"error": "the API server refuses an event as invalid"}
            return web.json_response(refused, status=422)
        return web.json_response(result.to_json())

    def _refuse(
        self, receiver: Receiver, status: int, reason: str, message: str, lenient: bool
    ) -> web.Response:
        self.metrics.events.labels(receiver.name, reason).inc()
        log.info(
            "notification_refused", receiver=receiver.name, reason=reason, detail=message[:200]
        )
        if lenient:
            return web.json_response(
                {
                    "applied": [],
                    "ignored": [{"reason": reason, "eventId": "", "detail": message[:500]}],
                }
            )
        return _error(status, message)

    def _count(
        self, receiver: Receiver, applied: Sequence[Applied], ignored: Sequence[Ignored]
    ) -> None:
        for item in applied:
            outcome = "duplicate" if item.duplicate else "applied"
            self.metrics.events.labels(receiver.name, outcome).inc()
        for skipped in ignored:
            self.metrics.events.labels(receiver.name, skipped.reason).inc()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _unavailable(message: str) -> web.Response:
    response = _error(503, message)
    response.headers["Retry-After"] = RETRY_AFTER_S
    return response
