"""W(mu_t, Pi#rho_0) at scale: the certified sparse method against POT's exact solver.

    python benchmarks/w_to_limit.py [--sizes 2000 5000 10000] [--large 100000] [--repeat 3]

One run prints everything issue #14 asks for:

1. Tokens on S^2 at t = 0.5 of the zero-temperature flow toward a tilted great circle
   against their limit Pi#rho_0 (N atoms on the circle), W_2 geodesic: the sparse method
   (``method="sparse"``, tolerance 1e-3) against ``ot.emd2`` on the full cost matrix
   (``method="exact"``) at each N: times, ratio, relative error, and the certified
   relative bound.  1a: symmetric V (--sizes); 1b: non-normal A, an oblique projection
   whose optimal transport is non-local (--sizes-oblique).
2. 1a at N = --large, sparse alone: time and peak memory (tracemalloc for NumPy buffers,
   and the process's peak resident set, which also sees numba's allocations).
3. A two-atom limit (dim E = 1) at N = --large: ``wasserstein`` (auto -> two_atom) against
   the reference work it cannot avoid, the two cost columns and one argsort of their
   difference, timed in the same run (best of --repeat).

Report the load average beside the figures (the machine is shared); ratios are measured in
the same run.
"""

import argparse
import multiprocessing
import os
import time
import tracemalloc

import numpy as np

from mfpde.distances import cost_matrix, wasserstein
from mfpde.limit import limit_map, limit_measure, zero_temperature_flow
from mfpde.sphere import sample_uniform


def tokens(n, t=0.5, seed=0, normal=True):
    """Tokens at time t of the zero-temperature flow and Pi#rho_0 (n atoms on a great circle).

    normal: A = R diag(1, 1, -0.5) R^T with R a fixed random rotation (symmetric V, a tilted
    circle: each token's own atom is its nearest point of the circle); otherwise
    A = R diag(1, 1, -0.5) R^-1 with R not orthogonal (an oblique projection: the optimal
    transport moves tokens along the circle, non-locally).
    """
    if normal:
        R = np.linalg.qr(np.random.default_rng(12).standard_normal((3, 3)))[0]
    else:
        R = np.array([[1.0, 0.4, 0.7], [0.0, 1.0, -0.5], [0.2, 0.0, 1.0]])
    A = R @ np.diag([1.0, 1.0, -0.5]) @ np.linalg.inv(R)
    X0 = sample_uniform(n, 3, np.random.default_rng(seed))
    return zero_temperature_flow(A, X0, t), limit_map(A, X0)


def timed(fn, repeat=1):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def peak_rss_gib():
    """VmHWM of this process (GiB): its peak resident set since exec (ru_maxrss would carry
    the parent's peak, the POT runs' cost matrices, across fork and exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def large_run(n):
    """Section 2 in its own process, so that the peak RSS is this computation's alone."""
    X, Y = tokens(n)
    wasserstein(X[:300], None, Y[:300], None, method="sparse")  # JIT caches
    rss0 = peak_rss_gib()
    tracemalloc.start()
    t_sparse, res = timed(lambda: wasserstein(X, None, Y, None, method="sparse", return_result=True))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = peak_rss_gib()
    return (f"N = {n}: {t_sparse:.1f} s, W_2 = {res.value:.8f} rad, certified {res.lower:.8f} <= W_2 <= "
            f"{res.upper:.8f} (relative bound {res.relative_bound:.2e}); peak NumPy memory "
            f"{peak / 2**30:.3f} GiB (tracemalloc); peak RSS of the process {rss:.3f} GiB "
            f"({rss0:.3f} GiB before the call: interpreter, numba, inputs)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[2000, 5000, 10000])
    parser.add_argument("--sizes-oblique", type=int, nargs="*", default=[2000, 5000])
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cores: {os.cpu_count()}")

    # warm the JIT caches on a small problem (not timed)
    X, Y = tokens(300)
    wasserstein(X, None, Y, None, method="sparse")

    for normal, sizes, title in ((True, args.sizes, "symmetric V: tilted great circle"),
                                 (False, args.sizes_oblique, "non-normal A: oblique projection (harder)")):
        print(f"\n1{'a' if normal else 'b'}. W_2 geodesic, tokens at t = 0.5 vs Pi#rho_0 (N atoms), {title}")
        print(f"{'N':>7} {'POT exact (s)':>14} {'sparse (s)':>11} {'ratio':>7} {'W exact':>12} {'W sparse':>12} "
              f"{'rel. error':>11} {'cert. bound':>11}")
        for n in sizes:
            X, Y = tokens(n, normal=normal)
            t_exact, exact = timed(lambda: wasserstein(X, None, Y, None, method="exact"))
            t_sparse, res = timed(lambda: wasserstein(X, None, Y, None, method="sparse", return_result=True))
            print(f"{n:>7} {t_exact:>14.2f} {t_sparse:>11.2f} {t_exact / t_sparse:>6.1f}x {exact:>12.8f} "
                  f"{res.value:>12.8f} {abs(res.value - exact) / exact:>11.2e} {res.relative_bound:>11.2e}",
                  flush=True)

    n = args.large
    print(f"\n2. W_2 geodesic at N = {n}, symmetric V (as 1a), sparse alone, in a fresh process")
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(pool.apply(large_run, (n,)), flush=True)

    print(f"\n3. two-atom limit (dim E = 1) at N = {n}, W_2 geodesic, best of {args.repeat}")
    A = np.diag([1.0, 0.3, -0.2])
    X0 = sample_uniform(n, 3, np.random.default_rng(1))
    Xt = zero_temperature_flow(A, X0, 0.5)
    Yl, bl = limit_measure(A, X0)
    t_ref, _ = timed(lambda: np.argsort((lambda C: C[:, 0] - C[:, 1])(cost_matrix(Xt, Yl) ** 2)), args.repeat)
    t_w, (value, method) = timed(lambda: wasserstein(Xt, None, Yl, bl, return_method=True), args.repeat)
    print(f"wasserstein (auto -> {method}): {t_w * 1e3:.1f} ms, W_2 = {value:.8f} rad; two cost columns + argsort: "
          f"{t_ref * 1e3:.1f} ms; ratio {t_w / t_ref:.2f}x")
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
