"""HDF5 files: one run per file (docs/hdf5.md).

:class:`RunWriter` writes a run snapshot by snapshot, flushing each, so a run killed
at any moment leaves a file that opens and holds every finished snapshot.
:func:`load` reads a file back into a :class:`Result`; :func:`info` summarises it.

Crash safety: a snapshot's state and diagnostics rows are written first and ``/time``
is extended last, so ``T = len(/time)`` counts finished snapshots only; the reader
trims every other time-like dataset to ``T`` (and drops a trailing ``/time`` entry
still holding its NaN fill value).

One writer per file: a writer holds the exclusive lock of ``mfpde._filelock`` (a sidecar
``<path>.lock``) from before it reads, creates or truncates anything; a new file is built
beside the target and renamed onto it at its first snapshot.  Write errors (ENOSPC, EFBIG)
close the file and raise :class:`WriteError`; readers verify a file's structure and raise
:class:`DamagedFileError` / :class:`FileError` (docs/hdf5.md, "Verification and errors").

Every dataset carries HDF5 dimension scales on every axis, so
``xarray.open_dataset(path, engine="h5netcdf", group=...)`` opens the root and each
group.  ``/state/time`` and ``/diagnostics/time`` are hard links to ``/time`` (one
dataset, three names) so that each group sees its time coordinate.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import functools
import json
import math
import os
import re
import time
from dataclasses import dataclass, field

import h5py
import numpy as np
from numpy.typing import ArrayLike

from ._cf import describe_diagnostic, describe_state
from ._filelock import FileBusyError, FileError, PathLock
from ._provenance import config_digest
from ._version import __version__ as _mfpde_version
from .model import Model

__all__ = ["RunWriter", "Result", "load", "info", "FORMAT", "FORMAT_VERSION", "STATUSES",
           "FileError", "DamagedFileError", "FileBusyError", "WriteError"]

#: The root ``format`` attribute of a run file.
FORMAT = "mfpde"
#: The root ``format`` attribute of a study index file (``mfpde.study``).
STUDY_FORMAT = "mfpde-study"
#: The layout version written (and the newest one read).
FORMAT_VERSION = 1
#: The values of a run file's ``status`` attribute.
STATUSES = ("running", "complete", "interrupted")

#: names that cannot be diagnostics (the time coordinate linked into /diagnostics)
_RESERVED = ("time",)
_COMPRESSIONS = ("gzip", "lzf", None)

#: Config matrices with more entries than this are stored as a reference to their dataset
#: (``{"dataset": "/model/Q"}``) instead of JSON text; ``load`` puts the lists back.
CONFIG_INLINE_MAX = 256

#: Room kept free beyond a snapshot's own bytes before it is written (HDF5 metadata, the
#: closing status attribute): a snapshot that might not fit is not started.
_ROOM_MARGIN = 256 * 1024


class DamagedFileError(FileError):
    """An mfpde file whose structure is inconsistent (shapes against /time and the config,
    missing datasets, non-finite or decreasing times, unreadable HDF5 metadata or data)."""


class WriteError(OSError):
    """Writing a run file failed (a full disk, a file-size limit, an I/O error), or the next
    snapshot would not fit.  The file was closed; its finished snapshots stay readable and
    ``--resume`` continues it once there is room."""




# ----------------------------------------------------------------------------- helpers


def _float_array(name: str, value, shape=None) -> np.ndarray:
    """``value`` as a C-ordered float64 array; refuse what float64 cannot hold exactly in kind."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be real numbers (float64), got an array of dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if shape is not None:
        ndim = len(shape)
        if arr.ndim != ndim or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
            want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if ndim == 1 else "") + ")"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    return arr


def _status_of(path) -> str | None:
    """The status attribute of an existing mfpde file, or None if it is not one."""
    try:
        with h5py.File(path, "r") as f:
            if _attr_str(f.attrs.get("format")) != FORMAT:
                return None
            return _attr_str(f.attrs.get("status")) or "unknown"
    except (OSError, ValueError):
        return None


def _attr_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return value


def _index_scale(group: h5py.Group, name: str, n: int) -> h5py.Dataset:
    """A dimension scale ``group/name`` holding 0..n-1 (created, or checked to have length n)."""
    if name in group:
        ds = group[name]
        if ds.shape != (n,):
            raise ValueError(f"{group.name}/{name} has length {ds.shape[0]}, got an array of length {n}")
        return ds
    ds = group.create_dataset(name, data=np.arange(n, dtype=np.int64))
    ds.make_scale(name)
    return ds


def _attach(ds: h5py.Dataset, scales) -> None:
    for axis, scale in enumerate(scales):
        ds.dims[axis].attach_scale(scale)


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_diagnostic_name(name) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or name in _RESERVED:
        raise ValueError(f"diagnostic name must be a non-empty string without '/' and not 'time', got {name!r}")
    return name


def _diagnostic_value(name: str, value) -> float:
    arr = np.asarray(value)
    if arr.shape != () or arr.dtype.kind not in "fiub":
        raise ValueError(f"diagnostic {name!r} must be a real scalar, got {value!r}")
    return float(arr)


