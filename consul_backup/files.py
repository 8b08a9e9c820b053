"""Local files: a downloaded snapshot, written where nobody can redirect or read it; stack outputs.

A snapshot holds the cluster's ACL tokens in clear. So the download goes into
a file that only its owner can read (0600), created under a random name in the
target's directory with ``O_CREAT|O_EXCL`` (``tempfile.mkstemp``): a symlink or
file planted there makes creation fail instead of redirecting the write. It
takes the target's name only once verified, and is removed on any failure.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from components.outputs import ClusterOutputs, OutputsError, read_stack_outputs

from .errors import LocalFileError, UsageError

# Like `consul snapshot save`: an unverified file never has the real name.
PARTIAL_SUFFIX = ".unverified"
# link(2) refused by a filesystem without hard links.
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS})


def check_target(target: Path, replace_existing: bool) -> None:
    """Refuse at once what the download could only refuse at its end."""
    if target.is_dir():
        raise UsageError(f"{target} is a directory: give -o a file name")
    if os.path.lexists(target) and not replace_existing:
        raise UsageError(f"{target} exists: pass --force to replace it")


@contextmanager
def written_when_whole(target: Path, replace_existing: bool) -> Iterator[Callable[[bytes], None]]:
    """A writer into a private new file beside ``target``, named ``target`` when the block ends.

    An exception in the block (a defective snapshot, Ctrl-C) removes the file
    and leaves ``target`` as it was; ``replace_existing`` (``--force``) lets it
    replace a file already there, never before the block has ended.
    """
    check_target(target, replace_existing)
    try:
        descriptor, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=PARTIAL_SUFFIX, dir=target.parent
        )
    except OSError as exc:
        raise LocalFileError("write", target, exc) from exc
    partial = Path(name)
    published = False
    try:
        with os.fdopen(descriptor, "wb") as out:

            def write(data: bytes) -> None:
                try:
                    out.write(data)
                except OSError as exc:
                    raise LocalFileError("write", target, exc) from exc

            yield write
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise LocalFileError("write", target, exc) from exc
        _publish(partial, target, replace_existing)
        published = True
    finally:
        if not published:
            partial.unlink(missing_ok=True)


def _publish(partial: Path, target: Path, replace_existing: bool) -> None:
    """Give the finished file ``target``'s name: replacing it only when asked to."""
    try:
        if replace_existing:
            os.replace(partial, target)  # renames over a link at target, never through it
        else:
            _link_without_replacing(partial, target)
    except FileExistsError as exc:
        raise UsageError(f"{target} appeared meanwhile: pass --force to replace it") from exc
    except OSError as exc:
        raise LocalFileError("write", target, exc) from exc
    with suppress(OSError):  # the new name on disk too: a directory fsync, where there is one
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _link_without_replacing(partial: Path, target: Path) -> None:
    """link(2) fails when ``target`` exists, where a rename would silently replace it."""
    try:
        os.link(partial, target)
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from exc
        os.replace(partial, target)
        return
    partial.unlink()


def read_outputs(path: Path, stdin: TextIO) -> dict[str, ClusterOutputs]:
    """``pulumi stack output clusters --json`` from a file (``-``: standard input), by cluster."""
    if str(path) == "-":
        return read_stack_outputs(stdin.read(), source="standard input")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise OutputsError(f"{path} is not JSON (not UTF-8 text)") from exc
    except OSError as exc:
        raise LocalFileError("read the stack outputs", path, exc) from exc
    try:
        return read_stack_outputs(text, source=str(path))
    except OutputsError as exc:
        if str(path) in str(exc):
            raise
        raise OutputsError(f"{path}: {exc}") from exc  # which file, when it does not say


def outputs_of(outputs: dict[str, ClusterOutputs], cluster: str, source: Path) -> ClusterOutputs:
    """One cluster's outputs; a usage error listing the clusters there are."""
    if cluster not in outputs:
        raise UsageError(
            f"no cluster {cluster!r} in the stack outputs {source} "
            f"(it has: {', '.join(sorted(outputs))})"
        )
    return outputs[cluster]
