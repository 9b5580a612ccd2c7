"""The admission webhook's HTTPS server: three endpoints the API server calls.

* `POST /admission/defaults` (mutating; ImageStreams, BuildConfigs, Builds,
  DeploymentConfigs): OpenShift's defaults and conversions (defaults.py) and the
  ImageStream tag generations.
* `POST /admission/image-lookup` (mutating; Pods and the workloads with pod templates):
  image lookup (lookup.py).
* `POST /admission/validate` (validating; ImageStreams): a new source stream must exist
  (validate.py).

Invariant: every well-formed AdmissionReview gets an answer for its uid; a lookup that
fails for a reason other than NotFound fails the call (the configuration's failure policy
decides, per kind: docs/admission.md#failure-policy), never a guess. The streams are read
from the webhook's ImageStream cache, and from the API server when the cache does not
have one (a stream created a moment ago must not be reported missing).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from imagestream.kube.client import Kube
from imagestream.kube.errors import KubeError, NotFound
from imagestream.kube.resources import IMAGESTREAMS
from webhook.admission.defaults import (
    default_build,
    default_buildconfig,
    default_deploymentconfig,
    default_imagestream,
    stamp_tag_generations,
)
from webhook.admission.lookup import TEMPLATE_PATHS, local_names, rewrite, unresolved
from webhook.admission.review import (
    Request,
    ReviewError,
    allow,
    parse_review,
    refuse_invalid,
)
from webhook.admission.validate import missing_sources

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
LOOKUP_TIMEOUT_S = 4.0
"""Below the configurations' timeoutSeconds (5), so the API server gets our answer."""


@dataclass(frozen=True)
class AdmissionMetrics:
    reviews: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AdmissionMetrics:
        return cls(
            Counter(
                "imagestream_admission_reviews",
                "Admission reviews answered, by endpoint and outcome (mutated, allowed, refused,"
                " error).",
                ["endpoint", "outcome"],
                registry=registry,
            )
        )


@dataclass
class Streams:
    """ImageStreams by namespace and name: the cache, then the API server."""

    cached: Callable[[str], Mapping[str, Any] | None]
    kube: Kube

    async def get(
        self, namespace: str, name: str, *, fresh: bool = False
    ) -> Mapping[str, Any] | None:
        found = None if fresh else self.cached(f"{namespace}/{name}")
        if found is not None:
            return found
        try:
            return await asyncio.wait_for(
                self.kube.get(IMAGESTREAMS, namespace, name), LOOKUP_TIMEOUT_S
            )
        except NotFound:
            return None

    async def exists(self, namespace: str, name: str) -> bool:
        return await self.get(namespace, name) is not None


def mutate_defaults(request: Request) -> Obj | None:
    """The object as OpenShift would store it, or None to leave it alone."""
    if request.operation not in ("CREATE", "UPDATE") or request.subresource:
        return None
    if request.group == "image.openshift.io" and request.kind == "ImageStream":
        return stamp_tag_generations(
            default_imagestream(request.object), request.old_object, request.namespace
        )
    if request.group == "build.openshift.io" and request.kind == "BuildConfig":
        return default_buildconfig(request.object)
    if request.group == "build.openshift.io" and request.kind == "Build":
        return default_build(request.object)
    if request.group == "apps.openshift.io" and request.kind == "DeploymentConfig":
        return default_deploymentconfig(request.object, request.namespace)
    return None


@dataclass
class AdmissionRoutes:
    streams: Streams
    metrics: AdmissionMetrics

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/admission/defaults", self._endpoint("defaults", self._defaults)),
            web.post("/admission/image-lookup", self._endpoint("image-lookup", self._lookup)),
            web.post("/admission/validate", self._endpoint("validate", self._validate)),
        ]

    def _endpoint(
        self, name: str, answer: Callable[[Request], Awaitable[tuple[Obj, str]]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(http: web.Request) -> web.Response:
            try:
                request = parse_review(await http.json())
            except (ReviewError, ValueError) as error:
                self.metrics.reviews.labels(name, "bad_request").inc()
                return web.json_response({"error": str(error)}, status=400)
            try:
                review, outcome = await answer(request)
            except (KubeError, TimeoutError) as error:
                # No answer: the API server applies the configuration's failure policy.
                self.metrics.reviews.labels(name, "error").inc()
                log.warning("admission_lookup_failed", endpoint=name, error=str(error)[:256])
                return web.json_response({"error": "lookup failed"}, status=503)
            self.metrics.reviews.labels(name, outcome).inc()
            return web.Response(text=json.dumps(review), content_type="application/json")

        return handle

    async def _defaults(self, request: Request) -> tuple[Obj, str]:
        mutated = mutate_defaults(request)
        review = allow(request, mutated)
        return review, "mutated" if "patch" in review["response"] else "allowed"

    async def _lookup(self, request: Request) -> tuple[Obj, str]:
        if (
            request.operation not in ("CREATE", "UPDATE")
            or request.subresource
            or request.kind not in TEMPLATE_PATHS
            # A running pod's image is never changed behind its back (a restart): pods are
            # resolved when created; templates whenever they are written.
            or (request.kind == "Pod" and request.operation != "CREATE")
        ):
            return allow(request), "allowed"
        streams: dict[str, Mapping[str, Any]] = {}
        for name in sorted(local_names(request.object, request.kind)):
            stream = await self.streams.get(request.namespace, name)
            if stream is not None:
                streams[name] = stream
        for name in sorted(unresolved(request.object, request.kind, streams)):
            stream = await self.streams.get(request.namespace, name, fresh=True)
            if stream is not None:
                streams[name] = stream
        mutated = rewrite(request.object, request.kind, streams) if streams else None
        if mutated is None:
            return allow(request), "allowed"
        log.info(
            "image_lookup_resolved",
            key=f"{request.namespace}/{request.name}",
            kind=request.kind,
        )
        return allow(request, mutated), "mutated"

    async def _validate(self, request: Request) -> tuple[Obj, str]:
        if (
            request.operation not in ("CREATE", "UPDATE")
            or request.subresource
            or (request.group, request.kind) != ("image.openshift.io", "ImageStream")
        ):
            return allow(request), "allowed"
        errors = await missing_sources(
            request.object, request.old_object, request.namespace, self.streams.exists
        )
        if errors:
            return refuse_invalid(request, errors, group="image.openshift.io"), "refused"
        return allow(request), "allowed"
