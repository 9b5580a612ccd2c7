"""What a ServiceAccount's integrated-registry pull secret should be. Pure, no I/O.

As OpenShift's internal-registry pull secret controllers (openshift-controller-manager,
`pkg/internalregistry/controllers`) keep them, in our words
(docs/openshift-behaviours.md#behaviour-34): every ServiceAccount has one Secret of its
own, named in its `openshift.io/internal-registry-pull-secret-ref` annotation and listed
in its `imagePullSecrets`, owned by it (an ownerReference, so the garbage collector
removes it with the account), holding a docker config with one entry per integrated
registry host whose password is a bound token of the account (username `<token>`, as
OpenShift writes it; the registry reads only the password). The token is replaced when
less than 40 % of its lifetime is left, as OpenShift does, so a pod pulling at any time
holds one valid for a while yet; and at once when the hosts change.

Where we differ: the Secret is `kubernetes.io/dockerconfigjson` (OpenShift writes the
older `kubernetes.io/dockercfg`); its name is derived from the account's name and UID
instead of random (so a lost write never leaves a second Secret behind, and a recreated
account never takes over the Secret the garbage collector is about to delete); it
carries our label, so the controller caches only the Secrets it made.

Invariants: `imagePullSecrets` keeps every entry someone else put there, in order; ours
is appended once and never duplicated. A token is only ever read for its times (the
JWT's `nbf`/`iat` and `exp`, signature not checked: the API server that issued it is the
judge); this module never returns it in anything that is logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from imagestream.objects import (
    Obj,
    annotations_of,
    labels_of,
    mapping,
    metadata_of,
    name_of,
    string,
    uid_of,
)

SECRET_REF_ANNOTATION: Final = "openshift.io/internal-registry-pull-secret-ref"  # noqa: S105 - a name, not a secret
"""On the ServiceAccount: the name of its managed pull secret (OpenShift's annotation)."""
SERVICE_ACCOUNT_ANNOTATION: Final = "openshift.io/internal-registry-auth-token.service-account"
"""On the Secret: whose token it holds (OpenShift's annotation)."""
BINDING_ANNOTATION: Final = "openshift.io/internal-registry-auth-token.binding"
BOUND: Final = "bound"
MANAGED_LABEL: Final = "imagestream.dev/internal-registry-pull-secret"
"""Ours, value `true`: what the controller's Secret cache selects."""
MANAGED_SELECTOR: Final = f"{MANAGED_LABEL}=true"
SECRET_TYPE: Final = "kubernetes.io/dockerconfigjson"  # noqa: S105 - a name, not a secret
SECRET_KEY: Final = ".dockerconfigjson"  # noqa: S105 - a name, not a secret
USERNAME: Final = "<token>"
"""What OpenShift writes as the user name of its bound-token pull secrets."""
REFRESH_REMAINING: Final = 0.4
"""Replace the token when less than this share of its lifetime is left (OpenShift's)."""
MANAGED_ACCOUNTS: Final = ("builder", "deployer")
"""The accounts OpenShift creates in every namespace besides `default` (kube's own)."""
NAME_MAX: Final = 63
_SUFFIX: Final = "-dockercfg-"


def secret_name(service_account: str, uid: str) -> str:
    """`<account>-dockercfg-<5 of a hash of its UID>`, at most 63 characters."""
    tag = base64.b32encode(hashlib.sha256(uid.encode()).digest()).decode().lower()[:5]
    return f"{service_account[: NAME_MAX - len(_SUFFIX) - len(tag)]}{_SUFFIX}{tag}"


@dataclass(frozen=True)
class TokenTimes:
    """A JWT's validity, seconds since the epoch."""

    not_before: float
    expires: float

    @property
    def refresh_at(self) -> float:
        return self.expires - REFRESH_REMAINING * max(self.expires - self.not_before, 0.0)


def token_times(token: str) -> TokenTimes | None:
    """The validity a JWT states (`nbf`, else `iat`; `exp`), or None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    start, expires = _number(claims.get("nbf", claims.get("iat"))), _number(claims.get("exp"))
    if start is None or expires is None or expires <= start:
        return None
    return TokenTimes(not_before=start, expires=expires)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def docker_config(token: str, hosts: Sequence[str]) -> bytes:
    """The `.dockerconfigjson` for `hosts`, each with `<token>:<token>` as its auth."""
    auth = base64.b64encode(f"{USERNAME}:{token}".encode()).decode()
    document = {"auths": {host: {"auth": auth} for host in sorted(set(hosts))}}
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class HeldAuth:
    """What a Secret holds now: the hosts and the one token they share (empty if not so)."""

    hosts: frozenset[str]
    token: str

    def __repr__(self) -> str:  # never the token
        return f"HeldAuth(hosts={sorted(self.hosts)})"


def held_auth(secret: Mapping[str, Any] | None) -> HeldAuth:
    """The hosts and token a managed Secret holds; an unreadable one holds nothing."""
    data = mapping(mapping(secret).get("data"))
    try:
        document = json.loads(base64.b64decode(string(data.get(SECRET_KEY)), validate=True))
    except (binascii.Error, ValueError):
        return HeldAuth(frozenset(), "")
    auths = mapping(mapping(document).get("auths"))
    tokens = set()
    for entry in auths.values():
        try:
            decoded = base64.b64decode(string(mapping(entry).get("auth")), validate=True).decode()
        except (binascii.Error, ValueError):
            return HeldAuth(frozenset(auths), "")
        tokens.add(decoded.partition(":")[2])
    token = tokens.pop() if len(tokens) == 1 else ""
    return HeldAuth(frozenset(auths), token)


def owned_by(secret: Mapping[str, Any], service_account: Mapping[str, Any]) -> bool:
    """The Secret names `service_account` (this one, by UID) as an owner."""
    uid = uid_of(service_account)
    return any(
        mapping(ref).get("kind") == "ServiceAccount"
        and mapping(ref).get("uid") == uid
        and mapping(ref).get("name") == name_of(service_account)
        for ref in metadata_of(secret).get("ownerReferences") or []
    )


def is_managed(secret: Mapping[str, Any]) -> bool:
    return labels_of(secret).get(MANAGED_LABEL) == "true"


def secret_metadata(service_account: Mapping[str, Any], name: str) -> Obj:
    """Our Secret's name, label, annotations and owner, for `service_account`."""
    account = name_of(service_account)
    return {
        "name": name,
        "namespace": string(metadata_of(service_account).get("namespace")),
        "labels": {MANAGED_LABEL: "true"},
        "annotations": {SERVICE_ACCOUNT_ANNOTATION: account, BINDING_ANNOTATION: BOUND},
        "ownerReferences": [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "name": account,
                "uid": uid_of(service_account),
            }
        ],
    }


