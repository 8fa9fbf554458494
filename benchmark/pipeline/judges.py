"""``xbench judges freeze`` and ``certify``: commit the judges a setting uses, so runs at that setting load them,
not train them, and the certificate of what each can see.

The judges are trained (or taken from the cache) exactly as a run trains them: a floor run (the dummy method,
judged metrics only) at the setting, whose result names each judge's sha256; the matching cache files are
copied to ``leaderboards/judges/`` with their sha256 beside them. The certificate
(``leaderboards/judges/certificates.json``) comes from the same kind of run and holds only what a judge shows
on real images, measured before any method's score: the findings judges' classes and held-out AUROCs (on the
fifth of the reference held out when the classes were chosen), and each judge's AUROC on the real test cases.
"""

import json
import shutil
import tempfile
from pathlib import Path

from benchmark.core import cache
from benchmark.core.errors import XbenchError
from benchmark.core.io import atomic_write
from benchmark.pipeline.config import load_config
from benchmark.pipeline.runner import run
from metrics import judges

CERTIFICATES = "certificates.json"


def floor_run(dataset: str, setting: str):
    """The dummy method at the setting, judged metrics only: the judges' real-image figures come with it."""
    cfg = load_config("dummy", dataset, setting=setting, sets=['eval.metrics=["vc", "finding_auc"]'])
    with tempfile.TemporaryDirectory() as tmp:
        return run(cfg, runs_dir=Path(tmp))


def certify_judges(dataset: str, setting: str, out: Path = judges.FROZEN, result=None) -> Path:
    """Write the certificates of the judges of (dataset, setting) into ``out/certificates.json`` (from
    ``result``, a floor run's, when given)."""
    result = result or floor_run(dataset, setting)
    path = out / CERTIFICATES
    certificates = json.loads(path.read_text()) if path.is_file() else {}
    certificates.update(certificates_of(result))
    atomic_write(path, json.dumps(certificates, indent=1, sort_keys=True) + "\n")
    return path


def certificates_of(result) -> dict[str, dict]:
    """sha256 of each judge -> its certificate, from a floor run's result."""
    m, prov = result.metrics, result.metrics.get("provenance", {})
    where = {"dataset": result.dataset, "setting": result.setting, "test_cases": result.n_test_cases}
    out = {}
    if "sha256" in prov.get("vc", {}):
        out[prov["vc"]["sha256"]] = where | {
            "judge": "vc",
            "size": prov["vc"]["size"],
            "real_test_auroc": m["pair"]["vc_evaluator_auroc"],  # matched against deranged real test pairs
        }
    finding = prov.get("finding_auc", {})
    if "sha256" in finding:
        views = {}
        for view, kept in finding["classes"].items():
            held_out = {c: finding["holdout_auroc"][view][c] for c in kept}
            views[view] = {
                "classes": kept,
                "holdout_auroc": held_out,
                "holdout_macro_auroc": sum(held_out.values()) / len(held_out),
                "real_test_auroc": m[view]["finding_auc_real"],
            }
        out[finding["sha256"]] = where | {"judge": "finding_auc", "size": finding["size"], "views": views}
    return out


def freeze_judges(dataset: str, setting: str, out: Path = judges.FROZEN) -> list[Path]:
    """Copy the judges of (dataset, setting) into ``out`` and certify them; the files written."""
    result = floor_run(dataset, setting)
    wanted = {p["sha256"] for p in result.metrics.get("provenance", {}).values() if "sha256" in p}
    written = []
    for sidecar in sorted((cache.cache_root() / "judges").glob("*.pt.sha256")):
        if sidecar.read_text().split()[0] in wanted:
            judge = sidecar.with_name(sidecar.name.removesuffix(".sha256"))
            out.mkdir(parents=True, exist_ok=True)
            for path in (judge, sidecar):
                shutil.copyfile(path, out / path.name)
                written.append(out / path.name)
    if len(written) != 2 * len(wanted) or not wanted:
        raise XbenchError(f"found {len(written) // 2} of the {len(wanted)} judges in the cache; run again")
    return written + [certify_judges(dataset, setting, out, result)]
