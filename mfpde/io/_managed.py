"""One HDF5 file held for writing, from its lock to its close: the life of a
:class:`~mfpde.io.RunWriter`'s file, apart from what is written into it."""

from __future__ import annotations

import contextlib
import errno
import os
import re

import h5py

from .._filelock import FileError, PathLock
from ._format import STATUSES, WriteError, _attr_str, _n_finished, _short
from .reader import load

#: Room kept free beyond a snapshot's own bytes before it is written (HDF5 metadata, the
#: closing status attribute): a snapshot that might not fit is not started.
_ROOM_MARGIN = 256 * 1024


@contextlib.contextmanager
def _suppress_h5_errors():
    try:
        yield
    except Exception:  # closing a file whose writes failed: HDF5 reports them again
        pass


def _fsize_limit() -> int | None:
    """The soft RLIMIT_FSIZE in bytes (``ulimit -f``), or None when unlimited."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY or soft < 0 else int(soft)


class _ManagedFile:
    """An HDF5 file open for writing under the exclusive lock of its path.

    A new file is built as a hidden temporary beside ``path`` and published (renamed onto
    ``path``) later; :meth:`_discard` drops it and releases the lock instead.  A write that
    fails closes the file and raises one :class:`~mfpde.io.WriteError` (:meth:`_writing`,
    :meth:`_fail`); :meth:`_check_room` refuses a snapshot that might not fit.  Closing
    turns a status still ``"running"`` into ``"interrupted"``.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._file = None
        self._tmp = None  # a new file is built here and renamed onto path when published
        self._lock = PathLock(self.path).acquire()  # before anything is read, truncated or created

    # -- opening

    def _create_beside(self):
        """Open a new file as a hidden temporary beside ``path``; ``path`` itself is replaced
        (by a rename) only when the first snapshot is written or the writer is closed without
        an error, so a failed or interrupted start leaves an existing file as it was."""
        directory, name = os.path.split(os.path.abspath(self.path))
        self._tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        self._file = h5py.File(self._tmp, "w")

    def _publish(self):
        if self._tmp is not None:
            os.replace(self._tmp, self.path)
            self._tmp = None

    def _discard(self):
        """Close without publishing: a temporary file is removed, the lock released."""
        f, self._file = self._file, None
        try:
            if f is not None:
                with _suppress_h5_errors():
                    f.close()
        finally:
            if self._tmp is not None:
                try:
                    os.unlink(self._tmp)
                except OSError:
                    pass
                self._tmp = None
            self._lock.release()

    # -- context manager

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self._tmp is not None:
            self._discard()  # a failed start: the target path is left as it was
        else:
            self.close()
        return False

    def close(self) -> None:
        """Close the file; a status still ``"running"`` becomes ``"interrupted"``.

        A new file (mode ``"w"``) that has not been published yet is renamed onto ``path`` now.
        """
        f = self._file
        if f is None:
            return
        try:
            if f.id.valid and _attr_str(f.attrs.get("status")) == "running":
                f.attrs["status"] = "interrupted"
            f.close()
            self._file = None
            self._publish()
        except (OSError, RuntimeError) as exc:
            self._fail(exc, "closing")
        finally:
            if self._file is not None or self._tmp is not None:
                self._discard()
            self._lock.release()

    def _fail(self, exc, doing: str):
        """A write failed: close what can be closed, keep the finished snapshots, say so in one line.

        libhdf5 cannot close a file whose writes fail (its objects stay open and crash the
        interpreter at exit), so the file's descriptor is first pointed at /dev/null: the
        close then succeeds and writes nothing more into the file.
        """
        published = self._tmp is None
        f = self._file
        if f is not None:
            try:
                fd = f.id.get_vfd_handle()
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
            except Exception:
                pass
        self._discard()
        where = self.path if published else f"{self.path} (not created)"
        kept = ""
        if published:
            try:
                n = load(self.path).n_snapshots
                kept = f"; the file keeps its {n} finished snapshots (continue with --resume once there is room)"
            except (FileError, OSError):
                kept = "; the file could not be closed cleanly"
        err = getattr(exc, "errno", None)
        if not isinstance(err, int):
            found = re.search(r"errno = (\d+)", str(exc))
            err = int(found.group(1)) if found else None
        reason = os.strerror(err) if isinstance(err, int) else _short(exc)
        raise WriteError(err, f"{where}: {doing} failed: {reason}{kept}") from None

    def _check_room(self, nbytes: int):
        """Refuse a snapshot that might not fit (free disk space, RLIMIT_FSIZE) before writing it."""
        need = nbytes + _ROOM_MARGIN
        fd = self.file.id.get_vfd_handle()
        size = os.fstat(fd).st_size
        limit = _fsize_limit()
        free = None
        try:
            st = os.fstatvfs(fd)
            free = st.f_bavail * st.f_frsize
        except OSError:
            pass
        if limit is not None and size + need > limit:
            reason = f"the file-size limit ({limit} bytes, ulimit -f) would be exceeded"
        elif free is not None and free < need:
            reason = f"not enough free disk space ({free} bytes free, about {need} needed)"
        else:
            return
        T = self.n_snapshots
        if self._tmp is not None:
            self._discard()
        else:
            self.close()
        raise WriteError(errno.EFBIG if limit is not None and size + need > limit else errno.ENOSPC,
                         f"{self.path}: snapshot {T + 1} not written: {reason}; the file keeps its {T} finished "
                         f"snapshots (continue with --resume once there is room)")

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    @property
    def file(self) -> h5py.File:
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        return self._file

    # -- status

    @property
    def status(self) -> str:
        return _attr_str(self.file.attrs["status"])

    def set_status(self, status: str) -> None:
        """Set the root ``status`` attribute (running | complete | interrupted) and flush."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        try:
            self.file.attrs["status"] = status
            self.file.flush()
        except (OSError, RuntimeError) as exc:
            self._fail(exc, f"setting the status to {status!r}")

    @property
    def is_open(self) -> bool:
        return self._file is not None

    @contextlib.contextmanager
    def _writing(self, doing: str):
        """Turn an HDF5 write error (ENOSPC, EFBIG, EIO) into a clean close and one WriteError."""
        try:
            yield
        except (OSError, RuntimeError) as exc:
            self._fail(exc, doing)

    @property
    def n_snapshots(self) -> int:
        """Finished snapshots (``len(/time)``)."""
        return _n_finished(self.file)
