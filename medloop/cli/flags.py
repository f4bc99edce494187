"""Flags print no value type in `--help`.

typer 0.2x renders every boolean flag with a type column, `--json <bool>`, as though the
flag took a value (it does not: `--json true` is a usage error). click and earlier typer
releases showed nothing for a flag; this restores that for every command at once,
including typer's own `--help`, instead of a `metavar=""` on each option.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperOption

_type_column = TyperOption.display_type_rich


def _flag_type_column(self: TyperOption, ctx: Any) -> str | None:
    if getattr(self, "is_flag", False) and self.metavar is None:
        return None
    return _type_column(self, ctx)


setattr(TyperOption, "display_type_rich", _flag_type_column)  # noqa: B010  (a method, not an attribute)
