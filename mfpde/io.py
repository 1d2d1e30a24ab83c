"""HDF5 files: one run per file (DESIGN.md "HDF5 layout", docs/hdf5.md).

:class:`RunWriter` writes a run snapshot by snapshot, flushing each, so a run killed
at any moment leaves a file that opens and holds every finished snapshot.
:func:`load` reads a file back into a :class:`Result`; :func:`info` summarises it.

Crash safety: a snapshot's state and diagnostics rows are written first and ``/time``
is extended last, so ``T = len(/time)`` counts finished snapshots only; the reader
trims every other time-like dataset to ``T`` (and drops a trailing ``/time`` entry
still holding its NaN fill value).

Every dataset carries HDF5 dimension scales on every axis, so
``xarray.open_dataset(path, engine="h5netcdf", group=...)`` opens the root and each
group.  ``/state/time`` and ``/diagnostics/time`` are hard links to ``/time`` (one
dataset, three names) so that each group sees its time coordinate.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import os
import time
from dataclasses import dataclass, field

import h5py
import numpy as np

from ._version import __version__ as _mfpde_version
from .model import Model

__all__ = ["RunWriter", "Result", "load", "info", "FORMAT", "FORMAT_VERSION", "STATUSES"]

FORMAT = "mfpde"
FORMAT_VERSION = 1
STATUSES = ("running", "complete", "interrupted")

#: names that cannot be diagnostics (the time coordinate linked into /diagnostics)
_RESERVED = ("time",)
_COMPRESSIONS = ("gzip", "lzf", None)


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

    On leaving the ``with`` block (or ``close()``) a status still ``"running"``
    becomes ``"interrupted"``: call ``set_status("complete")`` when the run ends.
    """

    def __init__(self, path, *, model: Model, config, mode: str = "w", force: bool = False,
                 compression: str | None = "gzip"):
        if mode not in ("w", "resume"):
            raise ValueError(f"mode must be 'w' or 'resume', got {mode!r}")
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of gzip, lzf, None, got {compression!r}")
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mfpde Model, got {type(model).__name__}")
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        try:
            config_json = json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config cannot be stored as JSON: {exc}") from None
        self.path = os.fspath(path)
        self.model = model
        self._compression = compression
        self._compression_opts = 4 if compression == "gzip" else None
        self._file = None
        if mode == "w":
            self._check_overwrite(force)
            self._file = h5py.File(self.path, "w")
            self._create(config_json)
        else:
            self._open_resume(config_json)

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

    def _create(self, config_json: str):
        f = self._file
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = np.int64(FORMAT_VERSION)
        f.attrs["mfpde_version"] = _mfpde_version
        f.attrs["created"] = _now_iso()
        f.attrs["config"] = config_json
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
        t = f.create_dataset("time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,),
                             fillvalue=np.nan)
        t.make_scale("time")
        t.attrs["long_name"] = "time"
        for name in ("state", "diagnostics"):
            f.create_group(name)["time"] = t  # hard link: each group sees its time coordinate
        f.flush()

    def _open_resume(self, config_json: str):
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{self.path}: no such file to resume")
        status = _status_of(self.path)
        if status is None:
            raise ValueError(f"{self.path} is not an mfpde file; cannot resume it")
        if status == "complete":
            raise ValueError(f"{self.path} holds a complete run; nothing to resume (use --force to start over)")
        self._file = f = h5py.File(self.path, "r+")
        try:
            stored = _read_model(f)
            if stored.to_dict() != self.model.to_dict():
                raise ValueError(f"{self.path} was written with a different model ({stored!r}); cannot resume it "
                                 f"with {self.model!r}")
            # drop a half-written snapshot: every time-like dataset back to len(/time)
            T = _n_finished(f)
            if f["time"].shape[0] != T:
                f["time"].resize((T,))
            for ds in self._time_like():
                if ds.shape[0] != T:
                    ds.resize((T,) + ds.shape[1:])
            f.attrs["config"] = config_json
            f.attrs["status"] = "running"
            f.flush()
        except BaseException:
            f.close()
            self._file = None
            raise

    # -- context manager

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def close(self):
        """Close the file; a status still ``"running"`` becomes ``"interrupted"``."""
        f = self._file
        if f is None:
            return
        try:
            if f.id.valid and _attr_str(f.attrs.get("status")) == "running":
                f.attrs["status"] = "interrupted"
        finally:
            f.close()
            self._file = None

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
        self.file.attrs["status"] = status
        self.file.flush()

    # -- static data

    def write_weights(self, weights) -> None:
        """``/state/weights`` (N,): the particle masses."""
        w = _float_array("weights", weights, (None,))
        state = self.file["state"]
        particle = _index_scale(state, "particle", w.shape[0])
        self._replace(state, "weights", w, (particle,))
        self.file.flush()

    def write_grid(self, centers, areas, attrs=None) -> None:
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
        for key, value in attrs.items():
            grid.attrs[key] = value if isinstance(value, str) else np.int64(value)
        cell = _index_scale(grid, "cell", c.shape[0])
        comp = _index_scale(grid, "component", c.shape[1])
        self._replace(grid, "centers", c, (cell, comp))
        self._replace(grid, "areas", a, (cell,))
        self.file.flush()

    def write_limit(self, points, weights) -> None:
        """``/limit/points`` (L, d) and ``/limit/weights`` (L,): the measure Pi#rho_0."""
        p = _float_array("limit points", points, (None, self.model.d))
        w = _float_array("limit weights", weights, (p.shape[0],))
        lim = self.file.require_group("limit")
        if "points" in lim and lim["points"].shape[0] != p.shape[0]:  # another L: new scale
            for name in ("points", "weights", "point"):
                del lim[name]
        point = _index_scale(lim, "point", p.shape[0])
        comp = _index_scale(lim, "component", p.shape[1])
        self._replace(lim, "points", p, (point, comp))
        self._replace(lim, "weights", w, (point,))
        self.file.flush()

    def _replace(self, group, name, data, scales):
        if name in group:
            del group[name]
        ds = group.create_dataset(name, data=data)
        _attach(ds, scales)

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
            kwargs = dict(chunks=(1,) + row_shape, compression=self._compression,
                          compression_opts=self._compression_opts, shuffle=self._compression is not None)
        else:
            kwargs = dict(chunks=(1024,))
        ds = group.create_dataset(name, shape=(T,) + row_shape, maxshape=(None,) + row_shape,
                                  dtype=np.float64, fillvalue=np.nan, **kwargs)
        _attach(ds, (self.file["time"],) + tuple(scales))
        return ds

    def append_snapshot(self, t, *, positions=None, mass=None, diagnostics=None) -> int:
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
            particle = _index_scale(state, "particle", x.shape[0])
            comp = _index_scale(state, "component", x.shape[1])
            ds = self._series(state, "positions", x.shape, (particle, comp), snapshot=True)
            row = x
        else:
            row = _float_array("mass", mass, (None,))
            if "grid" in f and f["grid"]["areas"].shape[0] != row.shape[0]:
                raise ValueError(f"mass must have {f['grid']['areas'].shape[0]} cells (the grid), got {row.shape[0]}")
            cell = _index_scale(state, "cell", row.shape[0])
            ds = self._series(state, "mass", row.shape, (cell,), snapshot=True)
        ds.resize((T + 1,) + ds.shape[1:])
        ds[T] = row
        # 2. the diagnostics rows
        for name, value in values.items():
            d = self._series(f["diagnostics"], name, (), (), snapshot=False)
            d.resize((T + 1,))
            d[T] = value
        # 3. time, last
        time = f["time"]
        time.resize((T + 1,))
        time[T] = t_val
        f.flush()
        return T + 1

    def set_series_attrs(self, name, attrs) -> None:
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

    def series_attrs(self, name) -> dict:
        """The attributes of ``/diagnostics/<name>`` ({} when the series does not exist)."""
        f = self.file
        if name not in f["diagnostics"]:
            return {}
        return {k: (_attr_str(v) if isinstance(v, (bytes, str)) else float(v))
                for k, v in f["diagnostics"][name].attrs.items() if k not in ("DIMENSION_LIST",)}

    def last_snapshot(self):
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


