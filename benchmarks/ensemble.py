"""Throughput of the attention kernel on an ensemble of small systems, against its peers, in one run.

    python benchmarks/ensemble.py [--quick] [--repeat 5] [--systems 2048] [--n 32] [--d 8]

S = --systems independent systems of n = --n tokens on S^{d-1} (uniform points per system;
random Q, K, V as in ``benchmarks/kernel.py``'s high-d table: entries N(0, 1/d), so scores
stay O(beta)), float64, numba's thread count, for beta in {1, 5} and both normalizations
where noted.  Per beta it prints:

- pairs/s of one ensemble field evaluation ``Attention.velocity(X)`` (X of shape (S, n, d),
  S n^2 pairs / time, best of --repeat) and its share of the exp bound: numpy.exp float64
  elements/s on one core (2^16 elements into a preallocated output, best of 200) times the
  thread count, measured next to every timing, the largest value seen used;
- the ratio to S separate calls ``mfpde.velocity(model, X[s])`` in a Python loop (the
  public single-system call; timed on --loop systems and scaled to S);
- the ratio to the batched PyTorch formulation (float64, torch.set_num_threads(same
  threads)): scores = bmm(beta X B, X^T) (S, n, n), w = softmax(scores, -1) (the uniform
  normalization: exp(scores) / n), out = bmm(w, X V^T), then the tangent projection; and the
  max difference to mfpde relative to max |field|.  Skipped with a note when torch is not
  installed.

Targets of issue #19: >= 0.3 of the exp bound, >= 20x the separate-call loop, >= 2x torch.
The machine is shared: absolute rates are noise, the ratios measured side by side are the
result.  --quick: S = 128, one beta, 2 repeats (< 30 s with a warm numba cache).
"""

import argparse

import numba
import numpy as np

import mfpde
from mfpde.kernels import make_attention

# the timing helpers and the exp bound of the kernel benchmark (this folder is on sys.path
# when a benchmark runs as a script)
from kernel import best_time, exp_rate, torch  # noqa: E402


def ensemble_points(rng, systems, n, d):
    x = rng.standard_normal((systems, n, d))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def torch_batched(model, Xt, Bt, Vt):
    """The batched formulation: softmax(beta X B X^T) X V^T per system, then P_x."""
    scores = torch.bmm(model.beta * (Xt @ Bt), Xt.transpose(1, 2))
    if model.normalization == "softmax":
        w = torch.softmax(scores, dim=-1)
    else:
        w = torch.exp(scores) / Xt.shape[1]
    out = torch.bmm(w, Xt @ Vt.T)
    return out - (Xt * out).sum(-1, keepdim=True) * Xt


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="S = 128, beta = 1, 2 repeats")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--systems", type=int, default=2048)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--d", type=int, default=8)
    parser.add_argument("--loop", type=int, default=256, help="systems timed in the separate-call loop")
    args = parser.parse_args()
    systems = 128 if args.quick else args.systems
    betas = [1.0] if args.quick else [1.0, 5.0]
    repeat = 2 if args.quick else args.repeat
    n, d = args.n, args.d
    threads = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"mfpde {mfpde.__version__}, numba {numba.__version__}, {threads} threads; "
          f"S = {systems} systems of n = {n} in d = {d}, float64")
    if torch is None:
        print("torch is not installed: the batched torch comparison is skipped (pip install -e \".[bench]\")")
    else:
        print(f"torch {torch.__version__}")
    rng = np.random.default_rng(0)
    X = ensemble_points(rng, systems, n, d)
    Q = rng.standard_normal((d, d)) / np.sqrt(d)
    K = rng.standard_normal((d, d)) / np.sqrt(d)
    V = rng.standard_normal((d, d)) / np.sqrt(d)
    pairs = systems * n * n
    bound = 0.0
    print()
    print(f"{'beta':>5} {'normalization':>13} {'pairs/s':>9} {'/bound':>7} {'x loop':>7} {'x torch':>8} {'max diff':>9}")
    for beta in betas:
        for normalization in ("softmax", "uniform"):
            model = mfpde.Model(d=d, beta=beta, Q=Q, K=K, V=V, normalization=normalization)
            att = make_attention(model)
            att.velocity(X)  # compile (or load from numba's cache), fault the pages in
            bound = max(bound, exp_rate())
            t, field = best_time(lambda: att.velocity(X), repeat)
            bound = max(bound, exp_rate())
            rate = pairs / t
            share = rate / (bound * threads)
            loop = min(args.loop, systems)
            t_loop, _ = best_time(lambda: [mfpde.velocity(model, X[s]) for s in range(loop)], max(1, repeat // 2))
            x_loop = t_loop * systems / loop / t
            if torch is not None:
                Xt = torch.from_numpy(X)
                Bt, Vt = torch.from_numpy(model.B.copy()), torch.from_numpy(model.V.copy())
                torch_batched(model, Xt, Bt, Vt)
                t_torch, out = best_time(lambda: torch_batched(model, Xt, Bt, Vt), repeat)
                diff = np.abs(out.numpy() - field).max() / np.abs(field).max()
                x_torch, diff_s = f"{t_torch / t:8.2f}", f"{diff:9.1e}"
            else:
                x_torch, diff_s = f"{'-':>8}", f"{'-':>9}"
            print(f"{beta:5g} {normalization:>13} {rate:9.3g} {share:7.2f} {x_loop:7.1f} {x_torch} {diff_s}")
    print()
    print(f"exp bound: numpy.exp {bound:.3g} elements/s on one core x {threads} threads = {bound * threads:.3g}/s")


if __name__ == "__main__":
    main()
