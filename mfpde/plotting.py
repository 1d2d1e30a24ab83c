"""matplotlib figures of run and study files (``mfpde plot``).

Kinds:

``density``
    circle: heat map of the density over angle and time; S^2: orthographic views of the
    particles at a few times, or of the finite-volume cells coloured by density (front and
    back hemispheres).  The atoms of the limit measure :math:`\\Pi_\\#\\rho_0` are marked.
``trajectories``
    circle: angle against time; S^2: paths in orthographic view.
``distance``
    a diagnostic against t, log scale (default ``w_to_limit``); a study overlays its runs.
``energy``
    the interaction energy against log t.
``diagnostics``
    every stored series (or those named), one panel each; the Fourier modes share a panel.
``rate``
    study: ``metric_min`` against the fit axis, log-log, with the fitted slope and the
    :math:`\\sqrt{\\log\\beta/\\beta}` reference.
``phase``
    study sweeping ``model.beta``: a heat map of a diagnostic (default
    ``clustered_fraction``), averaged over the systems of each run, over
    (:math:`\\beta`, t); the first time the mean reaches 1/2 and, for
    :math:`Q = K = V = I`, the equiangular collapse time (``mfpde.equiangular``).
    One panel per combination of the other swept axes (:func:`phase_table`).

Every function returns a :class:`matplotlib.figure.Figure` made with pyplot, and never
changes matplotlib's backend (in Jupyter the figures show inline, and so do the user's own);
:func:`save_plot` writes PNG, PDF or SVG by the file's suffix.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np

from .io import is_study_file  # re-exported: mfpde.plotting.is_study_file

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

    from .io import Result
    from .study import StudyResult

__all__ = ["KINDS", "plot_file", "save_plot", "is_study_file", "plot_density", "plot_trajectories",
           "plot_distance", "plot_energy", "plot_diagnostics", "plot_rate", "plot_phase", "phase_table",
           "PhasePanel", "half_crossing_time", "one_system"]

#: The figure kinds of :func:`plot_file` (``mfpde plot --kind``).
KINDS = ("density", "trajectories", "distance", "energy", "diagnostics", "rate", "phase")

#: A run, or labelled runs (a study's overlay).
Runs = Union["Result", Sequence[tuple]]


def one_system(result: "Result", system: int = 0) -> "Result":
    """What the run plots draw of an ensemble (``result.systems`` = S > 1): system ``system``'s
    positions, weights and limit measure, with every diagnostic the mean over the S systems
    (T,).  A single-system result is returned as it is.  The density, trajectory and
    animation plots show that system; the series plots show the means (their titles say so).
    """
    S = getattr(result, "systems", 1)
    if S == 1:
        return result
    if not (isinstance(system, (int, np.integer)) and 0 <= system < S):
        raise ValueError(f"system must be an integer in [0, {S}), got {system!r}")
    limit = None if result.limit is None else (result.limit[0][system], result.limit[1][system])
    view = replace(result, positions=result.positions[:, system], weights=result.weights[system], limit=limit,
                   diagnostics={k: np.mean(v, axis=1) for k, v in result.diagnostics.items()}, systems=1)
    view.ensemble_note = f"system {system} of {S}", f"mean over {S} systems"
    return view


def _notes(result) -> tuple:
    """(the shown system, the averaging) of an ensemble's view; ("", "") for one system."""
    return getattr(result, "ensemble_note", ("", ""))


def _with_note(text: str, note: str) -> str:
    return f"{text} ({note})" if note else text


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _angles(points):
    return np.mod(np.arctan2(points[..., 1], points[..., 0]), 2 * np.pi)


def _time_edges(t):
    """Cell edges of snapshot times: midpoints between snapshots, clipped to [t_0, t_end]."""
    t = np.asarray(t, dtype=float)
    if len(t) == 1:
        return np.array([t[0], t[0] + 1.0])
    mid = 0.5 * (t[1:] + t[:-1])
    return np.concatenate([[t[0]], mid, [t[-1]]])


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


def _orthographic(points, side=1):
    """Screen coordinates of points seen along ``side * VIEW`` (side = -1: from behind, mirrored
    so that the two views join at the rim), and a mask of the hemisphere facing the viewer."""
    return side * (points @ _SCREEN_X), points @ _SCREEN_Y, side * (points @ VIEW) >= 0


