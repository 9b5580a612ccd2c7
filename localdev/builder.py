"""The builder image in the local system: made from Debian packages, pushed to its registry.

`imagestream dev`, the node tests and the build benchmark run Builds with the builder
image made here (`localdev.debian_images.BUILDER`: buildah 1.28, rootless), not the
public default a real cluster pulls (`controller.builds.jobs.BUILDER_IMAGE`), because
nothing here reaches the internet. `push_builder()` makes it (or finds it in the cache,
in a fraction of a second, when its inputs are unchanged), pushes it to
`<registry>/localdev/builder` unless the registry already holds that digest, and returns
the pull spec by digest the controller is given (`--builder-image`), so every build pod
runs exactly the image that was made.

Invariant: the returned reference names a manifest the registry serves.
Failure it prevents: build pods stuck in ImagePullBackOff on a public image that cannot
be pulled here, or running a stale builder after the image's inputs changed.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

from localdev import debian_images
from localdev.images import OCI_MANIFEST, skopeo_push

BUILDER_REPOSITORY = "localdev/builder"
HEAD_TIMEOUT_S = 10.0


def _registry_has(registry: str, repository: str, digest: str) -> bool:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{digest}",
        method="HEAD",
        headers={"Accept": OCI_MANIFEST},
    )
    try:
        with urllib.request.urlopen(request, timeout=HEAD_TIMEOUT_S) as response:  # noqa: S310
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


def push_builder(registry: str, *, log: Callable[[str], None] | None = None) -> str:
    """`<registry>/localdev/builder@<digest>`: the builder image, made or cached, pushed."""
    built = debian_images.build(debian_images.BUILDER, log=log)
    if not _registry_has(registry, BUILDER_REPOSITORY, built.digest):
        skopeo_push(built.image, f"{registry}/{BUILDER_REPOSITORY}:latest")
    return f"{registry}/{BUILDER_REPOSITORY}@{built.digest}"
