"""One run: config -> model + initial measure -> solver -> HDF5 writer (+ diagnostics).

``run(config)`` is ``mfpde.run``: it validates everything first, writes
``output.path`` snapshot by snapshot (each flushed), and returns the :class:`Result`
read back from the file.  Interrupted by an exception or a signal, the file is left with
status ``"interrupted"`` and every finished snapshot; ``run(..., resume=True)`` continues
it from its last snapshot and, for fixed-step integrators, reproduces the uninterrupted
run bit for bit (each interval between snapshots is stepped the same way).
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import time
from typing import Callable, Sequence

import numpy as np

from .config import Config, ConfigError, check_method, load_config
from .diagnostics import evaluate, make_context, make_ensemble_context, w_to_limit_attrs
from .io import FORMAT, STUDY_FORMAT, Result, RunWriter, check_replaceable, load
from .kernels.truncated import OUTCOMES as _TRUNCATION_OUTCOMES
from .methods import Method, get_method

__all__ = ["run", "check_output", "snapshot_times"]

#: Cost-matrix budget for w_to_limit at every snapshot (bytes): above it, ``auto`` uses the
#: certified sparse method (never sliced).
W_MEMORY_BUDGET = 2**28


def snapshot_times(t_end: float, save_every: float) -> np.ndarray:
    """0, save_every, 2 save_every, ... up to t_end, with t_end itself always last."""
    n = int(math.floor(t_end / save_every * (1 + 1e-12)))
    times = save_every * np.arange(n + 1)
    if t_end - times[-1] > 1e-12 * t_end:
        times = np.append(times, t_end)
    else:
        times[-1] = t_end
    return times


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (the same resolved path, or hard links of one file)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(config: Config, path: str | os.PathLike, *, resume: bool = False, study: bool = False,
                 force: bool = False) -> None:
    """Refuse an output path that cannot or must not be written, before anything is made.

    Its directory must exist; it must not be the config file itself or ``initial.path``
    (input and output resolving to one file); an existing file must be replaceable
    (:func:`mfpde.io.check_replaceable`; ``study=True``: an existing file must be an mfpde
    study index).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output.path: the directory {directory} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"output.path: {path} is a directory")
    source = config.source
    if not source.startswith("<") and _same_file(path, source):
        raise ValueError(f"output.path: {path} is the config file {source}; choose another output")
    if config.initial.kind == "file" and _same_file(path, config.initial.path):
        raise ValueError(f"output.path: {path} is initial.path, the file the initial state is read from; "
                         "choose another output")
    if not resume:
        check_replaceable(path, force=force, fmt=STUDY_FORMAT if study else FORMAT, key="output.path: ")


#: Working copies of the state a run holds at once (integrator stages, the field, diagnostics).
_STATE_COPIES = 16


