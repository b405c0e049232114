"""Run scripts (scripts/coop/*.sh, scripts/zsclip/zeroshot.sh) and the CoOp trainer configs.

The scripts run for real against a copy of the repo layout in a temp dir, with PYTHON set to
a fake interpreter that records its argv and cwd and writes results.json into --output-dir,
so each test checks the exact train.py command line a script builds.
"""
from pathlib import Path

import pytest
import yaml

from tests.helpers.script_harness import (
    REPO_ROOT, make_script_env, make_script_repo, recorded_calls, run_script,
)

COOP_CONFIGS = REPO_ROOT / "configs" / "trainers" / "CoOp"


@pytest.fixture
def repo(tmp_path):
    """A repo copy with the real scripts and CoOp configs, a dummy train.py and dataset configs."""
    return make_script_repo(tmp_path / "repo", ["CoOp"], ("eurosat", "imagenet", "imagenet_sketch"))


@pytest.fixture
def env(tmp_path):
    """Environment for a script run: DATA set, fake PYTHON, nothing else from the user's env."""
    return make_script_env(tmp_path)


def test_main_sh_builds_coops_command_for_each_default_seed(repo, env, tmp_path):
    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn50_ep50", "end", "16", "4", "False"], env,
                      tmp_path / "elsewhere")
    assert proc.returncode == 0, proc.stderr
    calls = recorded_calls(env)
    assert [argv[argv.index("--seed") + 1] for argv, _ in calls] == ["1", "2", "3"]
    argv, cwd = calls[1]
    assert cwd == str(repo)
    out_dir = "output/eurosat/CoOp/rn50_ep50_4shots/nctx16_cscFalse_ctpend/seed2"
    assert argv == [
        "train.py", "--root", env["DATA"], "--seed", "2", "--trainer", "CoOp",
        "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", "configs/trainers/CoOp/rn50_ep50.yaml",
        "--output-dir", out_dir,
        "TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
        "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "DATASET.NUM_SHOTS", "4",
    ]
    assert (repo / out_dir / "results.json").is_file()


def test_output_seeds_and_extra_opts_from_environment(repo, env, tmp_path):
    caller = tmp_path / "caller"
    env.update(OUTPUT="runs", SEEDS="7 11", EXTRA_OPTS="--device cpu OPTIM.MAX_EPOCH 1")
    proc = run_script(repo, "coop/main.sh", ["eurosat", "vit_b16", "middle", "8", "16", "True"], env, caller)
    assert proc.returncode == 0, proc.stderr
    calls = recorded_calls(env)
    assert len(calls) == 2
    argv = calls[1][0]
    # a relative OUTPUT is the caller's, not the repo's
    assert argv[argv.index("--output-dir") + 1] == str(
        caller / "runs/eurosat/CoOp/vit_b16_16shots/nctx8_cscTrue_ctpmiddle/seed11")
    # flags must precede the KEY VALUE opts, which train.py reads as a remainder
    assert argv[argv.index("--output-dir") + 2:] == [
        "--device", "cpu", "OPTIM.MAX_EPOCH", "1",
        "TRAINER.COOP.N_CTX", "8", "TRAINER.COOP.CSC", "True",
        "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle", "DATASET.NUM_SHOTS", "16",
    ]


def test_relative_data_is_resolved_from_callers_cwd(repo, env, tmp_path):
    env.update(DATA="datasets", SEEDS="1")
    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn50", "end", "16", "1", "False"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = recorded_calls(env)[0][0]
    assert argv[argv.index("--root") + 1] == str(tmp_path / "datasets")


