"""The Kubernetes Job that runs a Build, and the digest it reports back. Pure, no I/O.

A Build runs as a Job made from a template (`--build-job-template`, a Job manifest whose
pod has a container named `build`; by default rootless buildah running `BUILD_SCRIPT`).
The controller adds what the Build asks for as environment variables of that container:

    BUILD_STRATEGY      Docker or Source
    SOURCE_URI, SOURCE_REF, SOURCE_CONTEXT_DIR   the Git source (git clones it; see below)
    DOCKERFILE          an inline Dockerfile (source.dockerfile)
    DOCKERFILE_PATH     dockerStrategy.dockerfilePath, inside the context dir
    FROM_IMAGE          the strategy's `from`, resolved to a pull spec by digest
    OUTPUT_IMAGE        where to push: `<stream status.dockerImageRepository>:<tag>` for an
                        ImageStreamTag output, the name as given for a DockerImage output
    BUILD_ARGS          dockerStrategy.buildArgs, one `NAME=value` a line
    NO_CACHE            "true" for dockerStrategy.noCache
    PUSH_DOCKERCFG_PATH, PULL_DOCKERCFG_PATH     mounted output.pushSecret / strategy pullSecret
                        (with no pushSecret, an output to the integrated registry is
                        pushed with the `builder` account's pull secret, as OpenShift's
                        build controller picks it: `default_push_secret`)
    ...and the strategy's own `env`, its names listed in BUILD_ENV_NAMES.

What the script does with them (docs/openshift-behaviours.md#build-sources): a Git source
is cloned (shallow without a ref, else the ref checked out) and `contextDir` of it is the
context. The Docker strategy's Dockerfile is rewritten as OpenShift's builder does: `from`
replaces the image of the last FROM, the strategy's env is an ENV after every FROM, the
build information (OPENSHIFT_BUILD_* env, io.openshift.build.* labels) ends it; build
args go to `buildah build`. The Source strategy is S2I: the builder image's assemble and
run scripts come from its `io.openshift.s2i.scripts-url` label, the source goes to
/tmp/src, assemble runs as the image's user, the image is committed with CMD run.

How the builder reports the pushed digest: it writes it to its termination message
(`buildah push --digestfile /dev/termination-log`); the kubelet copies that into the pod's
`containerStatuses[].state.terminated.message`. A builder that may write to its Job can
instead set the Job annotation `build.openshift.io/output-digest`, which wins. Either way
the controller only reads (pods: get, list); the build pod needs no API credentials.

The default template is rootless buildah (vfs storage, chroot isolation, uid 1000 with
SETUID/SETGID for its user namespace), its image `BUILDER_IMAGE` unless the controller is
given `--builder-image` (`imagestream dev` and the node tests give the image made here from
Debian packages, by digest). Clusters whose pod security forbids that need their own
template (`--build-job-template`). Registries named in `--build-insecure-registries` are
spoken to over plain HTTP (`TLS_VERIFY=false`), as the local system's registry is.

How a failure says why: the script exits 2 when the build step fails, 3 when the push
fails, 4 when the base image cannot be pulled, 5 when the Git source cannot be fetched
(`EXIT_*` below; the controller turns them into OpenShift's reasons). The container's
`terminationMessagePolicy` is `FallbackToLogsOnError`, so a failed container's termination
message is the tail of its log, which becomes the Build's `status.logSnippet`, as
OpenShift's builder pods do.

Invariant: the digest taken is a well-formed `sha256:<64 hex>` from the `build` container
of a pod that succeeded, or the annotation; anything else is no digest (the Build still
completes; nothing is recorded).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from controller.builds.model import (
    BUILD_NAME_LABEL,
    BUILDCONFIG_NAME,
    buildconfig_of,
    label_value,
    strategy_params,
    strategy_type,
)
from imagestream.objects import Obj, mapping, name_of, namespace_of, spec_of, string
from imagestream.references import parse_image_reference

BUILD_CONTAINER: Final = "build"
BUILD_NAME_ANNOTATION: Final = "openshift.io/build.name"
"""On the Job: the full name of the Build it runs (labels are cut at 63 characters)."""
DIGEST_ANNOTATION: Final = "build.openshift.io/output-digest"
BUILDER_IMAGE: Final = "quay.io/buildah/stable:v1.38.0"
PUSH_SECRET_PATH: Final = "/var/run/secrets/openshift.io/push"  # noqa: S105 - a mount path
PULL_SECRET_PATH: Final = "/var/run/secrets/openshift.io/pull"  # noqa: S105 - a mount path
JOB_NAME_MAX: Final = 63
EXIT_BUILD_FAILED: Final = 2
EXIT_PUSH_FAILED: Final = 3
EXIT_PULL_FAILED: Final = 4
EXIT_FETCH_FAILED: Final = 5

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

BUILD_SCRIPT: Final = r"""set -eu
workdir="${TMPDIR:-/tmp}/build"
mkdir -p "$workdir/context"
context="$workdir/context"
strategy="${BUILD_STRATEGY:-Docker}"
commit=""
# A path from the BuildConfig names something inside the source: relative, no "..".
inside() {
  case "/$1/" in
    //* | */../*) echo "error: $2 \"$1\" must be a relative path inside the source" >&2; exit 2 ;;
  esac
}
# A Dockerfile string: double-quoted, its backslashes and quotes escaped.
quoted() { printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"; }
# The strategy's env as NAME=value lines, read from this container's environment (where
# the Job put them, valueFrom resolved by the kubelet).
strategy_env() {
  for name in ${BUILD_ENV_NAMES:-}; do printf '%s=%s\n' "$name" "$(printenv "$name" || true)"; done
}
# OpenShift's build information, as env (OPENSHIFT_BUILD_*) and as labels.
build_info() {
  printf 'OPENSHIFT_BUILD_NAME=%s\nOPENSHIFT_BUILD_NAMESPACE=%s\n' \
    "${BUILD_NAME:-}" "${BUILD_NAMESPACE:-}"
  if [ -n "${SOURCE_URI:-}" ]; then
    printf 'OPENSHIFT_BUILD_SOURCE=%s\nOPENSHIFT_BUILD_REFERENCE=%s\nOPENSHIFT_BUILD_COMMIT=%s\n' \
      "$SOURCE_URI" "${SOURCE_REF:-}" "$commit"
  fi
}
build_labels() {
  printf 'io.openshift.build.name=%s\nio.openshift.build.namespace=%s\n' \
    "${BUILD_NAME:-}" "${BUILD_NAMESPACE:-}"
  if [ -n "${SOURCE_URI:-}" ]; then
    printf 'io.openshift.build.source-location=%s\nio.openshift.build.commit.id=%s\n' \
      "$SOURCE_URI" "$commit"
    if [ -n "${SOURCE_REF:-}" ]; then printf 'io.openshift.build.commit.ref=%s\n' "$SOURCE_REF"; fi
    if [ -n "${SOURCE_CONTEXT_DIR:-}" ]; then
      printf 'io.openshift.build.source-context-dir=%s\n' "$SOURCE_CONTEXT_DIR"
    fi
  fi
}
pull_flags() {
  if [ -n "${PULL_DOCKERCFG_PATH:-}" ]; then printf '%s\n' --authfile "$PULL_DOCKERCFG_PATH"; fi
  if [ "${TLS_VERIFY:-true}" = false ]; then printf '%s\n' --tls-verify=false; fi
}
if [ -n "${SOURCE_URI:-}" ]; then
  # The Git source, fetched as OpenShift's builder does: a shallow clone without a ref,
  # else a clone and the ref (branch, tag or commit) checked out. Exit 5: fetch failed.
  export GIT_TERMINAL_PROMPT=0
  echo "Cloning \"$SOURCE_URI\" ..."
  source="$workdir/source"
  if [ -n "${SOURCE_REF:-}" ]; then
    git clone --quiet --recurse-submodules "$SOURCE_URI" "$source" || exit 5
    git -C "$source" -c advice.detachedHead=false checkout --quiet "$SOURCE_REF" -- || exit 5
    git -C "$source" submodule --quiet update --init --recursive || exit 5
  else
    git clone --quiet --depth 1 --recurse-submodules "$SOURCE_URI" "$source" || exit 5
  fi
  commit=$(git -C "$source" rev-parse HEAD)
  printf '\tCommit:\t%s (%s)\n' "$commit" "$(git -C "$source" log -1 --format=%s)"
  inside "${SOURCE_CONTEXT_DIR:-.}" contextDir
  context="$source/${SOURCE_CONTEXT_DIR:-.}"
  if [ ! -d "$context" ]; then
    echo "error: contextDir \"$SOURCE_CONTEXT_DIR\" is not a directory of the source" >&2
    exit 2
  fi
fi
if [ "$strategy" = Docker ]; then
  # The Dockerfile: source.dockerfile, else dockerfilePath (default Dockerfile) inside the
  # context. Rewritten as OpenShift's builder rewrites it: the strategy's `from` replaces
  # the image of the last FROM (the stage that becomes the output; buildah's own --from
  # would replace the first), the strategy's env follows every FROM, and the build
  # information (ENV, LABEL) ends it.
  if [ -n "${DOCKERFILE:-}" ]; then
    given="$workdir/Dockerfile.given"
    printf '%s\n' "$DOCKERFILE" > "$given"
  else
    inside "${DOCKERFILE_PATH:-Dockerfile}" dockerfilePath
    given="$context/${DOCKERFILE_PATH:-Dockerfile}"
    if [ ! -f "$given" ]; then
      echo "error: no Dockerfile at \"${DOCKERFILE_PATH:-Dockerfile}\" in the source" >&2
      exit 2
    fi
  fi
  dockerfile="$workdir/Dockerfile"
  froms=$(grep -c -i -E '^[[:space:]]*FROM[[:space:]]' "$given" || true)
  if [ "$froms" -eq 0 ]; then echo "error: no FROM instruction in the Dockerfile" >&2; exit 2; fi
  env_line=""
  while IFS='=' read -r name value; do
    if [ -n "$name" ]; then env_line="$env_line $(quoted "$name")=$(quoted "$value")"; fi
  done <<EOF
$(strategy_env)
EOF
  seen=0
  while IFS= read -r line || [ -n "$line" ]; do
    trimmed="${line#"${line%%[![:space:]]*}"}"
    case "$trimmed" in
      [Ff][Rr][Oo][Mm][[:space:]]*)
        seen=$((seen + 1))
        if [ "$seen" -eq "$froms" ] && [ -n "${FROM_IMAGE:-}" ]; then
          set -f
          # shellcheck disable=SC2086 # the instruction's words
          set -- $trimmed
          set +f
          shift
          flags=""
          while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do flags="$flags $1"; shift; done
          echo "Replaced Dockerfile FROM image ${1:-}" >&2
          if [ $# -gt 0 ]; then shift; fi
          line="FROM$flags $FROM_IMAGE${*:+ $*}"
        fi
        printf '%s\n' "$line"
        if [ -n "$env_line" ]; then printf 'ENV%s\n' "$env_line"; fi
        ;;
      *) printf '%s\n' "$line" ;;
    esac
  done < "$given" > "$dockerfile"
  while IFS='=' read -r name value; do
    printf 'ENV %s=%s\n' "$(quoted "$name")" "$(quoted "$value")"
  done >> "$dockerfile" <<EOF
