"""Particle-in-cell on S^2 with 1e6 particles against the exact particle solver with 2e4.

    python benchmarks/pic.py [--n-pic 1000000] [--n-exact 20000] [--cells 5762] [--dt 0.05]
                             [--integrator rk4] [--beta 10] [--matrices general|identity]
                             [--no-accuracy]

Problem (issue #7): d = 3, softmax, beta = 10, t = 0 -> 1, rho_0 uniform on S^2 (seed 0).
Q, K, V are "general" by default: the config's random specs { random = "gaussian", seed = 1, 2, 3 }
(entries N(0, 1) / sqrt(3)); ``--matrices identity`` takes Q = K = V = I.  Both solvers use the
same integrator and step; the exact particle solver sums over all N^2 pairs at every stage,
PIC deposits on an icosahedral mesh of about ``--cells`` cells and computes the field on its
M x M nodes (docs/methods.md, "Particle-in-cell").

Both runs are timed in one process, one after the other, after a short warm-up that compiles
(or loads from numba's cache) every kernel, so the ratio is measured under the same load.  With
``--accuracy`` (default) a third run applies PIC to the exact run's own 2e4 initial particles and
prints the per-particle geodesic distance between the two final states: its root mean square is
the cost of the identity coupling, an upper bound of W_2 between the two empirical measures (an
exact W_2 of 2e4 x 2e4 points would need a 3.2 GB cost matrix).  Its median and the share of
particles more than 0.1 rad apart are printed too: a few particles start near a separatrix
between clusters and end in another cluster under any small change of the field, and they
dominate the rms.
"""

import argparse
import os
import time

import numpy as np

import mfpde
from mfpde.options import SolverOptions
from mfpde.solvers import ParticleSolver, PICSolver
from mfpde.mesh.locate import PARALLEL_MIN
from mfpde.sphere import geodesic_distance, sample_uniform


def matrices(kind: str, d: int = 3):
    if kind == "identity":
        return np.eye(d), np.eye(d), np.eye(d)
    return tuple(np.random.default_rng(seed).standard_normal((d, d)) / np.sqrt(d) for seed in (1, 2, 3))


def final(solver, x0, t_end):
    w = np.full(len(x0), 1.0 / len(x0))
    start = time.perf_counter()
    *_, (t, x) = solver.snapshots(x0, w, [t_end])
    return x, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-pic", type=int, default=1_000_000)
    parser.add_argument("--n-exact", type=int, default=20_000)
    parser.add_argument("--cells", type=int, default=5762, help="approximate number of mesh cells")
    parser.add_argument("--dt", type=float, default=0.05)
    parser.add_argument("--integrator", default="rk4", choices=["euler", "heun", "rk4"])
    parser.add_argument("--beta", type=float, default=10.0)
    parser.add_argument("--t-end", type=float, default=1.0)
    parser.add_argument("--matrices", default="general", choices=["general", "identity"])
    parser.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    args = parser.parse_args()

    Q, K, V = matrices(args.matrices)
    model = mfpde.Model(Q=Q, K=K, V=V, beta=args.beta)
    exact_opts = SolverOptions(method="particles", integrator=args.integrator, dt=args.dt)
    pic_opts = SolverOptions(method="pic", integrator=args.integrator, dt=args.dt, cells=args.cells)
    exact, pic = ParticleSolver(model, exact_opts), PICSolver(model, pic_opts)
    steps = int(np.ceil(args.t_end / args.dt * (1 - 1e-12)))
    stages = {"euler": 1, "heun": 2, "rk4": 4}[args.integrator] * steps
    print(f"problem: d = 3, softmax, beta = {args.beta:g}, t = 0 -> {args.t_end:g}, rho_0 uniform on S^2, "
          f"Q, K, V = {'random gaussian (seeds 1, 2, 3)' if args.matrices == 'general' else 'identity'}")
    print(f"both: integrator {args.integrator}, dt = {args.dt:g} ({steps} steps, {stages} field evaluations)")
    print(f"PIC mesh: icosahedral, cells = {args.cells} -> M = {pic.mesh.M} "
          f"(spacing {pic.mesh.spacing:.4f} rad), linear (barycentric) deposition and interpolation")

    rng = np.random.default_rng(0)
    warm = sample_uniform(2000, 3, rng)
    final(exact, warm, args.dt)  # compile / load every kernel before timing
    final(pic, warm, args.dt)
    final(pic, sample_uniform(PARALLEL_MIN, 3, rng), args.dt)  # the parallel kernels too

    x_exact0 = sample_uniform(args.n_exact, 3, np.random.default_rng(0))
    x_pic0 = sample_uniform(args.n_pic, 3, np.random.default_rng(0))
    x_exact, t_exact = final(exact, x_exact0, args.t_end)
    x_pic, t_pic = final(pic, x_pic0, args.t_end)
    print(f"exact particles, N = {args.n_exact:>8d}: {t_exact:8.2f} s")
    print(f"PIC,             N = {args.n_pic:>8d}: {t_pic:8.2f} s   (mass error {pic.max_mass_error:.1e}, "
          f"min cell mass {pic.min_cell_mass:.1e})")
    print(f"ratio exact / PIC: {t_exact / t_pic:.2f}   (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores)")

    if args.accuracy:
        x_same, t_same = final(PICSolver(model, pic_opts), x_exact0, args.t_end)
        g = geodesic_distance(x_same, x_exact)
        moved = geodesic_distance(x_exact0, x_exact)
        print(f"accuracy: PIC from the exact run's {args.n_exact} initial particles ({t_same:.2f} s), per-particle "
              f"geodesic distance to the exact run at t = {args.t_end:g}: rms {np.sqrt(np.mean(g**2)):.2e} rad "
              f"(>= W_2), median {np.median(g):.2e}, max {g.max():.2e}, {np.mean(g > 0.1):.2%} of the particles "
              f"> 0.1 rad; the particles moved {moved.mean():.2f} rad on average")


if __name__ == "__main__":
    main()
