"""A HyDA-style dynamic adapter (after the idea of Deng et al. 2025, "Brain Foundation
Models with Hypergraph Dynamic Adapter"; written from the description, no code copied).

The frozen encoder's feature maps of each modality become hypergraph nodes: one global
node per modality and n^3 spatial patch nodes per modality. Hyperedges are of three
kinds: one per modality (its nodes), one per position (the same place in every modality:
where the modalities meet) and `edges` learned ones (soft membership by similarity to a
learned prototype). Two hypergraph convolutions (HGNN: X' = Dv^-1/2 H W De^-1 H^T Dv^-1/2
X Theta, with soft incidence H and positive learned edge weights W) fuse the nodes; their
mean is the patient embedding z. From z a generator makes *patient-specific* depthwise
3D kernels (at dilations 1 and 2: two scales) and a channel gate, applied to every
modality's feature map as a residual: F' = F + gate(z) * sum_d conv(F, K_d(z)).

Shapes: feats (B, M, C, d, h, w); nodes (B, M (1 + n^3), H); kernels (B, S, C, 1, k, k, k).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

KERNEL = 3
DILATIONS = (1, 2)
EPS = 1e-6


class HyDA(nn.Module):
    def __init__(
        self, channels: int, modalities: int, *, hidden: int = 32, edges: int = 4, patches: int = 2
    ) -> None:
        super().__init__()
        self.channels, self.modalities, self.hidden, self.patches = channels, modalities, hidden, patches
        per = 1 + patches**3  # nodes per modality: global + patches
        self.node_in = nn.Linear(channels, hidden)
        self.modality_embed = nn.Parameter(0.02 * torch.randn(modalities, hidden))
        self.position_embed = nn.Parameter(0.02 * torch.randn(per, hidden))
        self.prototypes = nn.Parameter(torch.randn(edges, hidden) / math.sqrt(hidden))
        self.theta = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(2)])
        self.edge_logit = nn.Parameter(torch.zeros(edges + modalities + per))
        n_kernel = len(DILATIONS) * channels * KERNEL**3
        self.kernel_gen = nn.Linear(hidden, n_kernel)
        self.gate_gen = nn.Linear(hidden, channels)
        # small, not zero: the adapter starts near identity but every part gets gradients
        nn.init.normal_(self.kernel_gen.weight, std=1e-3)
        nn.init.zeros_(self.kernel_gen.bias)
        fixed = torch.zeros(modalities * per, modalities + per)
        for m in range(modalities):
            for q in range(per):
                fixed[m * per + q, m] = 1.0  # modality hyperedge
                fixed[m * per + q, modalities + q] = 1.0  # position hyperedge
        self.register_buffer("fixed_incidence", fixed, persistent=False)

    def nodes(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, M, C, d, h, w) -> (B, N, H) node features."""
        b, m, c = feats.shape[:3]
        glob = feats.mean(dim=(3, 4, 5))[:, :, None]  # (B, M, 1, C)
        p = self.patches
        patch = F.adaptive_avg_pool3d(feats.flatten(0, 1), p).reshape(b, m, c, p**3).transpose(2, 3)
        x = self.node_in(torch.cat([glob, patch], dim=2))  # (B, M, 1 + p^3, H)
        x = x + self.modality_embed[None, :, None] + self.position_embed[None, None]
        out: torch.Tensor = x.reshape(b, -1, self.hidden)
        return out

    def incidence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, E_total) soft incidence: learned memberships, then the fixed edges."""
        learned = torch.softmax(x @ self.prototypes.t() / math.sqrt(self.hidden), dim=-1)
        fixed: torch.Tensor = self.fixed_incidence  # type: ignore[assignment]
        return torch.cat([learned, fixed.expand(x.shape[0], -1, -1)], dim=-1)

    def hconv(self, x: torch.Tensor, inc: torch.Tensor, theta: nn.Module) -> torch.Tensor:
        w = F.softplus(self.edge_logit)  # (E,) positive edge weights
        dv = (inc * w).sum(-1).clamp_min(EPS).rsqrt()[..., None]  # (B, N, 1)
        de = inc.sum(1).clamp_min(EPS)[..., None]  # (B, E, 1)
        edges = torch.einsum("bne,bnh->beh", inc, x * dv) / de * w[None, :, None]
        back = torch.einsum("bne,beh->bnh", inc, edges) * dv
        out: torch.Tensor = x + F.gelu(theta(back))
        return out

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, H) patient embedding from the hypergraph over modalities and patches."""
        x = self.nodes(feats)
        inc = self.incidence(x)
        for theta in self.theta:
            x = self.hconv(x, inc, theta)
        return x.mean(dim=1)

    def kernels(self, z: torch.Tensor) -> torch.Tensor:
        """(B, H) -> (B, S, C, 1, k, k, k) patient-specific depthwise kernels."""
        k = KERNEL
        out: torch.Tensor = self.kernel_gen(z).reshape(z.shape[0], len(DILATIONS), self.channels, 1, k, k, k)
        return out

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adapted feature maps (B, M, C, d, h, w), patient embedding (B, H))."""
        b, m, c = feats.shape[:3]
        z = self.embed(feats)
        kernels = self.kernels(z)
        gate = torch.sigmoid(self.gate_gen(z))[:, None, :, None, None, None]  # (B, 1, C, 1, 1, 1)
        flat = feats.reshape(1, b * m * c, *feats.shape[3:])
        delta = torch.zeros_like(feats)
        for s, dilation in enumerate(DILATIONS):
            # one group per (patient, modality, channel): each patient's own kernel
            weight = kernels[:, s][:, None].expand(b, m, c, 1, KERNEL, KERNEL, KERNEL)
            out = F.conv3d(
                flat,
                weight.reshape(b * m * c, 1, KERNEL, KERNEL, KERNEL),
                padding=dilation * (KERNEL // 2),
                dilation=dilation,
                groups=b * m * c,
            )
            delta = delta + out.reshape(feats.shape)
        return feats + gate * delta, z
