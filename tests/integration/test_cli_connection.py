"""Every command connects as kubectl does, and `describe is` prints what `oc describe is` does.

kubectl's rules (`imagestream/kube/kubeconfig.py`): `--kubeconfig`, else `$KUBECONFIG`
(merged), else `~/.kube/config`; `--context`, else `current-context`; `-n`, else the
context's namespace. Here a HOME holds a kubeconfig whose current context points at a
server that refuses connections and whose second context is the real one, with a
namespace: a command that gets any rule wrong fails or looks in the wrong namespace.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from imagestream.kube.resources import BUILDCONFIGS, DEPLOYMENTCONFIGS, DEPLOYMENTS
from localdev.private import private_dir, write_private
from tests.integration.cli import Ran, assert_one_error_line, imagestream, kubeconfig_of
from tests.integration.conftest import System, eventually, new_namespace, push
from tests.integration.rollouts import dc_manifest
from tests.integration.test_builds import buildconfig
from tests.integration.workloads import trigger, workload


def home_with_contexts(system: System, tmp_path: Path, namespace: str) -> Path:
    """A HOME whose ~/.kube/config has `dead` (current) and `live` (namespace set)."""
    real: dict[str, Any] = yaml.safe_load(kubeconfig_of(system).read_text())
    cluster = real["clusters"][0]
    dead_cluster = copy.deepcopy(cluster)
    dead_cluster["name"] = "dead"
    dead_cluster["cluster"]["server"] = "https://127.0.0.1:1"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster, dead_cluster],
        "users": real["users"],
        "contexts": [
            {"name": "dead", "context": {"cluster": "dead", "user": real["users"][0]["name"]}},
            {
                "name": "live",
                "context": {
                    "cluster": cluster["name"],
                    "user": real["users"][0]["name"],
                    "namespace": namespace,
                },
            },
        ],
        "current-context": "dead",
    }
    home = tmp_path / "home"
    private_dir(home / ".kube")
    write_private(home / ".kube" / "config", yaml.safe_dump(config))  # kubeconfigs are secret
    return home


async def as_user(home: Path, *args: str, kubeconfig: Path | None = None) -> Ran:
    return await imagestream(*args, kubeconfig=kubeconfig, home=home)


async def test_the_context_namespace_and_flags_choose_where_commands_act(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "ctx")
    home = home_with_contexts(system, tmp_path, namespace)
    digest = push(system, tmp_path, f"{namespace}/app:v1")
    await system.kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "web")], ["web"])
    )

    async def rolled() -> bool:
        deployment = await system.kube.get(DEPLOYMENTS, namespace, "web")
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return str(image).endswith(digest)

    await eventually(rolled, what="the deployment follows the push")

    # The current context refuses connections: one line, exit 1.
    ran = await as_user(home, "describe", "is/app")
    assert_one_error_line(ran)
    assert ran.stderr.startswith("error: cannot reach the API server")

    # --context picks the live one, and its namespace is where the command looks.
    for args in (
        ["describe", "is/app", "--context", "live"],
        ["--context", "live", "describe", "is/app"],
    ):
        ran = await as_user(home, *args)
        assert ran.ok, ran.stderr
        assert f"Namespace:\t\t{namespace}\n" in ran.stdout

    # -n wins over the context's namespace.
    other = await new_namespace(system.kube, "ctxother")
    ran = await as_user(home, "describe", "is/app", "--context", "live", "-n", other)
    assert ran.stderr == (
        'Error from server (NotFound): imagestreams.image.openshift.io "app" not found\n'
    )

    # $KUBECONFIG replaces ~/.kube/config; its files are merged, the first naming a
    # context wins, and current-context comes from the first file that sets it.
    live_first = tmp_path / "live-first"
    base = yaml.safe_load((home / ".kube" / "config").read_text())
    write_private(
        live_first,
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "live"}),
    )
    rest = tmp_path / "rest"
    write_private(rest, yaml.safe_dump(base))
    ran = await imagestream(
        "explain",
        "deployment/web",
        "-o",
        "json",
        kubeconfig=None,
        home=home,
        extra_env={"KUBECONFIG": f"{live_first}:{tmp_path / 'missing'}:{rest}"},
    )
    assert ran.ok, ran.stderr
    [outcome] = json.loads(ran.stdout)
    assert outcome["reason"] == "UpToDate"
    assert outcome["resolvedImage"].endswith(digest)
    assert outcome["target"] == 'spec.template.spec.containers[?(@.name=="web")].image'

    ran = await as_user(home, "describe", "is/app", "--context", "nope")
    assert_one_error_line(ran)
    assert ran.stderr == 'error: context "nope" not found in the kubeconfig\n'
    ran = await as_user(home, "describe", "is/app", "--kubeconfig", str(tmp_path / "none"))
    assert_one_error_line(ran)


async def test_rollout_and_start_build_use_the_context_namespace(
    system: System, tmp_path: Path
) -> None:
    namespace = await new_namespace(system.kube, "ctx")
    home = home_with_contexts(system, tmp_path, namespace)
    await system.kube.create(DEPLOYMENTCONFIGS, namespace, dc_manifest("web"))

    async def first_version() -> bool:
        dc = await system.kube.get(DEPLOYMENTCONFIGS, namespace, "web")
        return (dc.get("status") or {}).get("latestVersion") == 1

    await eventually(first_version, what="the DeploymentConfig's first version")
    ran = await as_user(home, "rollout", "history", "dc/web", "--context", "live")
    assert ran.ok, ran.stderr
    assert ran.stdout.splitlines()[0] == 'deploymentconfigs "web"'
    ran = await as_user(home, "rollout", "latest", "dc/web", "--context", "live", "-o", "json")
    assert ran.ok, ran.stderr
    assert json.loads(ran.stdout)["status"]["latestVersion"] == 2

    body = buildconfig(
        "app",
        base={"kind": "DockerImage", "name": "registry.invalid/base:1"},
        triggers=[],  # nothing starts a build but the command
    )
    await system.kube.create(BUILDCONFIGS, namespace, body)
    ran = await as_user(home, "start-build", "app", "--context", "live", "-o", "json")
    assert ran.ok, ran.stderr
    build = json.loads(ran.stdout)
    assert (build["kind"], build["metadata"]["namespace"]) == ("Build", namespace)


async def test_describe_prints_oc_layout(system: System, tmp_path: Path) -> None:
    namespace = await new_namespace(system.kube, "describe")
    first = push(system, tmp_path, f"{namespace}/app:v1")
    tag = ["tag", "-n", namespace]
    kubeconfig = kubeconfig_of(system)

    async def has(tag_name: str, digest: str) -> bool:
        ran = await imagestream(
            "describe", "is", "app", "-n", namespace, kubeconfig=kubeconfig, home=tmp_path
        )
        return ran.ok and f"  * {system.registry.host}/{namespace}/app@{digest}" in ran.stdout

    await eventually(lambda: has("v1", first), what="v1 pushed")
    second = push(system, tmp_path, f"{namespace}/app:v1")
    await eventually(lambda: has("v1", second), what="v1 pushed again")
    ran = await imagestream(
        *tag, "--alias", "app:v1", "app:latest", kubeconfig=kubeconfig, home=tmp_path
    )
    assert ran.ok, ran.stderr
    ran = await imagestream(
        *tag,
        "--source=docker",
        "--scheduled",
        "--insecure",
        "quay.io/example/db:1.2",
        "app:1.2",
        kubeconfig=kubeconfig,
        home=tmp_path,
    )
    assert ran.ok, ran.stderr

    async def described() -> str | None:
        ran = await imagestream(
            "describe", "is/app", "-n", namespace, kubeconfig=kubeconfig, home=tmp_path
        )
        text = ran.stdout
        return text if "! error: Import failed" in text else None

    text = await eventually(described, what="the import of 1.2 failed (not allowed here)")
    ago = r"(Less than a second|\d+ seconds?|About a minute) ago"
    repository = f"{system.registry.host}/{namespace}/app"
    expected = [
        "Name:\t\t\tapp",
        f"Namespace:\t\t{namespace}",
        f"Created:\t\t{ago}",
        "Labels:\t\t\t<none>",
        "Annotations:\t\t<none>",
        f"Image Repository:\t{re.escape(repository)}",
        "Image Lookup:\t\tlocal=false",
        "Unique Images:\t\t2",
        "Tags:\t\t\t3",
        "",
        # An alias of a tag that has no spec tag (a pushed one) is listed on its own:
        # oc's FollowTagReference only follows spec tags.
        "latest",
        "  tagged from app:v1",
        "",
        f"  \\* {re.escape(repository)}@{second}",
        f"      {ago}",
        "",
        r"1\.2",
        "  updates automatically from registry quay.io/example/db:1.2",
        "    will use insecure HTTPS or HTTP connections",
        "",
        r"  ! error: Import failed \(Forbidden\): registry quay.io is not in the registries .+",
        f"      {ago}",
        "",
        "v1",
        "  no spec tag",
        "",
        f"  \\* {re.escape(repository)}@{second}",
        f"      {ago}",
        f"    {re.escape(repository)}@{first}",
        f"      {ago}",
    ]
    lines = text.splitlines()
    assert len(lines) == len(expected), text
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern, text)
