"""The tables of scripts/int8-forms-minilm: accuracy of the dense model's int8 variants (validation for the choice,
test for the figure, paired against dense f32), then per model and runtime the mean latency at real length (batch
1 and 8) and p50 at 1 x 128, with speedups over dense f32 and over the model's own f32 twin, from one bench run per
runtime. Usage: int8-forms-table.py OUT"""
import json
import sys

from table_format import by_cell, diff, interval, name, pct

out = sys.argv[1]
print("Accuracy (dense model; ONNX Runtime; paired against dense f32 on the same rows)\n")
print("| model | validation | vs dense f32 | test [95 %] | vs dense f32, paired |")
print("|---|---|---|---|---|")
for m in ["dense", "dense-dyn-integer", "dense-static-integer", "dense-static-minmax", "dense-ortq"]:
    v = json.load(open(f"{out}/val-{m}.json"))
    e = json.load(open(f"{out}/eval-{m}.json"))
    dv = diff(v["against"]["diff"]) if m != "dense" else "-"
    de = diff(e["against"]["diff"]) if m != "dense" else "-"
    print(f"| {m} | {pct(v['accuracy'])} | {dv} | {pct(e['accuracy'])} {interval(e['ci95'])} | {de} |")

for rt in ["tract", "ort"]:
    bench = json.load(open(f"{out}/bench-{rt}.json"))
    real, synth = by_cell(bench)
    tokens = bench["real"][0]["models"][0]["mean_tokens"]
    rows = bench["real"][0]["rows"]
    print(f"\n{rt}: mean latency (speedup over dense f32; over the f32 twin) at real length ({rows} MR sentences, "
          f"{tokens:.1f} tokens on average) and p50 at 1 x 128; {bench['machine']['cpu']}, 1 thread\n")
    print("| model | real b1 | real b8 | 1x128 p50 |")
    print("|---|---|---|---|")
    for m in bench["models"]:
        n = name(m["model"])
        twin = n.split("-")[0]
        cells = []
        for b in [1, 8]:
            c = real[(rt, b)]
            v = c[n]["mean_ms"]
            cells.append(f"{v:.2f} ms ({c['dense']['mean_ms'] / v:.2f}x; {c[twin]['mean_ms'] / v:.2f}x)")
        c = synth[(rt, 1)]
        v = c[n]["p50_ms"]
        cells.append(f"{v:.2f} ms ({c['dense']['p50_ms'] / v:.2f}x; {c[twin]['p50_ms'] / v:.2f}x)")
        print(f"| {n} | " + " | ".join(cells) + " |")
print("\ndyn: `quant` (activations quantized per call); static: `quant(activations=static)` (ranges calibrated on "
      "256 training rows: the mean of each row's extremes; static-minmax: the extremes over all rows); integer / qdq / ort: `--int8-form`; ortq: ONNX Runtime 1.31.1 `quantize_dynamic` "
      "(QInt8, per tensor) on the same f32 file. deep = heads 75 % + ffn 75 %, not recovered (latency only).")
