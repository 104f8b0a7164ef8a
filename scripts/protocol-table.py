"""Markdown table of scripts/protocol-minilm-mr's results: test accuracy with its 95 % interval, the paired
difference against dense, out-of-domain accuracy, and latency at real length and at 128 tokens.
Usage: python3 scripts/protocol-table.py OUT_DIR EXIT_PIPELINE   (EXIT_PIPELINE "-": no exit line)"""
import json
import sys

from table_format import by_cell, diff, interval, name, pct

out, exit_pass = sys.argv[1], sys.argv[2]
bench = json.load(open(f"{out}/bench.json"))


real, synth = by_cell(bench)
rows = bench["real"][0]["rows"]
tokens = bench["real"][0]["models"][0]["mean_tokens"]
m0 = bench["machine"]
print(f"{m0['cpu']}, {m0['cores']} cores, 1 thread. Test: {bench['models'][0]['examples']} MR rows; "
      f"latency on the {rows} test sentences at their own length ({tokens:.1f} tokens per row on average).")
if exit_pass != "-":
    print(f"exit = `{exit_pass}` (chosen on validation).")
print()
print("| model | test accuracy [95 %] | vs dense, paired [95 %] | out of domain (IMDB) | vs dense | "
      "tract b1 | tract b8 | ORT b1 | ORT b8 | tract 1x128 | ORT 1x128 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in bench["models"]:
    n = name(m["model"])
    ood = json.load(open(f"{out}/ood-{n}.json"))
    od = ood["against"]["diff"] if n != "dense" else None
    cells = []
    for rt in ("tract", "ort"):
        for b in (1, 8):
            t = real[(rt, b)][n]
            layers = f", {t['avg_layers']:.2f} layers" if t.get("avg_layers") is not None and b == 1 else ""
            cells.append(f"{t['mean_ms']:.1f} ms ({t['speedup_mean']:.2f}x{layers})")
    for rt in ("tract", "ort"):
        t = synth.get((rt, 1), {}).get(n)
        cells.append("-" if t is None else f"{t['p50_ms']:.1f} ms ({t['speedup_vs_first']:.2f}x)")
    print(f"| {n} | {pct(m['accuracy'])} {interval(m['ci95'])} | {diff(m.get('diff_vs_first'))} | "
          f"{pct(ood['accuracy'])} {interval(ood['ci95'])} | {diff(od)} | " + " | ".join(cells) + " |")
print()
print("Latency: mean per batch at real length (speedup of the mean over dense in the same run); 1x128: synthetic, p50.")
print("(=): the paired interval contains 0, no measurable difference from dense.")

try:
    plans = json.load(open(f"{out}/bench-plans.json"))
except FileNotFoundError:
    plans = None
if plans:
    print()
    print("tract, batch 1, the same test sentences: one symbolic-length plan vs a plan per input shape "
          "(built during warm-up; warm-up seconds include planning)")
    print("| plans | " + " | ".join(name(m["model"]) for m in plans["real"][0]["models"]) + " |")
    print("|---|" + "---|" * len(plans["real"][0]["models"]))
    for c in plans["real"]:
        cells = [f"{m['mean_ms']:.2f} ms ({m['speedup_mean']:.2f}x; warm-up {m['warmup_s']:.1f} s)" for m in c["models"]]
        print(f"| {c['tract_plans']} | " + " | ".join(cells) + " |")
