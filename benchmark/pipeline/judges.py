"""``xbench judges freeze``: commit the judges a setting uses, so runs at that setting load them, not train them.

The judges are trained (or taken from the cache) exactly as a run trains them: a floor run (the dummy method,
judged metrics only) at the setting, whose result names each judge's sha256; the matching cache files are
copied to ``leaderboards/judges/`` with their sha256 beside them.
"""

import shutil
import tempfile
from pathlib import Path

from benchmark.core import cache
from benchmark.core.errors import XbenchError
from benchmark.pipeline.config import load_config
from benchmark.pipeline.runner import run
from metrics import judges


def freeze_judges(dataset: str, setting: str, out: Path = judges.FROZEN) -> list[Path]:
    """Copy the judges of (dataset, setting) into ``out``; the files written."""
    cfg = load_config("dummy", dataset, setting=setting, sets=['eval.metrics=["vc", "finding_auc"]'])
    with tempfile.TemporaryDirectory() as tmp:
        result = run(cfg, runs_dir=Path(tmp))
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
    return written
