"""The guidance sweep of a trained diffusion run, on the validation split only: FID and finding AUROC per view
against the classifier-free guidance scale, as a seaborn figure and a JSON file.

    python scripts/guidance_sweep.py runs/diffusion_phantom_joint_s0_<hash> --scales 1 2 3 4 5 6 7.5

The run's own choice (``fit`` picks from ``guidance_grid`` by a pixel Frechet distance on val, without metrics/)
is marked on the plot, so the in-fit criterion can be read against the metrics it stands in for. Never on test:
the samples are the val split's reports, each with the seed sha256(run seed, "guidance", case id), the same
noise at every scale. The judges that learn (the findings classifier, the VC evaluator) learn from the train
split's real images only here (a run's judges also see val, which is now the evaluated split), so they are
trained once more on a first sweep of a dataset and resolution.
"""

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmark.core.checkpoints import load_checkpoint
from benchmark.core.errors import XbenchError
from benchmark.core.seeds import derive_seed
from benchmark.data.datasets import get_dataset
from benchmark.data.images import to_uint8
from benchmark.data.text import Vocab
from benchmark.pipeline.config import config_from_dict
from methods import get_method
from methods.base import default_device
from metrics import ImageSet, evaluate

METRICS = ("fid_inception", "finding_auc")


def sweep(run_dir: Path, scales: list[float], max_cases: int | None, metrics=METRICS) -> dict:
    """{"scales": [...], "rows": [{"guidance", "view", "metric", "value"}], "chosen": the run's own choice}."""
    config = run_dir / "config.json"
    if not config.is_file():
        raise XbenchError(f"{run_dir}: no config.json; pass a run directory of `xbench run --method diffusion`")
    cfg = config_from_dict(json.loads(config.read_text()))
    method = get_method(cfg.method)(
        cfg.model, Vocab.load(run_dir / "vocab.json"), image_size=cfg.data.image_size, device=default_device()
    )
    if not hasattr(method, "sample"):
        raise XbenchError(f"{run_dir} is a {cfg.method} run; the guidance sweep needs a diffusion run")
    method.load_state_dict(load_checkpoint(run_dir / "ckpt" / "final.pt", method.device))
    dataset = get_dataset(cfg.dataset, cfg.data)
    cases = dataset.splits().val[:max_cases]
    if len(cases) < 2:
        raise XbenchError(f"{cfg.dataset} has {len(cases)} val cases here; the sweep needs at least 2")
    val = dataset.images(cases)
    tokens = method.vocab.encode([(c.report.findings, c.report.impression) for c in val.cases])
    seeds = [derive_seed(cfg.seed, "guidance", c.case_id) for c in val.cases]
    eval_cfg = dataclasses.replace(cfg.eval, metrics=tuple(metrics))
    ids, labels = tuple(c.case_id for c in val.cases), tuple(dataset.finding_labels(c) for c in val.cases)
    full = get_dataset(cfg.dataset, dataclasses.replace(cfg.data, max_cases=None, max_eval_cases=None))
    train = full.images(full.splits().train)
    reference = ImageSet(
        tuple(c.case_id for c in train.cases), train.pixels, tuple(full.finding_labels(c) for c in train.cases)
    )
    rows = []
    for w in scales:
        views = method.sample(tokens, seeds, w)
        fake = np.stack([to_uint8(views.frontal[:, 0].numpy()), to_uint8(views.lateral[:, 0].numpy())], axis=1)
        out = evaluate(
            ImageSet(ids, fake), ImageSet(ids, val.pixels, labels), eval_cfg, dataset=cfg.dataset, reference=reference
        )
        rows += [
            {"guidance": w, "view": view, "metric": name, "value": out[view][name]}
            for view in ("frontal", "lateral")
            for name in metrics
            if isinstance(out.get(view, {}).get(name), float)
        ]
    result = json.loads((run_dir / "result.json").read_text()) if (run_dir / "result.json").is_file() else {}
    chosen = result.get("training", {}).get("guidance", {}).get("chosen", method.guidance)
    doc = {"run": run_dir.name, "split": "val", "n_cases": len(cases), "scales": scales, "chosen": chosen}
    return doc | {"rows": rows}


def plot(doc: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame(doc["rows"])
    metrics = list(dict.fromkeys(frame["metric"]))
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4), squeeze=False)
    for ax, name in zip(axes[0], metrics):
        sns.lineplot(data=frame[frame["metric"] == name], x="guidance", y="value", hue="view", marker="o", ax=ax)
        ax.axvline(doc["chosen"], color="grey", linestyle="--", label=f"fit's choice ({doc['chosen']:g})")
        ax.set_title(f"{name} on val (N = {doc['n_cases']})")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.suptitle(doc["run"], fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.5])
    parser.add_argument("--cases", type=int, default=None, help="the first N val cases (default: all)")
    parser.add_argument("--metrics", nargs="+", default=list(METRICS))
    parser.add_argument("--out", type=Path, default=None, help="default: <run_dir>/guidance_sweep.png")
    args = parser.parse_args()
    try:
        doc = sweep(args.run_dir, args.scales, args.cases, args.metrics)
    except XbenchError as err:
        raise SystemExit(f"error: {err}") from None
    out = args.out or args.run_dir / "guidance_sweep.png"
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    print(plot(doc, out), out.with_suffix(".json"))


if __name__ == "__main__":
    main()
