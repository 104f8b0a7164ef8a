"""The table of scripts/static-int8-minilm-mr: per model, validation and test accuracy with the paired difference
against dense f32, out of domain the same, and mean latency at real length (batch 1 and 8) in tract and ONNX Runtime
with the speedup over dense f32 and over the model's own f32 twin, from one bench run. Usage:
static-int8-table.py OUT MODEL..."""
import json
import sys

from table_format import by_cell, diff, interval, pct

out, models = sys.argv[1], sys.argv[2:]
bench = json.load(open(f"{out}/bench.json"))
real, _ = by_cell(bench)
tokens = bench["real"][0]["models"][0]["mean_tokens"]
print(f"{bench['machine']['cpu']}, 1 thread. Latency: mean per batch on {bench['real'][0]['rows']} MR test sentences "
      f"at their own length ({tokens:.1f} tokens), speedup over dense f32 (and over the f32 twin), one run.\n")
print("| model | validation vs dense | test [95 %] | test vs dense, paired | IMDB vs dense | tract b1 | tract b8 | ORT b1 | ORT b8 |")
print("|---|---|---|---|---|---|---|---|---|")
for m in models:
    v, e, o = (json.load(open(f"{out}/{k}-{m}.json")) for k in ("val", "eval", "ood"))
    d = lambda r: diff(r["against"]["diff"]) if m != "dense" else "-"
    twin = m.removesuffix("-s8")
    cells = []
    for rt in ["tract", "ort"]:
        for b in [1, 8]:
            c = real[(rt, b)]
            x = c[m]["mean_ms"]
            t = f"; {c[twin]['mean_ms'] / x:.2f}x twin" if twin != m else ""
            cells.append(f"{x:.2f} ms ({c['dense']['mean_ms'] / x:.2f}x{t})")
    print(f"| {m} | {pct(v['accuracy'])} {d(v)} | {pct(e['accuracy'])} {interval(e['ci95'])} | {d(e)} | {d(o)} | "
          + " | ".join(cells) + " |")
cuts = {"deep": "heads 75 % + ffn 75 %", "deeph25": "deep + hidden(ratio=0.25)", "deep5": "deep + layers(keep=5)"}
named = "; ".join(f"{k} = {v}" for k, v in cuts.items() if k in models)
print("\n-s8: `quant(activations=static)` (int8 weights per column, activation ranges calibrated on 256 training rows, "
      f"the mean of each row's extremes). {named}; each recovered with distillation. (=): the paired interval "
      "contains 0.")
