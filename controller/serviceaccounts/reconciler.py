"""The pull-secret reconciler: plan from the caches, then write, each write guarded.

Queue keys are `namespace/name` of ServiceAccounts. A change to an account, to a Secret
we made for one (it names its account in an annotation), and a change of the integrated
registry's host (the cluster image configuration, else `--integrated-registry`) enqueue
accounts; the reconcile plans with `plan.plan_account` and performs it in order:

    1. our Secret, if missing: created empty (labelled, annotated, owned by the account);
    2. a token from the TokenRequest API, bound to that Secret and valid for
       `token_expiry_s`, written into the Secret's data with its resourceVersion
       (or only the hosts rewritten, when they changed and the token is still good);
    3. the account's annotation and `imagePullSecrets`, a merge patch carrying the
       resourceVersion it was planned from;
    4. a requeue for when the token is due for replacement.

A missing `builder` or `deployer` account of a namespace where we see any account is
created, as OpenShift's controllers create them (behaviour 34).

Invariants:
- A token is never logged, and never put in an error message: logs name the account,
  the Secret, the hosts and when the next token is due.
- Every write is conditional on what was read; a 409 re-plans shortly from fresher
  caches. A deleted account's Secret is left to the garbage collector (ownerReference).
- A refusal (403, 422) gives the account up until it changes (or the resync), with the
  API server's reason; it is not retried in a loop.
- No host known: nothing is written (a Secret with no registry would be listed for
  nothing); the host's arrival requeues every account.

Failures this prevents: a pod that cannot pull from the integrated registry because its
account's token expired an hour ago (refreshed at 60 % of its lifetime), a hand-listed
pull secret lost to our write of `imagePullSecrets`, and a pull secret left behind for a
deleted account.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from controller.loop.outcomes import GiveUp, Requeue
from controller.loop.queue import WorkQueue
from controller.serviceaccounts.plan import (
    SECRET_KEY,
    SECRET_TYPE,
    SERVICE_ACCOUNT_ANNOTATION,
    AccountPlan,
    after_token,
    docker_config,
    held_auth,
    is_managed,
    listed_pull_secret,
    missing_accounts,
    new_secret,
    owned_by,
    plan_account,
    secret_metadata,
    secret_name,
)
from imagestream.kube.client import Kube
from imagestream.kube.errors import Conflict, NotFound, PatchTestFailed, Terminal
from imagestream.kube.informer import InformerSet
from imagestream.kube.resources import SECRETS, SERVICEACCOUNTS, split_key
from imagestream.kube.tokens import BoundObject, request_token
from imagestream.objects import Obj, annotations_of, name_of, namespace_of, uid_of

log = structlog.get_logger(__name__)

STALE_RETRY_S = 0.2
DEFAULT_TOKEN_EXPIRY_S = 3600


def trim_serviceaccount(account: Obj) -> Obj:
    """Accounts are cached without their managed fields (the rest is read or patched)."""
    metadata = dict(account.get("metadata") or {})
    metadata.pop("managedFields", None)
    return {**account, "metadata": metadata}


@dataclass
class PullSecretReconciler:
    kube: Kube
    queue: WorkQueue
    accounts: InformerSet
    secrets: InformerSet
    """Only our Secrets (`plan.MANAGED_SELECTOR`)."""
    hosts: Callable[[], list[str]]
    """The integrated registry's hosts now (empty: none known)."""
    token_expiry_s: int = DEFAULT_TOKEN_EXPIRY_S
    create_accounts: bool = True
    """Create `builder` and `deployer` where missing (OpenShift's default accounts)."""
    clock: Callable[[], float] = time.time

    # --- what wakes it ----------------------------------------------------------------------

    def on_account(self, key: str, old: Obj | None, new: Obj | None) -> None:
        self.queue.add(key)
        if self.create_accounts and new is not None and old is None:
            namespace = namespace_of(new)
            for name in self._missing(namespace):
                self.queue.add(f"{namespace}/{name}")

    def on_secret(self, _key: str, old: Obj | None, new: Obj | None) -> None:
        for secret in (old, new):
            account = annotations_of(secret or {}).get(SERVICE_ACCOUNT_ANNOTATION)
            if secret is not None and account:
                self.queue.add(f"{namespace_of(secret)}/{account}")

    def on_hosts_changed(self) -> None:
        for account in self.accounts.values():
            self.queue.add(f"{namespace_of(account)}/{name_of(account)}")

    def pull_secret_of(self, namespace: str, account: str) -> str | None:
        """`namespace/account`'s listed pull secret, from the cache (for Builds' pushes);
        None while it is still to be listed (the account new, or this cache behind)."""
        return listed_pull_secret(self.accounts.get(f"{namespace}/{account}")) or None

    def _missing(self, namespace: str) -> list[str]:
        present = [name_of(a) for a in self.accounts.values() if namespace_of(a) == namespace]
        return missing_accounts(present)

    # --- the reconcile ------------------------------------------------------------------------

    async def reconcile(self, key: str) -> Requeue | None:
        namespace, name = split_key(key)
        account = self.accounts.get(key)
        if account is None:
            if self.create_accounts and name in self._missing(namespace):
                await self._create_account(namespace, name)
            return None  # a deleted account's Secret goes with it (garbage collector)
        hosts = self.hosts()
        if not hosts:
            log.debug("pull_secret_no_registry_host", key=key)
            return None
        secret = self.secrets.get(f"{namespace}/{secret_name_for(account)}")
        plan = plan_account(account, secret, hosts=hosts, now=self.clock())
        try:
            return await self._perform(key, account, secret, plan, hosts)
        except (Conflict, NotFound, PatchTestFailed):
            log.debug("pull_secret_stale", key=key)
            return Requeue(after_s=STALE_RETRY_S)
        except Terminal as error:
            # Refused (403: not granted here; 422): the same request cannot succeed until
            # something changes; the account's next change or the resync tries again.
            raise GiveUp(
                f"pull secret {plan.secret_name} for ServiceAccount {key}: {error}"
            ) from None

    async def _create_account(self, namespace: str, name: str) -> None:
        """An account OpenShift makes in every namespace; only where the namespace lives."""
        if not any(namespace_of(a) == namespace for a in self.accounts.values()):
            return  # no account at all there: the namespace is gone (or not yet made)
        body = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        try:
            created = await self.kube.create(SERVICEACCOUNTS, namespace, body)
        except Conflict:
            return  # made meanwhile; its add event wakes us
        except Terminal as error:  # e.g. the namespace is terminating
            log.info("service_account_not_created", key=f"{namespace}/{name}", error=str(error))
            return
        self.accounts.observe(created)
        log.info("service_account_created", key=f"{namespace}/{name}")

    async def _perform(
        self, key: str, account: Obj, secret: Obj | None, plan: AccountPlan, hosts: list[str]
    ) -> Requeue | None:
        namespace = namespace_of(account)
        if secret is None:  # planned as create_secret
            try:
                secret = await self.kube.create(
                    SECRETS, namespace, new_secret(account, plan.secret_name)
                )
            except Conflict:
                return await self._name_taken(key, account, plan.secret_name)
            self.secrets.observe(secret)
        requeue = plan.requeue_after_s
        if plan.new_token or plan.rewrite_hosts or plan.fix_metadata:
            secret, requeue = await self._write_secret(account, secret, plan, hosts, requeue)
        if plan.account_patch is not None:
            patched = await self.kube.patch(
                SERVICEACCOUNTS, namespace, name_of(account), plan.account_patch
            )
            self.accounts.observe(trim_serviceaccount(patched))
            log.info("pull_secret_listed", key=key, secret=plan.secret_name)
        return Requeue(after_s=requeue) if requeue is not None else None

    async def _write_secret(
        self,
        account: Obj,
        secret: Obj,
        plan: AccountPlan,
        hosts: list[str],
        requeue: float | None,
    ) -> tuple[Obj, float | None]:
        namespace = namespace_of(account)
        body = {
            **secret,
            "metadata": {**secret["metadata"], **_merged_metadata(secret, account)},
            "type": SECRET_TYPE,
        }
        if plan.new_token:
            issued_at = self.clock()
            issued = await request_token(
                self.kube,
                namespace,
                name_of(account),
                expiration_s=self.token_expiry_s,
                bound_to=BoundObject(kind="Secret", name=plan.secret_name, uid=uid_of(secret)),
            )
            body["data"] = {SECRET_KEY: _b64(docker_config(issued.token, hosts))}
            requeue = after_token(issued_at, issued.expires_at, self.clock())
        elif plan.rewrite_hosts:
            token = held_auth(secret).token
            body["data"] = {SECRET_KEY: _b64(docker_config(token, hosts))}
        written = await self.kube.replace(SECRETS, namespace, plan.secret_name, body)
        self.secrets.observe(written)
        log.info(
            "pull_secret_written",
            key=f"{namespace}/{name_of(account)}",
            secret=plan.secret_name,
            hosts=sorted(set(hosts)),
            reason=plan.reason or "metadata",
            new_token=plan.new_token,
            refresh_in_s=round(requeue, 1) if requeue is not None else None,
        )
        return written, requeue

    async def _name_taken(self, key: str, account: Obj, name: str) -> Requeue | None:
        """Our Secret's name exists but the cache has no Secret of ours by it."""
        namespace = namespace_of(account)
        try:
            found = await self.kube.get(SECRETS, namespace, name)
        except NotFound:
            return Requeue(after_s=STALE_RETRY_S)
        if is_managed(found):
            return Requeue(after_s=STALE_RETRY_S)  # ours; the cache is behind
        if owned_by(found, account):
            # Ours, its label removed (so our cache cannot see it): put the label back.
            metadata = {**found["metadata"], **_merged_metadata(found, account)}
            self.secrets.observe(
                await self.kube.replace(SECRETS, namespace, name, {**found, "metadata": metadata})
            )
            return Requeue(after_s=STALE_RETRY_S)
        raise GiveUp(
            f"Secret {namespace}/{name} exists and is not the pull secret of"
            f" ServiceAccount {key}: delete or rename it"
        )


def secret_name_for(account: Obj) -> str:
    return secret_name(name_of(account), uid_of(account))


def _merged_metadata(secret: Obj, account: Obj) -> Obj:
    """Our label, annotations and owner over what the Secret has (others' are kept)."""
    wanted = secret_metadata(account, name_of(secret))
    metadata = secret.get("metadata") or {}
    owners = [
        ref
        for ref in metadata.get("ownerReferences") or []
        if not (isinstance(ref, dict) and ref.get("kind") == "ServiceAccount")
    ]
    return {
        "labels": {**(metadata.get("labels") or {}), **wanted["labels"]},
        "annotations": {**(metadata.get("annotations") or {}), **wanted["annotations"]},
        "ownerReferences": [*owners, *wanted["ownerReferences"]],
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
