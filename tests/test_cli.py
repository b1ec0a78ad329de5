"""The ``sfr-teach`` command: one-line errors with exit 2, --debug tracebacks, the end-of-run table."""
import json
import os
import subprocess
import sys

import pytest

from sfr_teach.cli import METHODS, build_parser, format_run_summary, main, one_line
from sfr_teach.data import DataError, MissingDataError
from sfr_teach.sam.registry import SAM_MODELS

PREFIX = "sfr-teach: error: "


def _err_line(capsys) -> str:
    """The single line on stderr (and nothing on stdout)."""
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(PREFIX)
    return lines[0][len(PREFIX):]


def test_missing_data_folder_prints_one_line_and_exits_2(tmp_path):
    """The issue's check, as a user runs it: a fresh process, a data folder that is not there."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "sfr_teach.cli", "run", "--dataset", "la", "--data-dir", "/nonexistent/LA",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        PREFIX + "/nonexistent/LA: LA data folder not found — download it with `sfr-teach data download la --dest DIR`"
    ]
    assert not (tmp_path / "out").exists()  # checked before anything is written


def test_data_folder_checks(tmp_path, capsys, la_dir):
    """The pre-flight check opens the folder and splits its list; the real LA folder passes it."""
    from sfr_teach.cli import check_data, config_from_args

    args = build_parser().parse_args(["run", "--preset", "classroom", "--data-dir", str(la_dir)])
    check_data(config_from_args(args))  # no error: train.list read, 1 labelled + 16 validation fit
    assert main(["run", "--dataset", "nifti", "--out", str(tmp_path / "o")]) == 2
    assert _err_line(capsys) == "--dataset nifti needs a data folder — pass --data-dir DIR, the folder holding imagesTr/"
    assert main(["run", "--dataset", "nifti", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert _err_line(capsys).startswith(f"{tmp_path}/imagesTr: folder not found — a NIfTI dataset root must hold")


def test_debug_shows_the_exception_instead(tmp_path):
    argv = ["run", "--dataset", "la", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]
    with pytest.raises(MissingDataError, match="nothing: LA data folder not found"):
        main(argv + ["--debug"])
    with pytest.raises(MissingDataError):
        main(["--debug"] + argv)  # before the command works too


def test_debug_traceback_in_a_fresh_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sfr_teach.cli", "config", "--set", "retrain.stepz=3", "--debug"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.startswith("Traceback (most recent call last):")
    assert "UsageError: unknown config key 'retrain.stepz' — valid keys here: method," in proc.stderr


@pytest.mark.parametrize("argv, expected", [
    (["--set", "retrain.stepz=3"], "unknown config key 'retrain.stepz' — valid keys here: method, sfr,"),
    (["--set", "nosection.steps=3"],
     "unknown config section 'nosection' in override 'nosection.steps' — `sfr-teach config --preset smoke` prints"),
    (["--set", "retrain.steps=abc"], "override retrain.steps='abc': expected int — `sfr-teach config --preset smoke`"),
    (["--set", "sam.crop_size=a,b"], "sam.crop_size='a,b': could not convert string to float: 'a' — `sfr-teach config"),
    (["--set", "retrain.sfr=maybe"], "override retrain.sfr='maybe': expected true/false — `sfr-teach config"),
    (["--set", "retrain.steps"], "--set expects KEY=VALUE, got 'retrain.steps' — write e.g. --set retrain.steps=200"),
    (["--set", "=5"], "--set expects KEY=VALUE, got '=5' — write e.g. --set retrain.steps=200"),
    (["--set", "retrain.method=fixmatch"],
     "retrain.method='fixmatch' is not one of supervised, self_training, mean_teacher, ua_mt, ac_mt, magicnet — "
     "use e.g. --set retrain.method=supervised"),
    (["--set", "sam.model_type=vit_x"], "sam.model_type='vit_x' is not one of tiny, vit_b"),
], ids=["unknown-key", "unknown-section", "bad-int", "bad-tuple", "bad-bool", "no-equals", "no-key", "bad-method",
        "bad-sam-model"])
@pytest.mark.parametrize("command", ["config", "run"])
def test_bad_configuration_is_one_line_exit_2(command, argv, expected, capsys, tmp_path):
    assert main([command, "--out", str(tmp_path / "o")] + argv) == 2
    assert _err_line(capsys).startswith(expected)
    assert not (tmp_path / "o").exists()  # nothing ran


def test_magicnet_patch_that_does_not_divide_into_cubes_fails_before_any_stage(tmp_path, capsys):
    # the paper preset's 112x112x80 patch and MagicNet's default 3^3 cubes: one line, exit 2, nothing run
    assert main(["run", "--preset", "paper", "--method", "magicnet", "--out", str(tmp_path / "o")]) == 2
    line = _err_line(capsys)
    assert line.startswith("retrain.patch_size (112, 112, 80) does not divide into 3^3 MagicNet cubes")
    assert "add --set retrain.patch_size" in line and "--set retrain.magicnet_cube" in line
    assert not (tmp_path / "o").exists()
    assert main(["config", "--preset", "paper", "--method", "magicnet", "--set", "retrain.magicnet_cube=2"]) == 0


def test_data_error_from_the_loader(tmp_path, capsys):
    """An LA folder that exists but cannot hold the split: the loader's DataError, one line."""
    root = tmp_path / "LA"
    root.mkdir()
    (root / "train.list").write_text("a\nb\nc\n")
    assert main(["run", "--dataset", "la", "--data-dir", str(root), "--labeled", "5", "--set", "data.val=1",
                 "--out", str(tmp_path / "o")]) == 2
    line = _err_line(capsys)
    assert f"{root}/train.list: labeled + val = 5 + 1 = 6 exceeds the 3 names in the list — use labeled <= 2 or a smaller val" in line
    root2 = tmp_path / "LA2"
    root2.mkdir()
    assert main(["run", "--dataset", "la", "--data-dir", str(root2), "--out", str(tmp_path / "o2")]) == 2
    assert _err_line(capsys).startswith(f"{root2}/train.list: train.list not found in the LA data folder — download")


