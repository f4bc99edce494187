"""The base of every spec model (unknown keys forbidden, frozen, stable hashes) and the
search-space factor types (categorical, int and float ranges)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from medloop.core.fields import Float, Int

Scalar = str | int | float | bool
TaskKind = Literal["segmentation", "vqa", "audio", "pretrain", "promptable", "classification"]
Direction = Literal["maximize", "minimize"]


class Spec(BaseModel):
    """Base of user-written specs: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Trial-config fields added after trials were first recorded: left out of a trial's
    # spec hash while they hold their default, so a config written before the field
    # existed keeps its hash (reuse of runs, resumed campaigns, replay tables).
    HASH_OMIT_AT_DEFAULT: ClassVar[frozenset[str]] = frozenset()

    def hash_dump(self) -> dict[str, Any]:
        """The JSON dump a spec hash is computed from (see HASH_OMIT_AT_DEFAULT)."""
        data = self.model_dump(mode="json")
        fields = type(self).model_fields
        for name in self.HASH_OMIT_AT_DEFAULT:
            if name in data and data[name] == fields[name].default:
                del data[name]
        return data


# ---------------------------------------------------------------- search space


class Categorical(Spec):
    type: Literal["categorical"] = "categorical"
    choices: list[Scalar] = Field(min_length=1, max_length=1000)
    when: dict[str, list[Scalar]] | None = Field(
        default=None, description="Active only when every named factor takes one of these values"
    )


class IntRange(Spec):
    type: Literal["int"]
    low: Int
    high: Int
    log: bool = False
    when: dict[str, list[Scalar]] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low >= self.high or (self.log and self.low <= 0):
            raise ValueError("needs low < high (and low > 0 when log is true)")
        return self


class FloatRange(Spec):
    type: Literal["float"]
    low: Float
    high: Float
    log: bool = False
    when: dict[str, list[Scalar]] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low >= self.high or (self.log and self.low <= 0):
            raise ValueError("needs low < high (and low > 0 when log is true)")
        return self


def _shorthand_factor(value: Any) -> Any:
    # `loss: [dice, dicece]` in YAML is a categorical factor.
    if isinstance(value, list):
        return {"type": "categorical", "choices": value}
    return value


Factor = Annotated[
    Annotated[Categorical | IntRange | FloatRange, Field(discriminator="type")],
    BeforeValidator(_shorthand_factor),
]
