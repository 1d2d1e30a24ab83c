"""Convergence-rate studies: sweep config keys, run every combination, fit rates.

A study is a base config with a ``[study]`` section (docs/study.md)::

    [study]
    sweep = { "model.beta" = [10, 30, 100], "initial.seed" = [0, 1, 2] }   # Cartesian product
    fit = "model.beta"         # the axis against which rates are fitted
    metric = "w_to_limit"      # the diagnostic whose minimum over t is studied

Layout on disk (one file per run plus an index file): ``study.h5`` is the index; each run
is an ordinary mfpde run file ``study.runs/<run_id>.h5`` (same layout as ``mfpde run``),
reachable from the index as the external link ``/runs/<run_id>``.  The index holds
``/summary`` (one row per run: the swept values, ``metric_min``, ``t_min``,
``metric_final``, ``metric_sem``, ``decay_rate``, ``wall_time``, ``status``; for an
ensemble run the metric is the mean over its systems and ``metric_sem`` the standard
error of ``metric_final``) and the fitted rates as
attributes of ``/summary``.  A run file is reused only when its stored config equals
the requested one: a complete one is read back (``skipped``), an interrupted one resumed;
a file whose config differs (an earlier study with other values into the same output) is
recomputed from t = 0 and its row's ``note`` says which keys differed.  One failing run
is reported in its row and does not stop the others.  The index is locked
(``<index>.lock``) for the study's life: a second study into it is refused.

Execution: serially in this process, in a private pool of spawned worker processes
(``workers > 1``; pipes only, no network port), or on an existing Dask scheduler
(``scheduler=ADDRESS``); each worker caps numba's threads so that workers do not
oversubscribe the cores.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._provenance import canonical_json, differing_keys
from .config import Config, ConfigError, load_config, set_dotted
from .io import STUDY_FORMAT

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .io import Result

__all__ = ["RunSpec", "StudyResult", "StudyLocked", "expand", "run_study", "fit_rates", "load_study",
           "summarize_run", "stored_config_differs", "study_sweep", "n_runs"]

SUMMARY_NUMERIC = ("metric_min", "t_min", "metric_final", "metric_sem", "decay_rate", "wall_time")


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: its id, swept values (dotted key -> value), resolved config dict."""

    run_id: str
    values: dict
    config: dict
    path: str


@dataclass
class StudyResult:
    """A study read back (:func:`load_study`): the summary table and the fitted rates."""

    path: str
    axes: list
    fit: str
    metric: str
    summary: dict = field(default_factory=dict)  # column -> (R,) array
    rates: dict = field(default_factory=dict)
    run_paths: list = field(default_factory=list)
    status: str = "unknown"

    def table(self) -> str:
        """The summary as aligned text, one row per run."""
        cols = list(self.axes) + ["metric_min", "t_min", "metric_final", "wall_time", "status"]
        rows = [[_fmt(self.summary[c][i]) for c in cols] for i in range(len(self.summary["status"]))]
        widths = [max(len(c), *(len(r[j]) for r in rows)) if rows else len(c) for j, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)

    def swept_values(self) -> list[dict]:
        """Per run, the swept values as written in the config's ``[study] sweep`` (``3``, not
        ``3.0``); read from the index file's stored config, else from the summary columns."""
        return _swept_values(self)

    def to_dataframe(self) -> "pandas.DataFrame":  # noqa: F821
        """The summary as a :class:`pandas.DataFrame` (needs ``pandas``), one row per run.

        Columns: ``run_id``, one column per swept key (``model.beta``, ... with the values
        as written in the sweep), ``metric_min``, ``t_min``, ``metric_final``, ``metric_sem``,
        ``decay_rate``, ``wall_time``, ``status``, ``error`` and ``path`` (the run's file).
        The fitted rates are in ``df.attrs``.
        """
        import pandas as pd

        n = len(self.summary.get("status", ()))
        values = _swept_values(self)
        columns = {"run_id": list(self.summary.get("run_id", [f"run_{i:04d}" for i in range(n)]))}
        for axis in self.axes:
            columns[axis] = [v[axis] for v in values]
        for name in SUMMARY_NUMERIC:
            if name in self.summary:
                columns[name] = np.asarray(self.summary[name], dtype=float)
        for name in ("status", "error"):
            if name in self.summary:
                columns[name] = [str(v) for v in self.summary[name]]
        columns["path"] = list(self.run_paths) if len(self.run_paths) == n else [""] * n
        df = pd.DataFrame(columns)
        df.index.name = "run"
        df.attrs = {"metric": self.metric, "fit": self.fit, **{k: v for k, v in self.rates.items()}}
        return df


