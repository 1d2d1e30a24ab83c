"""The cuda backend on a GPU: kernel throughput against torch SDPA, and an rk4 run, in one run.

    python benchmarks/gpu.py [--repeat 3] [--beta 30] [--targets 65536]
    python benchmarks/gpu.py --simulator      # tiny sizes on numba's CUDA simulator (a smoke test)

For N in {1e4, 1e5, 1e6} and d in {3, 128} (sources = N uniform points on S^{d-1}, random
Q, K, V) it prints:

- pairs/s of the cuda exact kernel (``mfpde.kernels.cuda``) in float64 and float32: the
  sums kernel alone on device arrays (queries, sources, values, log-masses already on the
  GPU; synchronized), on the first min(N, --targets) targets against all N sources;
- pairs/s of torch's ``scaled_dot_product_attention`` on the same GPU in the same run, in
  float64 and float32 (queries beta Q x, keys K x, values V x, shape (1, 1, n, d)), and the
  ratios cuda / torch; an out-of-memory error (a backend that materialises the n x N score
  matrix, e.g. the float64 math path) is caught and printed as "OOM";
- the wall time of a 100-step rk4 run (dt = 0.01) at N = 1e5, d = 3 with
  ``solver.backend = "cuda"`` (positions on the device between steps; one copy back at
  the end), after a one-step warm-up that compiles the kernels.

Best of --repeat runs.  Without a GPU and CUDA driver it exits with status 2 and one line.
--simulator: N = 48, d in {3, 16}, a 2-step rk4 run at N = 32 on the simulator (Python per
CUDA thread: the numbers are meaningless; it proves the script runs).  torch is optional
(``pip install torch``); without it the SDPA columns say so.
"""

import argparse
import os
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--simulator", action="store_true", help="tiny sizes on numba's CUDA simulator")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--beta", type=float, default=30.0)
    parser.add_argument("--targets", type=int, default=65536, help="targets timed per N (all N sources)")
    args = parser.parse_args(argv)
    if args.simulator:
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"  # before numba.cuda is first imported

    import numpy as np

    import mfpde
    from mfpde.kernels import cuda as gpu
    from mfpde.kernels._base import LOG2E

    problem = gpu.device_problem()
    if problem is not None:
        print(f"benchmarks/gpu.py needs an NVIDIA GPU with a working CUDA driver: {problem}", file=sys.stderr)
        return 2
    from numba import cuda

    try:
        import torch
        if not torch.cuda.is_available():
            torch = None
    except ImportError:
        torch = None

    if args.simulator:
        sizes, dims, repeat, run_n, run_steps = [48], [3, 16], 1, 32, 2
        print("numba CUDA simulator: Python per CUDA thread, the numbers below are not GPU speeds")
    else:
        sizes, dims, repeat, run_n, run_steps = [10**4, 10**5, 10**6], [3, 128], args.repeat, 10**5, 100
        name = cuda.get_current_device().name
        print(f"device: {name.decode() if isinstance(name, bytes) else name}")
    print("torch: " + (torch.__version__ if torch is not None else "not installed or no CUDA: SDPA skipped"))

    def best(fn):
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    rng = np.random.default_rng(0)
    header = (f"{'N':>8} {'d':>4} {'targets':>8} {'cuda f64 pairs/s':>16} {'cuda f32 pairs/s':>16} "
              f"{'torch f64 pairs/s':>17} {'torch f32 pairs/s':>17} {'f64 ratio':>9} {'f32 ratio':>9}")
    print(header)
    for d in dims:
        model = mfpde.Model(d=d, beta=args.beta, Q=rng.standard_normal((d, d)) / np.sqrt(d),
                            K=rng.standard_normal((d, d)) / np.sqrt(d), V=rng.standard_normal((d, d)))
        for n in sizes:
            X = rng.standard_normal((n, d))
            X /= np.linalg.norm(X, axis=1, keepdims=True)
            nt = min(n, args.targets)
            q = (LOG2E * model.beta) * (X[:nt] @ model.B)
            VY = X @ model.V.T
            L = np.full(n, -np.log2(n))
            rates = {}
            for precision, dtype in (("float64", np.float64), ("float32", np.float32)):
                dq, dY, dV, dL = (cuda.to_device(np.ascontiguousarray(a, dtype=dtype)) for a in (q, X, VY, L))
                num, den, smax = cuda.device_array((nt, d)), cuda.device_array(nt), cuda.device_array(nt)

                def call():
                    gpu.device_sums(precision, dq, dY, dV, dL, num, den, smax)
                    cuda.synchronize()

                call()  # compile
                rates[precision] = nt * n / best(call)
            sdpa = {}
            for precision in ("float64", "float32"):
                if torch is None:
                    sdpa[precision] = "skipped"
                    continue
                tdtype = torch.float64 if precision == "float64" else torch.float32
                try:
                    Xt = torch.tensor(X, dtype=tdtype, device="cuda")
                    tq = (model.beta * Xt[:nt] @ torch.tensor(model.Q, dtype=tdtype, device="cuda").T)[None, None]
                    tk = (Xt @ torch.tensor(model.K, dtype=tdtype, device="cuda").T)[None, None]
                    tv = (Xt @ torch.tensor(model.V, dtype=tdtype, device="cuda").T)[None, None]

                    def tcall():
                        torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, scale=1.0)
                        torch.cuda.synchronize()

                    tcall()
                    sdpa[precision] = nt * n / best(tcall)
                except (torch.cuda.OutOfMemoryError, RuntimeError) as exc:
                    sdpa[precision] = "OOM" if "out of memory" in str(exc).lower() else f"error: {str(exc)[:40]}"
                finally:
                    torch.cuda.empty_cache()

            def col(v, w):
                return f"{v:>{w}.3e}" if isinstance(v, float) else f"{v:>{w}}"

            ratio = {p: (rates[p] / sdpa[p] if isinstance(sdpa[p], float) else "-") for p in rates}
            print(f"{n:>8} {d:>4} {nt:>8} {col(rates['float64'], 16)} {col(rates['float32'], 16)} "
                  f"{col(sdpa['float64'], 17)} {col(sdpa['float32'], 17)} {col(ratio['float64'], 9)} "
                  f"{col(ratio['float32'], 9)}")

    # a 100-step rk4 run at N = 1e5, d = 3, positions on the device
    from mfpde.options import SolverOptions
    from mfpde.solvers import ParticleSolver

    model = mfpde.Model(d=3, beta=args.beta, V=rng.standard_normal((3, 3)))
    X = rng.standard_normal((run_n, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w = np.full(run_n, 1.0 / run_n)
    solver = ParticleSolver(model, SolverOptions(integrator="rk4", dt=0.01, backend="cuda"))
    list(solver.snapshots(X, w, [0.01]))  # warm-up: compiles every kernel
    t0 = time.perf_counter()
    (_, final), = solver.snapshots(X, w, [0.01 * run_steps])
    elapsed = time.perf_counter() - t0
    assert np.all(np.isfinite(final))
    print(f"rk4 run, N = {run_n}, d = 3, {run_steps} steps (dt = 0.01), solver.backend = \"cuda\": "
          f"{elapsed:.3f} s ({elapsed / run_steps * 1e3:.2f} ms/step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
