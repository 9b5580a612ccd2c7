"""Files and directories only their owner can read, from the first byte.

Invariant: every file the local system writes that can hold a secret (a
token, a registry config with the webhook's token in a header, a
kubeconfig, a private key, a log of a process that may print one) is
created with mode 0600, and every directory holding such files with mode
0700. The mode is set when the file is created (`os.open` with the mode),
not after the content is written, so there is no moment at which another
user of the machine can read it; and a file or directory that already
exists (an older `.dev/`) is narrowed too.

Failure prevented: the webhook token readable by every user of a shared
machine, in the registry's config or in its log (distribution logs its
notification endpoints' headers at level info), which lets anyone who can
reach the webhook move ImageStream tags.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (created, with its parents, if missing)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path.chmod(DIR_MODE)
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Replace `path`'s content with `data`; the file is 0600 before the first byte lands."""
    content = data.encode() if isinstance(data, str) else data
    with _open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) as file:
        file.write(content)
    return path


def open_private_append(path: Path) -> BinaryIO:
    """`path` opened for appending (a log), 0600 whether it is new or not."""
    return _open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)


def _open(path: Path, flags: int) -> BinaryIO:
    descriptor = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)  # an existing file keeps its mode on open
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "ab" if flags & os.O_APPEND else "wb")
