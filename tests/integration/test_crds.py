"""The chart's CRDs in the real API server: OpenShift manifests apply unchanged, bad ones
are refused with a message that says what is wrong, and the subresources and printer
columns behave like OpenShift's (`oc get is`, `oc get dc`)."""

from __future__ import annotations

import asyncio
import copy
import json
import ssl
import urllib.request
import uuid
from typing import Any

import pytest
import yaml

from imagestream.kube.client import Kube
from imagestream.kube.crds import install_crds, load_crds
from imagestream.kube.errors import Terminal
from imagestream.kube.resources import DEPLOYMENTCONFIGS, IMAGESTREAMS, NAMESPACES, Resource
from localdev.controlplane import ControlPlane

# As `oc get is -o yaml` shows an OpenShift sample stream, less what the server sets.
OPENSHIFT_IMAGESTREAM = yaml.safe_load(
    """
apiVersion: image.openshift.io/v1
kind: ImageStream
metadata:
  name: ruby
  annotations:
    openshift.io/display-name: Ruby
spec:
  lookupPolicy:
    local: true
  tags:
    - name: "3.1-ubi8"
      annotations:
        description: Build and run Ruby 3.1 applications on UBI 8.
        iconClass: icon-ruby
        openshift.io/display-name: Ruby 3.1 (UBI 8)
        supports: ruby:3.1,ruby
        tags: builder,ruby
        version: "3.1"
      from:
        kind: DockerImage
        name: registry.access.redhat.com/ubi8/ruby-31:latest
      importPolicy:
        scheduled: true
        importMode: Legacy
      referencePolicy:
        type: Local
    - name: latest
      annotations:
        openshift.io/display-name: Ruby (Latest)
        tags: builder,ruby,hidden
      from:
        kind: ImageStreamTag
        name: "3.1-ubi8"
      importPolicy: {}
      referencePolicy:
        type: Source
    - name: pinned
      from:
        kind: ImageStreamImage
        name: ruby@sha256:0000000000000000000000000000000000000000000000000000000000000000
      reference: true
      referencePolicy:
        type: Source
"""
)

# `oc new-app` output for a DeploymentConfig, with the placeholder image a trigger fills.
OPENSHIFT_DEPLOYMENTCONFIG = yaml.safe_load(
    """
apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata:
  name: frontend
  labels:
    app: frontend
spec:
  replicas: 2
  revisionHistoryLimit: 10
  selector:
    app: frontend
    deploymentconfig: frontend
  strategy:
    type: Rolling
    activeDeadlineSeconds: 21600
    resources: {}
    rollingParams:
      intervalSeconds: 1
      maxSurge: 25%
      maxUnavailable: 1
      timeoutSeconds: 600
      updatePeriodSeconds: 1
  template:
    metadata:
      labels:
        app: frontend
        deploymentconfig: frontend
    spec:
      initContainers:
        - name: migrate
          image: " "
          command: [bundle, exec, rake, db:migrate]
      containers:
        - name: ruby-helloworld
          image: " "
          imagePullPolicy: Always
          ports:
            - containerPort: 8080
              protocol: TCP
          resources: {}
          terminationMessagePath: /dev/termination-log
        - name: sidecar
          image: ""
      dnsPolicy: ClusterFirst
      restartPolicy: Always
      terminationGracePeriodSeconds: 30
  test: false
  paused: false
  minReadySeconds: 0
  triggers:
    - type: ConfigChange
    - type: ImageChange
      imageChangeParams:
        automatic: true
        containerNames: [ruby-helloworld, migrate]
        from:
          kind: ImageStreamTag
          name: origin-ruby-sample:latest
          namespace: shared-images
    - type: ImageChange
      imageChangeParams:
        automatic: false
        containerNames: [sidecar]
        from:
          kind: ImageStreamTag
          name: sidecar:v1
        lastTriggeredImage: LAST_TRIGGERED
""".replace("LAST_TRIGGERED", "quay.io/example/sidecar@sha256:" + "1" * 64)
)

