"""Where an int8 export's runtimes round differently: for each input, the interpreter's, ONNX Runtime's and
tract's quantized activations compared group by group (see examples/int8_trace.rs, scripts/int8-trace-minilm).

usage: int8_trace.py ONNX MODEL PIPELINE OUT_DIR CASE... -- SPLIT_ARGS...
CASE is random:SEED or row:FILE:N. Prints a markdown table per case and a summary line."""
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort

args = sys.argv[1:]
split = args[args.index("--") + 1:]
onnx_path, model, pipeline, out, *cases = args[:args.index("--")]
m = onnx.load(onnx_path)
init = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
quant = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DynamicQuantizeLinear")]
traced = []
for n in quant:
    traced += [n.input[0], n.output[0]]
for name in traced:
    m.graph.output.append(onnx.ValueInfoProto(name=name))
trace = os.path.join(out, "trace.onnx")
onnx.save(m, trace)
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
sess = ort.InferenceSession(trace, opts, providers=["CPUExecutionProvider"])
names = ["logits"] + traced


def f32(path):
    return np.fromfile(path, dtype=np.float32)


def quantize(x, n):
    """ONNX QuantizeLinear / DynamicQuantizeLinear of x, as the graph's node `n` defines it."""
    if n.op_type == "QuantizeLinear":
        s, z = np.float32(init[n.input[1]]), int(init[n.input[2]])
    else:
        lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
        s = np.float32((hi - lo) / 255.0)
        z = int(np.clip(np.rint(-lo / s), 0, 255))
    return np.clip(np.rint(x / s) + z, 0, 255).astype(np.int64), s


for case in cases:
    d = os.path.join(out, case.replace(":", "_").replace("/", "_"))
    os.makedirs(d, exist_ok=True)
    kind, _, rest = case.partition(":")
    pick = ["--random", rest] if kind == "random" else ["--text", rest.rsplit(":", 1)[0], "--row", rest.rsplit(":", 1)[1]]
    subprocess.run(["target/release/examples/int8_trace", model, pipeline, trace, d, *pick, *split], check=True)
    b, s = map(int, open(os.path.join(d, "shape.txt")).read().split())
    ids = np.fromfile(os.path.join(d, "ids.i64"), dtype=np.int64).reshape(b, s)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    ortv = dict(zip(names, sess.run(names, feed)))
    tract_names = open(os.path.join(d, "tract.txt")).read().split()
    tractv = {nm: f32(os.path.join(d, f"tract{i}.f32")) for i, nm in enumerate(tract_names)}
    groups = {}
    for line in open(os.path.join(d, "groups.txt")):
        i, p, *_ = line.split()
        groups[p] = f32(os.path.join(d, f"group{i}.f32"))  # the last evaluation of p: this input's
    li = f32(os.path.join(d, "interp_logits.f32"))
    print(f"\n### {case}: {b} x {s} tokens\n")
    print(f"logits: |ORT - interpreter| {np.abs(ortv['logits'].reshape(-1) - li).max():.2e}, "
          f"|tract - interpreter| {np.abs(tractv['logits'] - li).max():.2e}\n")
    print("| group | values | ORT steps off | tract steps off | first differing value: interpreter x/scale, "
          "distance to the rounding boundary, runtime's x - interpreter's x in steps |")
    print("|---|---|---|---|---|")
    for n in quant:
        p = n.output[0].split("/")[0]
        qi, sc = quantize(groups[p], n)
        row = []
        first = ""
        for rt, vals in (("ORT", ortv), ("tract", tractv)):
            q = np.asarray(vals[n.output[0]]).reshape(-1).astype(np.int64)
            off = np.flatnonzero(q != qi)
            row.append(str(len(off)))
            if len(off) and not first:
                j = off[0]
                v = groups[p][j] / sc
                dx = (np.asarray(vals[n.input[0]]).reshape(-1)[j] - groups[p][j]) / sc
                first = f"{rt}: {v:.5f}, {abs(abs(v - np.floor(v)) - 0.5):.1e}, {dx:+.1e}"
        if row != ["0", "0"]:
            print(f"| {p} | {qi.size} | {row[0]} | {row[1]} | {first} |")
