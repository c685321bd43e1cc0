#!/usr/bin/env python3
"""Runs toy_vi over targets x models x seeds and prints the markdown table of docs/flow-families.md: the median KL
(log Z - ELBO) over seeds per cell, the N(0, I) baseline's KL, and the median step time. Usage:
  python3 benchmarks/vi_table.py --exe build/examples/toy_vi [--steps 1500] [--seeds 0 1 2] [--out vi.csv]
Run it on an idle machine (the step times are measured); OMP_NUM_THREADS=1 is set for the runs."""
import argparse, csv, json, os, statistics, subprocess, tempfile, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_model, isa  # noqa: E402

TARGETS = ["funnel", "banana", "u1", "u2", "u3", "u4"]
MODELS = ["planar", "radial", "sylvester", "iaf", "nsf-ar"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--eval-samples", type=int, default=20000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in TARGETS:
            for m in MODELS:
                for s in a.seeds:
                    rep = os.path.join(tmp, f"{t}_{m}_{s}.json")
                    subprocess.run([a.exe, "--target", t, "--model", m, "--steps", str(a.steps), "--seed", str(s),
                                    "--eval-samples", str(a.eval_samples), "--report", rep],
                                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    r = json.load(open(rep))
                    rows.append(dict(target=t, model=m, seed=s, log_z=r["log_z_true"], source=r["log_z_source"],
                                     elbo=r["elbo"], kl=r["kl_estimate"], ess=r["ess_fraction"],
                                     log_z_estimate=r["log_z_estimate"], normal_elbo=r["baseline_normal_elbo"],
                                     step_ms=r["median_step_ms"], layers=r["layers"], params=r["params"]))
    if a.out:
        with open(a.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    print(f"CPU: {cpu_model()}; toy_vi {a.steps} steps, seeds {a.seeds}, {a.eval_samples} evaluation samples; "
          "cells: median KL = log Z - ELBO over seeds (ESS fraction)")
    layers = {m: next(r["layers"] for r in rows if r["model"] == m) for m in MODELS}
    print("| target (log Z) | N(0, I) | " + " | ".join(f"{m} ({layers[m]})" for m in MODELS) + " |")
    print("|---" * (len(MODELS) + 2) + "|")
    for t in TARGETS:
        rt = [r for r in rows if r["target"] == t]
        lz, src = rt[0]["log_z"], rt[0]["source"]
        cells = [f"{lz - rt[0]['normal_elbo']:.3f}"]
        for m in MODELS:
            rm = [r for r in rt if r["model"] == m]
            cells.append(f"{statistics.median(r['kl'] for r in rm):.3f} ({statistics.median(r['ess'] for r in rm):.2f})")
        print(f"| {t} ({lz:.4f}, {src}) | " + " | ".join(cells) + " |")
    print("median step ms: " + ", ".join(
        f"{m} {statistics.median(r['step_ms'] for r in rows if r['model'] == m):.3f}" for m in MODELS))


if __name__ == "__main__":
    main()
