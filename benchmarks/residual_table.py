#!/usr/bin/env python3
"""The residual-flow tables of docs/logdet-policies.md, from examples/residual_flow over seeds:
  1. training log-det policy (exact, Russian roulette, Hutchinson) -> exact test NLL and median step time;
  2. the fixed-point inverse: iterations (all blocks) to each tolerance, and the round-trip error;
  3. the stochastic log-det on the trained flow: bias (± standard error) and per-sample spread against the exact
     value, for K = 1, 4, 16 probe vectors.
  python3 benchmarks/residual_table.py --exe build/examples/residual_flow [--data 8gaussians] [--seeds 0,1,2]
      [--steps 2000] [--csv runs.csv]
Run it on an idle machine (times are measured); OMP_NUM_THREADS=1 is set for the runs."""
import argparse, csv, json, os, statistics, subprocess, tempfile, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_model, isa  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    ap.add_argument("--data", default="8gaussians")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--csv")
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive")
    med = statistics.median
    policies = [("exact", []), ("roulette", []), ("hutchinson", ["--terms", "10"])]
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in policies:
            for s in a.seeds.split(","):
                rep = os.path.join(tmp, f"{name}_{s}.json")
                subprocess.run([a.exe, "--data", a.data, "--logdet", name, "--steps", str(a.steps), "--seed", s,
                                "--report", rep] + extra, check=True, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                reports.setdefault(name, []).append(json.load(open(rep)))
    r0 = reports["exact"][0]
    out = [f"CPU: {cpu_model()} ({isa()}), 1 thread; {a.data}; {r0['blocks']} blocks of [Residual (Lip <= "
           f"{r0['lipschitz']}, hidden 2x{r0['hidden']}), ActNorm]; {a.steps} steps, batch 256; seeds {a.seeds}; "
           "medians over seeds", "",
           "| training log-det | exact test NLL | Gaussian NLL | median step ms |", "|---|---|---|---|"]
    for name, _ in policies:
        rs = reports[name]
        label = {"exact": "exact (D VJPs + LU)", "roulette": "Russian roulette, K = 1",
                 "hutchinson": "Hutchinson 10 terms, K = 1"}[name]
        out.append(f"| {label} | {med(r['test_nll'] for r in rs):.4f} | {rs[0]['gaussian_nll']:.4f} | "
                   f"{med(r['median_step_ms'] for r in rs):.3f} |")
    rs = reports["roulette"]
    out += ["", "Fixed-point inverse of the roulette-trained flows, 4096 samples, float:", "",
            "| tolerance | iterations (all blocks) | most in one block | max round-trip error | ms |",
            "|---|---|---|---|---|"]
    for i, inv in enumerate(rs[0]["inverse"]):
        out.append(f"| {inv['tol']:.0e} | {med(r['inverse'][i]['iterations'] for r in rs):.0f} | "
                   f"{med(r['inverse'][i]['max_block_iterations'] for r in rs):.0f} | "
                   f"{med(r['inverse'][i]['roundtrip_max'] for r in rs):.1e} | {med(r['inverse'][i]['ms'] for r in rs):.1f} |")
    out += ["", f"Stochastic log-det of the roulette-trained flows against the exact value, 512 test rows: bias = mean "
            f"error (± standard error), spread = per-sample standard deviation; exact log-det "
            f"{med(r['exact_logdet_ms'] for r in rs):.2f} ms per call", "",
            "| estimator | K | unbiased | bias | spread | ms per call |", "|---|---|---|---|---|---|"]
    for i, e in enumerate(rs[0]["estimators"]):
        out.append(f"| {e['name']} | {e['probes']} | {'yes' if e['unbiased'] else 'no'} | "
                   f"{med(r['estimators'][i]['bias'] for r in rs):+.4f} ± "
                   f"{med(r['estimators'][i]['bias_stderr'] for r in rs):.4f} | "
                   f"{med(r['estimators'][i]['spread'] for r in rs):.4f} | {med(r['estimators'][i]['ms'] for r in rs):.2f} |")
    if a.csv:
        with open(a.csv, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["policy", "seed", "test_nll", "median_step_ms"])
            for name, rs in reports.items():
                for r in rs:
                    w.writerow([name, r["seed"], r["test_nll"], r["median_step_ms"]])
    print("\n".join(out))


if __name__ == "__main__":
    main()
