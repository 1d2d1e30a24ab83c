"""One canonical form of a resolved config, so that "the same config" means one thing.

A run file stores its resolved config (``Config.to_dict()``) as JSON.  Whether a stored run
may be reused (a study's finished run) or continued (``--resume``) is decided by comparing
canonical forms: JSON with sorted keys, no whitespace, finite numbers only.  ``output.path``
(where a result is written, not what is computed) is left out of the comparison.  A key
added to the config after files were written is left out at its default, the value every
older file was computed with (``solver.backend = "cpu"``, ``initial.systems = 1``, ``output.cluster_delta = 1e-3``), so older files keep their digests
while a run on another backend (different rounding) is a different config.
"""

from __future__ import annotations

import copy
import hashlib
import json

#: Dotted keys that say where, not what (left out of comparisons and digests).
LOCATION_KEYS = ("output.path",)
#: Keys added after the first file format, with the default every older file was computed with:
#: left out of comparisons and digests at that value.
LATER_KEYS = {"solver.backend": "cpu", "initial.systems": 1, "output.cluster_delta": 1e-3}


def comparable(config_dict: dict, ignore=LOCATION_KEYS) -> dict:
    """A deep copy of a resolved config dict without the dotted keys in ``ignore``, and without
    the keys of ``LATER_KEYS`` at their default."""
    out = copy.deepcopy(config_dict)
    for key in (*ignore, *LATER_KEYS):
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if isinstance(node, dict) and last in node and (key in ignore or node[last] == LATER_KEYS[key]):
            node.pop(last)
    return out


def canonical_json(config_dict: dict, ignore=LOCATION_KEYS) -> str:
    """Sorted-key, whitespace-free JSON of ``comparable(config_dict, ignore)``."""
    return json.dumps(comparable(config_dict, ignore), sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def config_digest(config_dict: dict, ignore=LOCATION_KEYS) -> str:
    """Hex SHA-256 of :func:`canonical_json` (stored as the run file's ``config_sha256``)."""
    return hashlib.sha256(canonical_json(config_dict, ignore).encode()).hexdigest()


def differing_keys(a: dict, b: dict, ignore=LOCATION_KEYS, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved config dicts (sorted)."""
    if not prefix:
        a, b = comparable(a, ignore), comparable(b, ignore)
    out = []
    for key in sorted(set(a) | set(b)):
        name = f"{prefix}{key}"
        va, vb = a.get(key, _MISSING), b.get(key, _MISSING)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(differing_keys(va, vb, ignore, prefix=name + "."))
        elif va != vb or type(va) is not type(vb) and not _same_number(va, vb):
            out.append(name)
    return out


_MISSING = object()


def _same_number(x, y) -> bool:
    numbers = (int, float)
    return (isinstance(x, numbers) and isinstance(y, numbers) and not isinstance(x, bool)
            and not isinstance(y, bool) and x == y)
