"""Presets resolve, overrides coerce CLI strings to the field's type, bad keys are named."""
import json

import pytest

from sfr_teach.cli import build_parser, main
from sfr_teach.config import PRESETS, config_from_dict, get_config


def test_presets_scale_up():
    smoke, classroom, paper = (get_config(p) for p in PRESETS)
    assert smoke.data.dataset == "synthetic" and classroom.data.dataset == "la" == paper.data.dataset
    assert smoke.sam.model_type == classroom.sam.model_type == "tiny" and paper.sam.model_type == "vit_b"
    assert paper.retrain.patch_size == (112, 112, 80) and paper.retrain.steps == 6000
    assert paper.eval.stride == (18, 18, 4) and paper.sam.tau == 0.985
    assert smoke.retrain.steps < classroom.retrain.steps < paper.retrain.steps
    assert paper.sam.image_size == 1024 and paper.sam.lora_rank == 4


def test_overrides_coerce_strings():
    cfg = get_config("smoke", {"retrain.steps": "12", "sam.lr": "1e-4", "retrain.sfr": "true",
                               "retrain.patch_size": "48x48x32", "sam.checkpoint": "none"})
    assert cfg.retrain.steps == 12 and cfg.sam.lr == 1e-4 and cfg.retrain.sfr is True
    assert cfg.retrain.patch_size == (48, 48, 32) and cfg.sam.checkpoint is None


def test_overrides_of_optional_fields_take_the_declared_type():
    # `--set data.fold=0` must store the integer 0 (config.json of a fold run), not the string "0"
    cfg = get_config("smoke", {"data.fold": "0", "sam.sfr_plus_steps": "20", "data.data_dir": "data/LA"})
    assert cfg.data.fold == 0 and isinstance(cfg.data.fold, int)
    assert cfg.sam.sfr_plus_steps == 20 and cfg.data.data_dir == "data/LA"
    assert get_config("smoke", {"data.fold": "none"}).data.fold is None


def test_bad_override_names_valid_keys():
    with pytest.raises(KeyError, match="valid keys here"):
        get_config("smoke", {"retrain.stepz": 3})
    with pytest.raises(ValueError, match="unknown preset"):
        get_config("huge")
    with pytest.raises(ValueError, match="expected int"):
        get_config("smoke", {"retrain.steps": "many"})


def test_config_round_trips_through_json(tmp_path):
    cfg = get_config("classroom", {"retrain.method": "ua_mt", "seed": 7})
    cfg.save(tmp_path / "c.json")
    back = config_from_dict(json.loads((tmp_path / "c.json").read_text()))
    assert back == cfg


def test_cli_config_and_help(capsys):
    assert main(["config", "--preset", "classroom", "--labeled", "4", "--method", "ac_mt", "--sfr",
                 "--set", "retrain.steps=50"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["data"]["labeled"] == 4 and d["retrain"]["method"] == "ac_mt"
    assert d["retrain"]["sfr"] is True and d["retrain"]["steps"] == 50
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--sfr", "--sfr-plus"])
