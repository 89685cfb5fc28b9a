#!/usr/bin/python3
"""ddpm <-> PyTorch model folders, both ways.

    /usr/bin/python3 tests/models/torch_roundtrip.py <models_test_torch_interop> <work dir> [<golden dir>]

0. torch_unet.py (this folder's plain-PyTorch UNet2DModel) against diffusers:
   every `unet` case of the golden data ($DDPM_GOLDEN_DIR, else <golden dir>,
   else tests/data/golden) loads strictly and gives diffusers' float32 output
   within the case's tolerance, so the PyTorch side below is itself checked.
1. ddpm -> torch: the C++ test "torch interop: export" saves small U-Nets
   (config.json + diffusion_pytorch_model.safetensors) with an input and
   ddpm's output; they are loaded here into torch_unet.py's UNet2DModel
   (strict state_dict) and the outputs compared.
2. torch -> ddpm: torch_unet models with PyTorch's own initialisation are
   saved here in diffusers' folder format with their input and output; the
   C++ test "torch interop: import" loads them and compares.

Needs torch (Debian's python3-torch); exits 77 (skipped) without it. No
`safetensors` package is needed: the format is read and written here.
"""
import json
import os
import shutil
import struct
import subprocess
import sys

try:
    import torch
except ImportError:
    print("torch is not importable: skipped")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_unet import UNet2DModel  # noqa: E402

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "F16": torch.float16}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = bytearray(data[base + b:base + e])
        t = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]) if e > b else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run_cpp(exe, case, root):
    env = dict(os.environ, DDPM_TORCH_ROUNDTRIP_DIR=root)
    r = subprocess.run([exe, case], env=env, capture_output=True, text=True)
    print(r.stdout[-4000:], r.stderr[-2000:])
    if r.returncode != 0:
        raise SystemExit(f"C++ test '{case}' failed ({r.returncode})")


def forward(model, io):
    with torch.no_grad():
        return model(io["sample"], io["timestep"], io.get("class_labels"))


def golden_dir():
    env = os.environ.get("DDPM_GOLDEN_DIR")
    if env:
        return env
    return sys.argv[3] if len(sys.argv) > 3 else os.path.join(HERE, "..", "data", "golden")


def torch_unet_vs_diffusers():
    gdir = golden_dir()
    with open(os.path.join(gdir, "manifest.json")) as f:
        kinds = json.load(f)["kinds"]
    if "unet" not in kinds:
        print(f"torch_unet vs diffusers: {gdir} has no unet cases: nothing to check")
        return
    index_path = os.path.join(gdir, kinds["unet"])
    with open(index_path) as f:
        cases = json.load(f)["cases"]
    checked = 0
    for case in cases:
        d = os.path.join(gdir, case["dir"])
        if not os.path.isdir(d):
            d = os.path.join(os.path.dirname(index_path), os.path.basename(case["dir"]))
        with open(os.path.join(d, "case.json")) as f:
            info = json.load(f)
        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
        try:
            model = UNet2DModel(config).eval()
        except ValueError as e:
            print(f"torch_unet vs diffusers {case['name']}: not covered by torch_unet.py ({e})")
            continue
        model.load_state_dict(read_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors")), strict=True)
        io = read_safetensors(os.path.join(d, "io.safetensors"))
        out = forward(model, {k: (v.float() if v.is_floating_point() else v) for k, v in io.items()})
        err = (out.double() - io["output"].double()).abs().max().item()
        atol = info["tolerance"]["output"]["atol"]
        print(f"torch_unet vs diffusers {case['name']}: max |torch_unet - diffusers| = {err:.3g} (allowed {atol:.3g})")
        if not err <= atol:
            raise SystemExit(f"torch_unet.py differs from diffusers on golden case {case['name']}")
        checked += 1
    if checked == 0:
        raise SystemExit("torch_unet vs diffusers: no golden unet case could be checked")


def ddpm_to_torch(exe, root):
    run_cpp(exe, "torch interop: export", root)
    worst = 0.0
    for name in sorted(os.listdir(os.path.join(root, "cpp"))):
        d = os.path.join(root, "cpp", name)
        with open(os.path.join(d, "config.json")) as f:
            config = json.load(f)
        model = UNet2DModel(config).eval()
        state = read_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"))
        model.load_state_dict(state, strict=True)  # names and shapes must match exactly
        io = read_safetensors(os.path.join(d, "io.safetensors"))
        out = forward(model, io)
        ref = io["output"]
        err = (out - ref).abs().max().item()
        scale = max(ref.abs().max().item(), 1.0)
        print(f"ddpm -> torch {name}: max |torch - ddpm| = {err:.3g} (max |ddpm| = {ref.abs().max().item():.3g})")
        worst = max(worst, err / scale)
    if worst > 1e-4:
        raise SystemExit(f"ddpm -> torch: outputs differ (worst relative {worst:.3g})")


def torch_to_ddpm(exe, root):
    torch.manual_seed(0)
    configs = [
        dict(in_channels=3, out_channels=3, block_out_channels=[8, 16], layers_per_block=2, norm_num_groups=4,
             down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"],
             attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, downsample_padding=0, norm_eps=1e-6),
        dict(in_channels=2, out_channels=1, block_out_channels=[8, 8, 16], layers_per_block=1, norm_num_groups=2,
             down_block_types=["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
             up_block_types=["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"], attention_head_dim=4,
             resnet_time_scale_shift="scale_shift", num_class_embeds=3, center_input_sample=True,
             mid_block_scale_factor=1.25),
    ]
    for k, cfg in enumerate(configs):
        full = dict(_class_name="UNet2DModel", sample_size=8, down_block_types=cfg["down_block_types"], **{
            key: value for key, value in cfg.items() if key != "down_block_types"})
        model = UNet2DModel(full).eval()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:  # make the GroupNorm affine parameters non-trivial
                    p.add_(0.2 * torch.randn_like(p))
        d = os.path.join(root, "torch", str(k))
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(full, f, indent=2)
        write_safetensors(os.path.join(d, "diffusion_pytorch_model.safetensors"), model.state_dict())
        io = {"sample": torch.randn(2, cfg["in_channels"], 8, 8), "timestep": torch.tensor([3, 850], dtype=torch.int64)}
        if cfg.get("num_class_embeds"):
            io["class_labels"] = torch.tensor([2, 0], dtype=torch.int64)
        io["output"] = forward(model, io)
        write_safetensors(os.path.join(d, "io.safetensors"), io)
    run_cpp(exe, "torch interop: import", root)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    exe = os.path.abspath(sys.argv[1])
    root = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "torch_roundtrip")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    torch.set_num_threads(1)
    torch_unet_vs_diffusers()
    ddpm_to_torch(exe, root)
    torch_to_ddpm(exe, root)
    print("torch roundtrip: OK")


if __name__ == "__main__":
    main()
