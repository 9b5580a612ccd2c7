"""The one place that talks to the API server.

`connect()` loads a kubeconfig (the `--kubeconfig` flag, then `$KUBECONFIG`,
then the in-cluster service account; the processes), `connect_as_user()` the
one kubectl would use (`kubeconfig.py`; the commands), with kubernetes-asyncio, whose
configuration handles the many kubeconfig auth forms and token refresh. The
requests themselves go through its aiohttp session as raw JSON: objects stay
plain dicts (as the API returns them) instead of generated model classes,
which are slow to build and large in memory for thousands of watched
workloads.

Every failure leaves this module as one of the errors in
`imagestream.kube.errors`. Transient failures (connection errors, 5xx, 429)
are retried here, a few times with back-off, and nowhere else; 409 is never
resent as is, because the caller must re-read and re-decide.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client import rest as k8s_rest
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)
from yarl import URL

from imagestream.kube.errors import (
    Gone,
    KubeconfigError,
    KubeError,
    Retryable,
    Unreachable,
    translate_status,
)
from imagestream.kube.kubeconfig import resolve_target
from imagestream.kube.resources import Resource
from imagestream.objects import Obj

FIELD_MANAGER = "imagestream-controller"
USER_AGENT = "imagestream-controller"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
REQUEST_TIMEOUT_S = 30.0
RETRY_ATTEMPTS = 4
CONNECTION_POOL_SIZE = 64
"""Connections for requests. Streams (watches, logs) have a pool of their own, unbounded:
each holds its connection for its lifetime, and a controller in namespaced mode holds one
watch per resource per namespace (about fifteen per namespace). Sharing one bounded pool,
twelve namespaces' watches took every connection, and every request (lists, `/version`,
patches) then waited for one forever: the controller never became ready."""
LIST_PAGE_SIZE = 500
LOG_STREAM_TIMEOUT_S = 3600.0
PODS_LOG_PATH = "/api/v1/namespaces/{namespace}/pods/{pod}/log"

RequestObserver = Callable[[str, str, int, float], None]
"""Called after each request with (verb, resource, HTTP status or 0, seconds)."""


@dataclass
class Kube:
    """An open connection to one API server."""

    api_client: Any
    observers: list[RequestObserver] = field(default_factory=list)
    session: aiohttp.ClientSession | None = None
    """Ours, on the client library's connection pool, without `trust_env`.

    The library's session trusts the environment, so aiohttp reads ~/.netrc
    and the proxy variables in a worker thread on every request: two thread
    hops that made up ~45 % of a request's CPU. `connect()` resolves the
    proxy once instead."""
    stream_session: aiohttp.ClientSession | None = None
    """For watches and logs, on a connection pool without a limit (`CONNECTION_POOL_SIZE`)."""
    stream_client: Any = None
    """The library's REST client that owns `stream_session`'s connection pool."""
    proxy: str | None = None
    proxy_auth: aiohttp.BasicAuth | None = None
    source: str = ""
    """Where the configuration came from, for messages: `kubeconfig PATH (--kubeconfig)`."""

    @property
    def _session(self) -> aiohttp.ClientSession:
        if self.session is not None:
            return self.session
        session: aiohttp.ClientSession = self.api_client.rest_client.pool_manager
        return session

    @property
    def _streams(self) -> aiohttp.ClientSession:
        return self.stream_session if self.stream_session is not None else self._session

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if content_type:
            headers["Content-Type"] = content_type
        auth = await self.api_client.configuration.auth_settings()
        if "BearerToken" in auth:
            headers["Authorization"] = auth["BearerToken"]["value"]
        return headers

    async def bearer_token(self) -> str | None:
        """The token this connection authenticates with; None for a client certificate.

        For `imagestream registry login`, which hands the user's own token to the registry
        (as `oc registry login` does); nothing else reads it.
        """
        auth = await self.api_client.configuration.auth_settings()
        value = str((auth.get("BearerToken") or {}).get("value") or "")
        scheme, _, token = value.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    async def _request_once(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None,
        body: object,
        content_type: str | None,
        timeout_s: float,
    ) -> Obj:
        headers = await self._headers(content_type if body is not None else None)
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        status = 0
        try:
            async with self._session.request(
                method,
                self.api_client.configuration.host + path,
                params=params,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
            ) as response:
                status = response.status
                payload = await response.read()
                if status >= 400:
                    raise translate_status(
                        status, payload, response.headers, json_patch=content_type == JSON_PATCH
                    )
        except KubeError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            reason = _unreachable_reason(error)
            if reason is not None:
                raise Unreachable(
                    server=str(self.api_client.configuration.host),
                    reason=reason,
                    source=self.source,
                    request=f"{method} {path}",
                ) from error
            raise Retryable(f"{method} {path}: {type(error).__name__}: {error}"[:256]) from error
        finally:
            for observe in self.observers:
                observe(method, path, status, loop.time() - started)
        if not payload:
            return {}
        result: Obj = json.loads(payload)
        return result

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str | None = "application/json",
        timeout_s: float = REQUEST_TIMEOUT_S,
        attempts: int = RETRY_ATTEMPTS,
    ) -> Obj:
        """One API request; transient failures are retried up to `attempts` times in all."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Retryable),
            stop=stop_after_attempt(attempts),
            wait=_wait_honouring_retry_after,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._request_once(
                    method,
                    path,
                    params=params,
                    body=body,
                    content_type=content_type,
                    timeout_s=timeout_s,
                )
        raise AssertionError("unreachable: tenacity re-raises the last error")

    # --- typed conveniences over `request` -------------------------------------------------

    async def get(
        self, resource: Resource, namespace: str | None, name: str, *, subresource: str = ""
    ) -> Obj:
        return await self.request(
            "GET", resource.path(namespace=namespace, name=name, subresource=subresource)
        )

    async def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        transform: Callable[[Obj], Obj | None] | None = None,
        after_page: Callable[[], None] | None = None,
    ) -> tuple[list[Obj], str]:
        """Every object (paginated), and the list's resourceVersion to watch from.

        `transform` is applied page by page, so a cache that keeps a trimmed
        copy never holds every full object at once (10,000 Deployments: the
        difference between ~100 MiB and a page's worth); an object it maps to
        None is left out. `after_page` is called once each page is transformed
        (`imagestream.heap.freeze_survivors`).
        """
        items: list[Obj] = []
        params: dict[str, str] = {"limit": str(LIST_PAGE_SIZE)}
        if label_selector:
            params["labelSelector"] = label_selector
        while True:
            page = await self.request("GET", resource.path(namespace=namespace), params=params)
            metadata = page.get("metadata") or {}
            page_items = page.get("items") or []
            if transform is None:
                items.extend(page_items)
            else:
                items.extend(kept for kept in map(transform, page_items) if kept is not None)
            del page, page_items  # with a transform, the full objects go before `after_page`
            if after_page is not None:
                after_page()
            if not metadata.get("continue"):
                return items, str(metadata.get("resourceVersion", ""))
            params["continue"] = metadata["continue"]

    async def watch(
        self,
        resource: Resource,
        namespace: str | None,
        *,
        resource_version: str,
        timeout_s: int,
        label_selector: str | None = None,
    ) -> AsyncIterator[Obj]:
        """Watch events (`{"type", "object"}`) from `resource_version`, with bookmarks.

        Ends normally when the server closes the watch (after about `timeout_s`);
        raises `Gone` when the resourceVersion has expired (the caller relists).
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_s),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        headers = await self._headers(None)
        url = self.api_client.configuration.host + resource.path(namespace=namespace)
        # The client-side timeout is a guard against a silent, half-open stream:
        # the server ends every watch at timeoutSeconds, so a stream that outlives
        # it by a margin is dead.
        timeout = aiohttp.ClientTimeout(total=timeout_s + 15, sock_connect=10)
        try:
            async with self._streams.get(
                url,
                params=params,
                headers=headers,
                timeout=timeout,
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
            ) as response:
                if response.status >= 400:
                    raise translate_status(response.status, await response.read(), response.headers)
                async for line in response.content:
                    if not line.strip():
                        continue
                    event: Obj = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        code = int(status.get("code") or 0)
                        if code == 410:
                            raise Gone(str(status.get("message", "resourceVersion expired")))
                        raise translate_status(code or 500, json.dumps(status).encode(), None)
                    yield event
        except KubeError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            raise Retryable(
                f"watch {resource.plural}: {type(error).__name__}: {error}"[:256]
            ) from error

    async def stream_log(
        self,
        namespace: str,
        pod: str,
        *,
        container: str,
        follow: bool,
        timeout_s: float = LOG_STREAM_TIMEOUT_S,
    ) -> AsyncIterator[bytes]:
        """A container's log (`pods/NAME/log`), chunk by chunk as the kubelet sends it.

        With `follow` it ends when the container does (the API server closes the stream),
        or after `timeout_s`; without it, at the end of what is logged so far.
        """
        params = {"container": container, "follow": "true" if follow else "false"}
        headers = await self._headers(None)
        headers["Accept"] = "text/plain, */*"
        url = self.api_client.configuration.host + PODS_LOG_PATH.format(
            namespace=namespace, pod=pod
        )
        try:
            async with self._streams.get(
                url,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=10),
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
            ) as response:
                if response.status >= 400:
                    raise translate_status(response.status, await response.read(), response.headers)
                async for chunk in response.content.iter_any():
                    yield chunk
        except KubeError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise Retryable(
                f"log of {namespace}/{pod}: {type(error).__name__}: {error}"[:256]
            ) from error

    async def create(self, resource: Resource, namespace: str | None, body: Obj) -> Obj:
        return await self.request("POST", resource.path(namespace=namespace), body=body)

    async def replace(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str = "",
    ) -> Obj:
        """PUT; carries the body's resourceVersion, so a stale write fails with Conflict."""
        return await self.request(
            "PUT", resource.path(namespace=namespace, name=name, subresource=subresource), body=body
        )

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: object,
        *,
        patch_type: str = MERGE_PATCH,
        subresource: str = "",
        field_manager: str | None = None,
        force: bool = False,
    ) -> Obj:
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        return await self.request(
            "PATCH",
            resource.path(namespace=namespace, name=name, subresource=subresource),
            params=params or None,
            body=body,
            content_type=patch_type,
        )

    async def delete(self, resource: Resource, namespace: str | None, name: str) -> Obj:
        return await self.request("DELETE", resource.path(namespace=namespace, name=name))

    async def server_version(self) -> dict[str, str]:
        version = await self.request("GET", "/version", attempts=1, timeout_s=5)
        return {key: str(value) for key, value in version.items()}

    async def served_groups(self) -> set[str]:
        groups = await self.request("GET", "/apis")
        return {group["name"] for group in groups.get("groups") or []}

    async def reachable(self) -> bool:
        try:
            await self.request("GET", "/version", attempts=1, timeout_s=2)
        except KubeError:
            return False
        return True

    async def close(self) -> None:
        # Our sessions first, not their connectors: the library's sessions own those.
        for session in (self.session, self.stream_session):
            if session is not None:
                await session.close()
        if self.stream_client is not None:
            await self.stream_client.close()
        await self.api_client.close()


