#!/usr/bin/env python
"""Launch one protocol for several methods over datasets x seeds: a local queue (one job per GPU, or
N parallel CPU jobs) or SLURM jobs through submitit.

    python scripts/launch.py base2new --methods coop maple --datasets eurosat dtd --seeds 1 2 3
    python scripts/launch.py xd --methods maple --executor slurm --partition gpu --time 600 \\
        --gpus-per-job 1 --cpus-per-task 8 --wait

The runs come from ``scripts/sweep.sh --plan PROTOCOL METHOD`` (its checks included), so this file
holds no protocol logic of its own. Runs that depend on each other (sweep.sh puts them in one group:
a training run and the tests of its model) form one job and run in order, stopping at the first
failure; independent jobs run in parallel. Each run is ``bash scripts/<script> ARG...`` with SUB set
when the plan gives one, and the per-run scripts skip runs whose results.json exists, so launching the
same command again resumes an interrupted or partly failed sweep.

Settings the per-run scripts read (scripts/common.sh) come from the environment, as for sweep.sh, or
from the flags of the same name, which win: DATA (required), OUTPUT, CFG, SHOTS, LOADEP, EXTRA_OPTS,
PYTHON, SOURCE_DATASET; --datasets, --seeds and --shots-list stand for DATASETS, SEEDS and SHOTS_LIST.
Every job gets these values as the launcher saw them (relative DATA and OUTPUT made absolute).

Each launch writes into a folder (default OUTPUT/launch/<timestamp>, OUTPUT defaulting to the repo's
output/): <job>.log with everything the job's runs printed and <job>.json with its outcome; with
submitit also submitit/, submitit's own pickles and logs. See docs/LAUNCH.md.
"""
import argparse
import concurrent.futures
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

SCRIPTS_DIR = Path(__file__).resolve().parent
# Variables of scripts/common.sh a job passes on to the per-run scripts.
RUN_VARIABLES = ("DATA", "OUTPUT", "CFG", "SHOTS", "LOADEP", "EXTRA_OPTS", "PYTHON", "SOURCE_DATASET")
# What a per-run script prints when it skips a finished run (common.sh's finished_run).
SKIP_MESSAGE = "Skip this job"
# train.py's exit status when another live run holds the output dir (dassl/utils/run_lock.py; the
# launcher does not import the engine, which would cost every job torch's start-up).
EXIT_LOCKED = 75
EXECUTORS = ("local", "slurm", "submitit-local")
# Methods whose base2new runs feed parse_test_res.py --table composition (sweep.sh's COMPOSITION_METHODS).
COMPOSITION_METHODS = ("promptsrc", "coprompt", "promptsrc-bmip", "promptsrc-bloom", "coprompt-bmip", "coprompt-bloom")
# Seconds between checks of submitit jobs: SLURM's accounting is slow to ask, local processes are not.
POLL_SECONDS = {"slurm": 30.0, "submitit-local": 0.5}


class LaunchError(Exception):
    """A problem with the launch request, reported as one line without a traceback."""


@dataclass(frozen=True)
class Run:
    """One call of a per-run script: ``SUB=sub bash scripts/<script> ARG...`` (no SUB when empty)."""

    label: str
    sub: str
    script: str
    args: tuple

    def command(self):
        """The run as a shell command line, for logs and error messages."""
        words = ["bash", f"scripts/{self.script}", *self.args]
        prefix = f"SUB={shlex.quote(self.sub)} " if self.sub else ""
        return prefix + " ".join(shlex.quote(word) for word in words)


@dataclass
class Job:
    """Runs that go to one worker in order; ``env`` holds the RUN_VARIABLES the launcher saw (a name
    missing from it is unset for the runs), ``repo`` the repository the scripts run in and ``log``
    the file their output goes to (set once the launch folder exists)."""

    name: str
    runs: list
    env: dict = field(default_factory=dict)
    repo: str = ""
    log: str = ""


