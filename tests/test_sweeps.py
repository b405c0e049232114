"""Protocol sweeps (scripts/sweep.sh) and the per-run scripts they call for the open-world,
few-shot and zero-shot runs.

The scripts run against a repo copy with a fake interpreter (tests/helpers/script_harness.py) that
records each train.py command and writes results.json into --output-dir, so the tests check the
exact sequence of runs a sweep makes, the skip of finished runs and the fail-fast checks. The slow
test runs a real CoOp base-to-novel + open-world sweep on a generated EuroSAT with the tiny CLIP.
"""
import json
import math
import os
import re
from pathlib import Path

import pytest

from conftest import train_server_env

from tests.helpers.script_harness import (
    REPO_ROOT, make_script_env, make_script_repo, recorded_calls, run_script,
)

METHODS = ["zsclip", "coop", "cocoop", "vpt", "language-prompting", "independent-vlp", "maple", "bmip", "bloom",
           "promptsrc", "coprompt", "promptsrc-maple", "promptsrc-bmip", "promptsrc-bloom", "coprompt-bmip",
           "coprompt-bloom"]
COMPOSITION_TABLE_METHODS = ["promptsrc", "coprompt", "promptsrc-bmip", "promptsrc-bloom", "coprompt-bmip",
                             "coprompt-bloom"]
PROTOCOLS = ["base2new", "openworld", "xd", "dg", "fewshot"]
BENCHMARKS = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
              "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
# (trainer, base2new cfg, base2new load epoch, xd cfg, fewshot cfg) of each method's scripts
METHOD_SETTINGS = {
    "zsclip": ("ZeroshotCLIP", "vit_b16", None, "vit_b16", "vit_b16"),
    "coop": ("CoOp", "vit_b16_ep100", "100", "vit_b16_ep50", "vit_b16_ep50"),
    "cocoop": ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", "10", "vit_b16_c4_ep10_batch1_ctxv1",
               "vit_b16_c4_ep10_batch1_ctxv1"),
    "vpt": ("VPT", "vit_b16_c2_ep5_batch4_4", "5", "vit_b16_c2_ep5_batch4_4", "vit_b16_c2_ep5_batch4_4"),
    "language-prompting": ("IVLP", "vit_b16_c2_ep5_batch4_4ctx_language_only", "5",
                           "vit_b16_c2_ep5_batch4_4ctx_language_only", "vit_b16_c2_ep5_batch4_4ctx_language_only"),
    "independent-vlp": ("IVLP", "vit_b16_c2_ep5_batch4_2+2ctx", "5", "vit_b16_c2_ep5_batch4_2+2ctx",
                        "vit_b16_c2_ep5_batch4_2+2ctx"),
    "maple": ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "5", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
              "vit_b16_c2_ep5_batch4_2ctx"),
    "bmip": ("BMIP", "BMIP_ctx2_dp9_lr2", "5", "BMIP_ctx2_dp9_lr2_cross_datasets", "BMIP_ctx2_dp9_lr2"),
    "bloom": ("Bloom", "vit_b16_c2_ep5_batch4_2ctx", "5", "vit_b16_c2_ep2_batch4_1ctx_cross_datasets",
              "vit_b16_c2_ep5_batch4_2ctx"),
    "promptsrc": ("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx", "20", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
                  "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"),
    "coprompt": ("CoPrompt", "coprompt", "8", "coprompt", "coprompt"),
    "promptsrc-maple": ("PromptSRC_MaPLe", "vit_b16_c2_ep20_batch4_2ctx", "20", "vit_b16_c2_ep20_batch4_2ctx",
                        "vit_b16_c2_ep20_batch4_2ctx"),
    "promptsrc-bmip": ("PromptSRC_BMIP", "vit_bitp_ctx4_ep20TT_adam_PromptSRC", "20",
                       "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets", "vit_bitp_ctx4_ep20TT_adam_PromptSRC"),
    "promptsrc-bloom": ("PromptSRC_Bloom", "vit_b16_c2_ep20_batch4_2ctx", "20", "vit_b16_c2_ep20_batch4_2ctx",
                        "vit_b16_c2_ep20_batch4_2ctx"),
    "coprompt-bmip": ("CoPrompt_BMIP", "vit_b16_c2_ep8_batch4_2ctx_randaug", "8", "vit_b16_c2_ep8_batch4_2ctx_randaug",
                      "vit_b16_c2_ep8_batch4_2ctx_randaug"),
    "coprompt-bloom": ("CoPrompt_Bloom", "vit_b16_c2_ep8_batch4_2ctx_randaug", "8",
                       "vit_b16_c2_ep8_batch4_2ctx_randaug", "vit_b16_c2_ep8_batch4_2ctx_randaug"),
}
# cross-dataset test epoch of the new methods (the others' are tested in their own test files)
XD_LOAD_EPOCHS = {"promptsrc": "20", "coprompt": "8", "promptsrc-maple": "20", "promptsrc-bmip": "20",
                  "promptsrc-bloom": "20", "coprompt-bmip": "8", "coprompt-bloom": "8"}