def _frames(n_times, n=4):
    return sorted(set(np.linspace(0, n_times - 1, min(n, n_times)).round().astype(int)))


def _disc(ax):
    theta = np.linspace(0, 2 * np.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=0.8)
    ax.set_aspect("equal")
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xticks([])
    ax.set_yticks([])


def _limit_points(result):
    """The atoms of Pi#rho_0 stored in the file that carry mass, or None."""
    if result.limit is None:
        return None
    points, weights = result.limit
    keep = np.asarray(weights) > 1e-12
    return np.asarray(points)[keep] if keep.any() else None


def _mark_limit_sphere(ax, result, side=1, label=True):
    pts = _limit_points(result)
    if pts is None or pts.shape[1] < 3:
        return
    x, y, front = _orthographic(pts[:, :3], side)
    ax.scatter(x[front], y[front], marker="x", s=40, color="red", linewidths=1.5, zorder=4,
               label=r"atoms of $\Pi_\#\rho_0$" if label else None)
    ax.scatter(x[~front], y[~front], marker="x", s=25, color="salmon", linewidths=1, zorder=4)


def _sphere_cells(centers):
    """The Voronoi polygon (k, 3) of every cell center on S^2 (scipy's SphericalVoronoi)."""
    from scipy.spatial import SphericalVoronoi

    sv = SphericalVoronoi(np.asarray(centers, dtype=float), radius=1.0, threshold=1e-6)
    sv.sort_vertices_of_regions()
    return [sv.vertices[region] for region in sv.regions]


def _sphere_cell_collection(ax, polygons, centers, values, side, norm, cmap="viridis"):
    """Cells of the hemisphere facing the viewer, coloured by ``values``; returns the collection."""
    from matplotlib.collections import PolyCollection

    _, _, front = _orthographic(np.asarray(centers), side)
    verts = []
    for k in np.flatnonzero(front):
        poly = polygons[k]
        verts.append(np.column_stack(_orthographic(poly, side)[:2]))
    coll = PolyCollection(verts, array=np.asarray(values)[front], cmap=cmap, norm=norm,
                          edgecolors="face", linewidths=0.2)
    ax.add_collection(coll)
    return coll, front


def _beta_text(result):
    model = result.model
    return r"\infty" if model.is_zero_temperature else f"{model.beta:g}"


def plot_density(result: "Result") -> "Figure":
    """The density: a heat map over angle and time on S^1; orthographic views at four
    times on S^2 (particles as points, finite-volume cells coloured by density per
    steradian, front and back hemispheres).  The atoms of the limit measure are marked.
    An ensemble shows its system 0 (:func:`one_system`)."""
    plt = _pyplot()
    result = one_system(result)
    shown = _notes(result)[0]
    d = result.model.d
    if d == 2:
        edges, rho = _circle_density(result)
        fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
        mesh = ax.pcolormesh(edges, _time_edges(result.times), rho, shading="flat", cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="density (per radian)")
        pts = _limit_points(result)
        if pts is not None:
            for k, a in enumerate(_angles(pts)):
                ax.axvline(a, color="red", ls="--", lw=1, label=r"atoms of $\Pi_\#\rho_0$" if k == 0 else None)
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlim(0, 2 * np.pi)
        ax.set_xlabel(r"angle $\theta$ (rad)")
        ax.set_ylabel(r"$t$ (model time)")
        ax.set_title(_with_note(rf"density on $S^1$, $\beta = {_beta_text(result)}$", shown))
        return fig
    frames = _frames(len(result.times))
    if result.positions is None:
        if d != 3 or result.mass is None or result.grid is None:
            raise ValueError("density plots on S^{d-1}, d > 3, need particle positions")
        return _plot_sphere_cells(result, frames)
    fig, axes = plt.subplots(1, len(frames), figsize=(3.2 * len(frames), 3.4), constrained_layout=True)
    axes = np.atleast_1d(axes)
    for ax, k in zip(axes, frames):
        x, y, front = _orthographic(result.positions[k][:, :3])
        _disc(ax)
        ax.scatter(x[~front], y[~front], s=2, color="0.75", label="back hemisphere")
        ax.scatter(x[front], y[front], s=2, color="C0", label="front hemisphere")
        _mark_limit_sphere(ax, result)
        ax.set_title(f"t = {result.times[k]:.3g}")
    axes[0].legend(loc="lower left", fontsize=7, markerscale=2)
    fig.suptitle(_with_note(rf"tokens on $S^{{{d - 1}}}$ (first 3 coordinates, orthographic view along "
                            rf"(1,1,1)/$\sqrt{{3}}$), $\beta = {_beta_text(result)}$", shown))
    return fig


