"""A SAM-style promptable 3D segmentation network: a ViT image encoder, a point/box prompt
encoder with random-Fourier positional encodings, and a two-way-transformer mask decoder.

Module and parameter names follow SAM-Med3D's state-dict layout (`image_encoder.*`,
`prompt_encoder.*`, `mask_decoder.*`), so a SAM-Med3D checkpoint loads into the
`sam_med3d` preset (see checkpoints.py); the smaller presets are the same network, narrower
and shallower, for CPU demos. Written from the architecture as published (SAM; SAM-Med3D);
the numerics that a checkpoint depends on are kept where they are unusual:
- the random Fourier features are [sin, cos, sin] of one projection (3 x E/3 channels);
- the dense positional grid's first channel varies along axis 1, its second along axis 0,
  while point coordinates are (axis 0, axis 1, axis 2) voxel indices + 0.5;
- window attention pads windows with zeros and attends to the padding;
- relative positions in the encoder are added with the unscaled query.

Shapes: images (B, C, S, S, S); points (B, N, 3) in voxel units of the model input;
point labels (B, N) with 1 positive, 0 negative, -1 padding; boxes (B, 6) as two corners;
mask logits (B, 1, S, S, S).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class Arch:
    """The architecture of a preset. `image_size` is the cube the model sees (voxels)."""

    image_size: int
    vit_patch: int
    embed_dim: int
    depth: int
    heads: int
    window: int  # 0: global attention in every block
    global_every: int  # with a window: blocks i with (i + 1) % global_every == 0 attend globally
    prompt_dim: int
    mask_in_chans: int
    decoder_depth: int
    decoder_heads: int
    decoder_mlp: int
    iou_hidden: int
    multimask: int = 3

    @property
    def grid(self) -> int:
        return self.image_size // self.vit_patch


PRESETS: dict[str, Arch] = {
    "tiny": Arch(32, 8, 48, 2, 4, 0, 1, 48, 8, 2, 4, 192, 64),  # 4^3 tokens: CPU demos and tests
    "small": Arch(64, 8, 96, 4, 4, 4, 2, 96, 16, 2, 4, 384, 128),
    "base": Arch(96, 8, 192, 8, 8, 6, 4, 192, 16, 2, 8, 1024, 256),
    # SAM-Med3D-turbo (build_sam3D_vit_b_ori): ViT-B, 128^3 input, 16^3 patches, 384-d prompts
    "sam_med3d": Arch(128, 16, 768, 12, 12, 14, 3, 384, 16, 2, 8, 2048, 256),
}


class LayerNorm3d(nn.Module):
    """LayerNorm over the channel axis of (B, C, X, Y, Z)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None, None] * x + self.bias[:, None, None, None]


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.lin2(self.act(self.lin1(x)))
        return out


# ---------------------------------------------------------------- image encoder


def _rel_table(size: int, table: Tensor) -> Tensor:
    """(size, size, head_dim): the learned embedding of every query-key offset on one axis."""
    wanted = 2 * size - 1
    if table.shape[0] != wanted:  # a checkpoint trained at another size: linear resize
        table = F.interpolate(table.T[None], size=wanted, mode="linear")[0].T
    coords = torch.arange(size, device=table.device)
    return table[coords[:, None] - coords[None, :] + size - 1]


