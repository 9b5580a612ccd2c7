"""DeploymentConfig rollout planning (docs/openshift-behaviours.md#behaviour-23 and
docs/openshift-behaviours.md#behaviour-24), without a cluster."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.rollouts.model import (
    ROLLOUT_REQUEST_ANNOTATION,
    RolloutRequest,
    make_replication_controller,
    owns,
    rc_template,
    strategy_of,
)
from controller.rollouts.plan import RolloutPlan, decide_rollout, plan_rollout

Obj = dict[str, Any]
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
IMAGE_A = "registry.example/ns/app@sha256:" + "a" * 64
IMAGE_B = "registry.example/ns/app@sha256:" + "b" * 64


def dc(
    *,
    image: str = IMAGE_A,
    triggers: list[Obj] | None = None,
    version: int = 0,
    replicas: int = 2,
    strategy: Obj | None = None,
    **spec: Any,
) -> Obj:
    body: Obj = {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "metadata": {
            "name": "web",
            "namespace": "ns",
            "uid": "dc-uid",
            "generation": 1,
            "resourceVersion": "10",
        },
        "spec": {
            "replicas": replicas,
            "selector": {"app": "web"},
            "triggers": [{"type": "ConfigChange"}] if triggers is None else triggers,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
            **spec,
        },
        "status": {"latestVersion": version} if version else {},
    }
    if strategy is not None:
        body["spec"]["strategy"] = strategy
    return body


def image_trigger(last: str = "", *, automatic: bool = True) -> Obj:
    params: Obj = {
        "automatic": automatic,
        "containerNames": ["web"],
        "from": {"kind": "ImageStreamTag", "name": "app:latest"},
    }
    if last:
        params["lastTriggeredImage"] = last
    return {"type": "ImageChange", "imageChangeParams": params}


def version_of(config: Obj, version: int, *, phase: str = "Complete", replicas: int = 0) -> Obj:
    """The RC `version` as the controller made it, settled at `replicas` ready pods."""
    view = copy.deepcopy(config)
    view["status"] = {"latestVersion": version, "details": {"message": "config change"}}
    rc = make_replication_controller(view, version)
    rc["metadata"]["annotations"]["openshift.io/deployment.phase"] = phase
    rc["metadata"] |= {
        "generation": 1,
        "resourceVersion": str(100 + version),
        "creationTimestamp": (NOW - timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    rc["spec"]["replicas"] = replicas
    rc["status"] = settled(replicas, generation=1)
    return rc


def settled(replicas: int, *, generation: int) -> Obj:
    return {
        "replicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "observedGeneration": generation,
    }


# --- when a version starts (decide_rollout) --------------------------------------------------


def test_the_first_version_waits_for_every_image_trigger() -> None:
    waiting = dc(triggers=[{"type": "ConfigChange"}, image_trigger(IMAGE_A), image_trigger()])
    assert decide_rollout(waiting, None) is None
    ready = dc(triggers=[image_trigger(IMAGE_A), image_trigger(IMAGE_A, automatic=False)])
    decision = decide_rollout(ready, None)
    assert decision is not None and decision.version == 1
    # OpenShift's quirk: the first rollout's cause is a config change.
    assert decision.details == {"message": "config change", "causes": [{"type": "ConfigChange"}]}


@pytest.mark.parametrize("image", ["", " ", "\t"])
def test_a_blank_image_never_starts_a_version(image: str) -> None:
    assert decide_rollout(dc(image=image), None) is None


def test_paused_or_triggerless_configs_never_start_by_themselves() -> None:
    assert decide_rollout(dc(paused=True), None) is None
    assert decide_rollout(dc(triggers=[]), None) is None


def test_later_versions_wait_for_the_current_versions_rc() -> None:
    assert decide_rollout(dc(version=3, image=IMAGE_B), None) is None


def test_an_image_not_in_the_latest_rc_is_an_image_change() -> None:
    current = dc(triggers=[image_trigger(IMAGE_A)], version=1)
    rc = version_of(current, 1)
    changed = copy.deepcopy(current)
    changed["spec"]["template"]["spec"]["containers"] += [
        {"name": "side", "image": IMAGE_B},
        {"name": "other", "image": IMAGE_B},
    ]
    decision = decide_rollout(changed, rc)
    assert decision is not None and decision.version == 2
    assert decision.details == {
        "message": "image change",
        "causes": [
            {
                "type": "ImageChange",
                "imageTrigger": {"from": {"kind": "DockerImage", "name": IMAGE_B}},
            }
        ],
    }
    assert decide_rollout(current, rc) is None


def test_a_template_change_is_a_config_change_only_with_a_config_change_trigger() -> None:
    current = dc(version=1)
    rc = version_of(current, 1)
    changed = copy.deepcopy(current)
    changed["spec"]["template"]["metadata"]["annotations"] = {"x": "1"}
    decision = decide_rollout(changed, rc)
    assert decision is not None and decision.details["message"] == "config change"
    changed["spec"]["triggers"] = []
    assert decide_rollout(changed, rc) is None


def test_an_rc_without_a_record_never_looks_like_a_config_change() -> None:
    current = dc(version=1)
    rc = version_of(current, 1)
    del rc["metadata"]["annotations"]["openshift.io/encoded-deployment-config"]
    assert decide_rollout(current, rc) is None


def test_a_request_for_the_next_version_wins_and_a_stale_one_is_ignored() -> None:
    current = dc(version=1, triggers=[])
    rc = version_of(current, 1)
    request = RolloutRequest(version=2, message="manual change", causes=({"type": "Manual"},))
    current["metadata"]["annotations"] = {ROLLOUT_REQUEST_ANNOTATION: request.to_annotation()}
    decision = decide_rollout(current, rc)
    assert decision is not None
    assert (decision.version, decision.details) == (
        2,
        {"message": "manual change", "causes": [{"type": "Manual"}]},
    )
    current["status"]["latestVersion"] = 2
    assert decide_rollout(current, version_of(current, 2)) is None
    current["metadata"]["annotations"][ROLLOUT_REQUEST_ANNOTATION] = "{not json"
    assert decide_rollout(current, version_of(current, 2)) is None


# --- the RC of a version ---------------------------------------------------------------------


def test_the_rc_carries_openshifts_names_and_the_recorded_config() -> None:
    config = dc(version=1)
    config["status"]["details"] = {"message": "config change"}
    config["spec"]["minReadySeconds"] = 5
    rc = make_replication_controller(config, 1)
    metadata = rc["metadata"]
    assert metadata["name"] == "web-1"
    assert metadata["labels"] == {
        "openshift.io/deployment-config.name": "web",
        "deploymentconfig": "web",
    }
    assert metadata["annotations"]["openshift.io/deployment.phase"] == "New"
    assert metadata["annotations"]["openshift.io/deployment-config.latest-version"] == "1"
    assert metadata["annotations"]["kubectl.kubernetes.io/desired-replicas"] == "2"
    recorded = json.loads(metadata["annotations"]["openshift.io/encoded-deployment-config"])
    assert recorded["status"] == {"latestVersion": 1, "details": {"message": "config change"}}
    assert metadata["ownerReferences"][0] | {} == {
        "apiVersion": "apps.openshift.io/v1",
        "kind": "DeploymentConfig",
        "name": "web",
        "uid": "dc-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert rc["spec"]["replicas"] == 0 and rc["spec"]["minReadySeconds"] == 5
    assert rc["spec"]["selector"] == {
        "app": "web",
        "deploymentconfig": "web",
        "deployment": "web-1",
    }
    assert rc["spec"]["template"]["metadata"]["labels"] == rc["spec"]["selector"]
    # What the RC recorded is exactly the DC's template (undo and ConfigChange read it).
    assert rc_template(rc) == config["spec"]["template"]
    del metadata["annotations"]["openshift.io/encoded-deployment-config"]
    assert rc_template(rc) == config["spec"]["template"]


def test_only_the_dcs_own_versions_are_touched() -> None:
    config = dc(version=1)
    rc = version_of(config, 1)
    assert owns(config, rc)
    foreign = copy.deepcopy(rc)
    foreign["metadata"]["ownerReferences"][0]["uid"] = "another-dc"
    unlabelled = copy.deepcopy(rc)
    del unlabelled["metadata"]["labels"]["openshift.io/deployment-config.name"]
    assert not owns(config, foreign) and not owns(config, unlabelled)


@pytest.mark.parametrize(
    ("params", "desired", "expected"),
    [
        ({}, 4, (1, 1)),
        ({}, 2, (1, 0)),
        ({}, 1, (1, 0)),
        ({"maxSurge": 0}, 4, (0, 1)),
        ({"maxUnavailable": "0%"}, 4, (1, 0)),
        ({"maxSurge": 3}, 4, (3, 0)),
        ({"maxSurge": "0%", "maxUnavailable": "10%"}, 4, (0, 1)),
    ],
)
def test_fenceposts_follow_openshifts_defaults(
    params: Obj, desired: int, expected: tuple[int, int]
) -> None:
    strategy = strategy_of(dc(strategy={"type": "Rolling", "rollingParams": params}))
    assert strategy.fenceposts(desired) == expected
    assert strategy_of(dc()).timeout_s == 600
    assert strategy_of(dc(strategy={"type": "Recreate"})).fenceposts(desired) == (0, 0)


# --- steps, simulated ------------------------------------------------------------------------


class Cluster:
    """The RC manager and a kubelet, simplified: after each plan, every RC's pods match its
    spec and are ready (or, for `unready`, exist but never become ready)."""

    def __init__(self, config: Obj, rcs: list[Obj], *, unready: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.config = config
        self.rcs = {rc["metadata"]["name"]: rc for rc in rcs}
        self.unready = unready
        self.history: list[dict[str, int]] = []

    def apply(self, plan: RolloutPlan) -> None:
        if plan.status:
            self.config["status"] = copy.deepcopy(plan.status)
        for update in plan.updates:
            rc = self.rcs[update.name]
            for key, value in update.annotations.items():
                if value is None:
                    rc["metadata"]["annotations"].pop(key, None)
                else:
                    rc["metadata"]["annotations"][key] = value
            if update.replicas is not None and update.replicas != rc["spec"]["replicas"]:
                rc["spec"]["replicas"] = update.replicas
                rc["metadata"]["generation"] += 1
        if plan.create is not None:
            created = copy.deepcopy(plan.create)
            created["metadata"] |= {
                "generation": 1,
                "resourceVersion": "1",
                "creationTimestamp": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            self.rcs[created["metadata"]["name"]] = created
        for name in plan.deletes:
            del self.rcs[name]
        self.history.append({name: rc["spec"]["replicas"] for name, rc in self.rcs.items()})
        for name, rc in self.rcs.items():
            replicas = rc["spec"]["replicas"]
            rc["status"] = settled(replicas, generation=rc["metadata"]["generation"])
            if name in self.unready:
                rc["status"] |= {"readyReplicas": 0, "availableReplicas": 0}

    def run(self, *, now: datetime = NOW, passes: int = 50) -> list[RolloutPlan]:
        plans = []
        for _ in range(passes):
            plan = plan_rollout(self.config, list(self.rcs.values()), now=now)
            plans.append(plan)
            if not plan.acts and not plan.status_changed:
                return plans
            self.apply(plan)
        raise AssertionError(f"no convergence in {passes} passes: {self.history}")


def phase(cluster: Cluster, name: str) -> str:
    return str(cluster.rcs[name]["metadata"]["annotations"]["openshift.io/deployment.phase"])


def second_version(strategy: Obj, desired: int, *, unready: set[str] = frozenset()) -> Cluster:  # type: ignore[assignment]
    config = dc(replicas=desired, strategy=strategy, version=1)
    config["status"]["details"] = {"message": "config change"}
    old = version_of(config, 1, replicas=desired)
    config["spec"]["template"]["metadata"]["annotations"] = {"changed": "yes"}
    return Cluster(config, [old], unready=unready)


@settings(max_examples=60, deadline=None)
@given(
    desired=st.integers(min_value=0, max_value=7),
    surge=st.one_of(st.integers(0, 3), st.sampled_from(["25%", "50%", "0%"])),
    unavailable=st.one_of(st.integers(0, 3), st.sampled_from(["25%", "50%", "0%"])),
)
def test_a_rolling_update_stays_within_its_fenceposts(
    desired: int, surge: Any, unavailable: Any
) -> None:
    strategy = {
        "type": "Rolling",
        "rollingParams": {"maxSurge": surge, "maxUnavailable": unavailable},
    }
    cluster = second_version(strategy, desired)
    cluster.run()
    max_surge, max_unavailable = strategy_of(cluster.config).fenceposts(desired)
    for state in cluster.history:
        total = state.get("web-1", 0) + state.get("web-2", 0)
        assert total <= desired + max_surge, cluster.history
        # Every pod asked for becomes ready in this cluster, so what is asked for is what is
        # available once it settles: never fewer than the minimum.
        assert total >= desired - max_unavailable, cluster.history
    assert cluster.history[-1] == {"web-1": 0, "web-2": desired}
    assert phase(cluster, "web-2") == "Complete"
    assert cluster.config["status"]["latestVersion"] == 2


@settings(max_examples=20, deadline=None)
@given(desired=st.integers(min_value=0, max_value=6))
def test_recreate_never_runs_old_and_new_together(desired: int) -> None:
    cluster = second_version({"type": "Recreate"}, desired)
    cluster.run()
    for state in cluster.history:
        assert not (state.get("web-1", 0) and state.get("web-2", 0)), cluster.history
    assert cluster.history[-1] == {"web-1": 0, "web-2": desired}


def test_a_rollout_past_its_timeout_fails_and_the_last_good_version_comes_back() -> None:
    strategy = {"type": "Rolling", "rollingParams": {"timeoutSeconds": 30}}
    cluster = second_version(strategy, 2, unready={"web-2"})
    plans = cluster.run()
    assert phase(cluster, "web-2") == "Running"
    assert plans[-1].requeue_after_s == 1.0  # keeps looking: the deadline runs
    cluster.run(now=NOW + timedelta(seconds=31))
    assert phase(cluster, "web-2") == "Failed"
    assert cluster.history[-1] == {"web-1": 2, "web-2": 0}
    progressing = next(
        c for c in cluster.config["status"]["conditions"] if c["type"] == "Progressing"
    )
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_a_newer_version_cancels_a_running_one() -> None:
    cluster = second_version({"type": "Rolling"}, 2, unready={"web-2"})
    cluster.run()
    cluster.config["spec"]["template"]["metadata"]["annotations"] = {"changed": "again"}
    cluster.unready = set()
    cluster.run()
    annotations = cluster.rcs["web-2"]["metadata"]["annotations"]
    assert annotations["openshift.io/deployment.cancelled"] == "true"
    assert annotations["openshift.io/deployment.phase"] == "Failed"
    assert phase(cluster, "web-3") == "Complete"
    assert cluster.history[-1] == {"web-1": 0, "web-2": 0, "web-3": 2}


def test_old_versions_beyond_the_history_limit_are_pruned_once_at_zero() -> None:
    config = dc(replicas=1, version=4, revisionHistoryLimit=1)
    rcs = [version_of(config, v, replicas=0) for v in (1, 2, 3)] + [
        version_of(config, 4, replicas=1)
    ]
    rcs[0]["spec"]["replicas"] = 1  # still scaled up: counts, but is kept (and scaled down)
    plan = plan_rollout(config, rcs, now=NOW)
    assert plan.deletes == ("web-2",)
    assert [(u.name, u.replicas) for u in plan.updates] == [("web-1", 0)]


def test_a_converged_config_plans_no_write() -> None:
    config = dc(replicas=2)
    cluster = Cluster(config, [])
    cluster.run()
    plan = plan_rollout(cluster.config, list(cluster.rcs.values()), now=NOW + timedelta(hours=1))
    assert not plan.acts and not plan.status_changed
    status = cluster.config["status"]
    assert (status["latestVersion"], status["availableReplicas"], status["updatedReplicas"]) == (
        1,
        2,
        2,
    )
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicationControllerAvailable"),
    }


def test_a_paused_config_still_follows_its_replica_count_but_says_paused() -> None:
    config = dc(replicas=3, version=1, paused=True)
    plan = plan_rollout(config, [version_of(config, 1, replicas=1)], now=NOW)
    assert [(u.name, u.replicas) for u in plan.updates] == [("web-1", 3)]
    progressing = next(c for c in plan.status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentConfigPaused")


def test_test_configs_scale_to_zero_once_complete() -> None:
    config = dc(replicas=2, version=1, test=True)
    plan = plan_rollout(config, [version_of(config, 1, replicas=2)], now=NOW)
    assert [(u.name, u.replicas) for u in plan.updates] == [("web-1", 0)]