def _plot_sphere_cells(result, frames):
    from matplotlib.colors import Normalize

    plt = _pyplot()
    centers, areas = result.grid["centers"], np.asarray(result.grid["areas"])
    polygons = _sphere_cells(centers)
    density = result.mass / areas
    norm = Normalize(vmin=0.0, vmax=float(np.max(density[frames])))
    fig, axes = plt.subplots(2, len(frames), figsize=(3.0 * len(frames), 6.0), constrained_layout=True,
                             squeeze=False)
    coll = None
    for j, k in enumerate(frames):
        for i, side in enumerate((1, -1)):
            ax = axes[i, j]
            _disc(ax)
            coll, _ = _sphere_cell_collection(ax, polygons, centers, density[k], side, norm)
            _mark_limit_sphere(ax, result, side, label=(i == 0 and j == 0))
            if i == 0:
                ax.set_title(f"t = {result.times[k]:.3g}")
        axes[1, j].set_xlabel("back hemisphere (mirrored)")
    axes[0, 0].set_ylabel("front (along (1,1,1))")
    axes[1, 0].set_ylabel("back (along -(1,1,1))")
    fig.colorbar(coll, ax=axes, label="density (per sr)", shrink=0.8)
    if _limit_points(result) is not None:
        axes[0, 0].legend(loc="lower left", fontsize=7)
    fig.suptitle(rf"finite-volume density on $S^2$ ({len(areas)} cells), $\beta = {_beta_text(result)}$")
    return fig


def plot_trajectories(result: "Result", n_paths: int = 60) -> "Figure":
    """Paths of up to ``n_paths`` tokens: angle against t on S^1, orthographic view on S^2
    (an ensemble: its system 0)."""
    plt = _pyplot()
    result = one_system(result)
    if result.positions is None:
        raise ValueError("trajectories need particle positions (a particle or PIC run)")
    pos = result.positions
    pick = np.linspace(0, pos.shape[1] - 1, min(n_paths, pos.shape[1])).astype(int)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    if result.model.d == 2:
        angles = np.unwrap(np.arctan2(pos[:, pick, 1], pos[:, pick, 0]), axis=0)
        ax.plot(result.times, angles, lw=0.8)
        ax.set_xlabel(r"$t$ (model time)")
        ax.set_ylabel(r"angle $\theta$ (rad, unwrapped)")
    else:
        _disc(ax)
        for j in pick:
            x, y, _ = _orthographic(pos[:, j, :3])
            ax.plot(x, y, lw=0.7)
        x, y, _ = _orthographic(pos[-1, pick, :3])
        ax.scatter(x, y, s=8, color="k", zorder=3, label="final positions")
        _mark_limit_sphere(ax, result)
        ax.set_xlabel(r"orthographic view along (1,1,1)/$\sqrt{3}$")
        ax.legend(loc="lower left", fontsize=8)
    ax.set_title(_with_note(rf"{len(pick)} token trajectories, $\beta = {_beta_text(result)}$", _notes(result)[0]))
    return fig


def _wasserstein_options(result):
    config = result.config if isinstance(result.config, dict) else {}
    w = config.get("wasserstein") or {}
    return float(w.get("p", 2)), str(w.get("ground", "geodesic"))