RECREATE_DEPLOYMENTCONFIG = yaml.safe_load(
    """
apiVersion: apps.openshift.io/v1
kind: DeploymentConfig
metadata:
  name: database
spec:
  replicas: 1
  selector:
    name: database
  strategy:
    type: Recreate
    recreateParams:
      timeoutSeconds: 600
      pre:
        failurePolicy: Abort
        execNewPod:
          containerName: postgresql
          command: [/bin/true]
      post:
        failurePolicy: Ignore
        tagImages:
          - containerName: postgresql
            to:
              kind: ImageStreamTag
              name: postgresql:deployed
  template:
    metadata:
      labels:
        name: database
    spec:
      containers:
        - name: postgresql
          image: quay.io/example/postgresql:15
  triggers:
    - type: ConfigChange
"""
)


@pytest.fixture(scope="module")
async def crds_installed(kube: Kube) -> list[str]:
    return await install_crds(kube, load_crds())


@pytest.fixture
async def namespace(kube: Kube, crds_installed: list[str]) -> str:
    name = f"crds-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, None, {"metadata": {"name": name}})
    return name


async def _create(kube: Kube, resource: Resource, namespace: str, manifest: Any) -> Any:
    return await kube.create(resource, namespace, copy.deepcopy(manifest))


async def _rejected(kube: Kube, resource: Resource, namespace: str, manifest: Any) -> str:
    with pytest.raises(Terminal) as refused:
        await _create(kube, resource, namespace, manifest)
    assert refused.value.status == 422, refused.value
    return str(refused.value)


def test_the_chart_ships_both_crds() -> None:
    names = {crd["metadata"]["name"] for crd in load_crds()}
    assert {"imagestreams.image.openshift.io", "deploymentconfigs.apps.openshift.io"} <= names


async def test_crds_are_established(kube: Kube, crds_installed: list[str]) -> None:
    # On this plain control plane neither group is served natively, so both are installed.
    assert "deploymentconfigs.apps.openshift.io" in crds_installed
    assert "imagestreams.image.openshift.io" in crds_installed
    # Installing again (as every test session and `imagestream dev` do) is a no-op apply.
    assert set(await install_crds(kube, load_crds())) == set(crds_installed)


async def test_an_openshift_imagestream_applies_unchanged(kube: Kube, namespace: str) -> None:
    created = await _create(kube, IMAGESTREAMS, namespace, OPENSHIFT_IMAGESTREAM)
    assert created["spec"] == OPENSHIFT_IMAGESTREAM["spec"]
    stored = await kube.get(IMAGESTREAMS, namespace, "ruby")
    assert stored["spec"] == OPENSHIFT_IMAGESTREAM["spec"]
    assert stored["metadata"]["annotations"] == OPENSHIFT_IMAGESTREAM["metadata"]["annotations"]


async def test_imagestream_reference_policy_defaults_to_source(kube: Kube, namespace: str) -> None:
    tag = {"name": "v1", "from": {"kind": "DockerImage", "name": "x/app:v1"}, "referencePolicy": {}}
    stream = {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStream",
        "metadata": {"name": "app"},
        "spec": {"tags": [tag]},
    }
    created = await _create(kube, IMAGESTREAMS, namespace, stream)
    assert created["spec"]["tags"][0]["referencePolicy"] == {"type": "Source"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            lambda tag: tag.update(name="bad tag!"),
            "spec.tags[0].name",
            id="bad-tag-name",
        ),
        pytest.param(
            lambda tag: tag["from"].update(kind="DockerRepository"),
            'Unsupported value: "DockerRepository"',
            id="unknown-from-kind",
        ),
        pytest.param(
            lambda tag: tag.update(
                {
                    "from": {"kind": "ImageStreamTag", "name": "other:v1"},
                    "importPolicy": {"scheduled": True},
                }
            ),
            "importPolicy.scheduled may only be set for a tag whose from.kind is DockerImage",
            id="scheduled-on-istag",
        ),
        pytest.param(
            lambda tag: tag.update(
                {"from": {"kind": "ImageStreamTag", "name": "a:b:c"}, "importPolicy": {}}
            ),
            "an ImageStreamTag name must be of the form <tag> or <stream>:<tag>",
            id="bad-istag-name",
        ),
        pytest.param(
            lambda tag: tag["from"].pop("name"),
            "spec.tags[0].from.name: Required value",
            id="from-without-name",
        ),
    ],
)
async def test_invalid_imagestreams_are_rejected(
    kube: Kube, namespace: str, change: Any, expected: str
) -> None:
    stream = copy.deepcopy(OPENSHIFT_IMAGESTREAM)
    change(stream["spec"]["tags"][0])
    message = await _rejected(kube, IMAGESTREAMS, namespace, stream)
    assert expected in message, message


