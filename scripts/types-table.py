"""Markdown tables of scripts/types-minilm-mr's results. First, per TileSparsity variant: test accuracy with its 95 %
interval, the paired differences against dense (test and out of domain), parameters, the FLOPs ratio at the test
sentences' mean length and synthetic 1 x 128 p50 in tract (each model timed on its own). Second, latency at real
length in tract and ONNX Runtime (batch 1 and 8, all variants interleaved) with the tract batch-1 speedup over the
FLOPs ratio; the shape-preserving `vw`/`bw` rows are its control (they should read about 1.00x).
Usage: python3 scripts/types-table.py OUT_DIR"""
import json
import os
import re
import sys

from table_format import by_cell, diff, flops_ratios, interval, name

out = sys.argv[1]
bench = json.load(open(f"{out}/bench.json"))


real, synth = by_cell(bench)
tokens = bench["real"][0]["models"][0]["mean_tokens"]
rows = bench["real"][0]["rows"]
dense = bench["models"][0]
m0 = bench["machine"]
names = [name(m["model"]) for m in bench["models"]]
ratio = flops_ratios(bench, tokens)

print(f"{m0['cpu']}, {m0['cores']} cores, 1 thread. Test: {dense['examples']} MR rows; out of domain: 1,000 UCI "
      f"IMDB sentences; FLOPs at the {rows} test sentences' mean length ({tokens:.1f} tokens per row).")
print()
print(f"| variant | pipeline | test accuracy [95 %] | vs dense, paired [95 %] | IMDB vs dense | params | "
      f"FLOPs ratio @{tokens:.0f} | tract 1x128 p50 |")
print("|---|---|---|---|---|---|---|---|")
for m, n in zip(bench["models"], names):
    ood = json.load(open(f"{out}/ood-{n}.json"))
    pipe = re.sub(r",?scores=[^,)]*", "", m["pipeline"]) or "-"  # every cut is Taylor-ranked
    s = synth[("tract", 1)][n]
    print(f"| {n} | `{pipe}` | {100 * m['accuracy']:.2f} {interval(m['ci95'])} | {diff(m.get('diff_vs_first'))} | "
          f"{diff(ood['against']['diff']) if n != 'dense' else '-'} | {m['params'] / 1e6:.2f} M | {ratio[n]:.2f}x | "
          f"{s['p50_ms']:.1f} ms ({s['speedup_vs_first']:.2f}x) |")
print()
print("(=): the paired interval contains 0, no measurable difference from dense.")
print()
print(f"Latency at real length: mean per batch on the {rows} test sentences, speedup of the mean over dense in the "
      "same run.")
print()
print("| variant | tract b1 | tract b8 | ORT b1 | ORT b8 | tract b1 speedup / FLOPs ratio |")
print("|---|---|---|---|---|---|")
for n in names:
    times = [f"{real[(rt, b)][n]['mean_ms']:.1f} ms ({real[(rt, b)][n]['speedup_mean']:.2f}x)"
             for rt in ("tract", "ort") for b in (1, 8)]
    print(f"| {n} | " + " | ".join(times) + f" | {real[('tract', 1)][n]['speedup_mean'] / ratio[n]:.2f} |")

control = f"{sys.argv[1]}/bench-control.json"
if os.path.exists(control):
    c = json.load(open(control))["real"][0]
    m = c["models"]
    print()
    print(f"Control, three models in one run (tract b1, {c['rows']} validation sentences): dense "
          f"{m[0]['mean_ms']:.2f} ms, vw50 {m[1]['mean_ms']:.2f} ms ({m[1]['speedup_mean']:.2f}x), dense again "
          f"{m[2]['mean_ms']:.2f} ms ({m[2]['speedup_mean']:.2f}x).")
