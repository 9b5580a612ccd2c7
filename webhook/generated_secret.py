"""The Secret the webhook creates at run time, for the tokens no one supplied.

Why at run time, and not in the Helm chart: a chart that makes up a token
when it renders (`randAlphaNum`) renders different bytes every time, so a
GitOps tool (Argo CD, Flux) sees a change on every sync and rotates every
token, and `helm template` can never be reproduced; `lookup` does not help,
since it sees no cluster in `helm template`. So the chart renders only what
the user gave it (`webhook.secret.values`, `webhook.secret.existingSecret`)
and names the keys nothing supplies; the webhook creates them here, at
start, in a Secret that no manifest contains. cert-manager's webhook does
the same with its serving CA Secret.

Invariants:

* A key that exists is never changed: a token a registry was configured with
  survives restarts, rollouts, upgrades and reinstalls (the Secret is not a
  release object, so `helm uninstall` leaves it).
* Replicas starting together agree on one value per key: the create is
  refused (409) for all but one, and an addition is a write conditional on
  the resourceVersion read, re-read and retried on conflict.
* No value is logged, only key names.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, KubeError, NotFound
from imagestream.kube.resources import SECRETS

log = structlog.get_logger(__name__)

TOKEN_ALPHABET = string.ascii_letters + string.digits
"""Letters and digits: safe in an Authorization header and in a URL path (Quay's path secret)."""
TOKEN_LENGTH = 48
"""285 bits of entropy."""
ATTEMPTS = 10
LABELS = {
    "app.kubernetes.io/part-of": "imagestream-controller",
    "app.kubernetes.io/managed-by": "imagestream-webhook",
}


class GeneratedSecretError(RuntimeError):
    """The Secret could not be completed (refused, or contended past every attempt)."""


@dataclass(frozen=True)
class GeneratedSecret:
    """`namespace/name` of the Secret and the keys it must hold."""

    namespace: str
    name: str
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, reference: str, keys: Sequence[str]) -> GeneratedSecret:
        """From `--generated-secret namespace/name` and `--generated-secret-keys a,b`."""
        namespace, separator, name = reference.partition("/")
        if not separator or not namespace or not name or "/" in name:
            raise ValueError(f"expected namespace/name, got {reference!r}")
        if not keys:
            raise ValueError(f"no keys given for the generated Secret {reference}")
        return cls(namespace=namespace, name=name, keys=tuple(dict.fromkeys(keys)))


def new_token() -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def _encoded(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


async def ensure_generated_secret(kube: Kube, wanted: GeneratedSecret) -> tuple[str, ...]:
    """Make the Secret hold every wanted key; returns the keys this call generated.

    Raises `GeneratedSecretError` when the API server refuses (RBAC, say) or when
    other writers win every attempt.
    """
    namespace, name = wanted.namespace, wanted.name
    for _ in range(ATTEMPTS):
        try:
            current: dict[str, Any] = await kube.get(SECRETS, namespace, name)
        except NotFound:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
                "type": "Opaque",
                "data": {key: _encoded(new_token()) for key in wanted.keys},
            }
            try:
                await kube.create(SECRETS, namespace, body)
            except Conflict:
                continue  # another replica created it first: read theirs
            log.info("generated_secret_created", secret=f"{namespace}/{name}", keys=wanted.keys)
            return wanted.keys
        data = dict(current.get("data") or {})
        missing = tuple(key for key in wanted.keys if key not in data)
        if not missing:
            return ()
        data.update((key, _encoded(new_token())) for key in missing)
        try:
            # A PUT carrying the resourceVersion we read: refused if anyone wrote since.
            await kube.replace(SECRETS, namespace, name, {**current, "data": data})
        except Conflict:
            continue
        log.info("generated_secret_keys_added", secret=f"{namespace}/{name}", keys=missing)
        return missing
    raise GeneratedSecretError(
        f"Secret {namespace}/{name}: other writers won {ATTEMPTS} attempts in a row"
    )


async def ensure_until_done(
    kube: Kube, wanted: GeneratedSecret, done: asyncio.Event, *, max_delay_s: float = 30.0
) -> None:
    """`ensure_generated_secret` until it succeeds, backing off; then set `done`.

    The webhook is not ready until then (a refusal, say a missing RBAC rule, is logged
    at every attempt, so the pod says why it is not ready).
    """
    delay = 0.5
    while True:
        try:
            await ensure_generated_secret(kube, wanted)
        except (KubeError, GeneratedSecretError) as error:
            log.error(
                "generated_secret_failed",
                secret=f"{wanted.namespace}/{wanted.name}",
                error=str(error),
                retry_in_s=delay,
            )
        else:
            done.set()
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay_s)