async def test_an_invalid_imagestream_name_is_rejected(kube: Kube, namespace: str) -> None:
    stream = copy.deepcopy(OPENSHIFT_IMAGESTREAM)
    stream["metadata"]["name"] = "Ruby"
    message = await _rejected(kube, IMAGESTREAMS, namespace, stream)
    assert "metadata.name" in message, message


async def test_an_openshift_deploymentconfig_applies_unchanged(kube: Kube, namespace: str) -> None:
    for manifest in (OPENSHIFT_DEPLOYMENTCONFIG, RECREATE_DEPLOYMENTCONFIG):
        created = await _create(kube, DEPLOYMENTCONFIGS, namespace, manifest)
        assert created["spec"] == manifest["spec"], manifest["metadata"]["name"]
    stored = await kube.get(DEPLOYMENTCONFIGS, namespace, "frontend")
    containers = stored["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in containers] == [" ", ""]


async def test_deploymentconfig_defaults_follow_openshift(kube: Kube, namespace: str) -> None:
    omitted = copy.deepcopy(RECREATE_DEPLOYMENTCONFIG)
    omitted["metadata"]["name"] = "omitted"
    del omitted["spec"]["strategy"]["type"]
    del omitted["spec"]["triggers"]
    created = await _create(kube, DEPLOYMENTCONFIGS, namespace, omitted)
    # Omitted triggers mean "deploy on config change"; an omitted strategy type is Rolling.
    assert created["spec"]["triggers"] == [{"type": "ConfigChange"}]
    assert created["spec"]["strategy"]["type"] == "Rolling"

    empty = copy.deepcopy(RECREATE_DEPLOYMENTCONFIG)
    empty["metadata"]["name"] = "no-triggers"
    empty["spec"]["triggers"] = []
    assert (await _create(kube, DEPLOYMENTCONFIGS, namespace, empty))["spec"]["triggers"] == []

    kindless = copy.deepcopy(OPENSHIFT_DEPLOYMENTCONFIG)
    kindless["metadata"]["name"] = "kindless"
    del kindless["spec"]["triggers"][1]["imageChangeParams"]["from"]["kind"]
    created = await _create(kube, DEPLOYMENTCONFIGS, namespace, kindless)
    assert created["spec"]["triggers"][1]["imageChangeParams"]["from"]["kind"] == "ImageStreamTag"


def _without(path: tuple[Any, ...]) -> Any:
    def change(dc: Any) -> None:
        target = dc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(dc: Any) -> None:
        target = dc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


PARAMS = ("spec", "triggers", 1, "imageChangeParams")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            _without((*PARAMS, "containerNames")),
            "spec.triggers[1].imageChangeParams.containerNames: Required value",
            id="image-change-without-container-names",
        ),
        pytest.param(
            _set((*PARAMS, "containerNames"), []),
            "spec.triggers[1].imageChangeParams.containerNames",
            id="image-change-with-no-container-names",
        ),
        pytest.param(
            _without(PARAMS),
            "an ImageChange trigger needs imageChangeParams",
            id="image-change-without-params",
        ),
        pytest.param(
            _without((*PARAMS, "from", "name")),
            "spec.triggers[1].imageChangeParams.from.name: Required value",
            id="image-change-without-from-name",
        ),
        pytest.param(
            _set((*PARAMS, "from", "name"), "origin-ruby-sample"),
            "from.name must be of the form <stream>:<tag>",
            id="image-change-from-without-tag",
        ),
        pytest.param(
            _set((*PARAMS, "from", "kind"), "DockerImage"),
            'Unsupported value: "DockerImage"',
            id="image-change-from-docker-image",
        ),
        pytest.param(
            _set(("spec", "triggers", 0, "type"), "Manual"),
            'Unsupported value: "Manual"',
            id="unknown-trigger-type",
        ),
        pytest.param(
            _set(("spec", "strategy", "type"), "BlueGreen"),
            'Unsupported value: "BlueGreen"',
            id="unknown-strategy",
        ),
    ],
)
async def test_invalid_deploymentconfigs_are_rejected(
    kube: Kube, namespace: str, change: Any, expected: str
) -> None:
    dc = copy.deepcopy(OPENSHIFT_DEPLOYMENTCONFIG)
    change(dc)
    message = await _rejected(kube, DEPLOYMENTCONFIGS, namespace, dc)
    assert expected in message, message


