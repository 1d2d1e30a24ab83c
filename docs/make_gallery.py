#!/usr/bin/env python
"""Every figure of docs/gallery.md, from the configs in data/configs/.

    python docs/make_gallery.py [--only NAME ...] [--workdir DIR] [--force] [--quick]

Runs each gallery config with mfpde.run / mfpde.study.run_study (the same as `mfpde run` and
`mfpde study`), measures what docs/gallery.md reports, writes the PNGs under
docs/images/gallery/ and the measured numbers to docs/images/gallery/numbers.json, and prints
them.  A complete run file in --workdir (default out/gallery/) made from the same config is
reused; --force runs everything again.  --quick runs every experiment at a small size into
out/gallery-quick/ and writes its figures there (a smoke test, about three minutes; its numbers
mean little).

Experiments (--only): clusters, sphere, great_circle, heat, timescales, study.  The analysis functions
below are imported by tests/test_gallery.py, so the numbers in the gallery and the claims
the tests assert come from the same code.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import iv

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import mfpde  # noqa: E402
from mfpde.config import load_config  # noqa: E402
from mfpde.diagnostics import circle_clusters  # noqa: E402
from mfpde.initial import initial_measure, wrapped_normal_density  # noqa: E402
from mfpde.limit import distance_to_subspace, spectral_split  # noqa: E402
from mfpde.mesh import CircleMesh  # noqa: E402
from mfpde.options import InitialOptions, SolverOptions  # noqa: E402
from mfpde.solvers import FVCircleSolver  # noqa: E402

CONFIGS = ROOT / "data" / "configs"
IMAGES = ROOT / "docs" / "images" / "gallery"
EXPERIMENTS = ("clusters", "sphere", "great_circle", "heat", "timescales", "study", "phase")
TWO_PI = 2.0 * math.pi


# =============================================================================== analysis
# Section 6: linear stability of the uniform state on the circle.


def growth_rates(beta: float, normalization: str = "uniform", kmax: int = 60):
    """(k, lambda_k) for k = 1..kmax: USA k^2 I_k(beta) / beta, SA divided by I_0(beta)."""
    k = np.arange(1, kmax + 1)
    lam = k * k * iv(k, beta) / beta
    if normalization == "softmax":
        lam = lam / iv(0, beta)
    return k, lam


def fastest_mode(beta: float, normalization: str = "uniform") -> int:
    """k* = argmax_k lambda_k (docs/theory.md section 6)."""
    k, lam = growth_rates(beta, normalization)
    return int(k[np.argmax(lam)])


def angles(points) -> np.ndarray:
    return np.mod(np.arctan2(points[..., 1], points[..., 0]), TWO_PI)


def fourier_coefficient(points, weights, k: int) -> complex:
    """mu_k = sum_j m_j e^{i k theta_j} (the convention of the fourier_modes diagnostic)."""
    return complex(np.sum(weights * np.exp(1j * k * angles(points))))


def predicted_positions(points, weights, k: int) -> np.ndarray:
    """Maxima of the growing mode k: the density perturbation is |mu_k| cos(k theta - arg mu_k),
    so the clusters sit at (arg mu_k + 2 pi j) / k, j = 0..k-1 (sorted, in [0, 2 pi)).
    (With the opposite convention mu_k = sum m e^{-ik theta} this is (2 pi j - arg mu_k) / k.)"""
    phase = np.angle(fourier_coefficient(points, weights, k))
    return np.sort(np.mod((phase + TWO_PI * np.arange(k)) / k, TWO_PI))


def circular_difference(a, b):
    """a - b wrapped to (-pi, pi]."""
    return np.angle(np.exp(1j * (np.asarray(a) - np.asarray(b))))


def position_errors(measured, predicted) -> np.ndarray | None:
    """|measured - predicted| (radians) per cluster under the best cyclic matching of the two
    sorted lists; None when the counts differ."""
    measured, predicted = np.sort(measured), np.sort(predicted)
    if len(measured) != len(predicted) or len(measured) == 0:
        return None
    best = None
    for shift in range(len(measured)):
        err = np.abs(circular_difference(np.roll(measured, shift), predicted))
        if best is None or err.max() < best.max():
            best = err
    return best


def final_clusters(result, gap: float = 0.05):
    """(centers, masses) of the last snapshot of a circle run (particles or finite volumes)."""
    if result.mass is not None:
        mesh_gap = max(gap, 2.5 * float(np.max(result.grid["areas"])))
        return circle_clusters(result.grid["centers"], result.mass[-1], gap=mesh_gap)
    return circle_clusters(result.positions[-1], result.weights, gap=gap)


SEEDED_AMPLITUDES = (0.0, 0.02, 0.05, 0.1, 0.2, 0.4)


def mean_field_from_sample(beta: float, n: int, seed: int, t_end: float, cells: int = 512,
                           normalization: str = "uniform", dt: float = 0.01, amplitude: float = 0.0,
                           phase: float = 0.0):
    """Finite volumes from the histogram of n i.i.d. samples (the sampling noise, not the
    sample's own particle dynamics): the clusters the mean-field equation makes of that noise.
    amplitude > 0 draws from (1 + amplitude cos(k* (t - phase)))/(2 pi) instead of the uniform
    law: the mode k* seeded at |mu_k*| = amplitude/2 on top of noise ~ 1/sqrt(n) in every mode.
    Returns (centers, masses, k*-prediction from the sample)."""
    ks = fastest_mode(beta, normalization)
    opts = (InitialOptions(kind="uniform", n=n, seed=seed) if amplitude == 0 else
            InitialOptions(kind="perturbed_uniform", n=n, seed=seed, amplitude=amplitude, mode=ks, phase=phase,
                           sampling="random"))
    x0, w = initial_measure(opts, d=2)
    mesh = CircleMesh(cells)
    m0 = np.histogram(angles(x0), bins=mesh.edges, weights=w)[0]
    model = mfpde.Model(d=2, beta=beta, normalization=normalization)
    solver = FVCircleSolver(model, SolverOptions(method="fv", cells=cells, dt=dt, cfl=0.4))
    m = solver.advance(m0, 0.0, t_end)
    centers, masses = circle_clusters(mesh.center_points, m, gap=2.5 * mesh.dx)
    return centers, masses, predicted_positions(x0, w, ks)


# Sections 3-4: alignment on S^2.


def top_eigenvector(M):
    """Unit eigenvector of the eigenvalue of largest real part (real), sign: first nonzero > 0."""
    w, U = np.linalg.eig(np.asarray(M, float))
    v = np.real(U[:, np.argmax(w.real)])
    v = v / np.linalg.norm(v)
    return v * np.sign(v[np.flatnonzero(np.abs(v) > 1e-12)[0]])


def antipodal_clusters(result):
    """Split the final tokens by the side of the dominant direction e of A (spectral_split
    basis): masses, unit mean directions, their angles to +-e and to +-v (the top eigenvector
    of V), the angle between them, the largest angle of a token from its cluster's center,
    and the masses Pi#rho_0 gives to +-e.

    Why v: a collapsed point cluster at c (its antipode at -c) attends to itself, so its
    field is r P_c V c (r > 0): c is stationary iff it is an eigenvector of V, and the flow
    dc/dt = r P_c V c (a power iteration) takes it to +-v.  Pi#rho_0 is the limit of the
    continuum field P_x V B^T x / |B^T x| of a spread density; the two agree when v = e
    (e.g. B = I)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = spectral_split(result.model)
    e = split.basis[:, 0]
    v = top_eigenvector(result.model.V)
    v = v * np.sign(v @ e)
    x, w = result.positions[-1], result.weights
    side = x @ e > 0
    out = {"e": e.tolist(), "v": v.tolist(), "angle_e_v": float(np.arccos(np.clip(abs(e @ v), -1, 1)))}
    centers = []
    for name, mask, sign in (("plus", side, 1.0), ("minus", ~side, -1.0)):
        c = w[mask] @ x[mask]
        c = c / np.linalg.norm(c)
        centers.append(c)
        out[f"mass_{name}"] = float(w[mask].sum())
        out[f"center_to_{name}_e"] = float(np.arccos(np.clip(sign * c @ e, -1, 1)))
        out[f"center_to_{name}_v"] = float(np.arccos(np.clip(sign * c @ v, -1, 1)))
        out[f"max_spread_{name}"] = float(np.arccos(np.clip(x[mask] @ c, -1, 1)).max())
        out[f"mean_spread_{name}"] = float(w[mask] @ np.arccos(np.clip(x[mask] @ c, -1, 1)) / w[mask].sum())
    out["antipodal_defect"] = float(math.pi - np.arccos(np.clip(centers[0] @ centers[1], -1, 1)))
    pts, lw = result.limit
    on_plus = pts @ e > 0
    out["limit_mass_plus"] = float(lw[on_plus].sum())
    return out


def rotation_speed(result, t_from: float):
    """Mean angular speed (rad per unit time) of the tokens inside E = span(e1, e2): the slope
    of the mean unwrapped angle against t over t >= t_from (least squares)."""
    phi = np.unwrap(np.arctan2(result.positions[:, :, 1], result.positions[:, :, 0]), axis=0)
    mean = phi @ result.weights
    keep = result.times >= t_from
    slope = np.polyfit(result.times[keep], mean[keep], 1)[0]
    return float(slope), mean


def zero_temperature_rotation(model):
    """Im(lambda) / |B^T x| for x in E: the angular speed of the zero-temperature flow on E."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        split = spectral_split(model)
    lam = split.eigenvalues[0]
    x = split.basis[:, 0]
    return float(abs(lam.imag) / np.linalg.norm(model.B.T @ x))


# Section 5: the heat phase.

QUADRATURE = 8192  # points of the quadrature of an analytic density on the circle


def _grid(n=QUADRATURE):
    theta = (np.arange(n) + 0.5) * TWO_PI / n
    return theta, np.stack([np.cos(theta), np.sin(theta)], axis=1)


def heat_mixture_density(theta, means, sigmas, weights, t, beta, sign=+1.0):
    """The heat-equation solution of a wrapped-normal mixture: every sigma^2 -> sigma^2 + sign 2t/beta
    (sign = +1 forward, V = -I; -1 backward, V = +I)."""
    var = np.asarray(sigmas, float) ** 2 + sign * 2.0 * t / beta
    return wrapped_normal_density(theta, means, np.sqrt(var), weights)


def gaussian_variance(var0: float, t: float, beta: float, sign: float = +1.0) -> float:
    """The variance of a Gaussian cluster under the softmax field with V = -sign I, flat
    (line) approximation: the attention average of a Gaussian of variance s^2 with the kernel
    e^{-beta u^2 / 2} moves each token at speed sign * u / (beta s^2 + 1), so
    d s^2 / dt = sign 2 s^2 / (beta s^2 + 1), i.e.
        beta (s^2 - s0^2) + log(s^2 / s0^2) = sign 2 t.
    To leading order s^2 = s0^2 + sign 2t/beta (the heat equation); the log term is the
    O(1/beta) correction of the finite attention width 1/sqrt(beta)."""
    rhs = sign * 2.0 * t

    def f(v):
        return beta * (v - var0) + math.log(v / var0) - rhs

    lo, hi = 1e-300, var0 + max(rhs, 0.0) / beta + 1.0
    return float(brentq(f, lo, hi, xtol=1e-15, rtol=1e-13))


def heat_of_sample_density(theta, points, weights, t, beta):
    """The forward heat flow (d rho/ds = rho'', s = t / beta) of the empirical measure itself:
    Fourier coefficients mu_k e^{-k^2 t / beta}.  t > 0."""
    kmax = int(math.ceil(math.sqrt(40.0 * beta / t)))
    k = np.arange(1, kmax + 1)
    phases = np.exp(1j * np.outer(k, angles(points)))
    mu = phases @ weights
    dens = 1.0 + 2.0 * np.real(np.exp(-1j * np.outer(theta, k)) @ (mu * np.exp(-k * k * t / beta)))
    return np.maximum(dens, 0.0) / TWO_PI


def w1_to_density(points, weights, density):
    """W_1 (geodesic, radians, exact circle method) from particles to a density on the grid."""
    _, G = _grid(len(density))
    return float(mfpde.wasserstein(points, weights, G, density, p=1, method="circle"))


def forward_heat_analysis(result, margin: float = 2.0):
    """W_1(t) of the V = -I run to the analytic heat solution of its wrapped-normal mixture.

    Stated bound (triangle inequality; the heat flow H_t is a W_1 contraction on the circle):
        W_1(rho_t^N, H_t rho_0) <= W_1(rho_0^N, rho_0) + W_1(rho_t^N, H_t rho_0^N)
    The first term is the sampling error, measured at t = 0.  The second is the O(1/beta)
    deviation of the dynamics from the heat flow, estimated by c(t) = W_1 between the heat
    mixture and the Gaussian-model mixture (gaussian_variance); the bound allows
    ``margin`` times that estimate: bound(t) = W_1(0) + margin c(t).
    Returns a dict of (T,) arrays: t, w1, w1_sample_heat (the second term, measured),
    model (c), bound; plus the config's mixture."""
    init = result.config["initial"]
    means, sigmas, weights = init["means"], init["sigmas"], init["weights"]
    beta = result.model.beta
    theta, G = _grid()
    out = {k: [] for k in ("t", "w1", "w1_sample_heat", "model", "bound")}
    w0 = None
    for t, x in zip(result.times, result.positions):
        exact = heat_mixture_density(theta, means, sigmas, weights, t, beta, +1.0)
        w1 = w1_to_density(x, result.weights, exact)
        w0 = w1 if w0 is None else w0
        corrected = wrapped_normal_density(
            theta, means, [math.sqrt(gaussian_variance(s * s, t, beta, +1.0)) for s in sigmas], weights)
        model = float(mfpde.wasserstein(G, exact, G, corrected, p=1, method="circle")) if t > 0 else 0.0
        sample = w1_to_density(x, result.weights, heat_of_sample_density(theta, result.positions[0],
                                                                          result.weights, t, beta)) if t > 0 else 0.0
        for key, val in (("t", t), ("w1", w1), ("w1_sample_heat", sample), ("model", model),
                         ("bound", w0 + margin * model)):
            out[key].append(val)
    out = {k: np.asarray(v) for k, v in out.items()}
    out.update(means=means, sigmas=sigmas, weights=weights, beta=beta, margin=margin)
    return out


def component_variances(result):
    """sigma^2(t) of each wrapped-normal component of a V = +I run: tokens are labelled by the
    component mean nearest to their final position (each component collapses in place), and
    sigma^2 = -2 log R (R the mean resultant length, exact for a wrapped normal).
    Returns (T, C) variances and the labels."""
    means = np.asarray(result.config["initial"]["means"], float)
    final = angles(result.positions[-1])
    labels = np.argmin(np.abs(circular_difference(final[:, None], means[None, :])), axis=1)
    th = angles(result.positions)
    var = np.empty((len(result.times), len(means)))
    for c in range(len(means)):
        sel = labels == c
        R = np.abs(np.exp(1j * th[:, sel]) @ result.weights[sel]) / result.weights[sel].sum()
        var[:, c] = -2.0 * np.log(R)
    return var, labels


def crossing_time(t, y, level):
    """First time y(t) <= level, linearly interpolated between snapshots (nan if never)."""
    below = np.flatnonzero(y <= level)
    if len(below) == 0:
        return math.nan
    i = below[0]
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (t[i] - t[i - 1]) * (y[i - 1] - level) / (y[i - 1] - y[i]))