# --- the plan ----------------------------------------------------------------------------------------

def read_plan(protocol, method, env, scripts_dir=SCRIPTS_DIR):
    """Ask ``sweep.sh --plan`` for the runs of PROTOCOL x METHOD under ENV; return ``[(group, Run)]``
    in sweep order. A refused plan (unknown protocol, method or dataset, missing DATA folder, ...)
    raises LaunchError with sweep.sh's own message."""
    proc = subprocess.run(["bash", str(Path(scripts_dir) / "sweep.sh"), "--plan", protocol, method],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        message = lines[-1] if lines else f"sweep.sh --plan {protocol} {method} exited {proc.returncode}"
        raise LaunchError(message[len("ERROR: "):] if message.startswith("ERROR: ") else message)
    planned = []
    for line in proc.stdout.splitlines():
        group, label, sub, script, *args = line.split("\t")
        planned.append((group, Run(label, sub, script, tuple(args))))
    return planned


def job_name(method, protocol, group):
    """A file-name-safe job name, e.g. ``maple-base2new-eurosat-seed1``."""
    slug = re.sub(r"[^A-Za-z0-9_.+-]+", "-", group.replace("seed ", "seed").replace("shots ", "shots"))
    return f"{method}-{protocol}-{slug.strip('-')}"


def group_jobs(protocol, method, planned):
    """Turn sweep.sh's plan into jobs: consecutive runs of one group form one job, in plan order."""
    jobs = []
    current = None
    for group, run in planned:
        if current is None or group != current:
            jobs.append(Job(job_name(method, protocol, group), []))
            current = group
        jobs[-1].runs.append(run)
    return jobs


def plan_jobs(protocol, methods, env, scripts_dir=SCRIPTS_DIR):
    """Every job of PROTOCOL for each of METHODS (in that order) under the environment ENV, with the
    job environment and repo filled in; the log paths are left for the launch to set."""
    repo = str(Path(scripts_dir).resolve().parent)
    job_env = {name: env[name] for name in RUN_VARIABLES if name in env}
    jobs = []
    for method in methods:
        for job in group_jobs(protocol, method, read_plan(protocol, method, env, scripts_dir)):
            job.env, job.repo = dict(job_env), repo
            jobs.append(job)
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):  # a repeated method on the command line
        raise LaunchError("two jobs would share a name (is a method given twice?): "
                          + ", ".join(sorted({n for n in names if names.count(n) > 1})))
    return jobs


# --- running one job (the same function in every executor) ---------------------------------------------