def new_secret(service_account: Mapping[str, Any], name: str) -> Obj:
    """Our Secret before its first token (the token is bound to the Secret's UID)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": secret_metadata(service_account, name),
        "type": SECRET_TYPE,
        "data": {SECRET_KEY: base64.b64encode(b'{"auths":{}}').decode()},
    }


def image_pull_secrets(service_account: Mapping[str, Any], name: str) -> list[Obj] | None:
    """The account's `imagePullSecrets` with `name` in it once, or None if already so.

    Every other entry stays where it is (a hand-listed Secret is never removed); a second
    entry of `name` is dropped."""
    current = [dict(mapping(e)) for e in service_account.get("imagePullSecrets") or []]
    ours = [i for i, entry in enumerate(current) if entry.get("name") == name]
    if len(ours) == 1:
        return None
    if not ours:
        return [*current, {"name": name}]
    return [e for i, e in enumerate(current) if e.get("name") != name or i == ours[0]]


@dataclass(frozen=True)
class AccountPlan:
    """What to write for one ServiceAccount, and when to look again."""

    secret_name: str
    create_secret: bool = False
    """No Secret of ours by that name: create it (empty) before its token."""
    fix_metadata: bool = False
    """Ours, but its owner, label or annotations are not what they must be."""
    new_token: bool = False
    """Request a token and write the Secret's data."""
    rewrite_hosts: bool = False
    """The hosts changed and the token is still good: rewrite the data with it."""
    account_patch: Obj | None = None
    """A merge patch for the ServiceAccount (its annotation, `imagePullSecrets`)."""
    requeue_after_s: float | None = None
    reason: str = ""
    """Why the data is written (for the log): `created`, `hosts`, `expiring`, `unreadable`."""


