"""The one place that builds a connection to the API server.

`connect()` loads a kubeconfig (the `--kubeconfig` flag, then `$KUBECONFIG`,
then in-cluster service account) and returns a `Kube` handle that owns the
`ApiClient`. Everything else receives that handle; there is no module-level
client, so tests and `imagestream dev` can run several processes' worth of
clients side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from imagestream.kube.errors import translate

FIELD_MANAGER = "imagestream-controller"
USER_AGENT = "imagestream-controller"


@dataclass
class Kube:
    """An open connection to one API server."""

    api_client: Any

    async def server_version(self) -> dict[str, str]:
        try:
            info = await k8s.VersionApi(self.api_client).get_code()
        except Exception as error:
            raise translate(error) from error
        return {"gitVersion": info.git_version, "major": info.major, "minor": info.minor}

    async def reachable(self) -> bool:
        try:
            await self.server_version()
        except Exception:
            return False
        return True

    async def close(self) -> None:
        await self.api_client.close()


async def connect(kubeconfig: Path | None) -> Kube:
    configuration = k8s.Configuration()
    path = kubeconfig or (Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None)
    if path is not None:
        await k8s_config.load_kube_config(
            config_file=str(path), client_configuration=configuration, persist_config=False
        )
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    api_client = k8s.ApiClient(configuration=configuration)
    api_client.user_agent = USER_AGENT
    return Kube(api_client=api_client)
