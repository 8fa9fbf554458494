"""Configuration: defaults, TOML deviations, variants, --set, and errors that name the key."""

import pytest

from benchmark.core.errors import XbenchError
from benchmark.pipeline.config import load_config


def test_tiny_and_paper_settings_start_from_the_right_defaults():
    tiny = load_config("xraygan", "phantom", setting="tiny")
    paper = load_config("xraygan", "phantom", setting="paper")
    assert tiny.model.stage_sizes == (32, 64) and tiny.data.image_size == 64 and tiny.data.max_cases == 256
    assert paper.model.stage_sizes == (32, 64, 128, 256) and paper.data.image_size == 256
    assert paper.model.vc_weight == 1.0 and paper.model.batch_sizes == (96, 48, 24, 12)
    assert tiny.run_id.startswith("xraygan_phantom_full_s0_") and tiny.config_hash != paper.config_hash


def test_variants_and_sets_apply_in_order():
    cfg = load_config("xraygan", "phantom", variant="no_vcn", sets=["model.vc_weight=0.1", "seed=4"])
    assert cfg.model.vc_weight == 0.1 and cfg.seed == 4 and cfg.variant == "no_vcn"
    cfg = load_config("xraygan", "phantom", sets=["model.text.hidden=16", "model.lrs=[1, 2]", "data.max_cases=8"])
    assert cfg.model.text.hidden == 16 and cfg.model.lrs == (1.0, 2.0) and cfg.data.max_cases == 8
    assert load_config("xraygan", "phantom", variant="no_hae").model.encoder == "flat"
    assert load_config("xraygan", "phantom", variant="no_mscgan").model.schedule == "one_shot"


def test_the_official_vc_weight_is_one_set_away():
    assert load_config("xraygan", "phantom", setting="paper", sets=["model.vc_weight=0.1"]).model.vc_weight == 0.1


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"sets": ["model.vc_wieght=1"]}, "unknown key 'vc_wieght' for Config; valid: checkpoint_every, log_every,"),
        ({"sets": ["model.vc_weight=high"]}, "expected float like 1.0, got 'high'"),
        ({"sets": ["data.image_size=2.5"]}, "expected int like 64, got 2.5"),
        ({"sets": ["model.text=3"]}, "text is a group of settings"),
        ({"sets": ["vc_weight=1"]}, "unknown key 'vc_weight'; keys start with model., data., eval. or are seed"),
        ({"sets": ["novalue"]}, "expected key=value"),
        ({"sets": ["data.image_size=100"]}, "data.image_size must be a power of two"),
        (
            {"variant": "no_thing"},
            "unknown variant of xraygan 'no_thing'; choose one of: full, no_hae, no_mscgan, no_vcn",
        ),
        ({"setting": "huge"}, "unknown config 'huge'; choose one of: paper, small, tiny"),
    ],
)
def test_bad_configuration_names_the_key(kwargs, message):
    with pytest.raises(XbenchError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config("xraygan", "phantom", **kwargs)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(XbenchError, match="unknown method 'gan'"):
        load_config("gan", "phantom")
    with pytest.raises(XbenchError, match="unknown dataset 'chexpert'; choose one of: mimic, openi, phantom"):
        load_config("xraygan", "chexpert")


def test_config_files_are_checked(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "xraygan.toml").write_text("[model]\nvc_weight = 0.5\n[datasets.openi.data]\nmax_cases = 9\n")
    cfg = load_config("xraygan", "openi", config_dir=tmp_path)
    assert cfg.model.vc_weight == 0.5 and cfg.data.max_cases == 9
    assert load_config("xraygan", "phantom", config_dir=tmp_path).data.max_cases is None
    (tmp_path / "tiny" / "xraygan.toml").write_text("[modle]\nx = 1\n")
    with pytest.raises(XbenchError, match=r"unknown section \[modle\]"):
        load_config("xraygan", "phantom", config_dir=tmp_path)
    (tmp_path / "tiny" / "xraygan.toml").write_text("[model\n")
    with pytest.raises(XbenchError, match="not valid TOML"):
        load_config("xraygan", "phantom", config_dir=tmp_path)


def test_run_settings_keep_the_run_id_and_result_settings_change_it():
    base = load_config("xraygan", "phantom")
    for quiet in ("model.progress=true", "model.log_every=1", "model.checkpoint_every=5"):
        assert load_config("xraygan", "phantom", sets=[quiet]).run_id == base.run_id, quiet
    assert load_config("xraygan", "phantom", sets=["model.l2_weight=50"]).run_id != base.run_id


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("model.epochs=[-1, 2]", r"xraygan.Config.epochs = \(-1, 2\): each value must be >= 0"),
        ("model.batch_sizes=[0, 32]", "batch_sizes .* must be >= 1"),
        ("model.lrs=[1e-3, -1e-3]", "lrs .* must be > 0"),
        ("model.vcn.lr=0", "VCNConfig.lr = 0.0: each value must be > 0"),
        ("data.max_cases=0", "DataConfig.max_cases = 0"),
        ("eval.bootstrap=-5", "bootstrap"),
    ],
)
def test_values_out_of_range_are_refused_where_they_are_defined(item, message):
    with pytest.raises(XbenchError, match=message):
        load_config("xraygan", "phantom", sets=[item])


def test_every_method_variant_and_setting_resolves():
    from benchmark.pipeline.config import SETTINGS
    from methods import METHODS

    for method, cls in METHODS.items():
        for variant in cls.variants:
            for setting in SETTINGS:
                cfg = load_config(method, "phantom", setting=setting, variant=variant)
                assert cfg.variant == variant and cfg.setting == setting
