"""Configs and run scripts of the CoOp lineage: CoCoOp, VPT, deep language prompting, IVLP, MaPLe.

Command-line tests run every script under scripts/{cocoop,vpt,language-prompting,independent-vlp,maple}
against a repo copy with a fake interpreter (tests/helpers/script_harness.py) and check the exact
train.py command, the output dirs and the errors. The slow tests run the real base-to-novel
train + test scripts of each method on a generated EuroSAT with the tiny CLIP.

Scripts and configs are compared with the official ones (KaiyangZhou/CoOp for CoOp,
muzairkhattak/multimodal-prompt-learning for the rest) through the facts recorded in
tests/official_facts/facts.json (tests/helpers/official_facts.py), on every machine. With
PROMPTCLIP_OFFICIAL_REPOS set (docs/DEVELOPING.md), the configs are also compared with the live
official files; those tests are only defined then, so a plain run neither runs nor skips them.
"""
import ast
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import train_server_env
import yaml

from tests.helpers import official_facts
from tests.helpers.script_harness import (
    REPO_ROOT, make_script_env, make_script_repo, recorded_calls, run_script,
)

TRAINER_CONFIGS = REPO_ROOT / "configs" / "trainers"
LIVE = official_facts.live_root() is not None  # PROMPTCLIP_OFFICIAL_REPOS is set


@dataclass(frozen=True)
class Method:
    """What the official scripts of one method hard-code."""
    folder: str
    suffix: str                   # scripts/<folder>/base2new_train<suffix>.sh
    trainer: str
    config_node: str              # cfg.TRAINER.<config_node>
    base2new_cfg: str
    base2new_load_epoch: int
    xd_cfg: str
    xd_load_epoch: int
    xd_train_takes_dataset: bool  # CoCoOp's xd_train.sh takes only SEED and trains on ImageNet

    def script(self, step):
        return f"{self.folder}/{step}{self.suffix}.sh"


METHODS = {
    "cocoop": Method("cocoop", "", "CoCoOp", "COCOOP", "vit_b16_c4_ep10_batch1_ctxv1", 10,
                     "vit_b16_c4_ep10_batch1_ctxv1", 10, False),
    # VPT / LP / IVLP: the official xd_test loads epoch 2 of a 5-epoch config, a checkpoint that is
    # never written; ours defaults to the last epoch.
    "vpt": Method("vpt", "_vpt", "VPT", "VPT", "vit_b16_c2_ep5_batch4_4", 5, "vit_b16_c2_ep5_batch4_4", 5, True),
    "lp": Method("language-prompting", "_lp", "IVLP", "IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only", 5,
                 "vit_b16_c2_ep5_batch4_4ctx_language_only", 5, True),
    "ivlp": Method("independent-vlp", "_ivlp", "IVLP", "IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", 5,
                   "vit_b16_c2_ep5_batch4_2+2ctx", 5, True),
    "maple": Method("maple", "_maple", "MaPLe", "MAPLE", "vit_b16_c2_ep5_batch4_2ctx", 5,
                    "vit_b16_c2_ep5_batch4_2ctx_cross_datasets", 2, True),
}
ALL_SCRIPTS = [(key, step) for key in METHODS
               for step in ("base2new_train", "base2new_test", "xd_train", "xd_test")]


def script_args(method, step, dataset="eurosat", seed="1"):
    """Positional arguments of a script for one dataset and seed."""
    if step == "xd_train" and not method.xd_train_takes_dataset:
        return [seed]
    return [dataset, seed]


def head_flags(method, cfg, dataset, seed, out_dir, data):
    """The train.py flags every script starts with."""
    return ["train.py", "--root", data, "--seed", seed, "--trainer", method.trainer,
            "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
            "--config-file", f"configs/trainers/{method.trainer}/{cfg}.yaml", "--output-dir", out_dir]


