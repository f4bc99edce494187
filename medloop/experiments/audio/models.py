"""Segment classifiers over (B, F, T) feature windows -> (B,) logits.

cnn   2D conv front-end over (feature, time), pooled over features, mean over time.
crnn  the same front-end, then a BiLSTM over time.
hstn  hierarchical spatial-temporal network: a spatial branch (2D conv over the
      feature x time plane) and a temporal branch (dilated 1D convs over time on the
      feature vector) fused per frame, a BiGRU over time and attention pooling.
An optional spiking block (neuron lif | arslif) runs on the fused frame sequence.
"""

from __future__ import annotations

import torch
from torch import nn

from medloop.experiments.audio.spiking import SpikingBlock


class _Spatial(nn.Module):
    """(B, F, T) -> (B, hidden, T // 2): 2D convs, then the mean over the feature axis."""

    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        half = max(4, hidden // 2)
        pool = (2 if n_features >= 2 else 1, 2)  # a single feature row (zcr) pools over time only
        self.net = nn.Sequential(
            nn.Conv2d(1, half, 3, padding=1),
            nn.BatchNorm2d(half),
            nn.ReLU(),
            nn.MaxPool2d(pool),
            nn.Conv2d(half, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x[:, None]).mean(dim=2)
        return out


class _Temporal(nn.Module):
    """(B, F, T) -> (B, hidden, T // 2): dilated 1D convs over time."""

    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(n_features, hidden, 3, padding=1),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.MaxPool1d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class SegmentClassifier(nn.Module):
    def __init__(self, model: str, n_features: int, hidden: int, neuron: str = "none") -> None:
        super().__init__()
        if model not in ("cnn", "crnn", "hstn"):
            raise ValueError(f"unknown model {model!r}; use cnn, crnn or hstn")
        self.model = model
        self.spatial = _Spatial(n_features, hidden)
        self.temporal = _Temporal(n_features, hidden) if model == "hstn" else None
        width = 2 * hidden if model == "hstn" else hidden
        self.spiking = SpikingBlock(width, neuron) if neuron != "none" else None
        self.rnn: nn.LSTM | nn.GRU | None = None
        if model == "crnn":
            self.rnn = nn.LSTM(width, hidden // 2 or 1, batch_first=True, bidirectional=True)
        elif model == "hstn":
            self.rnn = nn.GRU(width, hidden // 2 or 1, batch_first=True, bidirectional=True)
        out = 2 * (hidden // 2 or 1) if self.rnn is not None else width
        self.attention = nn.Linear(out, 1) if model == "hstn" else None
        self.head = nn.Linear(out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, F, T)
        h = self.spatial(x)  # (B, hidden, T')
        if self.temporal is not None:
            temporal = self.temporal(x)
            frames = min(h.shape[-1], temporal.shape[-1])
            h = torch.cat([h[..., :frames], temporal[..., :frames]], dim=1)
        if self.spiking is not None:
            h = self.spiking(h)
        seq = h.transpose(1, 2)  # (B, T', C)
        if self.rnn is not None:
            seq, _ = self.rnn(seq)
        if self.attention is not None:
            weights = torch.softmax(self.attention(seq), dim=1)  # (B, T', 1)
            pooled = (weights * seq).sum(dim=1)
        else:
            pooled = seq.mean(dim=1)
        logits: torch.Tensor = self.head(pooled).squeeze(-1)
        return logits