def _wait_honouring_retry_after(retry_state: Any) -> float:
    error = retry_state.outcome.exception() if retry_state.outcome else None
    backoff = float(wait_exponential_jitter(multiplier=0.1, max=2.0)(retry_state))
    if isinstance(error, Retryable) and error.retry_after_s is not None:
        return min(max(backoff, error.retry_after_s), 10.0)
    return backoff


async def connect(kubeconfig: Path | None) -> Kube:
    """A connection configured from `kubeconfig`, else `$KUBECONFIG`, else in-cluster.

    Raises `KubeconfigError` (one line: the file, where it was named, what is
    wrong) when none of them gives a usable configuration; nothing is
    contacted yet, so an unreachable server shows up as `Unreachable` on the
    first request instead.
    """
    configuration = k8s.Configuration()
    if kubeconfig is not None:
        path, source = kubeconfig, f"kubeconfig {kubeconfig} (--kubeconfig)"
    elif os.environ.get("KUBECONFIG"):
        path = Path(os.environ["KUBECONFIG"])
        source = f"kubeconfig {path} ($KUBECONFIG)"
    else:
        path, source = None, "the in-cluster service account"
    if path is not None:
        await _load_kubeconfig((path,), source, configuration)
    else:
        _load_incluster(configuration)
    return _kube_for(configuration, source)


