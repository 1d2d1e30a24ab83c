"""HDF5 files: one run per file (docs/hdf5.md).

:class:`RunWriter` writes a run snapshot by snapshot, flushing each, so a run killed
at any moment leaves a file that opens and holds every finished snapshot.
:func:`load` reads a file back into a :class:`Result`; :func:`info` summarises it.

Crash safety: a snapshot's state and diagnostics rows are written first and ``/time``
is extended last, so ``T = len(/time)`` counts finished snapshots only; the reader
trims every other time-like dataset to ``T`` (and drops a trailing ``/time`` entry
still holding its NaN fill value).

One writer per file: a writer holds the exclusive lock of ``mfpde._filelock`` (a sidecar
``<path>.lock``) from before it reads, creates or truncates anything; a new file is built
beside the target and renamed onto it at its first snapshot.  Write errors (ENOSPC, EFBIG)
close the file and raise :class:`WriteError`; readers verify a file's structure and raise
:class:`DamagedFileError` / :class:`FileError` (docs/hdf5.md, "Verification and errors").

Every dataset carries HDF5 dimension scales on every axis, so
``xarray.open_dataset(path, engine="h5netcdf", group=...)`` opens the root and each
group.  ``/state/time`` and ``/diagnostics/time`` are hard links to ``/time`` (one
dataset, three names) so that each group sees its time coordinate.
"""

# The package, one job per module: _format (constants, errors, the model and config as
# stored), _files (which file may be replaced or resumed), _managed (a file held for
# writing: lock, temporary + publish, close, write errors), writer (RunWriter: layout,
# one-off datasets, snapshots), reader (Result, load, info, verification).

from .._filelock import FileBusyError, FileError
from ._files import check_replaceable
from ._format import DamagedFileError, WriteError
from .reader import Result, info, load
from .writer import RunWriter

from . import _files, _format, reader

# the constants of __all__, bound here so that their doc comments document them in mfpde.io
#: The root ``format`` attribute of a run file.
FORMAT = _format.FORMAT
#: The root ``format`` attribute of a study index (docs/hdf5.md, "Study index").
STUDY_FORMAT = _format.STUDY_FORMAT
#: The layout version written (and the newest one read).
FORMAT_VERSION = _format.FORMAT_VERSION
#: The values of a run file's ``status`` attribute.
STATUSES = _format.STATUSES

# public names outside __all__ (used across mfpde), as importable from here as before the split
resume_conflict = _files.resume_conflict
is_study_file = reader.is_study_file
STATE_KINDS = _format.STATE_KINDS
PROVENANCE_KEYS = _format.PROVENANCE_KEYS
CONFIG_INLINE_MAX = _format.CONFIG_INLINE_MAX

# the functions keep mfpde.io as their home (__module__: where the reference documents them)
for _function in (load, info, check_replaceable, is_study_file, resume_conflict):
    _function.__module__ = __name__
del _function

__all__ = ["RunWriter", "Result", "load", "info", "check_replaceable", "FORMAT", "STUDY_FORMAT", "FORMAT_VERSION",
           "STATUSES",
           "FileError", "DamagedFileError", "FileBusyError", "WriteError"]
