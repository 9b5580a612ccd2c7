"""Composition root of the webhook process: the HTTP server registries push to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from imagestream.health import ReadinessCheck, health_routes, serve
from imagestream.process import Collaborators


@dataclass
class Webhook:
    runner: web.AppRunner
    name: str = "webhook"
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)

    async def aclose(self) -> None:
        await self.runner.cleanup()


async def start(collaborators: Collaborators) -> Webhook:
    settings = collaborators.settings
    checks: dict[str, ReadinessCheck] = {"apiserver": collaborators.kube.reachable}
    # Receivers (`POST /v1/events/<receiver>`) arrive with the ImageStreams issue.
    runner = await serve(health_routes(checks), settings.webhook_addr, "webhook")
    return Webhook(runner=runner, readiness_checks=checks)
