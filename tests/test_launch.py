"""The sweep launcher (scripts/launch.py) and the plan mode of scripts/sweep.sh it reads.

Everything runs against a repo copy with the fake interpreter of tests/helpers/script_harness.py,
which records each train.py call (with its CUDA_VISIBLE_DEVICES) and writes results.json, so the tests
see which runs a launch makes, on which GPU, and that a relaunch skips them all. SLURM itself is
faked by an ``sbatch`` that keeps the script it is given; submitit's local executor runs real jobs.
"""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tests.helpers.script_harness import (
    REPO_ROOT, make_script_env, make_script_repo, recorded_calls, recorded_records, run_launcher, run_script,
)

DATASET_CONFIGS = ["imagenet", "eurosat", "dtd", "caltech101", "imagenetv2"]


@pytest.fixture(scope="module")
def launch():
    """scripts/launch.py imported as a module (its plan and helper functions)."""
    spec = importlib.util.spec_from_file_location("launch_under_test", REPO_ROOT / "scripts" / "launch.py")
    module = importlib.util.module_from_spec(spec)
    # no scripts/__pycache__: the repo copies of the other tests would carry it along
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    return module


@pytest.fixture
def repo(tmp_path):
    """Repo copy with the real scripts and every trainer config, stub dataset configs."""
    config_dirs = [p.name for p in (REPO_ROOT / "configs" / "trainers").iterdir() if p.is_dir()]
    return make_script_repo(tmp_path / "repo", config_dirs, DATASET_CONFIGS)


@pytest.fixture
def env(tmp_path):
    """DATA with the eurosat, dtd, imagenet and imagenetv2 folders; the fake PYTHON; no visible GPU
    (an empty CUDA_VISIBLE_DEVICES also spares the launcher from importing torch to count GPUs)."""
    env = make_script_env(tmp_path)
    for folder in ("eurosat", "dtd", "imagenet", "imagenetv2"):
        (Path(env["DATA"]) / folder).mkdir()
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def opt(argv, key):
    """Value following KEY in ARGV, or None when KEY is absent."""
    return argv[argv.index(key) + 1] if key in argv else None


def normalised(calls, output):
    """The argv of CALLS with the OUTPUT root replaced by a marker, sorted: the runs as a multiset."""
    return sorted(tuple(arg.replace(str(output), "<OUT>") for arg in argv) for argv, _ in calls)


def launch_cli(repo, env, tmp_path, *args):
    """Run the launcher from a directory outside the repo; return the CompletedProcess."""
    return run_launcher(repo, list(args), env, tmp_path / "caller")


def plan_lines(repo, env, tmp_path, protocol, method):
    """The fields of each line sweep.sh --plan prints (the command must succeed)."""
    proc = run_script(repo, "sweep.sh", ["--plan", protocol, method], env, tmp_path / "caller")
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines()]


# --- sweep.sh --plan ------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol,method", [
    ("base2new", "maple"), ("openworld", "coop"), ("base2new", "zsclip"), ("xd", "cocoop"), ("dg", "vpt"),
    ("fewshot", "bmip"),
])
def test_plan_lists_exactly_the_runs_the_sweep_makes(repo, env, tmp_path, protocol, method):
    """Replaying the plan's scripts gives the same train.py calls as the sweep, and its labels are
    the sweep's progress lines; printing the plan runs nothing."""
    env.update(DATASETS="imagenetv2 eurosat" if protocol == "dg" else "eurosat dtd", SEEDS="1 2",
               SHOTS_LIST="1 4", OUTPUT=str(tmp_path / "swept"))
    swept = run_script(repo, "sweep.sh", [protocol, method], env, tmp_path / "caller")
    assert swept.returncode == 0, swept.stderr
    sweep_calls = recorded_calls(env)
    progress = [line.split("] ", 1)[1] for line in swept.stdout.splitlines() if line.startswith("[")]

    env["OUTPUT"] = str(tmp_path / "replayed")
    lines = plan_lines(repo, env, tmp_path, protocol, method)
    assert len(recorded_calls(env)) == len(sweep_calls)  # --plan itself ran nothing
    assert [label for _, label, *_ in lines] == progress
    for group, label, sub, script, *args in lines:
        run_env = dict(env, SUB=sub) if sub else env
        proc = run_script(repo, script, args, run_env, tmp_path / "caller")
        assert proc.returncode == 0, proc.stderr
    replayed = recorded_calls(env)[len(sweep_calls):]
    assert ([[a.replace(str(tmp_path / "replayed"), "<OUT>") for a in argv] for argv, _ in replayed]
            == [[a.replace(str(tmp_path / "swept"), "<OUT>") for a in argv] for argv, _ in sweep_calls])