def backward_heat_analysis(result):
    """Collapse times of the V = +I run: for each component, the measured time at which
    sigma^2 reaches the attention width 1/beta, against the heat-equation collapse time
    t* = beta sigma0^2 / 2 (leading order) and the Gaussian-model time to sigma^2 = 1/beta,
    t_c = (beta sigma0^2 - 1 + log(beta sigma0^2)) / 2 (with the O(1/beta) correction)."""
    beta = result.model.beta
    sigmas = np.asarray(result.config["initial"]["sigmas"], float)
    var, labels = component_variances(result)
    rows = []
    for c, s in enumerate(sigmas):
        b0 = beta * s * s
        rows.append({
            "sigma0": float(s),
            "sigma2_sample0": float(var[0, c]),
            "t_star": float(b0 / 2.0),
            "t_c_model": float((b0 - 1.0 + math.log(b0)) / 2.0),
            "t_c_measured": crossing_time(result.times, var[:, c], 1.0 / beta),
            "initial_slope": float((var[1, c] - var[0, c]) / (result.times[1] - result.times[0])),
        })
    return {"variances": var, "components": rows, "beta": beta, "slope_heat": -2.0 / beta}


# Section 5: pairing.


def closest_pair(centers):
    """The smallest angle between neighbouring cluster centers and the pair's indices."""
    c = np.sort(centers)
    gaps = np.diff(np.concatenate([c, [c[0] + TWO_PI]]))
    i = int(np.argmin(gaps))
    return float(gaps[i]), i, (i + 1) % len(c)


