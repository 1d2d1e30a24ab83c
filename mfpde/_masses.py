"""Validation of the masses (weights) of a discrete measure, shared by its users (private)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_masses", "POSITIVE_SUM"]

#: The one message for masses that are not finite, have a negative entry or sum to <= 0.
POSITIVE_SUM = "{name} must be finite, >= 0 and have a positive sum"


def check_masses(value, n: int, name: str = "weights", *, shape_note: str = "", summary: str | None = POSITIVE_SUM,
                 normalise: bool = False, contiguous: bool = False) -> np.ndarray:
    """``value`` as (n,) float64 masses >= 0 with a positive sum; None gives 1/n each.

    shape_note : appended to the shape message (``" (one per source)"``).
    summary : the message (``{name}`` filled in) for any of "not finite", "negative entry"
        and "sum <= 0"; None: a message for each, naming the minimum or the total.
    normalise : divide by the sum (the default 1/n is returned as it is).
    contiguous : convert with ``np.ascontiguousarray`` (a scalar becomes shape (1,)), not
        ``np.asarray``.
    """
    if value is None:
        return np.full(n, 1.0 / n)
    w = (np.ascontiguousarray if contiguous else np.asarray)(value, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},){shape_note}, got {w.shape}")
    if summary is not None:
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(summary.format(name=name))
    else:
        if not np.all(np.isfinite(w)):
            raise ValueError(f"{name} must have finite entries")
        if np.any(w < 0):
            raise ValueError(f"{name} must be >= 0, got a minimum of {w.min():.3g}")
        if not w.sum() > 0:
            raise ValueError(f"{name} must have a positive total mass, got {w.sum()!r}")
    return w / w.sum() if normalise else w
