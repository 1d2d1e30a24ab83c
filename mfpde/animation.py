"""Animations of a run, one frame per snapshot (``mfpde animate``).

Particles and PIC: the tokens on the circle, or in orthographic view on S^2 (front
hemisphere coloured, back grey); finite volumes: the density against angle on S^1, the
cells coloured by density on the front and back hemispheres of S^2.  The atoms of the
limit measure are marked.  GIF through Pillow; MP4 through ffmpeg where it is installed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

import numpy as np

from .plotting import (
    _angles,
    _circle_density,
    _disc,
    _limit_points,
    _mark_limit_sphere,
    _orthographic,
    _pyplot,
    _sphere_cell_collection,
    _sphere_cells,
    one_system,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.animation import FuncAnimation

    from .io import Result

__all__ = ["animate", "animate_file", "animation_of", "FORMATS"]

#: Output suffixes and the matplotlib writer behind each.
FORMATS = {".gif": "pillow", ".mp4": "ffmpeg"}


def _check_output(out) -> str:
    suffix = os.path.splitext(os.fspath(out))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"-o must end in .gif or .mp4, got {os.fspath(out)!r}")
    from matplotlib import animation

    if suffix == ".mp4" and not animation.writers.is_available("ffmpeg"):
        raise ValueError("writing MP4 needs ffmpeg on the PATH (not found); write a .gif instead")
    directory = os.path.dirname(os.path.abspath(os.fspath(out)))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"-o: the directory {directory} does not exist")
    return suffix


def animation_of(result: "Result") -> "FuncAnimation":
    """A :class:`matplotlib.animation.FuncAnimation` of the run, one frame per snapshot (an
    ensemble: its system 0, :func:`mfpde.plotting.one_system`)."""
    from matplotlib.animation import FuncAnimation

    plt = _pyplot()
    result = one_system(result)
    d = result.model.d
    if result.n_snapshots == 0:
        raise ValueError(f"{result.path} has no snapshots to animate")
    beta = r"\infty" if result.model.is_zero_temperature else f"{result.model.beta:g}"
    times = result.times
    if result.positions is not None and d == 2:
        fig, ax = plt.subplots(figsize=(4.6, 4.8), constrained_layout=True)
        _disc(ax)
        x = result.positions[..., :2]
        sizes = 6 if result.weights is None else 6 * np.asarray(result.weights) * len(result.weights)
        dots = ax.scatter(x[0, :, 0], x[0, :, 1], s=sizes, color="C0", zorder=3)
        pts = _limit_points(result)
        if pts is not None:
            a = _angles(pts)
            ax.scatter(np.cos(a), np.sin(a), marker="x", s=60, color="red", zorder=4,
                       label=r"atoms of $\Pi_\#\rho_0$")
            ax.legend(loc="lower left", fontsize=7)

        def update(k):
            dots.set_offsets(x[k])
            ax.set_title(rf"tokens on $S^1$, $\beta = {beta}$, t = {times[k]:.3g}")
            return (dots,)
    elif result.positions is not None:
        fig, ax = plt.subplots(figsize=(4.6, 4.8), constrained_layout=True)
        _disc(ax)
        back = ax.scatter([], [], s=3, color="0.75", label="back hemisphere")
        front = ax.scatter([], [], s=3, color="C0", label="front hemisphere")
        _mark_limit_sphere(ax, result)
        ax.legend(loc="lower left", fontsize=7, markerscale=2)

        def update(k):
            sx, sy, f = _orthographic(result.positions[k][:, :3])
            back.set_offsets(np.column_stack([sx[~f], sy[~f]]))
            front.set_offsets(np.column_stack([sx[f], sy[f]]))
            ax.set_title(rf"tokens on $S^{{{d - 1}}}$, $\beta = {beta}$, t = {times[k]:.3g}")
            return back, front
    elif result.mass is not None and d == 2:
        edges, rho = _circle_density(result)
        mid = 0.5 * (edges[1:] + edges[:-1])
        fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
        (line,) = ax.plot(mid, rho[0], color="C0")
        ax.set_xlim(0, 2 * np.pi)
        ax.set_ylim(0, 1.05 * float(np.max(rho)))
        pts = _limit_points(result)
        if pts is not None:
            for j, a in enumerate(_angles(pts)):
                ax.axvline(a, color="red", ls="--", lw=1, label=r"atoms of $\Pi_\#\rho_0$" if j == 0 else None)
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel(r"angle $\theta$ (rad)")
        ax.set_ylabel("density (per radian)")

        def update(k):
            line.set_ydata(rho[k])
            ax.set_title(rf"finite-volume density on $S^1$, $\beta = {beta}$, t = {times[k]:.3g}")
            return (line,)
    elif result.mass is not None and d == 3:
        from matplotlib.colors import Normalize

        centers, areas = result.grid["centers"], np.asarray(result.grid["areas"])
        polygons = _sphere_cells(centers)
        density = result.mass / areas
        norm = Normalize(vmin=0.0, vmax=float(np.max(density)))
        fig, axes = plt.subplots(1, 2, figsize=(7.6, 4.2), constrained_layout=True)
        colls = []
        for ax, side, name in zip(axes, (1, -1), ("front", "back (mirrored)")):
            _disc(ax)
            coll, mask = _sphere_cell_collection(ax, polygons, centers, density[0], side, norm)
            colls.append((coll, mask))
            _mark_limit_sphere(ax, result, side, label=False)
            ax.set_xlabel(f"{name} hemisphere")
        fig.colorbar(colls[0][0], ax=axes, label="density (per sr)", shrink=0.8)

        def update(k):
            for coll, mask in colls:
                coll.set_array(density[k][mask])
            fig.suptitle(rf"finite-volume density on $S^2$, $\beta = {beta}$, t = {times[k]:.3g}")
            return tuple(c for c, _ in colls)
    else:
        raise ValueError("animations need particle positions or finite-volume masses on S^1 or S^2")
    update(0)
    return FuncAnimation(fig, update, frames=result.n_snapshots, blit=False, repeat=False)


def animate(result: "Result", out: str | os.PathLike, *, fps: float = 8.0,
            on_frame: Callable[[int, int], None] | None = None) -> str:
    """Write the animation of ``result`` to ``out`` (.gif through Pillow, .mp4 through ffmpeg),
    one frame per snapshot; ``on_frame(i, n)`` is called after each frame.  Returns the path.

    An unwritable output (suffix, missing ffmpeg, missing directory) raises ``ValueError`` or
    ``FileNotFoundError`` before anything is drawn; an interrupted write leaves no file."""
    from matplotlib import animation as mpl_animation

    if not (isinstance(fps, (int, float)) and fps > 0):
        raise ValueError(f"--fps must be > 0, got {fps!r}")
    suffix = _check_output(out)
    anim = animation_of(result)
    writer = mpl_animation.PillowWriter(fps=fps) if suffix == ".gif" else mpl_animation.FFMpegWriter(fps=fps)
    out = os.fspath(out)
    try:
        anim.save(out, writer=writer, dpi=90,
                  progress_callback=(lambda i, n: on_frame(i, n)) if on_frame is not None else None)
    except BaseException:
        if os.path.exists(out):
            os.remove(out)
        raise
    finally:
        _pyplot().close(anim._fig)
    return out


def animate_file(path: str | os.PathLike, out: str | os.PathLike, *, fps: float = 8.0,
                 on_frame: Callable[[int, int], None] | None = None) -> str:
    """:func:`animate` the run file ``path`` (``mfpde animate``)."""
    from .io import load
    from .plotting import is_study_file

    _check_output(out)
    if is_study_file(path):
        raise ValueError(f"{os.fspath(path)} is a study file; animate one of its runs (study.runs/run_XXXX.h5)")
    return animate(load(path), out, fps=fps, on_frame=on_frame)
