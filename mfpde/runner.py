"""One run: config -> model + initial measure -> solver -> HDF5 writer (+ diagnostics).

``run(config)`` is ``mfpde.run``: it validates everything first, writes
``output.path`` snapshot by snapshot (each flushed), and returns the :class:`Result`
read back from the file.  Interrupted by an exception or a signal, the file is left with
status ``"interrupted"`` and every finished snapshot; ``run(..., resume=True)`` continues
it from its last snapshot and, for fixed-step integrators, reproduces the uninterrupted
run bit for bit (each interval between snapshots is stepped the same way).
"""

from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from .config import Config, ConfigError, load_config
from .diagnostics import evaluate, make_context
from .initial import initial_cell_masses, initial_measure
from .io import Result, RunWriter, load
from .solvers import FVCircleSolver, ParticleSolver
from .solvers.fv_circle import MAX_CFL

__all__ = ["run", "snapshot_times", "IMPLEMENTED_METHODS"]

IMPLEMENTED_METHODS = ("particles", "fv")

#: Cost-matrix budget for w_to_limit at every snapshot (bytes): above it, sliced distances.
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


def _check_runnable(config: Config) -> None:
    """Reject what validates but cannot run yet, before any work or file is made."""
    method = config.solver.method
    if method not in IMPLEMENTED_METHODS:
        raise ConfigError(
            config.source, "solver.method",
            f"must be one of {', '.join(IMPLEMENTED_METHODS)} in this version, got {method!r}",
        )
    if method == "fv":
        d = config.model.d
        if d != 2:
            raise ConfigError(
                config.source, "solver.method",
                f"'fv' is implemented for d = 2 (the circle) in this version, got d = {d}",
            )
        if config.solver.cfl > MAX_CFL:
            raise ConfigError(
                config.source, "solver.cfl",
                f"must be <= {MAX_CFL} for fv (positivity of MUSCL + SSP-RK3), got {config.solver.cfl!r}",
            )
        model = config.model
        if model.is_zero_temperature and model.zero_temperature != "continuum":
            raise ConfigError(
                config.source, "model.zero_temperature",
                f"must be \"continuum\" for fv at beta = inf (a density has no hardmax field), "
                f"got {model.zero_temperature!r}",
            )
    if config.solver.kernel not in ("exact", "truncated"):
        raise ConfigError(
            config.source, "solver.kernel", f"must be \"exact\" or \"truncated\", got {config.solver.kernel!r}"
        )


def run(
    config,
    *,
    output: str | os.PathLike | None = None,
    overrides=(),
    resume: bool = False,
    force: bool = False,
    on_step: Callable[[float], None] | None = None,
) -> Result:
    """Run the config (a file path, a dict or a :class:`~mfpde.config.Config`).

    Parameters
    ----------
    output : path, optional
        Overrides ``output.path``.
    overrides : list of "section.key=value"
        Applied as the CLI's ``--set``.
    resume : bool
        Continue an interrupted file from its last snapshot.
    force : bool
        Overwrite an existing file.
    on_step : callable(t), optional
        Called after every solver step (progress bars).

    Returns the :class:`~mfpde.io.Result` of the written file.
    """
    if not isinstance(config, Config) or overrides:
        config = load_config(config, overrides)
    if output is not None:
        config = config.replace(output=config.output.replace(path=os.fspath(output)))
    _check_runnable(config)
    model, opts = config.model, config.solver
    times = snapshot_times(opts.t_end, config.output.save_every)
    names = config.output.diagnostics
    path = config.output.path
    if opts.method == "fv":
        return _run_fv(config, times, resume=resume, force=force, on_step=on_step)
    solver = ParticleSolver(model, opts)
    with RunWriter(path, model=model, config=config.to_dict(), mode="resume" if resume else "w", force=force) as writer:
        if resume and writer.n_snapshots > 0:
            first = load(path)
            positions0, weights = first.positions[0], first.weights
            t_last, positions = writer.last_snapshot()
            remaining = times[times > t_last * (1 + 1e-12)]
        else:
            positions0, weights = initial_measure(config.initial, model.d)
            positions, t_last, remaining = positions0, 0.0, times
            writer.write_weights(weights)
        context = make_context(model, positions0, weights, config.wasserstein, memory_budget=W_MEMORY_BUDGET)
        if not resume or writer.n_snapshots == 0:
            writer.write_limit(context.limit_points, context.limit_weights)
        for t, x in solver.snapshots(positions, weights, remaining, t0=t_last, on_step=on_step):
            writer.append_snapshot(t, positions=x, diagnostics=evaluate(names, x, weights, context))
        writer.set_status("complete")
    return load(path)


def _run_fv(config: Config, times, *, resume: bool, force: bool, on_step) -> Result:
    """The finite-volume branch: cell masses on the circle mesh, diagnostics on (centers, masses)."""
    model, opts = config.model, config.solver
    names = config.output.diagnostics
    path = config.output.path
    solver = FVCircleSolver(model, opts)
    mesh = solver.mesh
    centers = np.asarray(mesh.center_points)
    with RunWriter(path, model=model, config=config.to_dict(), mode="resume" if resume else "w", force=force) as writer:
        if resume and writer.n_snapshots > 0:
            masses0 = load(path).mass[0]
            t_last, masses = writer.last_snapshot()
            remaining = times[times > t_last * (1 + 1e-12)]
        else:
            masses0 = initial_cell_masses(config.initial, mesh.edges)
            masses, t_last, remaining = masses0, 0.0, times
            writer.write_grid(centers, mesh.areas)
        context = make_context(model, centers, masses0, config.wasserstein, memory_budget=W_MEMORY_BUDGET)
        if not resume or writer.n_snapshots == 0:
            writer.write_limit(context.limit_points, context.limit_weights)
        for t, m in solver.snapshots(masses, remaining, t0=t_last, on_step=on_step):
            writer.append_snapshot(t, mass=m, diagnostics=evaluate(names, centers, m, context))
        writer.set_status("complete")
    return load(path)