def _swept_values(study) -> list[dict]:
    n = len(study.summary.get("status", ()))
    sweep = None
    try:
        import h5py

        with h5py.File(study.path, "r") as f:
            sweep = json.loads(f.attrs["config"]).get("study", {}).get("sweep")
    except (OSError, KeyError, ValueError, TypeError):
        sweep = None
    if isinstance(sweep, dict) and list(sweep) == list(study.axes):
        combos = list(itertools.product(*(sweep[a] for a in study.axes)))
        if len(combos) == n:
            return [dict(zip(study.axes, c)) for c in combos]
    out = []
    for i in range(n):
        row = {}
        for a in study.axes:
            v = study.summary[a][i]
            if isinstance(v, (float, np.floating)) and float(v).is_integer():
                v = int(v)
            elif isinstance(v, np.generic):
                v = v.item()
            row[a] = v
        out.append(row)
    return out


def _fmt(v) -> str:
    if isinstance(v, (bytes, np.bytes_)):
        v = v.decode()
    if isinstance(v, (float, np.floating)):
        return f"{v:.6g}"
    return str(v)


def runs_dir(study_path) -> Path:
    """Where the run files of ``study_path`` live: ``<stem>.runs/`` beside it."""
    p = Path(study_path)
    return p.with_name(p.stem + ".runs")


def study_sweep(config: Config) -> dict:
    """The sweep of a study config, {axis: values}; ConfigError when it has none."""
    if config.study is None or not config.study.sweep:
        raise ConfigError(config.source, "study", "a study needs a [study] section with a non-empty sweep")
    return config.study.sweep


def n_runs(config: Config) -> int:
    """How many runs a study config makes (the size of the product of its sweep axes)."""
    return math.prod(len(values) for values in study_sweep(config).values())


def expand(config: Config, study_path: str | os.PathLike) -> list[RunSpec]:
    """The runs of a study: the Cartesian product of the sweep axes, in the order given.

    Every run's config is built (``load_config``) here, before any work: the one check of
    the runs of a study (each swept value alone was checked when the config was loaded).
    """
    axes = list(study_sweep(config))
    base = config.to_dict()
    base.pop("study", None)
    directory = runs_dir(study_path).resolve()
    specs = []
    for index, combo in enumerate(itertools.product(*(config.study.sweep[a] for a in axes))):
        run_id = f"run_{index:04d}"
        d = json.loads(json.dumps(base))
        for key, value in zip(axes, combo):
            set_dotted(d, key, value, source=config.source)
        d["output"]["path"] = str(directory / f"{run_id}.h5")
        # validate every run before any work starts; the resolved form is what a run file stores
        d = load_config(d).to_dict()
        specs.append(RunSpec(run_id, dict(zip(axes, combo)), d, d["output"]["path"]))
    return specs


def summarize_run(result: Result, metric: str, t_min_rtol: float = 0.0) -> dict:
    """metric_min (min over t), t_min (its time), metric_final, decay_rate (least-squares
    slope of -log metric against t from t = 0 to t_min: the exponential phase), metric_sem.

    An ensemble's metric (T, S) is summarized through its mean over the S systems;
    ``metric_sem`` is the standard error of that mean at the last snapshot,
    std(ddof = 1) / sqrt(S) (NaN for a single system).

    t_min is the earliest snapshot time at which the metric is within a factor
    ``1 + t_min_rtol`` of its minimum: with ``t_min_rtol = 0`` the plain argmin; with a
    small positive value, the time the curve reaches its plateau, well defined when the
    curve decreases onto a plateau where the plain argmin is set by round-off-sized wiggles.
    """
    series = np.asarray(result.diagnostics[metric], dtype=float)
    times = np.asarray(result.times, dtype=float)
    sem = math.nan
    if series.ndim == 2:  # an ensemble (T, S): the mean over systems, and its standard error at the end
        S = series.shape[1]
        if len(series) and S > 1:
            sem = float(np.std(series[-1], ddof=1) / math.sqrt(S))
        series = series.mean(axis=1)
    finite = np.isfinite(series)
    if not finite.any():
        return {"metric_min": math.nan, "t_min": math.nan, "metric_final": math.nan, "metric_sem": sem,
                "decay_rate": math.nan}
    k_min = int(np.nanargmin(np.where(finite, series, np.inf)))
    within = finite & (series <= series[k_min] * (1.0 + t_min_rtol))
    k = int(np.argmax(within))  # the first such snapshot (k_min itself when t_min_rtol = 0 and no tie)
    decay = math.nan
    phase = slice(0, k + 1)
    if k >= 2 and np.all(series[phase] > 0):
        decay = -float(np.polyfit(times[phase], np.log(series[phase]), 1)[0])
    return {"metric_min": float(series[k_min]), "t_min": float(times[k]),
            "metric_final": float(series[-1]), "metric_sem": sem, "decay_rate": decay}