# per-run scripts of the new methods: folder/script for each step (the sweep's method_script)
NEW_METHOD_SCRIPTS = {
    "promptsrc": ("promptsrc/base2new_train.sh", "promptsrc/base2new_test.sh", "promptsrc/xd_train.sh",
                  "promptsrc/xd_test.sh", "promptsrc/few_shot.sh"),
    "coprompt": ("coprompt/base2new_train_coprompt.sh", "coprompt/base2new_test_coprompt.sh",
                 "coprompt/xd_train_coprompt.sh", "coprompt/xd_test_coprompt.sh", "coprompt/fewshot_coprompt.sh"),
    **{method: tuple(f"{method}/{step}.sh" for step in ("base2new_train", "base2new_test", "xd_train", "xd_test",
                                                          "fewshot"))
       for method in ("promptsrc-maple", "promptsrc-bmip", "promptsrc-bloom", "coprompt-bmip", "coprompt-bloom")},
}
ALL_DATASET_CONFIGS = BENCHMARKS + DG_TARGETS


@pytest.fixture
def repo(tmp_path):
    """Repo copy with the real scripts and every trainer config, stub dataset configs."""
    config_dirs = [p.name for p in (REPO_ROOT / "configs" / "trainers").iterdir() if p.is_dir()]
    return make_script_repo(tmp_path / "repo", config_dirs, ALL_DATASET_CONFIGS)


@pytest.fixture
def env(tmp_path):
    """DATA holding the folders of eurosat, dtd and imagenet; the fake PYTHON; two datasets x two seeds."""
    env = make_script_env(tmp_path)
    for folder in ("eurosat", "dtd", "imagenet", "imagenetv2"):
        (Path(env["DATA"]) / folder).mkdir()
    env.update(DATASETS="eurosat dtd", SEEDS="1 2")
    return env


def opt(argv, key):
    """Value following KEY in ARGV, or None when KEY is absent."""
    return argv[argv.index(key) + 1] if key in argv else None


def summary(argv):
    """The parts of a train.py command that tell runs apart."""
    return (opt(argv, "--output-dir"), opt(argv, "--seed"), opt(argv, "DATASET.SUBSAMPLE_CLASSES"),
            opt(argv, "DATASET.NUM_SHOTS"), opt(argv, "TEST.OPENWORLD_METRICS"), "--eval-only" in argv,
            opt(argv, "--model-dir"))


def sweep(repo, env, tmp_path, protocol, method):
    """Run the sweep from a directory outside the repo; return the CompletedProcess."""
    return run_script(repo, "sweep.sh", [protocol, method], env, tmp_path / "caller")


# --- the sequence of runs per protocol ------------------------------------------------------------

def test_base2new_sweep_trains_on_base_then_tests_new_for_each_dataset_and_seed(repo, env, tmp_path):
    proc = sweep(repo, env, tmp_path, "base2new", "maple")
    assert proc.returncode == 0, proc.stderr
    expected = []
    for dataset in ("eurosat", "dtd"):
        for seed in ("1", "2"):
            common = f"{dataset}/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed{seed}"
            train = f"output/base2new/train_base/{common}"
            expected.append((train, seed, "base", "16", None, False, None))
            expected.append((f"output/base2new/test_new/{common}", seed, "new", "16", None, True, train))
    assert [summary(argv) for argv, _ in recorded_calls(env)] == expected
    assert all(cwd == str(repo) for _, cwd in recorded_calls(env))
    # one progress line per run, then the table command
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert progress[0] == "[1/8] maple base2new eurosat seed 1 (train on base classes)"
    assert progress[7] == "[8/8] maple base2new dtd seed 2 (test on new classes)"
    assert len(progress) == 8
    assert proc.stdout.strip().splitlines()[-1] == f"python parse_test_res.py --table base2new {repo}/output"


