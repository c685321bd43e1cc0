#!/usr/bin/env python3
"""PyTorch reference for examples/toy_density: the same RealNVP / MAF, optimiser, schedule, clipping, batch and
protocol (10000 train / 5000 test points, standardised, test NLL in original units). Written from the published
architectures for comparison only; PyTorch is never a dependency of biflow.

usage: python3 toy_density_torch.py --data moons --model realnvp --steps 3000 --threads 1 [--report out.json]
"""
import argparse, json, math, time
import numpy as np
import torch
import torch.nn as nn


def toy(name, n, rng):
    if name == "moons":
        t = math.pi * rng.random(n)
        up = rng.integers(0, 2, n) == 0
        x = np.where(up[:, None], np.stack([np.cos(t), np.sin(t)], 1), np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
        return x + 0.1 * rng.standard_normal((n, 2))
    if name == "8gaussians":
        ang = 2 * math.pi * rng.integers(0, 8, n) / 8
        c = 4 * np.stack([np.cos(ang), np.sin(ang)], 1)
        return (c + 0.5 * rng.standard_normal((n, 2))) / math.sqrt(2)
    if name == "checkerboard":
        x1 = rng.random(n) * 4 - 2
        x2 = rng.random(n) - 2.0 * rng.integers(0, 2, n) + (np.floor(x1).astype(int) & 1)
        return 2 * np.stack([x1, x2], 1)
    if name == "rings":
        r = 0.75 * (1 + rng.integers(0, 4, n))
        a = 2 * math.pi * rng.random(n)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1) + 0.08 * rng.standard_normal((n, 2))
    raise ValueError(name)


def mlp(sizes):
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(nn.ReLU())
    nn.init.zeros_(layers[-1].weight); nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class Coupling(nn.Module):  # y = x*exp(s)+t on mask==0 dims, s = c*tanh(s_raw/c)
    def __init__(self, mask, hidden, clamp=2.0):
        super().__init__()
        d = len(mask)
        self.register_buffer("mask", torch.tensor(mask, dtype=torch.float32))
        self.net = mlp([d, hidden, hidden, 2 * d]); self.c = clamp; self.d = d

    def forward(self, x):
        h = self.net(x * self.mask)
        im = 1 - self.mask
        s = self.c * torch.tanh(h[:, :self.d] / self.c) * im
        t = h[:, self.d:] * im
        return x * torch.exp(s) + t, s.sum(1)


class MaskedLinear(nn.Linear):
    def __init__(self, i, o, mask):
        super().__init__(i, o); self.register_buffer("mask", mask)

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MAF(nn.Module):  # z = (x-mu)*exp(-a), a = 3*tanh(a_raw/3); MADE degrees as in biflow::made::masks
    def __init__(self, d, hidden, clamp=3.0):
        super().__init__()
        deg_in = torch.arange(1, d + 1)
        deg_h = torch.tensor([(k % (d - 1)) + 1 if d > 1 else 0 for k in range(hidden)])
        m1 = (deg_h[:, None] >= deg_in[None, :]).float()
        m2 = (deg_h[:, None] >= deg_h[None, :]).float()
        deg_out = torch.cat([deg_in, deg_in])
        m3 = (deg_out[:, None] > deg_h[None, :]).float()
        self.net = nn.Sequential(MaskedLinear(d, hidden, m1), nn.ReLU(), MaskedLinear(hidden, hidden, m2), nn.ReLU(),
                                 MaskedLinear(hidden, 2 * d, m3))
        nn.init.zeros_(self.net[-1].weight); nn.init.zeros_(self.net[-1].bias)
        self.d = d; self.c = clamp

    def forward(self, x):
        h = self.net(x)
        a = self.c * torch.tanh(h[:, self.d:] / self.c)
        return (x - h[:, :self.d]) * torch.exp(-a), -a.sum(1)


class Reverse(nn.Module):
    def forward(self, x):
        return x.flip(1), torch.zeros(x.shape[0])


class Flow(nn.Module):
    def __init__(self, layers):
        super().__init__(); self.layers = nn.ModuleList(layers)

    def forward(self, x):
        ld = torch.zeros(x.shape[0])
        for l in self.layers:
            x, l_ = l(x); ld = ld + l_
        return x, ld

    def nll(self, x):
        z, ld = self(x)
        return (0.5 * (z ** 2).sum(1) + 0.5 * z.shape[1] * math.log(2 * math.pi) - ld).mean()


def half(d, parity):
    k = d // 2
    return [int(i < k) if parity % 2 == 0 else int(i >= d - k) for i in range(d)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="moons"); p.add_argument("--test"); p.add_argument("--model", default="realnvp")
    p.add_argument("--layers", type=int, default=8); p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=3000); p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3); p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1); p.add_argument("--report")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (forward + backward graph)")
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    if a.data.endswith(".csv") and a.test:
        train, test = np.loadtxt(a.data, delimiter=",", ndmin=2), np.loadtxt(a.test, delimiter=",", ndmin=2)
    elif a.data.endswith(".csv"):
        allx = np.loadtxt(a.data, delimiter=",", ndmin=2); nt = max(1, len(allx) // 5)
        train, test = allx[:-nt], allx[-nt:]
    else:
        train, test = toy(a.data, 10000, rng), toy(a.data, 5000, np.random.default_rng(12345))
    mean, std = train.mean(0), train.std(0, ddof=1)
    logdet_std = -np.log(std).sum()
    u = torch.tensor((train - mean) / std, dtype=torch.float32)
    ut = torch.tensor((test - mean) / std, dtype=torch.float32)
    d = u.shape[1]
    if a.model == "realnvp":
        flow = Flow([Coupling(half(d, i % 2), a.hidden) for i in range(a.layers)])
    else:
        layers = []
        for _ in range(a.layers):
            layers += [MAF(d, a.hidden), Reverse()]
        flow = Flow(layers)
    # PyTorch at its best: fused AdamW, foreach clipping, gradients set to None (no zeroing kernels).
    params = list(flow.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0, betas=(0.9, 0.999), eps=1e-8, fused=True)
    nll = torch.compile(flow.nll) if a.compile else flow.nll
    warm = min(100, a.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else
                                              0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, a.steps - warm)))))
    times = []
    t0 = time.perf_counter()
    for s in range(a.steps):
        ts = time.perf_counter()
        idx = torch.randint(0, u.shape[0], (a.batch,))
        loss = nll(u[idx])
        opt.zero_grad(set_to_none=True); loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0, foreach=True)
        opt.step(); sched.step()
        times.append(time.perf_counter() - ts)
    secs = time.perf_counter() - t0
    with torch.no_grad():
        test_nll = flow.nll(ut).item() - logdet_std
        train_nll = flow.nll(u).item() - logdet_std
    steady = sorted(times[len(times) // 10:])
    med = steady[len(steady) // 2]
    rep = dict(data=a.data, model=a.model, steps=a.steps, threads=a.threads, torch=torch.__version__,
               impl="pytorch-compile" if a.compile else "pytorch-eager",
               params=sum(p.numel() for p in flow.parameters()), seconds=secs, steps_per_second=a.steps / secs,
               median_step_ms=med * 1e3, test_nll=test_nll, train_nll=train_nll)
    print(json.dumps(rep))
    if a.report:
        json.dump(rep, open(a.report, "w"), indent=2)


if __name__ == "__main__":
    main()
