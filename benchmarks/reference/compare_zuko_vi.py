#!/usr/bin/env python3
"""Variational inference (reverse KL) on Neal's funnel: biflow's toy_vi against the same flows in zuko (pip; a reference
only, never a dependency), at equal size (4 layers, hidden 2x32), steps (1500), samples per step (256), optimiser
(AdamW lr 3e-3, cosine with min(200, steps/10) warm-up steps, clip 10) and evaluation (ELBO, importance-weighted
log Z estimate and ESS fraction from 20000 fresh samples, against the exact log Z). Prints a markdown table (median
over seeds) and writes every run to a CSV.

usage: python3 compare_zuko_vi.py --biflow build/examples/toy_vi [--dims 2,10] [--models iaf,nsf-ar] [--seeds 0,1,2]
       [--steps 1500] [--threads 1] [--compile] [--csv runs.csv] [--out table.md]

Pairs: iaf <-> zuko.flows.MAF read as a sampler (zuko.lazy.LazyInverse of its transform: sampling is one pass, as in
biflow's IAF), nsf-ar <-> zuko.flows.NSF the same way (8 bins, bound 5). zuko's MADE uses ReLU, biflow's its own
default; weights are not compared, the ELBO is. Each zuko step: rsample_and_log_prob, loss mean(log q - log p~),
backward, foreach clipping, fused AdamW, zero_grad(set_to_none=True); --compile adds a row with the loss
torch.compile'd where that works (the failure is printed where it does not).
"""
import argparse, csv, json, math, os, statistics, subprocess, tempfile, time, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from machine import cpu_model, isa  # noqa: E402


SIGMA_V = 3.0


def funnel_log_prob(x):
    """biflow's vi::targets::funnel: v ~ N(0, 9), x_i | v ~ N(0, e^v), 2*pi factors left out."""
    v, rest = x[..., 0], x[..., 1:]
    return -v * v / (2 * SIGMA_V ** 2) + (-0.5 * rest * rest * (-v).exp().unsqueeze(-1) - 0.5 * v.unsqueeze(-1)).sum(-1)


def funnel_log_z(d):
    return 0.5 * math.log(2 * math.pi * SIGMA_V ** 2) + 0.5 * (d - 1) * math.log(2 * math.pi)


