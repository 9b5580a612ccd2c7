"""kubectl's choice of kubeconfig files, context and namespace (imagestream/kube/kubeconfig.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from imagestream.kube.kubeconfig import (
    KubeconfigError,
    choose_target,
    kubeconfig_files,
    resolve_target,
)


def write(path: Path, **config: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", **config}))
    return path


def contexts(*entries: tuple[str, str | None]) -> list[dict[str, object]]:
    made = []
    for name, namespace in entries:
        context: dict[str, object] = {"cluster": "c", "user": "u"}
        if namespace:
            context["namespace"] = namespace
        made.append({"name": name, "context": context})
    return made


def test_the_flag_wins_and_must_exist(tmp_path: Path) -> None:
    given = write(tmp_path / "given")
    env = {"KUBECONFIG": str(write(tmp_path / "env"))}
    assert kubeconfig_files(given, env, tmp_path)[0] == (given,)
    with pytest.raises(KubeconfigError, match="does not exist"):
        kubeconfig_files(tmp_path / "nope", env, tmp_path)


def test_kubeconfig_replaces_home_and_skips_missing_files(tmp_path: Path) -> None:
    home_config = write(tmp_path / ".kube" / "config")
    first, second = write(tmp_path / "a"), write(tmp_path / "b")
    env = {"KUBECONFIG": f"{first}:{tmp_path / 'missing'}:{second}"}
    assert kubeconfig_files(None, env, tmp_path)[0] == (first, second)
    assert kubeconfig_files(None, {"KUBECONFIG": str(tmp_path / "missing")}, tmp_path)[0] == ()
    assert kubeconfig_files(None, {}, tmp_path)[0] == (home_config,)
    assert kubeconfig_files(None, {"KUBECONFIG": ""}, tmp_path)[0] == (home_config,)


def test_context_and_namespace_follow_kubectl() -> None:
    first = {"current-context": "a", "contexts": contexts(("a", "team"), ("b", None))}
    second = {"current-context": "b", "contexts": contexts(("a", "shadowed"), ("c", "other"))}
    documents = [first, second]
    target = choose_target(files=(), documents=documents, context_flag=None, namespace_flag=None)
    assert (target.context, target.namespace) == ("a", "team")  # the first file's, both ways
    target = choose_target(files=(), documents=documents, context_flag="b", namespace_flag=None)
    assert (target.context, target.namespace) == ("b", "default")
    target = choose_target(files=(), documents=documents, context_flag="c", namespace_flag="x")
    assert (target.context, target.namespace) == ("c", "x")
    with pytest.raises(KubeconfigError, match='context "nope" not found'):
        choose_target(files=(), documents=documents, context_flag="nope", namespace_flag=None)
    with pytest.raises(KubeconfigError, match="no current-context"):
        choose_target(
            files=(), documents=[{"contexts": []}], context_flag=None, namespace_flag=None
        )


def test_without_any_kubeconfig_a_pod_uses_its_service_account(tmp_path: Path) -> None:
    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("t")
    (account / "namespace").write_text("from-file\n")
    pod = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    target = resolve_target(
        kubeconfig=None,
        context=None,
        namespace=None,
        environ=pod,
        home=tmp_path,
        service_account_dir=account,
    )
    assert (target.files, target.namespace) == ((), "from-file")
    target = resolve_target(
        kubeconfig=None,
        context=None,
        namespace=None,
        environ=pod | {"POD_NAMESPACE": "from-env"},
        home=tmp_path,
        service_account_dir=account,
    )
    assert target.namespace == "from-env"
    with pytest.raises(KubeconfigError, match=r"~/.kube/config does not exist"):
        resolve_target(
            kubeconfig=None,
            context=None,
            namespace=None,
            environ={},
            home=tmp_path,
            service_account_dir=account,
        )


def test_resolve_reads_the_files(tmp_path: Path) -> None:
    write(tmp_path / ".kube" / "config", **{"current-context": "a"}, contexts=contexts(("a", "ns")))
    target = resolve_target(
        kubeconfig=None, context=None, namespace=None, environ={}, home=tmp_path
    )
    assert (target.context, target.namespace) == ("a", "ns")
    broken = tmp_path / "broken"
    broken.write_text("{ not yaml")
    with pytest.raises(KubeconfigError, match="cannot be read"):
        resolve_target(kubeconfig=broken, context=None, namespace=None, environ={}, home=tmp_path)
