"""Errors that name what is wrong in a user's input.

The CLI turns a :class:`GraftInputError` into exit code 2 and one line on stderr; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GraftInputError(ValueError):
    """Bad user input: a file, a field, a flow or a name that cannot be used."""

    def __init__(self, message: str, *, field: str | None = None, flow: str | None = None):
        self.field = field
        self.flow = flow
        where = []
        if flow is not None:
            where.append(f"flow {flow!r}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)


class UnknownNameError(GraftInputError):
    """A model, planner or cost model name that is not registered."""

    def __init__(self, kind: str, name: str, choices: list[str] | tuple[str, ...]):
        self.kind = kind
        self.name = name
        self.choices = tuple(choices)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices)}")