def _series_label(name: str, result: "Result | None" = None) -> str:
    """The axis label (mathtext) of a stored diagnostic series; W names p and the ground cost."""
    if name == "w_to_limit":
        p, ground = _wasserstein_options(result) if result is not None else (2.0, "geodesic")
        unit = " (rad)" if ground == "geodesic" else ""
        return rf"$W_{{{p:g}}}(\rho_t, \Pi_\#\rho_0)${unit}, {ground} cost"
    if name == "dist_to_subspace":
        return r"$\int \mathrm{dist}(x, E \cap S^{d-1})\, d\rho_t$ (rad)"
    if name == "energy":
        return r"$E = \frac{1}{\beta} \log \int\!\!\int e^{\beta \langle Qx, Ky \rangle} d\rho_t d\rho_t$"
    if name == "mass":
        return r"total mass $\int d\rho_t$"
    if name == "min_mass":
        return "smallest atom / cell mass"
    if name == "n_clusters":
        return "number of clusters"
    if name == "clustered_fraction":
        return r"clustered fraction (pairs with $\langle x_i, x_j \rangle \geq 1 - \delta$)"
    m = re.fullmatch(r"fourier_mode_(\d+)", name)
    if m:
        return rf"$|\hat\mu_{{{m.group(1)}}}|$"
    return name


def _runs(source):
    """(label, result) pairs, an ensemble's diagnostics averaged over its systems (:func:`one_system`)."""
    runs = list(source) if isinstance(source, (list, tuple)) else [(None, source)]
    return [(label, one_system(res)) for label, res in runs]


def _mean_note(runs) -> str:
    notes = {_notes(res)[1] for _, res in runs}
    return notes.pop() if len(notes) == 1 else ("means over systems" if any(notes) else "")


def plot_distance(source: Runs, metric: str = "w_to_limit") -> "Figure":
    """A diagnostic against t, log scale; ``source`` is a Result or a list of (label, Result)."""
    plt = _pyplot()
    runs = _runs(source)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, res in runs:
        if metric not in res.diagnostics:
            raise ValueError(f"the file has no diagnostic {metric!r} (it has {sorted(res.diagnostics)})")
        series = np.asarray(res.diagnostics[metric])
        keep = series > 0
        ax.semilogy(res.times[keep], series[keep], label=label)
    ax.set_ylabel(_series_label(metric, runs[0][1]))
    ax.set_xlabel(r"$t$ (model time)")
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.set_title(_with_note(f"{metric} against time", _mean_note(runs)))
    ax.grid(True, which="both", alpha=0.3)
    return fig


def plot_energy(source: Runs) -> "Figure":
    """The interaction energy against log t; ``source`` is a Result or (label, Result) pairs."""
    plt = _pyplot()
    runs = _runs(source)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, res in runs:
        if "energy" not in res.diagnostics:
            raise ValueError("the file has no 'energy' diagnostic (add it to output.diagnostics)")
        keep = res.times > 0
        ax.plot(res.times[keep], res.diagnostics["energy"][keep], label=label)
    ax.set_xscale("log")
    ax.set_xlabel(r"$t$ (model time, log scale)")
    ax.set_ylabel(_series_label("energy"))
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.set_title(_with_note("energy against log t", _mean_note(runs)))
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _panels(names):
    """Series names grouped into panels: every fourier_mode_k together, the others alone."""
    panels, fourier = [], []
    for name in names:
        if re.fullmatch(r"fourier_mode_\d+", name):
            if not fourier:
                panels.append(fourier)
            fourier.append(name)
        else:
            panels.append([name])
    return panels


