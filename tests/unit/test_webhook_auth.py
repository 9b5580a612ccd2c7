"""Each auth scheme accepts only the right credential, rotates live, and never logs one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from imagestream.logs import configure_logging
from localdev.private import write_private
from webhook.auth import Authenticator, SecretSource
from webhook.config import AuthConfig, Receiver

SECRET = "s3cr3t-current-0f9e8d"
NEXT_SECRET = "s3cr3t-next-7a6b5c"
BODY = b'{"events":[{"action":"push"}]}'


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    # A test elsewhere may have left structlog printing to a capture stream
    # that pytest has closed since; start from a configuration of our own.
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())
    yield
    structlog.reset_defaults()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _authenticator(
    tmp_path: Path, auth_type: str, *secrets: str, clock: FakeClock | None = None, **options: str
) -> Authenticator:
    files = []
    for index, secret in enumerate(secrets):
        path = tmp_path / f"secret-{index}"
        write_private(path, secret + "\n")  # a trailing newline, as `kubectl create secret` leaves
        files.append(path)
    receiver = Receiver(
        name="r1",
        type="distribution",
        auth=AuthConfig(type=auth_type, secret_files=tuple(files), **options),
    )
    source = SecretSource(receiver.auth.secret_files, receiver="r1", clock=clock or FakeClock())
    return Authenticator(receiver, secrets=source)


def _sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_bearer(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path, "bearer", SECRET)

    def ok(headers: dict[str, str]) -> bool:
        return auth.authenticate(headers=headers, body=BODY, path_secret=None)

    assert ok({"Authorization": f"Bearer {SECRET}"})
    assert ok({"authorization": f"bearer {SECRET}"})  # header name and scheme are case-insensitive
    assert not ok({"Authorization": f"Bearer {SECRET}x"})
    assert not ok({"Authorization": f"Bearer {SECRET[:-1]}"})
    assert not ok({"Authorization": f"Basic {SECRET}"})
    assert not ok({"Authorization": SECRET})
    assert not ok({"Authorization": "Bearer "})
    assert not ok({})
    assert not auth.authenticate(
        headers={"Authorization": f"Bearer {SECRET}"}, body=BODY, path_secret=SECRET
    )


def test_harbor_compares_the_whole_header_value(tmp_path: Path) -> None:
    header_value = f"Basic {SECRET}"  # whatever the Harbor admin typed as "Auth Header"
    auth = _authenticator(tmp_path, "harbor", header_value, header="Authorization")

    def ok(headers: dict[str, str]) -> bool:
        return auth.authenticate(headers=headers, body=BODY, path_secret=None)

    assert ok({"Authorization": header_value})
    assert not ok({"Authorization": SECRET})
    assert not ok({"Authorization": f"Bearer {SECRET}"})
    assert not ok({})


def test_hmac_sha256_github_style(tmp_path: Path) -> None:
    auth = _authenticator(
        tmp_path, "hmac-sha256", SECRET, header="X-Hub-Signature-256", prefix="sha256="
    )

    def ok(signature: str | None, body: bytes = BODY) -> bool:
        headers = {} if signature is None else {"X-Hub-Signature-256": signature}
        return auth.authenticate(headers=headers, body=body, path_secret=None)

    assert ok("sha256=" + _sign(SECRET, BODY))
    assert ok("sha256=" + _sign(SECRET, BODY).upper())
    assert not ok("sha256=" + _sign(SECRET, BODY), body=BODY + b" ")  # a modified body
    assert not ok("sha256=" + _sign(SECRET, BODY), body=BODY.replace(b"push", b"pull"))
    assert not ok("sha256=" + _sign("other", BODY))
    assert not ok(_sign(SECRET, BODY))  # no prefix
    assert not ok("sha1=" + _sign(SECRET, BODY))
    assert not ok("sha256=not-hex")
    assert not ok("sha256=")
    assert not ok(None)


def test_hmac_sha256_jfrog_style(tmp_path: Path) -> None:
    # JFrog's "use secret for payload signing": hex HMAC-SHA256, no prefix.
    auth = _authenticator(tmp_path, "hmac-sha256", SECRET, header="X-JFrog-Event-Auth", prefix="")
    signature = _sign(SECRET, BODY)
    assert auth.authenticate(headers={"X-JFrog-Event-Auth": signature}, body=BODY, path_secret=None)
    assert not auth.authenticate(
        headers={"X-JFrog-Event-Auth": signature}, body=BODY + b"\n", path_secret=None
    )
    assert not auth.authenticate(
        headers={"X-Hub-Signature-256": "sha256=" + signature}, body=BODY, path_secret=None
    )


def test_basic(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path, "basic", f"acr:{SECRET}")

    def ok(headers: dict[str, str]) -> bool:
        return auth.authenticate(headers=headers, body=BODY, path_secret=None)

    assert ok({"Authorization": _basic(f"acr:{SECRET}")})
    assert not ok({"Authorization": _basic(f"acr:{SECRET}x")})
    assert not ok({"Authorization": _basic(f"other:{SECRET}")})
    assert not ok({"Authorization": _basic(SECRET)})
    assert not ok({"Authorization": "Basic %%%"})
    assert not ok({"Authorization": f"Bearer acr:{SECRET}"})
    assert not ok({})


def test_path_secret(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path, "path-secret", SECRET)
    assert auth.authenticate(headers={}, body=BODY, path_secret=SECRET)
    assert not auth.authenticate(headers={}, body=BODY, path_secret=SECRET + "x")
    assert not auth.authenticate(headers={}, body=BODY, path_secret="")
    assert not auth.authenticate(headers={}, body=BODY, path_secret=None)


def test_none_accepts_everything(tmp_path: Path) -> None:
    auth = Authenticator(Receiver(name="open", type="cloudevents", auth=AuthConfig(type="none")))
    assert auth.authenticate(headers={}, body=BODY, path_secret=None)


def test_missing_or_empty_secret_file_refuses_everything(tmp_path: Path) -> None:
    receiver = Receiver(
        name="r1",
        type="distribution",
        auth=AuthConfig(type="bearer", secret_files=(tmp_path / "absent",)),
    )
    auth = Authenticator(receiver)
    assert not auth.authenticate(headers={"Authorization": "Bearer "}, body=BODY, path_secret=None)
    assert not auth.authenticate(headers={}, body=BODY, path_secret=None)
    (tmp_path / "empty").write_text("  \n")
    empty = Authenticator(
        Receiver(
            name="r2",
            type="distribution",
            auth=AuthConfig(type="bearer", secret_files=(tmp_path / "empty",)),
        )
    )
    assert not empty.authenticate(headers={"Authorization": "Bearer "}, body=BODY, path_secret=None)


def test_rotation_through_a_second_file(tmp_path: Path) -> None:
    clock = FakeClock()
    old, new = tmp_path / "token", tmp_path / "token.next"
    write_private(old, SECRET)
    source = SecretSource([old, new], receiver="r1", clock=clock)
    receiver = Receiver(
        name="r1", type="distribution", auth=AuthConfig(type="bearer", secret_files=(old, new))
    )
    auth = Authenticator(receiver, secrets=source)

    def ok(token: str) -> bool:
        return auth.authenticate(
            headers={"Authorization": f"Bearer {token}"}, body=BODY, path_secret=None
        )

    assert ok(SECRET) and not ok(NEXT_SECRET)

    # Step 1: the new secret is added as the second file; both are valid.
    write_private(new, NEXT_SECRET + "\n")
    assert not ok(NEXT_SECRET)  # not re-checked within the second
    clock.advance(1.0)
    assert ok(NEXT_SECRET) and ok(SECRET)

    # Step 2: senders moved over; the old file is removed, the old secret refused.
    old.unlink()
    clock.advance(1.0)
    assert ok(NEXT_SECRET) and not ok(SECRET)

    # A rewritten file (same path, new content) is picked up too.
    write_private(new, "rotated-again-but-same-length!!")
    os.utime(new, ns=(1, 1))  # a different mtime even on a coarse clock
    clock.advance(1.0)
    assert ok("rotated-again-but-same-length!!") and not ok(NEXT_SECRET)


def test_secret_file_is_statted_at_most_once_per_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    path = tmp_path / "token"
    write_private(path, SECRET)
    source = SecretSource([path], receiver="r1", clock=clock)
    calls = 0
    real_stat = os.stat

    def counting_stat(target: object, *args: object, **kwargs: object) -> os.stat_result:
        nonlocal calls
        calls += 1
        return real_stat(target, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counting_stat)
    for _ in range(100):
        assert source.secrets() == (SECRET.encode(),)
        clock.advance(0.005)
    assert calls == 1
    clock.advance(1.0)
    source.secrets()
    assert calls == 2
    assert SECRET not in repr(source)


def test_no_secret_reaches_the_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Configured here, not in a fixture: capsys swaps sys.stderr between
    # the setup and call phases, and the renderer binds the stream it sees.
    configure_logging(log_format="json", log_level="debug")
    clock = FakeClock()
    secrets_seen = [SECRET, NEXT_SECRET, f"acr:{SECRET}"]
    attempts: list[tuple[Authenticator, dict[str, str], str | None]] = []
    for auth_type, secret, options in [
        ("bearer", SECRET, {}),
        ("harbor", SECRET, {"header": "Authorization"}),
        ("hmac-sha256", SECRET, {"header": "X-Hub-Signature-256", "prefix": "sha256="}),
        ("basic", f"acr:{SECRET}", {}),
        ("path-secret", SECRET, {}),
    ]:
        directory = tmp_path / auth_type
        directory.mkdir()
        auth = _authenticator(directory, auth_type, secret, NEXT_SECRET, clock=clock, **options)
        good_signature = "sha256=" + _sign(SECRET, BODY)
        secrets_seen.append(good_signature)
        for headers, path_secret in [
            ({"Authorization": f"Bearer {SECRET}"}, None),
            ({"Authorization": f"Bearer {SECRET}-wrong"}, None),
            ({"Authorization": SECRET}, None),
            ({"Authorization": _basic(f"acr:{SECRET}")}, None),
            ({"X-Hub-Signature-256": good_signature}, None),
            ({"X-Hub-Signature-256": good_signature + "00"}, None),
            ({}, SECRET),
            ({}, NEXT_SECRET + "-wrong"),
            ({}, None),
        ]:
            attempts.append((auth, headers, path_secret))
    results = [
        auth.authenticate(headers=headers, body=BODY, path_secret=path_secret)
        for auth, headers, path_secret in attempts
    ]
    assert any(results) and not all(results)
    # Make one receiver lose its secrets: the refusal is logged, the secret not.
    for path in (tmp_path / "bearer").iterdir():
        path.unlink()
    clock.advance(1.0)
    bearer = attempts[0][0]
    assert not bearer.authenticate(
        headers={"Authorization": f"Bearer {SECRET}"}, body=BODY, path_secret=None
    )

    output = capsys.readouterr()
    logged = output.err + output.out
    assert "webhook_auth_refused" in logged  # debug logging did happen
    assert "webhook_no_valid_secret" in logged
    for secret in secrets_seen:
        assert secret not in logged
    assert base64.b64encode(f"acr:{SECRET}".encode()).decode() not in logged
    assert "s3cr3t" not in logged
