"""BMIP configs and run scripts (configs/trainers/BMIP/*.yaml, scripts/bmip/*.sh).

Command-line tests run the scripts against a repo copy with a fake interpreter
(tests/helpers/script_harness.py) and check the exact train.py command, the output dirs, the
skip-if-finished logic and the errors. The slow test runs the real base-to-novel train + test
scripts with the official config on a generated EuroSAT and the tiny CLIP.

The scripts and the official config are compared with LAMDASZ-ML/BMIP's through the facts
recorded in tests/official_facts/facts.json (tests/helpers/official_facts.py), on every machine.
With PROMPTCLIP_OFFICIAL_REPOS set (docs/DEVELOPING.md), the config is also compared with the
live official file; that test is only defined then, so a plain run neither runs nor skips it.
"""
import json
import os
import sys
from pathlib import Path

import shutil

import pytest

from conftest import train_server_env
import torch
import yaml

from tests.helpers import official_facts
from tests.helpers.script_harness import (
    REPO_ROOT, make_script_env, make_script_repo, recorded_calls, run_script,
)

BMIP_CONFIGS = REPO_ROOT / "configs" / "trainers" / "BMIP"
OFFICIAL_BASE_CFG = "configs/trainers/BMIP/BMIP_ctx2_dp9_lr2.yaml"  # in LAMDASZ-ML/BMIP
LIVE = official_facts.live_root() is not None  # PROMPTCLIP_OFFICIAL_REPOS is set
BASE_CFG = "BMIP_ctx2_dp9_lr2"
XD_CFG = "BMIP_ctx2_dp9_lr2_cross_datasets"
SCRIPTS = ("base2new_train_bmip.sh", "base2new_test_bmip.sh", "xd_train.sh", "xd_test.sh", "fewshot_bmip.sh")


@pytest.fixture
def repo(tmp_path):
    """Repo copy with the real scripts and BMIP configs, stub dataset configs."""
    return make_script_repo(tmp_path / "repo", ["BMIP"], ("eurosat", "imagenet", "caltech101"))


@pytest.fixture
def env(tmp_path):
    """DATA, the fake PYTHON and PATH; nothing else from the user's environment."""
    return make_script_env(tmp_path)