def run_biflow(exe, d, model, steps, seed, tmp, env):
    rep = os.path.join(tmp, "b.json")
    subprocess.run([exe, "--target", "funnel", "--dim", str(d), "--model", model, "--layers", "4", "--hidden", "32",
                    "--steps", str(steps), "--samples", "256", "--seed", str(seed), "--eval-samples", "20000",
                    "--report", rep], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    r = json.load(open(rep))
    return {k: r[k] for k in ("elbo", "log_z_estimate", "ess_fraction", "median_step_ms", "params", "log_z_true")}


def run_zuko(d, model, steps, seed, compile_):
    import torch
    import zuko
    torch.manual_seed(seed)
    kw = dict(transforms=4, hidden_features=(32, 32))
    dens = zuko.flows.MAF(d, **kw) if model == "iaf" else zuko.flows.NSF(d, bins=8, **kw)
    # Read as a sampler: x = T^-1(z) with the inverse of the density transform, so sampling is the one-pass direction.
    flow = zuko.lazy.Flow(zuko.lazy.LazyInverse(dens.transform), dens.base)
    params = sum(p.numel() for p in flow.parameters())
    opt = torch.optim.AdamW(flow.parameters(), lr=3e-3, weight_decay=0.0, fused=True)
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))

    def loss_fn():
        x, lq = flow().rsample_and_log_prob((256,))
        return (lq - funnel_log_prob(x)).mean()
    step_loss = torch.compile(loss_fn) if compile_ else loss_fn
    times = []
    for s in range(steps):
        t0 = time.perf_counter()
        loss = step_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0, foreach=True)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        times.append(1e3 * (time.perf_counter() - t0))
    with torch.no_grad():
        x, lq = flow().rsample_and_log_prob((20000,))
        lw = (funnel_log_prob(x) - lq).double()
        lw = lw[torch.isfinite(lw)]
        elbo = float(lw.mean())
        log_z = float(torch.logsumexp(lw, 0) - math.log(len(lw)))
        w = (lw - lw.max()).exp()
        ess = float(w.sum() ** 2 / (len(lw) * (w * w).sum()))
    return {"elbo": elbo, "log_z_estimate": log_z, "ess_fraction": ess,
            "median_step_ms": statistics.median(times[len(times) // 10:]), "params": params}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--biflow", required=True)
    p.add_argument("--dims", default="2,10")
    p.add_argument("--models", default="iaf,nsf-ar")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=1500)
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
    lines = [f"CPU: {cpu_model()} ({isa()}); torch {torch.__version__}, zuko {zuko.__version__}; {a.threads} "
             f"thread(s); funnel (sigma_v 3), {a.steps} steps of 256 samples, 4 layers, hidden 2x32; seeds {a.seeds}",
             "", "KL = log Z − ELBO (nats; median over seeds, ± half-range); log Z estimate and ESS fraction: medians; "
             "ms/step: median over seeds of each run's median step; ratio = zuko ms / biflow ms", "",
             "| D | model | log Z | biflow KL | zuko KL | biflow log Z est. | zuko log Z est. | biflow ESS | zuko ESS | "
             "biflow params | zuko params | biflow ms/step | zuko ms/step | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    med = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        for d in [int(v) for v in a.dims.split(",")]:
            log_z = funnel_log_z(d)
            for model in a.models.split(","):
                for impl in (["eager", "compile"] if a.compile else ["eager"]):
                    bs, zs = [], []
                    for s in seeds:
                        b = run_biflow(a.biflow, d, model, a.steps, s, tmp, env)
                        assert abs(b["log_z_true"] - log_z) < 1e-6, "the two funnels differ"
                        try:
                            z = run_zuko(d, model, a.steps, s, impl == "compile")
                        except Exception as e:  # torch.compile may not handle the flow
                            print(f"D={d} {model} zuko {impl}: {type(e).__name__}: {str(e)[:200]}", flush=True)
                            z = None
                        bs.append(b)
                        if z:
                            zs.append(z)
                            runs.append(dict(dim=d, model=model, impl=impl, seed=s, log_z=log_z,
                                             biflow_elbo=b["elbo"], zuko_elbo=z["elbo"],
                                             biflow_log_z_est=b["log_z_estimate"], zuko_log_z_est=z["log_z_estimate"],
                                             biflow_ess=b["ess_fraction"], zuko_ess=z["ess_fraction"],
                                             biflow_ms=b["median_step_ms"], zuko_ms=z["median_step_ms"],
                                             biflow_params=b["params"], zuko_params=z["params"]))
                    if not zs:
                        lines.append(f"| {d} | {model} ({impl}) | {log_z:.4f} | | failed | | | | | | | | | |")
                        continue
                    kl = lambda v: f"{med(log_z - r['elbo'] for r in v):.4f} ± " \
                                   f"{(max(r['elbo'] for r in v) - min(r['elbo'] for r in v)) / 2:.4f}"
                    bm, zm = med(r["median_step_ms"] for r in bs), med(r["median_step_ms"] for r in zs)
                    lines.append(f"| {d} | {model}{'' if impl == 'eager' else ' (zuko compile)'} | {log_z:.4f} | "
                                 f"{kl(bs)} | {kl(zs)} | {med(r['log_z_estimate'] for r in bs):.4f} | "
                                 f"{med(r['log_z_estimate'] for r in zs):.4f} | {med(r['ess_fraction'] for r in bs):.3f} | "
                                 f"{med(r['ess_fraction'] for r in zs):.3f} | {bs[0]['params']} | {zs[0]['params']} | "
                                 f"{bm:.3f} | {zm:.3f} | {zm / bm:.1f}x |")
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