def _short(exc) -> str:
    """An exception's message on one line, without HDF5's long error-stack details."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


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


#: Provenance attributes a writer may be given (``RunWriter(provenance=...)``), each a string.
PROVENANCE_KEYS = ("method", "integrator", "kernel", "kernel_used", "precision")


def _check_provenance(provenance) -> dict:
    out = {}
    for key, value in dict(provenance or {}).items():
        if key not in PROVENANCE_KEYS:
            raise ValueError(f"provenance keys are {', '.join(PROVENANCE_KEYS)}, got {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"provenance {key!r} must be a string, got {value!r}")
        out[key] = value
    return out


def _encode_config(config, f: h5py.File) -> str:
    """The config as JSON; a model matrix with more than CONFIG_INLINE_MAX entries that equals
    its /model dataset is stored as the reference ``{"dataset": "/model/Q"}``."""
    if isinstance(config, dict) and isinstance(config.get("model"), dict) and "model" in f:
        model = dict(config["model"])
        changed = False
        for name in ("Q", "K", "V"):
            value = model.get(name)
            if isinstance(value, list) and len(value) ** 2 > CONFIG_INLINE_MAX and name in f["model"]:
                try:
                    arr = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    continue
                stored = f["model"][name]
                if arr.shape == stored.shape and np.array_equal(arr, stored[()]):
                    model[name] = {"dataset": f"/model/{name}"}
                    changed = True
        if changed:
            config = dict(config, model=model)
    return json.dumps(config, allow_nan=False)


def _decode_config(f: h5py.File, path) -> dict:
    """The stored config dict, matrices stored by reference put back as nested lists."""
    text = _attr_str(f.attrs.get("config"))
    if text is None:
        return {}
    try:
        config = json.loads(text)
    except (TypeError, ValueError):
        raise DamagedFileError(f"{path}: its config attribute is not valid JSON") from None
    if not isinstance(config, dict):
        raise DamagedFileError(f"{path}: its config attribute is not a JSON object")
    model = config.get("model")
    if isinstance(model, dict):
        for name in ("Q", "K", "V"):
            ref = model.get(name)
            if isinstance(ref, dict) and set(ref) == {"dataset"}:
                target = ref["dataset"]
                if target != f"/model/{name}" or name not in f["model"]:
                    raise DamagedFileError(f"{path}: config model.{name} refers to {target!r}, which is missing")
                model[name] = f["model"][name][()].tolist()
    return config


def resume_conflict(path: str | os.PathLike, stored: dict, requested: dict, status: str | None = None) -> bool:
    """Check that a run stored with config ``stored`` may be continued with ``requested``.

    Identical resolved configs (``output.path`` aside) continue; the one difference allowed is
    a larger ``solver.t_end`` (an extension: returns True).  Anything else is a ``ValueError``
    naming the differing keys.
    """
    from ._provenance import differing_keys

    if not stored or not requested:  # a file written without a config (RunWriter(config={}))
        if stored == requested or not stored and not requested:
            return False
        keys = ["<the whole config>"]
    else:
        keys = differing_keys(stored, requested)
    if not keys:
        return False
    if keys == ["solver.t_end"]:
        old, new = stored["solver"]["t_end"], requested["solver"]["t_end"]
        if isinstance(old, (int, float)) and isinstance(new, (int, float)) and new > old:
            return True
        raise ValueError(f"{path} was run to solver.t_end = {old!r}; --resume can only extend it to a later "
                         f"time, got {new!r}")
    shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    raise ValueError(f"{path} was written with a different config ({shown} differ); --resume continues only "
                     f"the same config (a larger solver.t_end aside): repeat the original --set options, "
                     f"or use --force to start over")


# ----------------------------------------------------------------------------- writer


class RunWriter:
    """Write one run to an HDF5 file (a context manager).

    Parameters
    ----------
    path : str or os.PathLike
    model : Model
        Stored in ``/model``.
    config : dict or Config
        The resolved config (``Config.to_dict()``), stored as JSON in the root attribute ``config``.
    mode : {"w", "resume"}
        ``"w"`` creates the file; an existing mfpde file (or any other file) is refused
        unless ``force=True``.  ``"resume"`` reopens an unfinished run to append to it
        (its model must match; half-written snapshots are trimmed away).
    force : bool
        Overwrite an existing file in mode ``"w"``.
    compression : {"gzip", "lzf", None}
        Filter for the snapshot datasets (gzip at level 4 by default).
    provenance : dict, optional
        String attributes recording how the run was computed (keys ``PROVENANCE_KEYS``:
        method, integrator, kernel, kernel_used, precision).  ``config_sha256`` is always
        stored (for a dict config).

    Notes
    -----
    Only one writer per path at a time (:class:`FileBusyError` otherwise).  Mode ``"w"``
    builds the file as a hidden temporary beside ``path`` and renames it onto ``path`` at
    the first snapshot or on a close without an error: a start that fails leaves ``path``
    as it was.  Mode ``"resume"`` verifies the file and refuses a different config except a
    larger ``solver.t_end`` (:func:`resume_conflict`).

    On leaving the ``with`` block (or ``close()``) a status still ``"running"``
    becomes ``"interrupted"``: call ``set_status("complete")`` when the run ends.
    """

    def __init__(self, path: str | os.PathLike, *, model: Model, config: object, mode: str = "w", force: bool = False,
                 compression: str | None = "gzip", provenance: dict | None = None):
        if mode not in ("w", "resume"):
            raise ValueError(f"mode must be 'w' or 'resume', got {mode!r}")
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of gzip, lzf, None, got {compression!r}")
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mfpde Model, got {type(model).__name__}")
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        try:
            json.dumps(config, allow_nan=False)
            self._digest = config_digest(config) if isinstance(config, dict) else None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config cannot be stored as JSON: {exc}") from None
        self._provenance = _check_provenance(provenance)
        self.path = os.fspath(path)
        self.model = model
        self._wasserstein = config.get("wasserstein", {}) if isinstance(config, dict) else {}
        self.config = config
        self._compression = compression
        self._compression_opts = 4 if compression == "gzip" else None
        self._file = None
        self._tmp = None  # mode "w": the file is built here and renamed onto path when published
        self.resumed = mode == "resume"
        self.stored_provenance = {}
        self._lock = PathLock(self.path).acquire()  # before anything is read, truncated or created
        try:
            if mode == "w":
                self._check_overwrite(force)
                self._create_beside()
            else:
                self._open_resume()
        except BaseException:
            self._discard()
            raise

    # -- opening

    def _check_overwrite(self, force: bool):
        if not os.path.exists(self.path) or force:
            return
        status = _status_of(self.path)
        if status == "complete":
            raise FileExistsError(f"{self.path} holds a complete run; pass --force (force=True) to overwrite it")
        if status is not None:
            raise FileExistsError(
                f"{self.path} holds an unfinished run (status {status!r}); pass --resume to continue it "
                f"or --force (force=True) to overwrite it"
            )
        raise FileExistsError(f"{self.path} exists and is not an mfpde file; pass --force (force=True) to overwrite it")

    def _create_beside(self):
        """Build the new file as a hidden temporary beside ``path``; ``path`` itself is replaced
        (by a rename) only when the first snapshot is written or the writer is closed without
        an error, so a failed or interrupted start leaves an existing file as it was."""
        directory, name = os.path.split(os.path.abspath(self.path))
        self._tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        self._file = h5py.File(self._tmp, "w")
        self._create()

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

    def _create(self):
        f = self._file
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["mfpde_version"] = _mfpde_version
        f.attrs["created"] = _now_iso()
        f.attrs["status"] = "running"
        m = f.create_group("model")
        model = self.model
        m.attrs["beta"] = float(model.beta)
        m.attrs["normalization"] = model.normalization
        m.attrs["d"] = np.int64(model.d)
        m.attrs["zero_temperature"] = model.zero_temperature
        row, col = _index_scale(m, "row", model.d), _index_scale(m, "column", model.d)
        for name in ("Q", "K", "V"):
            ds = m.create_dataset(name, data=np.asarray(getattr(model, name), dtype=np.float64))
            _attach(ds, (row, col))
        self._write_config()
        t = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,),
                             fillvalue=np.nan)
        t.make_scale("time")
        t.attrs["long_name"] = "time"
        t.attrs["units"] = "1"
        for name in ("state", "diagnostics"):
            f.create_group(name)["time"] = t  # hard link: each group sees its time coordinate
        f.flush()

    def _write_config(self):
        """The config attribute (large matrices by reference), its digest and the provenance."""
        f = self._file
        f.attrs["config"] = _encode_config(self.config, f)
        if self._digest is not None:
            f.attrs["config_sha256"] = self._digest
        elif "config_sha256" in f.attrs:
            del f.attrs["config_sha256"]
        for key, value in self._provenance.items():
            if key == "kernel_used" and key in self.stored_provenance:
                continue  # what the earlier part of a resumed run used; the runner adds to it
            f.attrs[key] = value

    def _open_resume(self):
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file to resume")
        status = _status_of(self.path)
        if status is None:
            raise FileError(f"{self.path} is not an mfpde file; cannot resume it")
        # check everything before the file is opened for writing: a refused resume changes nothing
        with _open_mfpde(self.path) as f:
            try:
                layout = _verify(f, self.path)
                stored = _read_model(f)
                stored_config = _decode_config(f, self.path)
            except (KeyError, TypeError, RuntimeError, AttributeError, OSError) as exc:
                raise _damaged(self.path, exc) from None
            for ds in [f["time"]] + [f["state"][k] for k in ("positions", "mass") if k in f["state"]] + [
                    ds for n, ds in f["diagnostics"].items() if n not in _RESERVED]:
                if ds.chunks is None or ds.maxshape[0] is not None:
                    raise DamagedFileError(f"{self.path}: {ds.name} is not resizable; cannot resume it")
        if stored.to_dict() != self.model.to_dict():
            raise ValueError(f"{self.path} was written with a different model ({stored!r}); cannot resume it "
                             f"with {self.model!r}")
        extends = resume_conflict(self.path, stored_config, self.config, status)
        if status == "complete" and not extends:
            raise ValueError(f"{self.path} holds a complete run; nothing to resume (use --force to start over, "
                             f"or a larger solver.t_end to continue it)")
        self._file = f = h5py.File(self.path, "r+")
        self.stored_provenance = {k: _attr_str(f.attrs[k]) for k in PROVENANCE_KEYS if k in f.attrs}
        # drop a half-written snapshot: every time-like dataset back to len(/time)
        T = layout.T
        if f["time"].shape[0] != T:
            f["time"].resize((T,))
        for ds in self._time_like():
            if ds.shape[0] != T:
                ds.resize((T,) + ds.shape[1:])
        self._write_config()
        f.attrs["status"] = "running"
        f.flush()

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

    @property
    def provenance(self) -> dict:
        """The provenance attributes of the file (method, integrator, kernel, kernel_used, precision)."""
        return {k: _attr_str(self.file.attrs[k]) for k in PROVENANCE_KEYS if k in self.file.attrs}

    def set_provenance(self, key: str, value: str) -> None:
        """Record one provenance attribute (e.g. ``kernel_used`` once the run knows it) and flush."""
        value = _check_provenance({key: value})[key]
        with self._writing(f"recording {key}"):
            self.file.attrs[key] = value
            self.file.flush()

    # -- static data

    def write_weights(self, weights: ArrayLike) -> None:
        """``/state/weights`` (N,): the particle masses."""
        w = _float_array("weights", weights, (None,))
        state = self.file["state"]
        with self._writing("writing /state/weights"):
            particle = _index_scale(state, "particle", w.shape[0])
            self._replace(state, "weights", w, (particle,))
            self.file.flush()

    def write_grid(self, centers: ArrayLike, areas: ArrayLike, attrs: dict | None = None) -> None:
        """``/grid/centers`` (M, d) and ``/grid/areas`` (M,): the mesh of a finite-volume run.

        ``attrs``: optional attributes of ``/grid`` describing the mesh (strings or integers),
        e.g. ``{"mesh": "icosahedral_voronoi", "frequency": 16}``.
        """
        c = _float_array("grid centers", centers, (None, self.model.d))
        a = _float_array("grid areas", areas, (c.shape[0],))
        attrs = dict(attrs or {})
        for key, value in attrs.items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (str, int, np.integer)):
                raise ValueError(f"grid attribute {key!r} must be a string or an integer, got {value!r}")
        grid = self.file.require_group("grid")
        with self._writing("writing /grid"):
            for key, value in attrs.items():
                grid.attrs[key] = value if isinstance(value, str) else np.int64(value)
            cell = _index_scale(grid, "cell", c.shape[0])
            comp = _index_scale(grid, "component", c.shape[1])
            self._replace(grid, "centers", c, (cell, comp))
            self._replace(grid, "areas", a, (cell,))
            self.file.flush()

    def write_limit(self, points: ArrayLike, weights: ArrayLike) -> None:
        """``/limit/points`` (L, d) and ``/limit/weights`` (L,): the measure Pi#rho_0."""
        p = _float_array("limit points", points, (None, self.model.d))
        w = _float_array("limit weights", weights, (p.shape[0],))
        with self._writing("writing /limit"):
            lim = self.file.require_group("limit")
            if "points" in lim and lim["points"].shape[0] != p.shape[0]:  # another L: new scale
                for name in ("points", "weights", "point"):
                    del lim[name]
            point = _index_scale(lim, "point", p.shape[0])
            comp = _index_scale(lim, "component", p.shape[1])
            self._replace(lim, "points", p, (point, comp))
            self._replace(lim, "weights", w, (point,))
            self.file.flush()

    @contextlib.contextmanager
    def _writing(self, doing: str):
        """Turn an HDF5 write error (ENOSPC, EFBIG, EIO) into a clean close and one WriteError."""
        try:
            yield
        except (OSError, RuntimeError) as exc:
            self._fail(exc, doing)

    def _replace(self, group, name, data, scales):
        if name in group:
            del group[name]
        ds = group.create_dataset(name, data=data)
        _attach(ds, scales)
        self._describe(ds, group, name)

    def _describe(self, ds, group, name):
        """CF ``units`` and ``long_name`` attributes (docs/hdf5.md)."""
        if group.name == "/diagnostics":
            attrs = describe_diagnostic(name, self._wasserstein)
        else:
            attrs = describe_state("limit_weights" if group.name == "/limit" and name == "weights" else name,
                                   self.model.d)
        for key, value in attrs.items():
            ds.attrs[key] = value

    # -- snapshots

    @property
    def n_snapshots(self) -> int:
        """Finished snapshots (``len(/time)``)."""
        return _n_finished(self.file)

    def _time_like(self):
        f = self.file
        for name in ("positions", "mass"):
            if name in f["state"]:
                yield f["state"][name]
        for name, ds in f["diagnostics"].items():
            if name not in _RESERVED:
                yield ds

    def _series(self, group, name, row_shape, scales, *, snapshot: bool):
        """The resizable time-like dataset ``group/name`` (created on first use)."""
        if name in group:
            ds = group[name]
            if ds.shape[1:] != row_shape:
                raise ValueError(f"{group.name}/{name} holds rows of shape {ds.shape[1:]}, got {row_shape}")
            return ds
        T = self.n_snapshots
        kwargs = {}
        if snapshot:
            # each snapshot row is its own chunk, written once: a checksum makes a chunk damaged
            # on disk a read error, never a number.  (Not on /time and the diagnostics, whose
            # chunks of 1024 entries are rewritten in place: a write torn by SIGKILL would then
            # lose every finished entry of the chunk, where without it only the new one is torn.)
            kwargs = dict(chunks=(1,) + row_shape, compression=self._compression,
                          compression_opts=self._compression_opts, shuffle=self._compression is not None,
                          fletcher32=True)
        else:
            kwargs = dict(chunks=(1024,))
        ds = group.create_dataset(name, shape=(T,) + row_shape, maxshape=(None,) + row_shape,
                                  dtype=np.float64, fillvalue=np.nan, **kwargs)
        _attach(ds, (self.file["time"],) + tuple(scales))
        self._describe(ds, group, name)
        return ds

    def append_snapshot(self, t: float, *, positions: ArrayLike | None = None, mass: ArrayLike | None = None,
                        diagnostics: dict | None = None) -> int:
        """Append one snapshot at time ``t``; returns the number of snapshots.

        ``positions`` (N, d) for particle and PIC runs, ``mass`` (M,) for finite
        volumes; ``diagnostics`` a dict name -> float.  The same kind of state and the
        same diagnostic names are required in every snapshot.  The rows are written
        first and ``/time`` is extended last, then the file is flushed.
        """
        f = self.file
        t_val = _diagnostic_value("t", t) if not isinstance(t, (int, float)) else float(t)
        if not math.isfinite(t_val):
            raise ValueError(f"t must be a finite number, got {t!r}")
        if positions is None and mass is None:
            raise ValueError("append_snapshot needs positions or mass")
        if positions is not None and mass is not None:
            raise ValueError("append_snapshot takes positions or mass, not both")
        diagnostics = dict(diagnostics or {})
        values = {_check_diagnostic_name(k): _diagnostic_value(k, v) for k, v in diagnostics.items()}
        state = f["state"]
        T = self.n_snapshots
        if T > 0:
            have = {n for n in f["diagnostics"] if n not in _RESERVED}
            if have != set(values):
                missing, extra = sorted(have - set(values)), sorted(set(values) - have)
                raise ValueError(f"diagnostics must have the same names in every snapshot; "
                                 f"missing {missing}, new {extra}")
            kind = "positions" if "positions" in state else "mass"
            given = "positions" if positions is not None else "mass"
            if kind != given:
                raise ValueError(f"this file holds {kind} snapshots, got {given}")
        if T > 0 and t_val < f["time"][T - 1]:
            raise ValueError(f"t must not decrease: the last snapshot is at t = {f['time'][T - 1]!r}, got {t_val!r}")
        # 1. the state row
        if positions is not None:
            x = _float_array("positions", positions, (None, self.model.d))
            if "weights" in state and state["weights"].shape[0] != x.shape[0]:
                raise ValueError(f"positions must have {state['weights'].shape[0]} rows (the weights), got {x.shape[0]}")
            row, name = x, "positions"
        else:
            row, name = _float_array("mass", mass, (None,)), "mass"
            if "grid" in f and f["grid"]["areas"].shape[0] != row.shape[0]:
                raise ValueError(f"mass must have {f['grid']['areas'].shape[0]} cells (the grid), got {row.shape[0]}")
        if name in state and state[name].shape[1:] != row.shape:
            raise ValueError(f"{state.name}/{name} holds rows of shape {state[name].shape[1:]}, got {row.shape}")
        self._check_room(row.nbytes + 8192 * (len(values) + 1))
        with self._writing(f"writing snapshot {T + 1} (t = {t_val:g})"):
            if positions is not None:
                particle = _index_scale(state, "particle", x.shape[0])
                comp = _index_scale(state, "component", x.shape[1])
                ds = self._series(state, "positions", x.shape, (particle, comp), snapshot=True)
            else:
                cell = _index_scale(state, "cell", row.shape[0])
                ds = self._series(state, "mass", row.shape, (cell,), snapshot=True)
            ds.resize((T + 1,) + ds.shape[1:])
            ds[T] = row
            # 2. the diagnostics rows
            for dname, value in values.items():
                d = self._series(f["diagnostics"], dname, (), (), snapshot=False)
                d.resize((T + 1,))
                d[T] = value
            # 3. time, last
            time = f["time"]
            time.resize((T + 1,))
            time[T] = t_val
            f.flush()
        if self._tmp is not None:
            self._publish()  # the first snapshot is written: the new file replaces path now
        return T + 1

    def set_series_attrs(self, name: str, attrs: dict) -> None:
        """Set attributes of ``/diagnostics/<name>`` (strings or real numbers; others refused)."""
        f = self.file
        if name not in f["diagnostics"] or name in _RESERVED:
            raise ValueError(f"no diagnostic series {name!r} in {self.path}")
        ds = f["diagnostics"][name]
        for key, value in dict(attrs).items():
            if isinstance(value, str):
                ds.attrs[key] = value
            elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
                ds.attrs[key] = np.float64(value)
            else:
                raise ValueError(f"attribute {key!r} of /diagnostics/{name} must be a string or a number, "
                                 f"got {value!r}")
        f.flush()

    def series_attrs(self, name: str) -> dict:
        """The attributes of ``/diagnostics/<name>`` ({} when the series does not exist)."""
        f = self.file
        if name not in f["diagnostics"]:
            return {}
        return {k: (_attr_str(v) if isinstance(v, (bytes, str)) else float(v))
                for k, v in f["diagnostics"][name].attrs.items() if k not in ("DIMENSION_LIST",)}

    def last_snapshot(self) -> tuple[float, np.ndarray] | None:
        """``(t, positions or mass)`` of the last finished snapshot, or None if there is none."""
        f = self.file
        T = self.n_snapshots
        if T == 0:
            return None
        name = "positions" if "positions" in f["state"] else "mass"
        return float(f["time"][T - 1]), f["state"][name][T - 1]