async def connect_as_user(
    *, kubeconfig: Path | None, context: str | None, namespace: str | None
) -> tuple[Kube, str]:
    """A command's connection and namespace, chosen by kubectl's rules (`kubeconfig.py`)."""
    target = resolve_target(kubeconfig=kubeconfig, context=context, namespace=namespace)
    configuration = k8s.Configuration()
    if target.files:
        files = ", ".join(str(path) for path in target.files)
        source = f"kubeconfig {files} ({target.origin}, context {target.context!r})"
        await _load_kubeconfig(target.files, source, configuration, context=target.context)
    else:
        source = "the in-cluster service account"
        _load_incluster(configuration)
    return _kube_for(configuration, source), target.namespace


def _kube_for(configuration: Any, source: str) -> Kube:
    # Requests only: streams hold their connections for their lifetime, on a pool of their own.
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    api_client = k8s.ApiClient(configuration=configuration)
    # The same TLS settings as the requests' pool, without its limit (CONNECTION_POOL_SIZE).
    stream_client = k8s_rest.RESTClientObject(configuration, maxsize=0)
    proxy, proxy_auth = _proxy_for(str(configuration.host), configuration.proxy)
    return Kube(
        api_client=api_client,
        session=_session_on(api_client.rest_client.pool_manager),
        stream_session=_session_on(stream_client.pool_manager),
        stream_client=stream_client,
        proxy=proxy,
        proxy_auth=proxy_auth,
        source=source,
    )