def _open_mfpde(path) -> h5py.File:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        if not _has_hdf5_signature(path):
            raise ValueError(f"{path} is not an mfpde file (not an HDF5 file)") from None
        try:  # locked by a run still writing it: read what has been flushed
            f = h5py.File(path, "r", locking=False)
        except OSError:
            raise OSError(f"{path}: cannot open the HDF5 file ({exc})") from None
    fmt = _attr_str(f.attrs.get("format"))
    if fmt is None:
        f.close()
        raise ValueError(f"{path} is not an mfpde file (no format attribute)")
    if fmt != FORMAT:
        f.close()
        raise ValueError(f"{path} is not an mfpde file (format attribute is {fmt!r})")
    version = int(f.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        f.close()
        raise ValueError(f"{path} has format_version {version}; this mfpde ({_mfpde_version}) reads "
                         f"up to {FORMAT_VERSION}: upgrade mfpde")
    return f


#: Reading a file while a writer appends to it (no SWMR) can meet half-updated HDF5
#: metadata; such reads are retried this many times, ``_READ_RETRY_WAIT`` seconds apart.
_READ_RETRIES = 20
_READ_RETRY_WAIT = 0.05


def _retrying(read):
    """Retry a read that met a file being written; then one clear ``ValueError``."""

    @functools.wraps(read)
    def wrapper(path):
        for attempt in range(_READ_RETRIES):
            try:
                return read(path)
            except (KeyError, TypeError, RuntimeError, AttributeError, OSError) as exc:
                if isinstance(exc, FileNotFoundError) or not os.path.exists(path):
                    raise
                if attempt == _READ_RETRIES - 1:
                    raise ValueError(f"{os.fspath(path)} could not be read consistently (is a run writing it "
                                     f"right now?): {' '.join(str(exc).split())}") from None
                time.sleep(_READ_RETRY_WAIT)

    return wrapper


@_retrying
def load(path) -> Result:
    """Read a run file into a :class:`Result` (only finished snapshots: ``len(/time)``).

    A file that a run is writing at the same moment is read as of its last finished
    snapshot; a read that meets half-written metadata is retried (up to ~1 s), then raises
    ``ValueError``.
    """
    with _open_mfpde(path) as f:
        T = _n_finished(f)
        times = f["time"][:T]
        state = f.get("state", {})
        positions = state["positions"][:T] if "positions" in state else None
        mass = state["mass"][:T] if "mass" in state else None
        weights = state["weights"][()] if "weights" in state else None
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
                attrs = {k: (_attr_str(v) if isinstance(v, (bytes, str)) else float(v))
                         for k, v in f["diagnostics"][n].attrs.items() if k != "DIMENSION_LIST"}
                if attrs:
                    diagnostic_attrs[n] = attrs
        try:
            config = json.loads(_attr_str(f.attrs.get("config", "{}")))
        except (TypeError, ValueError):
            config = {}
        return Result(
            path=os.fspath(path), times=times, positions=positions, mass=mass, weights=weights, grid=grid,
            diagnostics=diagnostics, config=config, limit=limit,
            status=_attr_str(f.attrs.get("status", "unknown")), model=_read_model(f),
            created=_attr_str(f.attrs.get("created", "")), mfpde_version=_attr_str(f.attrs.get("mfpde_version", "")),
            diagnostic_attrs=diagnostic_attrs,
        )


@_retrying
def info(path) -> str:
    """A human-readable summary of a run file (``mfpde info``)."""
    with _open_mfpde(path) as f:
        T = _n_finished(f)
        times = f["time"][:T]
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
            desc = "identity" if np.array_equal(mat, np.eye(model.d)) else np.array2string(
                mat, precision=4, separator=", ", max_line_width=10**6).replace("\n", "")
            lines.append(f"  {name} = {desc}")
        try:
            config = json.loads(_attr_str(f.attrs.get("config", "{}")))
        except (TypeError, ValueError):
            config = {}
        solver = config.get("solver") if isinstance(config, dict) else None
        if isinstance(solver, dict) and solver:
            lines.append("solver: " + ", ".join(f"{k} = {v}" for k, v in solver.items()))
        state = f["state"]
        if "positions" in state:
            _, N, d = state["positions"].shape
            lines.append(f"state: positions of {N} particles in R^{d}")
        elif "mass" in state:
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
