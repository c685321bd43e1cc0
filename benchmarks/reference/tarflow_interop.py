#!/usr/bin/env python3
"""Generates tests/data/interop/: a small class-conditional TARFlow written in PyTorch with the module names of
Apple's public PyTorch TARFlow (ml-tarflow), its weights as a safetensors checkpoint, and inputs + expected
outputs that tests/test_interop.cpp checks biflow against (interop::import_ml_tarflow, docs/interop.md).

The model follows the published architecture (Zhai et al. 2024), written here from the paper, not copied:
  tokens   = unfold(image, patch) -> (L, C·p·p), values [c][py][px] inside a token, tokens in raster order
  block i  = permute tokens (identity for even i, flip for odd i); h = proj_in(x) + pos_embed[perm] + class_embed[y]
             (y = None: the mean of class_embed); K pre-norm causal layers (attention, GELU MLP 4x);
             (alpha, mu) = proj_out(h) shifted one token right (token 0 gets zeros); z = (x - mu)·exp(-alpha);
             permute back.  log-det = -sum(alpha)  (ml-tarflow reports the mean; biflow the sum)
The reference runs in float64 on weights rounded to float32 (the file's dtype), so a biflow Cpu<double> model
loaded from the file must agree to ~1e-10 and a Cpu<float> one to float rounding.

  pip install torch numpy
  python3 benchmarks/reference/tarflow_interop.py            # rewrites tests/data/interop/*.safetensors
Never a dependency of biflow; the generated files are committed.
"""
import json, math, os, struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "interop")
CFG = dict(channels=2, img_size=8, patch_size=2, width=16, heads=2, blocks=3, layers=2, classes=3, expansion=4)


class Attention(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.norm, self.qkv, self.proj, self.heads = nn.LayerNorm(c), nn.Linear(c, 3 * c), nn.Linear(c, c), heads

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, t, 3 * self.heads, -1).transpose(1, 2).chunk(3, dim=1)
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(a.transpose(1, 2).reshape(n, t, c))


class Mlp(nn.Module):
    def __init__(self, c, e):
        super().__init__()
        self.norm = nn.LayerNorm(c)
        self.main = nn.Sequential(nn.Linear(c, e * c), nn.GELU(), nn.Linear(e * c, c))

    def forward(self, x):
        return self.main(self.norm(x))


class AttentionBlock(nn.Module):
    def __init__(self, c, heads, e):
        super().__init__()
        self.attention, self.mlp = Attention(c, heads), Mlp(c, e)

    def forward(self, x):
        x = x + self.attention(x)
        return x + self.mlp(x)


class MetaBlock(nn.Module):
    def __init__(self, tokens, d, c, heads, layers, classes, e, flip):
        super().__init__()
        self.proj_in = nn.Linear(d, c)
        self.pos_embed = nn.Parameter(torch.randn(tokens, c) * 0.5)
        self.class_embed = nn.Parameter(torch.randn(classes, 1, c) * 0.5)
        self.attn_blocks = nn.ModuleList(AttentionBlock(c, heads, e) for _ in range(layers))
        self.proj_out = nn.Linear(c, 2 * d)
        nn.init.normal_(self.proj_out.weight, std=0.05)  # non-zero so every block really transforms
        self.register_buffer("attn_mask", torch.tril(torch.ones(tokens, tokens)))  # as in ml-tarflow checkpoints
        self.flip = flip

    def perm(self, x):
        return x.flip(1) if self.flip else x

    def params(self, x, y):
        h = self.proj_in(x) + self.perm(self.pos_embed[None])
        h = h + (self.class_embed.mean(0)[None] if y is None else self.class_embed[y])
        for b in self.attn_blocks:
            h = b(h)
        o = self.proj_out(h)
        o = torch.cat([torch.zeros_like(o[:, :1]), o[:, :-1]], 1)
        return o.chunk(2, -1)

    def forward(self, x, y):
        x = self.perm(x)
        alpha, mu = self.params(x, y)
        return self.perm((x - mu) * torch.exp(-alpha)), -alpha.sum((1, 2))

    def reverse(self, z, y):  # token by token, no cache: the plainest exact inverse
        z = self.perm(z)
        x = z.clone()
        for t in range(1, z.shape[1]):
            alpha, mu = self.params(x, y)
            x[:, t] = z[:, t] * torch.exp(alpha[:, t]) + mu[:, t]
        return self.perm(x)


class TarFlow(nn.Module):
    def __init__(self, channels, img_size, patch_size, width, heads, blocks, layers, classes, expansion):
        super().__init__()
        self.p, self.size = patch_size, img_size
        tokens, d = (img_size // patch_size) ** 2, channels * patch_size ** 2
        self.blocks = nn.ModuleList(MetaBlock(tokens, d, width, heads, layers, classes, expansion, i % 2 == 1)
                                    for i in range(blocks))
        self.register_buffer("var", torch.ones(tokens, d))

    def forward(self, img, y):
        x = F.unfold(img, self.p, stride=self.p).transpose(1, 2)
        ld = torch.zeros(img.shape[0], dtype=img.dtype)
        for b in self.blocks:
            x, l = b(x, y)
            ld = ld + l
        return x, ld

    def reverse(self, z, y):
        for b in reversed(self.blocks):
            z = b.reverse(z, y)
        return F.fold(z.transpose(1, 2), (self.size, self.size), self.p, stride=self.p)


def write_safetensors(path, tensors, metadata, dtype="F32"):
    """The format (https://huggingface.co/docs/safetensors): u64 header size, JSON header, raw little-endian data."""
    header, blobs, off = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4" if dtype == "F32" else "<f8"))
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    torch.manual_seed(20261124)
    m = TarFlow(**CFG)
    with torch.no_grad():  # round every weight to float32 (the file's dtype), then compute in float64
        for p in m.parameters():
            p.copy_(p.float())
    m = m.double()
    n, c, s = 6, CFG["channels"], CFG["img_size"]
    x = (torch.rand(n, c, s, s) * 2 - 1).float().double()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    noise = torch.randn(4, (s // CFG["patch_size"]) ** 2, c * CFG["patch_size"] ** 2).float().double()
    ys = torch.tensor([2, 0, 1, 2])
    with torch.no_grad():
        z, ld = m(x, y)
        zu, ldu = m(x, None)
        xs = m.reverse(noise, ys)
        xu = m.reverse(noise, None)
        back, _ = m(xs, ys)
    assert torch.allclose(back, noise, atol=1e-9), "reference inverse does not round-trip"
    os.makedirs(OUT, exist_ok=True)
    state = {k: v for k, v in m.state_dict().items()}
    write_safetensors(os.path.join(OUT, "ml_tarflow_small.safetensors"), state,
                      {"format": "pt", "config": json.dumps(CFG), "generator": "benchmarks/reference/tarflow_interop.py"})
    flat = lambda t: t.reshape(t.shape[0], -1)
    io = {"x": flat(x), "y": y.double()[:, None], "z": flat(z), "logdet": ld[:, None], "z_uncond": flat(zu),
          "logdet_uncond": ldu[:, None], "noise": flat(noise), "noise_labels": ys.double()[:, None],
          "samples": flat(xs), "samples_uncond": flat(xu)}
    write_safetensors(os.path.join(OUT, "ml_tarflow_small_io.safetensors"), io,
                      {"note": "x: N x (C*H*W) CHW rows; z: N x (L*D) token-major; logdet = sum convention"}, "F64")
    print(json.dumps({"params": sum(p.numel() for p in m.parameters()), "logdet": ld.tolist(),
                      "max_abs_z": z.abs().max().item(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
