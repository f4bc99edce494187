"""Field types for user-written specs: bounded text and paths, and numbers that are numbers.

pydantic's lax mode reads `max_trials: true` as 1 and `lr: yes` as 1.0; a YAML boolean in a
number's place is a mistake, so spec fields are typed `Int` / `Float`, which refuse it
(`numeric_fields` lets a test check that every number field of a spec does). Text and paths carry a length cap so that a huge
value is refused before anything stores it, prompts it or hands it to the OS.
"""

from __future__ import annotations

import functools
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, Field

MAX_PATH = 4096  # PATH_MAX on Linux
NAME_TEXT = 200  # a name, a model id, a site, an image reference
GOAL_TEXT = 4000  # a research goal: a paragraph, quoted into prompts


def _short_path(value: Any) -> Any:
    if isinstance(value, str | Path) and len(str(value)) > MAX_PATH:
        raise ValueError(f"a path of {len(str(value)):,} characters; at most {MAX_PATH}")
    return value


UserPath = Annotated[Path, BeforeValidator(_short_path)]
NameText = Annotated[str, Field(max_length=NAME_TEXT)]


def _types_in(annotation: Any) -> set[Any]:
    """The plain types an annotation accepts (through unions, Optional and Annotated)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _types_in(typing.get_args(annotation)[0])
    if origin is Union or isinstance(annotation, types.UnionType):
        return set().union(*(_types_in(arg) for arg in typing.get_args(annotation)))
    if origin is Literal:
        return {type(arg) for arg in typing.get_args(annotation)}
    return {origin or annotation}


@functools.cache
def numeric_fields(model: type[BaseModel]) -> frozenset[str]:
    """Fields of `model` typed as a number (int or float) that do not also accept a bool."""
    out = set()
    for name, info in model.model_fields.items():
        accepted = _types_in(info.annotation)
        if accepted & {int, float} and bool not in accepted:
            out.add(name)
    return frozenset(out)


def _refuse_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


# Numbers in user specs: pydantic's lax mode would turn true/false into 1/0.
Int = Annotated[int, BeforeValidator(_refuse_bool)]
Float = Annotated[float, BeforeValidator(_refuse_bool)]
