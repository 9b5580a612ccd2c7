"""The registry operator's decisions (controller/registryoperator/plan.py), behaviour 32."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml

from controller.registryoperator.plan import (
    CHECKSUM_ANNOTATION,
    DEFAULT_CLAIM,
    PVC_OWNER_ANNOTATION,
    Bootstrap,
    Facts,
    Options,
    Plan,
    TokenAuth,
    bootstrap_config,
    degraded,
    failed_status,
    is_default_class,
    plan,
)
from controller.registryoperator.reconciler import SecretKey, decoded
from imagestream.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    INGRESSES,
    PERSISTENTVOLUMECLAIMS,
    SECRETS,
    SERVICES,
    Resource,
)
from imagestream.objects import Obj

NS = "openshift-image-registry"
OPTIONS = Options(
    namespace=NS,
    image="registry.local/registry:2.8",
    notification_url="http://webhook.ns.svc:8080/v1/events/distribution",
)
NOW = "2026-12-01T15:00:00Z"
LATER = "2026-12-01T16:00:00Z"


def config(spec: dict[str, Any], status: dict[str, Any] | None = None) -> Obj:
    return {
        "metadata": {"name": "cluster", "generation": 3},
        "spec": spec,
        **({"status": status} if status else {}),
    }


def spec_emptydir() -> dict[str, Any]:
    return {"managementState": "Managed", "storage": {"emptyDir": {}}}


def facts(cfg: Obj, **kwargs: Any) -> Facts:
    kwargs.setdefault("notification_token", "the-token")
    return Facts(config=cfg, now=kwargs.pop("now", NOW), fresh_http_secret="fresh", **kwargs)


def applied(result: Plan, resource: Resource) -> Obj:
    (body,) = [b for r, b in result.apply if r == resource and b["kind"] == resource.kind][:1]
    return body


def condition(result: Plan, type_: str) -> dict[str, Any]:
    (found,) = [c for c in result.status["conditions"] if c["type"] == type_]
    return dict(found)


def claim(name: str, *, ours: bool, modes: tuple[str, ...] = ("ReadWriteOnce",)) -> Obj:
    annotations = {PVC_OWNER_ANNOTATION: "true"} if ours else {}
    return {
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {"accessModes": list(modes)},
    }


def test_bootstrap_with_a_default_storage_class_provisions_a_claim() -> None:
    body = bootstrap_config("standard")
    assert body["metadata"]["name"] == "cluster"
    assert body["spec"]["managementState"] == "Managed"
    assert body["spec"]["storage"] == {"pvc": {"claim": ""}}
    assert body["spec"]["rolloutStrategy"] == "Recreate"


def test_bootstrap_without_storage_is_removed_and_says_what_to_configure() -> None:
    body = bootstrap_config("")
    assert body["spec"]["managementState"] == "Removed"
    result = plan(OPTIONS, facts(body))
    storage = condition(result, "StorageExists")
    assert storage["status"] == "False"
    assert storage["reason"] == "StorageNotConfigured"
    assert "spec.storage" in storage["message"] and "emptyDir" in storage["message"]
    assert condition(result, "Removed")["status"] == "True"
    assert result.internal_hostname == ""


def test_bootstrap_from_the_installer_wins_over_what_the_cluster_offers() -> None:
    """The chart's registry.enabled and registry.storage: the first Config only."""
    given = Bootstrap(management_state="Removed", spec={"storage": {"emptyDir": {}}, "replicas": 2})
    body = bootstrap_config("standard", given)
    assert body["spec"] == {
        "managementState": "Removed",
        "replicas": 2,
        "storage": {"emptyDir": {}},
    }
    # Managed asked for, storage left to the cluster: the default class's claim.
    body = bootstrap_config("standard", Bootstrap(management_state="Managed"))
    assert body["spec"]["storage"] == {"pvc": {"claim": ""}}
    assert body["spec"]["rolloutStrategy"] == "Recreate"
    # A claim given: Recreate (one ReadWriteOnce volume), unless said otherwise.
    claim = Bootstrap(spec={"storage": {"pvc": {"claim": "mine"}}})
    assert bootstrap_config("", claim)["spec"]["rolloutStrategy"] == "Recreate"
    assert bootstrap_config("", claim)["spec"]["managementState"] == "Managed"


