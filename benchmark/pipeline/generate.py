"""The teaching use: a report a person writes becomes a frontal and a lateral radiograph."""

import json
import re
from pathlib import Path

from benchmark.core.checkpoints import load_checkpoint
from benchmark.core.errors import XbenchError
from benchmark.core.seeds import derive_seed
from benchmark.core.sheets import contact_sheet, save_sheet
from benchmark.data.images import save_png, to_uint8
from benchmark.data.text import Vocab, split_sentences
from benchmark.pipeline.config import config_from_dict
from methods import get_method

_SECTION = re.compile(r"\b(FINDINGS|IMPRESSION)\s*:", re.IGNORECASE)


def read_report_text(report: str | None, report_file: Path | None) -> str:
    """Exactly one of --report / --report-file; an empty report is an error."""
    if (report is None) == (report_file is None):
        raise XbenchError("give the report with exactly one of --report TEXT or --report-file PATH")
    if report_file is not None:
        try:
            report = report_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise XbenchError(f"cannot read the report file {report_file} ({err})") from None
    if not split_sentences(report):
        raise XbenchError("the report is empty: write its findings, e.g. --report 'FINDINGS: ... IMPRESSION: ...'")
    return report


def report_sections(text: str) -> tuple[str, str]:
    """(findings, impression) from 'FINDINGS: ... IMPRESSION: ...'; text without headings is the findings."""
    parts = _SECTION.split(text)
    if len(parts) == 1:
        return text.strip(), ""
    sections = {name.upper(): body.strip() for name, body in zip(parts[1::2], parts[2::2])}
    return sections.get("FINDINGS", ""), sections.get("IMPRESSION", "")


def generate_from_report(run_dir: Path, text: str, out: Path, *, seed: int = 0) -> tuple[list[Path], list[str]]:
    """Write frontal.png, lateral.png and sheet.png; return them and the words outside the vocabulary."""

    config_path, vocab_path, ckpt = run_dir / "config.json", run_dir / "vocab.json", run_dir / "ckpt" / "final.pt"
    for path in (config_path, vocab_path, ckpt):
        if not path.is_file():
            raise XbenchError(f"--checkpoint {run_dir}: missing {path.name}; point it at a finished run directory")
    cfg = config_from_dict(json.loads(config_path.read_text()))
    vocab = Vocab.load(vocab_path)
    method = get_method(cfg.method)(cfg.model, vocab, image_size=cfg.data.image_size, seed=cfg.seed)
    method.load_state_dict(load_checkpoint(ckpt, method.device))

    findings, impression = report_sections(text)
    views = method.generate(vocab.encode([(findings, impression)]), [derive_seed(seed, "report")])
    frontal, lateral = to_uint8(views.frontal[0, 0].numpy()), to_uint8(views.lateral[0, 0].numpy())
    paths = [out / "frontal.png", out / "lateral.png"]
    save_png(frontal, paths[0])
    save_png(lateral, paths[1])
    caption = f"FINDINGS: {findings}\nIMPRESSION: {impression}\n({cfg.method}, {run_dir.name})"
    paths.append(save_sheet(contact_sheet([([frontal, lateral], caption)]), out / "sheet.png"))
    return paths, vocab.unknown(f"{findings} {impression}")
