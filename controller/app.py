"""Composition root of the controller process.

This is the only module of the controller that constructs collaborators;
everything it builds is passed down explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from imagestream.health import ReadinessCheck
from imagestream.process import Collaborators


@dataclass
class Controller:
    name: str = "controller"
    readiness_checks: Mapping[str, ReadinessCheck] = field(default_factory=dict)

    async def aclose(self) -> None:
        return None


async def start(collaborators: Collaborators) -> Controller:
    del collaborators  # the reconcilers arrive with the ImageStream and trigger issues
    return Controller()