def _subset(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    return all(actual.get(key) == value for key, value in expected.items())


# NB: when the session's controller runs (other tests start one), it writes the status of
# these objects too, at any moment. So each check reads what one request returned, and the
# written values are sentinels no controller would write.


async def test_imagestream_status_is_a_subresource(kube: Kube, namespace: str) -> None:
    await _create(kube, IMAGESTREAMS, namespace, OPENSHIFT_IMAGESTREAM)
    status = {
        "dockerImageRepository": "sentinel.example:5000/ns/ruby",
        "tags": [
            {
                "tag": "3.1-ubi8",
                "items": [
                    {
                        "created": "2026-01-02T03:04:05Z",
                        "dockerImageReference": "registry.access.redhat.com/ubi8/ruby-31@sha256:"
                        + "2" * 64,
                        "image": "sha256:" + "2" * 64,
                        "generation": 1,
                    }
                ],
            }
        ],
    }
    # A write to the main resource does not touch status...
    ignored = await kube.patch(IMAGESTREAMS, namespace, "ruby", {"status": status})
    assert (ignored.get("status") or {}).get("dockerImageRepository") != status[
        "dockerImageRepository"
    ]
    # ...a write to /status does, and does not touch spec.
    written = await kube.patch(
        IMAGESTREAMS,
        namespace,
        "ruby",
        {"status": status, "spec": {"lookupPolicy": {"local": False}}},
        subresource="status",
    )
    assert _subset(status, written["status"]), written["status"]
    assert written["spec"]["lookupPolicy"] == {"local": True}


DC_STATUS = {
    "latestVersion": 93,
    "observedGeneration": 1,
    "replicas": 7,
    "updatedReplicas": 7,
    "availableReplicas": 6,
    "unavailableReplicas": 1,
    "readyReplicas": 6,
    "details": {
        "message": "image change",
        "causes": [
            {
                "type": "ImageChange",
                "imageTrigger": {
                    "from": {"kind": "DockerImage", "name": "quay.io/x/app@sha256:" + "3" * 64}
                },
            }
        ],
    },
    "conditions": [
        {
            "type": "Available",
            "status": "True",
            "lastUpdateTime": "2026-01-02T03:04:05Z",
            "lastTransitionTime": "2026-01-02T03:04:05Z",
            "message": "Deployment config has minimum availability.",
        }
    ],
}


async def test_deploymentconfig_status_and_scale(kube: Kube, namespace: str) -> None:
    await _create(kube, DEPLOYMENTCONFIGS, namespace, OPENSHIFT_DEPLOYMENTCONFIG)
    ignored = await kube.patch(DEPLOYMENTCONFIGS, namespace, "frontend", {"status": DC_STATUS})
    assert (ignored.get("status") or {}).get("latestVersion") != DC_STATUS["latestVersion"]
    written = await kube.patch(
        DEPLOYMENTCONFIGS, namespace, "frontend", {"status": DC_STATUS}, subresource="status"
    )
    assert _subset(DC_STATUS, written["status"]), written["status"]

    scale = await kube.get(DEPLOYMENTCONFIGS, namespace, "frontend", subresource="scale")
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 2
    assert "replicas" in scale["status"]
    await kube.patch(
        DEPLOYMENTCONFIGS, namespace, "frontend", {"spec": {"replicas": 5}}, subresource="scale"
    )
    assert (await kube.get(DEPLOYMENTCONFIGS, namespace, "frontend"))["spec"]["replicas"] == 5


def _table(controlplane: ControlPlane, path: str) -> dict[str, Any]:
    """What `kubectl get` prints: the server-side Table of the CRD's printer columns."""
    request = urllib.request.Request(
        controlplane.server + path,
        headers={
            "Authorization": f"Bearer {controlplane.token}",
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
        },
    )
    context = ssl.create_default_context(cafile=str(controlplane.ca_path))
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        table: dict[str, Any] = json.loads(response.read())
    return table


async def _row_and_object(
    controlplane: ControlPlane, kube: Kube, resource: Resource, namespace: str, name: str
) -> tuple[dict[str, Any], Any]:
    """The table row of one object and the object, read with no write in between."""
    for _ in range(50):
        before = await kube.get(resource, namespace, name)
        table = await asyncio.to_thread(_table, controlplane, resource.path(namespace=namespace))
        after = await kube.get(resource, namespace, name)
        if before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]:
            names = [column["name"] for column in table["columnDefinitions"]]
            rows = {row["cells"][0]: row["cells"] for row in table["rows"]}
            return dict(zip(names, rows[name], strict=True)), after
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} kept changing while its table row was read")