def pairing_times(beta, phi, m_a=0.5, m_b=0.5):
    """docs/theory.md: merge time ~ exp(beta (1 - cos phi)).  The two-cluster ODE (softmax,
    V = I on the circle, the self-weight dominating) d phi/dt = -(m_b/m_a + m_a/m_b)
    e^{-beta (1 - cos phi)} sin phi integrates (Laplace at the upper end) to
    T ~ exp(beta (1 - cos phi)) / ((m_a/m_b + m_b/m_a) beta sin^2 phi)."""
    plain = math.exp(beta * (1.0 - math.cos(phi)))
    refined = plain / ((m_a / m_b + m_b / m_a) * beta * math.sin(phi) ** 2)
    return plain, refined


def cluster_counts(result, gap=0.1, min_mass=0.01):
    """Number of clusters of the tokens' angles in the e1-e2 plane, per snapshot."""
    out = []
    for x in result.positions:
        xy = x[:, :2] / np.linalg.norm(x[:, :2], axis=1, keepdims=True)
        out.append(len(circle_clusters(xy, result.weights, gap=gap, min_mass=min_mass)[0]))
    return np.asarray(out)


# =============================================================================== running


class Runner:
    """Runs configs into a work directory, reusing a complete file made from the same config."""

    def __init__(self, workdir: Path, force: bool = False, quick: bool = False):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.force = force
        self.quick = quick
        self.walls: dict[str, float] = {}

    def q(self, overrides):
        """Overrides applied only with --quick."""
        return list(overrides) if self.quick else []

    def path(self, name: str) -> Path:
        return self.workdir / f"{name}.h5"

    def run(self, name: str, config: str, overrides=()):
        import h5py

        path = self.path(name)
        cfg = load_config(CONFIGS / config, list(overrides))
        cfg = cfg.replace(output=cfg.output.replace(path=str(path)))
        wanted = _comparable(cfg.to_dict())
        if path.exists() and not self.force:
            try:
                res = mfpde.load(path)
            except (OSError, ValueError):
                res = None
            if res is not None and res.complete and _comparable(res.config) == wanted:
                with h5py.File(path, "r") as f:
                    self.walls[name] = float(f.attrs.get("wall_time", math.nan))
                print(f"  {name}: reusing {path} ({self.walls[name]:.0f} s when made)", flush=True)
                return res
        print(f"  {name}: running {config} {' '.join(overrides)}", flush=True)
        start = time.perf_counter()
        res = mfpde.run(cfg, force=True)
        wall = time.perf_counter() - start
        with h5py.File(path, "r+") as f:
            f.attrs["wall_time"] = wall
        self.walls[name] = wall
        print(f"  {name}: {wall:.1f} s", flush=True)
        return res

    def study(self, name: str, config: str, overrides=()):
        import shutil

        from mfpde.study import run_study

        path = self.path(name)
        if self.force:
            path.unlink(missing_ok=True)
            shutil.rmtree(self.workdir / f"{name}.runs", ignore_errors=True)
        print(f"  {name}: study {config} {' '.join(overrides)} (finished runs are reused)", flush=True)
        study = run_study(CONFIGS / config, output=path, overrides=list(overrides))
        self.walls[name] = float(np.nansum(study.summary["wall_time"]))
        return study


def _comparable(config: dict) -> str:
    config = json.loads(json.dumps(config))
    config.get("output", {}).pop("path", None)
    return json.dumps(config, sort_keys=True)


# =============================================================================== figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, outdir: Path, name: str) -> str:
    path = outdir / name
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    print(f"  wrote {path}", flush=True)
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


_VIEW = np.array([1.0, 1.0, 1.0]) / math.sqrt(3.0)
_SX = np.array([1.0, -1.0, 0.0]) / math.sqrt(2.0)
_SY = np.cross(_VIEW, _SX)


def _sphere(ax, X, title, s=1.0, color="C0"):
    """Orthographic view of points on S^2 along (1,1,1)/sqrt(3): front hemisphere coloured."""
    front = X @ _VIEW >= 0
    t = np.linspace(0, TWO_PI, 200)
    ax.plot(np.cos(t), np.sin(t), color="0.6", lw=0.8)
    ax.scatter(X[~front] @ _SX, X[~front] @ _SY, s=s, color="0.8", rasterized=True, label="back hemisphere")
    ax.scatter(X[front] @ _SX, X[front] @ _SY, s=s, color=color, rasterized=True, label="front hemisphere")
    ax.set_aspect("equal")
    ax.set_xlim(-1.08, 1.08)
    ax.set_ylim(-1.08, 1.08)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def _mark(ax, p, **kw):
    ax.scatter([p @ _SX], [p @ _SY], **kw)


def _time_index(times, t):
    return int(np.argmin(np.abs(np.asarray(times) - t)))


def _hist_density(theta, weights, bins=256):
    edges = np.linspace(0, TWO_PI, bins + 1)
    h = np.histogram(theta, bins=edges, weights=weights)[0] / (edges[1] - edges[0])
    return edges, h


# =============================================================================== experiments


