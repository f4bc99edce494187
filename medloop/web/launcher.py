"""Campaign files from the form or the API -> a validated spec (errors per field, with the
YAML line). Campaigns then run through the one process launcher
(medloop.engine.launcher.CampaignProcesses), which the CLI's tool server shares.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medloop.core import safeyaml
from medloop.core.errors import SpecError
from medloop.core.specs import CampaignSpec, format_validation_error, parse_campaign_spec
from medloop.web.errors import FieldError, InvalidInput

MAX_YAML_BYTES = 200_000
# Form fields that override the YAML (dotted path -> label); errors show next to them.
FORM_FIELDS: dict[str, str] = {
    "name": "Name",
    "goal": "Goal",
    "dataset.path": "Dataset folder",
    "budget.max_trials": "Max trials",
    "budget.max_cycles": "Max cycles",
    "budget.max_wall": "Max wall time",
    "executor.kind": "Executor",
    "planner.kind": "Planner",
}
_SOURCE = "campaign"
_YAML_LINE = re.compile(rf"^{_SOURCE}: line (?P<line>\d+):")
_PREFIXED = re.compile(rf"^{_SOURCE}: (?:(?P<field>[\w.\[\]-]+): )?(?P<msg>.*)$", re.S)


# ---------------------------------------------------------------- YAML with line numbers


def _scalar(text: str) -> Any:
    """A form value as YAML reads it ('12' -> 12, '8m' stays a string)."""
    return safeyaml.scalar(text)


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    *parents, leaf = path.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[leaf] = value


def parse_spec(text: str, overrides: dict[str, str] | None = None) -> CampaignSpec:
    """Validate a campaign YAML (plus form overrides). Raises InvalidInput listing every
    offending field with its YAML line, or nothing. The dataset (or replay table) must exist."""
    try:
        doc = safeyaml.parse(text, source=_SOURCE, max_bytes=MAX_YAML_BYTES)
    except SpecError as exc:
        match = _YAML_LINE.match(exc.message)
        line = int(match.group("line")) if match else None
        problem = exc.message.removeprefix(f"{_SOURCE}: ")
        raise InvalidInput(str(exc), [FieldError(field="yaml", message=problem, line=line)]) from None
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(
            "the campaign file must be a mapping of keys",
            [FieldError(field="yaml", message="expected `key: value` lines at the top level", line=1)],
        )
    from_form: set[str] = set()
    for path, value in (overrides or {}).items():
        if path not in FORM_FIELDS:
            raise InvalidInput(
                f"{path} cannot be set from the form",
                [FieldError(field=path, message=f"settable fields: {', '.join(FORM_FIELDS)}")],
            )
        if value is not None and str(value).strip():
            _set_path(data, path, _scalar(str(value)) if path not in ("name", "goal") else str(value))
            from_form.add(path)  # the form's value: no YAML line to point at
    try:
        CampaignSpec.model_validate(data)
    except ValidationError as exc:
        details = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
            # Discriminated unions add the variant name to the path; drop it.
            loc = [p for p in loc if p not in ("categorical", "int", "float")]
            field = ".".join(loc)
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see examples/ for the allowed keys)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            line = doc.line_for(field) if field and field not in from_form else None
            details.append(FieldError(field=field, message=msg, line=line))
        raise InvalidInput(format_validation_error(exc, _SOURCE), details) from None
    try:
        return parse_campaign_spec(data, source=_SOURCE, check_dataset=True)
    except SpecError as exc:
        match = _PREFIXED.match(exc.message)
        field = (match.group("field") or "") if match else ""
        msg = match.group("msg") if match else exc.message
        line = doc.line_for(field) if field and field not in from_form else None
        detail = FieldError(field=field, message=msg, line=line)
        raise InvalidInput(exc.message, [detail]) from None


# ---------------------------------------------------------------- examples


def list_examples(folder: Path | None) -> dict[str, Path]:
    """name -> file for the campaign examples the form offers."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob("*.yaml")) if p.is_file()}


def example_text(folder: Path | None, name: str) -> str:
    examples = list_examples(folder)
    if name not in examples:
        known = ", ".join(examples) or "none"
        raise InvalidInput(
            f"no example named {name!r}", [FieldError(field="example", message=f"known examples: {known}")]
        )
    return examples[name].read_text()
