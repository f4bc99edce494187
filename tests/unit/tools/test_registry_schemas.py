"""The registry and the schemas every adapter publishes: complete, valid JSON Schema
(Draft 2020-12), LLM-readable docstrings, working examples, a docs page that cannot drift."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from pydantic import BaseModel

from medloop.tools.registry import REQUIRED_SECTIONS, Registry, ToolModel, tool
from medloop.tools.schemas import catalog, input_schema, openai_tools, output_schema, render_docs

ISSUE_TOOLS = {
    "dataset_check",
    "dataset_fingerprint",
    "plan_baseline",
    "run_trial",
    "trial_status",
    "trial_result",
    "evaluate_predictions",
    "compare_trials",
    "search_knowledge",
    "get_claim",
    "propose_claim",
    "campaign_start",
    "campaign_status",
}
DOCS = Path(__file__).resolve().parents[3] / "docs" / "tools.md"


def test_the_registry_holds_every_tool_the_issue_asks_for(registry: Registry) -> None:
    assert set(registry.names()) >= ISSUE_TOOLS
    for spec in registry:
        assert spec.version >= 1
        for section in REQUIRED_SECTIONS:
            assert section in spec.description, (spec.name, section)


def test_schemas_are_valid_draft_2020_12_and_accept_the_documented_examples(registry: Registry) -> None:
    validator = jsonschema.Draft202012Validator
    for spec in registry:
        schema_in, schema_out = input_schema(spec), output_schema(spec)
        validator.check_schema(schema_in)
        validator.check_schema(schema_out)
        assert schema_in["type"] == "object"
        assert "$ref" not in str(schema_in) and "$defs" not in schema_in, spec.name
        validator(schema_in).validate(spec.example)
        # the schema is strict where the model is: an unknown key is refused by both
        assert schema_in.get("additionalProperties") is False, spec.name
        with pytest.raises(jsonschema.ValidationError):
            validator(schema_in).validate({**spec.example, "no_such_field": 1})


def test_openai_tools_carry_name_description_and_parameters(registry: Registry) -> None:
    tools = openai_tools(registry)
    assert [t["function"]["name"] for t in tools] == registry.names()
    for t in tools:
        fn = t["function"]
        assert t["type"] == "function" and fn["parameters"]["type"] == "object"
        assert "Use when:" in fn["description"] and "Roles:" in fn["description"]
    full = catalog(registry)
    assert all(entry["input_schema"]["$schema"].endswith("2020-12/schema") for entry in full)


def test_docs_page_is_generated_from_the_registry(registry: Registry) -> None:
    assert DOCS.is_file(), "run `medloop tools docs --write docs/tools.md`"
    assert DOCS.read_text() == render_docs(registry), (
        "docs/tools.md drifted: run `medloop tools docs --write docs/tools.md`"
    )
    for spec in registry:
        assert f"## {spec.name}" in DOCS.read_text()


class In(ToolModel):
    x: int


class Out(ToolModel):
    y: int


def test_registration_refuses_tools_without_llm_docs_or_with_a_broken_example() -> None:
    reg = Registry()

    def undocumented(ctx: object, args: In) -> Out:
        """Does something."""
        return Out(y=args.x)

    with pytest.raises(ValueError, match="lacks Use when:"):
        tool(name="undocumented", roles=("agent",), read_only=True, example={"x": 1}, registry=reg)(
            undocumented
        )  # type: ignore[arg-type]

    def documented(ctx: object, args: In) -> Out:
        """Doubles.

        Use when: testing. Cost: nothing. Limits: none.
        """
        return Out(y=2 * args.x)

    with pytest.raises(Exception, match="x"):
        tool(name="documented", roles=("agent",), read_only=True, example={"x": "two"}, registry=reg)(
            documented
        )  # type: ignore[arg-type]
    spec = tool(name="documented", roles=("agent",), read_only=True, example={"x": 2}, registry=reg)(
        documented
    )  # type: ignore[arg-type]
    assert spec.input_model is In and spec.output_model is Out
    assert issubclass(spec.output_model, BaseModel)
