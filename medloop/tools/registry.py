"""The tool registry: every tool is a function `fn(ctx, args) -> output` with a pydantic
input and output model, a stable name and version, the roles that may call it, and a
docstring written for an LLM reader (what it does, when to use it, cost, limits).

Adapters (function-calling schemas, LangChain tools, the MCP server, the CLI) are built
from the registry, so they all expose the same tools with the same checks: role, input
validation with errors that name the field and what is allowed, then the call.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from medloop.core.errors import MedloopError, NotFoundError, PermissionDenied, SpecError
from medloop.tools.context import Role, ToolContext

I = TypeVar("I", bound=BaseModel)  # noqa: E741 - the input model
O = TypeVar("O", bound=BaseModel)  # noqa: E741 - the output model

NAME = re.compile(r"^[a-z][a-z0-9_]{2,63}$")
REQUIRED_SECTIONS = ("Use when:", "Cost:", "Limits:")


class ToolModel(BaseModel):
    """Base of tool inputs and outputs: frozen, unknown keys rejected (a typo from an LLM
    becomes an error naming the key instead of a silently ignored argument)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldProblem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str
    problem: str
    got: str | None = None


class ToolInputError(SpecError):
    """The arguments of a tool call are invalid; `problems` says which field and why."""

    def __init__(self, tool: str, problems: list[FieldProblem]) -> None:
        parts = [
            f"{p.field}: {p.problem}" + (f" (got {p.got})" if p.got is not None else "") for p in problems
        ]
        super().__init__(
            f"{tool}: invalid arguments: " + "; ".join(parts),
            hint="fix the named fields and call again; the tool's schema lists every field",
        )
        self.tool = tool
        self.problems = problems


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (nested) model at `loc`, for 'unknown field' errors."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        current = info.annotation
        args = [a for a in typing.get_args(current) if isinstance(a, type) and issubclass(a, BaseModel)]
        if args:
            current = args[0]
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return None


def field_problems(exc: ValidationError, model: type[BaseModel], *, prefix: str = "") -> list[FieldProblem]:
    """One problem per pydantic error: the dotted field, what is wrong or allowed, the input."""
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        where = prefix + (".".join(str(p) for p in loc) or "(arguments)")
        kind = err["type"]
        got: str | None = None
        if kind == "missing":
            problem = "required but missing"
        elif kind == "extra_forbidden":
            allowed = _allowed_fields(model, loc[:-1])
            problem = "unknown field" + (f"; allowed fields: {', '.join(allowed)}" if allowed else "")
        else:
            problem = str(err["msg"]).removeprefix("Value error, ")
            got = repr(err.get("input"))[:80]
        out.append(FieldProblem(field=where, problem=problem, got=got))
    return out


ToolFn = Callable[[ToolContext, I], O]


@dataclass(frozen=True)
class ToolSpec(Generic[I, O]):
    """One registered tool. `version` changes when the input or output shape changes in
    a way old callers would notice; `name` never changes."""

    name: str
    version: int
    fn: ToolFn[I, O]
    input_model: type[I]
    output_model: type[O]
    roles: tuple[Role, ...]
    read_only: bool
    long_running: bool = False
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.fn.__doc__ or "")

    @property
    def summary(self) -> str:
        return self.description.split("\n\n", 1)[0].replace("\n", " ")

    def parse(self, arguments: dict[str, Any] | BaseModel | None) -> I:
        """Validate raw arguments into the input model (ToolInputError otherwise)."""
        if isinstance(arguments, self.input_model):
            return arguments
        raw = arguments.model_dump() if isinstance(arguments, BaseModel) else dict(arguments or {})
        try:
            return self.input_model.model_validate(raw)
        except ValidationError as exc:
            raise ToolInputError(self.name, field_problems(exc, self.input_model)) from None

    def check_role(self, ctx: ToolContext) -> None:
        if ctx.caller.role not in self.roles:
            raise PermissionDenied(
                f"{self.name} needs role {' or '.join(self.roles)}; {ctx.caller.name} acts as {ctx.caller.role}",
                hint="ask an operator for a token with that role",
            )

    def __call__(self, ctx: ToolContext, arguments: dict[str, Any] | BaseModel | None = None) -> O:
        self.check_role(ctx)
        args = self.parse(arguments)
        result = self.fn(ctx, args)
        if not isinstance(result, self.output_model):
            raise TypeError(
                f"tool {self.name} returned {type(result).__name__}, not {self.output_model.__name__}"
            )
        return result


class Registry:
    """Tools by name, in registration order."""

    def __init__(self) -> None:
        self._tools: dict[str, ToolSpec[Any, Any]] = {}

    def add(self, spec: ToolSpec[Any, Any]) -> None:
        if not NAME.match(spec.name):
            raise ValueError(f"tool name {spec.name!r} must match {NAME.pattern}")
        if spec.name in self._tools and self._tools[spec.name].fn is not spec.fn:
            raise ValueError(f"tool {spec.name} is registered twice")
        missing = [s for s in REQUIRED_SECTIONS if s not in spec.description]
        if missing:
            raise ValueError(f"tool {spec.name}: its docstring lacks {', '.join(missing)}")
        spec.parse(spec.example)  # the documented example call must be valid
        self._tools[spec.name] = spec

    def get(self, name: str) -> ToolSpec[Any, Any]:
        try:
            return self._tools[name]
        except KeyError:
            raise NotFoundError(
                f"no tool named {name!r}", hint=f"available tools: {', '.join(self._tools)}"
            ) from None

    def names(self) -> list[str]:
        return list(self._tools)

    def __iter__(self) -> Iterator[ToolSpec[Any, Any]]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def call(
        self, name: str, ctx: ToolContext, arguments: dict[str, Any] | BaseModel | None = None
    ) -> BaseModel:
        """Check the caller's role, validate, run. MedloopErrors are the caller's to read."""
        result: BaseModel = self.get(name)(ctx, arguments)
        return result


REGISTRY = Registry()


def tool(
    *,
    name: str,
    version: int = 1,
    roles: tuple[Role, ...],
    read_only: bool,
    long_running: bool = False,
    example: dict[str, Any] | None = None,
    registry: Registry = REGISTRY,
) -> Callable[[ToolFn[I, O]], ToolSpec[I, O]]:
    """Register `fn(ctx, args: InputModel) -> OutputModel`; the models come from its annotations."""

    def decorate(fn: ToolFn[I, O]) -> ToolSpec[I, O]:
        hints = typing.get_type_hints(fn)
        params = [p for p in inspect.signature(fn).parameters if p != "ctx"]
        if len(params) != 1 or "return" not in hints:
            raise TypeError(f"tool {name}: expected fn(ctx, args: Model) -> Model")
        spec = ToolSpec(
            name=name,
            version=version,
            fn=fn,
            input_model=hints[params[0]],
            output_model=hints["return"],
            roles=roles,
            read_only=read_only,
            long_running=long_running,
            example=example or {},
        )
        registry.add(spec)
        return spec

    return decorate


def error_payload(exc: MedloopError) -> dict[str, Any]:
    """The JSON an adapter returns to an LLM for a refused call: what, why, what to do."""
    out: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message}
    if exc.hint:
        out["hint"] = exc.hint
    if isinstance(exc, ToolInputError):
        out["fields"] = [p.model_dump(exclude_none=True) for p in exc.problems]
    return out
