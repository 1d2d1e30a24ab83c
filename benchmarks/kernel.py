"""Throughput and accuracy of the attention kernels, against their peers, in one run.

    python benchmarks/kernel.py [--quick] [--repeat 3] [--beta 30] [--only exact|truncated|step]

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
  and max field error relative to max |field|;
- one rk4 particle step at N = 1e5, d = 3, beta = 1000, dt = 0.01 (uniform points, B = I,
  random V, tolerance 1e-12) with each kernel: the time of the step, the ratio
  truncated / exact, what the truncated kernel did at each of the four stages and the
  sources it scanned per target (the stage points are off the unit sphere by up to the
  printed | |x| - 1 |), its field error there (2000 sampled targets, relative to
  max |field|) and the max distance between the two steps' results.

Best of --repeat runs.  The machine is shared: absolute times are noise, the ratios
measured side by side are the result.  --quick: N in {2e3, 2e4}, d = 3, one repeat, no
rk4 step.
--only exact / --only truncated / --only step: print only the first table (exact kernel
against its peers), only the second (truncated kernel against the exact one) or only the
rk4 step.

High-dimensional table (``--only highd``; printed last in a full run): for d in {3, 16,
64, 128, 512, 1024} (N = 1e4 targets = sources for d <= 128, N = 4e3 for d = 512, 1024;
beta = 5; general random Q, K, V with B = Q^T K of spectral norm ~1 and V of entries
~N(0, 1/d), so scores stay O(beta)) the attention average (``attention_average``, exact
kernel, uniform masses) at:

- float64: mfpde pairs/s, torch SDPA float64 pairs/s and the ratio mfpde / torch, the
  max difference relative to max |average|;
- float32: the same against torch SDPA float32;
- "/bound": the share of the bound time >= pairs x (1/exp_rate + 2 (d + dv) / dgemm_rate),
  exp_rate = numpy.exp elements/s on one core (2^22 float64 elements) x the thread count,
  dgemm_rate = numpy.matmul 2000 x 2000 float64 flops/s (numpy's BLAS at the thread count),
  both measured next to every timing in the same run, the largest value seen used.

SDPA is given the same field: query = beta X B (N, d), key = Y, value = Y V^T, scale = 1,
one batch and head (4-d tensors), torch.set_num_threads(thread count).
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
    parser.add_argument("--only", choices=["exact", "truncated", "step", "highd"], help="print only this table")
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
    if args.only not in ("truncated", "highd"):
        exact_table(args, sizes, dims, repeat, threads, rng)
    if args.only in (None, "truncated"):
        truncated_table(sizes, repeat)
    if args.only == "step" or (args.only is None and not args.quick):
        rk4_step_table(repeat)
    if args.only in (None, "highd"):
        highd_table(repeat, threads)


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


def rk4_step_table(repeat, n=100_000, d=3, beta=1000.0, dt=0.01):
    """One rk4 particle step (``ParticleSolver``'s field, ``fixed_step``) with each kernel."""
    from mfpde.kernels import truncated
    from mfpde.options import SolverOptions
    from mfpde.solvers import ParticleSolver
    from mfpde.solvers.integrators import fixed_step

    rng = np.random.default_rng(3)
    x = unit(rng, n, d)
    model = mfpde.Model(d=d, beta=beta, V=rng.standard_normal((d, d)))
    w = np.full(n, 1.0 / n)
    stages = []
    plain = truncated.truncated_sums

    def spy(model, X, Y, weights, tolerance, return_info=False):
        out = plain(model, X, Y, weights, tolerance, return_info=True)
        stages.append((out[3].mode, X, out[3].scanned.mean()))
        return out if return_info else out[:3]

    print()
    print(f"one rk4 particle step, N = {n}, d = {d}, beta = {beta:g}, dt = {dt:g}, tolerance 1e-12")
    times, results = {}, {}
    for kernel in ("exact", "truncated"):
        f = ParticleSolver(model, SolverOptions(integrator="rk4", dt=dt, kernel=kernel)).field(w)
        f(x)  # compile or load the cache
        truncated.truncated_sums = spy
        try:
            stages.clear()
            times[kernel], results[kernel] = best_time(lambda: fixed_step("rk4", f, x, dt), repeat)
        finally:
            truncated.truncated_sums = plain
    print(f"{'kernel':>10} {'step s':>8}")
    for kernel in ("exact", "truncated"):
        print(f"{kernel:>10} {times[kernel]:8.2f}")
    print(f"ratio truncated / exact: {times['truncated'] / times['exact']:.3f}")
    sample = np.random.default_rng(4).choice(n, 2000, replace=False)
    for k, (mode, X, scanned) in enumerate(stages[:4]):
        off = np.abs(np.linalg.norm(X, axis=1) - 1.0).max()
        ref = mfpde.velocity(model, X[sample], X, w)
        err = np.abs(mfpde.velocity(model, X, kernel="truncated")[sample] - ref).max() / np.abs(ref).max()
        print(
            f"  stage {k + 1}: {mode:<28} scanned/target {scanned:6.0f}, max | |x| - 1 | = {off:.1e}, "
            f"field error / max|field| = {err:.1e}"
        )
    diff = np.abs(results["truncated"] - results["exact"]).max()
    move = np.abs(results["exact"] - x).max()
    print(f"max |x_truncated - x_exact| after the step: {diff:.1e} (the step moves points by up to {move:.1e})")


_BIG_EXP_IN = -50.0 * np.random.default_rng(5).random(1 << 22)
_BIG_EXP_OUT = np.empty_like(_BIG_EXP_IN)
_GEMM_A = np.random.default_rng(6).random((2000, 2000))
_GEMM_B = np.random.default_rng(7).random((2000, 2000))
_GEMM_C = np.empty((2000, 2000))


def big_exp_rate(threads):
    """numpy.exp elements/s on 2^22 float64 elements, one core, times ``threads``."""
    t, _ = best_time(lambda: np.exp(_BIG_EXP_IN, out=_BIG_EXP_OUT), 5)
    return threads * _BIG_EXP_IN.size / t


def dgemm_rate():
    """numpy.matmul flops/s on 2000 x 2000 float64 (numpy's BLAS at its thread count)."""
    t, _ = best_time(lambda: np.matmul(_GEMM_A, _GEMM_B, out=_GEMM_C), 3)
    return 2.0 * 2000**3 / t


def torch_sdpa(model, X, dtype):
    """torch SDPA on the same field: query beta X B, key X, value X V^T, scale 1."""
    q = torch.from_numpy(model.beta * (X @ model.B)).to(dtype)[None, None]
    k = torch.from_numpy(X).to(dtype)[None, None]
    v = torch.from_numpy(X @ model.V.T).to(dtype)[None, None]
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=1.0)[0, 0].double().numpy()