def _session_on(library_session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=library_session.connector,
        connector_owner=False,
        trust_env=False,
        read_bufsize=2**21,  # as the library's: one watch line holds a whole object
    )


async def _load_kubeconfig(
    files: Sequence[Path], source: str, configuration: Any, *, context: str | None = None
) -> None:
    """Load the merged `files` (one for the processes, kubectl's list for the commands).

    The one place a kubeconfig is read, so that the processes and the commands say the same
    thing about the same broken file. Messages never quote the file's content: a kubeconfig
    holds credentials.
    """
    for path in files:
        _check_readable(path, source)
    try:
        await k8s_config.load_kube_config(
            config_file=os.pathsep.join(str(path) for path in files),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KubeconfigError(f"cannot load {source}: not valid YAML{where}") from None
    except yaml.YAMLError:
        raise KubeconfigError(f"cannot load {source}: not valid YAML") from None
    except k8s_config.ConfigException as error:
        raise KubeconfigError(f"cannot load {source}: {_one_line(error)}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        # A document of the wrong shape (`clusters: 5`) breaks the library's
        # parser in any of these ways.
        raise KubeconfigError(
            f"cannot load {source}: not a kubeconfig ({type(error).__name__})"
        ) from None


def _check_readable(path: Path, source: str) -> None:
    # The library skips a file that does not exist and then complains about a
    # missing current-context; say what is really wrong.
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise KubeconfigError(f"cannot load {source}: no such file") from None
    except OSError as error:
        raise KubeconfigError(f"cannot load {source}: {error.strerror}") from None


def _load_incluster(configuration: Any) -> None:
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException as error:
        if not os.environ.get("KUBERNETES_SERVICE_HOST"):
            raise KubeconfigError(
                "no kubeconfig: pass --kubeconfig or set $KUBECONFIG "
                "(not in a cluster: $KUBERNETES_SERVICE_HOST is not set)"
            ) from None
        raise KubeconfigError(
            f"cannot use the in-cluster service account: {_one_line(error)}"
        ) from None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:256]


def _unreachable_reason(error: BaseException) -> str | None:
    """Why no request reached the server at all, or None if one may have.

    Only connection-level failures: a timeout or a reset mid-answer may
    come from a server that is there, and stays a plain `Retryable`.
    """
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate not trusted ({_one_line(error.certificate_error)})"
    if isinstance(error, aiohttp.ClientConnectorSSLError):
        return f"TLS handshake failed ({_one_line(error)})"
    if isinstance(error, aiohttp.ClientConnectorError):
        code = error.os_error.errno
        if isinstance(error.os_error, socket.gaierror):
            return f"unknown host ({error.os_error.strerror})"
        if code:
            return os.strerror(code).lower()
        return _one_line(error.os_error) or "connection failed"
    return None


def _proxy_for(host: str, configured: str | None) -> tuple[str | None, aiohttp.BasicAuth | None]:
    """The proxy to the API server: the kubeconfig's, else the environment's (once)."""
    if configured:
        return configured, None
    try:
        proxy, auth = get_env_proxy_for_url(URL(host))
    except LookupError:
        return None, None
    return str(proxy), auth