def test_plan_groups_runs_that_depend_on_each_other(repo, env, tmp_path):
    env.update(DATASETS="eurosat dtd", SEEDS="1 2")
    lines = plan_lines(repo, env, tmp_path, "base2new", "coop")
    assert lines[:2] == [
        ["eurosat seed 1", "coop base2new eurosat seed 1 (train on base classes)", "", "coop/base2new_train.sh",
         "eurosat", "1"],
        ["eurosat seed 1", "coop base2new eurosat seed 1 (test on new classes)", "new", "coop/base2new_test.sh",
         "eurosat", "1"],
    ]
    assert [group for group, *_ in plan_lines(repo, env, tmp_path, "xd", "cocoop")] == ["seed 1"] * 3 + ["seed 2"] * 3


@pytest.mark.parametrize("args,message", [
    (["base2new", "--methods", "coop", "MaPLe", "--datasets", "eurosat"],
     "ERROR: unknown method 'MaPLe' (valid: zsclip coop cocoop vpt language-prompting independent-vlp maple "
     "bmip bloom promptsrc coprompt promptsrc-maple promptsrc-bmip promptsrc-bloom coprompt-bmip coprompt-bloom linear-probe)"),
    (["cross", "--methods", "coop"], "ERROR: unknown protocol 'cross' (valid: base2new openworld xd dg fewshot)"),
    (["fewshot", "--methods", "coop", "--datasets", "eurosat", "euro_sat"],
     "ERROR: unknown datasets (no configs/datasets/<name>.yaml): euro_sat"),
    (["base2new", "--methods", "coop", "--datasets", "caltech101"], "ERROR: dataset folders missing in DATA="),
    (["base2new", "--methods", "coop", "--seeds", "1", "x"], "ERROR: SEEDS must be non-negative integers"),
])
def test_launcher_reports_the_sweeps_own_errors_in_one_line(repo, env, tmp_path, args, message):
    proc = launch_cli(repo, env, tmp_path, *args)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(message), proc.stderr
    assert recorded_calls(env) == [] and not (repo / "output").exists()


def test_launcher_errors_for_missing_data_submitit_and_slurm(repo, env, tmp_path):
    data = env.pop("DATA")
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop")
    assert (proc.returncode, proc.stderr.strip()) == (
        1, "ERROR: DATA is not set: pass --data DIR or export DATA=/path/to/datasets")
    env["DATA"] = data

    # a submitit that cannot be imported
    shadow = tmp_path / "shadow" / "submitit"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named submitit')\n")
    proc = launch_cli(repo, dict(env, PYTHONPATH=str(shadow.parent)), tmp_path, "base2new", "--methods", "coop",
                      "--datasets", "eurosat", "--executor", "submitit-local")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "--executor submitit-local needs the submitit package: " in proc.stderr
    assert proc.stderr.strip().endswith(" -m pip install submitit")

    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--executor", "slurm")
    assert proc.stderr.strip() == "ERROR: --executor slurm needs --time MINUTES (submitit's default limit is 5 minutes)"
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--datasets", "eurosat",
                      "--executor", "slurm", "--time", "60")  # the harness PATH has no SLURM
    assert proc.returncode == 1 and proc.stderr.startswith("ERROR: --executor slurm needs SLURM's sbatch and srun")
    assert recorded_calls(env) == [] and not (repo / "output").exists()