def test_openworld_sweep_reuses_base_training_and_tests_all_classes_with_openworld_metrics(repo, env, tmp_path):
    env["SUB"] = "base"  # a stale SUB in the user's shell must not change the protocol
    env["OUTPUT"] = "runs"
    assert sweep(repo, env, tmp_path, "base2new", "cocoop").returncode == 0
    n_base2new = len(recorded_calls(env))
    proc = sweep(repo, env, tmp_path, "openworld", "cocoop")
    assert proc.returncode == 0, proc.stderr
    calls = [summary(argv) for argv, _ in recorded_calls(env)[n_base2new:]]
    out = tmp_path / "caller" / "runs"  # a relative OUTPUT is the caller's
    expected = []
    for dataset in ("eurosat", "dtd"):
        for seed in ("1", "2"):
            common = f"{dataset}/shots_16/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1/seed{seed}"
            expected.append((f"{out}/base2new/test_all/{common}", seed, "all", "16", "True", True,
                             f"{out}/base2new/train_base/{common}"))
    assert calls == expected  # no training run: base2new already trained every model
    assert proc.stdout.count("Skip this job") == 4
    assert "python parse_test_res.py --table openworld " + str(out) in proc.stdout


@pytest.mark.parametrize("protocol", ["xd", "dg"])
def test_cross_dataset_sweeps_train_on_imagenet_once_per_seed_then_test_each_target(repo, env, tmp_path, protocol):
    if protocol == "dg":
        env["DATASETS"] = "imagenetv2 imagenet"  # the source in the list is not tested twice
    env["LOADEP"] = "3"
    proc = sweep(repo, env, tmp_path, protocol, "vpt")
    assert proc.returncode == 0, proc.stderr
    targets = ["eurosat", "dtd"] if protocol == "xd" else ["imagenetv2"]
    setting = "shots_16/VPT/vit_b16_c2_ep5_batch4_4"
    expected = []
    for seed in ("1", "2"):
        model = f"output/xd/train/imagenet/{setting}/seed{seed}"
        expected.append((model, seed, None, "16", None, False, None))
        expected += [(f"output/xd/test/{t}/{setting}/seed{seed}", seed, None, None, None, True, model)
                     for t in targets]
    calls = recorded_calls(env)
    assert [summary(argv) for argv, _ in calls] == expected
    assert [opt(argv, "--load-epoch") for argv, _ in calls if "--eval-only" in argv] == ["3"] * (2 * len(targets))
    assert f"[1/{len(expected)}] vpt {protocol} imagenet seed 1 (source)" in proc.stdout


def test_cocoop_cross_dataset_sweep_uses_its_seed_only_train_script(repo, env, tmp_path):
    env["SEEDS"] = "1"
    proc = sweep(repo, env, tmp_path, "xd", "cocoop")
    assert proc.returncode == 0, proc.stderr
    dirs = [opt(argv, "--output-dir") for argv, _ in recorded_calls(env)]
    setting = "shots_16/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1"
    assert dirs == [f"output/xd/train/imagenet/{setting}/seed1", f"output/xd/test/eurosat/{setting}/seed1",
                    f"output/xd/test/dtd/{setting}/seed1"]


def test_fewshot_sweep_loops_datasets_shots_and_seeds_on_all_classes(repo, env, tmp_path):
    env["SHOTS_LIST"] = "1 4"
    env["SHOTS"] = "8"  # the per-run SHOTS of the other protocols does not leak into few-shot
    proc = sweep(repo, env, tmp_path, "fewshot", "bmip")
    assert proc.returncode == 0, proc.stderr
    expected = [(f"output/fewshot/{d}/shots_{k}/BMIP/BMIP_ctx2_dp9_lr2/seed{s}", s, "all", k, None, False, None)
                for d in ("eurosat", "dtd") for k in ("1", "4") for s in ("1", "2")]
    assert [summary(argv) for argv, _ in recorded_calls(env)] == expected
    assert "[8/8] bmip fewshot dtd seed 2 shots 4" in proc.stdout