def stored_config_differs(stored: dict, requested: dict) -> list[str]:
    """Dotted keys in which a run file's stored config differs from the requested resolved
    config (``output.path`` aside); empty when the file's numbers answer the request."""
    if not isinstance(stored, dict) or not stored:
        return ["config"]
    try:
        if canonical_json(stored) == canonical_json(requested):
            return []
    except (TypeError, ValueError):
        return ["config"]
    return differing_keys(stored, requested) or ["config"]


def execute_run(spec: RunSpec, metric: str, numba_threads: int | None = None, t_min_rtol: float = 0.0,
                on_step: Callable[[float], None] | None = None) -> dict:
    """Run (or skip, or resume) one run of a study and return its summary row.

    A finished run file is reused (``status = "skipped"``) and an interrupted one resumed
    only when its stored config equals ``spec.config``; otherwise the run is recomputed
    from t = 0 and ``row["note"]`` names the keys that differed.  Never raises for a
    failing run: the row says ``status = "failed"`` and ``error``.
    """
    from .io import FileBusyError, load
    from .runner import run

    if numba_threads:
        import numba

        numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
    row = {"run_id": spec.run_id, "values": spec.values, "error": "", "note": ""}
    path = spec.path
    try:
        existing = None
        if os.path.exists(path):
            try:
                existing = load(path)
            except FileBusyError:
                raise
            except (OSError, ValueError):
                # the study's own run file (under the index lock), unreadable: the writer would
                # refuse to replace a file it cannot recognise, so it goes first
                os.remove(path)
                row["note"] = "recomputed: the stored run file could not be read"
        if existing is not None:
            differ = stored_config_differs(existing.config, spec.config)
            if differ:
                shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
                row["note"] = f"recomputed: the stored run file's config differs in {shown}"
                existing = None
        if existing is not None and existing.complete:
            result, status = existing, "skipped"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            resume = existing is not None and existing.n_snapshots > 0
            result = run(spec.config, resume=resume, force=not resume, on_step=on_step)
            status = "complete"
        row.update(summarize_run(result, metric, t_min_rtol))
        row["wall_time"] = result.wall_time  # the runner's, summed over resumed attempts
        row["status"] = status
    except Exception as exc:  # one failing run must not stop the study
        row.update({k: math.nan for k in SUMMARY_NUMERIC})
        row["status"] = "failed"
        row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        row["traceback"] = traceback.format_exc()
    return row


