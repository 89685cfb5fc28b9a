#!/usr/bin/env python3
"""Side-by-side benchmark: ddpm_bench (A) against examples/bench/bench_torch.py
(B, tests/models/torch_unet.py in PyTorch), alternated A B A B ... in one run
so that both see the same machine load, then the median over rounds of the
per-round speed-up (torch time / ours).

    examples/bench/compare.py [mnist | cifar10 | CONFIG.json] [--ours build/bin/ddpm_bench] \
        --threads 2 --rounds 5 [--repeat 5] [--ddim-steps 20] [--markdown out.md]

The config is a file or the name of one in examples/bench/configs/ (default
mnist); --ours defaults to build/bin/ddpm_bench (target ddpm_bench, built with
the examples). --repeat, --batch, --sample-batch and --ddim-steps go to both
programs unchanged (bench_torch.py's own options). bench_torch.py runs with
Debian's python3-torch (/usr/bin/python3). Each process's peak resident
memory is taken from the kernel (wait4), the same way for both. Prints a
markdown table and, last, one JSON object with every round's results.

Autoencoder mode (ddpm_bench --autoencoder / bench_torch.py --autoencoder):

    examples/bench/compare.py --autoencoder sd_vae --size 256 --threads 2 --rounds 3 [--repeat 3] \
        [--tiled [--tile-size P]]

Every round runs four processes, ours and PyTorch's for encode then for
decode (--only), so that each phase's peak memory is its own; the table
gives the medians of encode_ms, decode_ms, the per-round speed-ups, the
achieved GFLOP/s (of the work as timed: tiled passes redo the overlaps) and
each phase's peak RSS.
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_TORCH = os.path.join(HERE, "bench_torch.py")
DEFAULT_OURS = os.path.join(REPO, "build", "bin", "ddpm_bench")


def config_path(name):
    """A config file, or the name of one in examples/bench/configs/ (with or without .json)."""
    if os.path.isfile(name):
        return name
    for candidate in (os.path.join(HERE, "configs", name), os.path.join(HERE, "configs", name + ".json")):
        if os.path.isfile(candidate):
            return candidate
    names = sorted(f[:-5] for f in os.listdir(os.path.join(HERE, "configs")) if f.endswith(".json"))
    sys.exit(f"compare.py: no config '{name}' (a file, or one of {', '.join(names)})")


def run_rss(cmd):
    t0 = time.time()
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if p.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed ({p.returncode}):\n{err}")
    lines = [l for l in out.strip().splitlines() if l.strip()]
    res = json.loads(lines[-1])
    res["proc_peak_rss_mb"] = ru.ru_maxrss / 1024.0
    res["wall_s"] = wall
    return res


def autoencoder_main(args):
    args.autoencoder = config_path(args.autoencoder)
    shared = ["--threads", str(args.threads), "--size", str(args.size)]
    if args.repeat is not None:
        shared += ["--repeat", str(args.repeat)]
    if args.tiled:
        shared += ["--tiled"] + (["--tile-size", str(args.tile_size)] if args.tile_size else [])
    tmpdir = tempfile.mkdtemp(prefix="ddpm_compare_")
    ours_bin = os.path.join(tmpdir, "ddpm_bench")
    shutil.copy2(args.ours, ours_bin)
    phases = ("encode", "decode")
    rounds = []
    for r in range(args.rounds):
        rnd = {}
        for ph in phases:
            common = ["--autoencoder", args.autoencoder] + shared + ["--only", ph]
            rnd["ours_" + ph] = run_rss([ours_bin] + common)
            rnd["torch_" + ph] = run_rss([args.python, args.torch] + common)
            a, b = rnd["ours_" + ph][ph + "_ms"], rnd["torch_" + ph][ph + "_ms"]
            print(f"round {r + 1}/{args.rounds} {ph}: ours {a:.0f} ms, torch {b:.0f} ms, x{b / a:.2f}; peak RSS "
                  f"ours {rnd['ours_' + ph]['proc_peak_rss_mb']:.0f} MiB, torch "
                  f"{rnd['torch_' + ph]['proc_peak_rss_mb']:.0f} MiB", file=sys.stderr)
        rounds.append(rnd)
    shutil.rmtree(tmpdir, ignore_errors=True)
    med = statistics.median
    summary = {}
    for ph in phases:
        o, t, k = "ours_" + ph, "torch_" + ph, ph + "_ms"
        gflop = rounds[0][o][ph + "_gflop"]
        summary[ph] = {
            "ours_ms": med([x[o][k] for x in rounds]),
            "torch_ms": med([x[t][k] for x in rounds]),
            "speedup": med([x[t][k] / x[o][k] for x in rounds]),
            "gflop": gflop,
            "ours_gflops": med([gflop / x[o][k] * 1e3 for x in rounds]),
            "torch_gflops": med([gflop / x[t][k] * 1e3 for x in rounds]),
            "ours_peak_rss_mb": med([x[o]["proc_peak_rss_mb"] for x in rounds]),
            "torch_peak_rss_mb": med([x[t]["proc_peak_rss_mb"] for x in rounds]),
        }
    cfg = os.path.basename(args.autoencoder)
    mode = f"tiled ({rounds[0]['ours_decode']['tile_size']}-pixel tiles)" if args.tiled else "untiled"
    md = [f"`{cfg}` autoencoder, {args.size}x{args.size}, batch 1, {mode}, {args.threads} threads, {args.rounds} "
          f"alternating rounds, {args.machine} {datetime.date.today().isoformat()}",
          "",
          "| phase | GFLOP (as timed; tiles overlap) | ddpm (median ms) | PyTorch (median ms) | speed-up (median of per-round ratios) | "
          "ddpm GFLOP/s | PyTorch GFLOP/s | ddpm peak RSS (MiB) | PyTorch peak RSS (MiB) |",
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for ph in phases:
        s = summary[ph]
        md.append(f"| {ph} | {s['gflop']:.1f} | {s['ours_ms']:.0f} | {s['torch_ms']:.0f} | {s['speedup']:.2f}x | "
                  f"{s['ours_gflops']:.1f} | {s['torch_gflops']:.1f} | {s['ours_peak_rss_mb']:.0f} | "
                  f"{s['torch_peak_rss_mb']:.0f} |")
    text = "\n".join(md)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    print(json.dumps({"config": cfg, "size": args.size, "tiled": args.tiled, "threads": args.threads,
                      "rounds": rounds, "summary": summary}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", nargs="?", default="mnist", help="CONFIG.json, or a name in examples/bench/configs/")
    ap.add_argument("--ours", default=DEFAULT_OURS, help="the ddpm_bench binary (default: %(default)s)")
    ap.add_argument("--torch", default=DEFAULT_TORCH, help="bench_torch.py")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--sample-batch", type=int)
    ap.add_argument("--ddim-steps", type=int)
    ap.add_argument("--gemm-rate", help="the gemm_rate binary: also run it every round (C), so that every "
                    "figure can be quoted as a fraction of the GEMM rate measured under the same load")
    ap.add_argument("--markdown", help="also write the table here")
    ap.add_argument("--machine", default="")
    ap.add_argument("--autoencoder", help="an AutoencoderKL CONFIG.json, or a name in examples/bench/configs/: "
                    "compare encode and decode instead")
    ap.add_argument("--size", type=int, default=256, help="the image size (autoencoder mode)")
    ap.add_argument("--tiled", action="store_true", help="tiled encode / decode (autoencoder mode)")
    ap.add_argument("--tile-size", type=int, help="tile size in image pixels (autoencoder mode)")
    args = ap.parse_args()
    if not os.path.isfile(args.ours):
        sys.exit(f"compare.py: {args.ours} not found: build it with cmake --build build --target ddpm_bench "
                 "(examples on), or pass --ours")
    if args.autoencoder:
        return autoencoder_main(args)
    args.config = config_path(args.config)

    shared = ["--threads", str(args.threads)]
    for k in ("repeat", "batch", "sample_batch", "ddim_steps"):
        v = getattr(args, k)
        if v is not None:
            shared += ["--" + k.replace("_", "-"), str(v)]
    # A private copy of our binary: a rebuild during the run cannot change it.
    tmpdir = tempfile.mkdtemp(prefix="ddpm_compare_")
    ours_bin = os.path.join(tmpdir, "ddpm_bench")
    shutil.copy2(args.ours, ours_bin)
    ours_cmd = [ours_bin, args.config] + shared
    torch_cmd = [args.python, args.torch, args.config] + shared

    rounds = []
    for r in range(args.rounds):
        a = run_rss(ours_cmd)
        b = run_rss(torch_cmd)
        rnd = {"ours": a, "torch": b}
        if args.gemm_rate:
            out = subprocess.run([args.gemm_rate, "--threads", str(args.threads), "--size", "2048", "--repeat", "3"],
                                 check=True, capture_output=True, text=True).stdout
            rnd["gemm"] = json.loads(out.strip().splitlines()[-1])
        rounds.append(rnd)
        print(f"round {r + 1}/{args.rounds}: ours {a['wall_s']:.0f} s, torch {b['wall_s']:.0f} s", file=sys.stderr)
        for k in ("forward_ms_b1", "train_step_ms", "ddim_ms"):
            print(f"  {k}: ours {a[k]:.1f}  torch {b[k]:.1f}  x{b[k] / a[k]:.2f}", file=sys.stderr)
    shutil.rmtree(tmpdir, ignore_errors=True)

    sb = rounds[0]["ours"]["sample_batch"]
    time_keys = ["forward_ms_b1", f"forward_ms_b{sb}", "train_step_ms", "ddim_ms"]
    rate_keys = ["train_images_per_s", "sample_images_per_s"]
    med = lambda xs: statistics.median(xs)
    summary = {}
    for k in time_keys:
        summary[k] = {
            "speedup": med([x["torch"][k] / x["ours"][k] for x in rounds]),
            "ours_ms": med([x["ours"][k] for x in rounds]),
            "torch_ms": med([x["torch"][k] for x in rounds]),
        }
    for k in rate_keys:
        summary[k] = {"speedup": med([x["ours"][k] / x["torch"][k] for x in rounds])}
    summary["peak_rss_mb"] = {
        "ours": med([x["ours"]["proc_peak_rss_mb"] for x in rounds]),
        "torch": med([x["torch"]["proc_peak_rss_mb"] for x in rounds]),
    }
    gf = rounds[0]["ours"]["forward_gflop_per_image"]
    # Achieved GFLOP/s of both, per round (same flop count for both), median.
    batch = rounds[0]["ours"]["batch"]
    steps = rounds[0]["ours"]["ddim_steps"]
    flops = {"forward_ms_b1": gf, f"forward_ms_b{sb}": gf * sb, "train_step_ms": 3 * gf * batch,
             "ddim_ms": gf * sb * steps}
    for k, f in flops.items():
        summary[k]["ours_gflops"] = med([f / x["ours"][k] * 1e3 for x in rounds])
        summary[k]["torch_gflops"] = med([f / x["torch"][k] * 1e3 for x in rounds])

    if args.gemm_rate:
        for k in flops:
            summary[k]["ours_frac_gemm"] = med([flops[k] / x["ours"][k] * 1e3 / x["gemm"]["machine_gflops"] for x in rounds])
            summary[k]["torch_frac_gemm"] = med([flops[k] / x["torch"][k] * 1e3 / x["gemm"]["machine_gflops"]
                                                 for x in rounds])
        summary["gemm_gflops"] = {g: med([x["gemm"][g] for x in rounds])
                                  for g in rounds[0]["gemm"] if isinstance(rounds[0]["gemm"][g], float)}

    cfg = os.path.basename(args.config)
    when = datetime.date.today().isoformat()
    md = [f"`{cfg}`, {args.threads} threads, {args.rounds} alternating rounds"
          f"{' (' + ' '.join(shared[2:]) + ')' if len(shared) > 2 else ''}, {args.machine} {when}",
          "",
          "| metric | ddpm (median ms) | PyTorch (median ms) | speed-up (median of per-round ratios) | ddpm GFLOP/s | PyTorch GFLOP/s |",
          "|---|---:|---:|---:|---:|---:|"]
    for k in time_keys:
        s = summary[k]
        md.append(f"| {k} | {s['ours_ms']:.1f} | {s['torch_ms']:.1f} | {s['speedup']:.2f}x | "
                  f"{s['ours_gflops']:.1f} | {s['torch_gflops']:.1f} |")
    md.append(f"| peak RSS (MiB, whole process) | {summary['peak_rss_mb']['ours']:.0f} | "
              f"{summary['peak_rss_mb']['torch']:.0f} | | | |")
    if args.gemm_rate:
        md += ["", "As a fraction of the machine's fp32 GEMM rate (best of OpenBLAS / Eigen on 2048^3, measured every "
               "round under the same load; median " + ", ".join(f"{g} {v:.1f}" for g, v in summary["gemm_gflops"].items())
               + " GFLOP/s):", "", "| metric | ddpm | PyTorch |", "|---|---:|---:|"]
        md += [f"| {k} | {summary[k]['ours_frac_gemm']:.2f} | {summary[k]['torch_frac_gemm']:.2f} |" for k in flops]
    text = "\n".join(md)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    print(json.dumps({"config": cfg, "threads": args.threads, "rounds": rounds, "summary": summary}))


if __name__ == "__main__":
    main()