def test_managed_without_any_storage_says_so_rather_than_guessing() -> None:
    body = bootstrap_config("", Bootstrap(management_state="Managed"))
    result = plan(OPTIONS, facts(body))
    assert condition(result, "StorageExists")["reason"] == "StorageNotConfigured"
    assert not result.apply


def test_a_fixed_cluster_ip_is_the_services() -> None:
    body = bootstrap_config("", Bootstrap(spec={"storage": {"emptyDir": {}}}))
    options = dataclasses.replace(OPTIONS, cluster_ip="10.0.0.12")
    [service] = [b for r, b in plan(options, facts(body)).apply if r.kind == "Service"]
    assert service["spec"]["clusterIP"] == "10.0.0.12"
    [service] = [b for r, b in plan(OPTIONS, facts(body)).apply if r.kind == "Service"]
    assert "clusterIP" not in service["spec"]


def test_default_storage_class_annotation() -> None:
    default = {"metadata": {"annotations": {"storageclass.kubernetes.io/is-default-class": "true"}}}
    assert is_default_class(default)
    assert not is_default_class({"metadata": {"name": "other"}})


def test_managed_emptydir_plans_the_registry_and_its_hostname() -> None:
    result = plan(
        OPTIONS, facts(config({"managementState": "Managed", "storage": {"emptyDir": {}}}))
    )
    deployment = applied(result, DEPLOYMENTS)
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == OPTIONS.image
    assert {"name": "registry-storage", "emptyDir": {}} in pod["volumes"]
    env = {e["name"]: e for e in container["env"]}
    assert env["REGISTRY_HTTP_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "REGISTRY_HTTP_SECRET"
    endpoints = yaml.safe_load(env["REGISTRY_NOTIFICATIONS_ENDPOINTS"]["value"])
    assert endpoints[0]["url"] == OPTIONS.notification_url
    assert endpoints[0]["headers"]["Authorization"] == ["Bearer $(IMAGESTREAM_NOTIFICATION_TOKEN)"]
    service = applied(result, SERVICES)
    assert service["metadata"]["name"] == "image-registry"
    assert service["spec"]["ports"][0]["port"] == 5000
    secret = applied(result, SECRETS)
    assert secret["stringData"] == {
        "REGISTRY_HTTP_SECRET": "fresh",
        "NOTIFICATION_TOKEN": "the-token",
    }
    config_text = applied(result, CONFIGMAPS)["data"]["config.yml"]
    assert "the-token" not in config_text and "fresh" not in config_text
    assert yaml.safe_load(config_text)["storage"]["filesystem"] == {"rootdirectory": "/registry"}
    assert result.internal_hostname == f"image-registry.{NS}.svc:5000"
    assert condition(result, "StorageExists")["status"] == "True"
    assert condition(result, "Available")["reason"] == "DeploymentNotFound"
    assert (INGRESSES, "default-route") not in result.delete  # there is none
    had_route = plan(OPTIONS, facts(config(spec_emptydir()), ingress_host="old.example"))
    assert (INGRESSES, "default-route") in had_route.delete


def test_existing_http_secret_is_kept_and_the_spec_one_wins() -> None:
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    kept = plan(OPTIONS, facts(config(spec), private_secret={"REGISTRY_HTTP_SECRET": "old"}))
    assert applied(kept, SECRETS)["stringData"]["REGISTRY_HTTP_SECRET"] == "old"
    given = plan(OPTIONS, facts(config({**spec, "httpSecret": "mine"})))
    assert applied(given, SECRETS)["stringData"]["REGISTRY_HTTP_SECRET"] == "mine"


def test_a_configuration_change_changes_the_pod_template_checksum() -> None:
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}

    def checksum(s: dict[str, Any]) -> str:
        template = applied(plan(OPTIONS, facts(config(s))), DEPLOYMENTS)["spec"]["template"]
        return str(template["metadata"]["annotations"][CHECKSUM_ANNOTATION])

    assert checksum(spec) == checksum(dict(spec))
    assert checksum({**spec, "readOnly": True}) != checksum(spec)
    assert checksum({**spec, "httpSecret": "rotated"}) != checksum(spec)