$(build_info)
EOF
  while IFS='=' read -r name value; do
    printf 'LABEL %s=%s\n' "$(quoted "$name")" "$(quoted "$value")"
  done >> "$dockerfile" <<EOF
$(build_labels)
EOF
fi
if [ -n "${FROM_IMAGE:-}" ]; then
  # The base (or builder) image first, so a pull failure says so (exit 4).
  set --
  while IFS= read -r flag; do if [ -n "$flag" ]; then set -- "$@" "$flag"; fi; done <<EOF
$(pull_flags)
EOF
  buildah pull "$@" "$FROM_IMAGE" || exit 4
fi
if [ "$strategy" = Source ]; then
  # Source-to-image, as OpenShift's builder runs it: the builder image's scripts come from
  # its io.openshift.s2i.scripts-url label (image:///<dir>, a directory in the image); the
  # source goes to <io.openshift.s2i.destination, default /tmp>/src, owned by the image's
  # user; assemble runs as that user with the strategy's env and the build information;
  # the result is committed with CMD the run script, that env, and the build's labels.
  if [ -z "${FROM_IMAGE:-}" ]; then echo "error: sourceStrategy.from is required" >&2; exit 2; fi
  label() {
    buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$1\"}}" "$FROM_IMAGE"
  }
  scripts_url=$(label io.openshift.s2i.scripts-url) || exit 2
  if [ -z "$scripts_url" ]; then scripts_url=$(label io.s2i.scripts-url); fi
  case "$scripts_url" in
    image:///*) scripts="${scripts_url#image://}" ;;
    "")
      echo "error: the builder image has no io.openshift.s2i.scripts-url label" >&2
      exit 2
      ;;
    *)
      echo "error: scripts-url \"$scripts_url\": only image:///<dir> is supported" >&2
      exit 2
      ;;
  esac
  destination=$(label io.openshift.s2i.destination)
  owner=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$FROM_IMAGE")
  owner="${owner:-0}"
  case "$owner" in *:*) ;; *) owner="$owner:0" ;; esac
  set --
  while IFS= read -r flag; do if [ -n "$flag" ]; then set -- "$@" "$flag"; fi; done <<EOF
