"""Tables of a bench document (terminal and ``leaderboards/speed.md``), next to the official code's figures.

Every table is (title, headers, rows of strings), printed by the CLI with rich and written here as markdown,
so the terminal and the leaderboard never disagree.
"""

import tomllib
from pathlib import Path

Table = tuple[str, list[str], list[list[str]]]


def load_reference(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def device_kind(device: str) -> str | None:
    """ "NVIDIA H100 80GB HBM3" -> "H100": the official figures exist per kind."""
    return next((kind for kind in ("H100", "H200") if kind in device), None)


def _f(value, digits: int = 1) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def training_table(doc: dict) -> Table:
    headers = ["method", "mode", "precision", "stage", "phase", "batch", "ms/step", "pairs/s", "GFLOP/pair", "TFLOP/s"]
    headers += ["peak GiB", "first step s", "projected min"]
    rows = [
        [
            r["method"],
            r["mode"],
            r["precision"],
            str(r["stage"]),
            r["phase"],
            str(r["batch"]),
            _f(r["ms_per_step"]),
            _f(r["pairs_per_s"]),
            _f(r["gflop_per_pair"], 2),
            _f(r["tflops"], 2),
            _f(r["peak_gib"]),
            _f(r["first_step_s"], 2),
            _f(r["projected_s"] / 60),
        ]
        for r in doc["rows"]
    ]
    return f"Training steps ({doc['setting']} setting) on {doc['device']}", headers, rows


def official_table(doc: dict, reference: dict) -> Table | None:
    """XRayGAN's GAN steps per stage against the official code on the same GPU kind (None elsewhere)."""
    kind = device_kind(doc["device"])
    if kind is None or doc["setting"] != "paper":
        return None
    official = {r["stage"]: r for r in reference["official"]["rows"] if r["device"] == kind}
    ours = [r for r in doc["rows"] if r["method"] == "xraygan" and r["phase"] == "gan"]
    modes = list(dict.fromkeys(r["mode"] for r in ours))
    headers = ["stage", "batch", f"official {kind} pairs/s"] + [f"{m} pairs/s (x official)" for m in modes]
    rows = []
    for stage, ref in sorted(official.items()):
        row = [str(stage), str(ref["batch"]), _f(ref["pairs_per_s"])]
        for mode in modes:
            r = next((r for r in ours if r["mode"] == mode and r["stage"] == stage), None)
            row.append("" if r is None else f"{r['pairs_per_s']:,.1f} ({r['pairs_per_s'] / ref['pairs_per_s']:.2f}x)")
        rows.append(row)
    return f"XRayGAN vs the official code, {kind}", headers, rows


def schedule_table(doc: dict) -> Table:
    rows = [[s["method"], s["mode"], _f(s["projected_s"] / 60)] for s in doc["schedule"]]
    title = f"Projected full training schedule over {doc['protocol']['train_cases']:,} pairs (compute only)"
    return title, ["method", "mode", "minutes"], rows


def evaluation_table(doc: dict) -> Table | None:
    e = doc.get("evaluation")
    if not e:
        return None
    rows = [["generate", _f(e["generate_s"]), f"{e['n_test']} pairs with {e['method']}"]]
    rows += [[name, _f(s), ""] for name, s in e["metrics"].items()]
    rows += [[name, "", f"unavailable: {why.split(':')[0]}"] for name, why in e["unavailable"].items()]
    rows.append(["total", _f(e["total_s"]), f"{e['n_reference']:,} reference pairs, {e['image_size']} px, cold caches"])
    return f"One evaluation ({doc['setting']} setting) on {e['device']}", ["part", "seconds", "note"], rows


def skipped_table(doc: dict) -> Table | None:
    rows = [[s["method"], s["mode"], s["why"]] for s in doc["skipped"]]
    return ("Not timed", ["what", "mode", "why"], rows) if rows else None


def tables(doc: dict, reference: dict) -> list[Table]:
    found = [training_table(doc), official_table(doc, reference), schedule_table(doc), evaluation_table(doc)]
    return [t for t in found + [skipped_table(doc)] if t is not None]


def markdown_table(table: Table) -> str:
    title, headers, rows = table
    lines = [f"**{title}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(docs: list[dict], reference: dict) -> str:
    """leaderboards/speed.md: the official figures, xbench before this work, then every recorded document."""
    out = ["# xbench speed", "", "Written by `xbench bench --record` from the recorded documents only.", ""]
    official = reference["official"]
    out += [f"## The official XRayGAN code ({official['source']})", ""]
    headers = ["device", "stage", "batch", "ms/step", "pairs/s", "peak GiB"]
    measured = ("ms_per_step", "pairs_per_s", "peak_gib")
    rows = [
        [r["device"], str(r["stage"]), str(r["batch"]), *(_f(r.get(k)) for k in measured)] for r in official["rows"]
    ]
    out += [markdown_table(("Paper setting, one iteration = critic + generator step", headers, rows)), ""]
    before = reference["xbench_before"]
    rows = [
        [str(k), _f(fp32), _f(bf16)]
        for k, (fp32, bf16) in enumerate(zip(before["fp32_pairs_per_s"], before["bf16_pairs_per_s"]))
    ]
    out += [f"## xbench before the speed work ({before['source']})", ""]
    out += [markdown_table(("XRayGAN pairs/s per stage", ["stage", "fp32", "bf16"], rows)), ""]
    gpu = [d for d in docs if d["device"] != "cpu"]
    if not gpu:
        out += [
            "## xbench now on a GPU: not measured yet",
            "",
            "No GPU document is recorded for the current code. On a GPU, `xbench bench --config paper --record`",
            "measures every method and mode and rewrites this file.",
            "",
        ]
    for doc in docs:
        dirty = " (uncommitted changes)" if doc.get("git_dirty") else ""
        out += [f"## {doc['device']}, {doc['setting']} setting", ""]
        out += [f"torch {doc['torch']}, commit {doc['git_sha']}{dirty}, {doc['created']}.", ""]
        limit = doc["protocol"].get("row_limit_s")
        if limit is not None:
            out += [f"Each method and mode was limited to {limit:g} s.", ""]
        if not doc.get("complete", True):  # older documents were written only when complete
            out += ["**Cut short**: the run stopped before its end; below is every phase it finished.", ""]
        for table in tables(doc, reference):
            out += [markdown_table(table), ""]
    return "\n".join(out)
