"""diffusers' UNet2DModel written again in plain PyTorch: the same config.json
keys, the same module tree and hence the same state_dict names and shapes, the
same forward pass. It is the PyTorch side of tests/models/torch_roundtrip.py
(which also checks it against the golden outputs diffusers made) and of the
speed comparison (examples/bench/bench_torch.py).

    model = UNet2DModel(json.load(open("config.json")))
    model.load_state_dict(weights)           # diffusers' names, strict
    eps = model(sample, timesteps, class_labels)

Covered: DownBlock2D, AttnDownBlock2D, UpBlock2D, AttnUpBlock2D, the mid block
UNetMidBlock2D (or none), positional time embedding, a class embedding table
(num_class_embeds), resnet_time_scale_shift "default" and "scale_shift",
conv down/upsampling, act_fn "silu". Anything else raises ValueError. Dropout
is left out (inference and the benchmark use none). Needs only torch (Debian's
python3-torch).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

# UNet2DModel.__init__'s defaults (diffusers 0.40).
DEFAULTS = {
    "in_channels": 3,
    "out_channels": 3,
    "center_input_sample": False,
    "time_embedding_type": "positional",
    "time_embedding_dim": None,
    "freq_shift": 0,
    "flip_sin_to_cos": True,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2D",
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [224, 448, 672, 896],
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "downsample_padding": 1,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "dropout": 0.0,
    "act_fn": "silu",
    "attention_head_dim": 8,
    "norm_num_groups": 32,
    "attn_norm_num_groups": None,
    "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "class_embed_type": None,
    "num_class_embeds": None,
    "num_train_timesteps": None,
    "sample_size": None,
}


def sinusoidal_embedding(timesteps, dim, flip_sin_to_cos, freq_shift, max_period=10000.0):
    """diffusers' get_timestep_embedding: frequencies exp(-ln(max_period) k / (dim/2 - freq_shift)),
    [sin | cos] (or [cos | sin] when flipped), zero-padded to an odd dim; computed in float32."""
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(k * (-math.log(max_period) / (half - freq_shift)))
    angles = timesteps.float()[:, None] * freqs[None, :]
    parts = [torch.cos(angles), torch.sin(angles)] if flip_sin_to_cos else [torch.sin(angles), torch.cos(angles)]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv, time embedding added (default) or applied as
    norm2(h) (1 + scale) + shift (scale_shift), GroupNorm-SiLU-conv, 1x1 shortcut
    when the channel count changes; (x + h) / output_scale_factor."""

    def __init__(self, cin, cout, temb, groups, eps, time_scale_shift, output_scale_factor=1.0):
        super().__init__()
        self.scale_shift = time_scale_shift == "scale_shift"
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(temb, 2 * cout if self.scale_shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, kernel_size=1)
        else:
            self.conv_shortcut = None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        t = self.time_emb_proj(F.silu(temb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = torch.chunk(t, 2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + t)
        h = self.conv2(F.silu(h))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.output_scale_factor


class Attention(nn.Module):
    """Self-attention over the h*w positions (diffusers' Attention as built from
    the old AttentionBlock): optional GroupNorm, to_q/to_k/to_v, softmax(q k^T /
    sqrt(head_dim)) v per head, to_out.0, residual, / rescale_output_factor."""

    def __init__(self, channels, head_dim, groups, eps, rescale_output_factor=1.0):
        super().__init__()
        self.heads = channels // head_dim
        self.head_dim = head_dim
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps) if groups is not None else None
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])  # to_out.1 is a parameter-free dropout

    def forward(self, x):
        b, c, hgt, wid = x.shape
        h = x if self.group_norm is None else self.group_norm(x)
        tokens = h.flatten(2).transpose(1, 2)  # [b, hw, c]

        def heads(z):  # [b, hw, c] -> [b, heads, hw, head_dim]
            return z.unflatten(2, (self.heads, self.head_dim)).transpose(1, 2)

        q, k, v = heads(self.to_q(tokens)), heads(self.to_k(tokens)), heads(self.to_v(tokens))
        weights = torch.softmax(torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim), dim=-1)
        out = torch.matmul(weights, v).transpose(1, 2).flatten(2)  # [b, hw, c]
        out = self.to_out[0](out).transpose(1, 2).reshape(b, c, hgt, wid)
        return (out + x) / self.rescale_output_factor


class Downsample2D(nn.Module):
    """3x3 stride-2 conv; padding 0 means diffusers' asymmetric (0, 1, 0, 1) pad first."""

    def __init__(self, channels, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)) if self.padding == 0 else x)