class EncoderAttention(nn.Module):
    """Multi-head self-attention over a (B, X, Y, Z, E) grid with decomposed relative positions."""

    def __init__(self, dim: int, heads: int, size: int) -> None:
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_d = nn.Parameter(torch.zeros(2 * size - 1, head_dim))
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        b, d, h, w, _ = x.shape
        n = d * h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, hd)
        rq = q.reshape(b * self.heads, d, h, w, -1)
        rel_d = torch.einsum("bdhwc,dkc->bdhwk", rq, _rel_table(d, self.rel_pos_d))
        rel_h = torch.einsum("bdhwc,hkc->bdhwk", rq, _rel_table(h, self.rel_pos_h))
        rel_w = torch.einsum("bdhwc,wkc->bdhwk", rq, _rel_table(w, self.rel_pos_w))
        bias = (
            rel_d[:, :, :, :, :, None, None]
            + rel_h[:, :, :, :, None, :, None]
            + rel_w[:, :, :, :, None, None, :]
        ).reshape(b, self.heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        merged: Tensor = self.proj(out.transpose(1, 2).reshape(b, d, h, w, -1))
        return merged


def _windows(x: Tensor, size: int) -> tuple[Tensor, tuple[int, int, int]]:
    """(B, X, Y, Z, E) -> (B * windows, size, size, size, E), zero-padded to whole windows."""
    b, d, h, w, e = x.shape
    pd, ph, pw = (-d) % size, (-h) % size, (-w) % size
    x = F.pad(x, (0, 0, 0, pw, 0, ph, 0, pd))
    dp, hp, wp = d + pd, h + ph, w + pw
    x = x.view(b, dp // size, size, hp // size, size, wp // size, size, e)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, size, size, size, e), (dp, hp, wp)


def _unwindows(x: Tensor, size: int, padded: tuple[int, int, int], shape: tuple[int, int, int]) -> Tensor:
    dp, hp, wp = padded
    b = x.shape[0] // ((dp // size) * (hp // size) * (wp // size))
    x = x.view(b, dp // size, hp // size, wp // size, size, size, size, -1)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, -1)
    d, h, w = shape
    return x[:, :d, :h, :w].contiguous()


class Block3D(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, grid: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = EncoderAttention(dim, heads, window if window > 0 else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, dim * 4)
        self.window = window

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window > 0:
            shape = (x.shape[1], x.shape[2], x.shape[3])
            x, padded = _windows(x, self.window)
            x = _unwindows(self.attn(x), self.window, padded, shape)
        else:
            x = self.attn(x)
        x = shortcut + x
        out: Tensor = x + self.mlp(self.norm2(x))
        return out


class PatchEmbed3D(nn.Module):
    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.proj(x).permute(0, 2, 3, 4, 1)  # (B, X, Y, Z, E)
        return out


class ImageEncoder3D(nn.Module):
    def __init__(self, arch: Arch, in_chans: int) -> None:
        super().__init__()
        g = arch.grid
        self.img_size = arch.image_size
        self.patch_embed = PatchEmbed3D(in_chans, arch.embed_dim, arch.vit_patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, g, arch.embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(
                arch.embed_dim,
                arch.heads,
                0 if arch.window == 0 or (i + 1) % arch.global_every == 0 else arch.window,
                g,
            )
            for i in range(arch.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(arch.embed_dim, arch.prompt_dim, kernel_size=1, bias=False),
            LayerNorm3d(arch.prompt_dim),
            nn.Conv3d(arch.prompt_dim, arch.prompt_dim, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(arch.prompt_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        out: Tensor = self.neck(x.permute(0, 4, 1, 2, 3))  # (B, P, g, g, g)
        return out


# ---------------------------------------------------------------- prompt encoder


class RandomFourierPE(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(3, features))

    def encode(self, coords: Tensor) -> Tensor:
        """coords in [0, 1] (..., 3) -> (..., 3 * features)."""
        matrix = cast(Tensor, self.positional_encoding_gaussian_matrix)
        proj = 2 * math.pi * ((2 * coords - 1) @ matrix)
        return torch.cat([torch.sin(proj), torch.cos(proj), torch.sin(proj)], dim=-1)

    def dense(self, size: int) -> Tensor:
        """(3 * features, size, size, size): the encoding of every cell centre."""
        matrix = cast(Tensor, self.positional_encoding_gaussian_matrix)
        centres = (torch.arange(size, device=matrix.device, dtype=torch.float32) + 0.5) / size
        a0, a1, a2 = torch.meshgrid(centres, centres, centres, indexing="ij")
        return self.encode(torch.stack([a1, a0, a2], dim=-1)).permute(3, 0, 1, 2)

    def points(self, coords: Tensor, size: int) -> Tensor:
        return self.encode(coords.float() / size)


def _weight(module: nn.Module) -> Tensor:
    assert isinstance(module, nn.Embedding)
    return module.weight


class PromptEncoder3D(nn.Module):
    def __init__(self, arch: Arch, boxes: bool) -> None:
        super().__init__()
        dim = arch.prompt_dim
        self.image_size = arch.image_size
        self.grid = arch.grid
        self.pe_layer = RandomFourierPE(dim // 3)
        # 0 negative, 1 positive; with boxes, 2 and 3 mark the two corners (as SAM in 2D)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4 if boxes else 2))
        self.not_a_point_embed = nn.Embedding(1, dim)
        mc = arch.mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, mc // 4, kernel_size=2, stride=2),
            LayerNorm3d(mc // 4),
            nn.GELU(),
            nn.Conv3d(mc // 4, mc, kernel_size=2, stride=2),
            LayerNorm3d(mc),
            nn.GELU(),
            nn.Conv3d(mc, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def dense_pe(self) -> Tensor:
        return self.pe_layer.dense(self.grid)[None]

    def forward(self, points: Tensor, labels: Tensor, boxes: Tensor | None) -> tuple[Tensor, Tensor]:
        """Sparse (B, N', P) and dense (B, P, g, g, g) prompt embeddings."""
        b = points.shape[0]
        coords, lab = points + 0.5, labels
        if boxes is None:  # one padding point, as SAM does without a box
            coords = torch.cat([coords, coords.new_zeros(b, 1, 3)], dim=1)
            lab = torch.cat([lab, lab.new_full((b, 1), -1)], dim=1)
        emb = self.pe_layer.points(coords, self.image_size)
        pad = (lab == -1)[..., None]
        emb = torch.where(pad, self.not_a_point_embed.weight, emb)
        emb = emb + (lab == 0)[..., None] * _weight(self.point_embeddings[0])
        emb = emb + (lab == 1)[..., None] * _weight(self.point_embeddings[1])
        if boxes is not None:
            if len(self.point_embeddings) < 4:
                raise ValueError("this model was built without box prompts")
            corners = self.pe_layer.points(boxes.reshape(b, 2, 3) + 0.5, self.image_size)
            corners = corners + torch.stack(
                [_weight(self.point_embeddings[2])[0], _weight(self.point_embeddings[3])[0]]
            )
            emb = torch.cat([emb, corners], dim=1)
        g = self.grid
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(b, -1, g, g, g)
        return emb, dense


# ---------------------------------------------------------------- mask decoder


class TokenAttention(nn.Module):
    """Attention whose q/k/v projections may shrink the width (`downsample`)."""

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out = F.scaled_dot_product_attention(
            self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        )
        b, _, n, _ = out.shape
        merged: Tensor = self.out_proj(out.transpose(1, 2).reshape(b, n, -1))
        return merged


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = TokenAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, heads, 2)
        self.skip_first_pe = skip_first_pe

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, heads: int, mlp: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(dim, heads, mlp, i == 0) for i in range(depth))
        self.final_attn_token_to_image = TokenAttention(dim, heads, 2)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        keys = image.flatten(2).transpose(1, 2)  # (B, g^3, P)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        attn = self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries + attn), keys


class MLP(nn.Module):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, layers: int) -> None:
        super().__init__()
        dims = [dim_in] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, [*dims[1:], dim_out], strict=True))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder3D(nn.Module):
    def __init__(self, arch: Arch) -> None:
        super().__init__()
        dim = arch.prompt_dim
        self.transformer = TwoWayTransformer(arch.decoder_depth, dim, arch.decoder_heads, arch.decoder_mlp)
        self.num_mask_tokens = arch.multimask + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm3d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose3d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(dim, arch.iou_hidden, self.num_mask_tokens, 3)

    def forward(
        self, image: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Single-mask output (SAM's first mask token): logits (B, 1, 4g, 4g, 4g) and IoU (B, 1)."""
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)
        src = image + dense
        pos = image_pe.expand(b, -1, -1, -1, -1)
        _, c, x, y, z = src.shape
        hs, keys = self.transformer(src, pos, tokens)
        up = self.output_upscaling(keys.transpose(1, 2).reshape(b, c, x, y, z))
        hyper = self.output_hypernetworks_mlps[0](hs[:, 1])  # (B, P/8)
        _, c2, x2, y2, z2 = up.shape
        masks = (hyper[:, None] @ up.reshape(b, c2, -1)).reshape(b, 1, x2, y2, z2)
        iou = self.iou_prediction_head(hs[:, 0])[:, :1]
        return masks, iou


class PromptableSAM3D(nn.Module):
    """Image encoder + prompt encoder + mask decoder (SAM-Med3D's `Sam3D` layout)."""

    def __init__(self, arch: Arch, in_chans: int = 1, boxes: bool = False) -> None:
        super().__init__()
        self.arch = arch
        self.image_encoder = ImageEncoder3D(arch, in_chans)
        self.prompt_encoder = PromptEncoder3D(arch, boxes)
        self.mask_decoder = MaskDecoder3D(arch)

    def decode(
        self, embedding: Tensor, points: Tensor, labels: Tensor, boxes: Tensor | None = None
    ) -> Tensor:
        """Mask logits (B, 1, S, S, S) for image embeddings (B, P, g, g, g) and prompts."""
        sparse, dense = self.prompt_encoder(points, labels, boxes)
        low, _ = self.mask_decoder(embedding, self.prompt_encoder.dense_pe(), sparse, dense)
        size = self.arch.image_size
        if low.shape[-1] != size:
            low = F.interpolate(low, size=(size, size, size), mode="trilinear", align_corners=False)
        out: Tensor = low
        return out

    def forward(self, image: Tensor, points: Tensor, labels: Tensor, boxes: Tensor | None = None) -> Tensor:
        return self.decode(self.image_encoder(image), points, labels, boxes)


def build_model(size: str, in_chans: int, boxes: bool) -> PromptableSAM3D:
    try:
        arch = PRESETS[size]
    except KeyError:
        raise ValueError(f"model_size {size!r} is not one of {sorted(PRESETS)}") from None
    return PromptableSAM3D(arch, in_chans, boxes)
