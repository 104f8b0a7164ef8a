"""tract's node time per operator kind under three plans of the same model and rows, from `optimize profile --json`
runs with `--plan exact`, `per-batch` and `symbolic` (in that order): which kinds a plan over a symbolic batch makes
slower, and which nodes it leaves unfused. Usage: plan-profile.py EXACT.json PER_BATCH.json SYMBOLIC.json"""
import json
import sys

from table_format import name

plans = ["exact shape", "per batch size", "symbolic batch"]
runs = [json.load(open(f)) for f in sys.argv[1:4]]
first = runs[0][0]
print(f"tract, batch {first['batch']}, seq {first['seq']}, {first['iters']} runs; summed node time per run in ms "
      "(nodes), by operator kind, under each plan:\n")
for k, model in enumerate(runs[0]):
    profiles = [r[k] for r in runs]
    kinds = {}
    for j, p in enumerate(profiles):
        for o in p["ops"]:
            kinds.setdefault(o["op"], [None] * 3)[j] = o
    print(f"{name(model['model'])}:\n")
    print("| operator | " + " | ".join(plans) + " |")
    print("|---|---|---|---|")
    order = sorted(kinds, key=lambda op: -max(o["ms"] if o else 0 for o in kinds[op]))
    for op in order:
        cells = [f"{o['ms']:.3f} ({o['nodes']})" if o and o["nodes"] else "-" for o in kinds[op]]
        if all(o is None or o["ms"] < 0.005 for o in kinds[op]):
            continue
        print(f"| {op} | " + " | ".join(cells) + " |")
    print("| total | " + " | ".join(f"{p['total_ms']:.3f}" for p in profiles) + " |\n")
print("Kinds under 0.005 ms in every plan are left out (constants, sources, casts).")