def exp_clusters(R: Runner, out: Path) -> dict:
    """Gallery 1: clusters on the circle, particles from noise, FV from the k* mode, seeds."""
    from matplotlib.colors import LogNorm
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    numbers = {}
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    figm, axm = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    figf, axf = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    for row, beta in enumerate((5, 7)):
        name = f"circle_clusters_beta{beta}"
        res = R.run(name, f"{name}.toml", R.q(["initial.n=2000"]))
        ks = fastest_mode(beta)
        k, lam = growth_rates(beta)
        x0, w = res.positions[0], res.weights
        pred = predicted_positions(x0, w, ks)
        centers, masses = final_clusters(res)
        err = position_errors(centers, pred)
        # the mean-field equation (finite volumes) from the histogram of the same initial tokens
        fv_name = f"circle_clusters_fv_beta{beta}_from_sample"
        fres = R.run(fv_name, f"circle_clusters_fv_beta{beta}.toml",
                     ['initial.kind="file"', f'initial.path="{R.path(name)}"', "initial.snapshot=0"])
        fc, fm = final_clusters(fres)
        err_fv = position_errors(centers, fc)
        # growth of mode k*: slope of log |mu_k*| where it grows from 3x its seed to 0.1
        series = res.diagnostics[f"fourier_mode_{ks}"]
        reach = int(np.argmax(series >= 0.1)) if (series >= 0.1).any() else len(series)
        win = np.arange(len(series)) < reach  # the linear phase: |mu_k*| below 0.1 (amplitude 0.2)
        rate = float(np.polyfit(res.times[win], np.log(series[win]), 1)[0]) if win.sum() >= 3 else math.nan
        numbers[f"beta{beta}"] = {
            "k_star": ks, "lambda": {int(a): float(b) for a, b in zip(k[:8], lam[:8])},
            "n": int(len(w)), "mu_kstar_0": abs(fourier_coefficient(x0, w, ks)),
            "predicted_positions": pred.tolist(),
            "clusters": centers.tolist(), "cluster_masses": masses.tolist(), "count": len(centers),
            "errors_vs_kstar_formula": None if err is None else err.tolist(),
            "mean_field_clusters": fc.tolist(), "mean_field_masses": fm.tolist(),
            "errors_vs_mean_field": None if err_fv is None else err_fv.tolist(),
            "growth_rate_kstar_measured": rate, "growth_rate_window": int(win.sum()),
            "wall_s": R.walls[name], "wall_fv_s": R.walls[fv_name],
        }
        # figure: density over (theta, t) and the final clusters
        ax = axes[row, 0]
        edges = np.linspace(0, TWO_PI, 257)
        rho = np.array([np.histogram(angles(x), bins=edges, weights=w)[0] for x in res.positions]) / (edges[1] - edges[0])
        t = res.times
        t_edges = np.concatenate([t, [t[-1] + t[-1] - t[-2]]])
        mesh = ax.pcolormesh(edges, t_edges, np.maximum(rho, 1e-2), norm=LogNorm(vmin=1e-2, vmax=rho.max()),
                             cmap="viridis", shading="flat", rasterized=True)
        fig.colorbar(mesh, ax=ax, label="density (per radian)")
        for p in pred:
            ax.axvline(p, color="w", ls="--", lw=0.8)
        ax.set_xlabel("angle θ (rad)")
        ax.set_ylabel("t (model time)")
        ax.set_title(f"β = {beta}, USA, N = {len(w)} uniform tokens;\ndashed: k* = {ks} prediction "
                     f"(arg μ_{ks}(0) + 2πj)/{ks}", fontsize=9)
        ax = axes[row, 1]
        ax.stem(centers, masses, linefmt="C0-", markerfmt="C0o", basefmt=" ", label="particles: clusters at t_end")
        ax.plot(fc, fm, "x", color="C3", ms=9, mew=2, label="finite volumes from the same tokens")
        for j, p in enumerate(pred):
            ax.axvline(p, color="0.4", ls="--", lw=1, label=f"k* = {ks} prediction" if j == 0 else None)
        ax.set_xlim(0, TWO_PI)
        ax.set_ylim(0, max(masses.max(), fm.max() if len(fm) else 0) * 1.25)
        ax.set_xlabel("cluster center (rad)")
        ax.set_ylabel("cluster mass (fraction of tokens)")
        e1 = "counts differ" if err is None else f"max {err.max():.2f} rad"
        e2 = "counts differ" if err_fv is None else f"max {err_fv.max():.3f} rad"
        ax.set_title(f"t = {t[-1]:g}: {len(centers)} clusters (k* = {ks});\nposition error vs k* formula {e1}, "
                     f"vs mean field {e2}", fontsize=9)
        ax.legend(fontsize=8, loc="upper right")
        # figure: mode growth against linear theory
        ax = axm[row]
        for kk in range(1, 7):
            s = res.diagnostics[f"fourier_mode_{kk}"]
            line, = ax.semilogy(t, s, lw=2 if kk == ks else 1, label=f"|μ_{kk}|" + (" (k*)" if kk == ks else ""))
            if kk in (ks - 1, ks, ks + 1):
                t_stop = t[np.argmax(s >= 0.3)] if (s >= 0.3).any() else t[-1]
                tt = t[t <= t_stop]
                ax.semilogy(tt, s[0] * np.exp(lam[kk - 1] * tt), ls="--", color=line.get_color(), lw=0.9)
        ax.set_ylim(1e-4, 1.5)
        ax.set_xlabel("t (model time)")
        ax.set_ylabel("|μ_k(t)| = |Σ m_j e^{ikθ_j}|")
        ax.set_title(f"β = {beta}, N = {len(w)}: Fourier modes; dashed: linear theory |μ_k(0)| e^(λ_k t);\n"
                     f"growth rate of k* = {ks}: λ = {lam[ks - 1]:.1f}, measured {rate:.1f} (while |μ_{ks}| < 0.1)",
                     fontsize=9)
        ax.legend(fontsize=8, ncol=2, loc="lower right")
        ax.grid(True, which="both", alpha=0.3)
        # finite volumes from the k* mode
        pname = f"circle_clusters_fv_beta{beta}"
        pres = R.run(pname, f"{pname}.toml")
        pc, pm = final_clusters(pres)
        exact = np.mod(TWO_PI * np.arange(ks) / ks, TWO_PI)
        perr = position_errors(pc, exact)
        numbers[f"fv_beta{beta}"] = {"clusters": pc.tolist(), "masses": pm.tolist(), "count": len(pc),
                                     "errors_vs_prediction": None if perr is None else perr.tolist(),
                                     "mass_error": float(abs(pres.mass[-1].sum() - 1)),
                                     "min_mass": float(pres.mass.min()), "wall_s": R.walls[pname]}
        ax = axf[row]
        dens = pres.mass[-1] / pres.grid["areas"]
        ax.semilogy(angles(pres.grid["centers"]), np.maximum(dens, 1e-12), lw=1, label=f"density at t = {pres.times[-1]:g}")
        for j, p in enumerate(exact):
            ax.axvline(p, color="C3", ls="--", lw=1, label=f"2πj/{ks} (maxima of cos({ks}θ))" if j == 0 else None)
        ax.set_xlabel("angle θ (rad)")
        ax.set_ylabel("density (per radian)")
        pe = "counts differ" if perr is None else f"max error {perr.max():.1e} rad"
        ax.set_title(f"finite volumes, β = {beta}, USA, M = {pres.grid['areas'].size}, from (1 + 10⁻³ cos {ks}θ)/2π:\n"
                     f"{len(pc)} clusters, {pe}", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
    numbers["figures"] = [_save(fig, out, "circle_clusters.png"), _save(figm, out, "circle_modes.png"),
                          _save(figf, out, "circle_clusters_fv.png")]
    # many seeds: the mean-field equation from the noise of 2e4 uniform tokens
    seeds = range(4 if R.quick else 20)
    figs, axs = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    start = time.perf_counter()
    for ax, (beta, t_end) in zip(axs, ((5, 0.6), (7, 0.1))):
        ks = fastest_mode(beta)
        counts, errs = [], []
        for seed in seeds:
            c, m, pred = mean_field_from_sample(beta, 20000, seed, t_end, cells=512, dt=0.01 if beta == 5 else 0.0025)
            counts.append(len(c))
            e = position_errors(c, pred)
            if e is not None:
                errs.append(float(e.max()))
        values, freq = np.unique(counts, return_counts=True)
        numbers[f"seeds_beta{beta}"] = {"seeds": len(seeds), "counts": counts,
                                        "fraction_kstar": float(np.mean(np.asarray(counts) == ks)),
                                        "max_error_vs_kstar_formula": errs}
        ax.bar(values, freq, color=["C3" if v == ks else "C0" for v in values])
        ax.set_xticks(range(1, 8))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("number of clusters at t_end")
        ax.set_ylabel(f"seeds (of {len(seeds)})")
        med = f"{np.median(errs):.2f}" if errs else "-"
        ax.set_title(f"β = {beta} (k* = {ks}, red): mean field from the noise of 2·10⁴ uniform tokens;\n"
                     f"k* clusters in {np.mean(np.asarray(counts) == ks):.0%} of seeds, median position error "
                     f"vs k* formula {med} rad", fontsize=9)
    numbers["seeds_wall_s"] = time.perf_counter() - start
    numbers["figures"].append(_save(figs, out, "circle_cluster_seeds.png"))
    # how strongly must mode k* be seeded above the noise for the k* formula to hold?
    n = 20000
    figa, axa = plt.subplots(1, 2, figsize=(11, 3.8), constrained_layout=True)
    start = time.perf_counter()
    rng = np.random.default_rng(1)
    for ax, (beta, t_end) in zip(axa, ((5, 0.6), (7, 0.1))):
        ks = fastest_mode(beta)
        rows = []
        for a in SEEDED_AMPLITUDES:
            errs, hits = [], 0
            for seed in seeds:
                c, m, pred = mean_field_from_sample(beta, n, seed, t_end, cells=512, dt=0.01 if beta == 5 else 0.0025,
                                                    amplitude=a, phase=float(rng.uniform(0, TWO_PI)))
                e = position_errors(c, pred)
                hits += len(c) == ks
                errs.append(math.inf if e is None else float(e.max()))
            errs = np.asarray(errs)
            rows.append({"amplitude": a, "snr": 0.5 * a * math.sqrt(n), "fraction_kstar": hits / len(seeds),
                         "max_errors": errs.tolist(), "median": float(np.median(errs)),
                         "fraction_within_0.05": float(np.mean(errs <= 0.05))})
        numbers[f"seeded_beta{beta}"] = rows
        snr = np.array([r["snr"] for r in rows[1:]])
        for q, lab, st in ((50, "median over seeds", "o-"), (100, "worst seed (π: count ≠ k*)", "s--")):
            ax.loglog(snr, [np.percentile(np.minimum(r["max_errors"], np.pi), q) for r in rows[1:]], st, label=lab)
        ax.axhline(0.05, color="C3", lw=1, label="0.05 rad")
        ax.set_xticks(snr, [f"{x:.1f}" for x in snr])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("seeded |μ_k*(0)| / noise 1/√N  (= a √N / 2)")
        ax.set_ylabel("max error vs (arg μ_k*(0) + 2πj)/k* (rad)")
        a0 = rows[0]
        ax.set_title(f"β = {beta}, k* = {ks}: mean field of 2·10⁴ draws, {len(seeds)} seeds per a\n"
                     f"a = 0 (uniform law): k* clusters in {a0['fraction_kstar']:.0%}, "
                     f"within 0.05 rad in {a0['fraction_within_0.05']:.0%}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    numbers["seeded_wall_s"] = time.perf_counter() - start
    numbers["figures"].append(_save(figa, out, "circle_cluster_seeded.png"))
    return numbers


def exp_sphere(R: Runner, out: Path) -> dict:
    """Gallery 2: two antipodal clusters (real top eigenvalue); a rotating great circle (complex)."""
    plt = _plt()
    numbers = {}
    res = R.run("sphere_alignment", "sphere_alignment.toml", R.q(["initial.n=1000"]))
    a = antipodal_clusters(res)
    a["w1_final"] = float(res.diagnostics["w_to_limit"][-1])
    a["dist_final"] = float(res.diagnostics["dist_to_subspace"][-1])
    a["wall_s"] = R.walls["sphere_alignment"]
    numbers["alignment"] = a
    e, v = np.asarray(a["e"]), np.asarray(a["v"])
    fig, axes = plt.subplots(1, 4, figsize=(13, 4.2), layout="constrained")
    for ax, t in zip(axes[:3], (0.0, 2.0, res.times[-1])):
        i = _time_index(res.times, t)
        _sphere(ax, res.positions[i], f"t = {res.times[i]:g}", s=1.0 if t < res.times[-1] else 25.0)
        _mark(ax, e, marker="o", s=160, facecolors="none", edgecolors="C3", lw=1.5, zorder=3,
              label="±e: top eigenvector of A (the atoms of Π#ρ₀)")
        _mark(ax, -e, marker="o", s=160, facecolors="none", edgecolors="C3", lw=1.5, zorder=3)
        _mark(ax, v, marker="+", s=60, color="k", zorder=4, label="±v: top eigenvector of V")
        _mark(ax, -v, marker="+", s=60, color="k", zorder=4)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=8, markerscale=1.5)
    ax = axes[3]
    ax.semilogy(res.times, res.diagnostics["w_to_limit"], label="W₁ to Π#ρ₀ (rad)")
    ax.semilogy(res.times, res.diagnostics["dist_to_subspace"], "--", label="mean distance to ±e (rad)")
    ax.axhline(a["angle_e_v"], color="0.4", ls=":", lw=1, label=f"angle(e, v) = {a['angle_e_v']:.3f}")
    cv = [np.arccos(np.clip(abs(x[x @ v > 0].mean(0) @ v) / np.linalg.norm(x[x @ v > 0].mean(0)), -1, 1))
          for x in res.positions]
    ax.semilogy(res.times, np.maximum(cv, 1e-6), "-.", label="angle(cluster center, v) (rad)")
    ax.set_xlabel("t (model time)")
    ax.set_ylabel("radians")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"masses {a['mass_plus']:.4f} / {a['mass_minus']:.4f} (Π#ρ₀: {a['limit_mass_plus']:.4f} / "
                 f"{1 - a['limit_mass_plus']:.4f});\nantipodal to {a['antipodal_defect']:.1e} rad, "
                 f"{a['center_to_plus_v']:.1e} rad from ±v", fontsize=8)
    fig.suptitle(f"S², β = {res.model.beta:g}, N = {len(res.weights)}, non-symmetric Q, K, V; A = V Kᵀ Q has a simple "
                 f"real top eigenvalue: two antipodal clusters, which end at ±v", fontsize=10)
    numbers["figures"] = [_save(fig, out, "sphere_alignment.png")]

    res = R.run("sphere_rotation", "sphere_rotation.toml", R.q(["initial.n=1000"]))
    omega0 = zero_temperature_rotation(res.model)
    t_from = 0.5 * res.times[-1]
    speed, mean_angle = rotation_speed(res, t_from)
    beta_r = res.model.beta * float(np.linalg.norm(res.model.B.T @ np.array([1.0, 0, 0])))
    numbers["rotation"] = {
        "omega_zero_temperature": omega0, "omega_measured": speed, "t_from": t_from,
        "attention_factor_uniform": float(iv(1, beta_r) / iv(0, beta_r)),
        "dist_final": float(res.diagnostics["dist_to_subspace"][-1]),
        "dist_max_final": float(np.abs(np.arcsin(np.clip(res.positions[-1][:, 2], -1, 1))).max()),
        "wall_s": R.walls["sphere_rotation"],
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    ax = axes[0]
    i = _time_index(res.times, 3.0)
    _sphere(ax, res.positions[i], f"t = {res.times[i]:g}: tokens approaching E ∩ S²", s=2.0)
    t = np.linspace(0, TWO_PI, 300)
    circle = np.stack([np.cos(t), np.sin(t), 0 * t], 1)
    front = circle @ _VIEW >= 0
    ax.plot(np.where(front, circle @ _SX, np.nan), np.where(front, circle @ _SY, np.nan), "k--", lw=0.8,
            label="E ∩ S² (front half)")
    ax.legend(loc="lower left", fontsize=7, markerscale=2)
    ax = axes[1]
    ax.semilogy(res.times, res.diagnostics["dist_to_subspace"])
    ax.set_xlabel("t (model time)")
    ax.set_ylabel("mean distance to E ∩ S² (rad)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("collapse onto the great circle E ∩ S²", fontsize=9)
    ax = axes[2]
    mid = 0.5 * (res.times[1:] + res.times[:-1])
    ax.plot(mid, np.diff(mean_angle) / np.diff(res.times), label="measured: d/dt of the mean angle in E")
    ax.axhline(omega0, color="C3", ls="--", label=f"zero temperature Im λ / |Bᵀx| = {omega0:.3f}")
    factor = numbers["rotation"]["attention_factor_uniform"]
    ax.axhline(omega0 * factor, color="0.4", ls=":", label=f"uniform density on E: × I₁/I₀(β|Bᵀx|) = {omega0 * factor:.3f}")
    ax.set_xlabel("t (model time)")
    ax.set_ylabel("angular speed in E (rad per unit time)")
    ax.set_ylim(0, 1.3 * omega0)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"rotation: {speed:.3f} rad/unit time for t ≥ {t_from:g}", fontsize=9)
    lam = np.linalg.eigvals(res.model.A)
    fig.suptitle(f"S², β = {res.model.beta:g}, N = {len(res.weights)}: A = V Kᵀ Q has dominant eigenvalues "
                 f"{lam[np.argmax(lam.real)].real:.3f} ± {abs(lam[np.argmax(lam.real)].imag):.3f}i", fontsize=10)
    numbers["figures"].append(_save(fig, out, "sphere_rotation.png"))
    return numbers


def exp_great_circle(R: Runner, out: Path) -> dict:
    """Gallery 2b: 1e4 tokens onto a tilted great circle, W_2 to Pi#rho_0 at every snapshot.

    For symmetric V each token's own limit atom is its nearest point of E cap S^2, so the
    identity coupling attains the lower bound: W_2^2 = mean_i dist(x_i, E)^2 (the reference).
    """
    plt = _plt()
    res = R.run("great_circle", "great_circle.toml", R.q(["initial.n=1000"]))
    w = res.diagnostics["w_to_limit"]
    ref = np.array([math.sqrt(float(np.mean(distance_to_subspace(res.model, x) ** 2))) for x in res.positions])
    attrs = res.diagnostic_attrs["w_to_limit"]
    rel = np.abs(w / ref - 1.0)
    numbers = {"n": len(res.weights), "snapshots": len(res.times), "method": attrs["method"],
               "bound_rad": attrs["bound"], "relative_bound": attrs["relative_bound"],
               "max_relative_error": float(rel.max()), "w_first": float(w[0]), "w_last": float(w[-1]),
               "wall_s": R.walls["great_circle"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    ax = axes[0]
    ax.semilogy(res.times, w, "o-", ms=3, label=f"w_to_limit (stored; method {attrs['method']})")
    ax.semilogy(res.times, ref, "k--", lw=1, label="sqrt(mean dist(x_i, E)²) (exact)")
    ax.set_xlabel("t (model time)")
    ax.set_ylabel("W₂ to Π#ρ₀ (rad)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    ax.semilogy(res.times, np.maximum(rel, 1e-16), "o-", ms=3, label="|stored / exact − 1|")
    ax.axhline(attrs["relative_bound"], color="C3", ls=":", label=f"certified relative bound ({attrs['relative_bound']:.1e})")
    ax.axhline(attrs["tolerance"], color="0.4", ls="--", lw=1, label=f"wasserstein.tolerance ({attrs['tolerance']:g})")
    ax.set_xlabel("t (model time)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"S², β = ∞, V = I − 1.5 nnᵀ (tilted great circle), N = {len(res.weights)}: "
                 f"W₂ to the {len(res.limit[0])}-atom limit at every snapshot", fontsize=10)
    numbers["figures"] = [_save(fig, out, "great_circle.png")]
    return numbers


def exp_heat(R: Runner, out: Path) -> dict:
    """Gallery 3: forward heat (V = -I) against the analytic solution; backward heat (V = +I)."""
    plt = _plt()
    numbers = {}
    res = R.run("heat_forward", "heat_forward.toml", R.q(["initial.n=5000", "solver.t_end=4"]))
    h = forward_heat_analysis(res)
    numbers["forward"] = {
        "n": int(len(res.weights)), "beta": res.model.beta, "times": h["t"].tolist(), "w1": h["w1"].tolist(),
        "w1_to_heat_of_sample": h["w1_sample_heat"].tolist(), "model_correction": h["model"].tolist(),
        "bound": h["bound"].tolist(), "margin": h["margin"], "w1_max": float(h["w1"].max()),
        "bound_min": float(h["bound"].min()),
        "w1_rho0_to_final_heat": w1_to_density(res.positions[0], res.weights,
                                               heat_mixture_density(_grid()[0], h["means"], h["sigmas"],
                                                                    h["weights"], res.times[-1], h["beta"])),
        "wall_s": R.walls["heat_forward"],
    }
    theta, _ = _grid()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    ax = axes[0]
    for c, t in enumerate((0.0, 0.25 * res.times[-1], 0.5 * res.times[-1], res.times[-1])):
        i = _time_index(res.times, t)
        edges, dens = _hist_density(angles(res.positions[i]), res.weights, bins=180)
        ax.stairs(dens, edges, color=f"C{c}", lw=1, label=f"tokens, t = {res.times[i]:g}")
        ax.plot(theta, heat_mixture_density(theta, h["means"], h["sigmas"], h["weights"], res.times[i], h["beta"]),
                color=f"C{c}", lw=1.8, alpha=0.6)
    ax.set_xlabel("angle θ (rad)")
    ax.set_ylabel("density (per radian)")
    ax.set_title("histograms (steps) and the heat solution, σ² + 2t/β (smooth)", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(h["t"], h["w1"], "o-", ms=3, label="W₁(tokens, heat solution of ρ₀)")
    ax.plot(h["t"][1:], h["w1_sample_heat"][1:], "s-", ms=3, label="W₁(tokens, heat flow of the initial tokens)")
    ax.plot(h["t"], h["model"], "--", label="c(t): O(1/β) correction, Gaussian model")
    ax.plot(h["t"], h["bound"], "k:", label=f"stated bound W₁(0) + {h['margin']:g} c(t)")
    ax.set_xlabel("t (model time)")
    ax.set_ylabel("W₁ (rad, geodesic)")
    ax.set_ylim(0, 1.15 * max(h["bound"].max(), h["w1"].max()))
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"max W₁ {h['w1'].max():.4f} rad; W₁ at t = 0 (sampling) {h['w1'][0]:.4f}", fontsize=9)
    fig.suptitle(f"forward heat phase: circle, V = −I, β = {h['beta']:g}, N = {len(res.weights)}, "
                 "three wrapped normals", fontsize=10)
    numbers["figures"] = [_save(fig, out, "heat_forward.png")]

    res = R.run("heat_backward", "heat_backward.toml", R.q(["initial.n=5000", "solver.t_end=2.5"]))
    b = backward_heat_analysis(res)
    numbers["backward"] = {"components": b["components"], "beta": b["beta"], "slope_heat": b["slope_heat"],
                           "wall_s": R.walls["heat_backward"]}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    ax = axes[0]
    for c, t in enumerate((0.0, 1.0, 2.0, res.times[-1])):
        i = _time_index(res.times, t)
        edges, dens = _hist_density(angles(res.positions[i]), res.weights, bins=360)
        ax.stairs(np.maximum(dens, 1e-3), edges, color=f"C{c}", lw=1, label=f"t = {res.times[i]:g}")
    ax.set_yscale("log")
    ax.set_ylim(1e-2, None)
    ax.set_xlabel("angle θ (rad)")
    ax.set_ylabel("density (per radian)")
    ax.set_title("histograms of the tokens: the components sharpen", fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    tt = np.linspace(0, res.times[-1], 200)
    for c, row in enumerate(b["components"]):
        s0 = row["sigma0"]
        ax.plot(res.times, b["variances"][:, c], "o", ms=3, color=f"C{c}", label=f"σ₀ = {s0:g}: measured")
        heat = s0 * s0 - 2 * tt / b["beta"]
        ax.plot(tt, np.where(heat > 0, heat, np.nan), "--", color=f"C{c}", lw=1)
        ax.plot(tt, [gaussian_variance(s0 * s0, x, b["beta"], -1.0) for x in tt], "-", color=f"C{c}", lw=1)
        ax.axvline(row["t_star"], color=f"C{c}", ls=":", lw=1)
    ax.axhline(1 / b["beta"], color="0.3", lw=0.8)
    ax.text(0.02, 1.15 / b["beta"], "1/β (attention width²)", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_yscale("log")
    ax.set_ylim(1e-3, 0.2)
    ax.set_xlabel("t (model time)")
    ax.set_ylabel("σ² of each component (rad²)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    c0 = b["components"][0]
    ax.set_title(f"dashed: heat σ₀² − 2t/β, collapse at t* = βσ₀²/2 (dotted); solid: with the O(1/β) correction;\n"
                 f"narrowest: t* = {c0['t_star']:.2f}, σ² = 1/β measured at {c0['t_c_measured']:.2f} "
                 f"(corrected prediction {c0['t_c_model']:.2f})", fontsize=8)
    fig.suptitle(f"backward heat phase: circle, V = +I, β = {b['beta']:g}, N = {len(res.weights)}", fontsize=10)
    numbers["figures"].append(_save(fig, out, "heat_backward.png"))
    return numbers


def exp_timescales(R: Runner, out: Path) -> dict:
    """Gallery 4: alignment, heat and pairing in one run: energy against log t."""
    plt = _plt()
    early = R.run("three_timescales_early", "three_timescales.toml",
                  ["solver.t_end=30", "output.save_every=0.1"] + R.q(["initial.n=200"]))
    late = R.run("three_timescales", "three_timescales.toml", R.q(["initial.n=200", "solver.t_end=300"]))
    beta = early.model.beta
    V = np.asarray(early.model.V)
    ev = np.sort(np.linalg.eigvalsh(0.5 * (V + V.T)))[::-1]
    g = float(ev[0] - ev[2])  # alignment rate of the zero-temperature flow (B = I)
    ks = fastest_mode(beta, "softmax")
    # clusters at the end of the early run (heat phase over): the closest pair
    xy = early.positions[-1][:, :2]
    centers, masses = circle_clusters(xy / np.linalg.norm(xy, axis=1, keepdims=True), early.weights, gap=0.1)
    phi, i, j = closest_pair(centers)
    order = np.argsort(centers)
    m_a, m_b = masses[order][i], masses[order][j]
    plain, refined = pairing_times(beta, phi, m_a, m_b)
    # measured: the alignment (distance to E below 1e-2), clustering (count settles), merges
    t_all = np.concatenate([early.times, late.times[late.times > early.times[-1]]])
    E_all = np.concatenate([early.diagnostics["energy"], late.diagnostics["energy"][late.times > early.times[-1]]])
    D_all = np.concatenate([early.diagnostics["dist_to_subspace"],
                            late.diagnostics["dist_to_subspace"][late.times > early.times[-1]]])
    n_early, n_late = cluster_counts(early), cluster_counts(late)
    n_all = np.concatenate([n_early, n_late[late.times > early.times[-1]]])
    t_align = crossing_time(t_all, D_all, 1e-2)
    band = (D_all <= 0.3) & (D_all >= 0.01) & (t_all <= early.times[-1])
    align_rate = float(-np.polyfit(t_all[band], np.log(D_all[band]), 1)[0]) if band.sum() >= 3 else math.nan
    n_all = np.where(D_all <= 0.01, n_all, -1)  # clusters in E mean something once the tokens are on E
    settled = n_early[-1]
    changes = np.flatnonzero(n_early != settled)
    t_cluster = float(early.times[changes[-1] + 1]) if len(changes) else float(early.times[0])
    merges = [(float(late.times[k]), int(n_late[k - 1]), int(n_late[k])) for k in range(1, len(n_late))
              if n_late[k] < n_late[k - 1] and late.times[k] > early.times[-1]]
    numbers = {
        "beta": beta, "n": int(len(early.weights)), "g": g, "k_star": ks,
        "t_align_predicted": 1.0 / g, "t_align_measured_dist_1e-2": t_align,
        "align_rate_measured": align_rate,
        "t_heat_predicted_beta": beta, "t_cluster_measured": t_cluster, "clusters_after_heat": int(settled),
        "cluster_centers_t30": np.sort(centers).tolist(), "cluster_masses_t30": masses[order].tolist(),
        "closest_pair_angle": phi, "pair_masses": [float(m_a), float(m_b)],
        "t_pair_exp": plain, "t_pair_refined": refined,
        "merges_measured": merges, "energy_t30": float(early.diagnostics["energy"][-1]),
        "energy_final": float(late.diagnostics["energy"][-1]),
        "wall_s": R.walls["three_timescales"], "wall_early_s": R.walls["three_timescales_early"],
    }
    fig, axes = plt.subplots(2, 1, figsize=(9, 7), sharex=True, constrained_layout=True)
    ax = axes[0]
    keep = t_all > 0
    ax.semilogx(t_all[keep], E_all[keep], "-", color="k", lw=1.5)
    marks = ((1.0 / g, "alignment t ~ 1/g", "C0"), (beta, "heat t ~ β", "C1"),
             (plain, "pairing e^{β(1−cos φ)}", "C3"), (refined, "pairing, refined", "C2"))
    for t, label, color in marks:
        ax.axvline(t, color=color, ls="--", lw=1.2, label=f"{label} = {t:.3g}")
    for t, a, bb in merges:
        ax.axvline(t, color="0.5", lw=0.6)
    ax.set_ylabel("energy (1/β) log ∫∫ e^{β⟨x,y⟩}")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    first = f"{merges[0][0]:.3g} ({merges[0][1]} → {merges[0][2]} clusters)" if merges else "none in the run"
    ax.set_title(f"S², V = diag(1, 1, 0), β = {beta:g}, N = {len(early.weights)}: alignment rate {align_rate:.2f} "
                 f"(g = {g:g}); {settled} clusters by t = {t_cluster:g};\nclosest pair φ = {phi:.2f} rad; "
                 f"first merge at t ≈ {first}", fontsize=9)
    ax = axes[1]
    ax.loglog(t_all[keep], np.maximum(D_all[keep], 1e-12), color="C0",
              label="mean distance to E ∩ S² (rad; floor 1e-12; below 1e-8 it is rk45 tolerance)")
    ax.set_ylim(1e-12, 2)
    ax.set_ylabel("distance to E ∩ S² (rad)")
    ax.set_xlabel("t (model time, log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax2 = ax.twinx()
    ax2.step(t_all[keep], np.where(n_all[keep] >= 0, n_all[keep], np.nan), where="post", color="C3",
             label="clusters in E (gap > 0.1 rad), once within 0.01 rad of E")
    ax2.set_ylabel("number of clusters", color="C3")
    ax2.set_ylim(0, max(8, n_all.max() + 1))
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    numbers["figures"] = [_save(fig, out, "three_timescales.png")]
    return numbers


def exp_study(R: Runner, out: Path) -> dict:
    """Gallery 5: the beta study (min_t W_1 against beta) and the terminal phase at long times."""
    plt = _plt()
    study = R.study("study_beta", "study_beta.toml",
                    R.q(["initial.n=1000", "solver.t_end=8", "solver.kernel=exact",
                         "study.sweep.model.beta=[10,100,1000]"]))
    s = study.summary
    order = np.argsort(np.asarray(s["model.beta"], float))
    beta = np.asarray(s["model.beta"], float)[order]
    wmin = np.asarray(s["metric_min"], float)[order]
    tmin = np.asarray(s["t_min"], float)[order]
    numbers = {"study": {"beta": beta.tolist(), "w1_min": wmin.tolist(), "t_min": tmin.tolist(),
                         "prediction_1.25/sqrt(beta)": (1.25 / np.sqrt(beta)).tolist(),
                         "slope": study.rates.get("slope"), "slope_stderr": study.rates.get("slope_stderr"),
                         "slope_vs_log_ratio": study.rates.get("slope_vs_log_ratio"),
                         "wall_s": R.walls["study_beta"],
                         "wall_per_run_s": np.asarray(s["wall_time"], float)[order].tolist()}}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), constrained_layout=True)
    ax = axes[0]
    for c, idx in enumerate(order):
        run = mfpde.load(study.run_paths[idx])
        ax.semilogy(run.times, run.diagnostics["w_to_limit"], color=f"C{c}", label=f"β = {beta[c]:g}")
        ax.axhline(1.25 / math.sqrt(beta[c]), color=f"C{c}", ls=":", lw=0.8)
    ax.set_xlabel("t (model time)")
    ax.set_ylabel("W₁ to Π#ρ₀ (rad, geodesic)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("W₁(ρ_β(t), Π#ρ₀); dotted: the floor 1.25/√β", fontsize=9)
    ax = axes[1]
    ax.loglog(beta, wmin, "o", label="min over t of W₁ (measured)")
    slope = study.rates.get("slope", math.nan)
    xs = np.geomspace(beta.min(), beta.max(), 100)
    if math.isfinite(slope):
        icpt = np.mean(np.log(wmin)) - slope * np.mean(np.log(beta))
        ax.loglog(xs, np.exp(icpt) * xs ** slope, "-", label=f"fit: slope {slope:.3f} ± {study.rates.get('slope_stderr', math.nan):.3f}")
    ref = np.sqrt(np.log(xs) / xs)
    scale = np.exp(np.mean(np.log(wmin)) - np.mean(np.log(np.sqrt(np.log(beta) / beta))))
    ax.loglog(xs, scale * ref, "--", color="0.4", label="√(log β / β) (theory §4, scaled)")
    ax.loglog(xs, 1.25 / np.sqrt(xs), ":", color="C3", label="1.25/√β (stationary cluster width)")
    ax.set_xlabel("β")
    ax.set_ylabel("min_t W₁ (rad)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"low-temperature concentration, N = {len(run.weights)}", fontsize=9)
    fig.suptitle("the beta study (data/configs/study_beta.toml): S², V = diag(−1, −2, −2), Q = K = I", fontsize=10)
    numbers["figures"] = [_save(fig, out, "study_beta.png")]

    term = R.study("terminal_phase", "terminal_phase.toml", R.q(["solver.t_end=60"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    numbers["terminal"] = {}
    tb = np.asarray(term.summary["model.beta"], float)
    for c, idx in enumerate(np.argsort(tb)):
        run = mfpde.load(term.run_paths[idx])
        pts, lw = run.limit
        e1 = np.array([1.0, 0.0, 0.0])
        limit_plus = float(lw[pts @ e1 > 0].sum())
        plus = np.array([run.weights[x[:, 0] > 0].sum() for x in run.positions])
        w = run.diagnostics["w_to_limit"]
        k_min = int(np.argmin(w))
        numbers["terminal"][f"beta{tb[idx]:g}"] = {
            "w1_min": float(w[k_min]), "t_min": float(run.times[k_min]), "w1_final": float(w[-1]),
            "t_end": float(run.times[-1]), "mass_plus_limit": limit_plus,
            "mass_plus_at_t_min": float(plus[k_min]), "mass_plus_final": float(plus[-1]),
            "wall_s": float(term.summary["wall_time"][idx]),
        }
        keep = run.times > 0
        axes[0].semilogx(run.times[keep], w[keep], color=f"C{c}", label=f"β = {tb[idx]:g}")
        axes[1].semilogx(run.times[keep], plus[keep], color=f"C{c}", label=f"β = {tb[idx]:g}")
        axes[1].axhline(limit_plus, color=f"C{c}", ls=":", lw=1)
    axes[1].axhline(0.5, color="0.4", ls="--", lw=0.8, label="1/2")
    axes[0].set_xlabel("t (model time, log scale)")
    axes[0].set_ylabel("W₁ to Π#ρ₀ (rad)")
    axes[0].set_title("W₁ to Π#ρ₀ at long times", fontsize=9)
    axes[1].set_xlabel("t (model time, log scale)")
    axes[1].set_ylabel("mass on the side x₁ > 0")
    axes[1].set_title("mass of the +e₁ cluster; dotted: Π#ρ₀'s (the initial split)", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"terminal phase (data/configs/terminal_phase.toml): the study's model, N = {len(run.weights)}, "
                 f"t up to {run.times[-1]:g}", fontsize=10)
    numbers["terminal"]["wall_s"] = R.walls["terminal_phase"]
    numbers["figures"].append(_save(fig, out, "terminal_phase.png"))
    return numbers


def exp_phase(R: Runner, out: Path) -> dict:
    """Gallery 6: phase diagrams of clustering from ensembles (data/configs/phase_diagram*.toml)."""
    from mfpde.plotting import phase_table, plot_phase

    numbers = {"figures": []}
    quick = R.q(["initial.systems=32", "solver.t_end=10",
                 "study.sweep.model.beta=[0.1,1,3,9]"])
    for name, title in (("phase_diagram", "Q = K = V = I"), ("phase_diagram_random", "one random Q, K, V")):
        study = R.study(name, f"{name}.toml", quick)
        runs = [mfpde.load(p) for p in study.run_paths]
        (panel,) = phase_table(study.swept_values(), [r.times for r in runs],
                               [r.diagnostics["clustered_fraction"] for r in runs])
        final = panel.mean[:, -1]
        numbers[name] = {
            "beta": panel.betas.tolist(), "systems": int(panel.systems[0]), "n": int(runs[0].positions.shape[-2]),
            "d": int(runs[0].model.d), "t_end": float(panel.times[-1]),
            "t_half": panel.crossing.tolist(),
            "clustered_fraction_final_mean": final.tolist(),
            "clustered_fraction_final_sem": panel.sem[:, -1].tolist(),
            "clustered_fraction_mean_t10": panel.mean[:, int(np.argmin(np.abs(panel.times - 10.0)))].tolist(),
            "wall_s": R.walls[name],
            "wall_per_run_s": [float(r.wall_time) for r in (runs[i] for i in panel.runs)],
        }
        fig = plot_phase(study)
        fig.suptitle(f"{title}, softmax, n = {numbers[name]['n']}, d = {numbers[name]['d']}\n"
                     f"(data/configs/{name}.toml)", fontsize=9)
        numbers["figures"].append(_save(fig, out, f"{name}.png"))
    return numbers


RUNNERS = {"clusters": exp_clusters, "sphere": exp_sphere, "great_circle": exp_great_circle, "heat": exp_heat,
           "timescales": exp_timescales, "study": exp_study, "phase": exp_phase}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=EXPERIMENTS, help="run only these experiments")
    parser.add_argument("--workdir", type=Path, help="where run files go (default out/gallery, out/gallery-quick)")
    parser.add_argument("--images", type=Path, help="where figures go (default docs/images/gallery; "
                                                    "with --quick, the work directory)")
    parser.add_argument("--force", action="store_true", help="run everything again")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    args = parser.parse_args(argv)
    workdir = args.workdir or ROOT / "out" / ("gallery-quick" if args.quick else "gallery")
    images = args.images or (workdir if args.quick else IMAGES)
    images.mkdir(parents=True, exist_ok=True)
    runner = Runner(workdir, force=args.force, quick=args.quick)
    numbers_path = images / "numbers.json"
    numbers = json.loads(numbers_path.read_text()) if numbers_path.exists() else {}
    start = time.perf_counter()
    for name in args.only or EXPERIMENTS:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        numbers[name] = RUNNERS[name](runner, images)
        numbers[name]["experiment_wall_s"] = time.perf_counter() - t0
    numbers_path.write_text(json.dumps(_jsonable(numbers), indent=1) + "\n")
    print(json.dumps(_jsonable({k: numbers[k] for k in args.only or EXPERIMENTS}), indent=1))
    print(f"wrote {numbers_path}; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