def test_missing_sam_checkpoint_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SFR_NO_FIGURES", "1")
    assert main(["run", "--sfr", "--sam-model", "vit_b", "--sam-checkpoint", str(tmp_path / "sam_vit_b.pth"),
                 "--out", str(tmp_path / "o")]) == 2
    line = _err_line(capsys)
    assert "sam_vit_b.pth not found" in line and "sam_vit_b_01ec64.pth" in line and " — " in line


def test_one_line_formats_what_and_fix():
    assert one_line(DataError("x.h5: broken; re-download it")) == "x.h5: broken — re-download it"
    assert one_line(ValueError("a; b; c")) == "a; b — c"  # the fix is the last clause
    assert one_line(KeyError("no such key")) == "no such key — run with --debug for the traceback"
    assert one_line(ValueError("two\n  lines; fix  it")) == "two lines — fix it"


def _choices(option: str):
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    return next(a for a in run._actions if option in a.option_strings).choices


def test_choices_come_from_the_registries():
    from sfr_teach.ssl import METHODS as SSL_METHODS

    assert tuple(_choices("--sam-model")) == SAM_MODELS and "tiny" in SAM_MODELS and "vit_b" in SAM_MODELS
    assert tuple(_choices("--method")) == METHODS == tuple(SSL_METHODS)