$(pull_flags)
EOF
  container=$(buildah from --quiet "$@" "$FROM_IMAGE") || exit 2
  buildah copy --quiet --chown "$owner" "$container" "$context" "${destination:-/tmp}/src" \
    > /dev/null || exit 2
  echo "Running $scripts/assemble as $owner ..."
  set --
  while IFS= read -r pair; do if [ -n "$pair" ]; then set -- "$@" --env "$pair"; fi; done <<EOF
$(strategy_env)
$(build_info)
EOF
  buildah run --user "$owner" "$@" "$container" -- "$scripts/assemble" || exit 2
  while IFS= read -r pair; do if [ -n "$pair" ]; then set -- "$@" --label "$pair"; fi; done <<EOF
$(build_labels)
io.openshift.build.image=$FROM_IMAGE
EOF
  buildah config --cmd "[\"$scripts/run\"]" "$@" "$container" || exit 2
  buildah commit --quiet "$container" "$OUTPUT_IMAGE" > /dev/null || exit 2
else
  set -- --file "$dockerfile"
  if [ "${NO_CACHE:-}" = true ]; then set -- "$@" --no-cache; fi
  while IFS= read -r flag; do if [ -n "$flag" ]; then set -- "$@" "$flag"; fi; done <<EOF
$(pull_flags)
EOF
  if [ -n "${BUILD_ARGS:-}" ]; then
    while IFS= read -r arg; do
      if [ -n "$arg" ]; then set -- "$@" --build-arg "$arg"; fi
    done <<EOF
