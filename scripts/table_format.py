"""Cells shared by the markdown tables the measurement scripts print (protocol-table.py, types-table.py,
cut-table.py): a model's short name, accuracies and their 95 % intervals, paired differences marked (=) when the
interval holds 0, the cells of an `optimize bench --json` report by runtime and batch, and FLOPs ratios at a
length."""


def name(p):
    """The model's file or folder name without its extension."""
    return p.rstrip("/").split("/")[-1].rsplit(".", 1)[0]


def pct(a):
    return f"{100 * a:.2f}"


def interval(ci):
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def diff(d):
    """A paired difference in points with its interval; (=) when the interval contains 0."""
    if d is None:
        return "-"
    same = d["ci95"][0] <= 0 <= d["ci95"][1]
    return f"{100 * d['diff']:+.2f} {interval(d['ci95'])}" + (" (=)" if same else "")


def by_cell(bench):
    """(real-length cells, synthetic cells), each keyed by (runtime, batch) then by model name."""
    real = {(c["runtime"], c["batch"]): {name(m["model"]): m for m in c["models"]} for c in bench.get("real", [])}
    synth = {(c["runtime"], c["batch"]): {name(m["model"]): m for m in c["models"]} for c in bench["cells"]}
    return real, synth


def flops(poly, n):
    """FLOPs of one row of n tokens from the IR's polynomial in the sequence length."""
    return sum(c * n**i for i, c in enumerate(poly))


def flops_ratios(bench, tokens):
    """Per model name, dense's FLOPs over the model's at `tokens` per row (the first model is dense)."""
    dense = bench["models"][0]["flops_poly"]
    return {name(m["model"]): flops(dense, tokens) / flops(m["flops_poly"], tokens) for m in bench["models"]}