# --- jobs -----------------------------------------------------------------------------------------

def test_base2new_jobs_keep_each_training_run_with_its_test(launch, repo, env):
    env.update(DATASETS="eurosat dtd", SEEDS="1 2", OUTPUT="/runs", SHOTS="4", EXTRA_OPTS="--device cpu")
    jobs = launch.plan_jobs("base2new", ["maple", "zsclip"], env, scripts_dir=repo / "scripts")
    assert [job.name for job in jobs] == [
        f"{method}-base2new-{dataset}-seed{seed}"
        for method in ("maple", "zsclip") for dataset in ("eurosat", "dtd") for seed in (1, 2)]
    assert [run.command() for run in jobs[0].runs] == [
        "bash scripts/maple/base2new_train_maple.sh eurosat 1",
        "SUB=new bash scripts/maple/base2new_test_maple.sh eurosat 1"]
    assert [run.command() for run in jobs[5].runs] == ["bash scripts/zsclip/base2new.sh eurosat 2"]
    # the job carries the run settings the launcher saw, and nothing else
    assert jobs[0].env == {"DATA": env["DATA"], "OUTPUT": "/runs", "SHOTS": "4", "EXTRA_OPTS": "--device cpu",
                           "PYTHON": env["PYTHON"]}
    assert jobs[0].repo == str(repo)


def test_cross_dataset_and_fewshot_jobs(launch, repo, env):
    env.update(DATASETS="eurosat dtd", SEEDS="1 2", SHOTS_LIST="1 4")
    xd = launch.plan_jobs("xd", ["vpt"], env, scripts_dir=repo / "scripts")
    assert [job.name for job in xd] == ["vpt-xd-seed1", "vpt-xd-seed2"]
    assert [run.command() for run in xd[1].runs] == [
        "bash scripts/vpt/xd_train_vpt.sh imagenet 2", "bash scripts/vpt/xd_test_vpt.sh eurosat 2",
        "bash scripts/vpt/xd_test_vpt.sh dtd 2"]
    fewshot = launch.plan_jobs("fewshot", ["coop"], env, scripts_dir=repo / "scripts")
    assert [job.name for job in fewshot] == [f"coop-fewshot-{d}-seed{s}-shots{k}"
                                             for d in ("eurosat", "dtd") for k in (1, 4) for s in (1, 2)]
    assert all(len(job.runs) == 1 for job in fewshot)
    assert fewshot[1].runs[0].command() == "bash scripts/coop/fewshot.sh eurosat 2 1"


NEW_METHODS = ["promptsrc", "coprompt", "promptsrc-maple", "promptsrc-bmip", "promptsrc-bloom", "coprompt-bmip",
               "coprompt-bloom"]