$BUILD_ARGS
EOF
  fi
  buildah build --tag "$OUTPUT_IMAGE" "$@" "$context" || exit 2
fi
set --
if [ -n "${PUSH_DOCKERCFG_PATH:-}" ]; then set -- "$@" --authfile "$PUSH_DOCKERCFG_PATH"; fi
if [ "${TLS_VERIFY:-true}" = false ]; then set -- "$@" --tls-verify=false; fi
buildah push "$@" --digestfile "${DIGEST_FILE:-/dev/termination-log}" "$OUTPUT_IMAGE" \
  "docker://$OUTPUT_IMAGE" || exit 3
"""


def default_job_template(builder_image: str = "") -> Obj:
    """Rootless buildah (vfs storage, chroot isolation): no privileged pod, no /dev/fuse.

    `builder_image`: the `build` container's image (default `BUILDER_IMAGE`)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": BUILD_CONTAINER,
                            "image": builder_image or BUILDER_IMAGE,
                            "command": ["/bin/sh", "-c", BUILD_SCRIPT],
                            "env": [
                                {"name": "STORAGE_DRIVER", "value": "vfs"},
                                {"name": "BUILDAH_ISOLATION", "value": "chroot"},
                                {"name": "HOME", "value": "/home/build"},
                            ],
                            "securityContext": {
                                "runAsUser": 1000,
                                "runAsGroup": 1000,
                                "capabilities": {"add": ["SETUID", "SETGID"]},
                            },
                            # The digest on success; the log's tail on failure.
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                        }
                    ],
                },
            },
        },
    }