def _n_finished(f: h5py.File) -> int:
    """Finished snapshots: len(/time), less trailing entries still at the NaN fill value."""
    t = f["time"]
    T = t.shape[0]
    while T > 0 and math.isnan(t[T - 1]):
        T -= 1
    return T


def _read_model(f: h5py.File) -> Model:
    m = f["model"]
    beta = float(m.attrs["beta"])
    return Model(Q=m["Q"][()], K=m["K"][()], V=m["V"][()], beta=beta, d=int(m.attrs["d"]),
                 normalization=_attr_str(m.attrs["normalization"]),
                 zero_temperature=_attr_str(m.attrs.get("zero_temperature", "continuum")))


# ----------------------------------------------------------------------------- reader


@dataclass
class Result:
    """A run read back from its HDF5 file (:func:`load`).

    ``times`` (T,); ``positions`` (T, N, d) for particles/PIC or ``mass`` (T, M) for
    finite volumes (the other is None); ``weights`` (N,); ``grid`` a dict with
    ``centers`` (M, d) and ``areas`` (M,); ``diagnostics`` name -> (T,) array;
    ``limit`` (points (L, d), weights (L,)); ``config`` the resolved config dict;
    ``diagnostic_attrs`` name -> {attribute: value} of the diagnostic series that have
    attributes (w_to_limit: the method used and its certified bound, docs/hdf5.md).
    """

    path: str
    times: np.ndarray
    positions: np.ndarray | None
    mass: np.ndarray | None
    weights: np.ndarray | None
    grid: dict | None
    diagnostics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    limit: tuple | None = None
    status: str = "unknown"
    model: Model | None = None
    created: str = ""
    mfpde_version: str = ""
    diagnostic_attrs: dict = field(default_factory=dict)

    @property
    def n_snapshots(self) -> int:
        return int(self.times.shape[0])

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def kind(self) -> str:
        """``"particles"``, ``"pic"`` or ``"fv"`` (the ``solver.method`` of the run)."""
        method = (self.config.get("solver") or {}).get("method") if isinstance(self.config, dict) else None
        if method:
            return str(method)
        return "fv" if self.mass is not None else "particles"

    def _summary_lines(self) -> list[str]:
        beta = "inf" if self.model is not None and self.model.is_zero_temperature else (
            f"{self.model.beta:g}" if self.model is not None else "?")
        d = self.model.d if self.model is not None else "?"
        if self.positions is not None:
            state = f"{self.positions.shape[1]} particles"
        elif self.mass is not None:
            state = f"{self.mass.shape[1]} cells"
        else:
            state = "no state"
        t = f"t = {self.times[0]:g} .. {self.times[-1]:g}" if self.n_snapshots else "no snapshots"
        return [f"{self.kind} on S^{d - 1 if isinstance(d, int) else d}, beta = {beta}, {state}",
                f"{self.n_snapshots} snapshots, {t}, status {self.status}",
                "diagnostics: " + (", ".join(self.diagnostics) or "none")]

    def __repr__(self) -> str:
        return f"<Result {self.path!r}: " + "; ".join(self._summary_lines()) + ">"

    def _repr_html_(self) -> str:
        import html

        items = "".join(f"<li>{html.escape(line)}</li>" for line in self._summary_lines())
        return f"<b>mfpde Result</b> <code>{html.escape(self.path)}</code><ul>{items}</ul>"

    def to_xarray(self) -> "xarray.Dataset":  # noqa: F821
        """The run as an :class:`xarray.Dataset` (needs ``xarray``).

        Dimensions ``time``, ``particle`` (particle and PIC runs) or ``cell`` (finite
        volumes), ``component`` (the d Cartesian components) and ``point`` (the atoms of
        the limit measure).  Variables: ``positions`` (time, particle, component) and
        ``weights`` (particle), or ``mass`` (time, cell), ``centers`` (cell, component) and
        ``areas`` (cell); every diagnostic as a series over ``time`` (the total-mass
        diagnostic is named ``mass_total`` in a finite-volume run, beside the cell
        masses); ``limit_points`` (point, component) and ``limit_weights`` (point).
        Every variable has ``units`` and ``long_name`` attributes; the dataset's
        attributes hold the model parameters, the status and the resolved config (JSON).
        """
        import xarray as xr

        d = self.model.d if self.model is not None else None
        wasserstein = self.config.get("wasserstein", {}) if isinstance(self.config, dict) else {}
        data, coords = {}, {"time": ("time", np.asarray(self.times), describe_state("time", d))}
        coords["component"] = ("component", np.arange(d if d is not None else 0))
        if self.positions is not None:
            n = self.positions.shape[1]
            coords["particle"] = ("particle", np.arange(n))
            data["positions"] = (("time", "particle", "component"), self.positions, describe_state("positions", d))
            if self.weights is not None:
                data["weights"] = (("particle",), self.weights, describe_state("weights", d))
        if self.mass is not None:
            coords["cell"] = ("cell", np.arange(self.mass.shape[1]))
            data["mass"] = (("time", "cell"), self.mass, describe_state("mass", d))
        if self.grid is not None:
            cell = "cell" if self.mass is not None else "node"
            coords.setdefault(cell, (cell, np.arange(len(self.grid["areas"]))))
            data["centers"] = ((cell, "component"), self.grid["centers"], describe_state("centers", d))
            data["areas"] = ((cell,), self.grid["areas"], describe_state("areas", d))
        if self.limit is not None:
            points, weights = self.limit
            coords["point"] = ("point", np.arange(len(weights)))
            data["limit_points"] = (("point", "component"), points, describe_state("points", d))
            data["limit_weights"] = (("point",), weights, describe_state("limit_weights", d))
        for name, series in self.diagnostics.items():
            key = "mass_total" if name == "mass" and "mass" in data else name
            data[key] = (("time",), np.asarray(series), describe_diagnostic(name, wasserstein))
        attrs = {"path": self.path, "status": self.status, "mfpde_version": self.mfpde_version,
                 "created": self.created, "config": json.dumps(self.config), "kind": self.kind}
        if self.model is not None:
            attrs.update(d=self.model.d, beta=float(self.model.beta), normalization=self.model.normalization)
        return xr.Dataset(data, coords=coords, attrs=attrs)


