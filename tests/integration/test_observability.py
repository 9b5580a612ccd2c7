"""What a platform team scrapes: the metrics both processes export, on the real control plane.

The controller and the webhook run as the chart runs them, one process each (here two
in-process `run_components`, each with its own registry and /metrics), on a control plane
of their own: the push-to-patch histogram is counted exactly, so no other test's
controller may touch these workloads, and no other test's workload may add samples.

* Both export `imagestream_build_info` and prometheus_client's process metrics; the
  controller exports `imagestream_controller_leader` (1 on the leader).
* `imagestream_tag_to_patch_seconds` counts push-driven patches only: a push adds one
  sample, a revert of a hand edit (the tag did not move) and a workload created after the
  push add none, though each of them is a patch (`imagestream_trigger_patches_total`).
* Every metric name the chart's Grafana dashboard and PrometheusRule query is one these
  processes export; a real Prometheus (Debian's, scripts/prometheus.sh) scraping them loads
  and evaluates the rendered rules and runs every dashboard query; promtool's rule unit
  tests show each alert firing on its situation, after its `for`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from controller import app as controller_app
from imagestream.kube.client import Kube
from imagestream.kube.resources import DEPLOYMENTS, IMAGESTREAMS
from imagestream.settings import Settings
from imagestream.version import package_version
from localdev.controlplane import ControlPlane, free_port
from localdev.processes import ManagedProcess
from localdev.registry import NotificationEndpoint, Registry
from localdev.system import RunningSystem, local_settings, run_system
from tests.integration.conftest import (
    eventually,
    kube_with_crds,
    new_namespace,
    own_control_plane,
)
from tests.integration.workloads import images, trigger, workload
from webhook import app as webhook_app

LATENCY = "imagestream_tag_to_patch_seconds"


@dataclass
class Observed:
    kube: Kube
    registry: Registry
    controller: RunningSystem
    webhook: RunningSystem

    async def scrape(self, settings: Settings) -> dict[str, float]:
        """`{sample name{labels}: value}` of one process's /metrics (this event loop serves
        it, so asynchronously)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{settings.metrics_addr}/metrics") as response,
        ):
            assert response.status == 200
            text = await response.text()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}"] = sample.value
        return samples

    async def controller_metrics(self) -> dict[str, float]:
        return await self.scrape(self.controller.settings)

    async def webhook_metrics(self) -> dict[str, float]:
        return await self.scrape(self.webhook.settings)


def names(samples: dict[str, float]) -> set[str]:
    return {key.partition("{")[0] for key in samples}


def value(samples: dict[str, float], name: str, **labels: str) -> float:
    key = f"{name}{{{','.join(f'{k}={v}' for k, v in sorted(labels.items()))}}}"
    return samples.get(key, 0.0)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory, "observability-plane") as own:
        yield own


@pytest.fixture(scope="module")
async def observed(
    plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Observed]:
    workdir = tmp_path_factory.mktemp("observed")
    token = "observed-" + uuid.uuid4().hex
    (workdir / "token").write_text(token)
    webhook_settings = local_settings(
        kubeconfig=plane.kubeconfig_path,
        webhook_token_file=workdir / "token",
        allowed_registries=("127.0.0.1:*",),
    )
    registry = Registry(
        workdir=workdir / "registry",
        notify=NotificationEndpoint(
            url=f"http://{webhook_settings.webhook_addr}/v1/events/distribution", token=token
        ),
    ).start()
    webhook_settings = dataclasses.replace(webhook_settings, integrated_registry=registry.host)
    controller_settings = local_settings(
        kubeconfig=plane.kubeconfig_path,
        integrated_registry=registry.host,
        allowed_registries=("127.0.0.1:*",),
        leader_elect=True,
        leader_election_namespace="default",
    )
    try:
        async with (
            kube_with_crds(plane) as kube,
            run_system(webhook_settings, [webhook_app.start]) as webhook,
            run_system(controller_settings, [controller_app.start]) as controller,
        ):
            yield Observed(kube=kube, registry=registry, controller=controller, webhook=webhook)
    finally:
        registry.stop()