def test_read_only_and_disable_redirect_reach_distribution() -> None:
    spec = {
        "managementState": "Managed",
        "storage": {"emptyDir": {}},
        "readOnly": True,
        "disableRedirect": True,
    }
    text = applied(plan(OPTIONS, facts(config(spec))), CONFIGMAPS)["data"]["config.yml"]
    storage = yaml.safe_load(text)["storage"]
    assert storage["maintenance"] == {"readonly": {"enabled": True}}
    assert storage["redirect"] == {"disable": True}


def test_pvc_without_a_claim_provisions_the_default_one_and_records_it() -> None:
    spec = {"managementState": "Managed", "storage": {"pvc": {"claim": ""}}}
    result = plan(OPTIONS, facts(config(spec)))
    ((resource, body),) = result.create
    assert resource == PERSISTENTVOLUMECLAIMS
    assert body["metadata"]["name"] == DEFAULT_CLAIM
    assert body["metadata"]["annotations"] == {PVC_OWNER_ANNOTATION: "true"}
    assert result.spec_patch == {
        "spec": {"storage": {"pvc": {"claim": DEFAULT_CLAIM}, "managementState": "Managed"}}
    }
    pod = applied(result, DEPLOYMENTS)["spec"]["template"]["spec"]
    assert {"name": "registry-storage", "persistentVolumeClaim": {"claimName": DEFAULT_CLAIM}} in (
        pod["volumes"]
    )
    assert applied(result, DEPLOYMENTS)["spec"]["strategy"] == {"type": "Recreate"}
    assert condition(result, "StorageExists")["reason"] == "PVC Created"


def test_a_named_claim_that_is_absent_starts_nothing_and_says_so() -> None:
    spec = {"managementState": "Managed", "storage": {"pvc": {"claim": "mine"}}}
    result = plan(OPTIONS, facts(config(spec)))
    assert result.apply == () and result.create == ()
    assert condition(result, "StorageExists") | {"lastTransitionTime": ""} == {
        "type": "StorageExists",
        "status": "False",
        "reason": "PVC does not exist",
        "message": f"persistentvolumeclaim {NS}/mine does not exist",
        "lastTransitionTime": "",
    }
    assert condition(result, "Degraded")["status"] == "True"


def test_a_default_claim_someone_else_made_is_not_adopted() -> None:
    spec = {"managementState": "Managed", "storage": {"pvc": {}}}
    result = plan(OPTIONS, facts(config(spec), claim=claim(DEFAULT_CLAIM, ours=False)))
    assert result.apply == ()
    assert condition(result, "StorageExists")["reason"] == "PVC Already Exists"


def test_read_write_once_with_two_replicas_is_refused() -> None:
    spec = {"managementState": "Managed", "replicas": 2, "storage": {"pvc": {"claim": "c"}}}
    result = plan(OPTIONS, facts(config(spec), claim=claim("c", ours=False)))
    assert result.apply == ()
    assert condition(result, "StorageExists")["reason"] == "PVC Issues Found"
    many = plan(
        OPTIONS, facts(config(spec), claim=claim("c", ours=False, modes=("ReadWriteMany",)))
    )
    assert applied(many, DEPLOYMENTS)["spec"]["replicas"] == 2
    assert many.spec_patch == {"spec": {"storage": {"managementState": "Unmanaged"}}}


def test_removed_deletes_the_registry_and_only_the_claim_it_provisioned() -> None:
    storage = {"pvc": {"claim": DEFAULT_CLAIM}, "managementState": "Managed"}
    ours = plan(
        OPTIONS,
        facts(
            config({"managementState": "Removed", "storage": storage}),
            claim=claim(DEFAULT_CLAIM, ours=True),
        ),
    )
    deleted = set(ours.delete)
    assert {(DEPLOYMENTS, "image-registry"), (SERVICES, "image-registry")} <= deleted
    assert (PERSISTENTVOLUMECLAIMS, DEFAULT_CLAIM) in deleted
    assert ours.apply == () and ours.internal_hostname == ""
    given = plan(
        OPTIONS,
        facts(
            config(
                {
                    "managementState": "Removed",
                    "storage": {"pvc": {"claim": "c"}, "managementState": "Unmanaged"},
                }
            ),
            claim=claim("c", ours=True),
        ),
    )
    assert not [d for d in given.delete if d[0] == PERSISTENTVOLUMECLAIMS]