def test_help_imports_no_torch():
    code = ("import sys; from sfr_teach.cli import build_parser; build_parser().format_help(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip() == "False"


# ----------------------------------------------------------------------------- the end-of-run table
def _summary(**kw):
    s = {
        "method": "mean_teacher", "variant": "SFR", "data": "LA h5 from data/LA, downsampled x2",
        "split": {"labeled": 1, "unlabeled": 63, "test": 16}, "test_source": "validation",
        "sam": "offline tiny SAM (random init, full fine-tuning, 448px mosaics)",
        "metrics": {"dice": {"mean": 0.5536, "std": 0.1, "n": 16, "excluded": 0},
                    "dice_1": {"mean": 0.5536, "std": 0.1, "n": 16, "excluded": 0},
                    "hd95": {"mean": 22.5, "std": 4.25, "n": 15, "excluded": 1},
                    "hd95_1": {"mean": 22.5, "std": 4.25, "n": 15, "excluded": 1},
                    "pred_empty": {"count": 1}},
        "pseudo_label_quality": {"dice_mean": 0.482, "dice_std": 0.05, "n": 63, "confidence_mean": 0.9512},
        "timings": {"sam_finetune_s": 312.25, "pseudo_labels_s": 40.0, "retrain_s": 250.0, "evaluate_s": 20.0,
                    "total_s": 622.3},
    }
    s.update(kw)
    return s


def test_summary_table_two_classes():
    text = format_run_summary(_summary(), "runs/mt_sfr")
    assert text.splitlines() == [
        "mean_teacher + SFR on LA h5 from data/LA, downsampled x2: 16 test volumes (validation), 1 labelled, "
        "63 unlabelled",
        "class  Dice %         HD95 mm",
        "1      55.36 ± 10.00  22.50 ± 4.25 (1 excluded)",
        "pseudo-label Dice %: 48.20 ± 5.00 over 63 unlabelled volumes, mean confidence 0.951 "
        "(offline tiny SAM (random init, full fine-tuning, 448px mosaics))",
        "time: SAM fine-tuning 5 min 12 s, pseudo-labels 40.0 s, re-training 4 min 10 s, evaluation 20.0 s, "
        "total 10 min 22 s",
        "results: runs/mt_sfr (metrics.csv, metrics.json, provenance.json)",
    ]


def test_summary_table_multi_class_baseline():
    m = {f"dice_{c}": {"mean": v, "std": 0.0, "n": 2, "excluded": 0} for c, v in ((1, 0.9), (2, 0.7), (3, 0.5))}
    m["dice"] = {"mean": 0.7, "std": 0.0, "n": 2, "excluded": 0}
    text = format_run_summary(_summary(metrics=m, variant="baseline", pseudo_label_quality=None,
                                       timings={"retrain_s": 3.0, "evaluate_s": 1.0, "total_s": 4.0}), "out")
    lines = text.splitlines()
    assert lines[0].startswith("mean_teacher on LA h5")  # no "+ SFR" for the baseline
    assert lines[1:6] == ["class  Dice %", "1      90.00 ± 0.00", "2      70.00 ± 0.00", "3      50.00 ± 0.00",
                          "mean   70.00 ± 0.00"]  # per class, then their mean; no HD95 column when not measured
    assert not any("pseudo-label" in ln for ln in lines)  # no SAM without SFR
    assert lines[-2] == "time: re-training 3.0 s, evaluation 1.0 s, total 4.0 s"


def test_smoke_run_ends_with_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SFR_NO_FIGURES", "1")
    out = tmp_path / "run"
    rc = main(["run", "--preset", "smoke", "--sfr", "--out", str(out), "--set", "sam.steps=2",
               "--set", "retrain.steps=2", "--set", "retrain.ckpt_every=2", "--set", "data.synthetic_cases=6",
               "--set", "data.val=2"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "{" not in printed  # a table, not a JSON dump
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert printed.strip() == format_run_summary(summary, str(out))
    lines = printed.strip().splitlines()
    assert lines[0].startswith("mean_teacher + SFR on synthetic single phantoms") and "2 test volumes" in lines[0]
    dice = summary["metrics"]["dice_1"]
    # the class row: index and name (synthetic phantoms: "class 1"), then Dice mean ± std
    assert lines[2].split()[:6] == ["1", "class", "1", f"{100 * dice['mean']:.2f}", "±", f"{100 * dice['std']:.2f}"]
    pl = summary["pseudo_label_quality"]
    assert lines[3].startswith(f"pseudo-label Dice %: {100 * pl['dice_mean']:.2f} ± {100 * pl['dice_std']:.2f} "
                               f"over {pl['n']} unlabelled volumes")
    assert lines[4].startswith("time: SAM fine-tuning ") and "re-training" in lines[4] and "total" in lines[4]
    assert lines[5] == f"results: {out} (metrics.csv, metrics.json, provenance.json)"
