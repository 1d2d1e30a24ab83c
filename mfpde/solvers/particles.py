"""The particle solver: N tokens with masses on S^{d-1} under the self-attention field.

    dx_i/dt = X_beta[mu_t](x_i),   mu_t = sum_j m_j delta_{x_j(t)}

integrated by euler / heun / rk4 (fixed step <= dt, each followed by the retraction) or
rk45 (adaptive Dormand-Prince).  With ``solver.backend = "cuda"`` the fixed-step methods
keep the positions on the GPU between steps (``mfpde.kernels.cuda.DeviceStepper``) and copy
them back at the requested times only; rk45 steps on the host with the GPU field.  The solver yields the state at requested times; it
neither reads files nor prints (the runner and the CLI do).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np

from ..model import Model
from ..options import SolverOptions
from ..sphere import retract
from ..kernels import make_attention
from ._stepping import check_times, snapshot_loop
from .integrators import FIXED_STEP, DormandPrince, fixed_step

__all__ = ["ParticleSolver"]


class ParticleSolver:
    """Integrate the particle system of ``model`` with the options of [solver].

    Positions (N, d) with weights (N,) are one system; (S, N, d) with (S, N) an ensemble of
    S independent systems stepped together (interactions within each system only).  With
    a fixed-step integrator system s follows exactly the steps of its single run; rk45
    takes one step size for all, controlled by the largest error of any system.

    ``solver.snapshots(positions, weights, times)`` is a generator of ``(t, positions)``
    at each requested time.  Fixed-step methods cover each interval between requested
    times with n = ceil(interval / dt) equal steps, so every requested time is hit exactly
    and a run resumed from a snapshot repeats the same steps bit for bit.  rk45 restarts
    its step-size control from min(dt, interval) in each interval for the same reason.
    """

    def __init__(self, model: Model, options: SolverOptions | None = None):
        self.model = model
        self.options = options or SolverOptions()
        #: The field's kernel, built once from the options (kernel, tolerance).
        self.attention = make_attention(model, self.options)
        self.n_field_evaluations = 0
        self.n_rejected = 0

    def field(self, weights: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """The velocity x -> X_beta[sum_j m_j delta_{x_j}](x) of the particle system."""
        attention = self.attention

        def f(X):
            self.n_field_evaluations += 1
            return attention.velocity(X, weights=weights)

        return f

    def snapshots(
        self,
        positions: np.ndarray,
        weights: np.ndarray,
        times: Sequence[float],
        t0: float = 0.0,
        on_step: Callable[[float], None] | None = None,
    ) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (t, positions) for every t in ``times`` (increasing, >= t0); positions
        (N, d) or, for an ensemble, (S, N, d) with weights (S, N).

        A requested time equal to t0 yields the initial state unchanged.  ``on_step(t)`` is
        called after every accepted step (for progress bars).
        """
        times = check_times(times, t0)
        x = np.array(positions, dtype=np.float64, order="C")
        if x.ndim not in (2, 3) or x.shape[-1] != self.model.d:
            raise ValueError(f"positions must have shape (N, {self.model.d}) or, for an ensemble, "
                             f"(S, N, {self.model.d}), got {x.shape}")
        if np.abs(np.linalg.norm(x, axis=-1) - 1.0).max() > 1e-12:
            x = retract(x)  # unit rows are kept bit for bit: a resumed run repeats exactly
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != x.shape[:-1]:
            raise ValueError(f"positions and weights must have one row per particle: weights of shape {x.shape[:-1]}, "
                             f"got {weights.shape}")
        stepper = self._device_stepper(weights) if x.ndim == 2 else None  # an ensemble steps on the CPU
        if stepper is not None:
            yield from self._device_snapshots(stepper, x, times, t0, on_step)
            return
        f = self.field(weights)
        yield from snapshot_loop(x, times, t0, lambda x, t, t_out: self._advance(f, x, t, t_out, on_step))

    def _device_stepper(self, weights):
        """The device-resident stepper of a GPU kernel for a fixed-step method, or None."""
        make = getattr(self.attention, "device_stepper", None)
        if make is None or self.options.integrator not in FIXED_STEP or self.attention.precision != "float64":
            return None
        return make(weights)

    def _device_snapshots(self, stepper, x, times, t0, on_step):
        """``snapshot_loop`` with the positions on the device: the same steps, a copy back per requested time."""
        X = stepper.upload(x)
        t = float(t0)
        name = self.options.integrator
        for t_out in times:
            if t_out > t:
                n_steps, h = self._fixed_steps(t, float(t_out))
                for k in range(1, n_steps + 1):
                    stepper.step(name, X, h)
                    self.n_field_evaluations += stepper.STAGES[name]
                    if on_step is not None:
                        on_step(t + k * h if k < n_steps else float(t_out))
                t = float(t_out)
            yield t, stepper.download(X)

    def _fixed_steps(self, t, t_out):
        """(n, h): n = ceil(interval / dt) equal steps covering [t, t_out]."""
        interval = t_out - t
        n_steps = max(1, math.ceil(interval / self.options.dt * (1 - 1e-12)))
        return n_steps, interval / n_steps

    def _advance(self, f, x, t, t_out, on_step):
        opts = self.options
        if opts.integrator == "rk45":
            return self._advance_adaptive(f, x, t, t_out, on_step)
        n_steps, h = self._fixed_steps(t, t_out)
        for k in range(1, n_steps + 1):
            x = fixed_step(opts.integrator, f, x, h)
            if on_step is not None:
                on_step(t + k * h if k < n_steps else t_out)
        return x

    def _advance_adaptive(self, f, x, t, t_out, on_step):
        opts = self.options
        stepper = DormandPrince(rtol=opts.rtol, atol=opts.atol)
        h = min(opts.dt, t_out - t)
        min_h = 1e-14 * max(1.0, abs(t_out))
        while t < t_out:
            remaining = t_out - t
            last = h * (1.0 + 1e-10) >= remaining  # no rounding-sized steps at the end
            if last:
                h = remaining
            x_new, err = stepper.step(f, x, h)
            if err <= 1.0:
                t = t_out if last else t + h
                x = x_new
                if on_step is not None:
                    on_step(t)
            else:
                self.n_rejected += 1
            h = stepper.next_h(h, err)
            if t < t_out and h < min_h:
                raise FloatingPointError(
                    f"rk45 step size fell below {min_h:.1e} at t = {t:.6g}: "
                    "the problem is too stiff for solver.rtol/atol"
                )
        return x