async def test_printer_columns_match_oc_get(
    controlplane: ControlPlane, kube: Kube, namespace: str
) -> None:
    await _create(kube, DEPLOYMENTCONFIGS, namespace, OPENSHIFT_DEPLOYMENTCONFIG)
    await kube.patch(
        DEPLOYMENTCONFIGS, namespace, "frontend", {"status": DC_STATUS}, subresource="status"
    )
    row, dc = await _row_and_object(controlplane, kube, DEPLOYMENTCONFIGS, namespace, "frontend")
    status = dc.get("status") or {}
    assert set(row) == {"Name", "Revision", "Desired", "Current", "Triggered By", "Age"}
    assert row["Revision"] == status.get("latestVersion")
    assert row["Desired"] == 2
    assert row["Current"] == status.get("replicas")
    # A column prints the first match of its JSONPath only: the first image trigger's tag.
    assert row["Triggered By"] == "origin-ruby-sample:latest"

    await _create(kube, IMAGESTREAMS, namespace, OPENSHIFT_IMAGESTREAM)
    await kube.patch(
        IMAGESTREAMS,
        namespace,
        "ruby",
        {
            "status": {
                "dockerImageRepository": "sentinel.example:5000/ns/ruby",
                "tags": [{"tag": "3.1-ubi8"}, {"tag": "latest"}],
                # What the controller keeps for the columns (a column shows one list item).
                "summary": {"tags": "3.1-ubi8,latest", "updated": "2026-01-02T03:04:05Z"},
            }
        },
        subresource="status",
    )
    row, stream = await _row_and_object(controlplane, kube, IMAGESTREAMS, namespace, "ruby")
    status = stream.get("status") or {}
    assert set(row) == {"Name", "Image Repository", "Tags", "Updated"}
    assert row["Image Repository"] == status.get("dockerImageRepository")
    assert row["Tags"] == (status.get("summary") or {}).get("tags")