@pytest.mark.parametrize("protocol", ["base2new", "openworld", "xd", "dg", "fewshot"])
def test_jobs_of_the_regularizers_and_their_compositions_for_every_protocol(launch, repo, env, protocol):
    env.update(DATASETS="imagenetv2" if protocol == "dg" else "eurosat", SEEDS="1 2", SHOTS_LIST="4")
    jobs = launch.plan_jobs(protocol, NEW_METHODS, env, scripts_dir=repo / "scripts")
    groups = {"base2new": ["eurosat-seed1", "eurosat-seed2"], "openworld": ["eurosat-seed1", "eurosat-seed2"],
              "xd": ["seed1", "seed2"], "dg": ["seed1", "seed2"],
              "fewshot": ["eurosat-seed1-shots4", "eurosat-seed2-shots4"]}[protocol]
    assert [job.name for job in jobs] == [f"{m}-{protocol}-{group}" for m in NEW_METHODS for group in groups]
    by_name = {job.name: [run.command() for run in job.runs] for job in jobs}
    sub = "SUB=all " if protocol == "openworld" else "SUB=new "
    expected = {
        "base2new": {
            "promptsrc": ["bash scripts/promptsrc/base2new_train.sh eurosat 2",
                          sub + "bash scripts/promptsrc/base2new_test.sh eurosat 2"],
            "coprompt": ["bash scripts/coprompt/base2new_train_coprompt.sh eurosat 2",
                         sub + "bash scripts/coprompt/base2new_test_coprompt.sh eurosat 2"],
            "coprompt-bloom": ["bash scripts/coprompt-bloom/base2new_train.sh eurosat 2",
                               sub + "bash scripts/coprompt-bloom/base2new_test.sh eurosat 2"],
        },
        "xd": {
            "promptsrc": ["bash scripts/promptsrc/xd_train.sh imagenet 2", "bash scripts/promptsrc/xd_test.sh eurosat 2"],
            "coprompt": ["bash scripts/coprompt/xd_train_coprompt.sh imagenet 2",
                         "bash scripts/coprompt/xd_test_coprompt.sh eurosat 2"],
            "promptsrc-bmip": ["bash scripts/promptsrc-bmip/xd_train.sh imagenet 2",
                               "bash scripts/promptsrc-bmip/xd_test.sh eurosat 2"],
        },
        "dg": {
            "promptsrc-maple": ["bash scripts/promptsrc-maple/xd_train.sh imagenet 2",
                                "bash scripts/promptsrc-maple/xd_test.sh imagenetv2 2"],
        },
        "fewshot": {
            "promptsrc": ["bash scripts/promptsrc/few_shot.sh eurosat 4 2"],  # official order: DATASET SHOTS
            "coprompt": ["bash scripts/coprompt/fewshot_coprompt.sh eurosat 2 4"],
            "promptsrc-bloom": ["bash scripts/promptsrc-bloom/fewshot.sh eurosat 2 4"],
            "coprompt-bmip": ["bash scripts/coprompt-bmip/fewshot.sh eurosat 2 4"],
        },
    }
    expected["openworld"] = expected["base2new"]
    for method, commands in expected[protocol].items():
        assert by_name[f"{method}-{protocol}-{groups[1]}"] == commands, method


def test_a_base2new_launch_of_composition_methods_names_the_composition_table(launch, repo, env, tmp_path):
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "promptsrc-bmip", "coprompt", "--datasets",
                      "eurosat", "--seeds", "1", "--output", "runs")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "caller" / "runs"
    assert proc.stdout.splitlines()[-2:] == [
        f"Build the table with: python parse_test_res.py --table base2new {out}",
        f"and the regularizer x base table (BMIP's Table 4) with: python parse_test_res.py --table composition {out}"]
    trainers = sorted({opt(argv, "--trainer") for argv, _ in recorded_calls(env)})
    assert trainers == ["CoPrompt", "PromptSRC_BMIP"] and len(recorded_calls(env)) == 4
    # other methods and protocols: only their own table
    lines = []
    launch.summarise([], "base2new", "/o", "/l", echo=lines.append, methods=["maple", "promptsrc-maple"])
    launch.summarise([], "xd", "/o", "/l", echo=lines.append, methods=["promptsrc"])
    assert [line for line in lines if "parse_test_res" in line] == [
        "Build the table with: python parse_test_res.py --table base2new /o",
        "Build the table with: python parse_test_res.py --table xd /o"]


def test_dry_run_prints_the_jobs_and_runs_nothing(repo, env, tmp_path):
    proc = launch_cli(repo, env, tmp_path, "xd", "--methods", "coop", "--datasets", "eurosat", "--seeds", "1",
                      "--jobs", "3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "xd for coop: 1 jobs, 2 runs (local, 3 workers)",
        "[1/1] coop-xd-seed1 (2 runs)",
        "    bash scripts/coop/xd_train.sh imagenet 1",
        "    bash scripts/coop/xd_test.sh eurosat 1",
    ]
    assert recorded_calls(env) == [] and not (repo / "output").exists()


def test_visible_gpus(launch):
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "0, 1"}) == ["0", "1"]
    assert launch.visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}) == ["2"]  # CUDA stops at -1


