"""The table of scripts/int8-minilm-mr: per model, test / out-of-domain / validation accuracy against its f32 twin,
file size, peak resident memory (each model loaded and run once in a child process of `bench`, batch 1 x 128),
real-length latency at batch 1 and 8 in both runtimes, and synthetic 1 x 128 p50. Usage: int8-table.py OUT MODEL..."""
import json, os, sys
from table_format import name
out, models = sys.argv[1], sys.argv[2:]
bench = json.load(open(f"{out}/bench.json"))
def size_of(m):
    d = f"{out}/{m}.segments"
    if os.path.isdir(d):
        return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) / 2**20
    return os.path.getsize(f"{out}/{m}.onnx") / 2**20
def twin(m):
    return m.rsplit("-", 1)[0] if m.endswith(("-int8", "-ortq")) else "dense"
real = {}
for c in bench["real"]:
    for r in c["models"]:
        real[(name(r["model"]), c["runtime"], c["batch"], c.get("tract_plans") or "")] = r["mean_ms"]
# Synthetic 1 x 128, batch 1: p50 and the child-process peak memory.
syn, rss = {}, {}
for c in bench["cells"]:
    if c["batch"] == 1:
        for r in c["models"]:
            syn[(name(r["model"]), c["runtime"])] = r["p50_ms"]
            rss[(name(r["model"]), c["runtime"])] = r.get("peak_rss_mib")
def ms(m, rt, b):
    return next(v for (mm, r, bb, _), v in real.items() if mm == m and r == rt and bb == b)
def mem(m):
    t, o = rss.get((m, "tract")), rss.get((m, "ort"))
    if t is None or o is None:
        return "-"
    return f"{t:.0f} / {o:.0f} MiB ({t / rss[('dense', 'tract')]:.2f}x / {o / rss[('dense', 'ort')]:.2f}x)"
lines = ["| model | test accuracy [95 %] | vs f32 twin, paired | out of domain | vs twin | validation vs twin | size | peak memory tract / ORT | tract b1 | tract b8 | ORT b1 | ORT b8 | tract 1x128 | ORT 1x128 |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for m in models:
    e = json.load(open(f"{out}/eval-{m}.json")); o = json.load(open(f"{out}/ood-{m}.json"))
    val = json.load(open(f"{out}/val-{m}.json"))
    def pc(r):
        lo, hi = r["ci95"]
        return f"{100*r['accuracy']:.2f} [{100*lo:.1f}, {100*hi:.1f}]"
    def diff(r):
        d = r.get("against")
        if not d or m == "dense":
            return "-"
        x = d["diff"]["diff"]; lo, hi = d["diff"]["ci95"]
        eq = " (=)" if lo <= 0 <= hi else ""
        return f"{100*x:+.2f} [{100*lo:+.1f}, {100*hi:+.1f}]{eq}"
    size = size_of(m)
    tsize = size_of(twin(m))
    cells = []
    for rt, b in [("tract", 1), ("tract", 8), ("ort", 1), ("ort", 8)]:
        v = ms(m, rt, b); dv = ms("dense", rt, b); tv = ms(twin(m), rt, b)
        extra = f", {tv/v:.2f}x twin" if twin(m) != "dense" or m.startswith("dense-") else ""
        cells.append(f"{v:.1f} ms ({dv/v:.2f}x{extra})")
    for rt in ["tract", "ort"]:
        v = syn[(m, rt)]; cells.append(f"{v:.1f} ms ({syn[('dense', rt)]/v:.2f}x)")
    layers = f", {e['avg_layers']:.2f} layers" if e.get("avg_layers") else ""
    lines.append(f"| {m}{layers} | {pc(e)} | {diff(e)} | {pc(o)} | {diff(o)} | {diff(val)} | {size:.1f} MiB ({size/tsize:.2f}x) | {mem(m)} | " + " | ".join(cells) + " |")
lines += ["", "Peak memory: the process's peak resident set after loading the model and running it once on 1 x 128 (a child process per model; x: against dense f32).",
          "Latency: mean per batch on the 800 MR test sentences at their own length (speedup over dense f32; `twin`: over the model's own f32 file); 1x128: synthetic, p50.",
          "int8 = bertopt `quant` (per-channel int8 weights, dynamic per-tensor activations); ortq = ONNX Runtime 1.31.1 `quantize_dynamic` (QInt8 weights, per tensor) on the same f32 file.",
          "(=): the paired interval contains 0: no measurable difference from the f32 twin."]
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