def _memory_bytes() -> int:
    """The machine's physical memory in bytes (a bound no run can exceed)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 2**40


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB"


def _check_resources(config: Config, method: type[Method], n_snapshots: int, path: str) -> None:
    """Refuse a run whose state cannot fit in memory or whose file cannot fit on its disk."""
    size, what, key = method.state_size(config)
    need, have = _STATE_COPIES * 8.0 * size, _memory_bytes()
    if need > have:
        raise ConfigError(config.source, key, f"needs about {_gb(need)} of memory ({_STATE_COPIES} copies of "
                                              f"{what} in float64), this machine has {_gb(have)}")
    file_size = n_snapshots * 8.0 * method.snapshot_size(config)
    directory = os.path.dirname(os.path.abspath(path))
    free = shutil.disk_usage(directory).free
    if os.path.isfile(path):
        free += os.path.getsize(path)
    if file_size > free:
        raise ConfigError(config.source, "output.save_every",
                          f"gives {n_snapshots} snapshots of {what}, about {_gb(file_size)}; {directory} has "
                          f"{_gb(free)} free")


def run(
    config: str | os.PathLike | dict | Config,
    *,
    output: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    resume: bool = False,
    force: bool = False,
    on_step: Callable[[float], None] | None = None,
    progress: bool = False,
) -> Result:
    """Run the config (a file path, a dict or a :class:`~mfpde.config.Config`).

    Parameters
    ----------
    output : str or os.PathLike, optional
        Overrides ``output.path``.
    overrides : list of "section.key=value"
        Applied as the CLI's ``--set``.
    resume : bool
        Continue an interrupted file from its last snapshot.
    force : bool
        Overwrite an existing file.
    on_step : callable(t), optional
        Called after every solver step (progress bars).
    progress : bool
        Show a progress bar over model time (``tqdm.auto``: a widget in Jupyter, text in a
        terminal).

    Returns
    -------
    Result
        The :class:`~mfpde.io.Result` of the written file, read back.
    """
    if isinstance(config, Config) and not overrides:
        check_method(config)  # built in Python: the loader's method rules have not run on it
    else:
        config = load_config(config, overrides)
    if output is not None:
        config = config.replace(output=config.output.replace(path=os.fspath(output)))
    method_class = get_method(config.solver.method)
    times = snapshot_times(config.solver.t_end, config.output.save_every)
    path = config.output.path
    if progress:
        return _with_progress_bar(config, path, resume, force, on_step)
    check_output(config, path, resume=resume, force=force)
    _check_resources(config, method_class, len(times), path)
    stored = _check_resumable(path, config, method_class, times) if resume else None  # before the file is opened
    method = method_class(config)
    names = config.output.diagnostics
    systems = config.initial.systems

    def context_of(state0):
        options = dict(memory_budget=W_MEMORY_BUDGET, cluster_threshold=config.output.cluster_threshold,
                       cluster_delta=config.output.cluster_delta, cell_areas=method.cell_areas)
        if systems > 1:  # one context (one Pi#rho_0) per system
            return make_ensemble_context(config.model, *method.measure(state0), config.wasserstein, **options)
        return make_context(config.model, *method.measure(state0), config.wasserstein, **options)

    if stored is not None and stored.n_snapshots > 0:
        state0 = method.restore(stored)
    else:
        stored = None
        state0 = method.initial_state()  # every input read and checked before the writer touches the output
    context = context_of(state0)
    with RunWriter(path, model=config.model, config=config.to_dict(), mode="resume" if resume else "w",
                   force=force, provenance=method.provenance(), state=method.state, systems=systems) as writer:
        if stored is not None:
            t_last, state = writer.last_snapshot()
            remaining = times[times > t_last * (1 + 1e-12)]
        else:
            state, t_last, remaining = state0, 0.0, times
            method.write_static(writer)
            writer.write_limit(context.limit_points, context.limit_weights)
        before = collections.Counter(_TRUNCATION_OUTCOMES)
        previous = writer.series_attrs("w_to_limit")
        started = time.perf_counter()
        try:
            for t, snapshot in method.snapshots(state, remaining, t_last, on_step):
                diagnostics = evaluate(names, *method.measure(snapshot), context)
                writer.append_snapshot(t, snapshot, diagnostics=diagnostics)
                if "w_to_limit" in names:
                    writer.set_series_attrs("w_to_limit", w_to_limit_attrs(context, previous))
        finally:
            if writer.is_open:
                writer.set_wall_time(writer.stored_wall_time + time.perf_counter() - started)
            if config.solver.kernel == "truncated" and writer.is_open:
                used = collections.Counter(_TRUNCATION_OUTCOMES)
                used.subtract(before)
                writer.set_provenance("kernel_used", _kernel_used(used, writer))
        writer.set_status("complete")
    return load(path)


def _with_progress_bar(config: Config, path, resume: bool, force: bool, on_step) -> Result:
    """``run`` with a tqdm.auto bar over model time wrapped around ``on_step``."""
    from tqdm.auto import tqdm

    bar = tqdm(total=config.solver.t_end, unit="t", desc=os.path.basename(path),
               bar_format="{l_bar}{bar}| t = {n:.3g}/{total:.3g} [{elapsed}<{remaining}]")
    last = [0.0]

    def step(t):
        if t > last[0]:
            bar.update(t - last[0])
            last[0] = t
        if on_step is not None:
            on_step(t)

    try:
        return run(config, resume=resume, force=force, on_step=step)
    finally:
        bar.close()


def _kernel_used(counts, writer) -> str:
    """``truncated`` / ``exact (fallback: reason)`` / a count of each, over this run's field evaluations
    (added to what an earlier, resumed part of the run recorded)."""
    counts = {k: v for k, v in counts.items() if v > 0}
    if not counts:
        return writer.provenance.get("kernel_used", "truncated")
    if list(counts) == ["truncated"]:
        text = "truncated"
    elif len(counts) == 1:
        (reason,) = counts
        text = f"exact (fallback: {reason.removeprefix('exact: ')})"
    else:
        text = "; ".join(f"{k}: {v} calls" for k, v in sorted(counts.items()))
    previous = writer.stored_provenance.get("kernel_used")
    if previous and previous not in ("truncated", text) and writer.resumed:
        text = f"{previous} | resumed: {text}"
    return text


def _check_resumable(path, config: Config, method: type[Method], times) -> Result:
    """The stored run, after refusing a --resume that would mix configs or continue data this run
    did not write.

    The stored file must verify (``mfpde.load``), hold the same resolved config (a larger
    ``solver.t_end`` aside: an extension), a state the method can continue
    (``Method.stored_conflict``) and snapshot times on this config's grid.  Nothing is
    written before these checks pass.
    """
    from ._filelock import PathLock
    from .io import DamagedFileError, resume_conflict

    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file to resume")
    PathLock(path).acquire().release()  # a run writing it now: FileBusyError, before any reading
    stored = load(path)
    resume_conflict(path, stored.config, config.to_dict(), stored.status)
    T = stored.n_snapshots
    if T == 0:
        return stored
    why = method.stored_conflict(config, stored)
    if why is not None:
        raise DamagedFileError(f"{path}: {why}")
    if T > len(times) or not np.allclose(stored.times, times[:T], rtol=1e-12, atol=1e-300):
        raise DamagedFileError(f"{path}: its {T} snapshot times are not the config's snapshot times "
                               f"(0, {config.output.save_every:g}, ... {config.solver.t_end:g}); cannot resume it")
    return stored
