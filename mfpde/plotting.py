"""matplotlib figures of run and study files (``mfpde plot``).

Kinds: ``density`` (circle: heat map of the density over angle and time; S^2: orthographic
views of the particles at a few times), ``trajectories`` (circle: angle against time;
S^2: paths in orthographic view), ``distance`` (a diagnostic against t, log scale; a
study overlays its runs), ``energy`` (energy against log t), ``rate`` (study: metric_min
against the fit axis, log-log, with the fitted slope and the sqrt(log beta / beta)
reference).  Every function returns a ``matplotlib.figure.Figure``; ``save_plot`` writes
PNG or PDF by the file's suffix.
"""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["KINDS", "plot_file", "save_plot", "is_study_file"]

KINDS = ("density", "trajectories", "distance", "energy", "rate")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def is_study_file(path) -> bool:
    from .io import DamagedFileError, _attr_str, _open_h5

    with _open_h5(path) as f:  # FileError (one line) for a file that is not HDF5 or does not open
        try:
            return _attr_str(f.attrs.get("format")) == "mfpde-study"
        except (OSError, RuntimeError, KeyError) as exc:
            raise DamagedFileError(f"{path}: cannot read its root attributes ({exc})") from None


def _angles(points):
    return np.mod(np.arctan2(points[..., 1], points[..., 0]), 2 * np.pi)


def _circle_density(result, bins=128):
    """(T, bins) density per radian on [0, 2 pi): cell masses / dx, or weighted histograms."""
    edges = np.linspace(0, 2 * np.pi, bins + 1)
    if result.mass is not None:
        centers = _angles(result.grid["centers"])
        order = np.argsort(centers)
        dx = np.asarray(result.grid["areas"])[order]
        return np.linspace(0, 2 * np.pi, len(order) + 1), result.mass[:, order] / dx
    rows = [np.histogram(_angles(x), bins=edges, weights=result.weights)[0] for x in result.positions]
    return edges, np.array(rows) / (edges[1] - edges[0])


#: The orthographic views look along (1, 1, 1)/sqrt(3): the coordinate axes +-e_k, where
#: clusters often sit, then project inside the disc instead of onto its rim.
VIEW = np.array([1.0, 1.0, 1.0]) / math.sqrt(3.0)
_SCREEN_X = np.array([1.0, -1.0, 0.0]) / math.sqrt(2.0)
_SCREEN_Y = np.cross(VIEW, _SCREEN_X)


def _orthographic(points):
    """Screen coordinates of points seen along VIEW, and a mask of the front hemisphere."""
    return points @ _SCREEN_X, points @ _SCREEN_Y, points @ VIEW >= 0


def _frames(n_times, n=4):
    return sorted(set(np.linspace(0, n_times - 1, min(n, n_times)).round().astype(int)))


def plot_density(result):
    plt = _pyplot()
    d = result.model.d
    if d == 2:
        edges, rho = _circle_density(result)
        fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
        t = np.asarray(result.times)
        t_edges = np.concatenate([t, [t[-1] + (t[-1] - t[-2] if len(t) > 1 else 1.0)]])
        mesh = ax.pcolormesh(edges, t_edges, rho, shading="flat", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="density (per radian)")
        ax.set_xlabel("angle θ (rad)")
        ax.set_ylabel("t (model time)")
        ax.set_title(f"density on S¹, β = {result.model.beta:g}")
        return fig
    if result.positions is None:
        raise ValueError("density plots on S^2 need particle positions (or a circle run)")
    frames = _frames(len(result.times))
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3.4), constrained_layout=True)
    axes = np.atleast_1d(axes)
    theta = np.linspace(0, 2 * np.pi, 200)
    for ax, k in zip(axes, frames):
        x, y, front = _orthographic(result.positions[k][:, :3])
        ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=0.8)
        ax.scatter(x[~front], y[~front], s=2, color="0.75", label="back hemisphere")
        ax.scatter(x[front], y[front], s=2, color="C0", label="front hemisphere")
        ax.set_aspect("equal")
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"t = {result.times[k]:.3g}")
    axes[0].legend(loc="lower left", fontsize=7, markerscale=3)
    fig.suptitle(f"tokens on S^{d - 1} (first 3 coordinates, orthographic view along (1,1,1)/√3), "
                 f"β = {result.model.beta:g}")
    return fig


def plot_trajectories(result, n_paths=60):
    plt = _pyplot()
    if result.positions is None:
        raise ValueError("trajectories need particle positions (a particle or PIC run)")
    pos = result.positions
    pick = np.linspace(0, pos.shape[1] - 1, min(n_paths, pos.shape[1])).astype(int)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    if result.model.d == 2:
        angles = np.unwrap(np.arctan2(pos[:, pick, 1], pos[:, pick, 0]), axis=0)
        ax.plot(result.times, angles, lw=0.8)
        ax.set_xlabel("t (model time)")
        ax.set_ylabel("angle θ (rad, unwrapped)")
    else:
        theta = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=0.8)
        for j in pick:
            x, y, _ = _orthographic(pos[:, j, :3])
            ax.plot(x, y, lw=0.7)
        x, y, _ = _orthographic(pos[-1, pick, :3])
        ax.scatter(x, y, s=8, color="k", zorder=3, label="final positions")
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("orthographic view along (1,1,1)/√3")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"{len(pick)} token trajectories, β = {result.model.beta:g}")
    return fig


