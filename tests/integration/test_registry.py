"""A real skopeo push to the real registry produces a real notification; `start()` knows its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdev.images import make_oci_image, skopeo_push
from localdev.processes import ProcessFailedError
from localdev.registry import Registry
from tests.integration.conftest import CapturedRequest, NotificationReceiver
from tests.integration.ports import pretend_registry


async def test_push_notifies_with_repository_tag_digest_and_token(
    tmp_path: Path, registry_to_receiver: Registry, notification_receiver: NotificationReceiver
) -> None:
    image = make_oci_image(tmp_path / "image", "hello from test_registry")
    skopeo_push(image, f"{registry_to_receiver.host}/demo/app:v1")

    def is_manifest_push(request: CapturedRequest) -> bool:
        events = request.body.get("events")
        assert isinstance(events, list)
        return any(
            event["action"] == "push" and event["target"].get("tag") == "v1" for event in events
        )

    request = await notification_receiver.wait_for(is_manifest_push)
    assert request.headers["Authorization"] == "Bearer test-token-123"
    assert request.headers["Content-Type"].startswith("application/vnd.docker.distribution.events")
    events = request.body["events"]
    assert isinstance(events, list)
    (event,) = [e for e in events if e["target"].get("tag") == "v1"]
    assert event["target"]["repository"] == "demo/app"
    assert event["target"]["digest"] == image.manifest_digest
    assert event["target"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert event["request"]["host"] == registry_to_receiver.host


def test_start_fails_when_another_server_answers_on_its_port(tmp_path: Path) -> None:
    """Today's failure: `/v2/` answered by someone else counted as "our registry is up"."""
    with pretend_registry() as port:
        registry = Registry(workdir=tmp_path / "registry", port=port)
        with pytest.raises(ProcessFailedError) as raised:
            registry.start()
    assert "address already in use" in raised.value.reason
    assert registry.process is not None and registry.process.poll() is not None