def plot_diagnostics(source: Runs, names: Sequence[str] | None = None) -> "Figure":
    """Stored diagnostic series against t, one panel per series (all of them by default;
    the Fourier modes share one panel); a log y axis where a positive series spans more
    than two decades.  ``source`` is a Result or a list of (label, Result)."""
    plt = _pyplot()
    runs = _runs(source)
    have = list(runs[0][1].diagnostics)
    names = list(names) if names else have
    if not names:
        raise ValueError("the file has no diagnostics to plot")
    for label, res in runs:
        missing = [n for n in names if n not in res.diagnostics]
        if missing:
            raise ValueError(f"the file has no diagnostic {missing[0]!r} (it has {sorted(res.diagnostics)})")
    panels = _panels(names)
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), constrained_layout=True, squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        positive = True
        values = []
        for label, res in runs:
            for name in panel:
                y = np.asarray(res.diagnostics[name], dtype=float)
                values.append(y)
                tag = name.replace("fourier_mode_", "k = ") if len(panel) > 1 else None
                text = ", ".join(t for t in (label, tag) if t) or None
                ax.plot(res.times, y, lw=1.2, label=text)
                positive &= bool(np.all(y[np.isfinite(y)] > 0))
        allv = np.concatenate(values)
        allv = allv[np.isfinite(allv)]
        if positive and allv.size and allv.max() / allv.min() > 100:
            ax.set_yscale("log")
        ax.set_ylabel(_series_label(panel[0], runs[0][1]) if len(panel) == 1 else r"$|\hat\mu_k|$")
        ax.set_xlabel(r"$t$ (model time)")
        ax.set_title(panel[0] if len(panel) == 1 else "Fourier modes", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        if len(panel) > 1 or len(runs) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if _mean_note(runs):
        fig.suptitle(_mean_note(runs), fontsize=10)
    return fig


def plot_rate(study: "StudyResult") -> "Figure":
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
    ax.loglog(x[ok], y[ok], "o", label=rf"$\min_t$ {study.metric} per run")
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
    ax.set_xlabel(study.fit + (r" ($\beta$)" if study.fit == "model.beta" else ""))
    ax.set_ylabel(f"min over t of {study.metric}" + (" (rad)" if study.metric == "w_to_limit" else ""))
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("convergence rate")
    return fig


# --------------------------------------------------------------------------- phase diagram

#: The swept key on the phase diagram's horizontal axis.
PHASE_AXIS = "model.beta"
#: The label of the fitted transition curve, and of the equiangular reference.
HALF_LABEL = "mean = 1/2"
EQUIANGULAR_LABEL = "equiangular ODE (rho0 = 0)"


@dataclass(frozen=True)
class PhasePanel:
    """One panel of the phase diagram: the runs sharing the values ``others`` of the swept
    axes other than ``model.beta``, sorted by beta.

    betas (B,); times (T,) model time; mean (B, T): the diagnostic averaged over each run's
    systems; sem (B, T): std over systems (ddof = 1) / sqrt(S), NaN for S = 1; crossing (B,):
    :func:`half_crossing_time` of each mean row (NaN where it never reaches the level);
    systems (B,): S per run; runs (B,): the runs' indices in the inputs of
    :func:`phase_table`; theory (B,) or None: the equiangular collapse time t*(beta)
    (``plot_phase`` fills it in, NaN where not computed).
    """

    others: dict
    betas: np.ndarray
    times: np.ndarray
    mean: np.ndarray
    sem: np.ndarray
    crossing: np.ndarray
    systems: np.ndarray
    runs: tuple
    theory: np.ndarray | None = None


def half_crossing_time(times: "ArrayLike", mean: "ArrayLike", level: float = 0.5) -> float:
    """The first time a series reaches ``level`` (model time), NaN if it never does.

    With k the first snapshot with mean[k] >= level: times[0] if k = 0, else the linear
    interpolation t[k-1] + (level - m[k-1]) (t[k] - t[k-1]) / (m[k] - m[k-1]) between the
    last snapshot below the level and the first at or above it (an upward crossing).
    """
    t = np.asarray(times, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    above = np.flatnonzero(m >= level)
    if above.size == 0:
        return math.nan
    k = int(above[0])
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (level - m[k - 1]) * (t[k] - t[k - 1]) / (m[k] - m[k - 1]))


def _beta_value(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"the phase diagram needs finite numbers on its model.beta axis, got {value!r}")
    return float(value)


def phase_table(swept_values: Sequence[dict], times_list: Sequence, values_list: Sequence, *,
                level: float = 0.5) -> list[PhasePanel]:
    """The phase diagram's arrays, one :class:`PhasePanel` per combination of the swept axes
    other than ``model.beta`` (in order of first appearance).

    swept_values: one dict of swept values per run (``StudyResult.swept_values()``), each
    with a ``model.beta`` key; times_list: each run's snapshot times (T,) -- all equal, to
    1e-12 relative; values_list: each run's diagnostic series, (T,) for a single system or
    (T, S) for an ensemble of S systems.  The mean over systems, its standard error (std with
    ddof = 1 over sqrt(S); NaN for S = 1) and the first time the mean reaches ``level``
    (:func:`half_crossing_time`) are computed per run.  ``ValueError`` (one line) without a
    model.beta axis, with a non-finite or repeated beta, different time grids, or a series
    that does not match the times.
    """
    swept_values = list(swept_values)
    if len(times_list) != len(swept_values) or len(values_list) != len(swept_values):
        raise ValueError(f"phase_table needs one time grid and one series per run: {len(swept_values)} runs, "
                         f"{len(times_list)} time grids, {len(values_list)} series")
    if not swept_values:
        raise ValueError("the phase diagram needs at least one run")
    if any(PHASE_AXIS not in v for v in swept_values):
        axes = sorted(set().union(*swept_values))
        raise ValueError(f"the phase diagram needs a {PHASE_AXIS} sweep axis; the study sweeps {axes}")
    times = np.asarray(times_list[0], dtype=np.float64)
    means, sems, systems = [], [], []
    for k, (t, v) in enumerate(zip(times_list, values_list)):
        t = np.asarray(t, dtype=np.float64)
        if t.shape != times.shape or not np.allclose(t, times, rtol=1e-12, atol=0.0):
            raise ValueError(f"the runs have different time grids: run {k} has {t.size} snapshots to "
                             f"t = {t[-1] if t.size else math.nan:g}, run 0 has {times.size} to t = {times[-1]:g}")
        v = np.asarray(v, dtype=np.float64)
        shape = v.shape
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2 or v.shape[0] != times.size or v.shape[1] < 1:
            raise ValueError(f"run {k}: the series has shape {shape}, expected ({times.size},) or "
                             f"({times.size}, S)")
        S = v.shape[1]
        means.append(v.mean(axis=1))
        sems.append(v.std(axis=1, ddof=1) / math.sqrt(S) if S > 1 else np.full(times.size, math.nan))
        systems.append(S)
    groups: dict = {}
    for k, values in enumerate(swept_values):
        others = {a: x for a, x in values.items() if a != PHASE_AXIS}
        key = json.dumps(others, sort_keys=False, default=str)
        groups.setdefault(key, (others, []))[1].append(k)
    panels = []
    for others, runs in groups.values():
        betas = np.array([_beta_value(swept_values[k][PHASE_AXIS]) for k in runs])
        order = np.argsort(betas, kind="stable")
        betas, runs = betas[order], tuple(runs[i] for i in order)
        if np.any(np.diff(betas) == 0):
            raise ValueError(f"model.beta = {betas[np.flatnonzero(np.diff(betas) == 0)[0]]:g} appears twice"
                             f" in the panel {_swept_label(others) or '(no other axes)'}")
        mean = np.array([means[k] for k in runs])
        panels.append(PhasePanel(
            others=others, betas=betas, times=times.copy(), mean=mean,
            sem=np.array([sems[k] for k in runs]),
            crossing=np.array([half_crossing_time(times, row, level) for row in mean]),
            systems=np.array([systems[k] for k in runs], dtype=np.int64), runs=runs))
    return panels


def _beta_edges(betas):
    """Cell edges along beta: a log axis (geometric midpoints) when beta > 0 spans > 20x and
    its values are closer to evenly spaced in log beta than in beta, else a linear one."""
    b = np.asarray(betas, dtype=np.float64)
    log = bool(b.size > 1 and b.min() > 0 and b.max() / b.min() > 20)
    if log and b.size > 2:  # which spacing the sweep follows: the smaller relative spread of the steps
        lin, geo = np.diff(b), np.diff(np.log(b))
        log = bool(np.std(geo) / np.mean(geo) < np.std(lin) / np.mean(lin))
    x = np.log(b) if log else b
    if x.size == 1:
        edges = np.array([x[0] - 0.5, x[0] + 0.5])
    else:
        mid = 0.5 * (x[1:] + x[:-1])
        edges = np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])
    if log:
        return np.exp(edges), True
    if b[0] >= 0:
        edges[0] = max(edges[0], 0.0)
    return edges, False