def _linear_fit(x, y):
    """Least-squares slope of y against x and its standard error (NaN if < 3 points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    if len(x) < 3:
        return float(slope), math.nan
    resid = y - (slope * x + intercept)
    s2 = resid @ resid / (len(x) - 2)
    return float(slope), float(math.sqrt(s2 / np.sum((x - x.mean()) ** 2)))


def fit_rates(values: dict, metric_min: ArrayLike, fit: str) -> dict:
    """Rates of metric_min against the fit axis.

    ``slope``, ``slope_stderr``: pooled least squares of log metric_min on log(fit value);
    ``slope_vs_log_ratio`` (+ stderr): on log(log(v)/v), the low-temperature reference
    sqrt(log beta / beta) having slope 1/2 there; ``slope_groups_mean``, ``slope_ci95``:
    the slope fitted separately in each group of the other axes (e.g. each seed), their
    mean and the half-width of its 95% t-interval (NaN with fewer than 2 groups).
    """
    from scipy import stats

    if not fit:
        return {}
    x = np.asarray(values[fit], dtype=float)
    y = np.asarray(metric_min, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    out = {"fit": fit}
    out["slope"], out["slope_stderr"] = _linear_fit(np.log(x[ok]), np.log(y[ok]))
    ratio_ok = ok & (x > 1)
    out["slope_vs_log_ratio"], out["slope_vs_log_ratio_stderr"] = _linear_fit(
        np.log(np.log(x[ratio_ok]) / x[ratio_ok]), np.log(y[ratio_ok])
    )
    others = [a for a in values if a != fit]
    groups = {}
    for i in np.flatnonzero(ok):
        groups.setdefault(tuple(_fmt(values[a][i]) for a in others), []).append(i)
    slopes = [_linear_fit(np.log(x[idx]), np.log(y[idx]))[0] for idx in groups.values() if len(idx) >= 2]
    slopes = [s for s in slopes if math.isfinite(s)]
    out["slope_groups_mean"] = float(np.mean(slopes)) if slopes else math.nan
    if len(slopes) >= 2:
        sem = np.std(slopes, ddof=1) / math.sqrt(len(slopes))
        out["slope_ci95"] = float(stats.t.ppf(0.975, len(slopes) - 1) * sem)
    else:
        out["slope_ci95"] = math.nan
    return out


def _write_index(path, config: Config, specs, rows, rates, status):
    """(Re)write the index file: /summary, /runs/<id> external links, attributes."""
    import h5py

    from ._version import __version__

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    axes = list(config.study.sweep)
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = STUDY_FORMAT
        f.attrs["format_version"] = 1
        f.attrs["mfpde_version"] = __version__
        f.attrs["config"] = config.to_json()
        f.attrs["status"] = status
        f.attrs["runs_dir"] = os.path.relpath(runs_dir(path), path.parent)
        summary = f.create_group("summary")
        run = summary.create_dataset("run", data=np.arange(len(specs)))
        run.make_scale("run")
        columns = {"run_id": [s.run_id for s in specs]}
        for a in axes:
            columns[a] = [s.values[a] for s in specs]
        for c in SUMMARY_NUMERIC:
            columns[c] = [rows[s.run_id].get(c, math.nan) if s.run_id in rows else math.nan for s in specs]
        columns["status"] = [rows[s.run_id]["status"] if s.run_id in rows else "pending" for s in specs]
        columns["error"] = [rows[s.run_id].get("error", "") if s.run_id in rows else "" for s in specs]
        columns["note"] = [rows[s.run_id].get("note", "") if s.run_id in rows else "" for s in specs]
        for name, col in columns.items():
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in col):
                data = np.asarray(col, dtype=float)
            else:
                data = np.asarray([str(v) for v in col], dtype=h5py.string_dtype())
            ds = summary.create_dataset(name, data=data)
            ds.dims[0].attach_scale(run)
        summary.attrs["axes"] = json.dumps(axes)
        summary.attrs["metric"] = config.study.metric
        for key, value in rates.items():
            summary.attrs[key] = value
        runs = f.create_group("runs")
        for s in specs:
            if os.path.exists(s.path):
                runs[s.run_id] = h5py.ExternalLink(os.path.relpath(s.path, path.parent), "/")
    os.replace(tmp, path)


#: Seconds to wait for an existing Dask scheduler to answer before giving up with one line.
SCHEDULER_TIMEOUT = 8.0


class StudyLocked(ValueError):
    """Another study holds the lock on this index file (one line; the CLI exits 2)."""


class _IndexLock:
    """An exclusive ``fcntl.flock`` on ``<index>.lock`` beside the index, held for the
    study's life.  A second study into the same index is refused at once.  The lock file
    is removed on release; a lock taken on a file that was meanwhile removed is retried."""

    def __init__(self, index):
        self.path = Path(os.fspath(index) + ".lock")
        self.fd = None

    def acquire(self):
        import fcntl

        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StudyLocked(f"{self.path.with_suffix('')}: another study is writing this index "
                                  f"(lock {self.path.name} is held); wait for it or choose another -o") from None
            except OSError as exc:
                os.close(fd)
                raise OSError(f"{self.path}: cannot lock the study index ({exc.strerror or exc})") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return self
            os.close(fd)  # the holder removed it between our open and our lock: try again

    def release(self):
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)  # closing drops the flock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def run_study(
    config: Config | str | os.PathLike | dict,
    *,
    output: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    workers: int = 1,
    scheduler: str | None = None,
    on_run_done: Callable[[dict], None] | None = None,
    on_step: Callable[[float], None] | None = None,
) -> StudyResult:
    """Run every combination of a study and write its index file (see module docstring).

    ``workers > 1`` runs in a private pool of that many worker processes (spawned by this
    process, talking to it over pipes: no network port; numba threads per worker =
    cores // workers); ``scheduler`` submits to an existing Dask scheduler instead (an
    unreachable one raises ``ValueError`` within ``SCHEDULER_TIMEOUT`` seconds, before
    any file is written).  The index is locked for the study's life (``<index>.lock``);
    a second study into the same index raises :class:`StudyLocked`.  ``on_step(t)`` is
    called at every solver step of runs executed in this process, and with t = NaN about
    every 0.25 s while pool workers run (an exception it raises stops the study).  Returns
    the :class:`StudyResult` read back.
    """
    if not isinstance(config, Config) or overrides:
        config = load_config(config, overrides)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    path = Path(output if output is not None else config.output.path)
    specs = expand(config, path)  # validates every run first
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the directory {path.parent} does not exist")
    metric = config.study.metric
    t_min_rtol = config.study.t_min_rtol
    rows: dict[str, dict] = {}
    with _executor(workers, scheduler) as submit, _IndexLock(path):
        _write_index(path, config, specs, rows, {}, "running")

        def record(row):
            rows[row["run_id"]] = row
            if on_run_done is not None:
                on_run_done(row)
            _write_index(path, config, specs, rows, {}, "running")

        status = "interrupted"
        try:
            if submit is None:
                for spec in specs:
                    record(execute_run(spec, metric, t_min_rtol=t_min_rtol, on_step=on_step))
            else:
                for row in submit(specs, metric, t_min_rtol, on_step):
                    record(row)
            status = "complete"
        finally:
            ordered = [rows.get(s.run_id, {}) for s in specs]
            values = {a: [s.values[a] for s in specs] for a in config.study.sweep}
            rates = fit_rates(values, [r.get("metric_min", math.nan) for r in ordered], config.study.fit)
            _write_index(path, config, specs, rows, rates, status)
    return load_study(path)


class _executor:
    """Where the runs execute: ``None`` (serially, here), a private process pool, or an
    existing Dask scheduler.  Entered before any file is written, so that a scheduler that
    does not answer leaves nothing behind."""

    def __init__(self, workers: int, scheduler: str | None):
        self.workers, self.scheduler = workers, scheduler
        self.pool = self.client = None

    def __enter__(self):
        cores = os.cpu_count() or 1
        if self.scheduler is not None:
            self.client = _connect(self.scheduler)
            n_workers = max(1, len(self.client.scheduler_info().get("workers", {})))
            threads = max(1, cores // n_workers)
            return lambda specs, metric, rtol, poll: self._dask(specs, metric, rtol, threads)
        if self.workers == 1:
            return None
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawned (not forked: numba's and HDF5's threads and locks do not survive a fork),
        # connected to this process by pipes only: private to the study, no port, no HTTP
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init)
        threads = max(1, cores // self.workers)
        return lambda specs, metric, rtol, poll: self._pool(specs, metric, rtol, threads, poll)

    def _pool(self, specs, metric, rtol, threads, poll):
        from concurrent.futures import FIRST_COMPLETED, wait

        futures = {self.pool.submit(execute_run, spec, metric, threads, rtol): spec for spec in specs}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: futures[f].run_id):
                yield _row_of(future, futures[future])
            if poll is not None and pending:
                poll(math.nan)  # a stop request is honoured while the workers run

    def _dask(self, specs, metric, rtol, threads):
        from distributed import as_completed

        futures = {self.client.submit(execute_run, spec, metric, threads, rtol, pure=False): spec
                   for spec in specs}
        for future in as_completed(list(futures)):
            yield _row_of(future, futures[future])

    def __exit__(self, exc_type, exc, tb):
        if self.pool is not None:
            if exc_type is None:
                self.pool.shutdown(wait=True)
            else:  # stopped or failed: do not wait for the runs in flight (they resume next time)
                processes = list((getattr(self.pool, "_processes", None) or {}).values())
                self.pool.shutdown(wait=False, cancel_futures=True)
                for proc in processes:
                    if proc.is_alive():
                        proc.terminate()
                for proc in processes:
                    proc.join(timeout=10)
        if self.client is not None:
            self.client.close()


def _row_of(future, spec: RunSpec) -> dict:
    """The row a worker returned, or a failed row when the worker itself died."""
    try:
        return future.result()
    except Exception as exc:  # a worker process lost (BrokenProcessPool), a Dask worker gone
        row = {"run_id": spec.run_id, "values": spec.values, "note": "", "status": "failed",
               "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
        row.update({k: math.nan for k in SUMMARY_NUMERIC})
        return row


def _worker_init():
    """A pool worker leaves SIGINT (a Ctrl-C reaches the whole process group) to the study
    process, which stops the pool; the worker's run is resumed next time."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: Address schemes a scheduler in another process can be reached by (``inproc://`` cannot).
_SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def _check_address(address: str):
    """``(scheme, host, port)`` of ``[scheme://]host:port``, checked before Dask sees it (a
    malformed address leaves Dask's half-built client hanging for 16 s at exit)."""
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else "tcp://" + address)
    if parts.scheme not in _SCHEDULER_SCHEMES:
        raise ValueError(f"the scheme must be one of {', '.join(s + '://' for s in _SCHEDULER_SCHEMES)}, "
                         f"got {parts.scheme + '://'!r}")
    try:
        port = parts.port
    except ValueError as exc:  # out of range, not a number
        raise ValueError(f"bad port ({exc})") from None
    if not parts.hostname or port is None:
        raise ValueError("expected [scheme://]host:port, e.g. tcp://127.0.0.1:8786")
    return parts.scheme, parts.hostname, port


def _probe(address: str) -> None:
    """One TCP connection attempt to a ``tcp://`` or ``tls://`` address: a refused port fails
    at once (Dask's client would retry it until its timeout)."""
    import socket

    scheme, host, port = _check_address(address)
    if scheme in ("tcp", "tls"):
        with socket.create_connection((host, port), timeout=SCHEDULER_TIMEOUT):
            pass


def _connect(address: str):
    """A Dask client on ``address``, or one ``ValueError`` line within SCHEDULER_TIMEOUT seconds."""
    import logging

    from distributed import Client

    quiet = [logging.getLogger(name) for name in ("distributed", "distributed.client", "distributed.comm")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)
    try:
        _check_address(address)
    except ValueError as exc:
        raise ValueError(f"--scheduler {address}: not a Dask scheduler address: {exc}") from None
    try:
        _probe(address)
        return Client(address, timeout=SCHEDULER_TIMEOUT)
    except Exception as exc:  # OSError, TimeoutError, ValueError ("not enough values to unpack"), ...
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"--scheduler {address}: cannot reach a Dask scheduler there "
                         f"(within {SCHEDULER_TIMEOUT:g} s): {text[:200]}") from None
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


