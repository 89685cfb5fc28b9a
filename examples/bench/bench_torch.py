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


def median_ms(fn, runs):
    """Median wall time of `runs` calls of fn() in ms, after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="a diffusers UNet2DModel config.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sample-batch", type=int, default=16)
    ap.add_argument("--ddim-steps", type=int, default=20)
    args = ap.parse_args()

    with open(args.config) as f:
        config = json.load(f)
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        sys.exit(f"bench_torch.py: {args.config}: only UNet2DModel configs are timed, not {config['_class_name']}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet2DModel(config)
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