def run_job(job, gpu=None, interrupt=None):
    """Run JOB's runs in order with their output appended to ``job.log``, stopping at the first failure;
    write the outcome next to the log (``<job>.json``) and return it as a dict (``ok``, ``runs``,
    ``ran``, ``skipped``, ``failed_command``, ``exit_status``, ``seconds``, ``gpu``, ``log``, ...).

    GPU, when given, becomes CUDA_VISIBLE_DEVICES for the runs. INTERRUPT is an optional
    threading.Event: once set, the running script's process group is terminated and the job stops."""
    start = time.time()
    env = dict(os.environ)
    for name in RUN_VARIABLES:
        env.pop(name, None)  # the job sees exactly the launcher's view of these, also on a cluster node
    env.update(job.env)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    outcome = {"job": job.name, "ok": True, "runs": len(job.runs), "ran": 0, "skipped": 0, "locked": None,
               "failed_command": None, "exit_status": None, "interrupted": False, "gpu": gpu,
               "log": job.log, "host": os.uname().nodename}
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    # Binary append: the scripts write into the same file through their own descriptor, and byte
    # offsets let the launcher read back just one run's output.
    with open(job.log, "ab") as log:
        def note(text):
            log.write(text.encode())
            log.flush()

        devices = env.get("CUDA_VISIBLE_DEVICES")  # pinned here, or set by SLURM / submitit
        note(f"# job {job.name}: {len(job.runs)} runs on {outcome['host']}"
             f"{f' (CUDA_VISIBLE_DEVICES={devices})' if devices is not None else ''}, started {datetime.now():%F %T}\n")
        for index, run in enumerate(job.runs, 1):
            if interrupt is not None and interrupt.is_set():
                outcome.update(ok=False, interrupted=True)
                break
            note(f"[{index}/{len(job.runs)}] {run.label}\n$ {run.command()}\n")
            offset = os.path.getsize(job.log)
            status = _run_script(run, job.repo, env, log, interrupt)
            outcome["ran"] += 1
            with open(job.log, "rb") as written:
                written.seek(offset)
                if SKIP_MESSAGE.encode() in written.read():
                    outcome["skipped"] += 1
            if status == EXIT_LOCKED:
                # Another live process (a second launch, a sweep) is doing this run: leave it to
                # that process; the job's later runs need it, so they wait for a relaunch too.
                outcome["locked"] = run.command()
                note(f"# LOCKED by another process, job left to it: {run.command()}\n")
                break
            if status != 0:
                outcome.update(ok=False, failed_command=run.command(), exit_status=status,
                               interrupted=bool(interrupt is not None and interrupt.is_set()))
                note(f"# FAILED (exit {status}): {run.command()}\n")
                break
        outcome["seconds"] = round(time.time() - start, 1)
        note(f"# job {job.name} {'done' if outcome['ok'] else 'stopped'} after {outcome['seconds']} s\n")
    # Written whole and renamed, so the launcher never reads half an outcome from a shared file system.
    status_path = Path(job.log).with_suffix(".json")
    partial = status_path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(outcome, indent=1) + "\n")
    os.replace(partial, status_path)
    return outcome


def _run_script(run, repo, env, log, interrupt):
    """Run one per-run script with stdout and stderr into LOG; return its exit status. In its own
    session when INTERRUPT is given, so that the launcher can stop bash and train.py together."""
    run_env = dict(env, SUB=run.sub) if run.sub else env
    proc = subprocess.Popen(["bash", f"scripts/{run.script}", *run.args], cwd=repo, env=run_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=interrupt is not None)
    if interrupt is None:
        return proc.wait()
    terminated = False
    while True:
        try:
            return proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if interrupt.is_set() and not terminated:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                terminated = True


def run_bundle(bundle):
    """Run the jobs of BUNDLE at the same time on this node (threads; each job's scripts are their own
    processes) and return their outcomes in order: with --jobs-per-gpu several small jobs share
    one SLURM job and its GPU."""
    if len(bundle) == 1:
        return [run_job(bundle[0])]
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(bundle)) as pool:
        return list(pool.map(run_job, bundle))


def run_bundle_or_raise(bundle):
    """run_bundle for submitit: a failed job raises, so that SLURM and submitit record the job as
    failed (the outcome file beside each job's log keeps the details for the launcher's summary)."""
    outcomes = run_bundle(bundle)
    failed = [outcome for outcome in outcomes if not outcome["ok"]]
    if failed:
        first = failed[0]
        raise RuntimeError(f"job {first['job']} failed: {first['failed_command']} exited {first['exit_status']}; "
                           f"log: {first['log']}")
    return outcomes


# --- the local executor -------------------------------------------------------------------------------

def visible_gpus(environ):
    """GPU ids a local launch may hand out: CUDA_VISIBLE_DEVICES when set (up to a "-1", after which
    CUDA sees nothing), otherwise one per torch.cuda.device_count(), otherwise none."""
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        gpus = []
        for gpu in (part.strip() for part in value.split(",")):
            if gpu == "-1":
                break
            if gpu:
                gpus.append(gpu)
        return gpus
    try:
        import torch  # only here: a launch that names its GPUs never pays for importing torch
    except ImportError:
        return []
    return [str(index) for index in range(torch.cuda.device_count())]