def highd_table(repeat, threads, beta=5.0):
    """Exact kernel at d up to 1024 against torch SDPA float64 / float32 and the bound."""
    from mfpde.kernels import attention_average
    from mfpde.kernels.blocked import BLOCKED_MIN_D

    rng = np.random.default_rng(11)
    exp_r, gemm_r = big_exp_rate(threads), dgemm_rate()
    print()
    print(f"high dimension: beta = {beta:g}, general Q, K, V, targets = sources, uniform masses, {threads} threads")
    print(f"(blocked GEMM path for d >= {BLOCKED_MIN_D}; bound = pairs x (1/exp_rate + 2 (d + dv) / dgemm_rate))")
    if torch is None:
        print("torch not installed: the SDPA columns are skipped")
    print(
        f"{'N':>6} {'d':>5} {'f64 pairs/s':>11} {'torch f64':>10} {'/torch':>7} {'/bound':>7} {'err':>8} {'torch err':>9} "
        f"{'f32 pairs/s':>11} {'torch f32':>10} {'/torch':>7} {'f32 err':>8}"
    )
    for d in (3, 16, 64, 128, 512, 1024):
        n = 10_000 if d <= 128 else 4_000
        X = unit(rng, n, d)
        # B = Q^T K with singular values ~1, V with entries ~N(0, 1/d): scores O(beta)
        Q = rng.standard_normal((d, d)) / np.sqrt(d)
        K = rng.standard_normal((d, d)) / np.sqrt(d)
        K /= np.linalg.norm(Q.T @ K, 2)
        V = rng.standard_normal((d, d)) / np.sqrt(d)
        model = mfpde.Model(Q=Q, K=K, V=V, beta=beta)
        w = np.full(n, 1.0 / n)
        pairs = float(n) * n
        cols = {}
        ref = attention_average_numpy(model, X[:500], X, w)
        scale = np.abs(ref).max()
        for precision, tdtype in (("float64", "float64"), ("float32", "float32")):
            attention_average(model, X[:8], X[:300], w[:300], precision=precision)  # compile or load the cache
            t, a = best_time(lambda: attention_average(model, X, X, w, precision=precision), repeat)
            exp_r, gemm_r = max(exp_r, big_exp_rate(threads)), max(gemm_r, dgemm_rate())
            err = np.abs(a[:500] - ref).max() / scale
            peer = None
            if torch is not None:
                td = getattr(torch, tdtype)
                torch_sdpa(model, X[:64], td)
                tt, at = best_time(lambda: torch_sdpa(model, X, td), repeat)
                exp_r, gemm_r = max(exp_r, big_exp_rate(threads)), max(gemm_r, dgemm_rate())
                peer = (pairs / tt, np.abs(at[:500] - ref).max() / scale)
            cols[precision] = (pairs / t, err, peer)
        rate, err, peer = cols["float64"]
        bound_time = pairs * (1.0 / exp_r + 2.0 * (d + d) / gemm_r)
        share = bound_time / (pairs / rate)
        t64 = f"{peer[0]:10.3g} {rate / peer[0]:7.2f}" if peer else f"{'-':>10} {'-':>7}"
        terr = f"{peer[1]:9.1e}" if peer else f"{'-':>9}"
        rate32, err32, peer32 = cols["float32"]
        t32 = f"{peer32[0]:10.3g} {rate32 / peer32[0]:7.2f}" if peer32 else f"{'-':>10} {'-':>7}"
        print(
            f"{n:6d} {d:5d} {rate:11.3g} {t64} {share:7.2f} {err:8.1e} {terr} {rate32:11.3g} {t32} {err32:8.1e}",
            flush=True,
        )
    print(f"(rates used: exp {exp_r:.3g}/s ({threads} threads), dgemm {gemm_r / 1e9:.3g} GFlop/s, the largest measured)")


if __name__ == "__main__":
    main()
