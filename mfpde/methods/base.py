"""The solver-method interface and its registry (docs/methods.md, "Adding a method").

A method is what ``solver.method`` names: it turns a validated :class:`~mfpde.config.Config`
into an initial state, steps it to requested times and says which measure a state
represents.  The runner (:func:`mfpde.run`) only ever talks to this interface:

    method = get_method(config.solver.method)(config)
    state0 = method.initial_state()              # or method.restore(stored_result)
    method.write_static(writer)                  # weights, grid: what does not change in time
    for t, state in method.snapshots(state0, times, t0, on_step):
        points, masses = method.measure(state)   # for W_p and the diagnostics
        writer.append_snapshot(t, state, ...)    # /state/<method.state.name>

A state is one float64 array whose kind (``method.state``: ``POSITIONS`` (N, d) or
``MASS`` (M,)) fixes its HDF5 dataset and dimension names.  Methods neither read nor
write files themselves (the initial module reads ``initial.path``; the writer writes).
"""

from __future__ import annotations

from typing import Callable, ClassVar, Iterator, Sequence

import numpy as np

__all__ = ["Method", "StateKind", "POSITIONS", "MASS", "register_method", "get_method", "method_names",
           "unregister_method"]


class StateKind:
    """How a state array is stored: dataset ``/state/<name>`` with dimensions ``(time, *dims)``.

    ``dims`` names each axis after time; ``"component"`` has length d.
    """

    def __init__(self, name: str, dims: tuple[str, ...]):
        self.name = name
        self.dims = tuple(dims)

    def __repr__(self) -> str:
        return f"StateKind({self.name!r}, dims={self.dims!r})"


#: Particle positions (N, d) with fixed masses in ``/state/weights`` (N,).
POSITIONS = StateKind("positions", ("particle", "component"))
#: Cell masses (M,) of a mesh stored in ``/grid``.
MASS = StateKind("mass", ("cell",))