def test_returning_to_managed_provisions_the_default_claim_again() -> None:
    storage = {"pvc": {"claim": DEFAULT_CLAIM}, "managementState": "Managed"}
    result = plan(OPTIONS, facts(config({"managementState": "Managed", "storage": storage})))
    assert [b["metadata"]["name"] for _, b in result.create] == [DEFAULT_CLAIM]


def test_unmanaged_writes_nothing() -> None:
    result = plan(
        OPTIONS,
        facts(
            config({"managementState": "Unmanaged", "storage": {"emptyDir": {}}}),
            service_exists=True,
        ),
    )
    assert (result.apply, result.create, result.delete, result.spec_patch) == ((), (), (), None)
    assert condition(result, "Available")["reason"] == "Unmanaged"
    assert result.internal_hostname == f"image-registry.{NS}.svc:5000"


def test_s3_renders_distribution_storage_and_credentials_from_the_user_secret() -> None:
    s3 = {
        "bucket": "images",
        "region": "us-east-1",
        "regionEndpoint": "http://10.0.0.20:8333",
        "encrypt": False,
        "virtualHostedStyle": False,
    }
    spec = {"managementState": "Managed", "storage": {"s3": s3}}
    credentials = {"REGISTRY_STORAGE_S3_ACCESSKEY": "a", "REGISTRY_STORAGE_S3_SECRETKEY": "s"}
    result = plan(OPTIONS, facts(config(spec), user_secret=credentials))
    text = applied(result, CONFIGMAPS)["data"]["config.yml"]
    assert yaml.safe_load(text)["storage"]["s3"] == {
        "bucket": "images",
        "region": "us-east-1",
        "regionendpoint": "http://10.0.0.20:8333",
        "encrypt": False,
        "secure": False,
        "forcepathstyle": True,
    }
    assert "a" not in yaml.safe_load(text)["storage"]["s3"].values()
    container = applied(result, DEPLOYMENTS)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["REGISTRY_STORAGE_S3_SECRETKEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "image-registry-private-configuration-user",
        "key": "REGISTRY_STORAGE_S3_SECRETKEY",
    }
    assert not [m for m in container["volumeMounts"] if m["mountPath"] == "/registry"]
    rotated = plan(
        OPTIONS,
        facts(config(spec), user_secret={**credentials, "REGISTRY_STORAGE_S3_SECRETKEY": "t"}),
    )
    annotation = CHECKSUM_ANNOTATION
    assert (
        applied(rotated, DEPLOYMENTS)["spec"]["template"]["metadata"]["annotations"][annotation]
        != applied(result, DEPLOYMENTS)["spec"]["template"]["metadata"]["annotations"][annotation]
    )


def test_s3_without_credentials_or_bucket_starts_nothing() -> None:
    spec = {"managementState": "Managed", "storage": {"s3": {"bucket": "b", "region": "r"}}}
    missing = plan(OPTIONS, facts(config(spec)))
    assert missing.apply == ()
    assert condition(missing, "StorageExists")["reason"] == "S3 Credentials Missing"
    no_bucket = plan(OPTIONS, facts(config({**spec, "storage": {"s3": {"region": "r"}}})))
    assert "bucket" in condition(no_bucket, "Degraded")["message"]


def test_a_missing_notification_token_starts_nothing() -> None:
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    result = plan(OPTIONS, facts(config(spec), notification_token=None))
    assert result.apply == ()
    assert condition(result, "Degraded")["reason"] == "NotificationTokenMissing"