def _has_hdf5_signature(path) -> bool:
    """The HDF5 signature at offset 0, 512, 1024, ... (a user block may precede it)."""
    signature = b"\x89HDF\r\n\x1a\n"
    try:
        with open(path, "rb") as fh:
            offset = 0
            while True:
                fh.seek(offset)
                head = fh.read(8)
                if len(head) < 8:
                    return False
                if head == signature:
                    return True
                offset = 512 if offset == 0 else 2 * offset
    except OSError:
        return False


def _open_h5(path) -> h5py.File:
    """Open an HDF5 file for reading, also while a writer holds it; FileError if it is not one."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a directory, not an mfpde file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if not _has_hdf5_signature(path):
            raise FileError(f"{path} is not an mfpde file (not an HDF5 file)") from None
        try:  # locked by a run still writing it: read what has been flushed
            return h5py.File(path, "r", locking=False)
        except OSError:
            raise DamagedFileError(f"{path}: cannot open the HDF5 file ({_short(exc)})") from None


def _open_mfpde(path) -> h5py.File:
    path = os.fspath(path)
    f = _open_h5(path)
    try:
        fmt = _attr_str(f.attrs.get("format"))
        version = f.attrs.get("format_version", 0)
    except (OSError, RuntimeError, KeyError, TypeError) as exc:
        f.close()
        raise DamagedFileError(f"{path}: cannot read its root attributes ({_short(exc)})") from None
    if fmt is None:
        f.close()
        raise FileError(f"{path} is not an mfpde file (no format attribute)")
    if fmt == STUDY_FORMAT:
        f.close()
        raise FileError(f"{path} is an mfpde study index, not a run file: read it with "
                        f"mfpde.study.load_study({path!r}) (its runs are run files in its .runs/ folder)")
    if fmt != FORMAT:
        f.close()
        raise FileError(f"{path} is not an mfpde file (format attribute is {fmt!r})")
    try:
        version = int(version)
    except (TypeError, ValueError):
        f.close()
        raise DamagedFileError(f"{path}: format_version is not an integer") from None
    if version > FORMAT_VERSION:
        f.close()
        raise FileError(f"{path} has format_version {version}; this mfpde ({_mfpde_version}) reads "
                        f"up to {FORMAT_VERSION}: upgrade mfpde")
    return f


def _damaged(path, exc) -> DamagedFileError:
    return DamagedFileError(f"{os.fspath(path)} is damaged: {_short(exc)}")


@dataclass(frozen=True)
class _Layout:
    """What :func:`_verify` found: T finished snapshots of ``kind`` ("positions" | "mass" | None)."""

    T: int
    kind: str | None
    d: int
    times: np.ndarray
    config: dict


def _dataset(group, name, path, ndim):
    ds = group.get(name)
    if not isinstance(ds, h5py.Dataset):
        raise DamagedFileError(f"{path}: {group.name.rstrip('/')}/{name} is missing or not a dataset")
    if ds.ndim != ndim or ds.dtype.kind != "f":
        raise DamagedFileError(f"{path}: {ds.name} must be a {ndim}-d float array, got shape {ds.shape} "
                               f"of {ds.dtype}")
    return ds


def _verify(f: h5py.File, path) -> _Layout:
    """Check a file's structure against /time and its config; DamagedFileError otherwise.

    /model with a valid model and (d, d) matrices; /time 1-d float with finite, non-decreasing
    finished entries; /state/positions (>= T, N, d) with /state/weights (N,), or
    /state/mass (>= T, M) with /grid (M cells); /grid, /limit shapes; every diagnostic
    1-d with >= T entries; the config attribute valid JSON matching its ``config_sha256``
    digest, the model's d and the kind of state of its method.  (``mfpde run --resume`` also
    checks the particle count against ``initial.n``.)
    """
    path = os.fspath(path)
    f.visititems(lambda name, obj: None)  # every object header opens (KeyError otherwise)
    status = _attr_str(f.attrs.get("status"))
    if status not in STATUSES:
        raise DamagedFileError(f"{path}: status attribute is {status!r}, not one of {', '.join(STATUSES)}")
    if not isinstance(f.get("model"), h5py.Group):
        raise DamagedFileError(f"{path}: /model is missing")
    try:
        model = _read_model(f)
    except (ValueError, TypeError) as exc:
        raise DamagedFileError(f"{path}: /model does not hold a valid model ({_short(exc)})") from None
    d = model.d
    for name in ("Q", "K", "V"):
        if f["model"][name].shape != (d, d):
            raise DamagedFileError(f"{path}: /model/{name} has shape {f['model'][name].shape}, not ({d}, {d})")
    time_ds = _dataset(f, "time", path, 1)
    times = time_ds[()]
    T = times.shape[0]
    while T > 0 and math.isnan(times[T - 1]):
        T -= 1
    times = times[:T]
    if not np.all(np.isfinite(times)):
        raise DamagedFileError(f"{path}: /time holds non-finite values among its {T} snapshots")
    if T > 1 and np.any(np.diff(times) < 0):
        raise DamagedFileError(f"{path}: /time decreases")
    for group in ("state", "diagnostics"):
        if not isinstance(f.get(group), h5py.Group):
            raise DamagedFileError(f"{path}: /{group} is missing")
    state = f["state"]
    kinds = [k for k in ("positions", "mass") if k in state]
    if len(kinds) > 1:
        raise DamagedFileError(f"{path}: /state holds both positions and mass")
    kind = kinds[0] if kinds else None
    config = _decode_config(f, path)
    digest = _attr_str(f.attrs.get("config_sha256"))
    if digest is not None:
        try:
            ok = config_digest(config) == digest
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DamagedFileError(f"{path}: its config does not match its config_sha256 digest")
    method = config.get("solver", {}).get("method") if isinstance(config.get("solver"), dict) else None
    cfg_model = config.get("model") if isinstance(config.get("model"), dict) else {}
    if "d" in cfg_model and cfg_model["d"] != d:
        raise DamagedFileError(f"{path}: the config's model.d = {cfg_model['d']!r} but /model has d = {d}")
    want = {"particles": "positions", "pic": "positions", "fv": "mass"}.get(method)
    if T > 0 and kind is None:
        raise DamagedFileError(f"{path}: /time has {T} snapshots but /state holds no positions or mass")
    if want is not None and kind is not None and kind != want:
        raise DamagedFileError(f"{path}: a {method} run must hold /state/{want}, found /state/{kind}")
    grid_cells = None
    if "grid" in f:
        centers = _dataset(f["grid"], "centers", path, 2)
        areas = _dataset(f["grid"], "areas", path, 1)
        if centers.shape[1] != d or areas.shape[0] != centers.shape[0]:
            raise DamagedFileError(f"{path}: /grid/centers {centers.shape} and /grid/areas {areas.shape} "
                                   f"do not describe the same cells in R^{d}")
        grid_cells = centers.shape[0]
    if kind == "positions":
        pos = _dataset(state, "positions", path, 3)
        if pos.shape[0] < T or pos.shape[2] != d:
            raise DamagedFileError(f"{path}: /state/positions has shape {pos.shape}; expected ({T}, N, {d}) "
                                   f"for {T} snapshots")
        N = pos.shape[1]
        if "weights" in state:
            w = _dataset(state, "weights", path, 1)
            if w.shape[0] != N:
                raise DamagedFileError(f"{path}: /state/weights has {w.shape[0]} entries for {N} particles")
        elif _attr_str(f.attrs.get("method")) in ("particles", "pic"):  # written by mfpde.run
            raise DamagedFileError(f"{path}: /state/weights is missing")
    elif kind == "mass":
        mass = _dataset(state, "mass", path, 2)
        if mass.shape[0] < T:
            raise DamagedFileError(f"{path}: /state/mass has {mass.shape[0]} rows for {T} snapshots")
        if grid_cells is not None and mass.shape[1] != grid_cells:
            raise DamagedFileError(f"{path}: /state/mass has {mass.shape[1]} cells, /grid {grid_cells}")
        if grid_cells is None and _attr_str(f.attrs.get("method")) == "fv":
            raise DamagedFileError(f"{path}: /grid is missing")
    if "limit" in f:
        lim = f["limit"]
        if not isinstance(lim, h5py.Group):
            raise DamagedFileError(f"{path}: /limit is not a group")
        if "points" in lim or "weights" in lim:
            pts = _dataset(lim, "points", path, 2)
            lw = _dataset(lim, "weights", path, 1)
            if pts.shape[1] != d or lw.shape[0] != pts.shape[0]:
                raise DamagedFileError(f"{path}: /limit/points {pts.shape} and /limit/weights {lw.shape} "
                                       f"do not describe one measure in R^{d}")
    for name in f["diagnostics"]:
        if name in _RESERVED:
            continue
        ds = _dataset(f["diagnostics"], name, path, 1)
        if ds.shape[0] < T:
            raise DamagedFileError(f"{path}: /diagnostics/{name} has {ds.shape[0]} entries for {T} snapshots")
    for group, name, n in (("state", "particle", state["positions"].shape[1] if kind == "positions" else None),
                           ("state", "component", d if kind == "positions" else None),
                           ("state", "cell", state["mass"].shape[1] if kind == "mass" else None),
                           ("model", "row", d), ("model", "column", d)):
        if n is not None and name in f[group] and f[group][name].shape != (n,):
            raise DamagedFileError(f"{path}: /{group}/{name} has shape {f[group][name].shape}, not ({n},)")
    return _Layout(T=T, kind=kind, d=d, times=times, config=config)


#: Reading a file while a writer appends to it (no SWMR) can meet half-updated HDF5
#: metadata; such reads are retried this many times, ``_READ_RETRY_WAIT`` seconds apart,
#: as long as the file is being written (its lock is held, or it changes between tries).
_READ_RETRIES = 20
_READ_RETRY_WAIT = 0.05

_LOW_LEVEL = (KeyError, TypeError, RuntimeError, AttributeError, OSError, IndexError, ValueError)


def _stamp(path):
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return None


def _retrying(read):
    """Run a read; a file that is damaged gives one DamagedFileError, a file being written is
    retried (it may be caught mid-flush) before it does."""
    from ._filelock import is_locked

    @functools.wraps(read)
    def wrapper(path):
        for attempt in range(_READ_RETRIES):
            before = _stamp(path)
            try:
                return read(path)
            except (FileNotFoundError, IsADirectoryError, FileBusyError):
                raise
            except FileError as exc:
                error = exc
                if not isinstance(exc, DamagedFileError):
                    raise
            except _LOW_LEVEL as exc:
                if not os.path.exists(path):
                    raise FileNotFoundError(f"{os.fspath(path)}: no such file") from None
                error = _damaged(path, exc)
            live = is_locked(path) or _stamp(path) != before
            if not live or attempt == _READ_RETRIES - 1:
                if live:
                    raise DamagedFileError(f"{os.fspath(path)} could not be read consistently (is a run writing "
                                           f"it right now?): {error}") from None
                raise error from None
            time.sleep(_READ_RETRY_WAIT)

    return wrapper


@_retrying
def load(path: str | os.PathLike) -> Result:
    """Read a run file into a :class:`Result` (only finished snapshots: ``len(/time)``).

    The file's structure is verified first (shapes against /time and the config, finite
    non-decreasing times): a damaged file raises :class:`DamagedFileError`, a file that is
    not an mfpde file :class:`FileError` (both ``ValueError``).  A file that a run is writing
    at the same moment is read as of its last finished snapshot; a read that meets
    half-written metadata is retried (up to ~1 s).
    """
    with _open_mfpde(path) as f:
        layout = _verify(f, path)
        T = layout.T
        state = f["state"]
        positions = state["positions"][:T] if layout.kind == "positions" else None
        mass = state["mass"][:T] if layout.kind == "mass" else None
        weights = state["weights"][()] if "weights" in state else None
        if positions is not None and weights is None:
            weights = None
        grid = None
        if "grid" in f:
            grid = {"centers": f["grid"]["centers"][()], "areas": f["grid"]["areas"][()]}
        limit = None
        if "limit" in f and "points" in f["limit"]:
            limit = (f["limit"]["points"][()], f["limit"]["weights"][()])
        diagnostics, diagnostic_attrs = {}, {}
        if "diagnostics" in f:
            diagnostics = {n: ds[:T] for n, ds in f["diagnostics"].items() if n not in _RESERVED}
            for n in diagnostics:
                attrs = {k: _scalar_attr(v) for k, v in f["diagnostics"][n].attrs.items()
                         if k != "DIMENSION_LIST"}
                attrs = {k: v for k, v in attrs.items() if v is not None}
                if attrs:
                    diagnostic_attrs[n] = attrs
        return Result(
            path=os.fspath(path), times=layout.times, positions=positions, mass=mass, weights=weights,
            grid=grid, diagnostics=diagnostics, config=layout.config, limit=limit,
            status=_attr_str(f.attrs.get("status", "unknown")), model=_read_model(f),
            created=_attr_str(f.attrs.get("created", "")), mfpde_version=_attr_str(f.attrs.get("mfpde_version", "")),
            diagnostic_attrs=diagnostic_attrs,
        )


def _scalar_attr(value):
    """A string or real scalar attribute as str / float; anything else (arrays, references) None."""
    if isinstance(value, (bytes, str)):
        return _attr_str(value)
    if np.ndim(value) == 0 and isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return None


def info(path: str | os.PathLike) -> str:
    """A human-readable summary of a run file or a study index (``mfpde info``)."""
    if _is_study_index(path):
        from .study import study_info

        return study_info(path)
    return _run_info(path)


def is_study_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a study index file (``mfpde study``) rather than a run file;
    FileError (one line) for a file that is not HDF5, does not open or cannot be read."""
    with _open_h5(path) as f:
        try:
            return _attr_str(f.attrs.get("format")) == STUDY_FORMAT
        except (OSError, RuntimeError, KeyError) as exc:
            raise DamagedFileError(f"{path}: cannot read its root attributes ({exc})") from None


