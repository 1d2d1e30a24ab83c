"""CF-style ``units`` and ``long_name`` of every stored quantity (HDF5 attributes, xarray).

Units follow docs/analysis.md: angles and geodesic distances in radians (``rad``), masses,
weights, positions (unit vectors) and the energy dimensionless (``1``); model time is
dimensionless too.  Cell sizes are ``rad`` (arc length) on S^1 and ``sr`` on S^2.
"""

from __future__ import annotations

import re


def describe_state(name: str, d: int) -> dict:
    """Attributes of a state, grid or limit dataset (``positions``, ``mass``, ``weights``,
    ``centers``, ``areas``, ``points``, ``time``); ``{}`` for anything else."""
    table = {
        "time": ("1", "model time t"),
        "positions": ("1", "token positions x_i on the unit sphere (Cartesian components)"),
        "mass": ("1", "cell masses (probability per cell)"),
        "weights": ("1", "masses of the particles"),
        "centers": ("1", "cell centers on the unit sphere (Cartesian components)"),
        "areas": ("rad", "cell lengths") if d == 2 else ("sr", "cell areas"),
        "points": ("1", "atoms of the limit measure Pi#rho_0 (Cartesian components)"),
        "limit_weights": ("1", "masses of the atoms of Pi#rho_0"),
    }
    if name not in table:
        return {}
    units, long_name = table[name]
    return {"units": units, "long_name": long_name}


def describe_diagnostic(name: str, wasserstein: dict | None = None) -> dict:
    """Attributes of a diagnostic series; the W label names p and the ground cost."""
    w = wasserstein or {}
    p, ground = float(w.get("p", 2)), str(w.get("ground", "geodesic"))
    table = {
        "mass": ("1", "total mass"),
        "min_mass": ("1", "smallest atom or cell mass"),
        "energy": ("1", "interaction energy (1/beta) log int int exp(beta <Qx, Ky>) drho(x) drho(y)"),
        "w_to_limit": ("rad" if ground == "geodesic" else "1",
                       f"Wasserstein distance W_{p:g} to Pi#rho_0 ({ground} ground cost)"),
        "dist_to_subspace": ("rad", "mean geodesic distance to the dominant subspace E cap S^{d-1}"),
        "n_clusters": ("1", "number of clusters carrying mass"),
        "clustered_fraction": ("1", "mass-weighted fraction of ordered pairs i != j with <x_i, x_j> >= 1 - delta"),
    }
    if name in table:
        units, long_name = table[name]
        return {"units": units, "long_name": long_name}
    m = re.fullmatch(r"fourier_mode_(\d+)", name)
    if m:
        return {"units": "1", "long_name": f"modulus of the Fourier coefficient |mu_{m.group(1)}|"}
    return {"units": "1", "long_name": name}
