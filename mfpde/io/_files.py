"""File-level rules: which existing file a new run may replace, and which stored run
``--resume`` may continue."""

from __future__ import annotations

import os

import h5py

from ._format import FORMAT, _attr_str, _has_hdf5_signature


def _status_of(path) -> str | None:
    """The status attribute of an existing mfpde file, or None if it is not one."""
    try:
        with h5py.File(path, "r") as f:
            if _attr_str(f.attrs.get("format")) != FORMAT:
                return None
            return _attr_str(f.attrs.get("status")) or "unknown"
    except (OSError, ValueError):
        return None


def _someone_elses(path, fmt: str) -> str | None:
    """Why an existing ``path`` is someone else's file (not mfpde's of format ``fmt``), or None.

    A non-empty file that is not HDF5, or an HDF5 file whose ``format`` attribute is not
    ``fmt``, is someone else's.  An empty file, or HDF5 that does not open (a damaged run),
    is not.
    """
    if os.path.getsize(path) == 0 or not _has_hdf5_signature(path):
        return None if os.path.getsize(path) == 0 else "is not an mfpde file (not HDF5)"
    try:
        with h5py.File(path, "r") as f:
            found = _attr_str(f.attrs.get("format"))
    except Exception:  # damaged
        return None
    return None if found == fmt else f"is not an mfpde file (an HDF5 file without format = \"{fmt}\")"


def check_replaceable(path: str | os.PathLike, *, force: bool = False, fmt: str = FORMAT, key: str = "") -> None:
    """Raise ``FileExistsError`` unless an existing ``path`` may be replaced by a new file.

    Someone else's file (a non-empty file that is not HDF5, or HDF5 of another ``format``) is
    never replaced, even with ``force``.  A run file (``fmt = FORMAT``) is replaced only with
    ``force``: a complete one says so, an unfinished one suggests ``--resume``.  A study index
    is its study's to rewrite.  ``key`` prefixes the message (``"output.path: "``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return
    why = _someone_elses(path, fmt)
    if why is not None:
        even = " (even with --force)" if fmt == FORMAT else ""
        raise FileExistsError(f"{key}{path} exists and {why}; mfpde will not overwrite it{even}: "
                              "remove it or choose another output")
    if force or fmt != FORMAT:
        return
    status = _status_of(path)
    if status == "complete":
        raise FileExistsError(f"{key}{path} holds a complete run; pass --force (force=True) to overwrite it")
    if status is not None:
        raise FileExistsError(f"{key}{path} holds an unfinished run (status {status!r}); pass --resume to continue "
                              f"it or --force (force=True) to overwrite it")
    raise FileExistsError(f"{key}{path} exists and is not an mfpde file; pass --force (force=True) to overwrite it")


def resume_conflict(path: str | os.PathLike, stored: dict, requested: dict, status: str | None = None) -> bool:
    """Check that a run stored with config ``stored`` may be continued with ``requested``.

    Identical resolved configs (``output.path`` aside) continue; the one difference allowed is
    a larger ``solver.t_end`` (an extension: returns True).  Anything else is a ``ValueError``
    naming the differing keys.
    """
    from .._provenance import differing_keys

    if not stored or not requested:  # a file written without a config (RunWriter(config={}))
        if stored == requested or not stored and not requested:
            return False
        keys = ["<the whole config>"]
    else:
        keys = differing_keys(stored, requested)
    if not keys:
        return False
    if keys == ["solver.t_end"]:
        old, new = stored["solver"]["t_end"], requested["solver"]["t_end"]
        if isinstance(old, (int, float)) and isinstance(new, (int, float)) and new > old:
            return True
        raise ValueError(f"{path} was run to solver.t_end = {old!r}; --resume can only extend it to a later "
                         f"time, got {new!r}")
    shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
    raise ValueError(f"{path} was written with a different config ({shown} differ); --resume continues only "
                     f"the same config (a larger solver.t_end aside): repeat the original --set options, "
                     f"or use --force to start over")