def push(observed: Observed, tmp_path: Path, destination: str) -> str:
    from localdev.images import make_oci_image, skopeo_push

    image = make_oci_image(tmp_path / uuid.uuid4().hex, uuid.uuid4().hex)
    skopeo_push(image, f"{observed.registry.host}/{destination}")
    return image.manifest_digest


async def test_both_processes_export_build_info_and_process_metrics(observed: Observed) -> None:
    for samples in (await observed.controller_metrics(), await observed.webhook_metrics()):
        build = {
            "version": package_version(),
            "python_version": platform.python_version(),
        }
        assert value(samples, "imagestream_build_info", **build) == 1.0, sorted(samples)
        for name in (
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "python_info",
        ):
            assert name in names(samples), name
    assert "imagestream_controller_leader" not in names(await observed.webhook_metrics())


async def test_the_leader_says_so(observed: Observed) -> None:
    async def leading() -> bool:
        return value(await observed.controller_metrics(), "imagestream_controller_leader") == 1.0

    await eventually(leading, timeout_s=30.0, what="imagestream_controller_leader 1")


async def _image_of(kube: Kube, namespace: str, name: str) -> str:
    return images(await kube.get(DEPLOYMENTS, namespace, name))["web"]


async def test_the_latency_histogram_counts_push_driven_patches_only(
    observed: Observed, tmp_path: Path
) -> None:
    kube = observed.kube
    namespace = await new_namespace(kube, "latency")
    repository = f"{observed.registry.host}/{namespace}/app"

    async def samples() -> tuple[float, float]:
        """(latency samples, Deployment patches) so far."""
        metrics = await observed.controller_metrics()
        return (
            value(metrics, f"{LATENCY}_count"),
            value(metrics, "imagestream_trigger_patches_total", resource="deployments"),
        )

    async def reconciles() -> float:
        return value(
            await observed.controller_metrics(), "imagestream_reconcile_total",
            queue="workloads", outcome="success",
        )  # fmt: skip

    async def image_becomes(name: str, expected: str) -> None:
        async def check() -> bool:
            return await _image_of(kube, namespace, name) == expected

        await eventually(check, what=f"{name} runs {expected}")

    async def settles_at(latency_samples: float, patches: float) -> None:
        """The sample is taken after the patch's Event: wait for the counts, then make
        sure no late sample follows."""

        async def reached() -> bool:
            return await samples() >= (latency_samples, patches)

        await eventually(reached, timeout_s=10.0, what=f"{latency_samples} samples")
        await asyncio.sleep(0.5)
        assert await samples() == (latency_samples, patches)

    async def set_by_hand(name: str, image: str) -> None:
        await kube.patch(
            DEPLOYMENTS, namespace, name,
            {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}},
        )  # fmt: skip

    async def leading() -> bool:
        return value(await observed.controller_metrics(), "imagestream_controller_leader") == 1

    await eventually(leading, what="the controller leads")
    samples0, patches0 = await samples()

    # A Deployment following app:v1 before anything was pushed, seen waiting for the tag.
    before = await reconciles()
    await kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "web")], ["web"])
    )

    async def reconciled() -> bool:
        return await reconciles() > before

    await eventually(reconciled, what="the Deployment reconciled")

    # 1. A push: the tag moves, the workload takes the new event. One sample.
    first = await asyncio.to_thread(push, observed, tmp_path, f"{namespace}/app:v1")
    await image_becomes("web", f"{repository}@{first}")
    await settles_at(samples0 + 1, patches0 + 1)

    # 2. A hand edit, reverted: a patch, but the tag did not move. No sample.
    await set_by_hand("web", "busybox:edited-by-hand")
    await image_becomes("web", f"{repository}@{first}")
    await settles_at(samples0 + 1, patches0 + 2)

    # 3. Another push: one more sample.
    second = await asyncio.to_thread(push, observed, tmp_path, f"{namespace}/app:v1")
    await image_becomes("web", f"{repository}@{second}")
    await settles_at(samples0 + 2, patches0 + 3)

    # 4. A rollback by hand to the previous event (kubectl rollout undo), reverted to the
    #    tag's current image, which the workload had already taken. No sample.
    await set_by_hand("web", f"{repository}@{first}")
    await image_becomes("web", f"{repository}@{second}")
    await settles_at(samples0 + 2, patches0 + 4)

    # 5. A workload created after the push takes the current image: a patch, not a push.
    await kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "late", [trigger("app:v1", "web")], ["web"])
    )
    await image_becomes("late", f"{repository}@{second}")
    await settles_at(samples0 + 2, patches0 + 5)

    metrics = await observed.controller_metrics()
    total_s = value(metrics, f"{LATENCY}_sum")
    print(f"{LATENCY}: {value(metrics, f'{LATENCY}_count') - samples0:.0f} samples for 2 pushes"
          f" among 5 patches; sum {total_s:.3f} s")  # fmt: skip
    assert (await kube.get(IMAGESTREAMS, namespace, "app"))["status"]["tags"]


