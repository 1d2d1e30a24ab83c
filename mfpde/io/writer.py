"""Writing run files: :class:`RunWriter` lays out a new file (or reopens one to resume),
writes its one-off datasets and appends snapshots (docs/hdf5.md)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os

import h5py
import numpy as np
from numpy.typing import ArrayLike

from .._cf import describe_diagnostic, describe_state
from .._filelock import FileError
from .._provenance import config_digest
from .._version import __version__ as _mfpde_version
from ..methods.base import StateKind
from ..model import Model
from ._files import _status_of, check_replaceable, resume_conflict
from ._format import (ENSEMBLE_FORMAT_VERSION, FORMAT, FORMAT_VERSION, PROVENANCE_KEYS, STATE_KINDS, _RESERVED, DamagedFileError,
                      _attr_str, _check_provenance, _damaged, _decode_config, _encode_config, _read_model)
from ._managed import _ManagedFile
from .reader import _open_mfpde, _verify

_COMPRESSIONS = ("gzip", "lzf", None)


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


def _diagnostic_value(name: str, value, systems: int = 1):
    """A diagnostic's value of one snapshot as stored: a float, or (S,) float64 for an ensemble
    of S > 1 systems."""
    arr = np.asarray(value)
    shape = () if systems == 1 else (systems,)
    if arr.shape != shape or arr.dtype.kind not in "fiub":
        what = "a real scalar" if systems == 1 else f"{systems} real numbers (one per system)"
        raise ValueError(f"diagnostic {name!r} must be {what}, got {value!r}")
    return float(arr) if systems == 1 else arr.astype(np.float64)


class RunWriter(_ManagedFile):
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
        method, integrator, kernel, kernel_used, precision, backend).  ``config_sha256`` is always
        stored (for a dict config).
    state : StateKind, optional
        The kind of state the run stores (``mfpde.methods.POSITIONS`` or ``MASS``, a method's
        ``state``): then ``append_snapshot(t, state_row)`` needs no name.
    systems : int
        S >= 1.  S > 1 writes an ensemble (docs/hdf5.md, "Ensembles"): every state row,
        the weights and the limit measure get a leading ``system`` axis of length S and
        every diagnostic row is S values (a ``(T, S)`` series); the root attribute
        ``systems`` is S and ``format_version`` is 2.  S = 1 writes the single-system layout.

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
                 compression: str | None = "gzip", provenance: dict | None = None, state: StateKind | None = None,
                 systems: int = 1):
        if mode not in ("w", "resume"):
            raise ValueError(f"mode must be 'w' or 'resume', got {mode!r}")
        if compression not in _COMPRESSIONS:
            raise ValueError(f"compression must be one of gzip, lzf, None, got {compression!r}")
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mfpde Model, got {type(model).__name__}")
        if state is not None and STATE_KINDS.get(getattr(state, "name", None)) is not state:
            raise ValueError(f"state must be one of the state kinds {', '.join(STATE_KINDS)}, got {state!r}")
        self._state = state
        if isinstance(systems, bool) or not isinstance(systems, (int, np.integer)) or systems < 1:
            raise ValueError(f"systems must be an integer >= 1, got {systems!r}")
        #: S: the number of systems of an ensemble (1: a single system).
        self.systems = int(systems)
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        try:
            json.dumps(config, allow_nan=False)
            self._digest = config_digest(config) if isinstance(config, dict) else None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config cannot be stored as JSON: {exc}") from None
        self._provenance = _check_provenance(provenance)
        self.model = model
        self._wasserstein = config.get("wasserstein", {}) if isinstance(config, dict) else {}
        self.config = config
        self._compression = compression
        self._compression_opts = 4 if compression == "gzip" else None
        self.resumed = mode == "resume"
        self.stored_provenance = {}
        self._stored_wall_time = 0.0
        super().__init__(path)  # the lock: before anything is read, truncated or created
        try:
            if mode == "w":
                check_replaceable(self.path, force=force)
                self._create_beside()
                self._create()
            else:
                self._open_resume()
        except BaseException:
            self._discard()
            raise

    # -- layout, and reopening a run to resume it

    def _create(self):
        f = self._file
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = np.int64(FORMAT_VERSION if self.systems == 1 else ENSEMBLE_FORMAT_VERSION)
        f.attrs["mfpde_version"] = _mfpde_version
        if self.systems > 1:
            f.attrs["systems"] = np.int64(self.systems)
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
        if self.systems > 1:
            f["diagnostics"]["system"] = _index_scale(f["state"], "system", self.systems)
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
            for ds in [f["time"]] + [f["state"][k] for k in STATE_KINDS if k in f["state"]] + [
                    ds for n, ds in f["diagnostics"].items() if n not in _RESERVED]:
                if ds.chunks is None or ds.maxshape[0] is not None:
                    raise DamagedFileError(f"{self.path}: {ds.name} is not resizable; cannot resume it")
            if layout.systems != self.systems:
                raise ValueError(f"{self.path} holds {layout.systems} system(s), this run {self.systems}; "
                                 f"cannot resume it")
        if stored.to_dict() != self.model.to_dict():
            raise ValueError(f"{self.path} was written with a different model ({stored!r}); cannot resume it "
                             f"with {self.model!r}")
        extends = resume_conflict(self.path, stored_config, self.config, status)
        if status == "complete" and not extends:
            raise ValueError(f"{self.path} holds a complete run; nothing to resume (use --force to start over, "
                             f"or a larger solver.t_end to continue it)")
        self._file = f = h5py.File(self.path, "r+")
        self.stored_provenance = {k: _attr_str(f.attrs[k]) for k in PROVENANCE_KEYS if k in f.attrs}
        self._stored_wall_time = float(f.attrs.get("wall_time", 0.0))
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

    # -- provenance and wall time

    @property
    def provenance(self) -> dict:
        """The provenance attributes of the file (method, integrator, kernel, kernel_used, precision, backend)."""
        return {k: _attr_str(self.file.attrs[k]) for k in PROVENANCE_KEYS if k in self.file.attrs}

    def set_provenance(self, key: str, value: str) -> None:
        """Record one provenance attribute (e.g. ``kernel_used`` once the run knows it) and flush."""
        value = _check_provenance({key: value})[key]
        with self._writing(f"recording {key}"):
            self.file.attrs[key] = value
            self.file.flush()

    @property
    def stored_wall_time(self) -> float:
        """The ``wall_time`` attribute a resumed file had when it was opened (0 for a new file)."""
        return self._stored_wall_time

    def set_wall_time(self, seconds: float) -> None:
        """Record the root attribute ``wall_time``: seconds spent computing the run (all attempts)."""
        seconds = float(seconds)
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"wall_time must be a finite number >= 0, got {seconds!r}")
        with self._writing("recording wall_time"):
            self.file.attrs["wall_time"] = seconds
            self.file.flush()

    # -- static data

    def _system_axis(self, group) -> tuple:
        """() for a single system, (the ``system`` scale of ``group``,) for an ensemble."""
        return () if self.systems == 1 else (_index_scale(group, "system", self.systems),)

    def _shape(self, *shape) -> tuple:
        """``shape`` with the leading system axis of an ensemble."""
        return shape if self.systems == 1 else (self.systems,) + shape

    def write_weights(self, weights: ArrayLike) -> None:
        """``/state/weights`` (N,), or (S, N) for an ensemble: the particle masses."""
        w = _float_array("weights", weights, self._shape(None))
        state = self.file["state"]
        with self._writing("writing /state/weights"):
            particle = _index_scale(state, "particle", w.shape[-1])
            self._replace(state, "weights", w, self._system_axis(state) + (particle,))
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
        """``/limit/points`` (L, d) and ``/limit/weights`` (L,): the measure Pi#rho_0; for an
        ensemble (S, L, d) and (S, L), one measure per system (atoms of weight 0 pad the
        systems with fewer than L atoms)."""
        p = _float_array("limit points", points, self._shape(None, self.model.d))
        w = _float_array("limit weights", weights, p.shape[:-1])
        L = p.shape[-2]
        with self._writing("writing /limit"):
            lim = self.file.require_group("limit")
            if "points" in lim and lim["points"].shape[-2] != L:  # another L: new scale
                for name in ("points", "weights", "point"):
                    del lim[name]
            system = self._system_axis(lim)
            point = _index_scale(lim, "point", L)
            comp = _index_scale(lim, "component", p.shape[-1])
            self._replace(lim, "points", p, system + (point, comp))
            self._replace(lim, "weights", w, system + (point,))
            self.file.flush()

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

    def _time_like(self):
        f = self.file
        for name in STATE_KINDS:
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
            # per-snapshot values rewritten in place: 1024 entries a chunk (whole rows of an ensemble)
            kwargs = dict(chunks=(max(1, 1024 // max(1, math.prod(row_shape))),) + row_shape)
        ds = group.create_dataset(name, shape=(T,) + row_shape, maxshape=(None,) + row_shape,
                                  dtype=np.float64, fillvalue=np.nan, **kwargs)
        _attach(ds, (self.file["time"],) + tuple(scales))
        self._describe(ds, group, name)
        return ds

    def append_snapshot(self, t: float, state: ArrayLike | None = None, *, positions: ArrayLike | None = None,
                        mass: ArrayLike | None = None, diagnostics: dict | None = None) -> int:
        """Append one snapshot at time ``t``; returns the number of snapshots.

        ``state``: the state of the writer's kind (``RunWriter(..., state=POSITIONS)``);
        or by name, ``positions`` (N, d) for particle and PIC runs, ``mass`` (M,) for finite
        volumes.  ``diagnostics``: a dict name -> float (name -> (S,) values for an
        ensemble; its state row then has a leading system axis).  The same kind of state and the same
        diagnostic names are required in every snapshot.  The rows are written first and
        ``/time`` is extended last, then the file is flushed.
        """
        f = self.file
        t_val = _diagnostic_value("t", t) if not isinstance(t, (int, float)) else float(t)
        if not math.isfinite(t_val):
            raise ValueError(f"t must be a finite number, got {t!r}")
        given = [(name, value) for name, value in (("positions", positions), ("mass", mass)) if value is not None]
        if state is not None:
            if self._state is None:
                raise ValueError("append_snapshot(t, state) needs the writer's state kind: "
                                 "RunWriter(..., state=POSITIONS or MASS), or pass positions= or mass=")
            given.insert(0, (self._state.name, state))
        if not given:
            raise ValueError("append_snapshot needs positions or mass")
        if len(given) > 1:
            raise ValueError("append_snapshot takes positions or mass, not both")
        (name, value), = given
        kind = STATE_KINDS[name]
        diagnostics = dict(diagnostics or {})
        values = {_check_diagnostic_name(k): _diagnostic_value(k, v, self.systems) for k, v in diagnostics.items()}
        group = f["state"]
        T = self.n_snapshots
        if T > 0:
            have = {n for n in f["diagnostics"] if n not in _RESERVED}
            if have != set(values):
                missing, extra = sorted(have - set(values)), sorted(set(values) - have)
                raise ValueError(f"diagnostics must have the same names in every snapshot; "
                                 f"missing {missing}, new {extra}")
            stored = next(k for k in STATE_KINDS if k in group)
            if stored != name:
                raise ValueError(f"this file holds {stored} snapshots, got {name}")
        if T > 0 and t_val < f["time"][T - 1]:
            raise ValueError(f"t must not decrease: the last snapshot is at t = {f['time'][T - 1]!r}, got {t_val!r}")
        row = self._state_row(kind, value)
        self._check_room(row.nbytes + 8192 * (len(values) + 1))
        with self._writing(f"writing snapshot {T + 1} (t = {t_val:g})"):
            # 1. the state row
            scales = [_index_scale(group, dim, n) for dim, n in zip(self._dims(kind), row.shape)]
            ds = self._series(group, name, row.shape, scales, snapshot=True)
            ds.resize((T + 1,) + ds.shape[1:])
            ds[T] = row
            # 2. the diagnostics rows
            system = self._system_axis(f["state"])
            for dname, dvalue in values.items():
                d = self._series(f["diagnostics"], dname, self._shape(), system, snapshot=False)
                d.resize((T + 1,) + d.shape[1:])
                d[T] = dvalue
            # 3. time, last
            time = f["time"]
            time.resize((T + 1,))
            time[T] = t_val
            f.flush()
        if self._tmp is not None:
            self._publish()  # the first snapshot is written: the new file replaces path now
        return T + 1

    #: What fixes the length of a state axis once static data are written: (dataset, word, source).
    _AXIS_SOURCES = {"particle": ("/state/weights", "rows", "the weights"), "cell": ("/grid/areas", "cells", "the grid")}

    def _dims(self, kind) -> tuple:
        return kind.dims if self.systems == 1 else ("system",) + kind.dims

    def _state_row(self, kind, value) -> np.ndarray:
        """``value`` as a float64 row of ``kind``, its lengths checked against the static data."""
        dims = self._dims(kind)
        shape = tuple(self.model.d if dim == "component" else (self.systems if dim == "system" else None)
                      for dim in dims)
        row = _float_array(kind.name, value, shape)
        f = self.file
        for dim, n in zip(dims, row.shape):
            source = self._AXIS_SOURCES.get(dim)
            if source is not None and source[0] in f and f[source[0]].shape[-1] != n:
                raise ValueError(f"{kind.name} must have {f[source[0]].shape[-1]} {source[1]} ({source[2]}), got {n}")
        stored = f["state"].get(kind.name)
        if stored is not None and stored.shape[1:] != row.shape:
            raise ValueError(f"/state/{kind.name} holds rows of shape {stored.shape[1:]}, got {row.shape}")
        return row

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
        name = next(k for k in STATE_KINDS if k in f["state"])
        return float(f["time"][T - 1]), f["state"][name][T - 1]
