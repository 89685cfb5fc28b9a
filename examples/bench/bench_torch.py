#!/usr/bin/python3
"""PyTorch's side of the speed comparison: times tests/models/torch_unet.py's
UNet2DModel (diffusers' layout, plain PyTorch) on the CPU with the cases and
definitions of ddpm_bench, so that examples/bench/compare.py can run both on
the same config and machine.

    /usr/bin/python3 examples/bench/bench_torch.py examples/bench/configs/mnist.json --threads 2
        [--repeat 5] [--batch 32] [--sample-batch 16] [--ddim-steps 20]

The last line printed is one JSON object:
  forward_ms_b1        one forward pass at batch 1, autograd off
  forward_ms_b{S}      one forward pass at batch S = --sample-batch, autograd off
  train_step_ms        zero_grad, forward, MSE loss against N(0, 1) targets,
                       backward, Adam step (lr 1e-4), at batch --batch
  ddim_ms              a whole --ddim-steps DDIM loop (eta 0, epsilon
                       prediction, linear betas 1e-4 .. 0.02 over 1000 steps,
                       timesteps 999, 999 - 1000 // K, ...) at batch S
  train_images_per_s   --batch / train_step_ms;  sample_images_per_s: S / ddim_ms
  params, batch, sample_batch, ddim_steps, threads, config, impl, openblas_core
Each time is the median of --repeat timed runs after one untimed warm-up;
ddim_ms uses max(1, repeat // 2) runs. Class-conditional models get label 0.

PyTorch is set up at its best: Debian's OpenBLAS 0.3.21 does not recognise
recent Xeons and falls back to a generic kernel, so unless OPENBLAS_CORETYPE
is set already, the kernel for the CPU's widest vector extension is chosen
before torch is imported (oneDNN does the convolutions either way).
Needs Debian's python3-torch only.

Autoencoder mode times a plain-PyTorch AutoencoderKL of diffusers' layout
(the classes below, built from a diffusers AutoencoderKL config.json, PyTorch's
default init after torch.manual_seed(0)), batch 1, N x N images, autograd off:

    /usr/bin/python3 examples/bench/bench_torch.py --autoencoder examples/bench/configs/sd_vae.json \
        --size 256 --threads 2 [--repeat 5] [--tiled [--tile-size P]] [--only encode|decode]

  encode_ms    image [1, in_channels, N, N] -> the posterior's moments
               (encoder, quant_conv, mean / logvar clamped to [-30, 20] / std)
  decode_ms    latent [1, latent_channels, N / f, N / f] -> image
               (post_quant_conv, decoder), f = 2^(levels - 1)
  --tiled      diffusers' tiled_encode / tiled_decode (overlap 0.25, tiles of
               --tile-size image pixels, default the config's sample_size)
  --only       time one phase (peak_rss_mb is then that phase's alone)
with params, encode_gflop / decode_gflop (2 x the multiply-adds of every
conv, linear and attention product, counted by hooks on the warm-up call),
gflops_encode / gflops_decode, peak_rss_mb (resource.getrusage), threads,
size, tiled, tile_size: the keys of ddpm_bench --autoencoder.
"""
import argparse
import json
import os
import statistics
import sys
import time


def openblas_core_for_this_cpu():
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return None
    for flag, core in ((" avx512f", "SkylakeX"), (" avx2", "Haswell")):
        if flag in flags:
            return core
    return None


if "OPENBLAS_CORETYPE" not in os.environ:
    core = openblas_core_for_this_cpu()
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core

import torch  # noqa: E402  (after OPENBLAS_CORETYPE)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "models"))
from torch_unet import UNet2DModel  # noqa: E402
import resource  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


# ---- AutoencoderKL in plain PyTorch (diffusers' models/autoencoders/vae.py layout) ----

FLOPS = {"on": False, "total": 0.0}  # attention products, counted while FLOPS["on"]


def group_norm(channels, groups):
    return nn.GroupNorm(groups, channels, eps=1e-6)


