"""Every number in the tables of docs/results.md, docs/judges.md and docs/speed_notes.md is a record field, at its
printed precision.

Each checked table follows a marker ``<!-- numbers: NAME -->`` and is declared in ``TABLES``: its columns (a record,
and the view its keys read, or None when each key names its view) and, per row label, the keys each cell shows in
order (``ssim_ci`` shows two numbers, ``spread:frontal`` the sample spread, ``timing:fit`` a phase's seconds). A
column names a record of leaderboards/records/phantom by its stem, or any result file by its path from the root.
A cell shows exactly the numbers of the keys its record holds; a number that no record holds, or that went stale,
fails here.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "leaderboards" / "records" / "phantom"
SUPERSEDED = "leaderboards/superseded/phantom"  # records a re-recording replaced: the "before" of a reading
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")

F, L = "frontal", "lateral"
ROWS_1A = {
    "FID F / L": [f"{F}:fid_inception", f"{L}:fid_inception"],
    "SSIM F": [f"{F}:ssim", f"{F}:ssim_ci"],
    "SSIM L": [f"{L}:ssim", f"{L}:ssim_ci"],
    "finding AUROC F": [f"{F}:finding_auc", f"{F}:finding_auc_ci"],
    "finding AUROC L": [f"{L}:finding_auc", f"{L}:finding_auc_ci"],
    "vc": ["pair:vc", "pair:vc_ci"],
    "vc_deranged": ["pair:vc_deranged"],
    "sample spread F / L": ["spread:frontal", "spread:lateral"],
}
CHESTFILM_FID = {"chest-film FID F / L": [f"{F}:fid_chestfilm", f"{L}:fid_chestfilm"]}  # the diffusion tables
TABLES = {
    "judges": {
        "file": "docs/judges.md",
        "columns": [("dummy_default_tiny_s0", None), ("dummy_default_small_s0", None)],
        "rows": {
            "VC judge AUROC, real matched vs mismatched (bar 0.95)": [
                "pair:vc_evaluator_auroc",
                "pair:vc_evaluator_auroc_ci",
            ],
            "VC ceiling / floor (mean P(same), matched / mismatched)": [
                "pair:vc_real_matched",
                "pair:vc_real_mismatched",
            ],
            "FID real floor, frontal / lateral": [f"{F}:fid_inception_real_floor", f"{L}:fid_inception_real_floor"],
            "findings judge macro AUROC on real test images (bar 0.90), frontal / lateral": [
                f"{F}:finding_auc_real",
                f"{L}:finding_auc_real",
            ],
        },
    },
    "calibration": {
        "file": "docs/results.md",
        "columns": [("dummy_default_small_s0", F), ("dummy_default_small_s0", L), ("dummy_default_small_s0", "pair")],
        "rows": {
            "FID real floor (518 real test vs 518 real train+val)": ["fid_inception_real_floor"],
            "precision / recall real floor": ["precision_inception_real_floor", "recall_inception_real_floor"],
            "`finding_auc_real` (the findings judge on real test images)": ["finding_auc_real"],
            "VC judge on real pairs: matched (ceiling) / mismatched (floor) / AUROC": [
                "vc_real_matched",
                "vc_real_mismatched",
                "vc_evaluator_auroc",
            ],
        },
    },
    "table1a": {
        "file": "docs/results.md",
        "columns": [
            (f"{m}_small_s0", None)
            for m in (
                "xraygan_protocol",
                "gan_int_cls_xraygan_protocol",
                "stackgan_xraygan_protocol",
                "attngan_xraygan_protocol",
                "dummy_default",
            )
        ],
        "rows": ROWS_1A,
    },
    "protocol_before_after": {
        "file": "docs/results.md",
        "columns": [
            (stem, None)
            for before, after in (
                ("xraygan_full", "xraygan_protocol"),
                ("gan_int_cls_xraygan_protocol", "gan_int_cls_xraygan_protocol"),
                ("stackgan_xraygan_protocol", "stackgan_xraygan_protocol"),
                ("attngan_xraygan_protocol", "attngan_xraygan_protocol"),
            )
            for stem in (f"{SUPERSEDED}/{before}_small_s0", f"{after}_small_s0")
        ],
        "rows": {k: ROWS_1A[k] for k in ("FID F / L", "SSIM F", "SSIM L", "finding AUROC F", "finding AUROC L")}
        | {"vc": ["pair:vc"]},
    },
    "table1b": {
        "file": "docs/results.md",
        "columns": [
            (stem, None)
            for m in ("gan_int_cls_faithful", "stackgan_faithful")
            for stem in (f"{SUPERSEDED}/{m}_small_s0", f"{m}_small_s0")
        ]
        + [("attngan_faithful_small_s0", None)],
        "rows": ROWS_1A,
    },
    "seeds": {
        "file": "docs/results.md",
        "columns": [(f"{m}_small_s{s}", None) for m in ("xraygan_full", "attngan_faithful") for s in range(3)],
        "rows": {k: v[:1] if "ci" in " ".join(v) else v for k, v in ROWS_1A.items()},
    },
    "diffusion": {
        "file": "docs/results.md",
        "columns": [
            (f"{m}_tiny_s0", None)
            for m in ("diffusion_joint", "diffusion_independent", "xraygan_full", "attngan_faithful", "dummy_default")
        ],
        "rows": {
            "FID F / L": ROWS_1A["FID F / L"],
            **CHESTFILM_FID,
            **{k: ROWS_1A[k] for k in ("SSIM F", "finding AUROC F", "finding AUROC L", "vc", "vc_deranged")},
        },
    },
    "diffusion_small": {
        "file": "docs/results.md",
        "columns": [
            ("diffusion_joint_small_s0", None),
            ("diffusion_joint_small_s1", None),
            ("diffusion_joint_small_s2", None),
            ("diffusion_independent_small_s0", None),
            ("diffusion_independent_small_s1", None),
            ("diffusion_independent_small_s2", None),
        ],
        "rows": {
            "FID F / L": ROWS_1A["FID F / L"],
            **CHESTFILM_FID,
            **{k: ROWS_1A[k] for k in ("SSIM F", "SSIM L", "finding AUROC F", "finding AUROC L", "vc", "vc_deranged")},
        },
    },
    "cpu_bf16": {
        "file": "docs/speed_notes.md",
        "columns": [(f"xraygan_full_small_s{s}", None) for s in range(3)]
        + [("leaderboards/speed/cpu_bf16_small/xraygan_full_s0_bf16", None)],
        "rows": {k: ROWS_1A[k] for k in ROWS_1A if k != "vc"}
        | {"vc": ["pair:vc", "pair:vc_ci"], "fit / evaluate s": ["timing:fit", "timing:evaluate"]},
    },
    "table2": {
        "file": "docs/results.md",
        "columns": [(f"xraygan_{v}_small_s{s}", None) for v in ("full", "no_vcn") for s in range(3)]
        + [
            ("xraygan_no_mscgan_small_s0", None),
            ("xraygan_no_mscgan_small_s1", None),
            ("xraygan_no_mscgan_small_s2", None),
            ("xraygan_no_hae_small_s0", None),
            ("xraygan_no_hae_small_s1", None),
            ("xraygan_no_hae_small_s2", None),
            ("xraygan_projection_small_s0", None),
            ("xraygan_projection_small_s1", None),
            ("xraygan_projection_small_s2", None),
        ],
        "rows": {k: v[:1] if "ci" in " ".join(v) else v for k, v in ROWS_1A.items()}
        | {"vc_self (the method's own VCN)": ["pair:vc_self"]},
    },
}


def record(stem: str) -> dict:
    return json.loads(((ROOT if "/" in stem else RECORDS) / f"{stem}.json").read_text())


def values(rec: dict, view: str | None, keys: list[str]) -> list[float]:
    """The numbers a cell shows: each key the record holds, in order (an interval is two)."""
    out = []
    for key in keys:
        scope, _, name = key.rpartition(":") if view is None else (view, "", key)
        if scope == "spread":
            value = rec["sample_spread"].get(name, {}).get("fake_std")
        elif scope == "timing":
            value = rec["timing_s"].get(name)
        else:
            value = rec["metrics"].get(scope, {}).get(name)
        if value is not None:
            out += value if isinstance(value, list) else [value]
    return out


def table_rows(text: str, name: str) -> dict[str, list[str]]:
    """label -> cells of the table after ``<!-- numbers: name -->``."""
    marker = f"<!-- numbers: {name} -->"
    assert marker in text, f"no table marked {marker}"
    lines = text.split(marker, 1)[1].lstrip("\n").splitlines()
    rows = {}
    for line in lines[2:]:  # header, separator
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def matches(printed: str, value: float) -> bool:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10**-decimals + 1e-12


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_number_of_a_docs_table_is_a_record_field(name):
    spec = TABLES[name]
    rows = table_rows((ROOT / spec["file"]).read_text(), name)
    assert set(rows) == set(spec["rows"]), f"{name}: rows {sorted(rows)} against {sorted(spec['rows'])}"
    for label, keys in spec["rows"].items():
        cells = rows[label]
        assert len(cells) == len(spec["columns"]), f"{name} / {label}: {len(cells)} cells"
        for cell, (stem, view) in zip(cells, spec["columns"]):
            printed = NUMBER.findall(cell.replace("**", ""))
            expected = values(record(stem), view, keys)
            assert len(printed) == len(expected), f"{name} / {label} / {stem}: {cell!r} against {expected}"
            for p, v in zip(printed, expected):
                assert matches(p, v), f"{name} / {label} / {stem}: {p} is not {v}"


def test_every_verdict_the_docs_quote_is_the_small_leaderboards():
    """A verdict counts only when the paired rule makes it: each line of docs/results.md that states one (it
    gives a Holm p) is, verbatim, a line of the small setting's rendered leaderboard."""
    board = (ROOT / "leaderboards" / "phantom.md").read_text().split("## Tiny setting", 1)[0].splitlines()
    quoted = [line for line in (ROOT / "docs" / "results.md").read_text().splitlines() if "Holm p" in line]
    for line in quoted:
        assert line in board, f"not a verdict of the small leaderboard: {line}"
