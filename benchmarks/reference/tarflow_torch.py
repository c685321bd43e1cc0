#!/usr/bin/env python3
"""The digits TARFlow of examples/digits_tarflow.cpp, written independently in PyTorch (eager), for speed and
quality comparisons on the same machine. Never a dependency of biflow: `pip install torch numpy`.

Same architecture and training recipe: patch 2 (16 tokens of 4 pixels, channel-major), B blocks of K pre-norm
causal transformer layers (width C, GELU MLP 4x), learned position and class embeddings (null label, dropout 0.1),
zero-initialised output projection shifted by one token, alternating token order; AdamW (0.9, 0.95), wd 1e-4,
cosine schedule with warm-up, gradient clipping 1.0, EMA 0.999 with warm-up, noise augmentation sigma (0).
PyTorch at its best: fused AdamW, foreach gradient clipping, zero_grad(set_to_none=True), a foreach-lerp EMA,
and --compile (torch.compile of the loss) for a compiled row. Timed: forward, backward, clipping, AdamW, schedule
and EMA; the batch is drawn before the timer starts, as bench_tarflow's BM_TarTrainStep times a ready batch.

  python3 tarflow_torch.py --steps 60 --threads 1            # median step time
  python3 tarflow_torch.py --steps 4000 --eval               # + test bits/dim (takes a while)
Prints one JSON line.
"""
import argparse, json, math, os, statistics, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Layer(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.attn_norm, self.mlp_norm = nn.LayerNorm(c), nn.LayerNorm(c)
        self.qkv, self.proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.heads = heads

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(n, t, c))
        return x + self.mlp(self.mlp_norm(x))


class Block(nn.Module):
    def __init__(self, tokens, d, c, layers, heads, classes, reverse):
        super().__init__()
        self.proj_in = nn.Linear(d, c)
        self.pos_embed = nn.Parameter(torch.randn(tokens, c) * 0.02)
        self.class_embed = nn.Parameter(torch.randn(classes + 1, c) * 0.02)
        self.layers = nn.ModuleList(Layer(c, heads) for _ in range(layers))
        self.proj_out = nn.Linear(c, 2 * d)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.reverse = reverse

    def forward(self, x, y):
        if self.reverse:
            x = x.flip(1)
        pos = self.pos_embed.flip(0) if self.reverse else self.pos_embed
        h = self.proj_in(x) + pos + self.class_embed[y][:, None]
        for l in self.layers:
            h = l(h)
        o = self.proj_out(h)
        o = torch.cat([torch.zeros_like(o[:, :1]), o[:, :-1]], 1)
        a, mu = o.chunk(2, -1)
        z = (x - mu) * torch.exp(-a)
        if self.reverse:
            z = z.flip(1)
        return z, -a.sum((1, 2))


class TarFlow(nn.Module):
    def __init__(self, c=64, blocks=4, layers=2, heads=4, classes=10):
        super().__init__()
        self.blocks = nn.ModuleList(Block(16, 4, c, layers, heads, classes, i % 2 == 1) for i in range(blocks))

    def forward(self, img, y):  # img: n x 64 (8x8), patch 2, channel-major inside a patch
        x = img.view(-1, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(-1, 16, 4)
        ld = torch.zeros(img.shape[0])
        for b in self.blocks:
            x, l = b(x, y)
            ld = ld + l
        return x.reshape(img.shape[0], -1), ld


def nll(model, x, y):
    z, ld = model(x, y)
    return (0.5 * (z ** 2).sum(1) + 32 * math.log(2 * math.pi) - ld).mean()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--eval", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the loss (forward + backward graph)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rows = np.loadtxt(os.path.join(ROOT, "data", "digits.csv"), delimiter=",", dtype=np.float32)
    pix, lab = torch.from_numpy(rows[:, :64]), torch.from_numpy(rows[:, 64]).long()
    model = TarFlow(a.width, a.blocks, a.layers)
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.95), weight_decay=a.weight_decay, fused=True)
    ema = [q.detach().clone() for q in params]
    loss_fn = torch.compile(lambda x, y: nll(model, x, y)) if a.compile else (lambda x, y: nll(model, x, y))
    warm = min(200, max(1, a.steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.02 + 0.98 * 0.5 * (
        1 + math.cos(math.pi * min(1.0, max(0, s - warm) / max(1, a.steps - warm))))))
    times = []
    for s in range(a.steps):
        idx = torch.randint(0, 1500, (a.batch,))
        x = 2 * (pix[idx] + torch.rand(a.batch, 64)) / 17 - 1 + a.noise * torch.randn(a.batch, 64)
        y = torch.where(torch.rand(a.batch) < 0.1, torch.full_like(lab[idx], 10), lab[idx])
        t0 = time.perf_counter()
        loss = loss_fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        sched.step()
        with torch.no_grad():  # EMA with warm-up, as biflow's Ema(decay, warmup = true)
            d = min(a.ema, (1 + s) / (10 + s)) if s > 0 else 0.0
            torch._foreach_lerp_(ema, [q.detach() for q in params], 1 - d)
        times.append(time.perf_counter() - t0)
    out = {"impl": "pytorch-compile" if a.compile else "pytorch-eager", "torch": torch.__version__,
           "threads": a.threads, "batch": a.batch,
           "steps": a.steps, "params": sum(p.numel() for p in model.parameters()),
           "median_step_ms": 1e3 * statistics.median(times[min(10, len(times) - 1):])}
    if a.eval:
        with torch.no_grad():
            for e, q in zip(ema, model.parameters()):
                q.copy_(e)
        g = torch.Generator().manual_seed(12345)
        with torch.no_grad():
            xt = 2 * (pix[1500:] + torch.rand(len(pix) - 1500, 64, generator=g)) / 17 - 1
            n = nll(model, xt, lab[1500:]).item()
        out["test_bpd"] = (n - 64 * math.log(2 / 17)) / (64 * math.log(2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
