"""`imagestream registry login`'s pure parts: the entry, the merged file, the host, the file."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from imagestream.cli.errors import CommandError
from imagestream.cli.registry import (
    default_auth_file,
    login_entry,
    registry_host,
    save,
    updated_config,
)


def test_the_entry_is_user_colon_token_in_base64() -> None:
    entry = login_entry("sha256~abc")
    assert base64.b64decode(entry["auth"]).decode() == "user:sha256~abc"


def test_other_entries_and_keys_of_the_file_are_kept() -> None:
    existing = json.dumps(
        {
            "auths": {"quay.io": {"auth": "cXVheQ=="}, "r.example:5000": {"auth": "b2xk"}},
            "credHelpers": {"gcr.io": "gcloud"},
        }
    )
    updated = json.loads(updated_config(existing, "r.example:5000", {"auth": "bmV3"}, "f"))
    assert updated == {
        "auths": {"quay.io": {"auth": "cXVheQ=="}, "r.example:5000": {"auth": "bmV3"}},
        "credHelpers": {"gcr.io": "gcloud"},
    }
    assert json.loads(updated_config("", "h", {"auth": "x"}, "f")) == {
        "auths": {"h": {"auth": "x"}}
    }


@pytest.mark.parametrize("existing", ["not json {", "[1]", '{"auths": 5}'])
def test_a_file_that_is_not_a_docker_config_is_refused_without_quoting_it(existing: str) -> None:
    with pytest.raises(CommandError, match="is not a docker config file") as raised:
        updated_config(existing, "h", {"auth": "x"}, "/home/u/.docker/config.json")
    assert existing not in str(raised.value)


def test_the_host_is_the_flag_else_the_public_name_else_the_internal_one() -> None:
    config = {
        "spec": {"externalRegistryHostnames": ["registry.apps.example"]},
        "status": {"internalRegistryHostname": "image-registry.svc:5000"},
    }
    assert registry_host("mine:5000", config) == "mine:5000"
    assert registry_host(None, config) == "registry.apps.example"
    internal_only = {"status": {"internalRegistryHostname": "image-registry.svc:5000"}}
    assert registry_host(None, internal_only) == "image-registry.svc:5000"
    with pytest.raises(CommandError, match="pass --registry"):
        registry_host(None, None)


def test_without_the_cluster_configuration_the_first_stream_names_the_host_as_oc_reads_it() -> None:
    public = {
        "status": {
            "dockerImageRepository": "image-registry.svc:5000/team/app",
            "publicDockerImageRepository": "registry.apps.example/team/app",
        }
    }
    internal = {"status": {"dockerImageRepository": "10.0.0.12:5000/team/app"}}
    assert registry_host(None, None, [public, internal]) == "registry.apps.example"
    assert registry_host(None, None, [internal, public]) == "10.0.0.12:5000"
    assert registry_host(None, {"status": {"internalRegistryHostname": "r:5000"}}, [public]) == (
        "r:5000"
    )
    for unusable in ({}, {"status": {}}, {"status": {"dockerImageRepository": "UPPER/x"}}):
        with pytest.raises(CommandError, match="no image stream names it"):
            registry_host(None, None, [unusable])


def test_the_default_file_is_registry_auth_file_else_docker_config(tmp_path: Path) -> None:
    assert default_auth_file({}, tmp_path) == tmp_path / ".docker" / "config.json"
    assert default_auth_file({"REGISTRY_AUTH_FILE": "/x/auth.json"}, tmp_path) == Path(
        "/x/auth.json"
    )


def test_the_file_is_private_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "new" / "config.json"
    save(path, "h:5000", login_entry("t1"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    save(path, "other:5000", login_entry("t2"))
    assert sorted(json.loads(path.read_text())["auths"]) == ["h:5000", "other:5000"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]  # no temporary left

    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError):
        save(broken, "h", login_entry("t"))
    assert broken.read_text() == "{not json"
