"""The one mapping between pydantic records and table rows.

A record is stored as JSON text columns plus scalar columns that queries filter and sort
on. `columns` maps a column to an attribute path: a field name is written and read back,
a dotted path (`spec.seed`, `effect.estimate`) is an indexed copy, written only (None
where a step is None). `json` maps a column to "*" (the whole record), one field (its
value), or a tuple of fields (an object of them). Table columns named like a field and
not listed are mapped to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel

from medloop.core.ids import canonical_json

if TYPE_CHECKING:
    from medloop.core.store.db import Row

R = TypeVar("R", bound=BaseModel)
JsonSpec = str | tuple[str, ...]


def _get(record: Any, path: str) -> Any:
    for step in path.split("."):
        if record is None:
            return None
        record = getattr(record, step)
    return record


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    return value.model_dump_json() if isinstance(value, BaseModel) else canonical_json(value)


class Mapper(Generic[R]):
    def __init__(
        self,
        model: type[R],
        table: sa.Table,
        *,
        json: Mapping[str, JsonSpec] | None = None,
        columns: Mapping[str, str] | None = None,
        generated: tuple[str, ...] = (),
    ) -> None:
        self.model, self.table, self.json = model, table, dict(json or {})
        fields = set(model.model_fields)
        self.columns = {c.name: c.name for c in table.columns if c.name in fields and c.name not in self.json}
        self.columns.update(columns or {})
        self.generated = set(generated)  # filled by the database (sequence numbers)
        self.read = {c: f for c, f in self.columns.items() if "." not in f}
        self.whole = next((c for c, spec in self.json.items() if spec == "*"), None)

    def row(self, record: R, **extra: Any) -> dict[str, Any]:
        """Column values of `record`; `extra` fills columns the record has no field for."""
        out = {c: _get(record, p) for c, p in self.columns.items() if c not in self.generated}
        for column, spec in self.json.items():
            if spec == "*":
                out[column] = record.model_dump_json()
            elif isinstance(spec, tuple):
                out[column] = record.model_dump_json(include=set(spec))
            else:
                out[column] = _dump(getattr(record, spec))
        return out | extra

    def record(self, row: Row, **extra: Any) -> R:
        """The record of a row (`extra`: fields kept in other tables)."""
        m = row._mapping
        if self.whole is not None:
            return self.model.model_validate_json(m[self.whole])
        # json.loads, not pydantic's JSON parser: canonical JSON may escape lone surrogates.
        data = {f: m[c] for c, f in self.read.items()}
        for column, spec in self.json.items():
            if spec in extra:
                continue
            value = None if m[column] is None else json.loads(m[column])
            if isinstance(spec, tuple):
                data.update(value or {})
            else:
                data[spec] = value
        return self.model.model_validate(data | extra)
