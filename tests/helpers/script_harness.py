"""Run the bash scripts under ``scripts/`` against a throw-away copy of the repo layout.

``PYTHON`` is set to a fake interpreter that appends its argv, cwd and CUDA_VISIBLE_DEVICES to
``$FAKE_CALLS`` and writes ``results.json`` into ``--output-dir``, so a test sees the exact
``train.py`` command line a script builds and the skip-if-finished logic works as with real runs.
With ``FAKE_FAIL`` set, a call whose ``--output-dir`` contains that text is recorded, writes no
results and exits 3, as a crashing run would; with ``FAKE_LOCKED`` it exits 75 instead, as
train.py does when another live run holds that output dir.
"""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!{python}
import json, os, sys
args = sys.argv[1:]
if args and os.path.basename(args[0]) == "finished_run.py":  # common.sh's check: the real one
    os.execv(sys.executable, [sys.executable, *args])
record = {{"argv": args, "cwd": os.getcwd(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}}
with open(os.environ["FAKE_CALLS"], "a") as f:  # one short append per call: safe from parallel runs
    f.write(json.dumps(record) + "\\n")
out = args[args.index("--output-dir") + 1]
if os.environ.get("FAKE_FAIL") and os.environ["FAKE_FAIL"] in out:
    sys.exit(3)
if os.environ.get("FAKE_LOCKED") and os.environ["FAKE_LOCKED"] in out:
    print("error: output dir " + out + " is in use by another run (pid 1 on host)", file=sys.stderr)
    sys.exit(75)
os.makedirs(out, exist_ok=True)
metrics = {{"accuracy": 50.0}}
if "TEST.OPENWORLD_METRICS" in args:  # an open-world test reports its base/new/HM too
    metrics.update(base_accuracy=60.0, new_accuracy=40.0, hm=48.0)
sys.path.insert(0, os.getcwd())  # the repo copy: record the run's arguments as train.py does
from dassl.run_args import build_parser, defining_arguments
arguments = defining_arguments(build_parser().parse_args(args[1:]))
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump({{"complete": True, "metrics": metrics, "arguments": arguments}}, f)
"""


def make_script_repo(root, trainer_config_dirs, dataset_names):
    """Create at ``root`` a repo copy: the real scripts, the real trainer configs of
    ``trainer_config_dirs`` (e.g. ``["CoOp"]``), stub dataset configs and a train.py the fake
    interpreter never runs. Returns ``root`` as a Path."""
    root = Path(root)
    shutil.copytree(REPO_ROOT / "scripts", root / "scripts")
    # what scripts/finished_run.py imports (no torch, no yacs)
    (root / "dassl").mkdir()
    for name in ("__init__.py", "run_args.py"):
        shutil.copy(REPO_ROOT / "dassl" / name, root / "dassl")
    for name in trainer_config_dirs:
        shutil.copytree(REPO_ROOT / "configs" / "trainers" / name, root / "configs" / "trainers" / name)
    (root / "configs" / "datasets").mkdir(parents=True)
    for dataset in dataset_names:
        (root / "configs" / "datasets" / f"{dataset}.yaml").write_text("DATASET:\n  NAME: X\n")
    (root / "train.py").write_text("raise SystemExit('the fake PYTHON never runs this')\n")
    return root


def make_script_env(tmp_path):
    """Environment for a script run: an existing DATA dir, the fake PYTHON and PATH only, so
    nothing leaks in from the user's environment."""
    tmp_path = Path(tmp_path)
    data = tmp_path / "datasets"
    data.mkdir(exist_ok=True)
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return {"PATH": os.environ["PATH"], "DATA": str(data), "PYTHON": str(fake),
            "FAKE_CALLS": str(tmp_path / "calls.jsonl")}


def run_script(repo, script, args, env, cwd, timeout=60):
    """Run ``bash repo/scripts/<script> ARGS`` from ``cwd`` (created if needed) and return the
    CompletedProcess (text mode, output captured)."""
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["bash", str(Path(repo) / "scripts" / script), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def recorded_records(env):
    """Every fake train.py call so far, in order, as a dict with ``argv``, ``cwd`` and ``cuda``
    (the call's CUDA_VISIBLE_DEVICES, None when unset)."""
    path = Path(env["FAKE_CALLS"])
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def recorded_calls(env):
    """``[(argv, cwd)]`` of every fake train.py call so far, in order."""
    return [(c["argv"], c["cwd"]) for c in recorded_records(env)]


def run_launcher(repo, args, env, cwd, timeout=60):
    """Run ``python repo/scripts/launch.py ARGS`` with this interpreter from ``cwd`` (created if
    needed) and return the CompletedProcess (text mode, output captured)."""
    cwd = Path(cwd)
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, str(Path(repo) / "scripts" / "launch.py"), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