class Resnet(nn.Module):
    """ResnetBlock2D without time embedding: GN-SiLU-conv, GN-SiLU-conv, 1x1 shortcut when the width changes."""

    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin, groups), nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2, self.conv2 = group_norm(cout, groups), nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class SelfAttention(nn.Module):
    """One head over all C channels, tokens = the H*W pixels, own GroupNorm, residual."""

    def __init__(self, channels, groups):
        super().__init__()
        self.group_norm = group_norm(channels, groups)
        self.to_q, self.to_k, self.to_v = (nn.Linear(channels, channels) for _ in range(3))
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x):
        n, c, h, w = x.shape
        t = self.group_norm(x).view(n, c, h * w).transpose(1, 2)
        q, k, v = self.to_q(t), self.to_k(t), self.to_v(t)
        scores = torch.baddbmm(torch.empty(n, h * w, h * w, dtype=q.dtype), q, k.transpose(1, 2),
                               beta=0, alpha=c ** -0.5)
        out = self.to_out(torch.bmm(scores.softmax(dim=-1), v))
        if FLOPS["on"]:
            FLOPS["total"] += 2 * 2 * n * (h * w) ** 2 * c
        return x + out.transpose(1, 2).reshape(n, c, h, w)


class MidBlock(nn.Module):
    def __init__(self, channels, groups, attention):
        super().__init__()
        self.attention = SelfAttention(channels, groups) if attention else None
        self.resnets = nn.ModuleList([Resnet(channels, channels, groups), Resnet(channels, channels, groups)])

    def forward(self, x):
        x = self.resnets[0](x)
        if self.attention is not None:
            x = self.attention(x)
        return self.resnets[1](x)


