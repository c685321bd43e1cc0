#!/usr/bin/env python3
"""Builds the like-with-like speed table (docs/performance.md) from one bench_biflow JSON run:
    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive build/benchmarks/bench_biflow --benchmark_repetitions=3 \
        --benchmark_report_aggregates_only=true --benchmark_out=bench_biflow.json --benchmark_out_format=json
    python3 benchmarks/speed_table.py bench_biflow.json
Every ratio compares two rows of the same run at the same T, batch and guidance: decode only vs G without its
denoise stage, decode + score denoising vs G with its denoise stage; G with 2 stages (the digits default) and with
8 (F's depth). Times are medians over the repetitions, per batch."""
import json
import sys


def main(path):
    run = json.load(open(path))
    t = {}
    for b in run["benchmarks"]:
        if b.get("aggregate_name", "median") != "median":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        t[name] = b["real_time"]  # ms (the benchmarks use kMillisecond)
    ctx = run["context"]
    print(f"<!-- {ctx.get('host_name', '')}, {ctx.get('num_cpus')} CPUs, {ctx.get('date')} -->")
    print("| T | batch | w | decode (ms) | G 2 stages, no denoise | ratio | G 8 stages, no denoise | ratio "
          "| decode + score denoise (ms) | G 2 + denoise stage | ratio | G 8 + denoise stage | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for T in (16, 256):
        for n in (1, 100):
            for w in (0, 1):
                d = t.get(f"BM_Decode/{T}/{n}/{w}/real_time")
                dd = t.get(f"BM_DecodeDenoise/{T}/{n}/{w}/real_time")
                g = {(dn, s): t.get(f"BM_G/{T}/{n}/{w}/{dn}/{s}/real_time") for dn in (0, 1) for s in (2, 8)}
                if d is None or dd is None or None in g.values():
                    continue
                cells = [f"{d:.3g}"]
                for s in (2, 8):
                    cells += [f"{g[(0, s)]:.3g}", f"{d / g[(0, s)]:.1f}×"]
                cells.append(f"{dd:.3g}")
                for s in (2, 8):
                    cells += [f"{g[(1, s)]:.3g}", f"{dd / g[(1, s)]:.1f}×"]
                print(f"| {T} | {n} | {w} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