# --- the local executor ---------------------------------------------------------------------------

def test_local_executor_runs_every_run_once_and_a_relaunch_runs_nothing(repo, env, tmp_path):
    env.update(DATASETS="eurosat dtd", SEEDS="1 2")
    # the same two sweeps through sweep.sh, for reference
    env["OUTPUT"] = str(tmp_path / "swept")
    for method in ("coop", "maple"):
        assert run_script(repo, "sweep.sh", ["base2new", method], env, tmp_path / "caller").returncode == 0
    sweep_calls = recorded_calls(env)
    del env["OUTPUT"], env["DATASETS"], env["SEEDS"]

    args = ["base2new", "--methods", "coop", "maple", "--datasets", "eurosat", "dtd", "--seeds", "1", "2",
            "--output", "runs", "--jobs", "2"]
    proc = launch_cli(repo, env, tmp_path, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "caller" / "runs"  # a relative --output is the caller's, as in sweep.sh
    calls = recorded_calls(env)[len(sweep_calls):]
    assert normalised(calls, out) == normalised(sweep_calls, tmp_path / "swept")
    assert len(set(map(tuple, (argv for argv, _ in calls)))) == 16
    # within a job the test follows its training run
    dirs = [opt(argv, "--output-dir") for argv, _ in calls]
    for test_dir in (d for d in dirs if "/test_new/" in d):
        assert dirs.index(test_dir.replace("/test_new/", "/train_base/")) < dirs.index(test_dir)

    lines = proc.stdout.splitlines()
    assert lines[0].startswith("base2new for coop maple: 8 jobs (local, 2 workers); logs in ")
    launch_dir = Path(lines[0].split("logs in ")[1])
    assert launch_dir.parent == out / "launch"
    status = [line for line in lines if line.startswith("[")]
    assert len(status) == 8 and all(" ok " in line and ": 2 runs, 0 skipped" in line for line in status)
    assert "Summary: 8 jobs (16 runs, 0 skipped as finished): 8 ok, 0 failed." in proc.stdout
    assert lines[-1] == f"Build the table with: python parse_test_res.py --table base2new {out}"
    log = (launch_dir / "maple-base2new-dtd-seed2.log").read_text()
    assert "$ SUB=new bash scripts/maple/base2new_test_maple.sh dtd 2" in log
    assert json.loads((launch_dir / "maple-base2new-dtd-seed2.json").read_text())["ok"] is True

    again = launch_cli(repo, env, tmp_path, *args)
    assert again.returncode == 0, again.stderr
    assert len(recorded_calls(env)) == len(sweep_calls) + 16  # nothing ran
    assert "Summary: 8 jobs (16 runs, 16 skipped as finished): 8 ok, 0 failed." in again.stdout
    assert len(list((out / "launch").iterdir())) == 2  # each launch keeps its own logs


def test_a_failing_run_stops_its_job_and_the_launch_exits_1_naming_it(repo, env, tmp_path):
    env["FAKE_FAIL"] = "train_base/dtd"
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--datasets", "eurosat", "dtd",
                      "--seeds", "1", "--jobs", "2")
    assert proc.returncode == 1
    launch_dir = Path(proc.stdout.splitlines()[0].split("logs in ")[1])
    log = launch_dir / "coop-base2new-dtd-seed1.log"
    assert f"FAILED coop-base2new-dtd-seed1: `bash scripts/coop/base2new_train.sh dtd 1` exited 3; log: {log}" \
        in proc.stdout.splitlines()
    assert "1 ok, 1 failed" in proc.stdout and "Relaunch the same command to resume" in proc.stdout
    assert "[2/2]" not in log.read_text()  # the test of the failed training run never started
    dirs = [opt(argv, "--output-dir") for argv, _ in recorded_calls(env)]
    assert sorted(d.split("/base2new/")[1].split("/")[0] + "/" + d.split("/")[3] for d in dirs) == [
        "test_new/eurosat", "train_base/dtd", "train_base/eurosat"]

    # fixed: the relaunch runs only what is missing
    del env["FAKE_FAIL"]
    again = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--datasets", "eurosat", "dtd",
                       "--seeds", "1", "--jobs", "2")
    assert again.returncode == 0, again.stdout
    assert [opt(argv, "--output-dir").split("/base2new/")[1].split("/shots")[0]
            for argv, _ in recorded_calls(env)[3:]] == ["train_base/dtd", "test_new/dtd"]


