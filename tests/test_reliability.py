"""Fault injection (issue 8; every case is listed in docs/RELIABILITY.md).

Kill and resume: ``train.py`` (CoOp, tiny CLIP, generated EuroSAT, CPU, best_val, 2 epochs) is
killed with SIGKILL at exact places chosen through ``PROMPTCLIP_FAULT`` (see
``dassl/utils/faults.py``): during a training step of epoch 1, during the validation of epoch 2,
during the final test, while writing the first checkpoint and while writing the epoch-2
checkpoint. Each killed run must die by the signal and leave no results.json; rerunning the
same command must resume from the last complete checkpoint (the temporary file of the
interrupted write is never loaded, and is removed) and end with the results.json metrics and
the checkpoints of an uninterrupted run, bit for bit, while the killed run's log stays as it
was. The same command with a full disk at the epoch-2 checkpoint fails with one line naming
the file, keeps the epoch-1 checkpoint and recovers when rerun; a damaged checkpoint under a
real name stops the resume with one line naming it.

All runs are started together (a few at a time) to keep the wall time low on a small machine.
Bad inputs that fail before training live in tests/test_bad_inputs.py. The static check at the
end makes sure no code path unpickles arbitrary objects.
"""
import ast
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import REPO, train_server_env
from tests.helpers.files import digest_tree
from dassl.utils import atomic_open, remove_stale_temp_files
from dassl.utils.faults import FAULT_ENV, FAULT_POINTS, parse_fault_spec

SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")
RUN_TIMEOUT = 300
TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # atomic_open's temporary files

# 40 training images (10 classes x 4 shots) in 5 batches of 8; 20 validation and 30 test images
# in batches of 10, so an evaluation can be killed half-way: eval batches 1-2 validate epoch 1,
# 3-4 epoch 2, 5-7 are the final test. Checkpoint writes: model-best and model.pth.tar-1 after
# epoch 1, then (model-best if validation improved and) model.pth.tar-2.
RUN_OPTS = ["DATASET.NUM_SHOTS", 4, "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32",
            "TEST.FINAL_MODEL", "best_val", "DATALOADER.TEST.BATCH_SIZE", 10]

# name: (fault, epoch of the checkpoint the rerun resumes from, 0 = none)
KILLS = {
    "epoch1-train-step": ("train_batch:3", 0),
    "epoch2-validation": ("eval_batch:4", 1),
    "final-test": ("eval_batch:6", 2),
    "first-checkpoint-write": ("checkpoint_write:1", 0),
    "epoch2-checkpoint-write": ("checkpoint_write:LAST", 1),  # LAST: found in the reference log
}


def run_args(root, clip_path, out):
    return ["--root", root, "--seed", 1, "--trainer", "CoOp", "--dataset-config-file", EUROSAT_CFG,
            "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", clip_path, "--device", "cpu",
            *RUN_OPTS]


def run(workdir, name, args, fault=None):
    """Run train.py to the end (or RUN_TIMEOUT) with its output in files; return a summary dict."""
    stdout_path, stderr_path = Path(workdir) / f"{name}.stdout", Path(workdir) / f"{name}.stderr"
    env = dict(os.environ, OMP_NUM_THREADS="1", **train_server_env())
    for key in ("PROMPTCLIP_DEBUG", FAULT_ENV):
        env.pop(key, None)
    if fault:
        env[FAULT_ENV] = fault
    with open(stdout_path, "w") as stdout, open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([env["PYTHON"], str(REPO / "train.py"), *map(str, args)], cwd=str(REPO),
                                env=env, stdout=stdout, stderr=stderr, start_new_session=True)
        try:
            proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"name": name, "returncode": proc.returncode, "stdout": stdout_path.read_text(),
            "stderr": stderr_path.read_text()}


def describe(result):
    return (f"{result['name']}: exit {result['returncode']}\nSTDOUT:\n{result['stdout'][-3000:]}"
            f"\nSTDERR:\n{result['stderr'][-3000:]}")


def temp_files(out):
    return sorted(p for p in digest_tree(out) if TEMP_FILE.match(Path(p).name))


def checkpoints(out):
    """The final checkpoints of a run, loaded."""
    folder = Path(out, "prompt_learner")
    return {name: torch.load(folder / name, weights_only=True) for name in ("model-best.pth.tar", "model.pth.tar-2")}