def test_runs_with_results_json_are_skipped_and_unfinished_ones_rerun(repo, env, tmp_path):
    args = ["eurosat", "rn50", "end", "16", "1", "False"]
    setting = "output/eurosat/CoOp/rn50_1shots/nctx16_cscFalse_ctpend"
    assert run_script(repo, "coop/main.sh", args, env, tmp_path).returncode == 0
    assert len(recorded_calls(env)) == 3

    (repo / setting / "seed2" / "results.json").unlink()  # e.g. a crashed run: dir exists, no results
    proc = run_script(repo, "coop/main.sh", args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = recorded_calls(env)
    assert len(calls) == 4
    assert "--seed" in calls[3][0] and calls[3][0][calls[3][0].index("--seed") + 1] == "2"
    for seed in (1, 3):
        assert f"Results are available in {setting}/seed{seed}. Skip this job" in proc.stdout
    assert f"{setting}/seed2. Skip" not in proc.stdout


def test_unset_data_is_a_one_line_error(repo, env, tmp_path):
    del env["DATA"]
    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn50", "end", "16", "1", "False"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ERROR: DATA is not set: export DATA=/path/to/datasets"]
    assert recorded_calls(env) == []


@pytest.mark.parametrize("script,args", [
    ("coop/main.sh", ["eurosat", "rn50", "end", "16", "1", "False"]),
    ("coop/eval.sh", ["imagenet_sketch", "rn50"]),
    ("zsclip/zeroshot.sh", ["eurosat", "rn50"]),
])
def test_missing_data_folder_is_named(repo, env, tmp_path, script, args):
    env["DATA"] = str(tmp_path / "no-such-folder")
    proc = run_script(repo, script, args, env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"ERROR: DATA folder does not exist: {tmp_path / 'no-such-folder'}"]
    assert recorded_calls(env) == []


def test_wrong_argument_count_and_unknown_configs_are_clear_errors(repo, env, tmp_path):
    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn50"], env, tmp_path)
    assert proc.returncode == 1
    assert "expected 6 arguments, got 2" in proc.stderr and "DATASET CFG CTP NCTX SHOTS CSC" in proc.stderr

    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn5O", "end", "16", "1", "False"], env, tmp_path)
    assert proc.returncode == 1
    assert "Trainer config not found: configs/trainers/CoOp/rn5O.yaml" in proc.stderr
    assert "rn50_ep50" in proc.stderr  # lists what exists

    proc = run_script(repo, "zsclip/zeroshot.sh", ["euro_sat", "rn50"], env, tmp_path)
    assert proc.returncode == 1
    assert "Dataset config not found: configs/datasets/euro_sat.yaml" in proc.stderr

    for dataset_config in (repo / "configs" / "datasets").glob("*.yaml"):
        dataset_config.unlink()
    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn50", "end", "16", "1", "False"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "ERROR: Dataset config not found: configs/datasets/eurosat.yaml (available: none)"]

    env["SEEDS"] = "1 two"
    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn50", "end", "16", "1", "False"], env, tmp_path)
    assert proc.returncode == 1 and "SEEDS must be non-negative integers" in proc.stderr
    assert recorded_calls(env) == []