def launch_local(jobs, workers, gpus, echo=print):
    """Run JOBS on WORKERS threads, each job pinned to one GPU of GPUS while it runs (worker slot i
    holds GPUS[i % len(GPUS)]; no pinning without GPUs). Prints one status line per finished job and
    returns the outcomes in job order. Ctrl-C (or SIGTERM, SIGHUP) stops the running scripts and starts
    no further job."""
    slots = queue.Queue()
    for index in range(workers):
        slots.put(gpus[index % len(gpus)] if gpus else None)
    interrupt = threading.Event()

    def work(job):
        if interrupt.is_set():
            return not_started(job)
        gpu = slots.get()
        try:
            return run_job(job, gpu, interrupt)
        except Exception as error:  # e.g. an unwritable log: that job fails, the others go on
            return dict(not_started(job), interrupted=False, error=f"launcher error: {error!r}")
        finally:
            slots.put(gpu)

    def stop(signum, frame):
        raise KeyboardInterrupt

    # The scripts run in sessions of their own (so that stopping one takes train.py along): a killed
    # launcher must stop them itself, or they would keep their GPUs busy.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, stop)
    outcomes = {}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
    futures = {pool.submit(work, job): job for job in jobs}
    try:
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            outcomes[futures[future].name] = outcome
            echo(status_line(len(outcomes), len(jobs), outcome), flush=True)
    except KeyboardInterrupt:
        interrupt.set()
        echo("Interrupted: stopping the running jobs (relaunch the same command to resume).", flush=True)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for future, job in futures.items():
        if job.name not in outcomes:
            outcomes[job.name] = future.result() if future.done() and not future.cancelled() else not_started(job)
    return [outcomes[job.name] for job in jobs]


def not_started(job):
    """The outcome of a job that never started (the launch was interrupted first)."""
    return {"job": job.name, "ok": False, "runs": len(job.runs), "ran": 0, "skipped": 0,
            "failed_command": None, "exit_status": None, "interrupted": True, "log": job.log}


# --- submitit (SLURM, or its local executor) ------------------------------------------------------------

def import_submitit(executor):
    """The submitit module, imported only for the executors that use it; LaunchError names the
    install command when it is missing."""
    try:
        import submitit
    except ImportError:
        raise LaunchError(f"--executor {executor} needs the submitit package: "
                          f"{shlex.quote(sys.executable)} -m pip install submitit") from None
    return submitit