def _is_study_index(path) -> bool:
    """:func:`is_study_file`, False for anything unreadable (the run reader then says why)."""
    try:
        return is_study_file(path)
    except (FileError, OSError):
        return False


@_retrying
def _run_info(path: str | os.PathLike) -> str:
    """A human-readable summary of a run file; the file is verified as by :func:`load`."""
    with _open_mfpde(path) as f:
        layout = _verify(f, path)
        T, times, config = layout.T, layout.times, layout.config
        lines = [f"{os.fspath(path)}: mfpde file, format {int(f.attrs.get('format_version', 0))}, "
                 f"written by mfpde {_attr_str(f.attrs.get('mfpde_version', '?'))} "
                 f"on {_attr_str(f.attrs.get('created', '?'))}",
                 f"status: {_attr_str(f.attrs.get('status', 'unknown'))}"]
        model = _read_model(f)
        beta = "inf" if model.is_zero_temperature else f"{model.beta:g}"
        zt = f", zero_temperature = {model.zero_temperature}" if model.is_zero_temperature else ""
        lines.append(f"model: d = {model.d}, beta = {beta}, normalization = {model.normalization}{zt}")
        for name in ("Q", "K", "V"):
            mat = getattr(model, name)
            if np.array_equal(mat, np.eye(model.d)):
                desc = "identity"
            elif model.d > 8:
                desc = f"a {model.d} x {model.d} matrix (/model/{name})"
            else:
                desc = np.array2string(mat, precision=4, separator=", ", max_line_width=10**6).replace("\n", "")
            lines.append(f"  {name} = {desc}")
        solver = config.get("solver")
        if isinstance(solver, dict) and solver:
            lines.append("solver: " + ", ".join(f"{k} = {v}" for k, v in solver.items()))
        used = [f"{k} = {_attr_str(f.attrs[k])}" for k in PROVENANCE_KEYS if k in f.attrs]
        if used:
            lines.append("used: " + ", ".join(used))
        digest = _attr_str(f.attrs.get("config_sha256"))
        if digest:
            lines.append(f"config_sha256: {digest}")
        state = f["state"]
        if layout.kind == "positions":
            _, N, d = state["positions"].shape
            lines.append(f"state: positions of {N} particles in R^{d}")
        elif layout.kind == "mass":
            lines.append(f"state: mass on {state['mass'].shape[1]} cells")
        if T:
            lines.append(f"snapshots: {T}, t = {times[0]:g} .. {times[-1]:g}")
        else:
            lines.append("snapshots: 0")
        if "limit" in f and "points" in f["limit"]:
            lines.append(f"limit: {f['limit']['points'].shape[0]} points")
        names = [n for n in f["diagnostics"] if n not in _RESERVED]
        if names:
            lines.append("diagnostics (last value):")
            width = max(len(n) for n in names)
            for n in names:
                last = f"{f['diagnostics'][n][T - 1]:.6g}" if T else "-"
                lines.append(f"  {n:<{width}}  {last}")
        return "\n".join(lines)
