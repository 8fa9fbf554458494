"""Run configuration: frozen dataclasses hold the defaults, TOML files and ``--set`` hold the deviations.

Resolution, in order (later wins):
  1. the dataclass defaults, which are the paper setting: the method's ``Config``, ``DataConfig``, ``EvalConfig``;
  2. ``configs/<setting>/defaults.toml``, then ``configs/<setting>/<method>.toml`` (sections ``[model]``,
     ``[data]``, ``[eval]``; a ``[datasets.<name>]`` table holds deviations for one dataset only), each after
     its base setting's (``SETTING_BASES``: tiny builds on small);
  3. the variant's deviations (the paper's Table 2 ablations, or a baseline's ``xraygan_protocol``), and at
     the paper setting the variant's schedule (``Method.paper_schedules``: the authors' for their stand-ins);
  4. ``--set key=value`` (``model.vc_weight=0.1``, ``data.image_size=128``, ``eval.bootstrap=200``, ``seed=1``).
An unknown key or a value of the wrong type is an error naming the key and the valid ones.
"""

import dataclasses
import hashlib
import json
import tomllib
import typing
from collections.abc import Sequence
from pathlib import Path

from benchmark.core.errors import XbenchError, unknown_name
from benchmark.data.datasets import DATASETS, DataConfig
from methods import get_method
from methods.base import LATER_FIELDS, RUN_SETTINGS
from metrics import EvalConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
SETTINGS = ("paper", "small", "tiny")
# A setting may build on another: its TOML files are read after the base's (tiny = small's networks on few
# cases with short schedules).
SETTING_BASES = {"tiny": "small"}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    method: str
    dataset: str
    setting: str  # "paper" | "small" | "tiny": which defaults the deviations start from
    variant: str  # a key of the method's VARIANTS ("full", "no_vcn", ...; "faithful", ...)
    seed: int
    model: typing.Any  # the method's Config dataclass
    data: DataConfig
    eval: typing.Any  # metrics.EvalConfig

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "dataset": self.dataset,
            "setting": self.setting,
            "variant": self.variant,
            "seed": self.seed,
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "eval": dataclasses.asdict(self.eval),
        }

    @property
    def config_hash(self) -> str:
        """sha256 of everything that can change a result: the run settings every method config declares
        (``methods.base.RUN_SETTINGS``: how a run reports and saves; a resumed run replays the same epochs from
        any checkpoint) are left out, so turning on a progress bar or logging more often keeps the run id (and
        a record stays checkable); so are ``methods.base.LATER_FIELDS`` at the default every older record ran
        with."""
        settings = self.to_dict()
        for name in RUN_SETTINGS:
            settings["model"].pop(name, None)
        for name, default in LATER_FIELDS.items():
            if settings["model"].get(name, default) == default:
                settings["model"].pop(name, None)
        blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    @property
    def run_id(self) -> str:
        return f"{self.method}_{self.dataset}_{self.variant}_s{self.seed}_{self.config_hash}"


def load_config(
    method: str,
    dataset: str,
    *,
    setting: str = "tiny",
    variant: str | None = None,
    seed: int = 0,
    sets: Sequence[str] = (),
    config_dir: Path = CONFIG_DIR,
) -> RunConfig:
    """Resolve a run's configuration from the defaults, the TOML deviations, the variant and ``--set``."""
    method_cls = get_method(method)
    if dataset not in DATASETS:
        raise unknown_name("dataset", dataset, DATASETS)
    if setting not in SETTINGS:
        raise unknown_name("config", setting, SETTINGS)
    variants = method_cls.variants
    variant = variant or next(iter(variants))
    if variant not in variants:
        raise unknown_name(f"variant of {method}", variant, variants)

    sections = {"model": method_cls.Config(), "data": DataConfig(), "eval": EvalConfig()}
    top = {"seed": seed}
    chain = [setting]
    while chain[0] in SETTING_BASES:
        chain.insert(0, SETTING_BASES[chain[0]])
    paths = [config_dir / s / name for s in chain for name in ("defaults.toml", f"{method}.toml")]
    for path in paths:
        for table in _toml_tables(path, dataset):
            for section, values in table.items():
                if section not in sections:
                    raise XbenchError(f"{path}: unknown section [{section}]; valid: model, data, eval, datasets")
                sections[section] = apply_changes(sections[section], values, f"{path} [{section}]")
    sections["model"] = apply_changes(sections["model"], variants[variant], f"variant {variant}")
    if setting == "paper":  # e.g. the XRayGAN authors' schedule for a baseline's xraygan_protocol stand-in
        schedule = method_cls.paper_schedules.get(variant, {})
        sections["model"] = apply_changes(sections["model"], schedule, f"variant {variant} (paper schedule)")
    for item in sets:
        key, value = _parse_set(item)
        section, _, rest = key.partition(".")
        if section == "seed" and not rest:
            top["seed"] = _coerce(value, 0, "seed")
        elif section in sections and rest:
            sections[section] = apply_changes(sections[section], _nest(rest, value), "--set")
        else:
            raise XbenchError(f"--set {item}: unknown key {key!r}; keys start with model., data., eval. or are seed")
    return RunConfig(
        method, dataset, setting, variant, top["seed"], sections["model"], sections["data"], sections["eval"]
    )


