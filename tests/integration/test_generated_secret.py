"""The Secret of generated tokens (webhook/generated_secret.py), on the real API server.

The chart renders no made-up token (so `helm template` is reproducible); the webhook makes
the missing ones at start. These tests pin what that promises: it creates the Secret,
never changes a key that exists, adds only what is missing, and replicas starting at the
same moment agree on one value per key.
"""

from __future__ import annotations

import asyncio
import base64

from imagestream.kube.client import Kube
from imagestream.kube.resources import SECRETS
from tests.integration.conftest import new_namespace
from webhook.generated_secret import GeneratedSecret, ensure_generated_secret


def _decoded(secret: dict[str, object]) -> dict[str, str]:
    data = secret.get("data")
    assert isinstance(data, dict)
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


async def test_creates_the_secret_then_keeps_every_existing_key(kube: Kube) -> None:
    namespace = await new_namespace(kube, "gensecret")
    wanted = GeneratedSecret.parse(f"{namespace}/tokens", ["a-token", "b-token"])

    assert await ensure_generated_secret(kube, wanted) == ("a-token", "b-token")
    first = _decoded(await kube.get(SECRETS, namespace, "tokens"))
    assert set(first) == {"a-token", "b-token"}
    assert all(len(v) == 48 and v.isalnum() for v in first.values())
    assert first["a-token"] != first["b-token"]

    # A restart changes nothing.
    assert await ensure_generated_secret(kube, wanted) == ()
    assert _decoded(await kube.get(SECRETS, namespace, "tokens")) == first

    # A new receiver key (a chart upgrade) is added; the others stay as they were, and
    # so does a key someone set by hand.
    secret = await kube.get(SECRETS, namespace, "tokens")
    secret["data"]["b-token"] = base64.b64encode(b"set-by-hand").decode()
    await kube.replace(SECRETS, namespace, "tokens", secret)
    more = GeneratedSecret.parse(f"{namespace}/tokens", ["a-token", "b-token", "c-token"])
    assert await ensure_generated_secret(kube, more) == ("c-token",)
    after = _decoded(await kube.get(SECRETS, namespace, "tokens"))
    assert after["a-token"] == first["a-token"]
    assert after["b-token"] == "set-by-hand"
    assert len(after["c-token"]) == 48


async def test_replicas_starting_together_agree_on_one_value(kube: Kube) -> None:
    namespace = await new_namespace(kube, "gensecret")
    wanted = GeneratedSecret.parse(f"{namespace}/tokens", ["distribution-token"])
    results = await asyncio.gather(*(ensure_generated_secret(kube, wanted) for _ in range(6)))
    # Exactly one replica created it; the others found it done.
    assert sorted(results) == [(), (), (), (), (), ("distribution-token",)]
    value = _decoded(await kube.get(SECRETS, namespace, "tokens"))["distribution-token"]

    # Six replicas adding the same new key at once: one value wins, and it stays.
    grown = GeneratedSecret.parse(f"{namespace}/tokens", ["distribution-token", "next-token"])
    results = await asyncio.gather(*(ensure_generated_secret(kube, grown) for _ in range(6)))
    assert sorted(results) == [(), (), (), (), (), ("next-token",)]
    final = _decoded(await kube.get(SECRETS, namespace, "tokens"))
    assert final["distribution-token"] == value
    assert len(final["next-token"]) == 48
