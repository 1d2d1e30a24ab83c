"""Time of the w_to_limit diagnostic for N particles against a two-atom limit.

    python benchmarks/w_to_limit.py [--n 100000]

Prints the best of three evaluations of exact W_2 (geodesic) from N uniform points on S^2
to Pi#rho_0 = (delta_e + delta_-e)/2, and, in the same run, the time of one attention
field evaluation on 2000 of the points for scale.
"""

import argparse
import time

import numpy as np

import mfpde
from mfpde.diagnostics import evaluate, make_context


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.n, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = np.full(args.n, 1.0 / args.n)
    model = mfpde.Model(V=np.diag([1.0, 0.5, -0.5]), beta=10.0)
    context = make_context(model, x, w)
    best, value = np.inf, None
    for _ in range(3):
        start = time.perf_counter()
        value = evaluate(["w_to_limit"], x, w, context)["w_to_limit"]
        best = min(best, time.perf_counter() - start)
    mfpde.velocity(model, x[:2000])
    start = time.perf_counter()
    mfpde.velocity(model, x[:2000])
    field = time.perf_counter() - start
    print(f"N = {args.n}: w_to_limit = {value:.6f} rad (exact W_2, geodesic) in {best:.3f} s; "
          f"limit atoms: {len(context.limit_points)}; one field evaluation at N = 2000: {field:.3f} s")


if __name__ == "__main__":
    main()
