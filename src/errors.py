"""The errors hypertune raises on purpose, and what the command line does with each: a
HypertuneError is the user's to fix (exit 2, one paragraph), anything else is a bug (exit 1,
its traceback saved: src.commands.save_traceback)."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class HypertuneError(Exception):
    """Something the user can fix (data, flags, a missing experiment); the message says what
    and how. The command line prints it as one paragraph and exits with code 2."""


class Interrupted(Exception):
    """A run stopped before it finished (Ctrl-C); the message says how to continue it. The
    command line prints it and exits with code 130."""


class AnalysisError(HypertuneError):
    """Input the analysis cannot use; the message says what to do instead."""


class DiskFull(HypertuneError):
    """A write failed for want of space; the message names what, where, and the free space."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
LOW_SPACE = 64 * 2**20  # bytes: below this, an unexpected error is likely a full disk's doing


def free_bytes(path: Path) -> int:
    """Free space on the disk that holds `path` (or its nearest existing parent)."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    return shutil.disk_usage(existing).free


def disk_full(path: Path, what: str) -> DiskFull:
    return DiskFull(
        f"The disk is full: writing {what} to {path} failed, {free_bytes(path) / 2**20:.0f} MiB "
        f"free on its disk. What was finished is kept: free some space (older experiments in "
        f"logs/ray_results, the image cache in ~/.cache/hypertune), then continue."
    )


@contextmanager
def space_for(path: Path, what: str) -> Iterator[None]:
    """Turns a full disk (or quota) while writing `what` to `path` into DiskFull."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL:
            raise disk_full(path, what) from None
        raise
