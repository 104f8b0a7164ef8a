"""The tables of scripts/turns-minilm-mr: per model, its test accuracy with its 95 % interval and the paired
difference against dense (from the `optimize eval --json` files EVAL_DIR/eval-MODEL.json that
scripts/deep5-int8-minilm-mr writes), its FLOPs ratio to dense at the sentences' mean length and its mean latency at
real length (speedup over dense in the same run), with models taking turns of 25 batches and alternating every
batch, tract planned per batch size and over a symbolic batch, and each model alone; then what each cut returns of
its FLOPs ratio. Usage: turns-table.py OUT EVAL_DIR MODEL... (the first model is dense)."""
import json
import sys

from table_format import diff, flops_ratios, interval, name, pct

out, evals, models = sys.argv[1], sys.argv[2], sys.argv[3:]
runs = {b: json.load(open(f"{out}/block-{b}.json")) for b in (1, 25)}
alone = {m: json.load(open(f"{out}/alone-{m}.json")) for m in models}
first = runs[25]["real"][0]
tokens = first["models"][0]["mean_tokens"]
ratio = flops_ratios(runs[25], tokens)


def cells(bench):
    """(runtime, batch, tract plans) -> model name -> timing."""
    return {(c["runtime"], c["batch"], c.get("tract_plans")): {name(t["model"]): t for t in c["models"]}
            for c in bench["real"]}


def alone_ms(m, rt):
    (c,) = [c for c in alone[m]["real"] if c["runtime"] == rt and c["batch"] == 1]
    return c["models"][0]["mean_ms"]


def accuracy(m):
    e = json.load(open(f"{evals}/eval-{m}.json"))
    paired = diff(e["against"]["diff"]) if m != models[0] else "-"
    return f"{pct(e['accuracy'])} {interval(e['ci95'])}", paired


c = {b: cells(r) for b, r in runs.items()}
print(f"{runs[25]['machine']['cpu']}, 1 thread; {first['rows']} MR test sentences at their own length "
      f"({tokens:.1f} tokens per row); mean ms per batch (speedup over dense in the same run).\n")
cols = [("tract", "per-batch", 25, "tract, plan per batch size, turns of 25"),
        ("tract", "symbolic", 25, "tract, symbolic batch, turns of 25"),
        ("tract", "per-batch", 1, "tract, plan per batch size, alternating"),
        ("tract", "symbolic", 1, "tract, symbolic batch, alternating"),
        ("ort", None, 25, "ORT, turns of 25"),
        ("ort", None, 1, "ORT, alternating")]
for batch in (1, 8):
    print(f"Batch {batch}:\n")
    extra = " | tract alone | ORT alone" if batch == 1 else ""
    print("| model | test accuracy [95 %] | vs dense, paired [95 %] | FLOPs ratio | "
          + " | ".join(h for *_, h in cols) + extra + " |")
    print("|---|---|---|---|" + "---|" * (len(cols) + (2 if batch == 1 else 0)))
    for m in models:
        row = [m, *accuracy(m), f"{ratio[m]:.2f}x"]
        for rt, plans, b, _ in cols:
            cell = c[b][(rt, batch, plans)]
            row.append(f"{cell[m]['mean_ms']:.2f} ({cell[models[0]]['mean_ms'] / cell[m]['mean_ms']:.2f}x)")
        if batch == 1:
            for rt in ("tract", "ort"):
                x = alone_ms(m, rt)
                row.append(f"{x:.2f} ({alone_ms(models[0], rt) / x:.2f}x)")
        print("| " + " | ".join(row) + " |")
    print()
print("What each model returns of its FLOPs ratio at batch 1 (speedup over dense / FLOPs ratio):\n")
print("| model | FLOPs ratio | tract, per batch, turns of 25 | tract, per batch, alternating | tract, symbolic, "
      "alternating | ORT, turns of 25 | ORT, alternating |")
print("|---|---|---|---|---|---|---|")
for m in models[1:]:
    got = []
    for rt, plans, b in (("tract", "per-batch", 25), ("tract", "per-batch", 1), ("tract", "symbolic", 1),
                         ("ort", None, 25), ("ort", None, 1)):
        cell = c[b][(rt, 1, plans)]
        got.append(f"{cell[models[0]]['mean_ms'] / cell[m]['mean_ms'] / ratio[m]:.2f}")
    print(f"| {m} | {ratio[m]:.2f}x | " + " | ".join(got) + " |")
print("\nTest: the 800 MR test rows, read once (scripts/deep5-int8-minilm-mr; recipes chosen on validation). (=): the "
      "paired interval contains 0. int8 models (-s8) are set against dense f32's FLOPs, so their return mixes the cut "
      "with int8 arithmetic.")