def _draw_phase(panels: Sequence[PhasePanel], diagnostic: str = "clustered_fraction") -> "Figure":
    """The phase diagram of :func:`phase_table`'s panels (no file access): per panel a
    ``pcolormesh`` of mean.T over (beta edges, time edges), the half-crossing curve (where
    any run crosses) and the theory curve (where ``panel.theory`` has a finite value)."""
    from matplotlib.colors import Normalize

    plt = _pyplot()
    if diagnostic == "clustered_fraction":
        norm = Normalize(vmin=0.0, vmax=1.0)
    else:
        finite = np.concatenate([p.mean[np.isfinite(p.mean)] for p in panels])
        norm = Normalize(vmin=float(finite.min()), vmax=float(finite.max())) if finite.size else Normalize()
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), constrained_layout=True, squeeze=False)
    mesh = None
    for ax, panel in zip(axes.flat, panels):
        edges, log = _beta_edges(panel.betas)
        t_edges = _time_edges(panel.times)
        mesh = ax.pcolormesh(edges, t_edges, panel.mean.T, shading="flat", cmap="viridis", norm=norm)
        ok = np.isfinite(panel.crossing)
        if ok.any():
            ax.plot(panel.betas[ok], panel.crossing[ok], "o-", color="white", mec="black", lw=1.5, ms=4,
                    label=HALF_LABEL)
        if panel.theory is not None and np.isfinite(panel.theory).any():
            good = np.isfinite(panel.theory)
            ax.plot(panel.betas[good], panel.theory[good], "--", color="red", lw=1.5, label=EQUIANGULAR_LABEL)
        if log:
            ax.set_xscale("log")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_ylim(t_edges[0], t_edges[-1])
        ax.set_xlabel(r"$\beta$")
        ax.set_ylabel(r"$t$ (model time)")
        S = sorted(set(int(s) for s in panel.systems))
        systems = f"{S[0]} system{'s' if S[0] > 1 else ''}" if len(S) == 1 else f"{S[0]}-{S[-1]} systems"
        ax.set_title(", ".join(x for x in (_swept_label(panel.others), systems) if x), fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=axes, label=f"{diagnostic.replace('_', ' ')}, mean over systems", shrink=0.85)
    fig.suptitle(f"phase diagram: {diagnostic} over (β, t)")
    return fig


