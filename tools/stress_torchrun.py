"""Stress check of torchrun runs: repeat the 2-process CPU launches of the tests many times.

Every launch is ``python -m torch.distributed.run --standalone --nproc_per_node=N train.py ...``
with the arguments of ``tests/test_distributed.py`` (tiny random CLIP, generated EuroSAT, gloo).
One *run* is, by ``--mode``:

* ``suite`` (default): the six launches of that test file's ``launches`` fixture, with its
  timing and CPU load: a one-process CoOp run, CoOp and BMIP on 1 and 2 processes and the
  batch-size error launch, started together, and the 2-process resume from the one-process
  run's epoch-1 checkpoint once that run has finished;
* ``resume``: only that resumed 2-process launch (from one checkpoint made at the start);
* ``fresh``: one 2-process CoOp launch from scratch.

A launch passes when torchrun exits 0 and ``results.json`` is complete (a resumed launch must
also have resumed). The batch-size launch passes when it fails with the divisibility error. For
every failure the script prints each rank's exit code and the stderr of the rank(s) that
failed. This finds rare failures at process exit, such as a rank dying with "terminate called
without an active exception" (SIGABRT) after ``results.json`` was written. It is not part of
the test suite; see "Stress check of torchrun runs" in docs/DEVELOPING.md.

    python tools/stress_torchrun.py --runs 30
    python tools/stress_torchrun.py --runs 50 --mode resume --parallel 3
"""
import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (str(REPO), str(REPO / "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

DIVISIBILITY_ERROR = "error: DATALOADER.TRAIN_X.BATCH_SIZE=5 is not divisible by the world size 2"


def prepare(workdir):
    """The tiny CLIP, the generated EuroSAT (BMIP) and its copy with unreadable images (CoOp),
    as the test's fixtures make them."""
    from tests.helpers.fake_datasets import make_eurosat
    from tests.helpers.tiny_clip import save_tiny_clip
    from tests.test_distributed import damaged_images

    clip_path = str(save_tiny_clip(str(workdir / "tiny_vit.pt"), kind="vit", seed=0))
    for name in ("data", "data_damaged"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    make_eurosat(str(workdir / "data"), with_split=True)
    shutil.copytree(workdir / "data", workdir / "data_damaged")
    for rel in damaged_images(str(workdir / "data_damaged")):
        Path(workdir, "data_damaged", "eurosat", "2750", rel).write_bytes(b"not a jpeg")
    return clip_path


def train_args(workdir, clip_path, out, trainer, extra=()):
    """The test's command line (its own helpers, so that the two cannot drift apart)."""
    from tests.test_distributed import BMIP_OPTS, COOP_OPTS, base_args

    root, opts = ((workdir / "data_damaged", COOP_OPTS) if trainer == "CoOp" else (workdir / "data", BMIP_OPTS))
    return [str(a) for a in base_args(str(root), clip_path, str(out), trainer) + opts + list(extra)]


class Launch:
    """One torchrun launch, output in ``out``.stdout/.stderr and each rank's stderr under
    ``out``/torchrun_logs (torchrun ``--log-dir`` with ``--tee 3``)."""

    def __init__(self, entry, nproc, args, out, expect="ok"):
        self.out, self.nproc, self.expect = Path(out), nproc, expect
        self.out.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.pop("PROMPTCLIP_DEBUG", None)
        # An --entry outside the repository still imports the project.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "--log-dir", str(self.out) + ".torchrun_logs", "--tee", "3", str(entry), *args]
        self.start = time.time()
        with open(f"{self.out}.stdout", "w") as stdout, open(f"{self.out}.stderr", "w") as stderr:
            self.proc = subprocess.Popen(cmd, cwd=str(REPO), env=env, stdout=stdout, stderr=stderr,
                                         start_new_session=True)

    def wait(self, deadline):
        try:
            self.proc.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the agent and its workers
            self.proc.wait()
        self.seconds = time.time() - self.start
        self.stdout = Path(f"{self.out}.stdout").read_text(errors="replace")
        self.stderr = Path(f"{self.out}.stderr").read_text(errors="replace")
        return self

    def problem(self):
        """Why the launch did not do what it should, or None."""
        code = self.proc.returncode
        if self.expect == "divisibility error":
            if code == 0 or DIVISIBILITY_ERROR not in self.stderr:
                return f"expected the batch-size error, got exit {code}"
            return None
        if code != 0:
            return f"torchrun exited with {code}"
        results = self.out / "results.json"
        if not results.is_file() or not json.loads(results.read_text()).get("complete"):
            return "exit 0 but no complete results.json"
        if self.expect == "resumed" and "will resume training" not in self.stdout:
            return "the run did not resume from the epoch-1 checkpoint"
        return None

    def report(self, tail=40):
        lines = [f"{self.out.name} ({self.nproc} process(es)): {self.problem()}"]
        ranks = failed_ranks(self.stderr)
        lines += [f"  rank {rank}: exit code {code}" for rank, code in sorted(ranks.items())]
        # The ranks that failed by themselves, not those torchrun then stopped (SIGTERM).
        culprits = [r for r, code in sorted(ranks.items()) if "SIGTERM" not in code] or sorted(ranks)
        for rank in culprits:
            files = sorted(Path(f"{self.out}.torchrun_logs").glob(f"*/attempt_*/{rank}/stderr.log"))
            text = files[-1].read_text(errors="replace").splitlines() if files else []
            lines.append(f"--- stderr of rank {rank} (last {tail} lines):")
            lines.extend(text[-tail:] if text else ["(empty)"])
        lines.append("--- torchrun stderr (last 15 lines):")
        lines.extend(self.stderr.splitlines()[-15:])
        return "\n".join(lines)


def failed_ranks(torchrun_stderr):
    """{rank: exit code text} from torchrun's failure summary ("rank : N (local_rank: M)" followed
    by "exitcode : -6 (pid: ...)  (SIGABRT)")."""
    found = re.findall(r"^\s*rank\s*:\s*(\d+).*?\n\s*exitcode\s*:\s*(.+)$", torchrun_stderr, flags=re.MULTILINE)
    return {int(rank): re.sub(r"\(pid: \d+\)\s*", "", code).strip() for rank, code in found}


def resume_copy(one_process_out, out):
    """The state after epoch 1 of the one-process run, to resume with two processes."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(one_process_out, out)
    for rel in ("results.json", "prompt_learner/model.pth.tar-2"):
        os.remove(Path(out) / rel)


def one_run(mode, entry, workdir, clip_path, folder, timeout, seed_out=None):
    """The launches of one run (see the module docstring), all finished."""
    deadline = time.time() + timeout
    if mode == "fresh":
        return [Launch(entry, 2, train_args(workdir, clip_path, folder / "coop2", "CoOp"), folder / "coop2")
                .wait(deadline)]
    if mode == "resume":
        resume_copy(seed_out, folder / "resumed")
        return [Launch(entry, 2, train_args(workdir, clip_path, folder / "resumed", "CoOp"), folder / "resumed",
                       expect="resumed").wait(deadline)]
    # As tests/test_distributed.py's ``launches`` fixture.
    runs = {name: Launch(entry, nproc, train_args(workdir, clip_path, folder / name, trainer, extra),
                         folder / name, expect)
            for name, nproc, trainer, extra, expect in (
                ("coop1", 1, "CoOp", (), "ok"), ("coop2", 2, "CoOp", (), "ok"), ("bmip1", 1, "BMIP", (), "ok"),
                ("bmip2", 2, "BMIP", (), "ok"),
                ("bad_batch", 2, "CoOp", ("DATALOADER.TRAIN_X.BATCH_SIZE", "5"), "divisibility error"))}
    done = [runs.pop("coop1").wait(deadline)]
    if done[0].problem() is None:
        resume_copy(done[0].out, folder / "resumed")
        runs["resumed"] = Launch(entry, 2, train_args(workdir, clip_path, folder / "resumed", "CoOp"),
                                 folder / "resumed", expect="resumed")
    return done + [launch.wait(deadline) for launch in runs.values()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="number of runs (default 30)")
    parser.add_argument("--mode", choices=("suite", "resume", "fresh"), default="suite",
                        help="suite: the test file's six concurrent launches (default); resume: the 2-process "
                             "resume alone; fresh: a 2-process run from scratch")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1; more adds CPU load)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run before it is killed")
    parser.add_argument("--workdir", help="keep data and runs here (default: a temporary folder, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the output of passed runs too")
    parser.add_argument("--entry", default=str(REPO / "train.py"),
                        help="the script torchrun starts (default: the repository's train.py)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stress-torchrun-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    print(f"Preparing the tiny CLIP and EuroSAT in {workdir}", flush=True)
    clip_path = prepare(workdir)
    seed_out = None
    if args.mode == "resume":
        shutil.rmtree(workdir / "one_process", ignore_errors=True)
        seed = Launch(args.entry, 1, train_args(workdir, clip_path, workdir / "one_process", "CoOp"),
                      workdir / "one_process").wait(time.time() + args.timeout)
        if seed.problem():
            print(f"The one-process run that makes the checkpoint failed:\n{seed.report()}")
            return 2
        seed_out = seed.out

    def run(index):
        folder = workdir / f"run{index:03d}"
        shutil.rmtree(folder, ignore_errors=True)  # a run left in a reused --workdir would be resumed
        launches = one_run(args.mode, args.entry, workdir, clip_path, folder, args.timeout, seed_out)
        failed = [launch for launch in launches if launch.problem()]
        if not failed and not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        return index, launches, [launch.report() for launch in failed]

    failures, n_launches, n_failed = [], 0, 0
    loop_start = time.time()
    with concurrent.futures.ThreadPoolExecutor(max(1, args.parallel)) as pool:
        for index, launches, reports in pool.map(run, range(1, args.runs + 1)):
            n_launches += len(launches)
            n_failed += len(reports)
            seconds = max(launch.seconds for launch in launches)
            print(f"run {index}/{args.runs}: {'FAILED' if reports else 'ok'} ({len(launches)} launch(es), "
                  f"{seconds:.1f} s)", flush=True)
            for text in reports:
                print(f"FAILED launch in run {index}: {text}", flush=True)
            failures += reports
    loop = time.time() - loop_start
    print(f"\n{n_failed} failed of {n_launches} launches in {args.runs} runs (mode {args.mode}, {args.parallel} "
          f"run(s) at a time, entry {args.entry}) in {loop:.0f} s ({loop / max(1, args.runs):.1f} s per run; "
          f"{time.time() - started:.0f} s with the preparation)")
    if args.workdir is None and not failures and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif failures:
        print(f"The failed runs are kept in {workdir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