def validate_job_template(template: object) -> Obj:
    """A usable template (a copy), or ValueError saying what is wrong with it."""
    if not isinstance(template, Mapping) or template.get("kind", "Job") != "Job":
        raise ValueError("the build Job template must be a batch/v1 Job manifest")
    pod_spec = mapping(mapping(mapping(template.get("spec")).get("template")).get("spec"))
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not any(
        mapping(c).get("name") == BUILD_CONTAINER for c in containers
    ):
        raise ValueError(f'the build Job template needs a container named "{BUILD_CONTAINER}"')
    return copy.deepcopy(dict(template))


def job_name(build_name: str) -> str:
    """`<build>-build`, shortened with a hash when the Job name would pass 63 characters."""
    name = f"{build_name}-build"
    if len(name) <= JOB_NAME_MAX:
        return name
    digest = hashlib.sha256(build_name.encode()).hexdigest()[:8]
    return f"{build_name[: JOB_NAME_MAX - len(digest) - 8]}-{digest}-build"


@dataclass(frozen=True, kw_only=True)
class OutputTarget:
    """Where a Build pushes, and which ImageStream tag records it (None for DockerImage)."""

    push_spec: str
    """`<repository>:<tag>`, what the builder pushes to."""
    repository: str = ""
    stream_namespace: str = ""
    stream: str = ""
    tag: str = ""

    @property
    def records_tag(self) -> bool:
        return bool(self.stream)


BUILDER_SERVICE_ACCOUNT: Final = "builder"


def default_push_secret(
    build: Mapping[str, Any],
    output: OutputTarget,
    *,
    integrated_hosts: Collection[str],
    pull_secret_of: Callable[[str, str], str | None],
) -> str | None:
    """The Secret a Build pushes with when it names none (behaviour 34 in
    docs/openshift-behaviours.md).

    As OpenShift's build controller does: the build's service account (`builder` when the
    Build names none) lends its integrated-registry pull secret to an output on that
    registry. `pull_secret_of(namespace, account)` is that account's listed pull secret,
    "" when none applies, or None while the pull-secret loop has not listed one yet (then
    so is this: the Job waits rather than push without credentials). A given
    `output.pushSecret`, and any other registry, get nothing from here."""
    if string(mapping(mapping(spec_of(build).get("output")).get("pushSecret")).get("name")):
        return ""
    hosts = {host.lower() for host in integrated_hosts}
    if not hosts or _registry_of(output.push_spec).lower() not in hosts:
        return ""
    account = string(spec_of(build).get("serviceAccount")) or BUILDER_SERVICE_ACCOUNT
    return pull_secret_of(namespace_of(build), account)


