"""Every committed tiny record keeps its evidence, and its intervals are rebuilt from it: the per-case values and
replicates are the ones its numbers were computed from."""

from pathlib import Path

import pytest

from benchmark.core.seeds import derive_seed
from benchmark.pipeline.config import config_from_dict
from benchmark.pipeline.results import evidence_path, load_evidence, load_result
from metrics.stats import bootstrap_indices, centred_interval, macro_auroc, mean_interval, percentile_interval

RECORDS = sorted((Path(__file__).resolve().parents[1] / "leaderboards" / "records").glob("*/*_tiny_s*.json"))
MEANS = {
    "frontal": ("ssim",),
    "lateral": ("ssim",),
    "pair": ("vc", "vc_deranged", "vc_real_matched", "vc_real_mismatched"),
}


@pytest.mark.parametrize("path", RECORDS, ids=lambda p: p.stem)
def test_a_records_intervals_are_rebuilt_from_its_evidence(path):
    record, evidence = load_result(path), load_evidence(evidence_path(path))
    cfg = config_from_dict(record.config)
    n = record.n_test_cases
    assert len(evidence["case_ids"]) == n
    index = bootstrap_indices(n, cfg.eval.bootstrap, derive_seed(cfg.eval.seed, "bootstrap", n))
    for view, names in MEANS.items():
        for name in names:
            values = evidence[f"{name}/{view}"]
            assert record.metrics[view][name] == pytest.approx(values.mean(), rel=1e-12)
            assert record.metrics[view][f"{name}_ci"] == pytest.approx(mean_interval(values, index)[0], rel=1e-12)
    for view in ("frontal", "lateral"):
        block = record.metrics[view]
        for name in ("fid_inception", "kid_inception", "precision_inception", "recall_inception"):
            rebuilt, _ = centred_interval(block[name], evidence[f"{name}/{view}"])
            assert block[f"{name}_ci"] == pytest.approx(rebuilt, rel=1e-12)
        assert block["kid_inception"] == pytest.approx(evidence[f"kid_inception/{view}"].mean(), rel=1e-12)
        if f"finding_scores/{view}" in evidence:
            scores, labels = evidence[f"finding_scores/{view}"], evidence[f"finding_labels/{view}"]
            assert block["finding_auc"] == pytest.approx(macro_auroc(scores, labels)[0], rel=1e-12)
            draws = [macro_auroc(scores[i], labels[i])[0] for i in index]
            assert block["finding_auc_ci"] == pytest.approx(percentile_interval(draws)[0], rel=1e-12)
            assert block["finding_auc_classes"] == len(evidence[f"finding_classes/{view}"])


def test_every_tiny_record_has_evidence_and_it_stays_small():
    missing = [p.name for p in RECORDS if not evidence_path(p).is_file()]
    assert not missing, f"re-evaluate them (scripts/reevaluate_records.py): {missing}"
    assert sum(evidence_path(p).stat().st_size for p in RECORDS) < 2e6  # ~20 kB a record at 64 test cases


def test_a_record_written_by_an_earlier_run_does_not_make_the_tree_dirty(tmp_path, monkeypatch):
    """Seeds recorded one after another from one clean checkout: the first seed's record (uncommitted) must not
    mark the next as made from a dirty tree; a change to code must."""
    import subprocess

    from benchmark.pipeline import results

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "leaderboards" / "records" / "phantom").mkdir(parents=True)
    (tmp_path / "leaderboards" / "records" / "phantom" / "a_tiny_s0.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(results, "REPO", tmp_path)
    assert results.git_state()[1] is False
    (tmp_path / "leaderboards" / "records" / "phantom" / "a_tiny_s0.json").write_text('{"seed": 0}')
    (tmp_path / "leaderboards" / "records" / "phantom" / "a_tiny_s1.json").write_text("{}")
    assert results.git_state()[1] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert results.git_state()[1] is True