def plan_account(
    service_account: Mapping[str, Any],
    secret: Mapping[str, Any] | None,
    *,
    hosts: Sequence[str],
    now: float,
) -> AccountPlan:
    """What `service_account` needs, given our cached Secret by its name (or None)."""
    name = secret_name(name_of(service_account), uid_of(service_account))
    patch: Obj = {}
    if annotations_of(service_account).get(SECRET_REF_ANNOTATION) != name:
        patch["metadata"] = {"annotations": {SECRET_REF_ANNOTATION: name}}
    pull_secrets = image_pull_secrets(service_account, name)
    if pull_secrets is not None:
        patch["imagePullSecrets"] = pull_secrets
    if patch:
        # Conditional on what was read: the list is replaced whole, so an entry someone
        # added since must not be lost (a 409 re-plans from the fresher cache).
        version = string(metadata_of(service_account).get("resourceVersion"))
        patch.setdefault("metadata", {})["resourceVersion"] = version
    account_patch = patch or None
    if secret is None:
        return AccountPlan(
            secret_name=name,
            create_secret=True,
            new_token=True,
            account_patch=account_patch,
            reason="created",
        )
    wanted = secret_metadata(service_account, name)
    fix = (
        not owned_by(secret, service_account)
        or not is_managed(secret)
        or any(annotations_of(secret).get(k) != v for k, v in wanted["annotations"].items())
    )
    held = held_auth(secret)
    times = token_times(held.token) if held.token else None
    if times is None or mapping(secret).get("type") != SECRET_TYPE:
        return AccountPlan(
            secret_name=name,
            fix_metadata=fix,
            new_token=True,
            account_patch=account_patch,
            reason="unreadable",
        )
    if now >= times.refresh_at:
        return AccountPlan(
            secret_name=name,
            fix_metadata=fix,
            new_token=True,
            account_patch=account_patch,
            reason="expiring",
        )
    return AccountPlan(
        secret_name=name,
        fix_metadata=fix,
        rewrite_hosts=held.hosts != frozenset(hosts),
        account_patch=account_patch,
        requeue_after_s=times.refresh_at - now,
        reason="hosts" if held.hosts != frozenset(hosts) else "",
    )


def after_token(issued_not_before: float, expires_at: float, now: float) -> float:
    """Seconds until a token issued at `issued_not_before` and expiring at `expires_at`
    is due for replacement (at least 1 s: a clock step never makes a hot loop)."""
    return max(TokenTimes(issued_not_before, expires_at).refresh_at - now, 1.0)


def listed_pull_secret(service_account: Mapping[str, Any] | None) -> str:
    """The account's managed pull secret, once it is in its `imagePullSecrets` (else "")."""
    if service_account is None:
        return ""
    name = string(annotations_of(service_account).get(SECRET_REF_ANNOTATION))
    listed = {mapping(e).get("name") for e in service_account.get("imagePullSecrets") or []}
    return name if name and name in listed else ""


def missing_accounts(namespace_accounts: Sequence[str]) -> list[str]:
    """The OpenShift accounts (`builder`, `deployer`) a namespace does not have yet."""
    present = set(namespace_accounts)
    return [name for name in MANAGED_ACCOUNTS if name not in present]