def submitit_parameters(args):
    """submitit's update_parameters arguments from the command line: only the settings given, except
    a local time limit (submitit's local executor would otherwise stop a job after 2 minutes)."""
    params = {"name": f"launch-{args.protocol}"}
    timeout = args.time if args.time is not None else (24 * 60 if args.executor == "submitit-local" else None)
    optional = {
        "timeout_min": timeout,
        "gpus_per_node": args.gpus_per_job,
        "cpus_per_task": args.cpus_per_task,
        "mem_gb": args.mem_gb,
        "slurm_partition": args.partition,
        "slurm_account": args.account,
        "slurm_qos": args.qos,
        "slurm_array_parallelism": args.array_parallelism,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


def launch_submitit(jobs, args, launch_dir, echo=print):
    """Submit JOBS as one submitit job array (SLURM, or submitit's local executor). With --wait, wait,
    print a status line per finished job and return the outcomes in job order; otherwise print the
    job ids and return None."""
    submitit = import_submitit(args.executor)
    cluster = "slurm" if args.executor == "slurm" else "local"
    try:
        executor = submitit.AutoExecutor(folder=str(launch_dir / "submitit"), cluster=cluster)
    except RuntimeError as error:  # no srun on PATH
        raise LaunchError(f"--executor slurm needs SLURM here: {error}") from None
    executor.update_parameters(**submitit_parameters(args))
    module = sys.modules[__name__]
    if __name__ != "__main__":
        # Imported (e.g. by the tests) rather than run: a job process cannot import this file as a
        # module, so its functions travel by value, as they do when it runs as __main__.
        import cloudpickle
        cloudpickle.register_pickle_by_value(module)
    per_gpu = getattr(args, "jobs_per_gpu", None) or 1
    bundles = [jobs[start:start + per_gpu] for start in range(0, len(jobs), per_gpu)]
    submitted = executor.map_array(run_bundle_or_raise, bundles)
    echo(f"Submitted {len(submitted)} jobs ({cluster}"
         f"{f', {per_gpu} launcher jobs each' if per_gpu > 1 else ''}); submitit folder: {launch_dir / 'submitit'}",
         flush=True)
    for bundle, handle in zip(bundles, submitted):
        for job in bundle:
            echo(f"  {handle.job_id}  {job.name}  log: {job.log}")
    if not args.wait:
        echo(f"Outcomes land in {launch_dir}/<job>.json; relaunch the same command to resume.")
        return None
    by_id = {handle.job_id: bundle for bundle, handle in zip(bundles, submitted)}
    outcomes = {}
    for handle in submitit.helpers.as_completed(submitted, poll_frequency=POLL_SECONDS[args.executor]):
        for job in by_id[handle.job_id]:
            outcomes[job.name] = submitit_outcome(job, handle)
            echo(status_line(len(outcomes), len(jobs), outcomes[job.name]), flush=True)
    return [outcomes[job.name] for job in jobs]


def submitit_outcome(job, handle):
    """The outcome of a finished submitit job: its return value, or for a failed one the outcome file
    run_job wrote, or (killed, timed out, never started) submitit's error with its log paths."""
    error = handle.exception()
    if error is None:
        return next(outcome for outcome in handle.result() if outcome["job"] == job.name)
    status_path = Path(job.log).with_suffix(".json")
    if status_path.exists():
        return json.loads(status_path.read_text())
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return {"job": job.name, "ok": False, "runs": len(job.runs), "ran": 0, "skipped": 0,
            "failed_command": None, "exit_status": None, "interrupted": False, "log": job.log,
            "error": f"{first} (submitit logs: {handle.paths.stdout}, {handle.paths.stderr})"}


# --- reporting ----------------------------------------------------------------------------------------

def status_line(done, total, outcome):
    """One line for a finished job: ``[3/8] ok maple-base2new-eurosat-seed1: 2 runs, 1 skipped, 12.0 s``."""
    word = "ok" if outcome["ok"] else ("INTERRUPTED" if outcome.get("interrupted") else "FAILED")
    if outcome["ok"] and outcome.get("locked"):
        word = "LOCKED"
    details = f"{outcome['runs']} runs, {outcome['skipped']} skipped"
    if outcome.get("seconds") is not None:
        details += f", {outcome['seconds']} s"
    if outcome.get("gpu") is not None:
        details += f", GPU {outcome['gpu']}"
    line = f"[{done}/{total}] {word} {outcome['job']}: {details}"
    if not outcome["ok"]:
        line += f"; log: {outcome['log']}"
    return line


def failure_line(outcome):
    """What went wrong in a failed job, its failing command and its log, on one line."""
    status = outcome.get("exit_status")
    if outcome.get("failed_command"):
        ending = (f"was stopped by {signal.Signals(-status).name}" if isinstance(status, int) and status < 0
                  else f"exited {status}")
        what = f"`{outcome['failed_command']}` {ending}"
    elif outcome.get("error"):
        what = outcome["error"]
    else:
        what = "not started (interrupted)" if outcome.get("ran", 0) == 0 else "interrupted"
    log = f"log: {outcome['log']}" if Path(outcome["log"]).exists() else "no log"
    return f"FAILED {outcome['job']}: {what}; {log}"


def summarise(outcomes, protocol, output_root, launch_dir, echo=print, methods=()):
    """Print the summary of a finished launch; return the exit code (0 all ok, 1 any job failed).
    METHODS (the launched ones) adds the composition table's command after a base2new launch of
    one of its methods."""
    failed = [outcome for outcome in outcomes if not outcome["ok"]]
    runs = sum(outcome["runs"] for outcome in outcomes)
    skipped = sum(outcome["skipped"] for outcome in outcomes)
    locked = [outcome for outcome in outcomes if outcome["ok"] and outcome.get("locked")]
    echo(f"Summary: {len(outcomes)} jobs ({runs} runs, {skipped} skipped as finished): "
         f"{len(outcomes) - len(failed) - len(locked)} ok, {len(failed)} failed"
         f"{f', {len(locked)} left to another process that holds their run' if locked else ''}. Logs: {launch_dir}")
    for outcome in failed:
        echo(failure_line(outcome))
    for outcome in locked:
        echo(f"LOCKED {outcome['job']}: `{outcome['locked']}` is being run by another process")
    if failed:
        echo("Relaunch the same command to resume: finished runs are skipped.")
        return 1
    if locked:
        echo("Relaunch the same command once the other process has finished to complete these jobs.")
    echo(f"Build the table with: python parse_test_res.py --table {protocol} {output_root}")
    if protocol == "base2new" and set(methods) & set(COMPOSITION_METHODS):
        echo(f"and the regularizer x base table (BMIP's Table 4) with: "
             f"python parse_test_res.py --table composition {output_root}")
    return 0


def print_plan(jobs, protocol, methods, executor_note, echo=print):
    """The --dry-run listing: every job with its runs as shell commands."""
    runs = sum(len(job.runs) for job in jobs)
    echo(f"{protocol} for {' '.join(methods)}: {len(jobs)} jobs, {runs} runs ({executor_note})")
    for index, job in enumerate(jobs, 1):
        echo(f"[{index}/{len(jobs)}] {job.name} ({len(job.runs)} runs)")
        for run in job.runs:
            echo(f"    {run.command()}")


# --- command line -------------------------------------------------------------------------------------

def parse_args(argv):
    """The launcher's command line (see the module docstring and docs/LAUNCH.md)."""
    parser = argparse.ArgumentParser(
        prog="python scripts/launch.py",
        description="Run one protocol of scripts/sweep.sh for several methods over datasets x seeds, "
                    "locally (one job per GPU or N CPU jobs) or on SLURM through submitit.")
    parser.add_argument("protocol", help="base2new, openworld, xd, dg or fewshot (as scripts/sweep.sh)")
    parser.add_argument("--methods", nargs="+", required=True, help="methods of scripts/sweep.sh, e.g. coop maple promptsrc-bmip")
    parser.add_argument("--datasets", nargs="+", help="DATASETS (default: sweep.sh's for the protocol)")
    parser.add_argument("--seeds", nargs="+", help="SEEDS (default 1 2 3)")
    parser.add_argument("--shots-list", nargs="+", help="SHOTS_LIST, fewshot only (default 1 2 4 8 16)")
    settings = parser.add_argument_group("run settings (default: the environment variable of the same name)")
    examples = {"EXTRA_OPTS": "e.g. --extra-opts '--device cpu OPTIM.MAX_EPOCH 1'"}
    for name in RUN_VARIABLES:
        settings.add_argument("--" + name.lower().replace("_", "-"), dest=name, metavar=name,
                              help=examples.get(name))
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="local: a queue on this machine (default); slurm: SLURM through submitit; "
                             "submitit-local: submitit's local executor (what the tests use)")
    parser.add_argument("--dry-run", action="store_true", help="print the jobs and their runs, run nothing")
    parser.add_argument("--launch-dir", help="folder for logs and outcomes (default OUTPUT/launch/<timestamp>)")
    local = parser.add_argument_group("local executor")
    local.add_argument("--jobs", type=int, help="parallel jobs (default: visible GPUs x --jobs-per-gpu, else 1)")
    parser.add_argument("--jobs-per-gpu", type=int, default=1, metavar="N",
                        help="small jobs (mini CLIP, linear probe) sharing one GPU: N local workers per GPU, "
                             "or N launcher jobs in one SLURM job (default 1)")
    slurm = parser.add_argument_group("slurm / submitit-local executors (only the settings given are passed on)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", type=int, metavar="MINUTES", help="time limit per job (required for slurm)")
    slurm.add_argument("--gpus-per-job", type=int)
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--mem-gb", type=float)
    slurm.add_argument("--account")
    slurm.add_argument("--qos")
    slurm.add_argument("--array-parallelism", type=int, metavar="N", help="at most N jobs of the array at once")
    slurm.add_argument("--wait", action="store_true", help="wait for the jobs and print a summary")
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.jobs_per_gpu < 1:
        parser.error("--jobs-per-gpu must be at least 1")
    return args


