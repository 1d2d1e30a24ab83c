"""Robustness: a valid run file corrupted at random byte offsets and in random datasets.

Every reader (``mfpde.load``, ``mfpde.io.info``, ``mfpde plot``'s file check and
``mfpde.run(..., resume=True)``) either returns data consistent with the file's own shapes
or raises one clean error: :class:`mfpde.io.FileError` (``DamagedFileError``, "not an
mfpde file"; both ``ValueError``).  50 cases in the default suite, 600 with --runslow.
"""

import math
import os
import shutil

import h5py
import numpy as np
import pytest

import mfpde
from mfpde.io import FileError, info, load
from mfpde.plotting import is_study_file

CONFIG = {
    "model": {"d": 3, "beta": 4.0, "V": [[1.0, 0.2, 0.0], [0.0, 0.5, 0.1], [0.0, 0.0, -0.3]]},
    "initial": {"kind": "uniform", "n": 40, "seed": 3},
    "solver": {"dt": 0.05, "t_end": 0.5},
    "output": {"save_every": 0.1, "diagnostics": ["mass", "energy", "w_to_limit"]},
}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """An interrupted particle run (3 of 6 snapshots) and a complete fv run."""
    root = tmp_path_factory.mktemp("fuzz")
    part = root / "particles.h5"

    def stop(t):
        if t > 0.22:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        mfpde.run(CONFIG, output=part, on_step=stop)
    assert load(part).n_snapshots == 3 and load(part).status == "interrupted"
    fv = root / "fv.h5"
    fv_config = {"model": {"d": 2, "beta": 3.0}, "solver": {"method": "fv", "cells": 32, "t_end": 0.3},
                 "output": {"save_every": 0.1, "diagnostics": ["mass", "energy"]}}
    mfpde.run(fv_config, output=fv)
    return {"particles": (part, CONFIG), "fv": (fv, fv_config)}


def _datasets(f):
    out = []
    f.visititems(lambda name, obj: out.append(name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(out)


def corrupt(path, rng):
    """One random corruption of ``path`` in place; returns a description."""
    kind = rng.choice(["bytes", "bytes", "truncate", "dataset", "dataset", "attribute"])
    size = os.path.getsize(path)
    if kind == "bytes":
        k = int(rng.integers(1, 9))
        with open(path, "r+b") as fh:
            for _ in range(k):
                offset = int(rng.integers(0, size))
                fh.seek(offset)
                fh.write(bytes(rng.integers(0, 256, size=int(rng.integers(1, 5)), dtype=np.uint8)))
        return f"{k} random byte runs"
    if kind == "truncate":
        n = int(rng.integers(0, size))
        with open(path, "r+b") as fh:
            fh.truncate(n)
        return f"truncated to {n} of {size} bytes"
    with h5py.File(path, "r+") as f:
        if kind == "attribute":
            target = f if rng.random() < 0.7 else f["model"]
            names = sorted(target.attrs)
            name = names[int(rng.integers(len(names)))]
            op = rng.choice(["delete", "garbage", "number"])
            if op == "delete":
                del target.attrs[name]
            elif op == "garbage":
                target.attrs[name] = "{\"x\": [1, 2" if rng.random() < 0.5 else "complete"
            else:
                target.attrs[name] = float(rng.choice([np.nan, -1.0, 1e300, 0.0, 7.0]))
            return f"attribute {target.name}:{name} {op}"
        names = _datasets(f)
        name = names[int(rng.integers(len(names)))]
        ds = f[name]
        op = rng.choice(["delete", "resize", "values", "reshape", "retype"])
        if op == "resize" and ds.maxshape[0] is None:
            new = int(rng.integers(0, ds.shape[0] + 3))
            ds.resize((new,) + ds.shape[1:])
            return f"{name} resized to {new} rows"
        if op == "values" and ds.size and ds.dtype.kind == "f":
            idx = tuple(int(rng.integers(s)) for s in ds.shape)
            ds[idx] = rng.choice([np.nan, np.inf, -np.inf, -1.0, 1e308])
            return f"{name}{list(idx)} overwritten"
        if op in ("reshape", "retype") and ds.ndim:
            data = ds[()]
            del f[name]
            if op == "reshape":
                shape = tuple(max(0, s + int(rng.integers(-2, 3))) for s in data.shape)
                f.create_dataset(name, data=np.zeros(shape))
            else:
                f.create_dataset(name, data=data.astype(np.int32) if data.dtype.kind == "f" else data.astype(float))
            return f"{name} {op}d"
        del f[name]
        return f"{name} deleted"


def check_result(res, what):
    T = res.times.shape[0]
    assert res.times.ndim == 1, what
    assert np.all(np.isfinite(res.times)) and np.all(np.diff(res.times) >= 0), what
    d = res.model.d
    if T:
        assert (res.positions is None) != (res.mass is None), what
    if res.positions is not None:
        assert res.positions.shape[0] == T and res.positions.shape[2] == d, what
        if res.weights is not None:
            assert res.weights.shape == (res.positions.shape[1],), what
    if res.mass is not None:
        assert res.mass.shape[0] == T, what
        if res.grid is not None:
            assert res.grid["centers"].shape == (res.mass.shape[1], d), what
            assert res.grid["areas"].shape == (res.mass.shape[1],), what
    for name, series in res.diagnostics.items():
        assert series.shape == (T,), (what, name)
    if res.limit is not None:
        assert res.limit[0].ndim == 2 and res.limit[0].shape[1] == d, what
        assert res.limit[1].shape == (res.limit[0].shape[0],), what
    assert isinstance(res.config, dict), what


def one_case(tmp_path, originals, seed, outcomes):
    rng = np.random.default_rng(seed)
    which = "particles" if rng.random() < 0.75 else "fv"
    source, config = originals[which]
    path = tmp_path / f"case{seed}.h5"
    shutil.copyfile(source, path)
    what = f"seed {seed}: {which}, " + corrupt(path, rng)
    for reader in (load, info, is_study_file):
        try:
            out = reader(path)
        except FileError as exc:
            assert "\n" not in str(exc), what
            outcomes["refused"] += 1
            continue
        if reader is load:
            check_result(out, what)
        elif reader is info:
            assert isinstance(out, str), what
        outcomes["read"] += 1
    if which == "particles":  # resume: finish it, or refuse it with one line; never stamp a bad file
        try:
            res = mfpde.run(config, output=path, resume=True)
        except (FileError, ValueError) as exc:  # a corrupted config: "written with a different config"
            assert "\n" not in str(exc), what
            outcomes["resume refused"] += 1
        else:
            check_result(res, what)
            assert res.status == "complete" and math.isclose(res.times[-1], 0.5), what
            outcomes["resumed"] += 1
    path.unlink()


@pytest.mark.parametrize("block", range(5))
def test_fuzz_every_reader_returns_consistent_data_or_one_clean_error(tmp_path, originals, block):
    outcomes = {"read": 0, "refused": 0, "resumed": 0, "resume refused": 0}
    for seed in range(10 * block, 10 * block + 10):
        one_case(tmp_path, originals, seed, outcomes)
    assert outcomes["refused"] > 0 or outcomes["read"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("block", range(12))
def test_fuzz_slow_600_cases(tmp_path, originals, block):
    outcomes = {"read": 0, "refused": 0, "resumed": 0, "resume refused": 0}
    for seed in range(1000 + 50 * block, 1000 + 50 * block + 50):
        one_case(tmp_path, originals, seed, outcomes)
