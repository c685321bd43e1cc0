#!/usr/bin/env python3
"""biflow's toy density models against the same models in zuko (pip; a reference only, never a dependency), on the
exact same rows (toy_density --dump-data), at equal size (layers, hidden 2x64), steps, batch (256), optimiser (AdamW,
lr 1e-3, cosine with 100 warm-up steps, clip 5) and standardisation. Test NLL in original units (nats/sample) and the
median training step time, over seeds; writes every run to a CSV and prints a markdown table.

usage: python3 compare_zuko.py --biflow build/examples/toy_density [--sets 8gaussians,moons] [--models maf,nsf-ar,
       realnvp] [--seeds 0,1,2] [--steps 3000] [--threads 1] [--compile] [--csv runs.csv] [--out table.md]

Pairs: maf <-> zuko.flows.MAF (affine MADE), nsf-ar <-> zuko.flows.NSF (8-bin rational-quadratic MADE, bound 5),
realnvp <-> zuko.flows.RealNVP. (zuko's NICE class is affine by default, i.e. RealNVP again, so biflow's additive
NICE has no zuko counterpart here.) The parameterisations differ in detail (zuko's affine transform bounds
log-scales with a soft clip, biflow's uses c*tanh(a/c)), so NLLs are compared, not weights. Each zuko step: batch sampling, -log_prob mean, backward,
foreach clipping, fused AdamW, zero_grad(set_to_none=True) -- PyTorch at its best settings; --compile adds
torch.compile'd rows where compilation succeeds (the failure is printed where it does not).
"""
import argparse, csv, json, math, os, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from machine import cpu_model, isa  # noqa: E402

import numpy as np


def run_biflow(exe, train, test, model, layers, steps, seed, tmp, env):
    rep = os.path.join(tmp, "b.json")
    subprocess.run([exe, "--data", train, "--test", test, "--model", model, "--layers", str(layers), "--hidden", "64",
                    "--steps", str(steps), "--seed", str(seed), "--report", rep],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    r = json.load(open(rep))
    return {"test_nll": r["test_nll"], "median_step_ms": r["median_step_ms"], "params": r["params"],
            "gaussian": r["gaussian_test_nll"]}


def run_zuko(train, test, model, layers, steps, seed, compile_):
    import torch
    import zuko
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    xtr, xte = np.loadtxt(train, delimiter=","), np.loadtxt(test, delimiter=",")
    mu, sd = xtr.mean(0), xtr.std(0)
    log_abs_det = float(-np.log(sd).sum())  # d(standardised)/dx
    utr = torch.tensor((xtr - mu) / sd, dtype=torch.float32)
    ute = torch.tensor((xte - mu) / sd, dtype=torch.float32)
    d = utr.shape[1]
    kw = dict(hidden_features=(64, 64))
    flow = {"maf": lambda: zuko.flows.MAF(d, transforms=layers, **kw),
            "nsf-ar": lambda: zuko.flows.NSF(d, transforms=layers, bins=8, **kw),
            "realnvp": lambda: zuko.flows.RealNVP(d, transforms=layers, **kw)}[model]()
    params = sum(p.numel() for p in flow.parameters())
    opt = torch.optim.AdamW(flow.parameters(), lr=1e-3, weight_decay=0.0, fused=True)
    warm = min(100, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))

    def loss_fn(x):
        return -flow().log_prob(x).mean()
    step_loss = torch.compile(loss_fn) if compile_ else loss_fn
    times = []
    for s in range(steps):
        t0 = time.perf_counter()
        idx = torch.from_numpy(rng.integers(0, len(utr), 256))
        loss = step_loss(utr[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0, foreach=True)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        times.append(1e3 * (time.perf_counter() - t0))
    with torch.no_grad():
        nll = float(-flow().log_prob(ute).mean()) - log_abs_det
    steady = times[len(times) // 10:]
    return {"test_nll": nll, "median_step_ms": statistics.median(steady), "params": params}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--biflow", required=True)
    p.add_argument("--sets", default="8gaussians,moons")
    p.add_argument("--models", default="maf,nsf-ar,realnvp")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--csv")
    p.add_argument("--out")
    a = p.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OMP_WAIT_POLICY="passive")
    import torch
    import zuko
    torch.set_num_threads(a.threads)
    seeds = [int(s) for s in a.seeds.split(",")]
    runs = []
    lines = [f"CPU: {cpu_model()}; torch {torch.__version__}, zuko {zuko.__version__}; {a.threads} thread(s); "
             f"{a.steps} steps, batch 256, {a.layers} layers, hidden 2x64; seeds {a.seeds}",
             "", "NLL: mean over seeds (± half-range); ms/step: median over seeds of each run's median step; "
             "ratio = zuko ms / biflow ms", "",
             "| data | model | biflow NLL | zuko NLL | zuko − biflow | Gaussian | biflow params | zuko params | "
             "biflow ms/step | zuko ms/step | ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.sets.split(","):
            ddir = os.path.join(tmp, name)
            os.makedirs(ddir)
            subprocess.run([a.biflow, "--data", name, "--dump-data", ddir], check=True, stdout=subprocess.DEVNULL)
            train, test = os.path.join(ddir, "train.csv"), os.path.join(ddir, "test.csv")
            for model in a.models.split(","):
                for impl in (["eager", "compile"] if a.compile else ["eager"]):
                    bs, zs = [], []
                    for s in seeds:
                        b = run_biflow(a.biflow, train, test, model, a.layers, a.steps, s, tmp, env)
                        try:
                            z = run_zuko(train, test, model, a.layers, a.steps, s, impl == "compile")
                        except Exception as e:  # torch.compile may not handle the flow
                            print(f"{name} {model} zuko {impl}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                            z = None
                        if impl == "eager" or z:
                            bs.append(b)
                        if z:
                            zs.append(z)
                            runs.append(dict(data=name, model=model, impl=impl, seed=s, biflow_nll=b["test_nll"],
                                             zuko_nll=z["test_nll"], biflow_ms=b["median_step_ms"],
                                             zuko_ms=z["median_step_ms"], biflow_params=b["params"],
                                             zuko_params=z["params"], gaussian=b["gaussian"]))
                    if not zs:
                        lines.append(f"| {name} | {model} ({impl}) | — | failed | | | | | | | |")
                        continue
                    f = lambda v: f"{statistics.mean(v):.4f}" + (f" ± {(max(v) - min(v)) / 2:.4f}" if len(v) > 1 else "")
                    bn, zn = [r["test_nll"] for r in bs], [r["test_nll"] for r in zs]
                    bm, zm = statistics.median(r["median_step_ms"] for r in bs), statistics.median(r["median_step_ms"] for r in zs)
                    lines.append(f"| {name} | {model}{'' if impl == 'eager' else ' (compile)'} | {f(bn)} | {f(zn)} | "
                                 f"{statistics.mean(zn) - statistics.mean(bn):+.4f} | {bs[0]['gaussian']:.4f} | "
                                 f"{bs[0]['params']} | {zs[0]['params']} | {bm:.3f} | {zm:.3f} | {zm / bm:.1f}x |")
                    print(lines[-1], flush=True)
    if a.csv and runs:
        with open(a.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(runs[0].keys()))
            w.writeheader()
            w.writerows(runs)
    if a.out:
        open(a.out, "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
