"""Run scripts (scripts/coop/*.sh, scripts/zsclip/zeroshot.sh), the CoOp trainer configs, and the
scripts of the regularizers composed over prompting bases (scripts/promptsrc/, scripts/coprompt/,
scripts/{promptsrc-maple,promptsrc-bmip,promptsrc-bloom,coprompt-bmip,coprompt-bloom}/).

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


# --- regularizers over prompting bases: PromptSRC, CoPrompt and their compositions ---------------

COMPOSITION_CONFIG_DIRS = ["PromptSRC", "PromptSRC_MaPLe", "PromptSRC_BMIP", "PromptSRC_Bloom",
                           "CoPrompt", "CoPrompt_BMIP", "CoPrompt_Bloom"]
NO_SETTINGS = ["TRAINER.CoPrompt.DATASET_SETTINGS", "False"]  # CoPrompt's cross-dataset runs
# folder: (trainer, {step: (script, base2new/xd/fewshot config, load epoch or None, extra opts)}),
# written out by hand from the configs' MAX_EPOCH and the official scripts
COMPOSED_SCRIPTS = {
    "promptsrc": ("PromptSRC", {
        "base2new_train": ("base2new_train.sh", "vit_b16_c2_ep20_batch4_4+4ctx", None, []),
        "base2new_test": ("base2new_test.sh", "vit_b16_c2_ep20_batch4_4+4ctx", "20", []),
        "xd_train": ("xd_train.sh", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", None, []),
        "xd_test": ("xd_test.sh", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", "20", []),
        "fewshot": ("few_shot.sh", "vit_b16_c2_ep50_batch4_4+4ctx_few_shot", None, []),
    }),
    "coprompt": ("CoPrompt", {
        "base2new_train": ("base2new_train_coprompt.sh", "coprompt", None, []),
        "base2new_test": ("base2new_test_coprompt.sh", "coprompt", "8", []),
        "xd_train": ("xd_train_coprompt.sh", "coprompt", None, NO_SETTINGS),
        "xd_test": ("xd_test_coprompt.sh", "coprompt", "8", NO_SETTINGS),
        "fewshot": ("fewshot_coprompt.sh", "coprompt", None, []),
    }),
    "promptsrc-maple": ("PromptSRC_MaPLe", {
        "base2new_train": ("base2new_train.sh", "vit_b16_c2_ep20_batch4_2ctx", None, []),
        "base2new_test": ("base2new_test.sh", "vit_b16_c2_ep20_batch4_2ctx", "20", []),
        "xd_train": ("xd_train.sh", "vit_b16_c2_ep20_batch4_2ctx", None, []),
        "xd_test": ("xd_test.sh", "vit_b16_c2_ep20_batch4_2ctx", "20", []),
        "fewshot": ("fewshot.sh", "vit_b16_c2_ep20_batch4_2ctx", None, []),
    }),
    "promptsrc-bmip": ("PromptSRC_BMIP", {
        "base2new_train": ("base2new_train.sh", "vit_bitp_ctx4_ep20TT_adam_PromptSRC", None, []),
        "base2new_test": ("base2new_test.sh", "vit_bitp_ctx4_ep20TT_adam_PromptSRC", "20", []),
        "xd_train": ("xd_train.sh", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", None, []),
        "xd_test": ("xd_test.sh", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", "20", []),
        "fewshot": ("fewshot.sh", "vit_bitp_ctx4_ep20TT_adam_PromptSRC", None, []),
    }),
    "promptsrc-bloom": ("PromptSRC_Bloom", {
        "base2new_train": ("base2new_train.sh", "vit_b16_c2_ep20_batch4_2ctx", None, []),
        "base2new_test": ("base2new_test.sh", "vit_b16_c2_ep20_batch4_2ctx", "20", []),
        "xd_train": ("xd_train.sh", "vit_b16_c2_ep20_batch4_2ctx", None, []),
        "xd_test": ("xd_test.sh", "vit_b16_c2_ep20_batch4_2ctx", "20", []),
        "fewshot": ("fewshot.sh", "vit_b16_c2_ep20_batch4_2ctx", None, []),
    }),
    "coprompt-bmip": ("CoPrompt_BMIP", {
        "base2new_train": ("base2new_train.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", None, []),
        "base2new_test": ("base2new_test.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", "8", []),
        "xd_train": ("xd_train.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", None, NO_SETTINGS),
        "xd_test": ("xd_test.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", "8", NO_SETTINGS),
        "fewshot": ("fewshot.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", None, []),
    }),
    "coprompt-bloom": ("CoPrompt_Bloom", {
        "base2new_train": ("base2new_train.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", None, []),
        "base2new_test": ("base2new_test.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", "8", []),
        "xd_train": ("xd_train.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", None, NO_SETTINGS),
        "xd_test": ("xd_test.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", "8", NO_SETTINGS),
        "fewshot": ("fewshot.sh", "vit_b16_c2_ep8_batch4_2ctx_randaug", None, []),
    }),
}


@pytest.fixture
def composed_repo(tmp_path):
    """Repo copy with the real scripts and the configs of every composed trainer."""
    return make_script_repo(tmp_path / "repo", COMPOSITION_CONFIG_DIRS, ("eurosat", "dtd", "imagenet", "food101"))


def head_argv(env, trainer, cfg, dataset, seed, out_dir):
    """The train.py flags every protocol run starts with."""
    return ["train.py", "--root", env["DATA"], "--seed", seed, "--trainer", trainer,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/{trainer}/{cfg}.yaml", "--output-dir", out_dir]


def test_composed_script_folders_hold_exactly_the_sweep_scripts():
    for folder, (_, steps) in COMPOSED_SCRIPTS.items():
        found = sorted(p.name for p in (REPO_ROOT / "scripts" / folder).glob("*.sh"))
        assert found == sorted(script for script, *_ in steps.values()), folder


def test_promptsrc_base2new_pair_literally(composed_repo, env, tmp_path):
    """One pair written out in full, independent of the table the other tests read."""
    for script in ("base2new_train.sh", "base2new_test.sh"):
        proc = run_script(composed_repo, f"promptsrc/{script}", ["dtd", "2"], env, tmp_path / "elsewhere")
        assert proc.returncode == 0, proc.stderr
    assert recorded_calls(env) == [
        (["train.py", "--root", env["DATA"], "--seed", "2", "--trainer", "PromptSRC",
          "--dataset-config-file", "configs/datasets/dtd.yaml",
          "--config-file", "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
          "--output-dir", "output/base2new/train_base/dtd/shots_16/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed2",
          "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"], str(composed_repo)),
        (["train.py", "--root", env["DATA"], "--seed", "2", "--trainer", "PromptSRC",
          "--dataset-config-file", "configs/datasets/dtd.yaml",
          "--config-file", "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
          "--output-dir", "output/base2new/test_new/dtd/shots_16/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed2",
          "--model-dir", "output/base2new/train_base/dtd/shots_16/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx/seed2",
          "--load-epoch", "20", "--eval-only",
          "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"], str(composed_repo)),
    ]


@pytest.mark.parametrize("folder", sorted(COMPOSED_SCRIPTS))
def test_composed_base2new_scripts_exact_commands(composed_repo, env, tmp_path, folder):
    trainer, steps = COMPOSED_SCRIPTS[folder]
    train_script, cfg, _, _ = steps["base2new_train"]
    test_script, test_cfg, load_epoch, _ = steps["base2new_test"]
    assert test_cfg == cfg
    env["EXTRA_OPTS"] = "--device cpu"
    for script in (train_script, test_script):
        proc = run_script(composed_repo, f"{folder}/{script}", ["eurosat", "3"], env, tmp_path)
        assert proc.returncode == 0, proc.stderr
    common = f"eurosat/shots_16/{trainer}/{cfg}/seed3"
    assert [argv for argv, _ in recorded_calls(env)] == [
        head_argv(env, trainer, cfg, "eurosat", "3", f"output/base2new/train_base/{common}")
        + ["--device", "cpu", "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"],
        head_argv(env, trainer, cfg, "eurosat", "3", f"output/base2new/test_new/{common}")
        + ["--model-dir", f"output/base2new/train_base/{common}", "--load-epoch", load_epoch, "--eval-only",
           "--device", "cpu", "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"],
    ]


@pytest.mark.parametrize("folder", sorted(COMPOSED_SCRIPTS))
def test_composed_cross_dataset_scripts_exact_commands(composed_repo, env, tmp_path, folder):
    trainer, steps = COMPOSED_SCRIPTS[folder]
    train_script, cfg, _, opts = steps["xd_train"]
    test_script, test_cfg, load_epoch, test_opts = steps["xd_test"]
    assert (test_cfg, test_opts) == (cfg, opts)
    assert run_script(composed_repo, f"{folder}/{train_script}", ["imagenet", "1"], env, tmp_path).returncode == 0
    proc = run_script(composed_repo, f"{folder}/{test_script}", ["dtd", "1"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    model = f"output/xd/train/imagenet/shots_16/{trainer}/{cfg}/seed1"
    assert [argv for argv, _ in recorded_calls(env)] == [
        head_argv(env, trainer, cfg, "imagenet", "1", model) + ["DATASET.NUM_SHOTS", "16", *opts],
        head_argv(env, trainer, cfg, "dtd", "1", f"output/xd/test/dtd/shots_16/{trainer}/{cfg}/seed1")
        + ["--model-dir", model, "--load-epoch", load_epoch, "--eval-only", *opts],
    ]


@pytest.mark.parametrize("folder", sorted(COMPOSED_SCRIPTS))
def test_composed_fewshot_scripts_exact_commands(composed_repo, env, tmp_path, folder):
    trainer, steps = COMPOSED_SCRIPTS[folder]
    script, cfg, _, _ = steps["fewshot"]
    # PromptSRC's official few_shot.sh takes DATASET SHOTS (and our optional SEED)
    args = ["eurosat", "4", "2"] if folder == "promptsrc" else ["eurosat", "2", "4"]
    proc = run_script(composed_repo, f"{folder}/{script}", args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [argv for argv, _ in recorded_calls(env)] == [
        head_argv(env, trainer, cfg, "eurosat", "2", f"output/fewshot/eurosat/shots_4/{trainer}/{cfg}/seed2")
        + ["DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "all"]]


def test_promptsrc_few_shot_loops_the_seeds_like_the_official_script(composed_repo, env, tmp_path):
    proc = run_script(composed_repo, "promptsrc/few_shot.sh", ["dtd", "8"], env, tmp_path / "caller")
    assert proc.returncode == 0, proc.stderr
    setting = "shots_8/PromptSRC/vit_b16_c2_ep50_batch4_4+4ctx_few_shot"
    # every seed's command is the same relative one, whatever the loop did to the shell before it
    assert [(argv[argv.index("--seed") + 1], argv[argv.index("--output-dir") + 1]) for argv, _ in
            recorded_calls(env)] == [(seed, f"output/fewshot/dtd/{setting}/seed{seed}") for seed in ("1", "2", "3")]
    env.update(SEEDS="4 5", OUTPUT="runs")
    assert run_script(composed_repo, "promptsrc/few_shot.sh", ["dtd", "8"], env, tmp_path / "caller").returncode == 0
    assert [argv[argv.index("--output-dir") + 1] for argv, _ in recorded_calls(env)[3:]] == [
        str(tmp_path / "caller" / "runs" / "fewshot" / "dtd" / setting / f"seed{seed}") for seed in (4, 5)]
    for args, message in ((["dtd"], "expected 2 to 3 arguments, got 1"),
                          (["dtd", "8", "x"], "SEED must be a non-negative integer, got 'x'"),
                          (["dtd", "eight", "1"], "SHOTS must be a non-negative integer, got 'eight'")):
        proc = run_script(composed_repo, "promptsrc/few_shot.sh", args, env, tmp_path)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert len(recorded_calls(env)) == 5


@pytest.mark.parametrize("folder,script", [("coprompt", "base2new_test_coprompt.sh"),
                                           ("coprompt-bmip", "base2new_test.sh"),
                                           ("coprompt-bloom", "base2new_test.sh")])
def test_coprompt_tests_load_food101s_fifth_epoch(composed_repo, env, tmp_path, folder, script):
    """The per-dataset settings train Food101 for 5 epochs (the official README tests it at 5)."""
    trainer, steps = COMPOSED_SCRIPTS[folder]
    cfg = steps["base2new_test"][1]
    for dataset in ("food101", "eurosat"):
        (composed_repo / f"output/base2new/train_base/{dataset}/shots_16/{trainer}/{cfg}/seed1").mkdir(parents=True)
        assert run_script(composed_repo, f"{folder}/{script}", [dataset, "1"], env, tmp_path).returncode == 0
    env["LOADEP"] = "3"
    env["SUB"] = "base"  # a fresh output dir, so the run is not skipped
    assert run_script(composed_repo, f"{folder}/{script}", ["food101", "1"], env, tmp_path).returncode == 0
    epochs = [argv[argv.index("--load-epoch") + 1] for argv, _ in recorded_calls(env)]
    assert epochs == ["5", "8", "3"]


def test_coprompt_official_arguments_exp_name_and_loadep(composed_repo, env, tmp_path):
    common = "eurosat/shots_16/CoPrompt/coprompt/seed1"
    script = "coprompt/base2new_test_coprompt.sh"
    # EXP_NAME puts the experiment in a tree of its own: OUTPUT/EXP_NAME/base2new/...
    proc = run_script(composed_repo, "coprompt/base2new_train_coprompt.sh", ["eurosat", "1", "CoPrompt"], env,
                      tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = run_script(composed_repo, script, ["eurosat", "1", "CoPrompt", "6"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    tree = f"{composed_repo}/output/CoPrompt/base2new"
    (train_argv, _), (test_argv, _) = recorded_calls(env)
    assert train_argv[train_argv.index("--output-dir") + 1] == f"{tree}/train_base/{common}"
    assert test_argv[test_argv.index("--output-dir") + 1:test_argv.index("--eval-only")] == [
        f"{tree}/test_new/{common}", "--model-dir", f"{tree}/train_base/{common}", "--load-epoch", "6"]
    # with OUTPUT set, under it; "base2new" (the official suggestion) or "" is the shared tree
    env["OUTPUT"] = "runs"
    for exp_name, where in (("exp1", tmp_path / "runs" / "exp1"), ("base2new", tmp_path / "runs"),
                            ("", tmp_path / "runs")):
        proc = run_script(composed_repo, "coprompt/base2new_train_coprompt.sh", ["dtd", "1", exp_name], env, tmp_path)
        assert proc.returncode == 0, proc.stderr
        argv = recorded_calls(env)[-1][0]
        assert argv[argv.index("--output-dir") + 1] == f"{where}/base2new/train_base/dtd/shots_16/CoPrompt/coprompt/seed1"
        (Path(argv[argv.index("--output-dir") + 1]) / "results.json").unlink()
    # the missing model names the training command with its EXP_NAME; the 4th argument beats LOADEP
    env["LOADEP"] = "2"
    proc = run_script(composed_repo, script, ["eurosat", "2", "exp2", "7"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"ERROR: model dir not found: {tmp_path}/runs/exp2/base2new/train_base/eurosat/shots_16/CoPrompt/coprompt/seed2 "
        "(train it first: bash scripts/coprompt/base2new_train_coprompt.sh eurosat 2 exp2)"]
    (tmp_path / "runs/exp2/base2new/train_base/eurosat/shots_16/CoPrompt/coprompt/seed2").mkdir(parents=True)
    assert run_script(composed_repo, script, ["eurosat", "2", "exp2", "7"], env, tmp_path).returncode == 0
    assert recorded_calls(env)[-1][0][recorded_calls(env)[-1][0].index("--load-epoch") + 1] == "7"
    for args, message in ((["eurosat", "1", "a/b"], "EXP_NAME must be one folder name, got 'a/b'"),
                          (["eurosat", "1", "", "x"], "LOADEP must be a non-negative integer, got 'x'"),
                          (["eurosat", "1", "e", "8", "9"], "expected 2 to 4 arguments, got 5")):
        proc = run_script(composed_repo, script, args, env, tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"ERROR: {message}"), proc.stderr


@pytest.mark.parametrize("script,hint", [
    ("promptsrc/base2new_test.sh", "bash scripts/promptsrc/base2new_train.sh eurosat 1"),
    ("promptsrc/xd_test.sh", "bash scripts/promptsrc/xd_train.sh imagenet 1"),
    ("promptsrc-bloom/base2new_test.sh", "bash scripts/promptsrc-bloom/base2new_train.sh eurosat 1"),
    ("coprompt/xd_test_coprompt.sh", "bash scripts/coprompt/xd_train_coprompt.sh imagenet 1"),
    ("coprompt-bmip/xd_test.sh", "bash scripts/coprompt-bmip/xd_train.sh imagenet 1"),
])
def test_composed_test_scripts_name_the_command_that_trains_the_missing_model(composed_repo, env, tmp_path,
                                                                             script, hint):
    proc = run_script(composed_repo, script, ["eurosat", "1"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"(train it first: {hint})") and len(proc.stderr.strip().splitlines()) == 1
    assert recorded_calls(env) == []


@pytest.mark.parametrize("folder", sorted(COMPOSED_SCRIPTS))
def test_cfg_mini_clip_and_loadep_reach_every_composed_test_script(composed_repo, env, tmp_path, folder):
    """CFG=mini_clip (every composed trainer has one; 10 epochs) with LOADEP=10, as the quickstart would."""
    trainer, steps = COMPOSED_SCRIPTS[folder]
    env.update(CFG="mini_clip", LOADEP="10")
    for step in ("base2new_train", "base2new_test"):
        proc = run_script(composed_repo, f"{folder}/{steps[step][0]}", ["eurosat", "1"], env, tmp_path)
        assert proc.returncode == 0, proc.stderr
    (train_argv, _), (test_argv, _) = recorded_calls(env)
    for argv in (train_argv, test_argv):
        assert argv[argv.index("--config-file") + 1] == f"configs/trainers/{trainer}/mini_clip.yaml"
    assert test_argv[test_argv.index("--model-dir") + 1] == \
        f"output/base2new/train_base/eurosat/shots_16/{trainer}/mini_clip/seed1"
    assert test_argv[test_argv.index("--load-epoch") + 1] == "10"
