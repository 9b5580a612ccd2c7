"""What a command prints when it cannot do its job: one line, like kubectl and oc.

Invariant: every failure a user can cause or fix (a missing or broken
kubeconfig, an API server that does not answer, an address already in use,
a receiver config that does not load, a part of `imagestream dev` that does
not start) ends the command with exit code 1 and exactly one line on stderr,
`error: <what is wrong>`, naming the flag or file that fixes it. Failures
this prevents: a forty-line Python traceback that buries the one fact that
matters, and an exit code that says nothing.

Anything else is a bug and keeps its traceback: hiding it would hide where.
"""

from __future__ import annotations

from imagestream.health import ListenError
from imagestream.kube.errors import KubeconfigError, KubeError, Unreachable
from webhook.config import ConfigError

LISTEN_FLAGS = {"webhook": "--webhook-addr", "health": "--health-addr", "metrics": "--metrics-addr"}


class CommandError(Exception):
    """A command's own failure whose message is already the one line to print."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def user_message(error: BaseException, *, listen_flags: dict[str, str] | None = None) -> str | None:
    """The line to print for `error`, or None if it is a bug (keep the traceback).

    `listen_flags` maps a server name to the flag that sets its address
    (the process commands' by default; `dev` has its own).
    """
    if isinstance(error, Unreachable):
        return one_line(
            f"cannot reach the API server {error.server}: {error.reason}; is it running, "
            f"and is it the server named in {error.source}?"
        )
    if isinstance(error, KubeconfigError | CommandError):
        return one_line(str(error))
    if isinstance(error, KubeError):
        return one_line(f"the API server answered: {error}")
    if isinstance(error, ListenError):
        flag = (LISTEN_FLAGS if listen_flags is None else listen_flags).get(error.server)
        return one_line(str(error) + (f" (set {flag})" if flag else ""))
    if isinstance(error, ConfigError):
        # Its message names the file and the field, or the flag to give.
        return one_line(str(error))
    return None