# --- the chart's dashboard and alert rules query only what is exported ------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "imagestream-controller"
MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "inf", "nan"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana's label_values()) selects."""
    if match := re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*).*\)\s*", expr, re.DOTALL):
        return {match[1]}
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name.lower() not in _KEYWORDS
    }


def test_metric_names_are_read_from_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"5..",y="b c"}[$__rate_interval])))'
        " / ignoring(code) b_total > 0.5 or vector(0)"
    ) == {"a_bucket", "b_total"}
    assert metric_names("label_values(imagestream_build_info, namespace)") == {
        "imagestream_build_info"
    }
    assert metric_names('(sum(up{job="x"}) or vector(0)) < 1 unless on(pod) c') == {"up", "c"}


def _render_monitoring() -> list[dict[str, object]]:
    build = REPO_ROOT / "localkube" / "build.sh"
    directory = subprocess.run(
        [str(build), "helm", "--print-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    rendered = subprocess.run(
        [f"{directory}/helm", "template", "rel", str(CHART), "--values", str(MONITORING_VALUES)],
        check=True, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def _dashboard_queries(dashboard: dict[str, object]) -> list[str]:
    queries: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if key in ("expr", "definition") and isinstance(child, str) and child:
                    queries.append(child)
                elif key == "query" and isinstance(child, dict) and child.get("query"):
                    queries.append(str(child["query"]))
                else:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(dashboard)
    return queries


async def _exercise(observed: Observed, tmp_path: Path) -> None:
    """Make every labelled series exist: a push that rolls a Deployment, an import that
    works and one that fails."""
    kube = observed.kube
    namespace = await new_namespace(kube, "exercise")
    await kube.create(
        DEPLOYMENTS, namespace, workload("Deployment", "web", [trigger("app:v1", "web")], ["web"])
    )
    digest = await asyncio.to_thread(push, observed, tmp_path, f"{namespace}/app:v1")
    host = observed.registry.host

    async def patched() -> bool:
        return await _image_of(kube, namespace, "web") == f"{host}/{namespace}/app@{digest}"

    await eventually(patched, what="the Deployment patched")
    await kube.create(
        IMAGESTREAMS, namespace,
        {"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
         "metadata": {"name": "imported"},
         "spec": {"tags": [
             {"name": "good", "from": {"kind": "DockerImage", "name": f"{host}/{namespace}/app:v1"},
              "importPolicy": {"insecure": True}},
             {"name": "bad", "from": {"kind": "DockerImage", "name": f"{host}/{namespace}/nope:v1"},
              "importPolicy": {"insecure": True}},
         ]}},
    )  # fmt: skip

    async def both_results() -> bool:
        metrics = await observed.controller_metrics()
        results = {
            key.partition("result=")[2].partition(",")[0].rstrip("}")
            for key in metrics
            if key.startswith("imagestream_imports_total{")
        }
        return {"imported", "failed"} <= results

    await eventually(both_results, timeout_s=60.0, what="an import that works and one that fails")


async def test_the_dashboard_and_the_alert_rules_query_only_exported_metrics(
    observed: Observed, tmp_path: Path
) -> None:
    await _exercise(observed, tmp_path)
    controller, webhook = await observed.controller_metrics(), await observed.webhook_metrics()
    exported = names(controller) | names(webhook)

    objects = _render_monitoring()
    (config_map,) = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")  # type: ignore[index]
    ]
    shipped = json.loads(config_map["data"]["imagestream-controller.json"])  # type: ignore[index]
    assert shipped == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"  # type: ignore[index]
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}  # type: ignore[index]
    assert set(alerts) == {
        "ImageStreamWebhookErrors",
        "ImageStreamPushToPatchSlow",
        "ImageStreamImportFailures",
        "ImageStreamControllerLeaderAbsent",
        "ImageStreamWorkQueueBacklog",
    }

    queries = {f"dashboard: {q}": q for q in _dashboard_queries(shipped)}
    queries |= {f"alert {name}: {expr}": expr for name, expr in alerts.items()}
    missing = {
        where: sorted(metric_names(q) - exported)
        for where, q in queries.items()
        if metric_names(q) - exported
    }
    assert not missing, missing
    used = set().union(*(metric_names(q) for q in queries.values()))
    print(f"{len(queries)} queries name {len(used)} metrics, all exported: {sorted(used)}")
    # And the five alerts' subjects are among them.
    assert {
        "imagestream_webhook_requests_total",
        "imagestream_tag_to_patch_seconds_bucket",
        "imagestream_imports_total",
        "imagestream_controller_leader",
        "imagestream_queue_depth",
    } <= used


