"""Docstring helpers: one text for a parameter that several public functions share."""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["share_parameters"]


def _parameter_entries(doc):
    """``{name: its lines}`` of the Parameters section of a numpydoc docstring."""
    entries, name, inside = {}, None, False
    for line in (doc or "").splitlines(keepends=True):
        if line.strip() == "Parameters":
            inside = True
        elif inside and (not line.strip() or line.strip().startswith("---")):
            if name is not None:  # the blank line that ends the section
                break
        elif inside and line.startswith("    ") and not line.startswith("     "):
            name = line.strip().split(" : ")[0]
            entries[name] = line
        elif inside and name is not None:
            entries[name] += line
    return entries


def share_parameters(fn: Callable, *sources: Callable) -> Callable:
    """Fill each ``    {name}`` line of ``fn``'s docstring with the entry of that name.

    The entry is taken from the first of ``sources`` (documented functions) that has
    one, so that parameters several functions share are written once and the rendered
    docs (and numpydoc's validation) see a complete Parameters section.
    """
    if fn.__doc__:  # None under python -OO
        entries = {}
        for source in reversed(sources):
            entries.update(_parameter_entries(source.__doc__))
        fn.__doc__ = re.sub(r"^    \{(\w+)\}\n", lambda m: entries[m.group(1)], fn.__doc__,
                            flags=re.M)
    return fn