def base2new_dirs(method, dataset, seed, shots=16, sub="new", root="output"):
    """(train dir, test dir) of the official base-to-novel layout."""
    common = f"{dataset}/shots_{shots}/{method.trainer}/{method.base2new_cfg}/seed{seed}"
    return f"{root}/base2new/train_base/{common}", f"{root}/base2new/test_{sub}/{common}"


@pytest.fixture
def repo(tmp_path):
    """Repo copy with the real scripts and every trainer config, stub dataset configs."""
    config_dirs = [p.name for p in TRAINER_CONFIGS.iterdir() if p.is_dir()]
    return make_script_repo(tmp_path / "repo", config_dirs,
                            ("eurosat", "imagenet", "caltech101", "imagenet_sketch"))


@pytest.fixture
def env(tmp_path):
    """DATA, the fake PYTHON and PATH; nothing else from the user's environment."""
    return make_script_env(tmp_path)


# --- scripts: command lines -------------------------------------------------------------------

def test_each_method_has_the_four_official_scripts_and_fewshot():
    for method in METHODS.values():
        names = sorted(p.name for p in (REPO_ROOT / "scripts" / method.folder).glob("*.sh"))
        assert names == sorted(Path(method.script(step)).name
                               for step in ("base2new_train", "base2new_test", "xd_train", "xd_test", "fewshot"))


def test_maple_base2new_commands_literally(repo, env, tmp_path):
    """One fully written-out pair, independent of the helpers that build the other expectations."""
    proc = run_script(repo, "maple/base2new_train_maple.sh", ["eurosat", "1"], env, tmp_path / "somewhere")
    assert proc.returncode == 0, proc.stderr
    proc = run_script(repo, "maple/base2new_test_maple.sh", ["eurosat", "1"], env, tmp_path / "somewhere")
    assert proc.returncode == 0, proc.stderr
    (train_argv, train_cwd), (test_argv, _) = recorded_calls(env)
    assert train_cwd == str(repo)
    assert train_argv == [
        "train.py", "--root", env["DATA"], "--seed", "1", "--trainer", "MaPLe",
        "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
        "--output-dir", "output/base2new/train_base/eurosat/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed1",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base",
    ]
    assert test_argv == [
        "train.py", "--root", env["DATA"], "--seed", "1", "--trainer", "MaPLe",
        "--dataset-config-file", "configs/datasets/eurosat.yaml",
        "--config-file", "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
        "--output-dir", "output/base2new/test_new/eurosat/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed1",
        "--model-dir", "output/base2new/train_base/eurosat/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed1",
        "--load-epoch", "5", "--eval-only",
        "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new",
    ]


@pytest.mark.parametrize("key", sorted(METHODS))
def test_base2new_train_command_and_skip(repo, env, tmp_path, key):
    method = METHODS[key]
    script = method.script("base2new_train")
    proc = run_script(repo, script, ["eurosat", "2"], env, tmp_path / "elsewhere")
    assert proc.returncode == 0, proc.stderr
    train_dir, _ = base2new_dirs(method, "eurosat", 2)
    assert recorded_calls(env) == [(
        head_flags(method, method.base2new_cfg, "eurosat", "2", train_dir, env["DATA"])
        + ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"],
        str(repo),
    )]
    assert (repo / train_dir / "results.json").is_file()

    again = run_script(repo, script, ["eurosat", "2"], env, tmp_path / "elsewhere")
    assert again.returncode == 0, again.stderr
    assert f"Results are available in {train_dir}. Skip this job" in again.stdout
    assert len(recorded_calls(env)) == 1


