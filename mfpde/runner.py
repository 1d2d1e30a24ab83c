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
from .diagnostics import evaluate, make_context, w_to_limit_attrs
from .initial import initial_cell_masses, initial_measure
from .io import Result, RunWriter, load
from .mesh.sphere import MAX_FREQUENCY
from .solvers import FVCircleSolver, FVSphereSolver, ParticleSolver, PICSolver
from .solvers.fv_circle import MAX_CFL
from .solvers.fv_sphere import MAX_CFL as MAX_CFL_SPHERE
from .solvers.pic import MIN_CELLS as PIC_MIN_CELLS

__all__ = ["run", "snapshot_times", "IMPLEMENTED_METHODS"]

IMPLEMENTED_METHODS = ("particles", "fv", "pic")

#: Cost-matrix budget for w_to_limit at every snapshot (bytes): above it, ``auto`` uses the
#: certified sparse method (never sliced).
W_MEMORY_BUDGET = 2**28

#: Largest solver.cells accepted for fv on S^2 (the cell count of the largest icosahedral frequency).
MAX_SPHERE_CELLS = 10 * MAX_FREQUENCY**2 + 2


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
        if d not in (2, 3):
            raise ConfigError(
                config.source, "solver.method",
                f"'fv' is implemented for d = 2 (the circle) and d = 3 (S^2), got d = {d}",
            )
        max_cfl = MAX_CFL if d == 2 else MAX_CFL_SPHERE
        if config.solver.cfl > max_cfl:
            raise ConfigError(
                config.source, "solver.cfl",
                f"must be <= {max_cfl} for fv (positivity of the limited reconstruction + SSP-RK3), "
                f"got {config.solver.cfl!r}",
            )
        if d == 2 and config.solver.cells < 3:
            raise ConfigError(config.source, "solver.cells",
                              f"must be >= 3 for fv on the circle, got {config.solver.cells!r}")
        if d == 3 and config.solver.cells > MAX_SPHERE_CELLS:
            raise ConfigError(config.source, "solver.cells",
                              f"must be <= {MAX_SPHERE_CELLS} for fv on S^2, got {config.solver.cells!r}")
        model = config.model
        if model.is_zero_temperature and model.zero_temperature != "continuum":
            raise ConfigError(
                config.source, "model.zero_temperature",
                f"must be \"continuum\" for fv at beta = inf (a density has no hardmax field), "
                f"got {model.zero_temperature!r}",
            )
    if method == "pic":
        _check_pic(config)
    if config.solver.kernel not in ("exact", "truncated"):
        raise ConfigError(
            config.source, "solver.kernel", f"must be \"exact\" or \"truncated\", got {config.solver.kernel!r}"
        )


def _check_pic(config: Config) -> None:
    d, model, cells = config.model.d, config.model, config.solver.cells
    if d not in PIC_MIN_CELLS:
        raise ConfigError(
            config.source, "solver.method",
            f"'pic' is implemented for d = 2 (the circle) and d = 3 (S^2) in this version, got d = {d}",
        )
    if cells < PIC_MIN_CELLS[d]:
        raise ConfigError(
            config.source, "solver.cells", f"must be >= {PIC_MIN_CELLS[d]} for pic with d = {d}, got {cells!r}"
        )
    if d == 3 and cells > MAX_SPHERE_CELLS:
        raise ConfigError(config.source, "solver.cells",
                          f"must be <= {MAX_SPHERE_CELLS} for pic on S^2, got {cells!r}")
    if model.is_zero_temperature and model.zero_temperature != "continuum":
        raise ConfigError(
            config.source, "model.zero_temperature",
            f"must be \"continuum\" for pic at beta = inf (the hardmax field of a mesh measure cannot be "
            f"interpolated), got {model.zero_temperature!r}",
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
    times = snapshot_times(config.solver.t_end, config.output.save_every)
    path = config.output.path
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"output.path: the directory {directory} does not exist")
    method = {"fv": _FiniteVolumes, "pic": _PIC}.get(config.solver.method, _Particles)(config)
    names = config.output.diagnostics
    with RunWriter(path, model=config.model, config=config.to_dict(), mode="resume" if resume else "w",
                   force=force) as writer:
        if resume and writer.n_snapshots > 0:
            state0 = method.stored_initial_state(load(path))
            t_last, state = writer.last_snapshot()
            remaining = times[times > t_last * (1 + 1e-12)]
        else:
            state0 = method.initial_state()
            state, t_last, remaining = state0, 0.0, times
            method.write_static(writer)
        context = make_context(config.model, *method.measure(state0), config.wasserstein,
                               memory_budget=W_MEMORY_BUDGET)
        if not resume or writer.n_snapshots == 0:
            writer.write_limit(context.limit_points, context.limit_weights)
        previous = writer.series_attrs("w_to_limit")
        for t, snapshot in method.snapshots(state, remaining, t_last, on_step):
            diagnostics = evaluate(names, *method.measure(snapshot), context)
            writer.append_snapshot(t, **{method.state_name: snapshot}, diagnostics=diagnostics)
            if "w_to_limit" in names:
                writer.set_series_attrs("w_to_limit", w_to_limit_attrs(context, previous))
        writer.set_status("complete")
    return load(path)