class Method:
    """One solver method (subclass it and :func:`register_method` it).

    Class attributes
    ----------------
    name : str
        The ``solver.method`` value.
    state : StateKind
        The kind of state it steps (:data:`POSITIONS` or :data:`MASS`).
    integrators : tuple of str or None
        The ``solver.integrator`` values it accepts; None: it has its own time stepping
        and ``solver.integrator``, ``rtol`` and ``atol`` must stay at their defaults.
    integrator_name : str
        Stored as the file's ``integrator`` attribute when ``integrators`` is None.
    backends : tuple of str
        The ``solver.backend`` values it runs on; any other must stay at its default "cpu".
    ensembles : bool
        Whether it runs S > 1 independent systems (``initial.systems``); otherwise that key
        must stay at 1.

    Instances are built from a validated config (``Method(config)``); building one makes
    no file and reads none.
    """

    name: ClassVar[str] = ""
    state: ClassVar[StateKind] = POSITIONS
    integrators: ClassVar[tuple[str, ...] | None] = None
    integrator_name: ClassVar[str] = ""
    backends: ClassVar[tuple[str, ...]] = ("cpu",)
    #: Whether it runs ensembles (``initial.systems`` > 1): states with a leading system axis.
    ensembles: ClassVar[bool] = False

    # -- rules (class level: called while a config is validated)

    @classmethod
    def check(cls, config) -> None:
        """Raise ``ConfigError`` naming the key when this method cannot run ``config``.

        Every feasibility rule of the method lives here (dimension, mesh size, CFL bound,
        zero-temperature field); it is called once the whole config is parsed, so
        ``mfpde validate`` refuses what ``mfpde run`` would.
        """

    @classmethod
    def unused(cls, section: str, key: str, config) -> str | None:
        """Why ``section.key`` has no effect for this method and ``config``, or None when it has.

        A key with no effect must stay at its default (the config loader refuses it
        otherwise).  The base rules cover the integrator keys; a method adds its own.
        """
        solver = config.solver
        if section == "initial" and key == "systems" and not cls.ensembles:
            return "ensembles (initial.systems > 1) run with solver.method = \"particles\" only"
        if section != "solver":
            return None
        if cls.integrators is None and key in ("integrator", "rtol", "atol"):
            return f"{cls.name} always steps with {cls.integrator_name or 'its own scheme'}"
        if key in ("rtol", "atol") and solver.integrator != "rk45":
            return "it controls solver.integrator = \"rk45\" only"
        if key == "backend" and solver.backend not in cls.backends:
            return f"{cls.name} runs on the CPU only (solver.backend = \"cuda\" takes effect for particles)"
        return None

    @classmethod
    def describe(cls, config) -> str:
        """The method as messages name it (``solver.method = 'particles'``)."""
        return f"solver.method = {cls.name!r}"

    @classmethod
    def state_size(cls, config) -> tuple[int, str, str]:
        """(float64 values in one state, what they are, the config key that sets the count)."""
        n, d, S = config.initial.n, config.model.d, config.initial.systems
        if S > 1:
            return S * n * d, f"{S} systems x {n} x {d} positions", "initial.systems"
        return n * d, f"{n} x {d} positions", "initial.n"

    @classmethod
    def snapshot_size(cls, config) -> int:
        """float64 values stored per snapshot (the file-size check before a run)."""
        return config.initial.systems * config.initial.n * config.model.d

    @classmethod
    def stored_conflict(cls, config, result) -> str | None:
        """Why a stored run (with snapshots) cannot be continued with ``config``, or None."""
        return None

    # -- instances

    def __init__(self, config):
        self.config = config

    #: The cell areas when a state is a mesh measure (``n_clusters`` compares densities).
    cell_areas: np.ndarray | None = None

    def initial_state(self) -> np.ndarray:
        """The state at t = 0 from ``config.initial`` (static data such as weights kept on self)."""
        raise NotImplementedError

    def restore(self, result) -> np.ndarray:
        """The state at t = 0 of a stored run (``mfpde.load``'s :class:`~mfpde.io.Result`),
        restoring the static data it needs (weights) from it."""
        raise NotImplementedError


    def write_static(self, writer) -> None:
        """Write the data that do not change in time (``/state/weights``, ``/grid``)."""

    def measure(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The measure a state represents: (points (K, d), masses (K,))."""
        raise NotImplementedError

    def snapshots(self, state: np.ndarray, times: Sequence[float], t0: float = 0.0,
                  on_step: Callable[[float], None] | None = None) -> Iterator[tuple[float, np.ndarray]]:
        """Yield (t, state) at every t in ``times`` (increasing, >= t0) starting from ``state`` at t0.

        Each interval between requested times must be stepped the same way whether or not
        the run was resumed at its start (a resumed run repeats the uninterrupted one bit for bit).
        """
        raise NotImplementedError

    def provenance(self) -> dict:
        """The file attributes saying how the run is computed: method, integrator, kernel, precision,
        backend (``solver.backend``: "cpu" or "cuda")."""
        solver = self.config.solver
        integrator = solver.integrator if self.integrators is not None else self.integrator_name
        return {"method": self.name, "integrator": integrator, "kernel": solver.kernel, "precision": "float64",
                "kernel_used": solver.kernel, "backend": solver.backend}


def check_solver_options(config, solver_class) -> None:
    """``solver_class.check_options(model, solver options)`` (the solver's own rules, raising
    ``ValueError("solver.cfl must be ...")``) as the config's one-line ``ConfigError``."""
    from ..config import _wrap

    try:
        solver_class.check_options(config.model, config.solver)
    except ValueError as exc:
        raise _wrap(config.source, exc, "solver.method") from None


_REGISTRY: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Register a :class:`Method` subclass under ``cls.name`` (usable as a class decorator).

    Registering a name again replaces the earlier class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method takes a Method subclass, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name.isidentifier():
        raise ValueError(f"a method's name must be an identifier, got {cls.name!r}")
    if not isinstance(cls.state, StateKind):
        raise TypeError(f"{cls.__name__}.state must be a StateKind (POSITIONS or MASS), got {cls.state!r}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_method(name: str) -> None:
    """Remove a registered method (tests register toy methods and take them away again)."""
    _REGISTRY.pop(name, None)


def _load_builtins() -> None:
    from . import particles, finite_volumes  # noqa: F401, I001  (importing them registers them, in this order)


def method_names() -> tuple[str, ...]:
    """The registered ``solver.method`` values, built-ins first."""
    _load_builtins()
    return tuple(_REGISTRY)


def get_method(name: str) -> type[Method]:
    """The registered method class called ``name`` (``ValueError`` listing the choices otherwise)."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"solver.method must be one of {', '.join(_REGISTRY)}, got {name!r}") from None