def _equiangular_inputs(result) -> tuple | None:
    """(n, delta, normalization) of a run whose equiangular collapse time is defined: finite
    beta, Q = K = V = I, tokens of equal mass, d >= n; None otherwise."""
    model = result.model
    weights = result.weights
    if model is None or weights is None or model.is_zero_temperature:
        return None
    eye = np.eye(model.d)
    if not all(np.array_equal(np.asarray(m), eye) for m in (model.Q, model.K, model.V)):
        return None
    w = np.asarray(weights, dtype=np.float64)
    n = int(w.shape[-1])
    if n < 2 or model.d < n or not np.allclose(w, w.reshape(-1)[0], rtol=1e-12, atol=0.0):
        return None
    config = result.config if isinstance(result.config, dict) else {}
    output = config.get("output") or {}
    delta = float(output.get("cluster_delta", 1e-3))
    return n, delta, str(model.normalization)


def _with_theory(panel: PhasePanel, inputs: Sequence) -> PhasePanel:
    """The panel with ``theory`` = t*(beta) when every run has the same equiangular inputs."""
    if not inputs or any(x is None for x in inputs) or len(set(inputs)) != 1:
        return panel
    from .equiangular import equiangular_collapse_time

    n, delta, normalization = inputs[0]
    theory = np.array([equiangular_collapse_time(float(b), n, normalization, delta=delta) for b in panel.betas])
    return replace(panel, theory=theory)


