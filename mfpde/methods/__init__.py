"""Solver methods: one :class:`Method` subclass per ``solver.method`` value, in one registry.

``get_method(name)`` gives the class, ``method_names()`` the choices of ``solver.method``;
``register_method`` adds one (docs/methods.md, "Adding a method").
"""

from .base import MASS, POSITIONS, Method, StateKind, get_method, method_names, register_method, unregister_method

__all__ = ["Method", "StateKind", "POSITIONS", "MASS", "register_method", "unregister_method", "get_method",
           "method_names"]
