"""Markdown table of a cut measured under the protocol (scripts/layers-minilm-mr, scripts/hidden-minilm-mr): per model, test accuracy with its 95 % interval, the paired
differences against dense (test and out of domain), parameters, the FLOPs ratio at the test sentences' mean length,
latency at real length in tract and ONNX Runtime (batch 1 and 8, all models interleaved in one run) and each
runtime's batch-1 speedup divided by the FLOPs ratio; then each checkpoint's best validation accuracy, the layers
its recovery skipped and the hidden features it removed (training.json), and what validation chose (choice.txt).
Usage: python3 scripts/cut-table.py OUT_DIR PROTOCOL_DIR CHECKPOINT... (the checkpoints under OUT_DIR)"""
import json
import os
import re
import sys

from table_format import by_cell, diff, flops_ratios, interval, name

out = sys.argv[1]
bench = json.load(open(f"{out}/bench.json"))


real, _ = by_cell(bench)
first = bench["real"][0]
tokens = first["models"][0]["mean_tokens"]
dense = bench["models"][0]
m0 = bench["machine"]
ratio = flops_ratios(bench, tokens)

print(f"{m0['cpu']}, {m0['cores']} cores, 1 thread. Test: {dense['examples']} MR rows; out of domain: 1,000 UCI "
      f"IMDB sentences; latency: mean per batch on the {first['rows']} test sentences at their own length "
      f"({tokens:.1f} tokens per row), speedup of the mean over dense in the same run.")
print()
print("| model | pipeline | test accuracy [95 %] | vs dense, paired [95 %] | IMDB vs dense | params | "
      f"FLOPs ratio @{tokens:.0f} | tract b1 | tract b8 | ORT b1 | ORT b8 | b1 speedup / FLOPs ratio (tract, ORT) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for m in bench["models"]:
    n = name(m["model"])
    ood = json.load(open(f"{out}/ood-{n}.json"))
    pipe = re.sub(r"scores=[^,)]*", "scores", m["pipeline"]) or "-"
    times = [f"{real[(rt, b)][n]['mean_ms']:.1f} ms ({real[(rt, b)][n]['speedup_mean']:.2f}x)"
             for rt in ("tract", "ort") for b in (1, 8)]
    per_flop = [f"{real[(rt, 1)][n]['speedup_mean'] / ratio[n]:.2f}" for rt in ("tract", "ort")]
    print(f"| {n} | `{pipe}` | {100 * m['accuracy']:.2f} {interval(m['ci95'])} | {diff(m.get('diff_vs_first'))} | "
          f"{diff(ood['against']['diff']) if n != 'dense' else '-'} | {m['params'] / 1e6:.2f} M | {ratio[n]:.2f}x | "
          + " | ".join(times) + f" | {', '.join(per_flop)} |")
print()
print("(=): the paired interval contains 0, no measurable difference from dense.")
print()
print("Validation (400 rows, the best epoch's accuracy; dense and deep from the protocol):")
for n, d in [("dense", f"{sys.argv[2]}/dense"), ("deep", f"{sys.argv[2]}/deep")] + [
        (n, f"{out}/{n}") for n in sys.argv[3:]]:
    t = json.load(open(f"{d}/training.json"))
    dropped = t["metadata"].get("layers_dropped")
    hidden = t["metadata"].get("hidden_removed")
    print(f"- {n}: {100 * t['best_accuracy']:.2f} %" + (f", layers dropped {dropped}" if dropped else "")
          + (f", hidden features removed {len(json.loads(hidden))}" if hidden else ""))
choice = f"{out}/choice.txt"
if os.path.exists(choice):
    print()
    print(f"Chosen on validation: {open(choice).read().strip()}.")