def test_a_job_whose_run_another_process_holds_is_left_to_it(repo, env, tmp_path):
    env["FAKE_LOCKED"] = "train_base/dtd"
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--datasets", "eurosat", "dtd",
                      "--seeds", "1", "--jobs", "2")
    assert proc.returncode == 0, proc.stdout
    assert "1 ok, 0 failed, 1 left to another process that holds their run" in proc.stdout
    assert "LOCKED coop-base2new-dtd-seed1: `bash scripts/coop/base2new_train.sh dtd 1` is being run by another " \
           "process" in proc.stdout
    assert "Relaunch the same command once the other process has finished" in proc.stdout
    dirs = [opt(argv, "--output-dir").split("/base2new/")[1].split("/shots")[0] for argv, _ in recorded_calls(env)]
    assert sorted(dirs) == ["test_new/eurosat", "train_base/dtd", "train_base/eurosat"]  # no test of dtd


def test_each_worker_pins_its_job_to_one_gpu(repo, env, tmp_path):
    env["CUDA_VISIBLE_DEVICES"] = "3,5"
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--datasets", "eurosat", "dtd",
                      "--seeds", "1", "2")
    assert proc.returncode == 0, proc.stderr
    assert "(local, 2 workers on GPUs 3,5)" in proc.stdout  # one worker per visible GPU by default
    by_job = {}
    for record in recorded_records(env):
        parts = opt(record["argv"], "--output-dir").split("/")
        by_job.setdefault((parts[-5], parts[-1]), set()).add(record["cuda"])  # (dataset, seedN)
    assert len(by_job) == 4 and all(len(gpus) == 1 for gpus in by_job.values())
    assert set().union(*by_job.values()) == {"3", "5"}

    # no GPU: nothing is pinned, the runs keep the caller's CUDA_VISIBLE_DEVICES
    env["CUDA_VISIBLE_DEVICES"] = ""
    env["OUTPUT"] = str(tmp_path / "cpu")
    proc = launch_cli(repo, env, tmp_path, "fewshot", "--methods", "coop", "--datasets", "eurosat", "--seeds", "1",
                      "--shots-list", "1", "2", "--jobs", "2")
    assert proc.returncode == 0 and "(local, 2 workers)" in proc.stdout
    assert [record["cuda"] for record in recorded_records(env)[8:]] == ["", ""]


def test_jobs_per_gpu_packs_small_jobs_onto_each_gpu(repo, env, tmp_path):
    env["CUDA_VISIBLE_DEVICES"] = "3,5"
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--datasets", "eurosat", "dtd",
                      "--seeds", "1", "2", "3", "--jobs-per-gpu", "3")
    assert proc.returncode == 0, proc.stderr
    assert "(local, 6 workers on GPUs 3,5)" in proc.stdout  # three workers per visible GPU
    cuda = [record["cuda"] for record in recorded_records(env)]
    assert len(cuda) == 12 and set(cuda) == {"3", "5"}
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--jobs-per-gpu", "0")
    assert proc.returncode == 2 and "--jobs-per-gpu must be at least 1" in proc.stderr


# --- submitit -------------------------------------------------------------------------------------

