"""Spiking layers over a frame sequence, built on snntorch.

`lif`: snntorch's leaky integrate-and-fire neuron (learnable decay, subtractive reset,
fast-sigmoid surrogate gradient).

`arslif`: an adaptive-rate smooth LIF. Its threshold rises with the neuron's recent
firing rate (an exponential average of its spikes), so a channel that a noise burst
drives hard fires less and steady inputs keep a bounded rate; its surrogate gradient is
a wide sigmoid (slope 5 instead of 25), which passes gradient through more of the
membrane range and trains more smoothly. The spike itself is snntorch's surrogate
Heaviside.
"""

from __future__ import annotations

import torch
from torch import nn


class SpikingSequence(nn.Module):
    """Runs a neuron over time: (B, C, T) currents -> (B, C, T) spikes."""

    def __init__(self, channels: int, kind: str) -> None:
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate

        self.kind = kind
        if kind == "lif":
            self.lif = snn.Leaky(
                beta=torch.full((channels,), 0.9),
                learn_beta=True,
                spike_grad=surrogate.fast_sigmoid(slope=25),
                reset_mechanism="subtract",
            )
        elif kind == "arslif":
            self.beta_logit = nn.Parameter(torch.full((channels,), 2.2))  # sigmoid -> ~0.9
            self.adapt = nn.Parameter(torch.full((channels,), 0.5))  # threshold gain per unit rate
            self.rate_decay = 0.95
            self.spike_fn = surrogate.sigmoid(slope=5)
        else:
            raise ValueError(f"unknown neuron {kind!r}; use lif or arslif")

    def forward(self, currents: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        steps = currents.shape[-1]
        spikes: list[torch.Tensor] = []
        if self.kind == "lif":
            mem = self.lif.init_leaky()
            for t in range(steps):
                spk, mem = self.lif(currents[..., t], mem)
                spikes.append(spk)
            return torch.stack(spikes, dim=-1)
        beta = torch.sigmoid(self.beta_logit)
        mem = torch.zeros_like(currents[..., 0])
        rate = torch.zeros_like(mem)
        for t in range(steps):
            threshold = 1.0 + nn.functional.softplus(self.adapt) * rate
            mem = beta * mem + currents[..., t]
            spk = self.spike_fn(mem - threshold)
            mem = mem - spk * threshold  # subtractive reset
            rate = self.rate_decay * rate + (1 - self.rate_decay) * spk
            spikes.append(spk)
        return torch.stack(spikes, dim=-1)


class SpikingBlock(nn.Module):
    """Residual spiking block: x + W * spikes(x). The linear readout of the spike train
    keeps the block trainable when few neurons fire early in training."""

    def __init__(self, channels: int, kind: str) -> None:
        super().__init__()
        self.neurons = SpikingSequence(channels, kind)
        self.readout = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        out: torch.Tensor = x + self.readout(self.neurons(x))
        return out
