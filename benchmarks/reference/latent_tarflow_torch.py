#!/usr/bin/env python3
"""The latent TARFlow of examples/latent_biflow.cpp (class-conditional, patch 2 on C x S x S latents) in PyTorch eager,
to compare a training step's time and peak memory with biflow's on the same GPU (or CPU). Reuses the layer and
block definitions of tarflow_torch.py (same architecture as biflow's TarBlock). Never a dependency of biflow.

  python3 latent_tarflow_torch.py --device cuda --width 768 --heads 12 --blocks 8 --layers 2 --batch 64
  python3 latent_tarflow_torch.py --device cuda ... --tf32          # TF32 tensor-core matmuls
Prints one JSON line: median step time over the timed steps, tokens/s, peak memory.
"""
import argparse, json, math, os, statistics, sys, time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tarflow_torch import Block  # noqa: E402


class LatentTarFlow(nn.Module):
    def __init__(self, channels, size, patch, width, blocks, layers, heads, classes):
        super().__init__()
        self.c, self.s, self.p = channels, size, patch
        tokens, d = (size // patch) ** 2, channels * patch * patch
        self.blocks = nn.ModuleList(Block(tokens, d, width, layers, heads, classes, i % 2 == 1) for i in range(blocks))
        self.tokens, self.d = tokens, d

    def forward(self, img, y):  # img: n x C*S*S (CHW); tokens row-major over patches, channel-major inside a patch
        n, g = img.shape[0], self.s // self.p
        x = img.view(n, self.c, g, self.p, g, self.p).permute(0, 2, 4, 1, 3, 5).reshape(n, self.tokens, self.d)
        ld = torch.zeros(n, device=img.device)
        for b in self.blocks:
            x, l = b(x, y)
            ld = ld + l
        return x.reshape(n, -1), ld


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--patch", type=int, default=2)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--blocks", type=int, default=8)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--classes", type=int, default=1000, help="as bench_cuda's latent configuration")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--bf16", action="store_true",
                   help="autocast to bfloat16 (PyTorch's usual bf16 row: every autocast op in bf16, not only the "
                        "GEMM operands as biflow's bf16 math mode)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (the compiled row)")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    torch.backends.cudnn.allow_tf32 = a.tf32
    dev = torch.device(a.device)
    torch.manual_seed(0)
    model = LatentTarFlow(a.channels, a.size, a.patch, a.width, a.blocks, a.layers, a.heads, a.classes).to(dev)
    # PyTorch at its best: fused AdamW, foreach clipping, gradients set to None; --compile for the compiled row.
    params = list(model.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=1e-4, fused=True)
    fwd = torch.compile(model) if a.compile else model
    D = a.channels * a.size * a.size
    x_all = torch.randn(4 * a.batch, D, device=dev)
    y_all = torch.randint(0, a.classes + 1, (4 * a.batch,), device=dev)
    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for s in range(a.steps):
        i = torch.randint(0, 4 * a.batch, (a.batch,), device=dev)
        x = x_all[i] + 0.05 * torch.randn(a.batch, D, device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            z, ld = fwd(x, y_all[i])
        z, ld = z.float(), ld.float()
        loss = (0.5 * (z ** 2).sum(1) + 0.5 * D * math.log(2 * math.pi) - ld).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        loss_value = loss.item()  # biflow's step returns the loss too (one device -> host read)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times[min(5, len(times) - 1):])
    out = {"impl": "pytorch-compile" if a.compile else "pytorch-eager", "torch": torch.__version__, "device": str(dev),
           "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "", "tf32": a.tf32, "bf16": a.bf16, "classes": a.classes, "batch": a.batch,
           "width": a.width, "blocks": a.blocks, "layers": a.layers, "params": sum(q.numel() for q in model.parameters()),
           "median_step_ms": 1e3 * med, "tokens_per_s": a.batch * model.tokens / med, "last_loss": loss_value,
           "peak_mib": torch.cuda.max_memory_allocated() / 2 ** 20 if dev.type == "cuda" else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