class _Particles:
    """Particles: the state is the positions; the masses are fixed and stored once."""

    state_name = "positions"

    def __init__(self, config: Config):
        self.config = config
        self.solver = ParticleSolver(config.model, config.solver)
        self.weights = None

    def initial_state(self):
        positions, self.weights = initial_measure(self.config.initial, self.config.model.d)
        return positions

    def stored_initial_state(self, result):
        self.weights = result.weights
        return result.positions[0]

    def write_static(self, writer):
        writer.write_weights(self.weights)

    def measure(self, positions):
        return positions, self.weights

    def snapshots(self, positions, times, t0, on_step):
        return self.solver.snapshots(positions, self.weights, times, t0=t0, on_step=on_step)


class _PIC(_Particles):
    """Particle-in-cell: stored like particles (positions, fixed weights), plus its mesh in /grid."""

    def __init__(self, config: Config):
        self.config = config
        self.solver = PICSolver(config.model, config.solver)
        self.weights = None

    def write_static(self, writer):
        writer.write_weights(self.weights)
        mesh = self.solver.mesh
        attrs = ({"mesh": "uniform_circle"} if self.config.model.d == 2
                 else {"mesh": "icosahedral_voronoi", "frequency": mesh.frequency})
        writer.write_grid(self.solver.nodes, mesh.areas, attrs=attrs)


class _FiniteVolumes:
    """Finite volumes: the state is the cell masses at the cell centers.

    d = 2: ``FVCircleSolver`` on ``CircleMesh(solver.cells)``; d = 3: ``FVSphereSolver`` on
    ``SphereMesh.icosahedral(solver.cells)`` (10 n^2 + 2 cells, n nearest to solver.cells).
    """

    state_name = "mass"

    def __init__(self, config: Config):
        self.config = config
        if config.model.d == 2:
            self.solver = FVCircleSolver(config.model, config.solver)
            self.centers = np.asarray(self.solver.mesh.center_points)
            self._cells = self.solver.mesh.edges
            self.grid_attrs = {"mesh": "uniform_circle"}
        else:
            self.solver = FVSphereSolver(config.model, config.solver)
            self.centers = np.asarray(self.solver.mesh.centers)
            self._cells = self.solver.mesh
            self.grid_attrs = {"mesh": "icosahedral_voronoi", "frequency": self.solver.mesh.frequency}

    def initial_state(self):
        return initial_cell_masses(self.config.initial, self._cells)

    def stored_initial_state(self, result):
        return result.mass[0]

    def write_static(self, writer):
        writer.write_grid(self.centers, self.solver.mesh.areas, attrs=self.grid_attrs)

    def measure(self, masses):
        return self.centers, masses

    def snapshots(self, masses, times, t0, on_step):
        return self.solver.snapshots(masses, times, t0=t0, on_step=on_step)
