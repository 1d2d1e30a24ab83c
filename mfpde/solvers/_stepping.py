"""Time stepping shared by the solvers (private).

``check_times`` and ``snapshot_loop``: the requested times and the loop that yields a copy of
the state at each of them (particle, PIC and finite-volume solvers).  ``FVStepping``: the
SSP-RK3 step with its CFL control, ``advance`` and ``snapshots`` of the two finite-volume
solvers, which differ only in the field, the rhs and the Courant rate they plug in.
"""

from __future__ import annotations

from typing import Callable, Iterator, Sequence

import numpy as np

from .._masses import check_masses
from ..model import Model
from ..options import SolverOptions

__all__ = ["check_times", "snapshot_loop", "FVStepping", "check_continuum_limit"]


def check_times(times, t0: float) -> np.ndarray:
    """``times`` as a float64 array; ValueError unless 1-d, increasing and >= t0."""
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or np.any(np.diff(times) <= 0) or (len(times) and times[0] < t0):
        raise ValueError("times must be increasing and >= t0")
    return times


def snapshot_loop(state: np.ndarray, times: np.ndarray, t0: float,
                  advance: Callable[[np.ndarray, float, float], np.ndarray]) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (t, a copy of the state) for every t in ``times`` (checked by ``check_times``).

    ``advance(state, t, t_out)`` returns the state at t_out; a time equal to t0 yields the
    initial state unchanged, and each interval starts afresh from the state at its start.
    """
    t = float(t0)
    for t_out in times:
        if t_out > t:
            state = advance(state, t, float(t_out))
            t = float(t_out)
        yield t, state.copy()


def check_continuum_limit(model: Model, method: str, why: str) -> None:
    """The one rule of mesh methods at beta = inf: the field must be the continuum limit.

    A measure on a mesh has no hardmax field (``why`` says which way it fails for ``method``).
    """
    if model.is_zero_temperature and model.zero_temperature != "continuum":
        raise ValueError(f"model.zero_temperature must be \"continuum\" for {method} at beta = inf ({why}), "
                         f"got {model.zero_temperature!r}")


class FVStepping:
    """SSP-RK3 (Shu-Osher) time stepping of the cell masses of a finite-volume solver.

    The solver provides ``options`` (dt, cfl), ``mesh`` (M cells), ``face_speed(masses)``,
    ``rhs(masses, u)``, the counters ``n_steps`` and ``n_rejected``, and:

    ``_max_cfl``: the Courant number up to which each Euler stage keeps masses >= 0;
    ``_rate(u)`` and ``_cfl_length``: the Courant number of a step dt with speeds u is
    dt * _rate(u) / _cfl_length;
    ``_masses_shape_note()``: what the masses' shape follows from, for the error message.
    """

    _max_cfl: float
    _cfl_length: float = 1.0

    def _rate(self, u: np.ndarray) -> float:  # pragma: no cover - every solver overrides it
        raise NotImplementedError

    def _masses_shape_note(self) -> str:  # pragma: no cover - every solver overrides it
        raise NotImplementedError

    #: The dimension, the mesh's name in messages, why cfl is capped, the fewest cells.
    _d: int
    _mesh_name: str
    _cfl_reason: str
    _min_cells: int = 3
    _max_cells: int | None = None

    @classmethod
    def check_options(cls, model, options: SolverOptions) -> None:
        """ValueError naming the key unless this solver can run ``model`` with ``options``."""
        if not isinstance(model, Model):
            raise TypeError(f"model must be an mfpde.Model, got {type(model).__name__}")
        if model.d != cls._d:
            raise ValueError(f"the {cls._mesh_name} finite-volume solver needs model.d = {cls._d}, got d = {model.d}")
        if options.integrator != SolverOptions.integrator:
            raise ValueError(f"solver.integrator is not used by the {cls._mesh_name} finite-volume solver (always "
                             f"SSP-RK3); leave it at {SolverOptions.integrator!r}, got {options.integrator!r}")
        if options.cfl > cls._max_cfl:
            raise ValueError(f"solver.cfl must be <= {cls._max_cfl} for fv ({cls._cfl_reason}), got {options.cfl!r}")
        if options.cells < cls._min_cells:
            raise ValueError(f"solver.cells must be >= {cls._min_cells} for fv on the {cls._mesh_name}, "
                             f"got {options.cells!r}")
        if cls._max_cells is not None and options.cells > cls._max_cells:
            raise ValueError(f"solver.cells must be <= {cls._max_cells} for fv on the {cls._mesh_name}, "
                             f"got {options.cells!r}")
        check_continuum_limit(model, "fv", "a density has no hardmax field")

    def _dt_for(self, rate: float) -> float:
        if rate > 0:
            return min(self.options.dt, self.options.cfl * self._cfl_length / rate)
        return self.options.dt

    def step(self, masses: np.ndarray, dt_max: float) -> tuple[np.ndarray, float]:
        """One SSP-RK3 step of length <= dt_max; returns (new masses, dt used)."""
        bound = self._max_cfl * self._cfl_length
        u0 = self.face_speed(masses)
        dt = min(self._dt_for(self._rate(u0)), dt_max)
        L0 = self.rhs(masses, u0)
        while True:
            m1 = masses + dt * L0
            u1 = self.face_speed(m1)
            r1 = self._rate(u1)
            if dt * r1 > bound:
                dt = self._reject(r1, dt)
                continue
            m2 = 0.75 * masses + 0.25 * (m1 + dt * self.rhs(m1, u1))
            u2 = self.face_speed(m2)
            r2 = self._rate(u2)
            if dt * r2 > bound:
                dt = self._reject(r2, dt)
                continue
            # (m + 2 m3) / 3, not m / 3 + (2 / 3) m3: fl(1/3) + fl(2/3) = 1 - 2^-54 would
            # bleed ~5e-17 of the mass per step, systematically
            new = (masses + 2.0 * (m2 + dt * self.rhs(m2, u2))) / 3.0
            self.n_steps += 1
            return new, dt

    def _reject(self, rate: float, dt: float) -> float:
        self.n_rejected += 1
        return min(0.5 * dt, self.options.cfl * self._cfl_length / rate)

    def advance(self, masses, t: float, t_out: float, on_step: Callable[[float], None] | None = None):
        """Masses at t_out from masses at t (steps chosen by CFL; t_out hit exactly)."""
        m = np.array(masses, dtype=np.float64)
        while t < t_out:
            remaining = t_out - t
            m, dt = self.step(m, remaining)
            last = dt >= remaining * (1.0 - 1e-12)
            t = t_out if last else t + dt
            if on_step is not None:
                on_step(t)
        return m

    def snapshots(
        self,
        masses,
        times: Sequence[float],
        t0: float = 0.0,
        on_step: Callable[[float], None] | None = None,
    ) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (t, masses) for every t in ``times`` (increasing, >= t0).

        A requested time equal to t0 yields the initial state unchanged.  Each interval
        starts its step sequence afresh from the stored state, so a run resumed from a
        snapshot repeats the uninterrupted run bit for bit.
        """
        times = check_times(times, t0)
        # a copy (None fails the shape check): the caller may change its array meanwhile
        m = check_masses(np.array(masses, dtype=np.float64), self.mesh.M, "masses",
                         shape_note=f" {self._masses_shape_note()}")
        yield from snapshot_loop(m, times, t0, lambda m, t, t_out: self.advance(m, t, t_out, on_step))