# --- a real Prometheus: the rules load and evaluate, every dashboard query runs ---------------

PROMETHEUS_SCRIPT = REPO_ROOT / "scripts" / "prometheus.sh"
NAMESPACE_LABEL = "imagestream-system"
"""What a ServiceMonitor's scrape would label the series with; ci/monitoring-values.yaml's
rule selector names it, and the dashboard's $namespace picks it."""


def _prometheus_dir() -> Path:
    subprocess.run([str(PROMETHEUS_SCRIPT)], check=True, capture_output=True, timeout=600)
    return Path(
        subprocess.run(
            [str(PROMETHEUS_SCRIPT), "--print-dir"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )


async def _prometheus_get(
    session: aiohttp.ClientSession, url: str, path: str, **params: str
) -> dict[str, Any]:
    async with session.get(f"{url}{path}", params=params) as response:
        body: dict[str, Any] = await response.json()
        assert response.status == 200 and body["status"] == "success", (path, params, body)
        return body


async def test_a_real_prometheus_loads_the_rules_and_runs_every_query(
    observed: Observed, tmp_path: Path
) -> None:
    """Prometheus 2.42 scrapes the running controller and webhook, loads the rendered
    PrometheusRule's groups (promtool checks them first) and evaluates all five alerts
    without error; every dashboard query is valid PromQL and every series it names has
    data."""
    await _exercise(observed, tmp_path)
    bin_dir = await asyncio.to_thread(_prometheus_dir)
    objects = _render_monitoring()
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))  # type: ignore[index]
    checked = await asyncio.to_thread(
        subprocess.run,
        [str(bin_dir / "promtool"), "check", "rules", str(rules_file)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    print(checked.stdout.strip())

    def job(component: str, settings: Settings) -> dict[str, Any]:
        return {
            "job_name": f"rel-imagestream-controller-{component}-metrics",
            "static_configs": [
                {"targets": [str(settings.metrics_addr)], "labels": {"namespace": NAMESPACE_LABEL}}
            ],
        }

    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_file)],
                "scrape_configs": [
                    job("controller", observed.controller.settings),
                    job("webhook", observed.webhook.settings),
                ],
            }
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prometheus = ManagedProcess(
        name="prometheus",
        argv=[
            str(bin_dir / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_path=tmp_path / "prometheus.log",
    ).start()
    try:
        async with aiohttp.ClientSession() as session:

            async def targets_up() -> bool:
                try:
                    body = await _prometheus_get(session, url, "/api/v1/targets")
                except aiohttp.ClientError:
                    return False
                active = body["data"]["activeTargets"]
                return len(active) == 2 and all(t["health"] == "up" for t in active)

            await eventually(targets_up, timeout_s=60.0, interval_s=0.5, what="targets up")

            async def evaluated() -> list[dict[str, Any]]:
                body = await _prometheus_get(session, url, "/api/v1/rules")
                rules = [r for g in body["data"]["groups"] for r in g["rules"]]
                return rules if all(r["health"] != "unknown" for r in rules) else []

            rules = await eventually(evaluated, timeout_s=30.0, what="rules evaluated")
            assert {r["name"]: (r["health"], r.get("lastError", "")) for r in rules} == {
                name: ("ok", "")
                for name in (
                    "ImageStreamWebhookErrors",
                    "ImageStreamPushToPatchSlow",
                    "ImageStreamImportFailures",
                    "ImageStreamControllerLeaderAbsent",
                    "ImageStreamWorkQueueBacklog",
                )
            }
            # The first import ever to fail with reason Forbidden (a registry outside
            # --allowed-registries, never contacted), while Prometheus watches: its series
            # was exported at 0 from the start, so increase() sees the step and the alert
            # fires. The controller leads, so that alert stays quiet.
            namespace = await new_namespace(observed.kube, "failing")
            await observed.kube.create(
                IMAGESTREAMS, namespace,
                {"apiVersion": "image.openshift.io/v1", "kind": "ImageStream",
                 "metadata": {"name": "broken"},
                 "spec": {"tags": [{"name": "v1", "importPolicy": {"insecure": True},
                                    "from": {"kind": "DockerImage",
                                             "name": "registry.invalid/x/none:v1"}}]}},
            )  # fmt: skip

            async def alert_states() -> dict[str, str] | None:
                body = await _prometheus_get(session, url, "/api/v1/rules")
                states = {r["name"]: r["state"] for g in body["data"]["groups"] for r in g["rules"]}
                alerts = [a for g in body["data"]["groups"] for r in g["rules"]
                          for a in r.get("alerts", [])]  # fmt: skip
                wanted = (
                    states["ImageStreamImportFailures"] == "firing"
                    and any(a["labels"].get("reason") == "Forbidden" for a in alerts)
                    and states["ImageStreamControllerLeaderAbsent"] == "inactive"
                )
                return states if wanted else None

            states = await eventually(alert_states, timeout_s=30.0, what="alert states")
            print(f"alert states: {states}")

            await asyncio.sleep(3)  # a few scrapes, so rate() over 1m has two points
            dashboard = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
            queries = _dashboard_queries(dashboard)
            for query in queries:
                if query.startswith("label_values("):
                    (name,) = metric_names(query)
                    body = await _prometheus_get(
                        session, url, "/api/v1/label/namespace/values", **{"match[]": name}
                    )
                    assert NAMESPACE_LABEL in body["data"], (query, body)
                    continue
                promql = query.replace("$__rate_interval", "1m").replace(
                    "$namespace", NAMESPACE_LABEL
                )
                await _prometheus_get(session, url, "/api/v1/query", query=promql)
            used = set().union(*(metric_names(q) for q in queries))
            empty = []
            for name in sorted(used):
                body = await _prometheus_get(session, url, "/api/v1/query", query=f"count({name})")
                if not body["data"]["result"]:
                    empty.append(name)
            assert not empty, empty
            print(f"Prometheus ran {len(queries)} dashboard queries and {len(rules)} alerts;"
                  f" the {len(used)} metrics they name all have series")  # fmt: skip
    finally:
        prometheus.stop()


# --- each alert fires on the situation it names (promtool's rule unit tests) ------------------

RENDERED_VALUES = {
    "{{ $value | humanizePercentage }}": "50%",
    "{{ $value | humanizeDuration }}": "59.41s",
    "{{ $value | humanize }}": "1",
    "{{ $value }}": "500",
    "{{ $labels.reason }}": "NotFound",
    "{{ $labels.queue }}": "workloads",
}
"""How Prometheus renders the annotations for the series below."""


def _rendered(annotations: dict[str, str]) -> dict[str, str]:
    out = {}
    for key, text in annotations.items():
        for template, rendered in RENDERED_VALUES.items():
            text = text.replace(template, rendered)
        assert "{{" not in text, text
        out[key] = text
    return out


def test_each_alert_fires_on_its_situation_and_not_before(tmp_path: Path) -> None:
    """promtool's rule unit tests on the rendered PrometheusRule (the chart's default
    selector and thresholds): synthetic series in which each situation begins, each alert
    silent before its `for` has passed and firing after, with its labels and annotations."""
    build = REPO_ROOT / "localkube" / "build.sh"
    helm_dir = subprocess.run(
        [str(build), "helm", "--print-dir"], check=True, capture_output=True, text=True
    ).stdout.strip()
    rendered = subprocess.run(
        [f"{helm_dir}/helm", "template", "rel", str(CHART), "--namespace", "ns",
         "--set", "metrics.prometheusRule.enabled=true"],
        check=True, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
    ).stdout  # fmt: skip
    (rule,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PrometheusRule"]
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))

    def fires(name: str, at: str, **labels: str) -> dict[str, Any]:
        return {
            "eval_time": at,
            "alertname": name,
            "exp_alerts": [
                {
                    "exp_labels": {**rules[name]["labels"], **labels},
                    "exp_annotations": _rendered(rules[name]["annotations"]),
                }
            ],
        }

    def silent(name: str, at: str) -> dict[str, Any]:
        return {"eval_time": at, "alertname": name, "exp_alerts": []}

    ns = 'namespace="ns"'
    bucket = f'imagestream_tag_to_patch_seconds_bucket{{{ns},le="%s"}}'
    answers = f'imagestream_webhook_requests_total{{{ns},receiver="d",code="%s"}}'
    failed = f'imagestream_imports_total{{{ns},result="failed",reason="NotFound"}}'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # Half the notifications answered 503, from minute 0.
                    {"series": answers % "200", "values": "0+60x40"},
                    {"series": answers % "503", "values": "0+60x40"},
                    # Every push takes between 1 and 60 s: p99 59.41 s.
                    {"series": bucket % "1", "values": "0x40"},
                    {"series": bucket % "60", "values": "0+60x40"},
                    {"series": bucket % "+Inf", "values": "0+60x40"},
                    # One failed import at minute 2.
                    {"series": failed, "values": "0 0 1x38"},
                    # The leader goes at minute 3.
                    {"series": f'imagestream_controller_leader{{{ns},pod="a"}}',
                     "values": "1 1 1 0x37"},
                    # 500 keys wait, from minute 0.
                    {"series": f'imagestream_queue_depth{{{ns},queue="workloads"}}',
                     "values": "500x40"},
                ],
                "alert_rule_test": [
                    # rate() has two points from minute 1: pending from 1m, firing
                    # once `for` (10m, 15m) has passed.
                    silent("ImageStreamWebhookErrors", "10m"),
                    fires("ImageStreamWebhookErrors", "12m"),
                    silent("ImageStreamPushToPatchSlow", "15m"),
                    fires("ImageStreamPushToPatchSlow", "17m"),
                    silent("ImageStreamImportFailures", "1m"),
                    fires("ImageStreamImportFailures", "10m", reason="NotFound"),
                    silent("ImageStreamControllerLeaderAbsent", "7m"),
                    fires("ImageStreamControllerLeaderAbsent", "9m"),
                    silent("ImageStreamWorkQueueBacklog", "14m"),
                    fires("ImageStreamWorkQueueBacklog", "16m", queue="workloads"),
                ],
            }
        ],
    }  # fmt: skip
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run(
        [str(_prometheus_dir() / "promtool"), "test", "rules", "tests.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout.strip())
