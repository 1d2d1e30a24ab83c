"""One writer per file: an exclusive lock on a sidecar ``<path>.lock`` (private helper).

``with exclusive(path):`` (or ``lock = PathLock(path).acquire() ... lock.release()``)
holds an ``fcntl.flock`` exclusive lock on ``<path>.lock`` for as long as the owner writes
``path``.  A second owner in any process is refused at once with :class:`FileBusyError`
(one line naming the file and the holder's pid); nothing is waited for and nothing is
touched.  The kernel drops the lock when its holder dies (even by SIGKILL), so a stale
sidecar never blocks anyone: the next owner simply takes it.  On release the sidecar is
removed (unlinked while still locked; an acquirer that locked a sidecar which was
unlinked meanwhile notices the changed inode and tries again).

The lock is on a sidecar, not on the HDF5 file itself, because libhdf5 takes its own
``flock`` on the files it opens (a second lock on the same file from this process would
conflict with it), and because the file may be replaced by a rename while the lock is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time

__all__ = ["FileError", "FileBusyError", "PathLock", "exclusive", "lock_path", "is_locked"]

SUFFIX = ".lock"


class FileError(ValueError):
    """A file mfpde cannot use: not an mfpde file, damaged, or busy (one line naming it).

    Re-exported as ``mfpde.io.FileError``."""


class FileBusyError(FileError):
    """Another process holds the write lock of this file (``mfpde.io.FileBusyError``)."""


def lock_path(path) -> str:
    """The sidecar lock file of ``path``."""
    return os.fspath(path) + SUFFIX


class PathLock:
    """An exclusive, non-blocking, process-wide lock on ``path`` (see the module docstring)."""

    def __init__(self, path, what: str = "written"):
        self.path = os.fspath(path)
        self.lock_path = lock_path(self.path)
        self.what = what
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "PathLock":
        if self._fd is not None:
            return self
        for attempt in range(100):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if attempt < 5:  # perhaps only a reader's momentary probe (is_locked): look again
                    os.close(fd)
                    time.sleep(0.01)
                    continue
                holder, what = _read_holder(fd)
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                raise FileBusyError(f"{self.path} is being {what or 'written'} by another process{who}; "
                                    f"wait for it to end or choose another output path") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed this sidecar while we waited: take the new one
                os.close(fd)
                continue
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {self.what}\n".encode())
            except OSError:  # a full disk must not stop a lock; the pid is only informative
                pass
            self._fd = fd
            return self
        raise FileBusyError(f"{self.path}: could not take its lock file {self.lock_path}")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                if os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self.lock_path)
        finally:
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False

    def __del__(self):  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.release()


def exclusive(path, what: str = "written") -> PathLock:
    """``with exclusive(path):`` hold ``path``'s write lock (:class:`FileBusyError` if taken)."""
    return PathLock(path, what)


def is_locked(path) -> bool:
    """Whether some process holds ``path``'s lock right now (a probe; takes nothing it keeps)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


def _read_holder(fd):
    """(pid, what) written by the holder into the sidecar, or (None, None)."""
    try:
        pid, _, what = os.pread(fd, 128, 0).decode("ascii", "replace").strip().partition(" ")
        return (int(pid), what.strip() or None) if pid.isdigit() else (None, None)
    except (OSError, ValueError):
        return None, None