def build_job(
    build: Mapping[str, Any],
    *,
    template: Mapping[str, Any],
    output: OutputTarget,
    insecure_registries: Collection[str] = (),
    push_secret: str = "",
) -> Obj:
    """The Job that runs `build`, from `template` (validated), pushing to `output`.

    `insecure_registries`: when the output or the strategy's `from` is on one of them, the
    builder speaks plain HTTP (`TLS_VERIFY=false`). `push_secret`: the Secret to push with
    when the Build gives no `output.pushSecret` (`default_push_secret`)."""
    job = copy.deepcopy(dict(template))
    name, namespace = name_of(build), namespace_of(build)
    metadata = dict(mapping(job.get("metadata")))
    labels = dict(mapping(metadata.get("labels"))) | {
        BUILD_NAME_LABEL: label_value(name),
        BUILDCONFIG_NAME: label_value(buildconfig_of(build) or ""),
    }
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    job["metadata"] = {
        "name": job_name(name),
        "namespace": namespace,
        "labels": labels,
        "annotations": dict(mapping(metadata.get("annotations"))) | {BUILD_NAME_ANNOTATION: name},
        "ownerReferences": [
            {
                "apiVersion": "build.openshift.io/v1",
                "kind": "Build",
                "name": name,
                "uid": str(mapping(build.get("metadata")).get("uid", "")),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    spec = job.setdefault("spec", {})
    deadline = spec_of(build).get("completionDeadlineSeconds")
    if isinstance(deadline, int) and deadline > 0:
        spec["activeDeadlineSeconds"] = deadline
    pod = spec.setdefault("template", {})
    pod_metadata = pod.setdefault("metadata", {})
    pod_metadata["labels"] = dict(mapping(pod_metadata.get("labels"))) | {
        BUILD_NAME_LABEL: label_value(name)
    }
    pod_spec = pod.setdefault("spec", {})
    service_account = string(spec_of(build).get("serviceAccount"))
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    node_selector = spec_of(build).get("nodeSelector")
    if isinstance(node_selector, Mapping) and node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    container = next(c for c in pod_spec["containers"] if c.get("name") == BUILD_CONTAINER)
    env, volumes, mounts = _inputs(build, output, insecure_registries, push_secret)
    container["env"] = [*(container.get("env") or []), *env]
    if mounts:
        container["volumeMounts"] = [*(container.get("volumeMounts") or []), *mounts]
        pod_spec["volumes"] = [*(pod_spec.get("volumes") or []), *volumes]
    resources = spec_of(build).get("resources")
    if isinstance(resources, Mapping) and resources:
        container["resources"] = copy.deepcopy(dict(resources))
    return job


def _registry_of(pull_spec: str) -> str:
    try:
        return parse_image_reference(pull_spec).registry
    except ValueError:
        return ""


def _inputs(
    build: Mapping[str, Any],
    output: OutputTarget,
    insecure_registries: Collection[str],
    push_secret: str = "",
) -> tuple[list[Obj], list[Obj], list[Obj]]:
    source = mapping(spec_of(build).get("source"))
    git = mapping(source.get("git"))
    params = strategy_params(build)
    values: dict[str, str] = {
        "BUILD_NAME": name_of(build),
        "BUILD_NAMESPACE": namespace_of(build),
        "BUILD_STRATEGY": strategy_type(build),
        "SOURCE_URI": string(git.get("uri")),
        "SOURCE_REF": string(git.get("ref")),
        "SOURCE_CONTEXT_DIR": string(source.get("contextDir")),
        "DOCKERFILE": string(source.get("dockerfile")),
        "DOCKERFILE_PATH": string(params.get("dockerfilePath")),
        "FROM_IMAGE": string(mapping(params.get("from")).get("name")),
        "OUTPUT_IMAGE": output.push_spec,
    }
    build_args = [
        f"{string(mapping(a).get('name'))}={string(mapping(a).get('value'))}"
        for a in params.get("buildArgs") or []
        if string(mapping(a).get("name"))
    ]
    if build_args:
        values["BUILD_ARGS"] = "\n".join(build_args)
    if params.get("noCache") is True:
        values["NO_CACHE"] = "true"
    insecure = {r.lower() for r in insecure_registries}
    if insecure & {_registry_of(output.push_spec), _registry_of(values["FROM_IMAGE"])}:
        values["TLS_VERIFY"] = "false"
    env: list[Obj] = [{"name": key, "value": value} for key, value in values.items() if value]
    volumes: list[Obj] = []
    mounts: list[Obj] = []
    for secret, path, variable, volume in (
        (
            mapping(mapping(spec_of(build).get("output")).get("pushSecret")).get("name")
            or push_secret,
            PUSH_SECRET_PATH,
            "PUSH_DOCKERCFG_PATH",
            "push-secret",
        ),
        (
            mapping(params.get("pullSecret")).get("name"),
            PULL_SECRET_PATH,
            "PULL_DOCKERCFG_PATH",
            "pull-secret",
        ),
    ):
        if isinstance(secret, str) and secret:
            volumes.append({"name": volume, "secret": {"secretName": secret}})
            mounts.append({"name": volume, "mountPath": path, "readOnly": True})
            env.append({"name": variable, "value": f"{path}/.dockerconfigjson"})
    strategy_env = [dict(e) for e in params.get("env") or [] if isinstance(e, Mapping)]
    env.extend(copy.deepcopy(e) for e in strategy_env)
    names = [string(e.get("name")) for e in strategy_env]
    if any(names):
        # Which of the container's variables are the strategy's own: the script puts
        # them into the Dockerfile (ENV after every FROM) or S2I's assemble and image.
        env.append({"name": "BUILD_ENV_NAMES", "value": " ".join(n for n in names if n)})
    return env, volumes, mounts


# --- reading a Job back ------------------------------------------------------------------------


def job_condition(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in mapping(job.get("status")).get("conditions") or []:
        condition = mapping(condition)
        if condition.get("type") == type_ and condition.get("status") == "True":
            return condition
    return None


def job_succeeded(job: Mapping[str, Any]) -> bool:
    return job_condition(job, "Complete") is not None


def job_failed(job: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return job_condition(job, "Failed")


def job_ended(job: Mapping[str, Any]) -> bool:
    return job_succeeded(job) or job_failed(job) is not None


def job_running(job: Mapping[str, Any]) -> bool:
    """A build pod is running (ready: the kubelet started the container)."""
    ready = mapping(job.get("status")).get("ready")
    return isinstance(ready, int) and ready > 0


def output_digest(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The digest the builder reported: the Job annotation, else the termination message
    of the `build` container of a pod that succeeded."""
    annotated = string(
        mapping(mapping(job.get("metadata")).get("annotations")).get(DIGEST_ANNOTATION)
    )
    if _DIGEST.fullmatch(annotated.strip()):
        return annotated.strip()
    for pod in pods:
        status = mapping(pod.get("status"))
        if status.get("phase") != "Succeeded":
            continue
        for container in status.get("containerStatuses") or []:
            container = mapping(container)
            if container.get("name") != BUILD_CONTAINER:
                continue
            terminated = mapping(mapping(container.get("state")).get("terminated"))
            found = _DIGEST.search(string(terminated.get("message")))
            if terminated.get("exitCode") == 0 and found:
                return found.group(0)
    return None


@dataclass(frozen=True, kw_only=True)
class ContainerEnd:
    """How the `build` container of a build pod ended (its kubelet-written terminated state)."""

    exit_code: int
    reason: str
    """The kubelet's: `Completed`, `Error`, `OOMKilled`..."""
    message: str
    """The termination message: the digest, or (`FallbackToLogsOnError`) the log's tail."""


def build_container_end(pods: Iterable[Mapping[str, Any]]) -> ContainerEnd | None:
    """The `build` container's end, from the first pod where it has terminated."""
    for pod in pods:
        for container in mapping(pod.get("status")).get("containerStatuses") or []:
            container = mapping(container)
            if container.get("name") != BUILD_CONTAINER:
                continue
            terminated = mapping(mapping(container.get("state")).get("terminated"))
            code = terminated.get("exitCode")
            if isinstance(code, int):
                return ContainerEnd(
                    exit_code=code,
                    reason=string(terminated.get("reason")),
                    message=string(terminated.get("message")),
                )
    return None


def build_container_started(pods: Iterable[Mapping[str, Any]]) -> bool:
    """The `build` container of one of the pods runs, or has run.

    The pod says so as soon as the kubelet reports it; the Job's `status.ready` count
    follows many seconds later on a busy node (13 s was seen here), so the Build's
    Running phase is read from the pod."""
    for pod in pods:
        for container in mapping(pod.get("status")).get("containerStatuses") or []:
            container = mapping(container)
            state = mapping(container.get("state"))
            if container.get("name") == BUILD_CONTAINER and (
                state.get("running") or state.get("terminated")
            ):
                return True
    return False