def test_slurm_executor_submits_one_array_with_only_the_given_settings(repo, env, tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "sbatch").write_text('#!/bin/sh\ncp "$1" "$FAKE_SBATCH_COPY"\necho "Submitted batch job 4242"\n')
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 1\n")
    for tool in fake_bin.iterdir():
        tool.chmod(0o755)
    env.update(PATH=f"{fake_bin}:{env['PATH']}", FAKE_SBATCH_COPY=str(tmp_path / "sbatch.sh"))
    proc = launch_cli(repo, env, tmp_path, "base2new", "--methods", "coop", "--datasets", "eurosat",
                      "--seeds", "1", "2", "--executor", "slurm", "--partition", "gpu", "--time", "90",
                      "--gpus-per-job", "1", "--cpus-per-task", "6", "--array-parallelism", "1")
    assert proc.returncode == 0, proc.stderr
    launch_dir = Path(proc.stdout.splitlines()[0].split("logs in ")[1])
    assert f"Submitted 2 jobs (slurm); submitit folder: {launch_dir / 'submitit'}" in proc.stdout
    assert "  4242_0  coop-base2new-eurosat-seed1  log: " in proc.stdout
    assert "  4242_1  coop-base2new-eurosat-seed2  log: " in proc.stdout
    sbatch = [line for line in (tmp_path / "sbatch.sh").read_text().splitlines() if line.startswith("#SBATCH")]
    for expected in ("--array=0-1%1", "--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=6",
                     "--job-name=launch-base2new"):
        assert f"#SBATCH {expected}" in sbatch
    assert not [line for line in sbatch if any(k in line for k in ("--account", "--qos", "--mem"))]
    assert recorded_calls(env) == []  # nothing ran here


@pytest.mark.slow
def test_submitit_local_executor_runs_the_sweep_as_the_local_executor_does(repo, env, tmp_path):
    """2 methods x 1 dataset x 2 seeds through submitit's local executor; then a failing job."""
    args = ["base2new", "--methods", "coop", "maple", "--datasets", "eurosat", "--seeds", "1", "2"]
    proc = launch_cli(repo, env, tmp_path, *args, "--output", str(tmp_path / "local"), "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    local_calls = recorded_calls(env)

    proc = launch_cli(repo, env, tmp_path, *args, "--output", str(tmp_path / "submitit"),
                      "--executor", "submitit-local", "--wait")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = recorded_calls(env)[len(local_calls):]
    assert normalised(calls, tmp_path / "submitit") == normalised(local_calls, tmp_path / "local")
    assert len(set(normalised(calls, tmp_path / "submitit"))) == len(calls) == 8  # each run once
    launch_dir = Path(proc.stdout.splitlines()[0].split("logs in ")[1])
    assert "Submitted 4 jobs (local)" in proc.stdout and any((launch_dir / "submitit").iterdir())
    assert len([line for line in proc.stdout.splitlines() if line.startswith("[") and " ok " in line]) == 4
    assert "Summary: 4 jobs (8 runs, 0 skipped as finished): 4 ok, 0 failed." in proc.stdout

    # --jobs-per-gpu: several launcher jobs share one submitit job (and its GPU), each run once
    proc = launch_cli(repo, env, tmp_path, *args, "--output", str(tmp_path / "bundled"),
                      "--executor", "submitit-local", "--wait", "--jobs-per-gpu", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Submitted 2 jobs (local, 3 launcher jobs each)" in proc.stdout
    bundled = recorded_calls(env)[len(local_calls) + 8:]
    assert normalised(bundled, tmp_path / "bundled") == normalised(local_calls, tmp_path / "local")
    assert "Summary: 4 jobs (8 runs, 0 skipped as finished): 4 ok, 0 failed." in proc.stdout

    env["FAKE_FAIL"] = "test_new/eurosat/shots_16/MaPLe"
    proc = launch_cli(repo, env, tmp_path, *args, "--seeds", "3", "--output", str(tmp_path / "submitit"),
                      "--executor", "submitit-local", "--wait")
    assert proc.returncode == 1
    log = Path(proc.stdout.splitlines()[0].split("logs in ")[1]) / "maple-base2new-eurosat-seed3.log"
    assert (f"FAILED maple-base2new-eurosat-seed3: `SUB=new bash scripts/maple/base2new_test_maple.sh eurosat 3` "
            f"exited 3; log: {log}") in proc.stdout.splitlines()
    assert "1 ok, 1 failed" in proc.stdout
