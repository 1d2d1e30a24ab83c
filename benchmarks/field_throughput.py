"""Pair throughput of the exact attention field, against the NumPy reference, in one run.

    python benchmarks/field_throughput.py [--n 20000] [--d 3] [--beta 30] [--repeat 3]

Prints pairs per second (N^2 / time) of ``mfpde.velocity`` and of the chunked NumPy
reference (``mfpde.kernels.reference``), their ratio, numpy.exp's elements per second
times the thread count (the exp bound: one exponential per pair), and the max error of
the kernel against the reference.  Absolute times on a shared machine are noise; the
ratios printed side by side are the result.
"""

import argparse
import time

import numba
import numpy as np

import mfpde
from mfpde.kernels.reference import attention_average_numpy
from mfpde.sphere import tangent_projection


def best_time(fn, repeat):
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--d", type=int, default=3)
    parser.add_argument("--beta", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n, d = args.n, args.d
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    model = mfpde.Model(Q=rng.standard_normal((d, d)) / np.sqrt(d), K=None,
                        V=rng.standard_normal((d, d)), beta=args.beta)
    weights = np.full(n, 1.0 / n)
    mfpde.velocity(model, X[:64])  # compile (or load the cache) outside the timing

    t_kernel, v = best_time(lambda: mfpde.velocity(model, X), args.repeat)
    t_numpy, ref = best_time(
        lambda: tangent_projection(X, attention_average_numpy(model, X, X, weights)), max(1, args.repeat - 1)
    )
    a = rng.random(10_000_000)
    t_exp, _ = best_time(lambda: np.exp(a), 3)
    threads = numba.get_num_threads()
    exp_bound = a.size / t_exp * threads
    pairs = float(n) * n
    err = np.abs(v - ref).max() / np.abs(ref).max()

    print(f"N = {n}, d = {d}, beta = {args.beta:g}, float64, {threads} threads")
    print(f"  mfpde exact kernel   {pairs / t_kernel:12.4g} pairs/s   ({t_kernel:.3f} s)")
    print(f"  NumPy reference      {pairs / t_numpy:12.4g} pairs/s   ({t_numpy:.3f} s)")
    print(f"  exp bound            {exp_bound:12.4g} exp/s     (numpy.exp x {threads} threads)")
    print(f"  ratio kernel / NumPy reference : {t_numpy / t_kernel:.2f}")
    print(f"  ratio kernel / exp bound       : {pairs / t_kernel / exp_bound:.3f}")
    print(f"  max error vs reference         : {err:.2e} (relative to max |field|)")


if __name__ == "__main__":
    main()