def test_conditions_keep_their_transition_time_until_their_status_changes() -> None:
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    first = plan(OPTIONS, facts(config(spec)))
    again = plan(OPTIONS, facts(config(spec, first.status), now=LATER))
    assert again.status == first.status
    deployment = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "availableReplicas": 1,
            "readyReplicas": 1,
            "conditions": [
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
            ],
        },
    }
    ready = plan(OPTIONS, facts(config(spec, first.status), now=LATER, deployment=deployment))
    assert condition(ready, "Available") | {"message": ""} == {
        "type": "Available",
        "status": "True",
        "reason": "Ready",
        "message": "",
        "lastTransitionTime": LATER,
    }
    assert condition(ready, "Progressing")["status"] == "False"
    assert condition(ready, "Degraded")["lastTransitionTime"] == NOW
    assert ready.status["readyReplicas"] == 1
    assert ready.status["observedGeneration"] == 3


def test_a_failed_write_is_degraded() -> None:
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    status = failed_status(plan(OPTIONS, facts(config(spec))).status, "422: invalid", LATER)
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "422: invalid" in degraded["message"]
    assert status["observedGeneration"] == 3


def test_default_route_is_an_ingress_with_tls_and_an_external_hostname() -> None:
    options = Options(namespace=NS, image="r", route_domain="apps.example", ingress_class="nginx")
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}, "defaultRoute": True}
    result = plan(options, facts(config(spec)))
    ingress = applied(result, INGRESSES)
    host = f"default-route-{NS}.apps.example"
    assert ingress["spec"]["tls"] == [{"hosts": [host]}]
    assert ingress["spec"]["rules"][0]["host"] == host
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert result.external_hostnames == (host,)
    no_domain = plan(Options(namespace=NS, image="r"), facts(config(spec)))
    assert condition(no_domain, "Degraded")["reason"] == "RouteDegraded"
    assert no_domain.external_hostnames == ()


def test_token_auth_adds_the_auth_section_and_its_certificate() -> None:
    options = Options(
        namespace=NS,
        image="r",
        token_auth=TokenAuth(
            realm="https://w/v1/registry/token", service="s", issuer="i", ca_pem="PEM"
        ),
    )
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    result = plan(options, facts(config(spec)))
    maps = {b["metadata"]["name"]: b for r, b in result.apply if r == CONFIGMAPS}
    token = yaml.safe_load(maps["image-registry-config"]["data"]["config.yml"])["auth"]["token"]
    assert token["realm"] == "https://w/v1/registry/token"
    assert token["rootcertbundle"] == "/etc/registry-token-ca/ca.crt"
    assert maps["image-registry-token-ca"]["data"] == {"ca.crt": "PEM"}


def test_an_unknown_management_state_is_degraded() -> None:
    result = plan(OPTIONS, facts(config({"managementState": "Sometimes"})))
    assert result.apply == () and result.delete == ()
    assert condition(result, "Degraded")["reason"] == "InvalidManagementState"


def test_rolling_update_states_its_parameters_so_recreate_can_drop_them() -> None:
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    strategy = applied(plan(OPTIONS, facts(config(spec))), DEPLOYMENTS)["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    recreate = {**spec, "rolloutStrategy": "Recreate"}
    strategy = applied(plan(OPTIONS, facts(config(recreate))), DEPLOYMENTS)["spec"]["strategy"]
    assert strategy == {"type": "Recreate"}


def test_token_auth_configured_without_its_certificate_starts_nothing() -> None:
    options = Options(namespace=NS, image="r", token_auth_required=True)
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    result = plan(options, facts(config(spec)))
    assert result.apply == ()
    assert condition(result, "Degraded")["reason"] == "TokenAuthNotReady"


def test_degraded_says_whether_to_look_again_soon() -> None:
    spec = {"managementState": "Managed", "storage": {"emptyDir": {}}}
    assert not degraded(plan(OPTIONS, facts(config(spec))).status)
    assert degraded(plan(OPTIONS, facts(config(spec), notification_token=None)).status)


def test_secret_key_settings_are_namespace_name_key() -> None:
    assert SecretKey.parse("") is None
    assert SecretKey.parse("ns/name:token") == SecretKey(namespace="ns", name="name", key="token")
    for bad in ("name:token", "ns/name", "ns/:token", "/name:token"):
        with pytest.raises(ValueError, match="namespace/name:key"):
            SecretKey.parse(bad)


def test_secret_values_are_decoded_and_undecodable_ones_left_out() -> None:
    assert decoded(None) is None
    assert decoded({"data": {"a": "dG9rZW4=", "b": "not base64!"}}) == {"a": "token"}
