"""The table of scripts/stream-minilm-mr: per model and runtime/batch, the mean latency of the batched and the
rows form on the same sentences in one interleaved run, and rows' speedup over batched (> 1: rows is faster)."""
import json
import sys

from table_format import by_cell

bench = json.load(open(sys.argv[1]))
real, _ = by_cell(bench)
cells = [(rt, b) for rt in ("tract", "ort") for b in (1, 8) if (rt, b) in real]
first = real[cells[0]]
tokens = next(iter(first.values()))["mean_tokens"]
print(f"{bench['machine']['cpu']}, 1 thread; {bench['real'][0]['rows']} validation sentences at their own length "
      f"({tokens:.1f} tokens per row); mean ms per batch, batched -> rows (rows' speedup over batched)")
print("| model | " + " | ".join(f"{'ORT' if rt == 'ort' else rt} b{b}" for rt, b in cells) + " |")
print("|---|" + "---|" * len(cells))
for m in ("dense", "deep", "deep-int8", "exit"):
    row = []
    for c in cells:
        a, r = real[c].get(f"{m}-batched"), real[c].get(f"{m}-rows")
        row.append("-" if a is None or r is None else
                   f"{a['mean_ms']:.2f} -> {r['mean_ms']:.2f} ({a['mean_ms'] / r['mean_ms']:.2f}x)")
    print(f"| {m} | " + " | ".join(row) + " |")
