#!/usr/bin/env python3
"""The learned-inverse table of docs/flow-families.md: for the flows whose exact inverse is slowest -- spline
autoregressive (D sequential passes per layer) and residual (fixed-point iterations per block) -- train the flow, then
BiFlow's learned inverse G (toy_density --reverse-steps), over seeds; report reconstruction error, sample quality
(energy distance of exact and learned samples to the test set, framed by a copy of training rows and a Gaussian fit)
and the time per call at batch 1 and 4096 (exact inverse vs G).
  python3 benchmarks/learned_inverse_table.py --exe build/examples/toy_density [--sets 8gaussians,moons]
      [--models nsf-ar,residual] [--seeds 0,1,2] [--steps 3000] [--reverse-steps 3000] [--csv runs.csv]
Run it on an idle machine (times are measured); OMP_NUM_THREADS=1 is set for the runs."""
import argparse, csv, json, os, statistics, subprocess, tempfile, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_model, isa  # noqa: E402


KEYS = ["test_nll", "reverse_recon_mse", "energy_distance_exact", "energy_distance_learned",
        "energy_distance_train_copy", "energy_distance_gaussian", "ms_batch1_exact", "ms_batch1_learned",
        "ms_batch4096_exact", "ms_batch4096_learned"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--sets", default="8gaussians,moons")
    ap.add_argument("--models", default="nsf-ar,residual")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--reverse-steps", type=int, default=3000)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--csv")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    med = statistics.median
    runs = []
    lines = [f"CPU: {cpu_model()} ({isa()}), 1 thread; {a.layers} layers, hidden 2x64, {a.steps} flow steps, "
             f"{a.reverse_steps} steps of G (4 MLP stages, hidden alignment); seeds {a.seeds}; medians over seeds", "",
             "| data | model | test NLL | recon MSE | ED exact | ED learned | ED train copy | ED Gaussian | "
             "batch 1 exact / G ms | ratio | batch 4096 exact / G ms | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for data in a.sets.split(","):
            for model in a.models.split(","):
                rs = []
                for s in a.seeds.split(","):
                    rep = os.path.join(tmp, f"{data}_{model}_{s}.json")
                    subprocess.run([a.exe, "--data", data, "--model", model, "--layers", str(a.layers), "--hidden",
                                    "64", "--steps", str(a.steps), "--reverse-steps", str(a.reverse_steps), "--seed",
                                    s, "--report", rep], check=True, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                    r = json.load(open(rep))
                    rs.append(r)
                    runs.append(dict(data=data, model=model, seed=int(s), **{k: r[k] for k in KEYS}))
                m = {k: med(r[k] for r in rs) for k in KEYS}
                lines.append(f"| {data} | {model} | {m['test_nll']:.4f} | {m['reverse_recon_mse']:.1e} | "
                             f"{m['energy_distance_exact']:.4f} | {m['energy_distance_learned']:.4f} | "
                             f"{m['energy_distance_train_copy']:.4f} | {m['energy_distance_gaussian']:.4f} | "
                             f"{m['ms_batch1_exact']:.3f} / {m['ms_batch1_learned']:.3f} | "
                             f"{med(r['ms_batch1_exact'] / r['ms_batch1_learned'] for r in rs):.1f}x | "
                             f"{m['ms_batch4096_exact']:.1f} / {m['ms_batch4096_learned']:.1f} | "
                             f"{med(r['ms_batch4096_exact'] / r['ms_batch4096_learned'] for r in rs):.1f}x |")
                print(lines[-1], flush=True)
    if a.csv and runs:
        with open(a.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(runs[0].keys()))
            w.writeheader()
            w.writerows(runs)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
