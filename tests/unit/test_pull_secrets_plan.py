"""The pull-secret plan (controller/serviceaccounts/plan.py): names, lists, token times."""

from __future__ import annotations

import base64
import json
from typing import Any

from controller.serviceaccounts.plan import (
    SECRET_KEY,
    SECRET_REF_ANNOTATION,
    SECRET_TYPE,
    docker_config,
    held_auth,
    image_pull_secrets,
    missing_accounts,
    new_secret,
    plan_account,
    secret_name,
    token_times,
)

NOW = 1_800_000_000.0


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl"


def _account(**extra: Any) -> dict[str, Any]:
    metadata = {"name": "builder", "namespace": "ns", "uid": "uid-1", "resourceVersion": "7"}
    return {"metadata": metadata, **extra}


def _secret(token: str, hosts: list[str]) -> dict[str, Any]:
    secret = new_secret(_account(), secret_name("builder", "uid-1"))
    secret["data"] = {SECRET_KEY: base64.b64encode(docker_config(token, hosts)).decode()}
    return secret


def test_the_name_is_the_accounts_and_fits_63_characters() -> None:
    assert secret_name("builder", "uid-1").startswith("builder-dockercfg-")
    assert secret_name("builder", "uid-1") != secret_name("builder", "uid-2")
    long = secret_name("a" * 200, "uid-1")
    assert len(long) == 63
    assert long.endswith(secret_name("x", "uid-1")[-16:])


def test_our_entry_is_appended_once_and_others_stay_in_order() -> None:
    name = "builder-dockercfg-abcde"
    account = _account(imagePullSecrets=[{"name": "by-hand"}, {"name": "other"}])
    assert image_pull_secrets(account, name) == [
        {"name": "by-hand"},
        {"name": "other"},
        {"name": name},
    ]
    listed = _account(imagePullSecrets=[{"name": "by-hand"}, {"name": name}])
    assert image_pull_secrets(listed, name) is None
    twice = _account(imagePullSecrets=[{"name": name}, {"name": "by-hand"}, {"name": name}])
    assert image_pull_secrets(twice, name) == [{"name": name}, {"name": "by-hand"}]


def test_the_docker_config_holds_the_token_for_every_host() -> None:
    document = json.loads(docker_config("tok", ["b:5000", "a:5000"]))
    assert sorted(document["auths"]) == ["a:5000", "b:5000"]
    auth = base64.b64decode(document["auths"]["a:5000"]["auth"]).decode()
    assert auth == "<token>:tok"
    held = held_auth(_secret("tok", ["a:5000"]))
    assert held.hosts == {"a:5000"} and held.token == "tok"
    assert "tok" not in repr(held)


def test_token_times_come_from_the_jwt_and_junk_is_none() -> None:
    times = token_times(_jwt({"iat": 1000, "nbf": 1000, "exp": 2000}))
    assert times is not None and times.refresh_at == 1600.0
    assert token_times("not-a-jwt") is None
    assert token_times(_jwt({"exp": 5})) is None
    assert token_times(_jwt({"iat": 10, "exp": 5})) is None


def test_a_new_account_gets_a_secret_an_annotation_and_an_entry() -> None:
    plan = plan_account(_account(), None, hosts=["r:5000"], now=NOW)
    name = secret_name("builder", "uid-1")
    assert plan.create_secret and plan.new_token
    assert plan.account_patch == {
        "metadata": {"annotations": {SECRET_REF_ANNOTATION: name}, "resourceVersion": "7"},
        "imagePullSecrets": [{"name": name}],
    }
    assert new_secret(_account(), name)["type"] == SECRET_TYPE


def test_a_fresh_token_is_kept_and_looked_at_again_when_due() -> None:
    name = secret_name("builder", "uid-1")
    account = _account(imagePullSecrets=[{"name": name}])
    account["metadata"]["annotations"] = {SECRET_REF_ANNOTATION: name}
    token = _jwt({"nbf": NOW - 100, "exp": NOW + 900})
    plan = plan_account(account, _secret(token, ["r:5000"]), hosts=["r:5000"], now=NOW)
    assert not (plan.new_token or plan.rewrite_hosts or plan.fix_metadata or plan.create_secret)
    assert plan.account_patch is None
    assert plan.requeue_after_s == 500.0  # 60 % of 1000 s from nbf


def test_a_token_with_less_than_40_percent_left_or_expired_is_replaced() -> None:
    for exp in (NOW + 300, NOW - 10):
        token = _jwt({"nbf": exp - 1000, "exp": exp})
        plan = plan_account(_account(), _secret(token, ["r:5000"]), hosts=["r:5000"], now=NOW)
        assert plan.new_token and plan.reason == "expiring"


def test_a_new_host_rewrites_the_data_with_the_same_token() -> None:
    token = _jwt({"nbf": NOW - 100, "exp": NOW + 900})
    plan = plan_account(_account(), _secret(token, ["old:5000"]), hosts=["new:5000"], now=NOW)
    assert plan.rewrite_hosts and not plan.new_token


def test_a_secret_we_cannot_read_gets_a_new_token() -> None:
    secret = _secret("x", ["r:5000"])
    secret["data"] = {SECRET_KEY: "not base64!"}
    plan = plan_account(_account(), secret, hosts=["r:5000"], now=NOW)
    assert plan.new_token and plan.reason == "unreadable"


def test_a_secret_without_the_accounts_owner_reference_is_fixed() -> None:
    token = _jwt({"nbf": NOW - 100, "exp": NOW + 900})
    secret = _secret(token, ["r:5000"])
    secret["metadata"]["ownerReferences"] = []
    assert plan_account(_account(), secret, hosts=["r:5000"], now=NOW).fix_metadata


def test_builder_and_deployer_are_the_accounts_made() -> None:
    assert missing_accounts(["default"]) == ["builder", "deployer"]
    assert missing_accounts(["default", "builder", "deployer"]) == []