def table2_configs(dataset: str, setting: str, seeds: Sequence[int], sets: Sequence[str] = ()) -> list[RunConfig]:
    """The paper's Table 2: one XRayGAN run per ablation variant (as methods/xraygan.py defines them) and seed."""
    variants = get_method("xraygan").variants
    return [
        load_config("xraygan", dataset, setting=setting, variant=v, seed=s, sets=sets) for v in variants for s in seeds
    ]


def config_from_dict(data: dict) -> RunConfig:
    """The RunConfig a run directory or record stored (config.json, result.json's "config")."""
    try:
        method_cls = get_method(data["method"])
        return RunConfig(
            data["method"],
            data["dataset"],
            data["setting"],
            data["variant"],
            int(data["seed"]),
            apply_changes(method_cls.Config(), data["model"], "stored config model"),
            apply_changes(DataConfig(), data["data"], "stored config data"),
            apply_changes(EvalConfig(), data["eval"], "stored config eval"),
        )
    except (KeyError, TypeError) as err:
        raise XbenchError(f"stored run configuration is incomplete ({err!r}); re-run to record it again") from None


def _toml_tables(path: Path, dataset: str) -> list[dict]:
    """The file's general tables, then its ``[datasets.<dataset>]`` tables (none if the file is absent)."""
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise XbenchError(f"{path}: not valid TOML ({err})") from None
    per_dataset = data.pop("datasets", {})
    unknown = set(per_dataset) - set(DATASETS)
    if unknown:
        raise XbenchError(f"{path}: [datasets.{sorted(unknown)[0]}] names no dataset; valid: {', '.join(DATASETS)}")
    return [data, per_dataset.get(dataset, {})]


def _parse_set(item: str) -> tuple[str, typing.Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise XbenchError(f"--set {item!r}: expected key=value, e.g. --set model.vc_weight=0.1")
    try:  # TOML literals: 0.1, 3, true, "text", [32, 64]
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string
    return key.strip(), value


def _nest(dotted: str, value) -> dict:
    head, _, rest = dotted.partition(".")
    return {head: _nest(rest, value) if rest else value}


def apply_changes(obj, changes: dict, where: str):
    """A copy of dataclass ``obj`` with ``changes`` (nested dicts for nested dataclasses), type-checked."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    updates = {}
    for name, value in changes.items():
        if name not in fields:
            raise XbenchError(f"{where}: unknown key {name!r} for {type(obj).__name__}; valid: {', '.join(fields)}")
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise XbenchError(f"{where}: {name} is a group of settings; set its keys, e.g. {name}.<key>=...")
            updates[name] = apply_changes(current, value, f"{where} {name}")
        else:
            updates[name] = _coerce(value, current, f"{where} {name}", fields[name].type)
    try:
        return dataclasses.replace(obj, **updates)
    except (ValueError, XbenchError) as err:
        raise XbenchError(f"{where}: {err}") from None


def _coerce(value, current, where: str, annotation=None):
    """``value`` in the type of the field it replaces (ints widen to floats, lists become tuples)."""
    allowed = tuple(a for a in typing.get_args(annotation) if isinstance(a, type) and a is not type(None))
    if value is None or current is None:  # an optional field: None, or a value of its annotated types
        if value is None and (current is None or type(None) in typing.get_args(annotation)):
            return None
        if current is None and (not allowed or isinstance(value, allowed)):
            return value
    elif isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, (int, float)):
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value) if isinstance(current, float) else value
        if isinstance(value, float) and isinstance(current, float):
            return value
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    elif isinstance(current, tuple):
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, current[0], where) for v in value) if current else tuple(value)
    else:
        return value
    raise XbenchError(f"{where}: expected {type(current).__name__} like {current!r}, got {value!r}")
