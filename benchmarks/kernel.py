"""Throughput and accuracy of the attention kernels, against their peers, in one run.

    python benchmarks/kernel.py [--quick] [--repeat 3] [--beta 30] [--only exact|truncated]

For N in {2e3, 2e4, 1e5} and d in {2, 3, 8} (targets = sources = N uniform points on
S^{d-1}, random Q, K, V) it prints:

- pairs/s (N^2 / time) of the exact kernel, float64, and its ratio to the exp bound:
  numpy.exp elements/s on one core (2^16 float64 elements into a preallocated output, best
  of 200) times the thread count; measured next to every kernel timing, the largest value
  seen is used;
- the ratio to PyTorch's float64 ``scaled_dot_product_attention`` (queries beta Q x, keys
  K x, values V x, 4-d tensors so that its flash CPU path runs; then the tangent
  projection), with the max difference; at N = 1e5 torch is timed on the first 10,000
  targets against all sources and compared in pairs/s (skipped with a note when torch is
  not installed: ``pip install -e ".[bench]"``);
- the ratio to dense NumPy (``mfpde.kernels.reference``, score blocks of 2048 targets)
  for N <= 2e4, and the max error against it (relative to max |field|);
- the float32 mode's pairs/s and max error;
- the truncated kernel at beta in {100, 1000} (d = 2, 3): speed-up over the exact kernel
  and max field error relative to max |field|.

Best of --repeat runs.  The machine is shared: absolute times are noise, the ratios
measured side by side are the result.  --quick: N in {2e3, 2e4}, d = 3, one repeat.
--only exact / --only truncated: print only the first table (exact kernel against its
peers) or only the second (truncated kernel against the exact one).
"""

import argparse
import time

import numba
import numpy as np

import mfpde
from mfpde.kernels.reference import attention_average_numpy
from mfpde.kernels.truncated import truncated_sums
from mfpde.sphere import tangent_projection

try:
    import torch
except ImportError:  # optional benchmark extra
    torch = None


def best_time(fn, repeat):
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


_EXP_IN = -50.0 * np.random.default_rng(1).random(1 << 16)
_EXP_OUT = np.empty_like(_EXP_IN)


def exp_rate():
    """numpy.exp elements/s on one core, best of 200."""
    t, _ = best_time(lambda: np.exp(_EXP_IN, out=_EXP_OUT), 200)
    return _EXP_IN.size / t


def unit(rng, n, d):
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def torch_field(model, X, targets):
    """PyTorch float64 SDPA + tangent projection at the first ``targets`` points."""
    Xt = torch.from_numpy(X)
    Xq = Xt[:targets]
    q = (model.beta * Xq @ torch.tensor(model.Q).T)[None, None]
    k = (Xt @ torch.tensor(model.K).T)[None, None]
    v = (Xt @ torch.tensor(model.V).T)[None, None]
    a = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)[0, 0].numpy()
    return tangent_projection(X[:targets], a)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in {2e3, 2e4}, d = 3, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--beta", type=float, default=30.0)
    parser.add_argument("--only", choices=["exact", "truncated"], help="print only this kernel's table")
    args = parser.parse_args()
    sizes = [2_000, 20_000] if args.quick else [2_000, 20_000, 100_000]
    dims = [3] if args.quick else [2, 3, 8]
    repeat = 1 if args.quick else args.repeat
    threads = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"mfpde {mfpde.__version__}, numba {numba.__version__}, {threads} threads, beta = {args.beta:g}")
    if torch is None:
        print("torch is not installed: the SDPA comparison is skipped (pip install -e \".[bench]\")")
    else:
        print(f"torch {torch.__version__}")
    rng = np.random.default_rng(0)
    if args.only != "truncated":
        exact_table(args, sizes, dims, repeat, threads, rng)
    if args.only != "exact":
        truncated_table(sizes, repeat)


