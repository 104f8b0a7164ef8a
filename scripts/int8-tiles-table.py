"""The table of scripts/int8-tiles-minilm: per model, mean latency and speedup against the first (dense f32) model,
at real length (batch 1 and 8) and at a synthetic 1 x 128, in tract and ONNX Runtime, from one bench run."""
import json
import os
import sys

r = json.load(open(sys.argv[1]))
names = [os.path.basename(m["model"]).removesuffix(".onnx") for m in r["models"]]
cols = []
for c in r["real"]:
    cols.append((f"{c['runtime']} real b{c['batch']}", {os.path.basename(m["model"]).removesuffix(".onnx"): m for m in c["models"]}, "speedup_mean"))
for c in r["cells"]:
    if c["batch"] == 1:
        cols.append((f"{c['runtime']} 1x{c['seq']}", {os.path.basename(m["model"]).removesuffix(".onnx"): m for m in c["models"]}, "speedup_vs_first"))
flops = {os.path.basename(m["model"]).removesuffix(".onnx"): m for m in r["models"]}
tokens = r["real"][0]["models"][0]["mean_tokens"]
print(f"Mean latency and speedup vs dense f32 (real length: {r['real'][0]['rows']} MR sentences, {tokens:.1f} tokens on average; {r['machine']['cpu']}, 1 thread)\n")
print("| model | pipeline | " + " | ".join(c[0] for c in cols) + " |")
print("|---|---|" + "---|" * len(cols))
for n, m in zip(names, r["models"]):
    cells = [f"{c[1][n]['mean_ms']:.2f} ms ({c[1][n][c[2]]:.2f}x)" for c in cols]
    form = " (`--int8-tiles gather`)" if n.endswith("-gather") else ""
    print(f"| {n} | `{m['pipeline'] or 'dense'}`{form} | " + " | ".join(cells) + " |")