def assert_identical(a, b, where=""):
    """Exact equality of nested checkpoint contents (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a, key=str) == sorted(b, key=str), where
        for key in a:
            if where.endswith(".rng") and key == "python":
                # Python's random only draws the few-shot selection, which a run makes once and
                # caches for the next ones; training never uses it (see dassl/data/transforms).
                continue
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def results(out):
    with open(Path(out, "results.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, eurosat_root, tiny_clip_path):
    """Every run of this file: the reference, each killed run and its rerun, the disk-full run
    and its rerun, and the resume from a damaged checkpoint. Returns the observations."""
    workdir = tmp_path_factory.mktemp("faults")
    args = lambda name: run_args(eurosat_root, tiny_clip_path, str(workdir / name))  # noqa: E731
    found = {}

    def reference():
        found["reference"] = run(workdir, "reference", args("reference"))
        saves = [line for line in found["reference"]["stdout"].splitlines() if line.startswith("Checkpoint saved to")]
        # The fault counts atomic_torch_save calls; the epoch-2 checkpoint is the last one.
        assert saves and saves[-1].endswith("model.pth.tar-2"), describe(found["reference"])
        return len(saves)

    def kill_and_rerun(name, fault):
        if fault.endswith(":LAST"):
            fault = fault.replace("LAST", str(n_writes.result()))
        out = workdir / name
        killed = run(workdir, f"{name}.killed", args(name), fault=fault)
        after_kill = {"files": digest_tree(out), "temp": temp_files(out),
                      "log": (out / "log.txt").read_text() if (out / "log.txt").exists() else ""}
        rerun = run(workdir, f"{name}.rerun", args(name))
        found[name] = {"fault": fault, "killed": killed, "after_kill": after_kill, "rerun": rerun,
                       "files": digest_tree(out)}

    def disk_full():
        name = "disk-full"
        fault = f"checkpoint_write:{n_writes.result()}:enospc"
        out = workdir / name
        failed = run(workdir, f"{name}.failed", args(name), fault=fault)
        after = {"files": digest_tree(out)}
        after["epoch1"] = torch.load(out / "prompt_learner" / "model.pth.tar-1", weights_only=True) \
            if (out / "prompt_learner" / "model.pth.tar-1").exists() else None
        after["pointer"] = (out / "prompt_learner" / "checkpoint").read_text()
        rerun = run(workdir, f"{name}.rerun", args(name))
        found[name] = {"failed": failed, "after": after, "rerun": rerun}

    def damaged_checkpoint():
        n_writes.result()
        name = "damaged"
        out = workdir / name
        shutil.copytree(workdir / "reference", out)
        victim = out / "prompt_learner" / "model.pth.tar-2"
        victim.write_bytes(victim.read_bytes()[:300])
        before = digest_tree(out)
        found[name] = {"victim": str(victim), "before": before, "run": run(workdir, name, args(name)),
                       "after": digest_tree(out)}

    def guarded(name, job, *job_args):
        # A case that breaks is reported by its own test, not by every test of the file.
        try:
            job(*job_args)
        except Exception as error:  # noqa: BLE001
            found[name] = {"error": error}

    # Four at a time: the runs are single-threaded and partly wait on I/O and start-up.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        n_writes = pool.submit(reference)
        jobs = [pool.submit(guarded, name, kill_and_rerun, name, fault) for name, (fault, _) in KILLS.items()]
        jobs += [pool.submit(guarded, "disk-full", disk_full), pool.submit(guarded, "damaged", damaged_checkpoint)]
        for job in jobs:
            job.result()
    found["workdir"] = workdir
    return found


def case_of(campaign, name):
    """The observations of one case (re-raising what went wrong while collecting them)."""
    case = campaign[name]
    if "error" in case:
        raise case["error"]
    return case


@pytest.mark.slow
def test_reference_run_is_complete(campaign):
    ref = campaign["reference"]
    assert ref["returncode"] == 0, describe(ref)
    assert results(campaign["workdir"] / "reference")["complete"] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", list(KILLS))
def test_sigkill_then_rerun_ends_like_an_uninterrupted_run(campaign, name):
    case, workdir = case_of(campaign, name), campaign["workdir"]
    out, resumed_from = workdir / name, KILLS[name][1]
    killed, rerun = case["killed"], case["rerun"]
    point, count = case["fault"].split(":")[:2]

    # The kill happened where it was asked for, and the run did not get to finish.
    assert killed["returncode"] == -signal.SIGKILL, describe(killed)
    assert f"fault injection: kill at {point} #{count}" in case["after_kill"]["log"]
    assert "results.json" not in case["after_kill"]["files"]
    if point == "checkpoint_write":
        # The interrupted write left its temporary file, never a file under a real name.
        assert len(case["after_kill"]["temp"]) == 1, case["after_kill"]["files"]
    else:
        assert case["after_kill"]["temp"] == []

    # Rerunning the same command resumes from the last complete checkpoint...
    assert rerun["returncode"] == 0, describe(rerun)
    if resumed_from:
        assert f"Previous epoch: {resumed_from}" in rerun["stdout"]
        assert f"epoch [{resumed_from}/2]" not in rerun["stdout"]  # a finished epoch is not redone
    else:
        assert "No checkpoint found, train from scratch" in rerun["stdout"]
    loaded = [line for line in rerun["stdout"].splitlines() if line.startswith("Loading checkpoint from")]
    assert not any(".tmp" in line for line in loaded)
    if point == "checkpoint_write":
        assert "Removed 1 temporary file(s) left by an interrupted run" in rerun["stdout"]
    assert temp_files(out) == []

    # ...and ends with exactly the numbers and weights of the uninterrupted run.
    ref_out = workdir / "reference"
    ours, ref = results(out), results(ref_out)
    assert ours["complete"] is True
    assert (ours["metrics"], ours["epoch"], ours["split"]) == (ref["metrics"], ref["epoch"], ref["split"])
    for fname, ckpt in checkpoints(out).items():
        assert_identical(ckpt, checkpoints(ref_out)[fname], fname)

    # Nothing the killed run wrote to its log was lost: the rerun logs to a new file.
    assert (out / "log.txt").read_text() == case["after_kill"]["log"]
    assert any(p.startswith("log.txt-") for p in case["files"])


@pytest.mark.slow
def test_disk_full_while_saving_keeps_the_previous_checkpoint(campaign):
    case, out = case_of(campaign, "disk-full"), campaign["workdir"] / "disk-full"
    failed, after = case["failed"], case["after"]
    assert failed["returncode"] == 2, describe(failed)
    last = failed["stderr"].strip().splitlines()[-1]
    assert last.startswith("error: ") and "No space left on device" in last, failed["stderr"][-2000:]
    assert str(out / "prompt_learner" / "model.pth.tar-2") in last
    assert "Traceback" not in failed["stderr"]
    # The epoch-1 checkpoint survives, loads, and is still the one the pointer names.
    assert after["epoch1"] is not None and after["epoch1"]["epoch"] == 1
    assert after["pointer"].strip() in ("model.pth.tar-1", "model-best.pth.tar")
    assert "prompt_learner/model.pth.tar-2" not in after["files"] and "results.json" not in after["files"]
    assert not [p for p in after["files"] if TEMP_FILE.match(Path(p).name)]  # the partial file was removed
    # Documented recovery: free space, rerun the same command.
    rerun = case["rerun"]
    assert rerun["returncode"] == 0, describe(rerun)
    assert "Previous epoch: 1" in rerun["stdout"]
    assert results(out)["metrics"] == results(campaign["workdir"] / "reference")["metrics"]


@pytest.mark.slow
def test_damaged_checkpoint_stops_the_resume_and_is_kept(campaign):
    case = case_of(campaign, "damaged")
    proc = case["run"]
    assert proc["returncode"] == 2, describe(proc)
    last = proc["stderr"].strip().splitlines()[-1]
    assert last.startswith("error: ") and "corrupt or incomplete checkpoint" in last and case["victim"] in last
    # Nothing was overwritten or set aside (results.json stays: the finished run stays finished).
    unchanged = {k: v for k, v in case["after"].items() if not k.startswith("log.txt")}
    assert unchanged == {k: v for k, v in case["before"].items() if not k.startswith("log.txt")}


# ------------------------------------------------------------------ the mechanism itself (fast)
def test_fault_spec_parsing():
    assert parse_fault_spec("") == {}
    assert parse_fault_spec("eval_batch:3") == {"eval_batch": (3, "kill")}
    assert parse_fault_spec("checkpoint_write:2:enospc, train_batch:1") == {
        "checkpoint_write": (2, "enospc"), "train_batch": (1, "kill")}
    for bad, message in (("eval_batch", "bad spec"), ("eval_batch:0", "bad spec"), ("evalbatch:1", "unknown fault point"),
                         ("eval_batch:1:explode", "unknown action")):
        with pytest.raises(ValueError, match=message):
            parse_fault_spec(bad)
    assert set(FAULT_POINTS) == {"train_batch", "eval_batch", "checkpoint_write"}


def test_atomic_open_failure_keeps_old_file_and_names_new_one(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(OSError) as info:
        with atomic_open(str(target)) as handle:
            handle.write("half")
            raise OSError(28, "No space left on device")
    assert str(target) in str(info.value)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["results.json"]


def test_remove_stale_temp_files_only_removes_atomic_open_leftovers(tmp_path):
    keep = [".hidden", "model.pth.tar-1", "checkpoint", ".model.pth.tar-1.tmp", "notes.tmp"]
    for name in keep + [".model.pth.tar-2.ab3_x9zq.tmp", ".results.json.k2j4h5g6.tmp"]:
        (tmp_path / name).write_text("x")
    removed = remove_stale_temp_files(str(tmp_path))
    assert sorted(Path(p).name for p in removed) == [".model.pth.tar-2.ab3_x9zq.tmp", ".results.json.k2j4h5g6.tmp"]
    assert sorted(os.listdir(tmp_path)) == sorted(keep)
    assert remove_stale_temp_files(str(tmp_path / "missing")) == []


# ------------------------------------------------------------------ loading is safe (static)
SCANNED = ["dassl", "clip", "datasets", "trainers", "tools", "train.py", "parse_test_res.py"]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# The only places allowed to unpickle, and why (docs/RELIABILITY.md, "Loading is safe"):
ALLOWED = {
    # load_checkpoint: torch.load(weights_only=weights_only), True by default; no caller passes False.
    # When safe loading refuses a global, it retries with _InertUnpickler restricted to inert
    # stand-ins for torch.optim classes (original-Dassl checkpoints pickle their scheduler);
    # any other global raises RefusedGlobal, so nothing is built or called.
    ("dassl/utils/torchtools.py", "torch.load", "load_checkpoint"),
    # load_released_checkpoint: checkpoints of the original Dassl pickle their scheduler; they are
    # unpickled by _InertUnpickler, which resolves only torch's weights-only globals and turns
    # every other class into an inert placeholder (no code from the file runs).
    ("dassl/utils/torchtools.py", "torch.load", "load_released_checkpoint"),
    ("dassl/utils/torchtools.py", "import pickle", "<module>"),
    # OpenAI's released CLIP weights are TorchScript archives: torch.jit.load reads them with
    # TorchScript's own unpickler (no arbitrary Python classes); only .state_dict() is used. The
    # files come from OpenAI's URLs and are checked against their SHA256 first.
    ("clip/loader.py", "torch.jit.load", "read_state_dict"),
}


def unsafe_loads():
    """(file, what, enclosing function) for every import of a pickle-like module, every
    torch.load without weights_only=True, every torch.jit.load / numpy allow_pickle load /
    yaml full loader, and every caller passing weights_only=False."""
    found = set()
    files = []
    for entry in SCANNED:
        path = REPO / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    for path in files:
        rel = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text(), filename=rel)
        parents = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                parents[child] = node

        def enclosing(node):
            while node in parents:
                node = parents[node]
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    return node.name
            return "<module>"

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in PICKLE_MODULES:
                        found.add((rel, f"import {alias.name}", enclosing(node)))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
                found.add((rel, f"from {node.module} import", enclosing(node)))
            elif isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                kwargs = {k.arg: k.value for k in node.keywords}
                literal = lambda key: (isinstance(kwargs.get(key), ast.Constant)  # noqa: E731
                                       and kwargs[key].value is True)
                if name == "torch.load" and not literal("weights_only"):
                    found.add((rel, "torch.load", enclosing(node)))
                elif name == "torch.jit.load":
                    found.add((rel, "torch.jit.load", enclosing(node)))
                elif name.endswith("load") and "allow_pickle" in kwargs:
                    found.add((rel, f"{name}(allow_pickle=...)", enclosing(node)))
                elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                    found.add((rel, name, enclosing(node)))
                elif "weights_only" in kwargs and name != "torch.load":
                    value = kwargs["weights_only"]
                    if not (isinstance(value, ast.Constant) and value.value is True):
                        found.add((rel, f"{name}(weights_only=...)", enclosing(node)))
    return found


def test_nothing_unpickles_outside_the_reviewed_places():
    assert unsafe_loads() == ALLOWED