@pytest.mark.parametrize("key", sorted(METHODS))
def test_base2new_test_needs_the_trained_model_then_evaluates_new_classes(repo, env, tmp_path, key):
    method = METHODS[key]
    script = method.script("base2new_test")
    train_dir, test_dir = base2new_dirs(method, "eurosat", 3)
    proc = run_script(repo, script, ["eurosat", "3"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"ERROR: model dir not found: {train_dir} (train it first: "
        f"bash scripts/{method.script('base2new_train')} eurosat 3)"]
    assert recorded_calls(env) == []

    (repo / train_dir).mkdir(parents=True)
    proc = run_script(repo, script, ["eurosat", "3"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert recorded_calls(env) == [(
        head_flags(method, method.base2new_cfg, "eurosat", "3", test_dir, env["DATA"])
        + ["--model-dir", train_dir, "--load-epoch", str(method.base2new_load_epoch), "--eval-only",
           "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"],
        str(repo),
    )]
    again = run_script(repo, script, ["eurosat", "3"], env, tmp_path)
    assert again.returncode == 0 and f"Results are available in {test_dir}. Skip this job" in again.stdout
    assert len(recorded_calls(env)) == 1


@pytest.mark.parametrize("key", sorted(METHODS))
def test_xd_train_command(repo, env, tmp_path, key):
    method = METHODS[key]
    proc = run_script(repo, method.script("xd_train"), script_args(method, "xd_train", "imagenet", "1"), env,
                      tmp_path)
    assert proc.returncode == 0, proc.stderr
    out_dir = f"output/xd/train/imagenet/shots_16/{method.trainer}/{method.xd_cfg}/seed1"
    assert recorded_calls(env) == [(
        head_flags(method, method.xd_cfg, "imagenet", "1", out_dir, env["DATA"]) + ["DATASET.NUM_SHOTS", "16"],
        str(repo),
    )]
    assert (repo / out_dir / "results.json").is_file()


@pytest.mark.parametrize("key", sorted(METHODS))
def test_xd_test_loads_the_imagenet_model(repo, env, tmp_path, key):
    method = METHODS[key]
    script = method.script("xd_test")
    model_dir = f"output/xd/train/imagenet/shots_16/{method.trainer}/{method.xd_cfg}/seed2"
    proc = run_script(repo, script, ["caltech101", "2"], env, tmp_path)
    assert proc.returncode == 1
    train_cmd = " ".join(["bash", f"scripts/{method.script('xd_train')}",
                          *script_args(method, "xd_train", "imagenet", "2")])
    assert proc.stderr.strip().splitlines() == [
        f"ERROR: model dir not found: {model_dir} (train it first: {train_cmd})"]

    (repo / model_dir).mkdir(parents=True)
    proc = run_script(repo, script, ["caltech101", "2"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out_dir = f"output/xd/test/caltech101/shots_16/{method.trainer}/{method.xd_cfg}/seed2"
    assert recorded_calls(env) == [(
        head_flags(method, method.xd_cfg, "caltech101", "2", out_dir, env["DATA"])
        + ["--model-dir", model_dir, "--load-epoch", str(method.xd_load_epoch), "--eval-only"],
        str(repo),
    )]


# --- scripts: the official command lines ------------------------------------------------------

# VPT / LP / IVLP: the official xd_test loads epoch 2 of a 5-epoch run (never written); ours the last
OFFICIAL_XD_LOAD_EPOCH = {"vpt": 2, "lp": 2, "ivlp": 2}


def official_script(method, step):
    """Recorded facts of the official script ours copies (same path in the official repository)."""
    return official_facts.recorded_script(official_facts.LINEAGE, f"scripts/{method.script(step)}")


def replace_flag(argv, flag, official_value, ours):
    """``argv`` with ``flag``'s value, which must be ``official_value``, replaced by ``ours``."""
    assert argv[argv.index(flag) + 1] == official_value, (flag, argv)
    return official_facts.with_flag(argv, flag, ours)


@pytest.mark.parametrize("key,step", [(k, s) for k in sorted(METHODS) for s in ("base2new_train", "base2new_test")])
def test_base2new_command_is_the_official_command_line(repo, env, tmp_path, key, step):
    """Same positional arguments, same train.py arguments in the same order as the official script."""
    method = METHODS[key]
    args = ["eurosat", "4"]
    if step == "base2new_test":
        (repo / base2new_dirs(method, "eurosat", 4)[0]).mkdir(parents=True)
    proc = run_script(repo, method.script(step), args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    [(argv, _)] = recorded_calls(env)
    official = official_facts.official_command(official_script(method, step), args, DATA=env["DATA"])
    assert argv == ["train.py", *official]


@pytest.mark.parametrize("key,step", [(k, s) for k in sorted(METHODS) for s in ("xd_train", "xd_test")])
def test_xd_command_is_the_official_one_in_our_layout(repo, env, tmp_path, key, step):
    """The official command but for the dirs, which follow the base-to-novel layout
    (output/xd/{train,test}/<dataset>/shots_<n>/<trainer>/<cfg>/seed<s>; official:
    output/<source>/<trainer>/<cfg>_<n>shots/seed<s> and output/evaluation/<trainer>/<cfg>_<n>shots/<target>/seed<s>),
    and VPT / LP / IVLP's load epoch (OFFICIAL_XD_LOAD_EPOCH)."""
    method = METHODS[key]
    facts = official_script(method, step)
    args = script_args(method, step, "imagenet" if step == "xd_train" else "caltech101", "4")
    cfg, trainer = method.xd_cfg, method.trainer
    official_train_dir = f"output/imagenet/{trainer}/{cfg}_16shots/seed4"
    train_dir = f"output/xd/train/imagenet/shots_16/{trainer}/{cfg}/seed4"
    expected = official_facts.official_command(facts, args, DATA=env["DATA"])
    if step == "xd_train":
        expected = replace_flag(expected, "--output-dir", official_train_dir, train_dir)
    else:
        (repo / train_dir).mkdir(parents=True)
        expected = replace_flag(expected, "--output-dir", f"output/evaluation/{trainer}/{cfg}_16shots/caltech101/seed4",
                                f"output/xd/test/caltech101/shots_16/{trainer}/{cfg}/seed4")
        expected = replace_flag(expected, "--model-dir", official_train_dir, train_dir)
        expected = replace_flag(expected, "--load-epoch", str(OFFICIAL_XD_LOAD_EPOCH.get(key, method.xd_load_epoch)),
                                str(method.xd_load_epoch))
    proc = run_script(repo, method.script(step), args, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    [(argv, _)] = recorded_calls(env)
    assert argv == ["train.py", *expected]


def test_train_then_test_chain_through_the_fake_runs(repo, env, tmp_path):
    """Each train script writes exactly where its test script looks for the model."""
    pairs = (("xd_train", "xd_test", "imagenet_sketch"), ("base2new_train", "base2new_test", "eurosat"))
    for key, method in METHODS.items():
        for train_step, test_step, test_dataset in pairs:
            train_args = script_args(method, train_step, "imagenet" if train_step == "xd_train" else "eurosat", "5")
            proc = run_script(repo, method.script(train_step), train_args, env, tmp_path)
            assert proc.returncode == 0, (key, proc.stderr)
            proc = run_script(repo, method.script(test_step), [test_dataset, "5"], env, tmp_path)
            assert proc.returncode == 0, (key, proc.stderr)
    assert len(recorded_calls(env)) == 4 * len(METHODS)  # LP and IVLP share a trainer but not a dir


def test_environment_overrides_output_shots_sub_loadep_and_extra_opts(repo, env, tmp_path):
    method = METHODS["maple"]
    caller = tmp_path / "caller"
    env.update(OUTPUT="runs", SHOTS="4", SUB="base", LOADEP="1",
               EXTRA_OPTS="--device cpu OPTIM.MAX_EPOCH 1")
    train_dir, test_dir = base2new_dirs(method, "eurosat", 1, shots=4, sub="base", root=str(caller / "runs"))
    Path(train_dir).mkdir(parents=True)
    proc = run_script(repo, method.script("base2new_test"), ["eurosat", "1"], env, caller)
    assert proc.returncode == 0, proc.stderr
    argv = recorded_calls(env)[0][0]
    assert argv[argv.index("--output-dir") + 1] == test_dir
    assert argv[argv.index("--model-dir") + 1] == train_dir
    # flags (script's, then EXTRA_OPTS') precede every KEY VALUE pair; the script's opts come last
    assert argv[argv.index("--load-epoch"):] == [
        "--load-epoch", "1", "--eval-only", "--device", "cpu", "OPTIM.MAX_EPOCH", "1",
        "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base",
    ]


def test_source_dataset_redirects_the_cross_dataset_pair(repo, env, tmp_path):
    env["SOURCE_DATASET"] = "eurosat"
    cocoop = METHODS["cocoop"]
    assert run_script(repo, cocoop.script("xd_train"), ["1"], env, tmp_path).returncode == 0
    proc = run_script(repo, cocoop.script("xd_test"), ["caltech101", "1"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    (train_argv, _), (test_argv, _) = recorded_calls(env)
    model_dir = f"output/xd/train/eurosat/shots_16/CoCoOp/{cocoop.xd_cfg}/seed1"
    assert train_argv[train_argv.index("--dataset-config-file") + 1] == "configs/datasets/eurosat.yaml"
    assert train_argv[train_argv.index("--output-dir") + 1] == model_dir
    assert test_argv[test_argv.index("--model-dir") + 1] == model_dir


@pytest.mark.parametrize("key,step", ALL_SCRIPTS)
def test_data_unset_or_missing_is_a_one_line_error(repo, env, tmp_path, key, step):
    method = METHODS[key]
    args = script_args(method, step)
    del env["DATA"]
    proc = run_script(repo, method.script(step), args, env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ERROR: DATA is not set: export DATA=/path/to/datasets"]

    env["DATA"] = str(tmp_path / "no-such-folder")
    proc = run_script(repo, method.script(step), args, env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"ERROR: DATA folder does not exist: {tmp_path / 'no-such-folder'}"]
    assert recorded_calls(env) == []


@pytest.mark.parametrize("variables,args,message", [
    ({}, ["eurosat"], "expected 2 arguments, got 1. Usage: bash scripts/vpt/base2new_test_vpt.sh DATASET SEED"),
    ({}, ["eurosat", "one"], "SEED must be a non-negative integer, got 'one'"),
    ({"SUB": "novel"}, ["eurosat", "1"], "SUB must be base, new or all, got 'novel'"),
    ({"LOADEP": "last"}, ["eurosat", "1"], "LOADEP must be a non-negative integer, got 'last'"),
    ({"SHOTS": "16x"}, ["eurosat", "1"], "SHOTS must be a non-negative integer, got '16x'"),
    ({}, ["euro_sat", "1"], "Dataset config not found: configs/datasets/euro_sat.yaml (available: "),
])
def test_bad_arguments_are_one_line_errors(repo, env, tmp_path, variables, args, message):
    env.update(variables)
    proc = run_script(repo, "vpt/base2new_test_vpt.sh", args, env, tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {message}")
    assert recorded_calls(env) == []


def test_cocoop_xd_train_takes_only_the_seed(repo, env, tmp_path):
    proc = run_script(repo, "cocoop/xd_train.sh", ["imagenet", "1"], env, tmp_path)
    assert proc.returncode == 1
    assert "expected 1 arguments, got 2. Usage: bash scripts/cocoop/xd_train.sh SEED" in proc.stderr


def test_a_failing_run_returns_its_exit_code(repo, env, tmp_path):
    failing = tmp_path / "failing_python"
    failing.write_text("#!/bin/sh\nexit 3\n")
    failing.chmod(0o755)
    env["PYTHON"] = str(failing)
    proc = run_script(repo, "maple/base2new_train_maple.sh", ["eurosat", "1"], env, tmp_path)
    assert proc.returncode == 3


# --- configs ------------------------------------------------------------------------------------

# file: (train batch size, LR, max epoch, {trainer key: value})
LINEAGE_CONFIGS = {
    "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1": (1, 0.002, 10, {"N_CTX": 4, "CTX_INIT": "a photo of a", "PREC": "fp16"}),
    "CoCoOp/vit_b16_c4_ep10_batch1": (1, 0.002, 10, {"N_CTX": 4, "CTX_INIT": "", "PREC": "fp16"}),
    "CoCoOp/vit_b16_c8_ep10_batch1": (1, 0.002, 10, {"N_CTX": 8, "CTX_INIT": "", "PREC": "fp16"}),
    "CoCoOp/vit_b16_c16_ep10_batch1": (1, 0.002, 10, {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"}),
    "VPT/vit_b16_c2_ep5_batch4_4": (4, 0.0025, 5, {"N_CTX_VISION": 8, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                                   "PROMPT_DEPTH_VISION": 12}),
    "IVLP/vit_b16_c2_ep5_batch4_2+2ctx": (4, 0.0035, 5, {
        "N_CTX_VISION": 2, "N_CTX_TEXT": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 12, "PROMPT_DEPTH_TEXT": 12}),
    "IVLP/vit_b16_c2_ep5_batch4_4ctx_language_only": (4, 0.0025, 5, {
        "N_CTX_VISION": 0, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a", "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 0, "PROMPT_DEPTH_TEXT": 12}),
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx": (4, 0.0035, 5, {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                                        "PROMPT_DEPTH": 9}),
    "MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets": (4, 0.0026, 2, {
        "N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH": 3}),
}
NODE_OF_DIR = {"CoCoOp": "COCOOP", "VPT": "VPT", "IVLP": "IVLP", "MaPLe": "MAPLE"}


def test_lineage_config_files_are_the_official_set():
    found = sorted(f"{p.parent.name}/{p.stem}" for d in NODE_OF_DIR for p in (TRAINER_CONFIGS / d).glob("*.yaml")
                   if not p.stem.startswith("mini_clip"))  # tested in test_mini_clip.py
    assert found == sorted(LINEAGE_CONFIGS)


@pytest.mark.parametrize("name", sorted(LINEAGE_CONFIGS))
def test_lineage_config_values(name):
    content = yaml.safe_load((TRAINER_CONFIGS / f"{name}.yaml").read_text())
    batch, lr, epochs, trainer_keys = LINEAGE_CONFIGS[name]
    assert content["DATALOADER"] == {"TRAIN_X": {"BATCH_SIZE": batch}, "TEST": {"BATCH_SIZE": 100}, "NUM_WORKERS": 8}
    assert content["OPTIM"] == {"NAME": "sgd", "LR": lr, "MAX_EPOCH": epochs, "LR_SCHEDULER": "cosine",
                                "WARMUP_EPOCH": 1, "WARMUP_TYPE": "constant", "WARMUP_CONS_LR": "1e-5"}
    assert content["INPUT"]["SIZE"] == "(224, 224)" and content["INPUT"]["INTERPOLATION"] == "bicubic"
    assert content["MODEL"] == {"BACKBONE": {"NAME": "ViT-B/16"}} and content["TRAIN"] == {"PRINT_FREQ": 20}
    assert content["TRAINER"] == {NODE_OF_DIR[name.split("/")[0]]: trainer_keys}


def _leaves(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _as_cfg_value(value):
    """What yacs stores for a YAML scalar: it literal-evals strings such as "(224, 224)" and "1e-5"."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


ALL_TRAINER_CONFIGS = sorted(str(p.relative_to(TRAINER_CONFIGS)) for p in TRAINER_CONFIGS.glob("*/*.yaml"))


@pytest.mark.parametrize("relpath", ALL_TRAINER_CONFIGS)
def test_trainer_config_merges_into_the_defaults_with_its_values(relpath):
    from dassl.config import get_cfg_default
    import trainers

    cfg = get_cfg_default()
    trainers.add_trainer_configs(cfg)
    path = TRAINER_CONFIGS / relpath
    cfg.merge_from_file(str(path))
    for keys, value in _leaves(yaml.safe_load(path.read_text())):
        merged = cfg
        for key in keys:
            merged = merged[key]
        expected = _as_cfg_value(value)
        if isinstance(expected, (list, tuple)):
            assert list(merged) == list(expected), (relpath, keys)
        else:
            assert merged == expected, (relpath, keys)


# Folders whose files copy the CoOp / MaPLe repositories' configs (BMIP's are checked in
# tests/test_bmip_scripts.py; Bloom has no official code).
# mini_clip.yaml, our setting for the bundled mini CLIP, has no official counterpart.
OFFICIAL_CONFIGS = [r for r in ALL_TRAINER_CONFIGS if r.split("/")[0] in ("CoOp", *NODE_OF_DIR)
                    and not r.split("/")[1].startswith("mini_clip")]


def official_config(relpath):
    """(official repository, path in it) of configs/trainers/<relpath>."""
    return official_facts.CONFIG_REPOSITORY[relpath.split("/")[0]], f"configs/trainers/{relpath}"


def test_config_folders_hold_the_official_set():
    """Our CoOp / CoCoOp / VPT / IVLP / MaPLe configs are the recorded official folders, file for file
    (with PROMPTCLIP_OFFICIAL_REPOS, tests/test_official_facts.py checks those are the live folders)."""
    recorded = sorted(path for repo, kind, path in official_facts.recorded_entries()
                      if kind == "configs" and repo in (official_facts.COOP, official_facts.LINEAGE))
    assert recorded == sorted(official_config(r)[1] for r in OFFICIAL_CONFIGS)


@pytest.mark.parametrize("relpath", OFFICIAL_CONFIGS)
def test_trainer_config_equals_the_recorded_official_values(relpath):
    ours = official_facts.config_facts((TRAINER_CONFIGS / relpath).read_text())
    assert ours == official_facts.recorded_config(*official_config(relpath))


if LIVE:
    @pytest.mark.parametrize("relpath", OFFICIAL_CONFIGS)
    def test_trainer_config_equals_the_official_file(relpath):
        official = official_facts.live_file(*official_config(relpath))
        ours = yaml.safe_load((TRAINER_CONFIGS / relpath).read_text())
        assert ours == yaml.safe_load(official.read_text())


# --- end to end: real base2new train + test scripts with the tiny CLIP ----------------------------

def _eurosat_class_count(eurosat_root):
    split = json.loads((Path(eurosat_root) / "eurosat" / "split_zhou_EuroSAT.json").read_text())
    return len({label for _, label, _ in split["train"]})


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(METHODS))
def test_base2new_scripts_train_then_evaluate_novel_classes(tmp_path, key, tiny_clip_path, eurosat_root):
    method = METHODS[key]
    env = dict(os.environ)
    env.update(
        DATA=eurosat_root, OUTPUT=str(tmp_path / "out"), **train_server_env(), SHOTS="2", LOADEP="1",
        EXTRA_OPTS=(f"--backbone {tiny_clip_path} --device cpu INPUT.SIZE (32,32) OPTIM.MAX_EPOCH 1 "
                    f"DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 50 "
                    f"TRAINER.{method.config_node}.PREC fp32"),
    )
    env.pop("SUB", None)
    for step in ("base2new_train", "base2new_test"):
        proc = run_script(REPO_ROOT, method.script(step), ["eurosat", "1"], env, tmp_path, timeout=300)
        assert proc.returncode == 0, f"{step}: {proc.stderr[-3000:]}"

    n_classes = _eurosat_class_count(eurosat_root)
    train_dir, test_dir = base2new_dirs(method, "eurosat", 1, shots=2, root=str(tmp_path / "out"))
    assert list(Path(train_dir).glob("*/model.pth.tar-1")), "no epoch-1 checkpoint in the train dir"
    train_results = json.loads((Path(train_dir) / "results.json").read_text())
    test_results = json.loads((Path(test_dir) / "results.json").read_text())
    assert train_results["trainer"] == test_results["trainer"] == method.trainer
    assert (train_results["subsample_classes"], train_results["num_classes"]) == ("base", math.ceil(n_classes / 2))
    assert (test_results["subsample_classes"], test_results["num_classes"]) == (
        "new", n_classes - math.ceil(n_classes / 2))
    assert 0.0 <= test_results["metrics"]["accuracy"] <= 100.0