def study_info(path) -> str:
    """A human-readable summary of a study index (``mfpde info study.h5``): the sweep, the
    state of each run, the fitted rates and the summary table."""
    import h5py

    study = load_study(path)
    with h5py.File(path, "r", locking=False) as f:
        version = _fmt(f.attrs.get("mfpde_version", "?"))
        runs = _fmt(f.attrs.get("runs_dir", "?"))
        try:
            sweep = json.loads(_fmt(f.attrs.get("config", "{}"))).get("study", {}).get("sweep", {})
        except (TypeError, ValueError, AttributeError):
            sweep = {}
    status = [str(v) for v in study.summary["status"]]
    counts = ", ".join(f"{status.count(s)} {s}" for s in ("complete", "skipped", "failed", "pending")
                       if status.count(s))
    lines = [f"{study.path}: mfpde study index, written by mfpde {version}; run files in {runs}/",
             f"status: {study.status}; {len(status)} runs ({counts or 'none'})",
             "sweep: " + "; ".join(f"{k} = {v}" for k, v in sweep.items()),
             f"metric: min over t of {study.metric}"]
    r = study.rates
    if r.get("fit"):
        lines.append(f"fit against log {r['fit']}: slope = {_fmt(r.get('slope'))} "
                     f"+- {_fmt(r.get('slope_stderr'))} (stderr)")
    lines.append(study.table())
    return "\n".join(lines)


def load_study(path: str | os.PathLike) -> StudyResult:
    """Read a study index file: the summary columns and the fitted rates."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such study file")
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != STUDY_FORMAT:
            raise ValueError(f"{path} is not an mfpde study file (format attribute {f.attrs.get('format')!r})")
        s = f["summary"]
        axes = json.loads(s.attrs["axes"])
        summary = {}
        for name in s:
            if name == "run":
                continue
            data = s[name][()]
            if data.dtype.kind in "OS":
                data = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in data], dtype=object)
            summary[name] = data
        rates = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in s.attrs.items()
                 if k not in ("axes", "metric")}
        base = Path(path).parent
        run_paths = [str(base / f.attrs["runs_dir"] / f"{rid}.h5") for rid in summary["run_id"]]
        return StudyResult(path=path, axes=axes, fit=str(rates.get("fit", "")), metric=str(s.attrs["metric"]),
                           summary=summary, rates=rates, run_paths=run_paths, status=str(f.attrs["status"]))
