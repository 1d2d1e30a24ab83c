"""The run-file format: its constants, errors and the small helpers every part of
:mod:`mfpde.io` shares (attribute strings, the model and config as stored)."""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np

from .._filelock import FileError
from ..methods.base import MASS, POSITIONS
from ..model import Model

# The public constants (documented where mfpde.io re-exports them): the root ``format``
# attribute of a run file and of a study index, the layout version written (and the newest
# one read), the values of a run file's ``status`` attribute.
FORMAT = "mfpde"
STUDY_FORMAT = "mfpde-study"
FORMAT_VERSION = 1
#: The format_version of an ensemble file (``initial.systems`` > 1: a leading ``system`` axis);
#: the highest version this mfpde reads.  Single-system files keep version 1.
ENSEMBLE_FORMAT_VERSION = 2
STATUSES = ("running", "complete", "interrupted")

#: names that cannot be diagnostics (the time and system coordinates linked into /diagnostics)
_RESERVED = ("time", "system")
#: The kinds of state a run file holds, by dataset name under /state.
STATE_KINDS = {kind.name: kind for kind in (POSITIONS, MASS)}

#: Config matrices with more entries than this are stored as a reference to their dataset
#: (``{"dataset": "/model/Q"}``) instead of JSON text; ``load`` puts the lists back.
CONFIG_INLINE_MAX = 256


class DamagedFileError(FileError):
    """An mfpde file whose structure is inconsistent (shapes against /time and the config,
    missing datasets, non-finite or decreasing times, unreadable HDF5 metadata or data)."""


class WriteError(OSError):
    """Writing a run file failed (a full disk, a file-size limit, an I/O error), or the next
    snapshot would not fit.  The file was closed; its finished snapshots stay readable and
    ``--resume`` continues it once there is room."""



def _attr_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return value



def _short(exc) -> str:
    """An exception's message on one line, without HDF5's long error-stack details."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]


#: Provenance attributes a writer may be given (``RunWriter(provenance=...)``), each a string.
PROVENANCE_KEYS = ("method", "integrator", "kernel", "kernel_used", "precision", "backend")


def _check_provenance(provenance) -> dict:
    out = {}
    for key, value in dict(provenance or {}).items():
        if key not in PROVENANCE_KEYS:
            raise ValueError(f"provenance keys are {', '.join(PROVENANCE_KEYS)}, got {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"provenance {key!r} must be a string, got {value!r}")
        out[key] = value
    return out


def _encode_config(config, f: h5py.File) -> str:
    """The config as JSON; a model matrix with more than CONFIG_INLINE_MAX entries that equals
    its /model dataset is stored as the reference ``{"dataset": "/model/Q"}``."""
    if isinstance(config, dict) and isinstance(config.get("model"), dict) and "model" in f:
        model = dict(config["model"])
        changed = False
        for name in ("Q", "K", "V"):
            value = model.get(name)
            if isinstance(value, list) and len(value) ** 2 > CONFIG_INLINE_MAX and name in f["model"]:
                try:
                    arr = np.asarray(value, dtype=np.float64)
                except (TypeError, ValueError):
                    continue
                stored = f["model"][name]
                if arr.shape == stored.shape and np.array_equal(arr, stored[()]):
                    model[name] = {"dataset": f"/model/{name}"}
                    changed = True
        if changed:
            config = dict(config, model=model)
    return json.dumps(config, allow_nan=False)


def _decode_config(f: h5py.File, path) -> dict:
    """The stored config dict, matrices stored by reference put back as nested lists."""
    text = _attr_str(f.attrs.get("config"))
    if text is None:
        return {}
    try:
        config = json.loads(text)
    except (TypeError, ValueError):
        raise DamagedFileError(f"{path}: its config attribute is not valid JSON") from None
    if not isinstance(config, dict):
        raise DamagedFileError(f"{path}: its config attribute is not a JSON object")
    model = config.get("model")
    if isinstance(model, dict):
        for name in ("Q", "K", "V"):
            ref = model.get(name)
            if isinstance(ref, dict) and set(ref) == {"dataset"}:
                target = ref["dataset"]
                if target != f"/model/{name}" or name not in f["model"]:
                    raise DamagedFileError(f"{path}: config model.{name} refers to {target!r}, which is missing")
                model[name] = f["model"][name][()].tolist()
    return config



def _n_finished(f: h5py.File) -> int:
    """Finished snapshots: len(/time), less trailing entries still at the NaN fill value."""
    t = f["time"]
    T = t.shape[0]
    while T > 0 and math.isnan(t[T - 1]):
        T -= 1
    return T


def _read_model(f: h5py.File) -> Model:
    m = f["model"]
    beta = float(m.attrs["beta"])
    return Model(Q=m["Q"][()], K=m["K"][()], V=m["V"][()], beta=beta, d=int(m.attrs["d"]),
                 normalization=_attr_str(m.attrs["normalization"]),
                 zero_temperature=_attr_str(m.attrs.get("zero_temperature", "continuum")))


def _has_hdf5_signature(path) -> bool:
    """The HDF5 signature at offset 0, 512, 1024, ... (a user block may precede it)."""
    signature = b"\x89HDF\r\n\x1a\n"
    try:
        with open(path, "rb") as fh:
            offset = 0
            while True:
                fh.seek(offset)
                head = fh.read(8)
                if len(head) < 8:
                    return False
                if head == signature:
                    return True
                offset = 512 if offset == 0 else 2 * offset
    except OSError:
        return False


def _damaged(path, exc) -> DamagedFileError:
    return DamagedFileError(f"{os.fspath(path)} is damaged: {_short(exc)}")
