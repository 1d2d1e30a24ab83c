"""Reading run files back: :func:`load` into a :class:`Result`, :func:`info`, and the
structural verification both do first (docs/hdf5.md, "Verification and errors")."""

from __future__ import annotations

import functools
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import h5py
import numpy as np

from .._cf import describe_diagnostic, describe_state
from .._filelock import FileBusyError, FileError
from .._provenance import config_digest
from .._version import __version__ as _mfpde_version
from ..model import Model
from ._format import (ENSEMBLE_FORMAT_VERSION, FORMAT, PROVENANCE_KEYS, STATUSES, STUDY_FORMAT, _RESERVED, DamagedFileError,
                      _attr_str, _damaged, _decode_config, _has_hdf5_signature, _read_model, _short)

if TYPE_CHECKING:
    import xarray


@dataclass
class Result:
    """A run read back from its HDF5 file (:func:`load`).

    ``times`` (T,); ``positions`` (T, N, d) for particles/PIC or ``mass`` (T, M) for
    finite volumes (the other is None); ``weights`` (N,); ``grid`` a dict with
    ``centers`` (M, d) and ``areas`` (M,); ``diagnostics`` name -> (T,) array;
    ``limit`` (points (L, d), weights (L,)); ``config`` the resolved config dict;
    ``diagnostic_attrs`` name -> {attribute: value} of the diagnostic series that have
    attributes (w_to_limit: the method used and its certified bound, docs/hdf5.md).

    An ensemble (``systems`` = S > 1, ``initial.systems``) has a system axis after time:
    ``positions`` (T, S, N, d), ``weights`` (S, N), each diagnostic (T, S), ``limit``
    ((S, L, d), (S, L)).
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
    wall_time: float = math.nan
    #: S, the number of independent systems (1 for a single-system run).
    systems: int = 1

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
        if self.positions is not None and self.systems > 1:
            state = f"{self.systems} systems of {self.positions.shape[2]} particles"
        elif self.positions is not None:
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

    def to_xarray(self) -> "xarray.Dataset":
        """The run as an :class:`xarray.Dataset` (needs ``xarray``).

        Dimensions ``time``, ``particle`` (particle and PIC runs) or ``cell`` (finite
        volumes), ``component`` (the d Cartesian components) and ``point`` (the atoms of
        the limit measure).  Variables: ``positions`` (time, particle, component) and
        ``weights`` (particle), or ``mass`` (time, cell), ``centers`` (cell, component) and
        ``areas`` (cell); every diagnostic as a series over ``time`` (the total-mass
        diagnostic is named ``mass_total`` in a finite-volume run, beside the cell
        masses); ``limit_points`` (point, component) and ``limit_weights`` (point).
        An ensemble adds the dimension ``system`` after ``time`` (positions, weights,
        diagnostics, limit).  Every variable has ``units`` and ``long_name`` attributes; the dataset's
        attributes hold the model parameters, the status and the resolved config (JSON).
        """
        import xarray as xr

        d = self.model.d if self.model is not None else None
        wasserstein = self.config.get("wasserstein", {}) if isinstance(self.config, dict) else {}
        data, coords = {}, {"time": ("time", np.asarray(self.times), describe_state("time", d))}
        coords["component"] = ("component", np.arange(d if d is not None else 0))
        system = ("system",) if self.systems > 1 else ()
        if system:
            coords["system"] = ("system", np.arange(self.systems))
        if self.positions is not None:
            n = self.positions.shape[-2]
            coords["particle"] = ("particle", np.arange(n))
            data["positions"] = (("time", *system, "particle", "component"), self.positions,
                                 describe_state("positions", d))
            if self.weights is not None:
                data["weights"] = ((*system, "particle"), self.weights, describe_state("weights", d))
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
            coords["point"] = ("point", np.arange(weights.shape[-1]))
            data["limit_points"] = ((*system, "point", "component"), points, describe_state("points", d))
            data["limit_weights"] = ((*system, "point"), weights, describe_state("limit_weights", d))
        for name, series in self.diagnostics.items():
            key = "mass_total" if name == "mass" and "mass" in data else name
            data[key] = (("time", *system), np.asarray(series), describe_diagnostic(name, wasserstein))
        attrs = {"path": self.path, "status": self.status, "mfpde_version": self.mfpde_version,
                 "created": self.created, "config": json.dumps(self.config), "kind": self.kind}
        if self.model is not None:
            attrs.update(d=self.model.d, beta=float(self.model.beta), normalization=self.model.normalization)
        return xr.Dataset(data, coords=coords, attrs=attrs)


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
    if version > ENSEMBLE_FORMAT_VERSION:
        f.close()
        raise FileError(f"{path} has format_version {version}; this mfpde ({_mfpde_version}) reads "
                        f"up to {ENSEMBLE_FORMAT_VERSION}: upgrade mfpde")
    return f


@dataclass(frozen=True)
class _Layout:
    """What :func:`_verify` found: T finished snapshots of ``kind`` ("positions" | "mass" | None)."""

    T: int
    kind: str | None
    d: int
    times: np.ndarray
    config: dict
    systems: int = 1


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
    S = _systems_of(f, path)
    lead = 0 if S == 1 else 1  # a system axis after time
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
    cfg_initial = config.get("initial") if isinstance(config.get("initial"), dict) else {}
    if cfg_initial.get("systems", 1) != S:
        raise DamagedFileError(f"{path}: the config's initial.systems = {cfg_initial.get('systems', 1)!r} but "
                               f"the file holds {S} system(s)")
    if S > 1 and kind == "mass":
        raise DamagedFileError(f"{path}: an ensemble of {S} systems must hold /state/positions, found /state/mass")
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
        pos = _dataset(state, "positions", path, 3 + lead)
        if pos.shape[0] < T or pos.shape[-1] != d or (lead and pos.shape[1] != S):
            want = f"({T}, N, {d})" if S == 1 else f"({T}, {S}, N, {d})"
            raise DamagedFileError(f"{path}: /state/positions has shape {pos.shape}; expected {want} "
                                   f"for {T} snapshots")
        N = pos.shape[-2]
        if "weights" in state:
            w = _dataset(state, "weights", path, 1 + lead)
            if w.shape != pos.shape[1:-1]:
                raise DamagedFileError(f"{path}: /state/weights has shape {w.shape} for {N} particles"
                                       + (f" in each of {S} systems" if S > 1 else ""))
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
            pts = _dataset(lim, "points", path, 2 + lead)
            lw = _dataset(lim, "weights", path, 1 + lead)
            if pts.shape[-1] != d or lw.shape != pts.shape[:-1] or (lead and pts.shape[0] != S):
                raise DamagedFileError(f"{path}: /limit/points {pts.shape} and /limit/weights {lw.shape} "
                                       f"do not describe one measure in R^{d}")
    for name in f["diagnostics"]:
        if name in _RESERVED:
            continue
        ds = _dataset(f["diagnostics"], name, path, 1 + lead)
        if lead and ds.shape[1] != S:
            raise DamagedFileError(f"{path}: /diagnostics/{name} has shape {ds.shape}: not one column per system ({S})")
        if ds.shape[0] < T:
            raise DamagedFileError(f"{path}: /diagnostics/{name} has {ds.shape[0]} entries for {T} snapshots")
    for group, name, n in (("state", "particle", state["positions"].shape[-2] if kind == "positions" else None),
                           ("state", "system", S if S > 1 else None),
                           ("state", "component", d if kind == "positions" else None),
                           ("state", "cell", state["mass"].shape[1] if kind == "mass" else None),
                           ("model", "row", d), ("model", "column", d)):
        if n is not None and name in f[group] and f[group][name].shape != (n,):
            raise DamagedFileError(f"{path}: /{group}/{name} has shape {f[group][name].shape}, not ({n},)")
    return _Layout(T=T, kind=kind, d=d, times=times, config=config, systems=S)


def _systems_of(f: h5py.File, path) -> int:
    """S from the root attribute ``systems`` (absent: 1), checked against ``format_version``."""
    raw = f.attrs.get("systems", 1)
    try:
        S = int(raw)
    except (TypeError, ValueError):
        raise DamagedFileError(f"{path}: the systems attribute is not an integer") from None
    if S < 1 or S != raw:
        raise DamagedFileError(f"{path}: the systems attribute must be an integer >= 1, got {raw!r}")
    if S > 1 and int(f.attrs.get("format_version", 0)) < ENSEMBLE_FORMAT_VERSION:
        raise DamagedFileError(f"{path}: an ensemble ({S} systems) needs format_version "
                               f"{ENSEMBLE_FORMAT_VERSION}")
    return S


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
    from .._filelock import is_locked

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
            diagnostic_attrs=diagnostic_attrs, wall_time=float(f.attrs.get("wall_time", math.nan)),
            systems=layout.systems,
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
        from ..study import study_info

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
            N, d = state["positions"].shape[-2:]
            ensemble = f"{layout.systems} systems of " if layout.systems > 1 else ""
            lines.append(f"state: positions of {ensemble}{N} particles in R^{d}")
        elif layout.kind == "mass":
            lines.append(f"state: mass on {state['mass'].shape[1]} cells")
        if T:
            lines.append(f"snapshots: {T}, t = {times[0]:g} .. {times[-1]:g}")
        else:
            lines.append("snapshots: 0")
        if "limit" in f and "points" in f["limit"]:
            per = " per system" if layout.systems > 1 else ""
            lines.append(f"limit: {f['limit']['points'].shape[-2]} points{per}")
        names = [n for n in f["diagnostics"] if n not in _RESERVED]
        if names:
            ensemble = layout.systems > 1
            lines.append("diagnostics (last value" + (", mean over systems):" if ensemble else "):"))
            width = max(len(n) for n in names)
            for n in names:
                last = f"{np.mean(f['diagnostics'][n][T - 1]):.6g}" if T else "-"
                lines.append(f"  {n:<{width}}  {last}")
        return "\n".join(lines)