class CoderBlock(nn.Module):
    """DownEncoderBlock2D (resample "down": resnets, then Downsample2D: pad right/bottom by one, 3x3 stride-2
    conv) or UpDecoderBlock2D (resample "up": resnets, then Upsample2D: nearest x2, 3x3 conv); None: no resampler."""

    def __init__(self, cin, cout, layers, groups, resample):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(cin if i == 0 else cout, cout, groups) for i in range(layers)])
        self.resample = resample
        self.conv = None if resample is None else \
            nn.Conv2d(cout, cout, 3, stride=2) if resample == "down" else nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.resample == "down":
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        if self.resample == "up":
            return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class Encoder(nn.Module):
    def __init__(self, c, out_channels):
        super().__init__()
        ch, g, n = c["block_out_channels"], c["norm_num_groups"], c["layers_per_block"]
        self.conv_in = nn.Conv2d(c["in_channels"], ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            [CoderBlock(ch[max(i - 1, 0)], ch[i], n, g, "down" if i + 1 < len(ch) else None) for i in range(len(ch))])
        self.mid_block = MidBlock(ch[-1], g, c["mid_block_add_attention"])
        self.conv_norm_out = group_norm(ch[-1], g)
        self.conv_out = nn.Conv2d(ch[-1], out_channels, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        ch, g, n = c["block_out_channels"][::-1], c["norm_num_groups"], c["layers_per_block"]
        self.conv_in = nn.Conv2d(c["latent_channels"], ch[0], 3, padding=1)
        self.mid_block = MidBlock(ch[0], g, c["mid_block_add_attention"])
        self.up_blocks = nn.ModuleList(
            [CoderBlock(ch[max(i - 1, 0)], ch[i], n + 1, g, "up" if i + 1 < len(ch) else None) for i in range(len(ch))])
        self.conv_norm_out = group_norm(ch[-1], g)
        self.conv_out = nn.Conv2d(ch[-1], c["out_channels"], 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


AUTOENCODER_DEFAULTS = {"in_channels": 3, "out_channels": 3, "block_out_channels": [64], "layers_per_block": 1,
                        "act_fn": "silu", "latent_channels": 4, "norm_num_groups": 32, "sample_size": 32,
                        "mid_block_add_attention": True, "use_quant_conv": True, "use_post_quant_conv": True}


class AutoencoderKL(nn.Module):
    def __init__(self, config):
        super().__init__()
        c = dict(AUTOENCODER_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")})
        if c["act_fn"] != "silu" or any(t != "DownEncoderBlock2D" for t in c.get("down_block_types", [])) or \
                any(t != "UpDecoderBlock2D" for t in c.get("up_block_types", [])):
            sys.exit("bench_torch.py: only silu DownEncoderBlock2D / UpDecoderBlock2D autoencoders are timed")
        self.config = c
        self.factor = 2 ** (len(c["block_out_channels"]) - 1)
        latent = c["latent_channels"]
        self.encoder, self.decoder = Encoder(c, 2 * latent), Decoder(c)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1) if c["use_quant_conv"] else None
        self.post_quant_conv = nn.Conv2d(latent, latent, 1) if c["use_post_quant_conv"] else None

    def moments(self, x):
        h = self.encoder(x)
        return self.quant_conv(h) if self.quant_conv is not None else h

    def encode(self, x, tile=None):
        m = self.moments(x) if tile is None else tiled(self.moments, x, tile, 1, self.factor)
        mean, logvar = m.chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        return mean, logvar, torch.exp(0.5 * logvar)

    def decode_one(self, z):
        return self.decoder(self.post_quant_conv(z) if self.post_quant_conv is not None else z)

    def decode(self, z, tile=None):
        return self.decode_one(z) if tile is None else tiled(self.decode_one, z, tile // self.factor, self.factor, 1)


def tiled(fn, x, tile, up, down, overlap=0.25):
    """diffusers' tiled_decode (up = f) / tiled_encode (down = f): tiles of `tile` input pixels every
    int(tile (1 - overlap)); the results blended over int(out_tile overlap) pixels above and left,
    cropped to out_tile - blend, and concatenated."""
    stride = int(tile * (1 - overlap))
    out_tile = tile * up // down
    blend, limit = int(out_tile * overlap), out_tile - int(out_tile * overlap)
    rows = []
    for i in range(0, x.shape[2], stride):
        rows.append([fn(x[:, :, i:i + tile, j:j + tile]) for j in range(0, x.shape[3], stride)])
    result = []
    for i, row in enumerate(rows):
        out_row = []
        for j, t in enumerate(row):
            if i > 0:
                a = rows[i - 1][j]
                e = min(a.shape[2], t.shape[2], blend)
                for y in range(e):
                    t[:, :, y, :] = a[:, :, -e + y, :] * (1 - y / e) + t[:, :, y, :] * (y / e)
            if j > 0:
                a = row[j - 1]
                e = min(a.shape[3], t.shape[3], blend)
                for x_ in range(e):
                    t[:, :, :, x_] = a[:, :, :, -e + x_] * (1 - x_ / e) + t[:, :, :, x_] * (x_ / e)
            out_row.append(t[:, :, :limit, :limit])
        result.append(torch.cat(out_row, dim=3))
    return torch.cat(result, dim=2)


def count_flops(model, fn):
    """2 x the multiply-adds of every Conv2d, Linear and attention product in one call of fn()."""
    total = [0.0]

    def conv_hook(m, inp, out):
        total[0] += 2.0 * out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        total[0] += 2.0 * out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    FLOPS["on"], FLOPS["total"] = True, 0.0
    with torch.no_grad():
        fn()
    FLOPS["on"] = False
    for h in hooks:
        h.remove()
    return total[0] + FLOPS["total"]


def read_config(path, cls, threads):
    """The diffusers config at `path` (its _class_name, when present, must be cls); sets the threads and seed 0."""
    with open(path) as f:
        config = json.load(f)
    if config.get("_class_name", cls) != cls:
        sys.exit(f"bench_torch.py: {path}: expected a {cls} config, not {config['_class_name']}")
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return config


def autoencoder_main(args):
    model = AutoencoderKL(read_config(args.autoencoder, "AutoencoderKL", args.threads)).eval()
    c, f, n = model.config, model.factor, args.size
    if n is None or n <= 0 or n % f:
        sys.exit(f"bench_torch.py: --size: expected a positive multiple of {f}, got {n}")
    tile = None
    if args.tiled:
        sample = c["sample_size"]
        tile = args.tile_size or (sample[0] if isinstance(sample, (list, tuple)) else sample)
    x = torch.randn(1, c["in_channels"], n, n)
    z = torch.randn(1, c["latent_channels"], n // f, n // f)
    phases = args.only.split(",") if args.only else ["encode", "decode"]

    def timed(fn):
        """(flops, median ms): the flops are counted on the warm-up call (batch 1, tiled when timed so)."""
        def run():
            with torch.no_grad():
                fn()
        flops = count_flops(model, run)
        return flops, median_ms(run, args.repeat, warm_up=False)

    enc_flops, enc = timed(lambda: model.encode(x, tile)) if "encode" in phases else (None, None)
    dec_flops, dec = timed(lambda: model.decode(z, tile)) if "decode" in phases else (None, None)
    rate = lambda fl, ms: fl / 1e9 / ms * 1e3 if ms else None
    gflop = lambda fl: fl / 1e9 if fl is not None else None
    result = {
        "impl": "pytorch " + torch.__version__,
        "config": os.path.basename(args.autoencoder),
        "threads": args.threads,
        "openblas_core": os.environ.get("OPENBLAS_CORETYPE", "auto"),
        "size": n,
        "tiled": bool(args.tiled),
        "tile_size": tile,
        "params": sum(p.numel() for p in model.parameters()),
        "encode_ms": enc,
        "decode_ms": dec,
        "encode_gflop": gflop(enc_flops),
        "decode_gflop": gflop(dec_flops),
        "gflops_encode": rate(enc_flops, enc),
        "gflops_decode": rate(dec_flops, dec),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    print(json.dumps(result))


def median_ms(fn, runs, warm_up=True):
    """Median wall time of `runs` calls of fn() in ms, after one warm-up call (unless warm_up is False:
    the caller ran it)."""
    if warm_up:
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", help="a diffusers UNet2DModel config.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sample-batch", type=int, default=16)
    ap.add_argument("--ddim-steps", type=int, default=20)
    ap.add_argument("--autoencoder", help="a diffusers AutoencoderKL config.json: time encode and decode")
    ap.add_argument("--size", type=int, help="the image size (autoencoder mode)")
    ap.add_argument("--tiled", action="store_true", help="tiled encode / decode (autoencoder mode)")
    ap.add_argument("--tile-size", type=int, help="tile size in image pixels (default: the config's sample_size)")
    ap.add_argument("--only", choices=["encode", "decode"], help="time one phase (autoencoder mode)")
    args = ap.parse_args()
    if args.autoencoder:
        return autoencoder_main(args)
    if not args.config:
        ap.error("a UNet2DModel config.json, or --autoencoder CONFIG.json --size N, is needed")

    model = UNet2DModel(read_config(args.config, "UNet2DModel", args.threads))
    channels = model.config["in_channels"]
    size = model.config["sample_size"]
    if size is None:
        sys.exit(f"bench_torch.py: {args.config}: sample_size is needed (the image size to time)")
    if isinstance(size, (list, tuple)):
        height, width = size
    else:
        height = width = size

    def inputs(n):
        x = torch.randn(n, channels, height, width)
        t = torch.randint(0, 1000, (n,))
        labels = torch.zeros(n, dtype=torch.long) if model.needs_class_labels else None
        return x, t, labels

    def forward_at(n):
        x, t, labels = inputs(n)

        def run():
            with torch.no_grad():
                model(x, t, labels)
        return run

    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    xb, tb, lb = inputs(args.batch)
    target = torch.randn_like(xb)

    def train_step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(model(xb, tb, lb), target).backward()
        opt.step()

    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1.0 - betas, dim=0).float()
    stride = 1000 // args.ddim_steps
    timesteps = [999 - i * stride for i in range(args.ddim_steps)]

    def ddim():
        n = args.sample_batch
        x, _, labels = inputs(n)
        with torch.no_grad():
            for i, t in enumerate(timesteps):
                a_t = alpha_bar[t]
                a_prev = alpha_bar[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.tensor(1.0)
                eps = model(x, torch.full((n,), t), labels)
                x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
                x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    model.train()  # dropout is not modelled, so train and eval compute the same
    sb = args.sample_batch
    result = {
        "impl": "pytorch " + torch.__version__,
        "config": os.path.basename(args.config),
        "threads": args.threads,
        "openblas_core": os.environ.get("OPENBLAS_CORETYPE", "auto"),
        "params": sum(p.numel() for p in model.parameters()),
        "forward_ms_b1": median_ms(forward_at(1), args.repeat),
        f"forward_ms_b{sb}": median_ms(forward_at(sb), args.repeat),
        "train_step_ms": median_ms(train_step, args.repeat),
        "ddim_ms": median_ms(ddim, max(1, args.repeat // 2)),
        "batch": args.batch,
        "sample_batch": sb,
        "ddim_steps": args.ddim_steps,
    }
    result["train_images_per_s"] = args.batch / result["train_step_ms"] * 1e3
    result["sample_images_per_s"] = sb / result["ddim_ms"] * 1e3
    print(json.dumps(result))


if __name__ == "__main__":
    main()
