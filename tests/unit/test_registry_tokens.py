"""The registry token service's pure decisions: scopes, questions, credentials, claims, JWS."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from imagestream.kube.authorization import ResourceAccess
from imagestream.registry_tokens import (
    ISSUER,
    SERVICE,
    RequestedAccess,
    TokenRequestError,
    claims,
    credential_from,
    granted,
    libtrust_key_id,
    load_signing_key,
    new_signing_material,
    parse_scopes,
    questions,
    sign,
)

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# --- scopes ------------------------------------------------------------------------------------


def test_a_repository_scope_parses_into_its_actions() -> None:
    parsed = parse_scopes(["repository:team/app:pull,push"])
    assert parsed.requested == (RequestedAccess("repository", "team/app", ("pull", "push")),)
    assert parsed.ignored == ()


def test_scopes_in_several_parameters_and_space_separated_merge_per_resource() -> None:
    parsed = parse_scopes(
        ["repository:team/app:pull repository:other/base:pull", "repository:team/app:push,pull"]
    )
    assert parsed.requested == (
        RequestedAccess("repository", "team/app", ("pull", "push")),
        RequestedAccess("repository", "other/base", ("pull",)),
    )


def test_unparsable_scopes_are_ignored_as_distribution_ignores_them() -> None:
    parsed = parse_scopes(
        ["nonsense", "repository:team/app", "Repository:team/app:pull", "a:b:c:d", "x::pull"]
    )
    assert parsed.requested == ()
    assert parsed.ignored == (
        "nonsense",
        "repository:team/app",
        "Repository:team/app:pull",
        "a:b:c:d",
        "x::pull",
    )


def test_a_resource_class_and_other_types_parse_but_are_never_asked_about() -> None:
    parsed = parse_scopes(["repository(plugin):team/app:pull", "registry:catalog:*"])
    assert [a.resource_class for a in parsed.requested] == ["plugin", ""]
    for access in parsed.requested:
        assert questions(access, stream_exists=True) == ()


@pytest.mark.parametrize(
    "name",
    ["app", "a/b/c", "/app", "team/", "Team/app", "-team/app", "x" * 64 + "/app"],
)
def test_a_repository_not_namespace_slash_name_is_refused(name: str) -> None:
    with pytest.raises(TokenRequestError, match=r"<namespace>/<name>|not a namespace name"):
        parse_scopes([f"repository:{name}:pull"])


# --- questions ---------------------------------------------------------------------------------


def _layers(verb: str) -> ResourceAccess:
    return ResourceAccess(
        verb=verb,
        group="image.openshift.io",
        resource="imagestreams",
        subresource="layers",
        namespace="team",
        name="app",
    )


def test_pull_asks_get_and_push_asks_update_on_imagestreams_layers() -> None:
    access = RequestedAccess("repository", "team/app", ("pull", "push", "delete", "*"))
    asked = questions(access, stream_exists=True)
    assert [(q.action, q.reviews) for q in asked] == [
        ("pull", (_layers("get"),)),
        ("push", (_layers("update"),)),
    ]


def test_a_push_to_a_new_stream_also_asks_create_imagestreams() -> None:
    (push,) = questions(RequestedAccess("repository", "team/app", ("push",)), stream_exists=False)
    assert push.reviews == (
        _layers("update"),
        ResourceAccess(
            verb="create",
            group="image.openshift.io",
            resource="imagestreams",
            namespace="team",
            name="app",
        ),
    )


def test_only_allowed_actions_are_granted() -> None:
    access = RequestedAccess("repository", "team/app", ("pull", "push"))
    assert granted(access, ["push"]) == {
        "type": "repository",
        "name": "team/app",
        "actions": ["push"],
    }
    assert granted(access, []) is None


# --- credentials -------------------------------------------------------------------------------


def test_the_password_of_basic_auth_is_the_token_whatever_the_user_name() -> None:
    for user in ("user", "anything", "system-serviceaccount-a-b"):
        header = "Basic " + base64.b64encode(f"{user}:the-token".encode()).decode()
        credential = credential_from(header)
        assert credential is not None and credential.token == "the-token"
    bearer = credential_from("Bearer the-token")
    assert bearer is not None and bearer.token == "the-token"
    assert "the-token" not in repr(bearer)


def test_no_header_is_anonymous_and_a_header_without_a_token_is_refused() -> None:
    assert credential_from(None) is None
    assert credential_from("") is None
    for header in (
        "Basic " + base64.b64encode(b"user:").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic !!!not-base64",
        "Bearer ",
        "Digest abc",
    ):
        with pytest.raises(TokenRequestError):
            credential_from(header)


# --- the token ---------------------------------------------------------------------------------


def test_claims_are_what_distribution_verifies() -> None:
    access = [{"type": "repository", "name": "team/app", "actions": ["pull"]}]
    claim_set = claims(subject="system:serviceaccount:team:builder", access=access, now=1000)
    assert claim_set["iss"] == ISSUER
    assert claim_set["aud"] == SERVICE
    assert claim_set["sub"] == "system:serviceaccount:team:builder"
    assert (claim_set["iat"], claim_set["exp"]) == (1000, 1300)
    assert isinstance(claim_set["nbf"], int) and claim_set["nbf"] < 1000
    assert claim_set["access"] == access
    assert claim_set["jti"] != claims(subject="x", access=[], now=1000)["jti"]


def test_the_signature_is_es256_over_the_header_and_claims_with_the_libtrust_kid() -> None:
    cert, key = new_signing_material(NOW)
    signing = load_signing_key(cert, key)
    token = sign(signing.key, claims(subject="alice", access=[], now=1000))
    header_part, claims_part, signature_part = token.split(".")
    header = json.loads(_b64decode(header_part))
    assert header == {
        "typ": "JWT",
        "alg": "ES256",
        "kid": libtrust_key_id(signing.key.public_key()),
    }
    assert json.loads(_b64decode(claims_part))["sub"] == "alice"
    raw = _b64decode(signature_part)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    signing.key.public_key().verify(
        der, f"{header_part}.{claims_part}".encode(), ec.ECDSA(hashes.SHA256())
    )


def test_the_libtrust_key_id_is_twelve_groups_of_four() -> None:
    key_id = libtrust_key_id(ec.generate_private_key(ec.SECP256R1()).public_key())
    groups = key_id.split(":")
    assert len(groups) == 12 and all(len(g) == 4 and g.isalnum() and g.isupper() for g in groups)


def test_signing_material_is_checked_before_use() -> None:
    cert, key = new_signing_material(NOW)
    other_cert, _ = new_signing_material(NOW)
    assert load_signing_key(cert, key).certificate == cert
    with pytest.raises(ValueError, match=r"not the certificate of tls\.key"):
        load_signing_key(other_cert, key)
    with pytest.raises(ValueError, match="not PEM"):
        load_signing_key(b"garbage", key)
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValueError, match="P-256"):
        load_signing_key(cert, p384)