@pytest.mark.parametrize("protocol", ["base2new", "openworld"])
def test_zero_shot_clip_sweep_evaluates_base_new_and_all_classes_without_training(repo, env, tmp_path, protocol):
    env["SEEDS"] = "1"
    proc = sweep(repo, env, tmp_path, protocol, "zsclip")
    assert proc.returncode == 0, proc.stderr
    expected = []
    for dataset in ("eurosat", "dtd"):
        common = f"{dataset}/shots_16/ZeroshotCLIP/vit_b16/seed1"
        expected += [(f"output/base2new/train_base/{common}", "1", "base", "16", None, True, None),
                     (f"output/base2new/test_new/{common}", "1", "new", "16", None, True, None),
                     (f"output/base2new/test_all/{common}", "1", "all", "16", "True", True, None)]
    calls = recorded_calls(env)
    assert [summary(argv) for argv, _ in calls] == expected
    assert {opt(argv, "--config-file") for argv, _ in calls} == {"configs/trainers/CoOp/vit_b16.yaml"}
    assert {opt(argv, "--trainer") for argv, _ in calls} == {"ZeroshotCLIP"}


def test_zero_shot_clip_cross_dataset_and_fewshot_sweeps(repo, env, tmp_path):
    env["SEEDS"] = "1"
    assert sweep(repo, env, tmp_path, "xd", "zsclip").returncode == 0
    env["SHOTS_LIST"] = "2"
    env["DATASETS"] = "eurosat"
    assert sweep(repo, env, tmp_path, "fewshot", "zsclip").returncode == 0
    assert [summary(argv) for argv, _ in recorded_calls(env)] == [
        ("output/xd/train/imagenet/shots_16/ZeroshotCLIP/vit_b16/seed1", "1", None, "16", None, True, None),
        ("output/xd/test/eurosat/shots_16/ZeroshotCLIP/vit_b16/seed1", "1", None, None, None, True, None),
        ("output/xd/test/dtd/shots_16/ZeroshotCLIP/vit_b16/seed1", "1", None, None, None, True, None),
        ("output/fewshot/eurosat/shots_2/ZeroshotCLIP/vit_b16/seed1", "1", "all", "2", None, True, None),
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_every_protocol(repo, env, tmp_path, protocol, method):
    """Each method has the per-run scripts each protocol calls, with its own trainer and config."""
    env.update(SEEDS="1", DATASETS="eurosat" if protocol != "dg" else "imagenetv2", SHOTS_LIST="2")
    proc = sweep(repo, env, tmp_path, protocol, method)
    assert proc.returncode == 0, proc.stderr
    trainer, base2new_cfg, load_epoch, xd_cfg, fewshot_cfg = METHOD_SETTINGS[method]
    cfg = {"xd": xd_cfg, "dg": xd_cfg, "fewshot": fewshot_cfg}.get(protocol, base2new_cfg)
    calls = recorded_calls(env)
    assert calls and all(opt(argv, "--trainer") == trainer for argv, _ in calls)
    config_dir = "CoOp" if method == "zsclip" else trainer
    assert {opt(argv, "--config-file") for argv, _ in calls} == {f"configs/trainers/{config_dir}/{cfg}.yaml"}
    final_dir = opt(calls[-1][0], "--output-dir")
    if protocol in ("base2new", "openworld"):
        sub = "new" if protocol == "base2new" else "all"
        tests = [argv for argv, _ in calls if f"/test_{sub}/" in opt(argv, "--output-dir")]
        assert [opt(argv, "--output-dir") for argv in tests] == [
            f"output/base2new/test_{sub}/eurosat/shots_16/{trainer}/{cfg}/seed1"]
        assert opt(tests[0], "TEST.OPENWORLD_METRICS") == ("True" if sub == "all" else None)
    elif protocol in ("xd", "dg"):
        target = "eurosat" if protocol == "xd" else "imagenetv2"
        assert final_dir == f"output/xd/test/{target}/shots_16/{trainer}/{cfg}/seed1"
    else:
        assert final_dir == f"output/fewshot/eurosat/shots_2/{trainer}/{cfg}/seed1"
    if load_epoch and protocol in ("base2new", "openworld") and method != "bmip":
        assert opt(tests[0], "--load-epoch") == load_epoch
    if method in XD_LOAD_EPOCHS and protocol in ("xd", "dg"):
        assert opt(calls[-1][0], "--load-epoch") == XD_LOAD_EPOCHS[method]
    if method.startswith("coprompt"):
        # the per-dataset settings stay on where a model is tested on its own dataset, off across datasets
        settings = {opt(argv, "TRAINER.CoPrompt.DATASET_SETTINGS") for argv, _ in calls}
        assert settings == ({"False"} if protocol in ("xd", "dg") else {None})


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method", sorted(NEW_METHOD_SCRIPTS))
def test_new_methods_plan_every_protocol(repo, env, tmp_path, protocol, method):
    """The exact plan (group, SUB, script, arguments) of each protocol for the regularizers and their
    compositions; PromptSRC's official few_shot.sh takes DATASET SHOTS SEED."""
    env.update(SEEDS="1 2", DATASETS="eurosat" if protocol != "dg" else "imagenetv2", SHOTS_LIST="4")
    proc = run_script(repo, "sweep.sh", ["--plan", protocol, method], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = [line.split("\t") for line in proc.stdout.splitlines()]
    train, test, xd_train, xd_test, fewshot = NEW_METHOD_SCRIPTS[method]
    if protocol in ("base2new", "openworld"):
        sub = "new" if protocol == "base2new" else "all"
        expected = [line for seed in ("1", "2") for line in (
            [f"eurosat seed {seed}", f"{method} {protocol} eurosat seed {seed} (train on base classes)", "", train,
             "eurosat", seed],
            [f"eurosat seed {seed}", f"{method} {protocol} eurosat seed {seed} (test on {sub} classes)", sub, test,
             "eurosat", seed])]
    elif protocol in ("xd", "dg"):
        target = "eurosat" if protocol == "xd" else "imagenetv2"
        expected = [line for seed in ("1", "2") for line in (
            [f"seed {seed}", f"{method} {protocol} imagenet seed {seed} (source)", "", xd_train, "imagenet", seed],
            [f"seed {seed}", f"{method} {protocol} {target} seed {seed} (target)", "", xd_test, target, seed])]
    else:
        expected = [[f"eurosat seed {seed} shots 4", f"{method} fewshot eurosat seed {seed} shots 4", "", fewshot,
                     *(("eurosat", "4", seed) if method == "promptsrc" else ("eurosat", seed, "4"))]
                    for seed in ("1", "2")]
    assert plan == expected
    assert recorded_calls(env) == []


@pytest.mark.parametrize("method", ["maple", "promptsrc-maple"] + COMPOSITION_TABLE_METHODS)
def test_base2new_sweeps_of_the_composition_methods_name_the_composition_table(repo, env, tmp_path, method):
    env.update(SEEDS="1", DATASETS="eurosat")
    proc = sweep(repo, env, tmp_path, "base2new", method)
    assert proc.returncode == 0, proc.stderr
    tail = proc.stdout.strip().splitlines()[-3:]
    if method in COMPOSITION_TABLE_METHODS:
        assert tail[0] == f"python parse_test_res.py --table base2new {repo}/output"
        assert tail[2] == f"python parse_test_res.py --table composition {repo}/output"
    else:  # PromptSRC over MaPLe is not in BMIP's Table 4
        assert tail[-1] == f"python parse_test_res.py --table base2new {repo}/output"
        assert "--table composition" not in proc.stdout
    proc = sweep(repo, env, tmp_path, "openworld", method)
    assert proc.returncode == 0 and "--table composition" not in proc.stdout


# --- skipping, failing fast ---------------------------------------------------------------------

def test_finished_runs_are_skipped_and_the_rest_run(repo, env, tmp_path):
    common = "shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx"
    finished = [f"output/base2new/train_base/eurosat/{common}/seed2",
                f"output/base2new/test_new/dtd/{common}/seed1"]
    for run_dir in finished:
        (repo / run_dir).mkdir(parents=True)
        (repo / run_dir / "results.json").write_text("{}")
    # a crashed run (dir without results.json) is rerun
    (repo / f"output/base2new/test_new/eurosat/{common}/seed1").mkdir(parents=True)
    proc = sweep(repo, env, tmp_path, "base2new", "maple")
    assert proc.returncode == 0, proc.stderr
    dirs = [opt(argv, "--output-dir") for argv, _ in recorded_calls(env)]
    assert len(dirs) == 6
    assert not set(finished) & set(dirs)
    assert f"output/base2new/test_new/eurosat/{common}/seed1" in dirs
    for run_dir in finished:
        assert f"Results are available in {run_dir}. Skip this job" in proc.stdout
    assert "[8/8]" in proc.stdout

    again = sweep(repo, env, tmp_path, "base2new", "maple")
    assert again.returncode == 0
    assert len(recorded_calls(env)) == 6 and again.stdout.count("Skip this job") == 8


def test_unset_data_stops_before_any_run(repo, env, tmp_path):
    del env["DATA"]
    proc = sweep(repo, env, tmp_path, "base2new", "maple")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ERROR: DATA is not set: export DATA=/path/to/datasets"]
    assert recorded_calls(env) == [] and "[1/" not in proc.stdout


def test_missing_dataset_folders_are_all_named_before_any_run(repo, env, tmp_path):
    env["DATASETS"] = "eurosat caltech101 food101"
    proc = sweep(repo, env, tmp_path, "base2new", "coop")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"ERROR: dataset folders missing in DATA={env['DATA']}: caltech-101 (for caltech101), "
        "food-101 (for food101) (see docs/DATASETS.md)"]
    assert recorded_calls(env) == []

    # cross-dataset needs the source too
    (Path(env["DATA"]) / "imagenet").rmdir()
    env["DATASETS"] = "eurosat"
    proc = sweep(repo, env, tmp_path, "xd", "maple")
    assert proc.returncode == 1 and "imagenet (for imagenet)" in proc.stderr and "eurosat" not in proc.stderr


def test_default_datasets_are_the_benchmarks_and_their_folders(repo, env, tmp_path):
    """With DATASETS unset and an empty DATA, the error lists the folder of every default dataset."""
    del env["DATASETS"]
    for folder in Path(env["DATA"]).iterdir():
        folder.rmdir()
    folders = {"caltech101": "caltech-101", "food101": "food-101", "imagenet_a": "imagenet-adversarial",
               "imagenet_r": "imagenet-rendition", "imagenet_sketch": "imagenet-sketch"}
    for protocol, datasets in (("base2new", BENCHMARKS), ("fewshot", BENCHMARKS),
                               ("dg", ["imagenet"] + DG_TARGETS), ("xd", BENCHMARKS)):
        proc = sweep(repo, env, tmp_path, protocol, "coop")
        assert proc.returncode == 1
        listed = re.findall(r"(\S+) \(for (\w+)\)", proc.stderr)
        assert [d for _, d in listed] == datasets, protocol
        assert all(folder == folders.get(d, d) for folder, d in listed)


def test_folder_map_matches_the_dataset_classes():
    """common.sh's dataset -> folder map agrees with dataset_dir in datasets/*.py."""
    common = (REPO_ROOT / "scripts" / "common.sh").read_text()
    body = common[common.index("dataset_folder() {"):]
    body = body[:body.index("\n}\n")]
    mapped = dict(re.findall(r"^\s*(\w+)\) echo ([\w-]+) ;;", body, re.M))
    same_name = re.search(r"^\s*(imagenet \|[^)]*)\) echo \"\$1\"", body, re.M | re.S).group(1)
    mapped.update({name: name for name in re.split(r"[\s|\\]+", same_name) if name})
    for dataset in ALL_DATASET_CONFIGS:
        source = (REPO_ROOT / "datasets" / f"{dataset}.py").read_text()
        assert mapped[dataset] == re.search(r'^\s*dataset_dir = "([^"]+)"', source, re.M).group(1), dataset


@pytest.mark.parametrize("args,message", [
    (["cross", "maple"], "ERROR: unknown protocol 'cross' (valid: base2new openworld xd dg fewshot)"),
    (["xd", "MaPLe"], "ERROR: unknown method 'MaPLe' (valid: zsclip coop cocoop vpt language-prompting "
                      "independent-vlp maple bmip bloom promptsrc coprompt promptsrc-maple promptsrc-bmip "
                      "promptsrc-bloom coprompt-bmip coprompt-bloom linear-probe)"),
])
def test_unknown_protocol_or_method_lists_the_valid_ones(repo, env, tmp_path, args, message):
    proc = run_script(repo, "sweep.sh", args, env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [message]
    assert recorded_calls(env) == []


@pytest.mark.parametrize("variable,value,message", [
    ("SEEDS", "1 x", "SEEDS must be non-negative integers"),
    ("SHOTS_LIST", "1 four", "SHOTS_LIST must be a non-negative integer, got 'four'"),
    ("DATASETS", "eurosat euro_sat", "unknown datasets (no configs/datasets/<name>.yaml): euro_sat"),
])
def test_bad_sweep_settings_are_one_line_errors(repo, env, tmp_path, variable, value, message):
    env[variable] = value
    proc = sweep(repo, env, tmp_path, "fewshot", "coop")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert recorded_calls(env) == []


def test_a_failing_run_stops_the_sweep(repo, env, tmp_path):
    failing = tmp_path / "failing_python"
    failing.write_text("#!/bin/sh\necho \"$@\" >> \"$FAKE_CALLS.txt\"\nexit 3\n")
    failing.chmod(0o755)
    env["PYTHON"] = str(failing)
    proc = sweep(repo, env, tmp_path, "base2new", "maple")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "ERROR: run 1/8 failed (exit 3): bash scripts/maple/base2new_train_maple.sh eurosat 1")
    assert len(Path(env["FAKE_CALLS"] + ".txt").read_text().splitlines()) == 1
    assert "[2/8]" not in proc.stdout


def test_a_run_locked_by_another_process_is_skipped_with_its_group(repo, env, tmp_path):
    """train.py exits 75 when another live run holds the output dir: the sweep leaves that run
    (and the test that needs its model) to the other process and does everything else."""
    env["FAKE_LOCKED"] = "train_base/eurosat/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed1"
    proc = sweep(repo, env, tmp_path, "base2new", "maple")
    assert proc.returncode == 0, proc.stderr
    done = [opt(argv, "--output-dir").split("/base2new/")[1] for argv, _ in recorded_calls(env)]
    assert len(done) == 7  # 8 runs planned; the locked one was attempted, its test was not
    assert not any(d.startswith("test_new/eurosat/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed1") for d in done)
    assert "Skipped: another process is running it right now" in proc.stdout
    assert "Skipped: it needs the run that another process is doing (eurosat seed 1)" in proc.stdout
    assert "2 skipped because another process holds them" in proc.stdout


# --- per-run scripts added for these protocols --------------------------------------------------

def test_base2new_test_with_sub_all_asks_for_openworld_metrics(repo, env, tmp_path):
    train_dir = "output/base2new/train_base/eurosat/shots_16/MaPLe/vit_b16_c2_ep5_batch4_2ctx/seed1"
    (repo / train_dir).mkdir(parents=True)
    for sub in ("new", "all"):
        env["SUB"] = sub
        proc = run_script(repo, "maple/base2new_test_maple.sh", ["eurosat", "1"], env, tmp_path)
        assert proc.returncode == 0, proc.stderr
    new_argv, all_argv = (argv for argv, _ in recorded_calls(env))
    assert new_argv[-4:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"]
    assert all_argv[-6:] == ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "all",
                             "TEST.OPENWORLD_METRICS", "True"]
    assert opt(all_argv, "--output-dir") == train_dir.replace("train_base", "test_all")


def test_fewshot_script_command_literally(repo, env, tmp_path):
    env["EXTRA_OPTS"] = "--device cpu OPTIM.MAX_EPOCH 1"
    proc = run_script(repo, "coop/fewshot.sh", ["dtd", "3", "4"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert recorded_calls(env) == [([
        "train.py", "--root", env["DATA"], "--seed", "3", "--trainer", "CoOp",
        "--dataset-config-file", "configs/datasets/dtd.yaml",
        "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml",
        "--output-dir", "output/fewshot/dtd/shots_4/CoOp/vit_b16_ep50/seed3",
        "--device", "cpu", "OPTIM.MAX_EPOCH", "1",
        "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "all",
    ], str(repo))]
    again = run_script(repo, "coop/fewshot.sh", ["dtd", "3", "4"], env, tmp_path)
    assert again.returncode == 0 and "Skip this job" in again.stdout and len(recorded_calls(env)) == 1

    proc = run_script(repo, "coop/fewshot.sh", ["dtd", "3", "four"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["ERROR: SHOTS must be a non-negative integer, got 'four'"]


def test_bmip_fewshot_takes_device_and_config(repo, env, tmp_path):
    proc = run_script(repo, "bmip/fewshot_bmip.sh", ["eurosat", "1", "8", "cuda:1", "BMIP_ctx2_dp9_lr2_joint"],
                      env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    argv = recorded_calls(env)[0][0]
    assert opt(argv, "--output-dir") == "output/fewshot/eurosat/shots_8/BMIP/BMIP_ctx2_dp9_lr2_joint/seed1"
    assert opt(argv, "--device") == "cuda:1"
    assert opt(argv, "--config-file") == "configs/trainers/BMIP/BMIP_ctx2_dp9_lr2_joint.yaml"


def test_zero_shot_base2new_script_literally(repo, env, tmp_path):
    env["SHOTS"] = "4"
    proc = run_script(repo, "zsclip/base2new.sh", ["eurosat", "2", "rn50"], env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    head = ["train.py", "--root", env["DATA"], "--seed", "2", "--trainer", "ZeroshotCLIP",
            "--dataset-config-file", "configs/datasets/eurosat.yaml",
            "--config-file", "configs/trainers/CoOp/rn50.yaml", "--output-dir"]
    common = "eurosat/shots_4/ZeroshotCLIP/rn50/seed2"
    assert [argv for argv, _ in recorded_calls(env)] == [
        head + [f"output/base2new/train_base/{common}", "--eval-only",
                "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base"],
        head + [f"output/base2new/test_new/{common}", "--eval-only",
                "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "new"],
        head + [f"output/base2new/test_all/{common}", "--eval-only",
                "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "all", "TEST.OPENWORLD_METRICS", "True"],
    ]


def test_coop_base2new_test_names_the_missing_model(repo, env, tmp_path):
    proc = run_script(repo, "coop/base2new_test.sh", ["eurosat", "1"], env, tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "ERROR: model dir not found: output/base2new/train_base/eurosat/shots_16/CoOp/vit_b16_ep100/seed1 "
        "(train it first: bash scripts/coop/base2new_train.sh eurosat 1)"]


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_coop_base2new_and_openworld_sweeps_end_to_end(tmp_path, tiny_clip_path, eurosat_root):
    env = dict(os.environ)
    env.pop("SUB", None)
    out = tmp_path / "out"
    env.update(
        DATA=eurosat_root, OUTPUT=str(out), **train_server_env(), DATASETS="eurosat", SEEDS="1",
        SHOTS="2", LOADEP="1",
        EXTRA_OPTS=(f"--backbone {tiny_clip_path} --device cpu INPUT.SIZE (32,32) OPTIM.MAX_EPOCH 1 "
                    "DATALOADER.NUM_WORKERS 0 DATALOADER.TRAIN_X.BATCH_SIZE 4 DATALOADER.TEST.BATCH_SIZE 50 "
                    "TRAINER.COOP.PREC fp32"),
    )
    proc = run_script(REPO_ROOT, "sweep.sh", ["base2new", "coop"], env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"python parse_test_res.py --table base2new {out}" in proc.stdout

    split = json.loads((Path(eurosat_root) / "eurosat" / "split_zhou_EuroSAT.json").read_text())
    n_classes = len({label for _, label, _ in split["train"]})
    n_base = math.ceil(n_classes / 2)
    common = "eurosat/shots_2/CoOp/vit_b16_ep100/seed1"
    train = json.loads((out / "base2new/train_base" / common / "results.json").read_text())
    new = json.loads((out / "base2new/test_new" / common / "results.json").read_text())
    assert (train["subsample_classes"], train["num_classes"]) == ("base", n_base)
    assert (new["subsample_classes"], new["num_classes"]) == ("new", n_classes - n_base)
    assert 0.0 <= new["metrics"]["accuracy"] <= 100.0

    trained_at = (out / "base2new/train_base" / common / "results.json").stat().st_mtime_ns
    proc = run_script(REPO_ROOT, "sweep.sh", ["openworld", "coop"], env, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "base2new/train_base" / common / "results.json").stat().st_mtime_ns == trained_at
    metrics = json.loads((out / "base2new/test_all" / common / "results.json").read_text())["metrics"]
    base, new_acc = metrics["base_accuracy"], metrics["new_accuracy"]
    assert metrics["hm"] == pytest.approx(2 * base * new_acc / (base + new_acc) if base + new_acc else 0.0, abs=0.01)


def test_linear_probe_sweeps_the_fewshot_protocol_only(repo, env, tmp_path):
    env.update(SEEDS="1", DATASETS="eurosat", SHOTS_LIST="1 4")
    proc = sweep(repo, env, tmp_path, "fewshot", "linear-probe")
    assert proc.returncode == 0, proc.stderr
    dirs = [opt(argv, "--output-dir") for argv, _ in recorded_calls(env)]
    assert dirs == [f"output/fewshot/eurosat/shots_{k}/LinearProbeCLIP/vit_b16/seed1" for k in (1, 4)]
    assert {opt(argv, "--trainer") for argv, _ in recorded_calls(env)} == {"LinearProbeCLIP"}
    proc = sweep(repo, env, tmp_path, "base2new", "linear-probe")
    assert proc.returncode == 1
    assert "method linear-probe has no script scripts/linear-probe/base2new_" in proc.stderr
    assert proc.stderr.strip().endswith("for protocol base2new")