def head_flags(cfg, dataset, seed, out_dir, data):
    """The train.py flags every BMIP script starts with."""
    return ["train.py", "--root", data, "--seed", seed, "--trainer", "BMIP",
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/BMIP/{cfg}.yaml", "--output-dir", out_dir]


def base2new_dirs(dataset, seed, cfg=BASE_CFG, shots=16, sub="new", root="output"):
    """(train dir, test dir) in the layout shared by every method."""
    common = f"{dataset}/shots_{shots}/BMIP/{cfg}/seed{seed}"
    return f"{root}/base2new/train_base/{common}", f"{root}/base2new/test_{sub}/{common}"


def only_call(env):
    """argv of the single fake train.py call so far."""
    calls = recorded_calls(env)
    assert len(calls) == 1, calls
    return calls[0][0]


# --- scripts: command lines -------------------------------------------------------------------

def test_the_official_script_names_and_fewshot_exist():
    assert sorted(p.name for p in (REPO_ROOT / "scripts" / "bmip").glob("*.sh")) == sorted(SCRIPTS)


def test_base2new_pair_literally_with_defaults(repo, env, tmp_path):
    """Defaults: official config, no --device, and the test loads model-best.pth.tar."""
    for script in ("base2new_train_bmip.sh", "base2new_test_bmip.sh"):
        proc = run_script(repo, f"bmip/{script}", ["eurosat", "1"], env, tmp_path / "somewhere")
        assert proc.returncode == 0, proc.stderr
    (train_argv, train_cwd), (test_argv, test_cwd) = recorded_calls(env)
    assert train_cwd == test_cwd == str(repo)
    assert train_argv == [
        "train.py", "--root", env["DATA"], "--seed", "1", "--trainer", "BMIP",
        "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", "configs/trainers/BMIP/BMIP_ctx2_dp9_lr2.yaml",
        "--output-dir", "output/base2new/train_base/eurosat/shots_16/BMIP/BMIP_ctx2_dp9_lr2/seed1",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base",
    ]
    assert test_argv == [
        "train.py", "--root", env["DATA"], "--seed", "1", "--trainer", "BMIP",
        "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", "configs/trainers/BMIP/BMIP_ctx2_dp9_lr2.yaml",
        "--output-dir", "output/base2new/test_new/eurosat/shots_16/BMIP/BMIP_ctx2_dp9_lr2/seed1",
        "--model-dir", "output/base2new/train_base/eurosat/shots_16/BMIP/BMIP_ctx2_dp9_lr2/seed1",
        "--load-epoch", "5", "--eval-only", "--best",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new",
    ]


def test_device_and_cfg_arguments_reach_train_py(repo, env, tmp_path):
    cfg = "BMIP_ctx2_dp9_lr2_joint"
    proc = run_script(repo, "bmip/base2new_train_bmip.sh", ["eurosat", "2", "cuda:1", cfg], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    train_dir, test_dir = base2new_dirs("eurosat", 2, cfg=cfg)
    assert only_call(env) == head_flags(cfg, "eurosat", "2", train_dir, env["DATA"]) + [
        "--device", "cuda:1", "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]
    assert (repo / train_dir / "results.json").is_file()

    proc = run_script(repo, "bmip/base2new_test_bmip.sh", ["eurosat", "2", "cuda:1", cfg], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert recorded_calls(env)[1][0] == head_flags(cfg, "eurosat", "2", test_dir, env["DATA"]) + [
        "--model-dir", train_dir, "--load-epoch", "5", "--eval-only", "--best", "--device", "cuda:1",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"]


def test_empty_device_means_auto_and_still_allows_a_cfg(repo, env, tmp_path):
    proc = run_script(repo, "bmip/base2new_train_bmip.sh", ["eurosat", "1", "", "BMIP_ctx2_dp9_lr2_paper"],
                      env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = only_call(env)
    assert "--device" not in argv
    assert argv[argv.index("--config-file") + 1] == "configs/trainers/BMIP/BMIP_ctx2_dp9_lr2_paper.yaml"


def test_finished_runs_are_skipped(repo, env, tmp_path):
    train_dir, test_dir = base2new_dirs("eurosat", 3)
    for script in ("base2new_train_bmip.sh", "base2new_test_bmip.sh"):
        assert run_script(repo, f"bmip/{script}", ["eurosat", "3"], env, tmp_path).returncode == 0
    for script, out_dir in (("base2new_train_bmip.sh", train_dir), ("base2new_test_bmip.sh", test_dir)):
        again = run_script(repo, f"bmip/{script}", ["eurosat", "3", "cpu"], env, tmp_path)
        assert again.returncode == 0, again.stderr
        assert f"Results are available in {out_dir}. Skip this job" in again.stdout
    assert len(recorded_calls(env)) == 2


def test_a_finished_run_of_other_arguments_is_not_taken_for_this_one(repo, env, tmp_path):
    """A sweep rerun into the same OUTPUT with another backbone (EXTRA_OPTS) or another LOADEP stops
    with one line naming what differs, and the finished results stay; settings that only say where
    or how a run executes may differ (those runs are skipped)."""
    train_dir, test_dir = base2new_dirs("eurosat", 1)
    for script in ("base2new_train_bmip.sh", "base2new_test_bmip.sh"):
        assert run_script(repo, f"bmip/{script}", ["eurosat", "1"], env, tmp_path).returncode == 0
    saved = {d: (repo / d / "results.json").read_bytes() for d in (train_dir, test_dir)}

    run_only = dict(env, EXTRA_OPTS="--device cpu DATALOADER.NUM_WORKERS 2 TRAIN.PRINT_FREQ 5")
    again = run_script(repo, "bmip/base2new_train_bmip.sh", ["eurosat", "1", "cpu"], run_only, tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"Results are available in {train_dir}. Skip this job" in again.stdout

    other_backbone = dict(env, EXTRA_OPTS="MODEL.BACKBONE.NAME openclip:ViT-B-16 MODEL.BACKBONE.WEIGHTS w.bin")
    proc = run_script(repo, "bmip/base2new_train_bmip.sh", ["eurosat", "1"], other_backbone, tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {train_dir} holds a finished run of other arguments (MODEL.BACKBONE.NAME: <unset> -> "
        "openclip:ViT-B-16; MODEL.BACKBONE.WEIGHTS: <unset> -> w.bin); set another OUTPUT, or move that dir "
        "away to rerun"]

    proc = run_script(repo, "bmip/base2new_test_bmip.sh", ["eurosat", "1"], dict(env, LOADEP="3"), tmp_path)
    assert proc.returncode == 2
    assert "(--best: True -> False; --load-epoch: 5 -> 3)" in proc.stderr
    assert len(recorded_calls(env)) == 2  # nothing ran again
    assert {d: (repo / d / "results.json").read_bytes() for d in (train_dir, test_dir)} == saved


def test_finished_runs_of_before_the_arguments_were_recorded_are_skipped(repo, env, tmp_path):
    train_dir, _ = base2new_dirs("eurosat", 1)
    (repo / train_dir).mkdir(parents=True)
    (repo / train_dir / "results.json").write_text('{"complete": true, "metrics": {"accuracy": 1.0}}')
    proc = run_script(repo, "bmip/base2new_train_bmip.sh", ["eurosat", "1"],
                      dict(env, EXTRA_OPTS="OPTIM.MAX_EPOCH 1"), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"Results are available in {train_dir}. Skip this job" in proc.stdout
    assert recorded_calls(env) == []


def test_base2new_test_needs_the_trained_model(repo, env, tmp_path):
    train_dir, _ = base2new_dirs("eurosat", 1)
    proc = run_script(repo, "bmip/base2new_test_bmip.sh", ["eurosat", "1"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"ERROR: model dir not found: {train_dir} (train it first: "
        f"bash scripts/bmip/base2new_train_bmip.sh eurosat 1)"]
    assert recorded_calls(env) == []


def test_environment_overrides_sub_shots_output_loadep_and_extra_opts(repo, env, tmp_path):
    """LOADEP picks that epoch's checkpoint, so --best must go; EXTRA_OPTS follows the script's flags."""
    caller = tmp_path / "caller"
    env.update(OUTPUT="runs", SHOTS="4", SUB="all", LOADEP="7", EXTRA_OPTS="--backbone RN50 OPTIM.MAX_EPOCH 1")
    train_dir, test_dir = base2new_dirs("eurosat", 1, shots=4, sub="all", root=str(caller / "runs"))
    Path(train_dir).mkdir(parents=True)
    proc = run_script(repo, "bmip/base2new_test_bmip.sh", ["eurosat", "1", "cpu"], env, caller)
    assert proc.returncode == 0, proc.stderr
    assert only_call(env) == head_flags(BASE_CFG, "eurosat", "1", test_dir, env["DATA"]) + [
        "--model-dir", train_dir, "--load-epoch", "7", "--eval-only", "--device", "cpu",
        "--backbone", "RN50", "OPTIM.MAX_EPOCH", "1",
        "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "all", "TEST.OPENWORLD_METRICS", "True"]


def test_xd_train_then_test_with_defaults(repo, env, tmp_path):
    proc = run_script(repo, "bmip/xd_train.sh", ["imagenet", "1"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_script(repo, "bmip/xd_test.sh", ["caltech101", "1"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    model_dir = f"output/xd/train/imagenet/shots_16/BMIP/{XD_CFG}/seed1"
    out_dir = f"output/xd/test/caltech101/shots_16/BMIP/{XD_CFG}/seed1"
    (train_argv, _), (test_argv, _) = recorded_calls(env)
    assert train_argv == head_flags(XD_CFG, "imagenet", "1", model_dir, env["DATA"]) + ["DATASET.NUM_SHOTS", "16"]
    assert test_argv == head_flags(XD_CFG, "caltech101", "1", out_dir, env["DATA"]) + [
        "--model-dir", model_dir, "--load-epoch", "10", "--eval-only", "--best"]
    assert (repo / out_dir / "results.json").is_file()


def test_a_cross_dataset_test_of_another_source_model_is_not_skipped_silently(repo, env, tmp_path):
    """The test dir does not name the source dataset: the model dir in the record tells them apart
    (recorded relative to the output dir, so a moved OUTPUT tree still matches)."""
    for source in ("imagenet", "caltech101"):
        assert run_script(repo, "bmip/xd_train.sh", [source, "1"], dict(env, SOURCE_DATASET=source),
                          tmp_path).returncode == 0
    assert run_script(repo, "bmip/xd_test.sh", ["eurosat", "1"], env, tmp_path).returncode == 0
    out_dir = f"output/xd/test/eurosat/shots_16/BMIP/{XD_CFG}/seed1"
    proc = run_script(repo, "bmip/xd_test.sh", ["eurosat", "1"], dict(env, SOURCE_DATASET="caltech101"), tmp_path)
    assert proc.returncode == 2
    assert (f"(--model-dir: ../../../../../../train/imagenet/shots_16/BMIP/{XD_CFG}/seed1 -> "
            f"../../../../../../train/caltech101/shots_16/BMIP/{XD_CFG}/seed1)") in proc.stderr
    shutil.move(repo / "output", tmp_path / "moved")  # the whole tree elsewhere: still the same runs
    proc = run_script(repo, "bmip/xd_test.sh", ["eurosat", "1"], dict(env, OUTPUT=str(tmp_path / "moved")), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Skip this job" in proc.stdout
    assert len(recorded_calls(env)) == 3


@pytest.mark.parametrize("content", ['[1]', '{"complete": true, "arguments": [1]}', '{"complete": tr'])
def test_an_unreadable_results_file_stops_the_script_and_is_kept(repo, env, tmp_path, content):
    train_dir, _ = base2new_dirs("eurosat", 1)
    (repo / train_dir).mkdir(parents=True)
    (repo / train_dir / "results.json").write_text(content)
    proc = run_script(repo, "bmip/base2new_train_bmip.sh", ["eurosat", "1"], env, tmp_path)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    assert recorded_calls(env) == [] and (repo / train_dir / "results.json").read_text() == content


def test_xd_test_fifth_argument_loads_that_epoch(repo, env, tmp_path):
    cfg = BASE_CFG
    model_dir = f"output/xd/train/imagenet/shots_16/BMIP/{cfg}/seed2"
    proc = run_script(repo, "bmip/xd_test.sh", ["caltech101", "2", "cuda", cfg, "3"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"ERROR: model dir not found: {model_dir} (train it first: "
        f"bash scripts/bmip/xd_train.sh imagenet 2 cuda {cfg})"]

    (repo / model_dir).mkdir(parents=True)
    proc = run_script(repo, "bmip/xd_test.sh", ["caltech101", "2", "cuda", cfg, "3"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out_dir = f"output/xd/test/caltech101/shots_16/BMIP/{cfg}/seed2"
    assert only_call(env) == head_flags(cfg, "caltech101", "2", out_dir, env["DATA"]) + [
        "--model-dir", model_dir, "--load-epoch", "3", "--eval-only", "--device", "cuda"]


# Official dirs (DATASET SEED DEVICE CFG = <dataset> 2 cuda:1 <cfg>) -> ours, the layout shared by every method.
OFFICIAL_DIRS = {
    "base2new_train_bmip.sh": {"--output-dir": ("./output/base2new/train_base/{cfg}/{dataset}/seed2",
                                                "output/base2new/train_base/{dataset}/shots_16/BMIP/{cfg}/seed2")},
    "base2new_test_bmip.sh": {"--output-dir": ("./output/base2new/test_new/{cfg}/{dataset}/seed2",
                                               "output/base2new/test_new/{dataset}/shots_16/BMIP/{cfg}/seed2"),
                              "--model-dir": ("./output/base2new/train_base/{cfg}/{dataset}/seed2",
                                              "output/base2new/train_base/{dataset}/shots_16/BMIP/{cfg}/seed2")},
    "xd_train.sh": {"--output-dir": ("output/{dataset}/BMIP/{cfg}_16shots/seed2",
                                     "output/xd/train/{dataset}/shots_16/BMIP/{cfg}/seed2")},
    "xd_test.sh": {"--output-dir": ("output/evaluation/BMIP/{cfg}/{dataset}/seed2",
                                    "output/xd/test/{dataset}/shots_16/BMIP/{cfg}/seed2"),
                   "--model-dir": ("output/imagenet/BMIP/{cfg}_16shots/seed2",
                                   "output/xd/train/imagenet/shots_16/BMIP/{cfg}/seed2")},
}


@pytest.mark.parametrize("script,args", [
    ("base2new_train_bmip.sh", ["eurosat", "2", "cuda:1", BASE_CFG]),
    ("base2new_test_bmip.sh", ["eurosat", "2", "cuda:1", BASE_CFG]),
    ("xd_train.sh", ["imagenet", "2", "cuda:1", XD_CFG]),
    ("xd_test.sh", ["caltech101", "2", "cuda:1", XD_CFG, "3"]),
])
def test_commands_are_the_official_ones_in_our_layout(repo, env, tmp_path, script, args):
    """With every argument given, the same positional arguments, train.py flags and options as the
    official script; only the dirs differ (OFFICIAL_DIRS). Flags may come in another order: the
    official base2new test passes --device before --best."""
    facts = official_facts.recorded_script(official_facts.BMIP, f"scripts/bmip/{script}")
    expected = official_facts.official_command(facts, args, DATA=env["DATA"])
    names = {"dataset": args[0], "cfg": args[3]}
    for flag, (official_dir, ours) in OFFICIAL_DIRS[script].items():
        assert expected[expected.index(flag) + 1] == official_dir.format(**names), flag
        expected = official_facts.with_flag(expected, flag, ours.format(**names))
        if flag == "--model-dir":
            (repo / ours.format(**names)).mkdir(parents=True)
    proc = run_script(repo, f"bmip/{script}", args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = only_call(env)
    assert argv[0] == "train.py"
    assert official_facts.split_command(argv[1:]) == official_facts.split_command(expected)


@pytest.mark.parametrize("script", SCRIPTS)
def test_data_unset_or_missing_is_a_one_line_error(repo, env, tmp_path, script):
    head = ["eurosat", "1", "16"] if script.startswith("fewshot") else ["eurosat", "1"]  # fewshot takes SHOTS
    del env["DATA"]
    proc = run_script(repo, f"bmip/{script}", head + ["cpu"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ERROR: DATA is not set: export DATA=/path/to/datasets"]

    env["DATA"] = str(tmp_path / "no-such-folder")
    proc = run_script(repo, f"bmip/{script}", head, env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"ERROR: DATA folder does not exist: {tmp_path / 'no-such-folder'}"]
    assert recorded_calls(env) == []


@pytest.mark.parametrize("script,args,message", [
    ("base2new_train_bmip.sh", ["eurosat"],
     "expected 2 to 4 arguments, got 1. Usage: bash scripts/bmip/base2new_train_bmip.sh DATASET SEED [DEVICE [CFG]]"),
    ("base2new_test_bmip.sh", ["eurosat", "1", "cpu", BASE_CFG, "5"],
     "expected 2 to 4 arguments, got 5. Usage: bash scripts/bmip/base2new_test_bmip.sh DATASET SEED [DEVICE [CFG]]"),
    ("xd_train.sh", ["imagenet", "1", "cpu", XD_CFG, "2"],
     "expected 2 to 4 arguments, got 5. Usage: bash scripts/bmip/xd_train.sh DATASET SEED [DEVICE [CFG]]"),
    ("xd_test.sh", ["caltech101", "1", "cpu", XD_CFG, "2", "x"],
     "expected 2 to 5 arguments, got 6. Usage: bash scripts/bmip/xd_test.sh DATASET SEED [DEVICE [CFG [LOAD_EPOCH]]]"),
    ("xd_test.sh", ["caltech101", "1", "", XD_CFG, "best"], "LOADEP must be a non-negative integer, got 'best'"),
    ("base2new_train_bmip.sh", ["eurosat", "one"], "SEED must be a non-negative integer, got 'one'"),
    ("base2new_train_bmip.sh", ["eurosat", "1", "cuda 0"],
     "DEVICE must be one word such as cpu, cuda or cuda:1, got 'cuda 0'"),
    ("base2new_train_bmip.sh", ["eurosat", "1", "", "BMIP_ctx2"],
     "Trainer config not found: configs/trainers/BMIP/BMIP_ctx2.yaml (available: BMIP_ctx2_dp9_lr2 "),
])
def test_bad_arguments_are_one_line_errors(repo, env, tmp_path, script, args, message):
    proc = run_script(repo, f"bmip/{script}", args, env, tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {message}"), lines
    assert recorded_calls(env) == []


def test_bad_sub_is_a_one_line_error(repo, env, tmp_path):
    env["SUB"] = "novel"
    proc = run_script(repo, "bmip/base2new_test_bmip.sh", ["eurosat", "1"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ERROR: SUB must be base, new or all, got 'novel'"]


# --- configs ------------------------------------------------------------------------------------

EXPECTED_CONFIGS = {
    # file stem: TRAINER.BMIP keys that differ from the official BMIP_ctx2_dp9_lr2.yaml
    BASE_CFG: {},
    XD_CFG: {},
    f"{BASE_CFG}_addition": {"AGGREGATION": "addition"},
    f"{BASE_CFG}_attention": {"AGGREGATION": "attention"},
    f"{BASE_CFG}_joint": {"AGGREGATION": "joint"},
    f"{BASE_CFG}_paper": {"VISION_WEIGHT": "per_sample", "TEXT_WEIGHT": "received", "MATCH_TEXT_DEPTH": True},
}


def _merged_cfg(stem):
    from dassl.config import get_cfg_default
    import trainers

    cfg = get_cfg_default()
    trainers.add_trainer_configs(cfg)
    cfg.merge_from_file(str(BMIP_CONFIGS / f"{stem}.yaml"))
    return cfg


def test_bmip_config_files_are_the_expected_set():
    # mini_clip.yaml (the bundled mini CLIP's setting) is tested in test_mini_clip.py
    found = sorted(p.stem for p in BMIP_CONFIGS.glob("*.yaml") if p.stem != "mini_clip")
    assert found == sorted(EXPECTED_CONFIGS)


def test_official_config_values_as_merged():
    cfg = _merged_cfg(BASE_CFG)
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR_SCHEDULER) == ("adam", 0.002, 10, "cosine")
    assert (cfg.OPTIM.WARMUP_EPOCH, cfg.OPTIM.WARMUP_TYPE, cfg.OPTIM.WARMUP_CONS_LR) == (1, "constant", 1e-5)
    assert (cfg.DATALOADER.TRAIN_X.BATCH_SIZE, cfg.DATALOADER.TEST.BATCH_SIZE, cfg.DATALOADER.NUM_WORKERS) == (4, 100, 8)
    assert tuple(cfg.INPUT.SIZE) == (224, 224) and cfg.INPUT.INTERPOLATION == "bicubic"
    assert (cfg.TRAIN.EARLY_STOPPING, cfg.TRAIN.PATIENT_COUNT, cfg.TEST.FINAL_MODEL) == (True, 4, "best_val")
    assert cfg.SHARE.SHARE_PARAMETER_VISUAL is True and cfg.SHARE.SHARE_PARAMETER_TEXT is True
    bmip = cfg.TRAINER.BMIP
    # yacs reads the YAML string "None" as Python None, in the official repository too
    assert (bmip.N_CTX, bmip.CTX_INIT, bmip.PREC, bmip.PROMPT_DEPTH, bmip.CONNECT_METHOD) == (
        2, "a photo of a", "fp16", 9, None)
    assert (bmip.AGGREGATION, bmip.VISION_WEIGHT, bmip.TEXT_WEIGHT, bmip.MATCH_TEXT_DEPTH) == (
        "attention_weighted", "batch_mean", "sos_row", False)


@pytest.mark.parametrize("stem", sorted(EXPECTED_CONFIGS))
def test_every_config_merges_and_differs_from_the_official_one_only_where_intended(stem):
    merged, official = _merged_cfg(stem), _merged_cfg(BASE_CFG)
    for key, value in EXPECTED_CONFIGS[stem].items():
        assert merged.TRAINER.BMIP[key] == value, (stem, key)
        official.defrost()
        official.TRAINER.BMIP[key] = value
    assert merged == official


def test_official_config_equals_the_recorded_official_values():
    ours = official_facts.config_facts((BMIP_CONFIGS / f"{BASE_CFG}.yaml").read_text())
    assert ours == official_facts.recorded_config(official_facts.BMIP, OFFICIAL_BASE_CFG)


if LIVE:
    def test_official_config_equals_the_official_file():
        official = official_facts.live_file(official_facts.BMIP, OFFICIAL_BASE_CFG)
        ours = yaml.safe_load((BMIP_CONFIGS / f"{BASE_CFG}.yaml").read_text())
        assert ours == yaml.safe_load(official.read_text())


# --- end to end: real base2new train + test scripts with the tiny CLIP ----------------------------

@pytest.mark.slow
def test_base2new_scripts_train_then_evaluate_novel_classes(tmp_path, tiny_clip_path, eurosat_root):
    env = dict(os.environ)
    env.update(
        DATA=eurosat_root, OUTPUT=str(tmp_path / "out"), **train_server_env(), SHOTS="2",
        EXTRA_OPTS=(f"--backbone {tiny_clip_path} INPUT.SIZE (32,32) OPTIM.MAX_EPOCH 2 DATASET.NUM_SHOTS 2 "
                    "DATALOADER.NUM_WORKERS 0 TRAINER.BMIP.PREC fp32 DATALOADER.TRAIN_X.BATCH_SIZE 4 "
                    "DATALOADER.TEST.BATCH_SIZE 50"),
    )
    for name in ("SUB", "LOADEP"):
        env.pop(name, None)
    for script in ("base2new_train_bmip.sh", "base2new_test_bmip.sh"):
        proc = run_script(REPO_ROOT, f"bmip/{script}", ["eurosat", "1", "cpu"], env, tmp_path, timeout=600)
        assert proc.returncode == 0, f"{script}: {proc.stderr[-3000:]}"

    train_dir, test_dir = map(Path, base2new_dirs("eurosat", 1, shots=2, root=str(tmp_path / "out")))
    assert (train_dir / "MultiModalPromptLearner" / "model-best.pth.tar").is_file()
    train_results = json.loads((train_dir / "results.json").read_text())
    test_results = json.loads((test_dir / "results.json").read_text())
    assert train_results["trainer"] == test_results["trainer"] == "BMIP"
    # the generated EuroSAT has 10 classes: 5 base, 5 new
    assert (train_results["subsample_classes"], train_results["num_classes"]) == ("base", 5)
    assert (test_results["subsample_classes"], test_results["num_classes"]) == ("new", 5)
    assert 0.0 <= test_results["metrics"]["accuracy"] <= 100.0
    # the test loaded the best-validation checkpoint, not an epoch file
    assert "model-best.pth.tar" in (test_dir / "log.txt").read_text()


@pytest.mark.slow
def test_bmip_weights_tool_reads_a_trained_run(tmp_path, tiny_clip_path, eurosat_root):
    """tools/bmip_weights.py: per-layer mean aggregation weights of a trained BMIP run."""
    import subprocess

    from conftest import REPO, run_train

    common = ["--root", eurosat_root, "--seed", 1, "--trainer", "BMIP",
              "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
              "--config-file", str(REPO / "configs/smoke/tiny_clip.yaml"), "--backbone", tiny_clip_path]
    opts = ["DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 1, "TRAINER.BMIP.PREC", "fp32"]
    run_dir = tmp_path / "run"
    proc = run_train(*common, "--output-dir", run_dir, *opts)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "w.png"
    proc = subprocess.run([sys.executable, str(REPO / "tools/bmip_weights.py"), "--out", str(out),
                           "--max-batches", "2", "--", *map(str, common), "--output-dir", str(tmp_path / "t"),
                           "--model-dir", str(run_dir), "--load-epoch", "1", *map(str, opts)],
                          capture_output=True, text=True, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-2000:]
    weights = json.loads((tmp_path / "w.json").read_text())
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(map(int, weights["vision"])) == list(range(1, 9))  # depth 9: layers 1..8
    assert sorted(map(int, weights["text"])) == list(range(1, 8))  # official text: layers 1..7
    for branch in ("vision", "text"):
        for per_token in weights[branch].values():
            assert len(per_token) == 2 and all(0.0 < w < 1.0 for w in per_token)
    # the official text weight is sigmoid(bias) of that layer, whatever the input
    ckpt = torch.load(run_dir / "MultiModalPromptLearner" / "model.pth.tar-1", weights_only=True)
    bias = ckpt["state_dict"]["prompt_learner.text_gates.bias"]
    assert weights["text"]["1"][0] == pytest.approx(torch.sigmoid(bias[0]).item(), abs=1e-6)
