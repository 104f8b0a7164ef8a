"""Where a runtime's time goes, from `optimize profile [--runtime ort] --json`: per model, the total and the share of
the linear projections (every matrix product named after a weight), the attention score/context products,
softmax, normalisation, GELU, weight packing (tract), activation quantization (int8), and the rest.
Usage: python3 scripts/profile-summary.py PROFILE.json"""
import json
import sys


MATMULS = {"OptMatMul", "MatMul", "FusedMatMul", "Gemm", "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


def group(node):
    name, op = node["name"], node["op"]
    if op == "OptMatMulPack":
        return "packing"
    if ("attention.scores" in name or "attention.context" in name) and op in MATMULS:
        return "attention products (QK^T, PV)"
    if op in MATMULS:
        return "linear projections (incl. fused bias/residual)"
    if op == "Softmax":
        return "softmax"
    if op.startswith("Gelu") or op in ("BiasGelu", "FastGelu", "Erf"):
        return "GELU"
    if "LayerNorm" in name or op in ("RmsNorm", "LayerNormalization", "SkipLayerNormalization"):
        return "LayerNorm"
    if op.startswith("DynamicQuantizeLinear"):
        return "activation quantization"
    return "other (embeddings, mask, reshapes, pooler)"


profiles = json.load(open(sys.argv[1]))
groups = []
for p in profiles:
    for n in p["nodes"]:
        if group(n) not in groups:
            groups.append(group(n))
name = lambda p: p["model"].rstrip("/").split("/")[-1]
rt = {"ort": "ONNX Runtime (its profiler)", "tract": "tract"}[profiles[0].get("runtime", "tract")]
print(f"{rt}, batch {profiles[0]['batch']}, seq {profiles[0]['seq']}, {profiles[0]['iters']} runs; ms per run (share)")
print("| part | " + " | ".join(name(p) for p in profiles) + " |")
print("|---|" + "---|" * len(profiles))
for g in groups:
    cells = []
    for p in profiles:
        ms = sum(n["ms"] for n in p["nodes"] if group(n) == g)
        cells.append(f"{ms:.2f} ({100 * ms / p['total_ms']:.0f} %)")
    print(f"| {g} | " + " | ".join(cells) + " |")
print("| total | " + " | ".join(f"{p['total_ms']:.2f}" for p in profiles) + " |")
print("| nodes | " + " | ".join(str(len(p["nodes"])) for p in profiles) + " |")