def test_eval_sh_loads_the_imagenet_model_of_each_seed(repo, env, tmp_path):
    setting = "rn50_ep50_16shots/nctx16_cscFalse_ctpend"
    for seed in (1, 2, 3):
        (repo / "output" / "imagenet" / "CoOp" / setting / f"seed{seed}").mkdir(parents=True)
    proc = run_script(repo, "coop/eval.sh", ["imagenet_sketch", "rn50_ep50"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = recorded_calls(env)
    assert len(calls) == 3
    assert calls[2][0] == [
        "train.py", "--root", env["DATA"], "--seed", "3", "--trainer", "CoOp",
        "--dataset-config-file", "configs/datasets/imagenet_sketch.yaml",
        "--config-file", "configs/trainers/CoOp/rn50_ep50.yaml",
        "--output-dir", f"output/evaluation/CoOp/{setting}/imagenet_sketch/seed3",
        "--model-dir", f"output/imagenet/CoOp/{setting}/seed3",
        "--load-epoch", "50", "--eval-only",
        "TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end",
    ]


def test_eval_sh_optional_settings_and_missing_model_dir(repo, env, tmp_path):
    env.update(SEEDS="1", LOAD_EPOCH="5", SOURCE_DATASET="eurosat")
    args = ["imagenet_sketch", "vit_b16", "middle", "4", "2", "True"]
    proc = run_script(repo, "coop/eval.sh", args, env, tmp_path)
    assert proc.returncode == 1
    model_dir = "output/eurosat/CoOp/vit_b16_2shots/nctx4_cscTrue_ctpmiddle/seed1"
    assert proc.stderr.startswith(f"ERROR: model dir not found: {model_dir} (train it first")
    assert len(proc.stderr.strip().splitlines()) == 1

    (repo / model_dir).mkdir(parents=True)
    proc = run_script(repo, "coop/eval.sh", args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = recorded_calls(env)[0][0]
    assert argv[argv.index("--model-dir") + 1] == model_dir
    assert argv[argv.index("--load-epoch") + 1] == "5"
    assert argv[-6:] == ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "True",
                         "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle"]


def test_zeroshot_sh_command_and_skip(repo, env, tmp_path):
    env["EXTRA_OPTS"] = "--device cpu"
    proc = run_script(repo, "zsclip/zeroshot.sh", ["eurosat", "vit_b16"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert recorded_calls(env) == [([
        "train.py", "--root", env["DATA"], "--trainer", "ZeroshotCLIP",
        "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", "configs/trainers/CoOp/vit_b16.yaml",
        "--output-dir", "output/ZeroshotCLIP/vit_b16/eurosat", "--eval-only", "--device", "cpu",
    ], str(repo))]
    again = run_script(repo, "zsclip/zeroshot.sh", ["eurosat", "vit_b16"], env, tmp_path)
    assert again.returncode == 0
    assert "Results are available in output/ZeroshotCLIP/vit_b16/eurosat. Skip this job" in again.stdout
    assert len(recorded_calls(env)) == 1


def test_failing_run_stops_the_seed_loop(repo, env, tmp_path):
    failing = tmp_path / "failing_python"
    failing.write_text("#!/bin/sh\necho \"$@\" >> \"$FAKE_CALLS\"\nexit 3\n")
    failing.chmod(0o755)
    env["PYTHON"] = str(failing)
    proc = run_script(repo, "coop/main.sh", ["eurosat", "rn50", "end", "16", "1", "False"], env, tmp_path)
    assert proc.returncode == 3
    assert len(Path(env["FAKE_CALLS"]).read_text().splitlines()) == 1


# --- configs -------------------------------------------------------------------------------

EXPECTED_CONFIGS = {
    # name: (backbone, max epoch or None, CTX_INIT or None)
    "rn50": ("RN50", 200, None), "rn50_ep50": ("RN50", 50, None), "rn50_ep100": ("RN50", 100, None),
    "rn50_ctxv1": ("RN50", 200, "a photo of a"), "rn50_ep50_ctxv1": ("RN50", 50, "a photo of a"),
    "rn50_val": ("RN50", None, None),
    "rn101": ("RN101", 200, None), "rn101_ep50": ("RN101", 50, None),
    "vit_b32": ("ViT-B/32", 200, None), "vit_b32_ep50": ("ViT-B/32", 50, None),
    "vit_b16": ("ViT-B/16", 200, None), "vit_b16_ep50": ("ViT-B/16", 50, None),
    "vit_b16_ep100": ("ViT-B/16", 100, None), "vit_b16_ctxv1": ("ViT-B/16", 200, "a photo of a"),
    "vit_b16_ep50_ctxv1": ("ViT-B/16", 50, "a photo of a"),
    "vit_b16_ep100_ctxv1": ("ViT-B/16", 100, "a photo of a"),
}


def test_coop_config_files_match_the_official_set():
    found = sorted(p.stem for p in COOP_CONFIGS.glob("*.yaml") if p.stem != "mini_clip")  # see test_mini_clip.py
    assert found == sorted(EXPECTED_CONFIGS)


@pytest.mark.parametrize("name", sorted(EXPECTED_CONFIGS))
def test_coop_config_values(name):
    cfg = yaml.safe_load((COOP_CONFIGS / f"{name}.yaml").read_text())
    backbone, max_epoch, ctx_init = EXPECTED_CONFIGS[name]
    assert cfg["MODEL"] == {"BACKBONE": {"NAME": backbone}}
    assert cfg["INPUT"]["SIZE"] == "(224, 224)" and cfg["INPUT"]["INTERPOLATION"] == "bicubic"
    assert cfg["INPUT"]["PIXEL_MEAN"] == [0.48145466, 0.4578275, 0.40821073]
    assert cfg["INPUT"]["PIXEL_STD"] == [0.26862954, 0.26130258, 0.27577711]
    assert cfg["INPUT"]["TRANSFORMS"] == ["random_resized_crop", "random_flip", "normalize"]
    assert cfg["DATALOADER"]["NUM_WORKERS"] == 8
    if max_epoch is None:  # rn50_val: feature extraction only
        assert "OPTIM" not in cfg and "TRAIN" not in cfg
        assert cfg["DATALOADER"]["TRAIN_X"]["BATCH_SIZE"] == 200 == cfg["DATALOADER"]["TEST"]["BATCH_SIZE"]
    else:
        assert cfg["DATALOADER"]["TRAIN_X"]["BATCH_SIZE"] == 32 and cfg["DATALOADER"]["TEST"]["BATCH_SIZE"] == 100
        assert cfg["OPTIM"] == {"NAME": "sgd", "LR": 0.002, "MAX_EPOCH": max_epoch, "LR_SCHEDULER": "cosine",
                                "WARMUP_EPOCH": 1, "WARMUP_TYPE": "constant", "WARMUP_CONS_LR": "1e-5"}
        assert cfg["TRAIN"] == {"PRINT_FREQ": 5}
    if ctx_init is None:
        assert "TRAINER" not in cfg
    else:
        assert cfg["TRAINER"] == {"COOP": {"CTX_INIT": ctx_init}}


def test_coop_configs_merge_into_dassl_defaults():
    config_module = pytest.importorskip("dassl.config", reason="dassl.config not written yet")
    for name in sorted(EXPECTED_CONFIGS):
        cfg = config_module.get_cfg_default()
        content = yaml.safe_load((COOP_CONFIGS / f"{name}.yaml").read_text())
        content.pop("TRAINER", None)  # cfg.TRAINER.COOP comes from the CoOp trainer's own defaults
        cfg.merge_from_other_cfg(type(cfg)(content))
        assert cfg.MODEL.BACKBONE.NAME == EXPECTED_CONFIGS[name][0]
        assert tuple(cfg.INPUT.SIZE) == (224, 224)
        assert cfg.OPTIM.WARMUP_CONS_LR == pytest.approx(1e-5)


@pytest.mark.parametrize("script, expected", [
    ("independent-vlp/base2new_train_ivlp.sh", "mini_clip"),
    ("language-prompting/base2new_train_lp.sh", "mini_clip_language_only"),
    ("coop/base2new_train.sh", "mini_clip"),
])
def test_cfg_replaces_the_scripts_config_and_keeps_language_prompting_apart(tmp_path, script, expected):
    repo = make_script_repo(tmp_path / "repo", ["CoOp", "IVLP"], ("minishapes",))
    env = make_script_env(tmp_path)
    env["CFG"] = "mini_clip"
    proc = run_script(repo, script, ["minishapes", "1"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (argv, _), = recorded_calls(env)
    trainer = argv[argv.index("--trainer") + 1]
    assert argv[argv.index("--config-file") + 1] == f"configs/trainers/{trainer}/{expected}.yaml"
    assert argv[argv.index("--output-dir") + 1].endswith(f"/{trainer}/{expected}/seed1")
