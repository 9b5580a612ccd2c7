"""Which tags a push moves (webhook/targets.py, Intake.targets): pure index lookups."""

from __future__ import annotations

from typing import Any, cast

from imagestream.recording import StreamRecorder
from webhook.config import AuthConfig, Receiver
from webhook.events import Ignored, PushRecord
from webhook.intake import Intake
from webhook.targets import DockerImageTagIndex, Target

DIGEST = "sha256:" + "a" * 64


def _receiver(*, integrated: bool, registry: str = "") -> Receiver:
    return Receiver(
        name="r",
        type="distribution",
        auth=AuthConfig(type="none"),
        integrated=integrated,
        registry=registry,
    )


def _intake(streams: dict[str, dict[str, Any]], *, integrated_registry: str = "reg:5000") -> Intake:
    index = DockerImageTagIndex()
    for key, stream in streams.items():
        index.update(key, stream)
    return Intake(
        recorder=StreamRecorder(kube=cast(Any, None)),
        index=index,
        integrated_registry=integrated_registry,
    )


def _record(registry: str, repository: str, tag: str = "v1") -> PushRecord:
    return PushRecord(registry=registry, repository=repository, tag=tag, digest=DIGEST)


def _following(from_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "spec": {
            "tags": [{"name": "t", "from": {"kind": "DockerImage", "name": from_name}, **extra}]
        }
    }


def test_integrated_push_names_namespace_and_stream() -> None:
    ignored: list[Ignored] = []
    targets = _intake({}).targets(
        _receiver(integrated=True), _record("reg:5000", "team/app"), ignored
    )
    assert targets == [
        Target(
            namespace="team",
            stream="app",
            tag="v1",
            name="reg:5000/team/app",
            create_repository="reg:5000/team/app",
        )
    ]
    assert ignored == []


def test_an_integrated_push_records_the_integrated_registry_under_any_of_its_names() -> None:
    """The receiver's `registry` is another name of it (a route); the record is the
    configured name, whichever the payload used, or when it names none."""
    intake = _intake({}, integrated_registry="image-registry.svc:5000")
    receiver = _receiver(integrated=True, registry="registry.apps.example.com")
    for host in ("registry.apps.example.com", "IMAGE-registry.svc:5000", ""):
        targets = intake.targets(receiver, _record(host, "team/app"), [])
        assert [t.name for t in targets] == ["image-registry.svc:5000/team/app"], host


def test_an_integrated_push_naming_another_host_is_ignored_with_the_reason() -> None:
    intake = _intake(
        {"team/mirror": _following("attacker.example.com/team/app:v1")},
        integrated_registry="reg:5000",
    )
    ignored: list[Ignored] = []
    record = _record("attacker.example.com", "team/app")
    assert intake.targets(_receiver(integrated=True), record, ignored) == []
    # Not even a DockerImage spec tag naming that host moves: the receiver
    # speaks for the integrated registry alone.
    assert [i.reason for i in ignored] == ["not_integrated_registry"]
    assert "reg:5000" in ignored[0].detail


def test_without_an_integrated_registry_an_integrated_receiver_records_nothing() -> None:
    ignored: list[Ignored] = []
    intake = _intake({}, integrated_registry="")
    assert intake.targets(_receiver(integrated=True), _record("reg:5000", "a/b"), ignored) == []
    assert [i.reason for i in ignored] == ["not_integrated_registry"]


def test_an_integrated_push_moves_spec_tags_following_any_name_of_the_registry() -> None:
    intake = _intake(
        {
            "ns/by-service": _following("reg:5000/team/app:v1"),
            "ns/by-route": _following("route.example.com/team/app:v1"),
            "ns/elsewhere": _following("quay.io/team/app:v1"),
        }
    )
    targets = intake.targets(
        _receiver(integrated=True, registry="route.example.com"),
        _record("reg:5000", "team/app"),
        [],
    )
    assert [(t.stream, t.name) for t in targets] == [
        ("by-service", "reg:5000/team/app"),
        ("by-route", "route.example.com/team/app"),
        ("app", "reg:5000/team/app"),
    ]


def test_docker_hub_names_are_normalised_and_written_names_kept() -> None:
    intake = _intake(
        {
            "ns/web": _following("nginx:1.25"),
            "ns/other": _following("nginx:1.24"),
            "ns/pinned": _following(f"nginx@{DIGEST}"),
            "ns/ref": _following("nginx:1.25", reference=True),
        }
    )
    targets = intake.targets(
        _receiver(integrated=False), _record("docker.io", "library/nginx", "1.25"), []
    )
    assert targets == [Target(namespace="ns", stream="web", tag="t", name="nginx")]


def test_a_push_that_moves_nothing_says_why() -> None:
    ignored: list[Ignored] = []
    assert (
        _intake({}).targets(_receiver(integrated=False), _record("quay.io", "x/y"), ignored) == []
    )
    assert [i.reason for i in ignored] == ["no_matching_imagestream_tag"]
    ignored.clear()
    assert (
        _intake({}).targets(_receiver(integrated=True), _record("reg:5000", "a/b/c"), ignored) == []
    )
    assert [i.reason for i in ignored] == ["not_namespace_and_name"]


def test_in_namespaced_mode_a_push_elsewhere_is_acknowledged_not_written() -> None:
    intake = _intake({})
    intake.watched_namespaces = frozenset({"team"})
    ignored: list[Ignored] = []
    assert (
        intake.targets(_receiver(integrated=True), _record("reg:5000", "other/app"), ignored) == []
    )
    assert [i.reason for i in ignored] == ["namespace_not_watched"]
    assert [
        t.namespace
        for t in intake.targets(_receiver(integrated=True), _record("reg:5000", "team/app"), [])
    ] == ["team"]
