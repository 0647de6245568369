"""NCBI-disease preset in bf16 vs fp32: test F1 over seeds and peak memory (benchmark 11).

    python bench/ncbi_precision_quality.py [--seeds 0 1 2] [--jobs 2] [--precisions fp32 bf16]

Runs ``python -m medkit_exp +experiment=ncbi_disease trainer.precision=P trainer.seed=S
tracking=none`` for each precision and seed, each in its own process (``--jobs 2``: two at
once, one thread each; scores do not depend on it), and reads the test scores from the run
summary and the peak RSS from ``/usr/bin/time``. Extra app overrides go after ``--``.

Printed: one line per run, the mean test F1 of each precision, and last the mean difference
bf16 - fp32 (goal: within 0.005) and the largest peak RSS (goal < 1.5 GB).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import DEFAULT_NCBI_ROOT, REPO, add_fork_option, machine_line, run_python

TIME = shutil.which("time") or "/usr/bin/time"


def one_run(precision: str, seed: int, args, workdir: Path, threads: int | None) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    folder = workdir / f"{precision}-{seed}"
    command = ["-m", "medkit_exp", "+experiment=ncbi_disease", f"trainer.precision={precision}",
               f"trainer.seed={seed}", "tracking=none", "callbacks.progress_bars=false", f"hydra.run.dir={folder}",
               f"data.root={args.data_root}", *([f"threads={threads}"] if threads else []), *args.overrides]
    peak_kb = None
    if args.fork:  # the fork's peak RSS comes with it
        done = run_python(command, cwd=REPO, env=env, capture=True, fork=True)
        peak_kb = done.peak_rss_kb
    elif Path(TIME).exists():
        done = subprocess.run([TIME, "-f", "peak_rss_kb=%M", sys.executable, *command], cwd=REPO, env=env,
                              capture_output=True, text=True)
    else:
        done = run_python(command, cwd=REPO, env=env, capture=True)
    if done.returncode != 0:
        raise SystemExit(f"{precision} seed {seed} failed:\n{done.stderr[-3000:]}")
    test = re.search(r"test\s+: precision=([0-9.]+), recall=([0-9.]+), f1=([0-9.]+)", done.stdout)
    dev = re.search(r"eval \(dev\)\s+: precision=[0-9.]+, recall=[0-9.]+, f1=([0-9.]+)", done.stdout)
    rss = re.search(r"peak_rss_kb=(\d+)", done.stderr)
    peak_kb = int(rss.group(1)) if rss else peak_kb
    epochs = [float(s) for s in re.findall(r"^Epoch \d+ \(([0-9.]+)s\)", done.stderr, flags=re.M)]
    return {"precision": precision, "seed": seed, "test_p": float(test.group(1)), "test_r": float(test.group(2)),
            "test_f1": float(test.group(3)), "dev_f1": float(dev.group(1)), "epochs_s": epochs,
            "peak_rss_mb": peak_kb / 1024 if peak_kb is not None else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(DEFAULT_NCBI_ROOT))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "auto"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="more app overrides (after --)")
    add_fork_option(parser)
    args = parser.parse_args()
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    runs = [(precision, seed) for seed in args.seeds for precision in args.precisions]
    results = []
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, precision, seed, args, Path(tmp), threads) for precision, seed in runs]
        for future in futures:
            r = future.result()
            results.append(r)
            print(f"{r['precision']:5s} seed {r['seed']}: dev F1 {r['dev_f1']:.4f} | test P {r['test_p']:.4f} "
                  f"R {r['test_r']:.4f} F1 {r['test_f1']:.4f} | epochs " + ", ".join(f"{s:.0f}s" for s in r["epochs_s"])
                  + f" | peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print(machine_line() + f"; +experiment=ncbi_disease {' '.join(args.overrides)}; seeds {args.seeds}; "
          f"{args.jobs} run(s) at once, {threads or 'default'} thread(s) each")
    means = {p: statistics.mean(r["test_f1"] for r in results if r["precision"] == p) for p in args.precisions}
    for precision, mean in means.items():
        print(f"mean test F1 {precision}: {mean:.4f}")
    print(f"largest peak RSS: {max(r['peak_rss_mb'] for r in results):.0f} MB (goal < 1536)")
    for other in (p for p in means if p != "fp32" and "fp32" in means):  # auto: the app's default path
        print(f"mean test F1 difference {other} - fp32: {means[other] - means['fp32']:+.4f} (goal within 0.005)")


if __name__ == "__main__":
    sys.exit(main())
