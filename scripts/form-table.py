"""A table for two export forms of the same models timed in one interleaved bench run: per model and runtime/batch,
the mean latency of form A and form B and B's speedup over A (> 1: B is faster). The files are named MODEL-A.onnx
and MODEL-B.onnx. Usage: form-table.py [--rows WHAT] BENCH.json A B MODEL... (WHAT: what the bench's rows are,
default "sentences")."""
import json
import sys

from table_format import by_cell

args = sys.argv[1:]
what = "sentences"
if args[0] == "--rows":
    what, args = args[1], args[2:]
bench = json.load(open(args[0]))
a_form, b_form, models = args[1], args[2], args[3:]
owner = f"{b_form}'" if b_form.endswith("s") else f"{b_form}'s"
real, _ = by_cell(bench)
cells = [(rt, b) for rt in ("tract", "ort") for b in (1, 8) if (rt, b) in real]
first = real[cells[0]]
tokens = next(iter(first.values()))["mean_tokens"]
print(f"{bench['machine']['cpu']}, 1 thread; {bench['real'][0]['rows']} {what} at their own length "
      f"({tokens:.1f} tokens per row); mean ms per batch, {a_form} -> {b_form} ({owner} speedup over {a_form})")
print("| model | " + " | ".join(f"{'ORT' if rt == 'ort' else rt} b{b}" for rt, b in cells) + " |")
print("|---|" + "---|" * len(cells))
for m in models:
    row = []
    for c in cells:
        a, r = real[c].get(f"{m}-{a_form}"), real[c].get(f"{m}-{b_form}")
        row.append("-" if a is None or r is None else
                   f"{a['mean_ms']:.2f} -> {r['mean_ms']:.2f} ({a['mean_ms'] / r['mean_ms']:.2f}x)")
    print(f"| {m} | " + " | ".join(row) + " |")