def launch_environment(args, environ):
    """The environment for sweep.sh's plan and the jobs: ENVIRON with the flags applied and DATA and
    OUTPUT made absolute against the current directory (as sweep.sh does)."""
    env = dict(environ)
    for name in RUN_VARIABLES:
        if getattr(args, name) is not None:
            env[name] = getattr(args, name)
    for name, values in (("DATASETS", args.datasets), ("SEEDS", args.seeds), ("SHOTS_LIST", args.shots_list)):
        if values is not None:
            env[name] = " ".join(values)
    if not env.get("DATA"):
        raise LaunchError("DATA is not set: pass --data DIR or export DATA=/path/to/datasets")
    for name in ("DATA", "OUTPUT"):
        if env.get(name):
            env[name] = os.path.abspath(env[name])
    return env


def make_launch_dir(args, output_root):
    """Create the launch folder: --launch-dir, or OUTPUT_ROOT/launch/<timestamp>[-N] (a new one
    per launch, so a relaunch never mixes its logs with the previous ones)."""
    if args.launch_dir:
        path = Path(args.launch_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path
    base = Path(output_root) / "launch" / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, suffix = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            suffix += 1
            path = base.with_name(f"{base.name}-{suffix}")


def main(argv=None):
    """Plan, then run or submit; return the exit code."""
    args = parse_args(argv)
    try:
        env = launch_environment(args, os.environ)
        if args.executor == "slurm" and args.time is None and not args.dry_run:
            raise LaunchError("--executor slurm needs --time MINUTES (submitit's default limit is 5 minutes)")
        jobs = plan_jobs(args.protocol, args.methods, env)
        output_root = env.get("OUTPUT") or str(SCRIPTS_DIR.parent / "output")
        if args.executor == "local":
            gpus = visible_gpus(env)
            workers = args.jobs or max(len(gpus) * args.jobs_per_gpu, 1)
            note = f"local, {workers} worker{'s' if workers > 1 else ''}"
            if gpus:
                note += f" on GPUs {','.join(gpus[:workers])}"  # the slots launch_local hands out
        else:
            note = args.executor
        if args.dry_run:
            print_plan(jobs, args.protocol, args.methods, note)
            return 0
        if not jobs:
            print("Nothing to run.")
            return 0
        # Both checks before the launch folder exists, so a refused launch leaves nothing behind.
        if args.executor != "local":
            import_submitit(args.executor)
        if args.executor == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise LaunchError("--executor slurm needs SLURM's sbatch and srun on PATH: run it on a login "
                              "node, or use --executor local")
        launch_dir = make_launch_dir(args, output_root)
        for job in jobs:
            job.log = str(launch_dir / f"{job.name}.log")
        print(f"{args.protocol} for {' '.join(args.methods)}: {len(jobs)} jobs ({note}); logs in {launch_dir}",
              flush=True)
        if args.executor == "local":
            outcomes = launch_local(jobs, workers, gpus)
        else:
            outcomes = launch_submitit(jobs, args, launch_dir)
            if outcomes is None:
                return 0
    except LaunchError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return summarise(outcomes, args.protocol, output_root, launch_dir, methods=args.methods)


if __name__ == "__main__":
    sys.exit(main())
