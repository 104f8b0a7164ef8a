"""A table for two export forms of the same models timed in one interleaved bench run: per model and runtime/batch,
the mean latency of form A and form B and B's speedup over A (> 1: B is faster). The files are named MODEL-A.onnx
and MODEL-B.onnx. Usage: form-table.py BENCH.json A B MODEL..."""
import json
import sys

from table_format import by_cell

bench = json.load(open(sys.argv[1]))
a_form, b_form, models = sys.argv[2], sys.argv[3], sys.argv[4:]
real, _ = by_cell(bench)
cells = [(rt, b) for rt in ("tract", "ort") for b in (1, 8) if (rt, b) in real]
first = real[cells[0]]
tokens = next(iter(first.values()))["mean_tokens"]
print(f"{bench['machine']['cpu']}, 1 thread; {bench['real'][0]['rows']} sentences at their own length "
      f"({tokens:.1f} tokens per row); mean ms per batch, {a_form} -> {b_form} ({b_form}'s speedup over {a_form})")
print("| model | " + " | ".join(f"{'ORT' if rt == 'ort' else rt} b{b}" for rt, b in cells) + " |")
print("|---|" + "---|" * len(cells))
for m in models:
    row = []
    for c in cells:
        a, r = real[c].get(f"{m}-{a_form}"), real[c].get(f"{m}-{b_form}")
        row.append("-" if a is None or r is None else
                   f"{a['mean_ms']:.2f} -> {r['mean_ms']:.2f} ({a['mean_ms'] / r['mean_ms']:.2f}x)")
    print(f"| {m} | " + " | ".join(row) + " |")