def exact_table(args, sizes, dims, repeat, threads, rng):
    """Exact kernel: pairs/s, ratio to the exp bound, torch SDPA, dense NumPy, float32."""
    bound = exp_rate()
    print(f"exp bound: numpy.exp {bound:.3g} elements/s on one core x {threads} threads = {bound * threads:.3g}/s")
    print()
    header = (
        f"{'N':>7} {'d':>2} {'exact pairs/s':>13} {'/exp bound':>10} {'/torch':>7} {'torch err':>9} "
        f"{'/NumPy':>7} {'err':>8} {'f32 pairs/s':>11} {'f32 err':>8}"
    )
    print(header)
    for n in sizes:
        for d in dims:
            X = unit(rng, n, d)
            Q, V = rng.standard_normal((d, d)) / np.sqrt(d), rng.standard_normal((d, d))
            model = mfpde.Model(Q=Q, K=None, V=V, beta=args.beta)
            w = np.full(n, 1.0 / n)
            for precision in ("float64", "float32"):
                mfpde.velocity(model, X[:8], precision=precision)  # compile or load the cache
            t_exact, v = best_time(lambda: mfpde.velocity(model, X), repeat)
            bound = max(bound, exp_rate())
            t32, v32 = best_time(lambda: mfpde.velocity(model, X, precision="float32"), repeat)
            bound = max(bound, exp_rate())
            pairs = float(n) * n
            rate = pairs / t_exact
            sample = np.random.default_rng(2).choice(n, min(n, 2000), replace=False)
            ref_sample = tangent_projection(X[sample], attention_average_numpy(model, X[sample], X, w))
            scale = np.abs(ref_sample).max()
            err = np.abs(v[sample] - ref_sample).max() / scale
            err32 = np.abs(v32[sample] - ref_sample).max() / scale
            torch_cols = f"{'-':>7} {'-':>9}"
            if torch is not None:
                targets = min(n, 10_000)
                torch_field(model, X[:64], 64)
                t_torch, vt = best_time(lambda: torch_field(model, X, targets), repeat)
                torch_rate = float(targets) * n / t_torch
                terr = np.abs(vt - v[:targets]).max() / np.abs(v[:targets]).max()
                torch_cols = f"{rate / torch_rate:7.2f} {terr:9.1e}"
            numpy_cols = f"{'-':>7}"
            if n <= 20_000:
                t_np, _ = best_time(
                    lambda: tangent_projection(X, attention_average_numpy(model, X, X, w)), max(1, repeat - 1)
                )
                numpy_cols = f"{t_np / t_exact:7.1f}"
            print(
                f"{n:7d} {d:2d} {rate:13.3g} {rate / (bound * threads):10.3f} {torch_cols} "
                f"{numpy_cols} {err:8.1e} {pairs / t32:11.3g} {err32:8.1e}",
                flush=True,
            )
    print(f"(exp bound used for the ratios: {bound * threads:.3g}/s, the largest measured)")
    print()


def truncated_table(sizes, repeat):
    """Truncated kernel at beta = 100 and 1000: speed-up over the exact kernel and error."""
    rng = np.random.default_rng(1)  # its own stream: the same points with and without --only
    print("truncated kernel (tolerance 1e-12): speed-up over exact, max field error / max |field|")
    print(f"{'N':>7} {'d':>2} {'beta':>6} {'mode':>26} {'scanned':>8} {'speed-up':>9} {'error':>8}")
    for n in sizes:
        for d in (2, 3):
            X = unit(rng, n, d)
            for beta in (100.0, 1000.0):
                model = mfpde.Model(d=d, beta=beta, V=rng.standard_normal((d, d)))
                w = np.full(n, 1.0 / n)
                mfpde.velocity(model, X[:8])  # compile or load the cache
                info = truncated_sums(model, X, X, w, 1e-12, return_info=True)[3]  # untimed, warms up
                t_exact, v = best_time(lambda: mfpde.velocity(model, X), repeat)
                t_trunc, vt = best_time(lambda: mfpde.velocity(model, X, kernel="truncated"), repeat)
                err = np.abs(vt - v).max() / np.abs(v).max()
                print(
                    f"{n:7d} {d:2d} {beta:6g} {info.mode:>26} {info.scanned.mean():8.0f} "
                    f"{t_exact / t_trunc:9.1f} {err:8.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