def plot_phase(study: "StudyResult", diagnostic: str = "clustered_fraction") -> "Figure":
    """The phase diagram of a study that sweeps ``model.beta``: each run's ``diagnostic``,
    averaged over its systems, as a heat map over (beta, t), one panel per combination of
    the other swept axes; the first time the mean reaches 1/2 (``mean = 1/2``, where a run
    reaches it) and, for runs with Q = K = V = I, equal masses and d >= n, the equiangular
    collapse time t*(beta) with rho0 = 0 and delta = the run's ``output.cluster_delta``
    (dashed).  ``ValueError`` (one line) without a model.beta axis, for a missing run file,
    a run without the diagnostic, or runs on different time grids."""
    from .io import load

    if PHASE_AXIS not in study.axes:
        raise ValueError(f"the phase diagram needs a {PHASE_AXIS} sweep axis; the study sweeps {list(study.axes)}")
    swept = study.swept_values()
    times_list, values_list, inputs = [], [], []
    for p in study.run_paths:
        if not os.path.exists(p):
            raise ValueError(f"{p}: the study's run file is missing (run the study to the end first)")
        result = load(p)
        if diagnostic not in result.diagnostics:
            raise ValueError(f"{p}: the run has no diagnostic {diagnostic!r} (it has {sorted(result.diagnostics)}); "
                             f"add it to output.diagnostics")
        times_list.append(np.asarray(result.times))
        values_list.append(np.asarray(result.diagnostics[diagnostic]))
        inputs.append(_equiangular_inputs(result))
        del result
    panels = phase_table(swept, times_list, values_list)
    panels = [_with_theory(panel, [inputs[k] for k in panel.runs]) for panel in panels]
    return _draw_phase(panels, diagnostic)


_SHORT_KEYS = {"model.beta": "β", "initial.seed": "seed", "initial.n": "n", "solver.cells": "cells",
               "solver.dt": "dt"}


def _swept_label(values: dict) -> str:
    """``β = 3, seed = 0``: the swept values as written in the config's sweep."""
    parts = []
    for key, value in values.items():
        name = _SHORT_KEYS.get(key, key.split(".")[-1])
        text = json.dumps(value) if not isinstance(value, float) else f"{value:g}"
        parts.append(f"{name} = {text}")
    return ", ".join(parts)


def plot_file(path: str | os.PathLike, kind: str | None = None,
              series: Sequence[str] | None = None, diagnostic: str | None = None) -> "Figure":
    """The figure of ``kind`` for a run or study file (default: rate for a study, distance
    for a run with w_to_limit, otherwise density).  ``series`` names the diagnostics of the
    ``diagnostics`` kind (default: all); ``diagnostic`` the series of the ``phase`` kind
    (default ``clustered_fraction``)."""
    from .io import load
    from .study import load_study

    if kind is not None and kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if diagnostic is not None and kind != "phase":
        raise ValueError("--diagnostic goes with --kind phase")
    if is_study_file(path):
        study = load_study(path)
        kind = kind or "rate"
        if kind == "rate":
            return plot_rate(study)
        if kind == "phase":
            return plot_phase(study, diagnostic or "clustered_fraction")
        runs = [(_swept_label(values), load(p))
                for values, p in zip(study.swept_values(), study.run_paths) if os.path.exists(p)]
        if not runs:
            raise ValueError(f"{os.fspath(path)}: none of the study's run files exist")
        if kind == "distance":
            return plot_distance(runs, study.metric)
        if kind == "energy":
            return plot_energy(runs)
        if kind == "diagnostics":
            return plot_diagnostics(runs, series)
        raise ValueError(f"a study file plots rate, phase, distance, energy or diagnostics, not {kind!r}")
    if kind == "phase":
        raise ValueError("the phase plot needs a study file that sweeps model.beta (mfpde study)")
    result = load(path)
    if kind is None:
        kind = "distance" if "w_to_limit" in result.diagnostics else "density"
    if kind == "rate":
        raise ValueError("the rate plot needs a study file (mfpde study)")
    if kind == "diagnostics":
        return plot_diagnostics(result, series)
    return {"density": plot_density, "trajectories": plot_trajectories,
            "distance": plot_distance, "energy": plot_energy}[kind](result)


def save_plot(fig: "Figure", out: str | os.PathLike) -> str:
    """Write PNG, PDF or SVG (by suffix) and close the figure; returns the path."""
    suffix = os.path.splitext(os.fspath(out))[1].lower()
    if suffix not in (".png", ".pdf", ".svg"):
        raise ValueError(f"-o must end in .png, .pdf or .svg, got {os.fspath(out)!r}")
    fig.savefig(out, dpi=130)
    _pyplot().close(fig)
    return os.fspath(out)