class Upsample2D(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock2D(nn.Module):
    """layers resnets (each followed by an attention in AttnDownBlock2D), then an
    optional Downsample2D; returns the output and every intermediate state (the skips)."""

    def __init__(self, cin, cout, temb, layers, c, attention, downsample):
        super().__init__()
        # Registered attentions first, as diffusers does (the state_dict order).
        if attention:
            head_dim = c["attention_head_dim"] or cout
            self.attentions = nn.ModuleList(
                Attention(cout, head_dim, c["norm_num_groups"], c["norm_eps"]) for _ in range(layers))
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(
            ResnetBlock2D(cin if i == 0 else cout, cout, temb, c["norm_num_groups"], c["norm_eps"],
                          c["resnet_time_scale_shift"]) for i in range(layers))
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample2D(cout, c["downsample_padding"])])
        else:
            self.downsamplers = None

    def forward(self, x, temb):
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class UpBlock2D(nn.Module):
    """layers resnets, each fed the running state concatenated with the latest
    skip (each followed by an attention in AttnUpBlock2D), then an optional Upsample2D."""

    def __init__(self, cin, cprev, cout, temb, layers, c, attention, upsample):
        super().__init__()
        resnets = []
        for i in range(layers):
            skip = cin if i == layers - 1 else cout
            resnets.append(ResnetBlock2D((cprev if i == 0 else cout) + skip, cout, temb, c["norm_num_groups"],
                                         c["norm_eps"], c["resnet_time_scale_shift"]))
        if attention:
            head_dim = c["attention_head_dim"] or cout
            self.attentions = nn.ModuleList(
                Attention(cout, head_dim, c["norm_num_groups"], c["norm_eps"]) for _ in range(layers))
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(resnets)
        self.upsamplers = nn.ModuleList([Upsample2D(cout)]) if upsample else None

    def forward(self, x, skips, temb):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNetMidBlock2D(nn.Module):
    """resnet, attention (unless add_attention is false), resnet; all scaled by
    mid_block_scale_factor. The attention's GroupNorm is attn_norm_num_groups,
    else norm_num_groups for "default" and none for "scale_shift"."""

    def __init__(self, ch, temb, c):
        super().__init__()
        scale = c["mid_block_scale_factor"]
        groups, eps, shift = c["norm_num_groups"], c["norm_eps"], c["resnet_time_scale_shift"]
        if c["add_attention"]:
            attn_groups = c["attn_norm_num_groups"]
            if attn_groups is None:
                attn_groups = groups if shift == "default" else None
            self.attentions = nn.ModuleList([Attention(ch, c["attention_head_dim"] or ch, attn_groups, eps, scale)])
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(ResnetBlock2D(ch, ch, temb, groups, eps, shift, scale) for _ in range(2))

    def forward(self, x, temb):
        x = self.resnets[0](x, temb)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x, temb)


class UNet2DModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = dict(DEFAULTS)
        c.update({k: v for k, v in config.items() if not k.startswith("_")})
        unknown = sorted(set(c) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"UNet2DModel: unknown config keys {unknown}")
        supported = {
            "time_embedding_type": ("positional",), "act_fn": ("silu",), "downsample_type": ("conv",),
            "upsample_type": ("conv",), "class_embed_type": (None,), "mid_block_type": ("UNetMidBlock2D", None),
            "resnet_time_scale_shift": ("default", "scale_shift"),
        }
        for key, values in supported.items():
            if c[key] not in values:
                raise ValueError(f"UNet2DModel: {key} {c[key]!r} is not supported (only {values})")
        chs = list(c["block_out_channels"])
        if not (len(chs) == len(c["down_block_types"]) == len(c["up_block_types"])):
            raise ValueError("UNet2DModel: block_out_channels, down_block_types and up_block_types differ in length")
        self.config = c
        temb = c["time_embedding_dim"] or 4 * chs[0]

        self.conv_in = nn.Conv2d(c["in_channels"], chs[0], kernel_size=3, padding=1)
        self.time_embedding = TimestepEmbedding(chs[0], temb)
        self.class_embedding = nn.Embedding(c["num_class_embeds"], temb) if c["num_class_embeds"] else None

        down_kinds = {"DownBlock2D": False, "AttnDownBlock2D": True}
        # diffusers registers down_blocks, up_blocks, then mid_block (the state_dict order).
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for i, kind in enumerate(c["down_block_types"]):
            if kind not in down_kinds:
                raise ValueError(f"UNet2DModel: down block {kind!r} is not supported")
            cin = chs[max(i - 1, 0)]
            self.down_blocks.append(DownBlock2D(cin, chs[i], temb, c["layers_per_block"], c, down_kinds[kind],
                                                downsample=i + 1 < len(chs)))

        self.mid_block = UNetMidBlock2D(chs[-1], temb, c) if c["mid_block_type"] else None

        up_kinds = {"UpBlock2D": False, "AttnUpBlock2D": True}
        rev = chs[::-1]
        for i, kind in enumerate(c["up_block_types"]):
            if kind not in up_kinds:
                raise ValueError(f"UNet2DModel: up block {kind!r} is not supported")
            cprev, cout, cin = rev[max(i - 1, 0)], rev[i], rev[min(i + 1, len(rev) - 1)]
            self.up_blocks.append(UpBlock2D(cin, cprev, cout, temb, c["layers_per_block"] + 1, c, up_kinds[kind],
                                            upsample=i + 1 < len(rev)))

        self.conv_norm_out = nn.GroupNorm(c["norm_num_groups"], chs[0], eps=c["norm_eps"])
        self.conv_out = nn.Conv2d(chs[0], c["out_channels"], kernel_size=3, padding=1)

    @property
    def needs_class_labels(self):
        return self.class_embedding is not None

    def forward(self, sample, timesteps, class_labels=None):
        c = self.config
        if c["center_input_sample"]:
            sample = 2 * sample - 1.0
        t = torch.as_tensor(timesteps, device=sample.device).reshape(-1).expand(sample.shape[0])
        emb = sinusoidal_embedding(t, c["block_out_channels"][0], c["flip_sin_to_cos"], c["freq_shift"])
        emb = self.time_embedding(emb.to(sample.dtype))
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("UNet2DModel: this model has a class embedding and needs class_labels")
            emb = emb + self.class_embedding(class_labels).to(sample.dtype)
        elif class_labels is not None:
            raise ValueError("UNet2DModel: class_labels given to a model without a class embedding")

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(x, emb)
            skips += states
        if self.mid_block is not None:
            x = self.mid_block(x, emb)
        for block in self.up_blocks:
            x = block(x, skips, emb)
        return self.conv_out(F.silu(self.conv_norm_out(x)))
