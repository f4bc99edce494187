"""Code hypotheses: the contract between the host, which checks and stages a module, and
the job, which loads it inside the sandbox at one extension point of the trainer.

A module is one Python source file. It names its extension point in a module-level
constant `EXTENSION_POINT` and defines the point's function with the parameters below
(in that order). It is content-addressed: a trial config names it by the sha256 of its
source in the field `code_<point>`, so the spec hash, reuse of runs and reproduction all
follow the exact code that ran.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CodePoint = Literal["loss", "augmentation", "network", "postprocess", "lr_schedule", "tta"]
# Who wrote a module: the offline planner (a shipped code move), an LLM planner's "write
# code" step, or a person through the CLI or the API.
AuthorKind = Literal["planner", "llm", "human"]
# The short trial a module must survive before its first real trial (engine/smoke.py).
SmokeStatus = Literal["pending", "passed", "failed"]

# point -> (function name, parameter names). What each function returns:
#   loss          build_loss(config, deep_supervision) -> torch.nn.Module mapping (logits,
#                 target) to a scalar loss; logits (B, K, *spatial), target (B, 1, *spatial)
#                 integer labels; with deep_supervision the module receives a list of heads,
#                 full resolution first, and weights them itself
#   augmentation  transforms(config, patch) -> list of MONAI dictionary transforms on keys
#                 "image" (C, *spatial) and "label" (1, *spatial), run after the preset
#   network       build_network(config, in_channels, out_channels, patch, spacing) -> nn.Module
#   postprocess   postprocess(label_map, spacing, labels) -> label map (uint8 numpy array of
#                 the same shape); labels: {"background": 0, name: value, ...}
#   lr_schedule   lr_factor(step, total_steps) -> multiplier of the base learning rate
#   tta           tta(predict, image) -> probabilities (K, *spatial) tensor; `predict` maps a
#                 (1, C, *spatial) tensor to softmax probabilities (1, K, *spatial)
INTERFACES: dict[str, tuple[str, tuple[str, ...]]] = {
    "loss": ("build_loss", ("config", "deep_supervision")),
    "augmentation": ("transforms", ("config", "patch")),
    "network": ("build_network", ("config", "in_channels", "out_channels", "patch", "spacing")),
    "postprocess": ("postprocess", ("label_map", "spacing", "labels")),
    "lr_schedule": ("lr_factor", ("step", "total_steps")),
    "tta": ("tta", ("predict", "image")),
}
CODE_FIELD_PREFIX = "code_"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_SOURCE_BYTES = 64 * 1024  # a code hypothesis is a focused change, not a framework
# Top-level modules a code hypothesis may import. Containment is the sandbox's job (no
# network, no host files, host-side scoring); this list makes a wrong module fail in a
# second on the host instead of minutes into a trial.
ALLOWED_IMPORTS = frozenset(
    {
        "__future__",
        "collections",
        "dataclasses",
        "einops",
        "functools",
        "itertools",
        "math",
        "monai",
        "numpy",
        "scipy",
        "torch",
        "typing",
    }
)


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def code_field(point: str) -> str:
    return f"{CODE_FIELD_PREFIX}{point}"


class CodeModule(BaseModel):
    """A checked code module as the knowledge base keeps it (the source is stored beside
    it under its sha256)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=SHA256.pattern)
    point: CodePoint
    name: str = Field(min_length=1, max_length=120, description="Short human name, e.g. largest_component")
    rationale: str = Field(default="", max_length=4000)
    author: str = Field(description="medloop-library, a user name, or llm:<model>")
    author_kind: AuthorKind = "human"
    trusted: bool = Field(description="Shipped with medloop (its sha256 matches a library file)")
    size: int
    imports: list[str] = Field(default_factory=list)
    diff: str = Field(default="", description="Unified diff against the code it replaces (or empty)")
    flags: list[str] = Field(
        default_factory=list,
        description="What a reviewer should look at (paths like result.json or labels named in the "
        "source); not refused: the sandbox and host-side scoring make them harmless",
    )
    campaign_id: str | None = Field(default=None, description="The campaign it was written for; None: any")


class CodeState(BaseModel):
    """What the knowledge base knows about a module besides its record: the smoke trial's
    outcome (and why it failed), kept beside the content-addressed row."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    smoke: SmokeStatus = "pending"
    smoke_reason: str = ""
    created_at: str = ""