def _diagnostic_axes(ax, name):
    unit = " (rad)" if name in ("w_to_limit", "dist_to_subspace") else ""
    label = {"w_to_limit": "W to Π#ρ₀", "dist_to_subspace": "distance to E ∩ S"}.get(name, name)
    ax.set_ylabel(label + unit)
    ax.set_xlabel("t (model time)")


def plot_distance(source, metric="w_to_limit"):
    """A diagnostic against t, log scale; ``source`` is a Result or a list of (label, Result)."""
    plt = _pyplot()
    runs = source if isinstance(source, list) else [(None, source)]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, res in runs:
        if metric not in res.diagnostics:
            raise ValueError(f"the file has no diagnostic {metric!r} (it has {sorted(res.diagnostics)})")
        series = np.asarray(res.diagnostics[metric])
        keep = series > 0
        ax.semilogy(res.times[keep], series[keep], label=label)
    _diagnostic_axes(ax, metric)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.set_title(f"{metric} against time")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_energy(source):
    plt = _pyplot()
    runs = source if isinstance(source, list) else [(None, source)]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, res in runs:
        if "energy" not in res.diagnostics:
            raise ValueError("the file has no 'energy' diagnostic (add it to output.diagnostics)")
        keep = res.times > 0
        ax.plot(res.times[keep], res.diagnostics["energy"][keep], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("t (model time, log scale)")
    ax.set_ylabel("interaction energy (1/β) log ∫∫ e^{β⟨Qx,Ky⟩}")
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.set_title("energy against log t")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_rate(study):
    """metric_min against the fit axis, log-log, the fitted slope and the reference."""
    plt = _pyplot()
    if not study.fit:
        raise ValueError("the study has no fit axis (study.fit)")
    x = np.asarray(study.summary[study.fit], dtype=float)
    y = np.asarray(study.summary["metric_min"], dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if not ok.any():
        raise ValueError("the study has no finished runs to plot")
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    ax.loglog(x[ok], y[ok], "o", label=f"min_t {study.metric} per run")
    xs = np.geomspace(x[ok].min(), x[ok].max(), 100)
    slope = study.rates.get("slope", math.nan)
    if math.isfinite(slope):
        logx, logy = np.log(x[ok]), np.log(y[ok])
        intercept = np.mean(logy) - slope * np.mean(logx)
        err = study.rates.get("slope_stderr", math.nan)
        ax.loglog(xs, np.exp(intercept) * xs**slope, "-", label=f"fit: slope {slope:.3f} ± {err:.3f}")
    if study.fit == "model.beta" and np.all(x[ok] > 1):
        ref = np.sqrt(np.log(xs) / xs)
        scale = np.exp(np.mean(np.log(y[ok])) - np.mean(np.log(np.sqrt(np.log(x[ok]) / x[ok]))))
        ax.loglog(xs, scale * ref, "--", color="0.4", label="√(log β / β) (reference)")
    ax.set_xlabel(study.fit + (" (β)" if study.fit == "model.beta" else ""))
    ax.set_ylabel(f"min over t of {study.metric}" + (" (rad)" if study.metric == "w_to_limit" else ""))
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("convergence rate")
    return fig


def plot_file(path, kind: str | None = None):
    """The figure of ``kind`` for a run or study file (default: rate for a study, distance
    for a run with w_to_limit, otherwise density)."""
    from .io import load
    from .study import load_study

    if kind is not None and kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if is_study_file(path):
        study = load_study(path)
        kind = kind or "rate"
        if kind == "rate":
            return plot_rate(study)
        runs = [(", ".join(f"{a}={study.summary[a][i]}" for a in study.axes), load(p))
                for i, p in enumerate(study.run_paths) if os.path.exists(p)]
        if kind == "distance":
            return plot_distance(runs, study.metric)
        if kind == "energy":
            return plot_energy(runs)
        raise ValueError(f"a study file plots rate, distance or energy, not {kind!r}")
    result = load(path)
    if kind is None:
        kind = "distance" if "w_to_limit" in result.diagnostics else "density"
    if kind == "rate":
        raise ValueError("the rate plot needs a study file (mfpde study)")
    return {"density": plot_density, "trajectories": plot_trajectories,
            "distance": plot_distance, "energy": plot_energy}[kind](result)


def save_plot(fig, out) -> str:
    """Write PNG or PDF (by suffix) and close the figure."""
    suffix = os.path.splitext(os.fspath(out))[1].lower()
    if suffix not in (".png", ".pdf", ".svg"):
        raise ValueError(f"-o must end in .png, .pdf or .svg, got {os.fspath(out)!r}")
    fig.savefig(out, dpi=130)
    _pyplot().close(fig)
    return os.fspath(out)
