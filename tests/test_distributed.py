"""Data-parallel training under torchrun (DistributedDataParallel, gloo on the CPU).

* Samplers: the union over ranks of global batch k is the one-process batch k; the order
  depends on (seed, epoch) only.
* Collectives in two spawned processes: gather in dataset order, the evaluator's gather,
  the non-finite agreement and the loss scaling of an uneven split (slow).
* train.py under ``python -m torch.distributed.run`` with 1 and 2 processes on the tiny CLIP
  and the generated EuroSAT, deterministic transforms, the same global batch: the same
  results.json metrics and allclose checkpoints (CoOp; BMIP with batch_mean weights and a last partial batch
  split 3 + 2), one log written by rank 0, resume under torchrun from a one-process
  checkpoint, unreadable images skipped and counted over both processes, and the batch-size
  divisibility error (slow). The five launches run
  concurrently to keep the file short on a small machine.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from conftest import REPO, train_server_env
from dassl.data.samplers import DistributedBatchSampler, ShardedSampler, build_sampler
from dassl.utils import distributed as dist_utils

SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")
RUN_TIMEOUT = 300


# ----------------------------------------------------------------------------- samplers
def rank_batches(n, batch_size, world, drop_last, seed=3, epoch=0, sampler_cls=RandomSampler):
    """Per rank, the list of batches one epoch of DistributedBatchSampler yields."""
    out = []
    for rank in range(world):
        sampler = DistributedBatchSampler(sampler_cls(range(n)), batch_size, drop_last, seed, rank=rank,
                                          world_size=world)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
        assert len(sampler) == len(out[-1])
    return out


@pytest.mark.parametrize("n,batch_size,drop_last,world", [
    (40, 4, True, 2), (23, 6, True, 2), (23, 6, True, 3), (5, 6, False, 2), (5, 6, False, 3), (7, 9, False, 3),
], ids=["even", "drop-last", "drop-last-3", "partial-3+2", "partial-2+2+1", "partial-3+2+2"])
def test_union_of_rank_slices_is_the_one_process_batch(n, batch_size, drop_last, world):
    single = rank_batches(n, batch_size, 1, drop_last)[0]
    ranks = rank_batches(n, batch_size, world, drop_last)
    assert all(len(batches) == len(single) for batches in ranks)  # same number of steps on every rank
    for k, global_batch in enumerate(single):
        assert sum((r[k] for r in ranks), []) == global_batch
        sizes = [len(r[k]) for r in ranks]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    # Dassl's rule: drop the last incomplete batch only when the data holds a full one.
    expected = n // batch_size if drop_last else -(-n // batch_size)
    assert len(single) == expected and all(len(b) == batch_size for b in single[:n // batch_size])
    assert sorted(i for b in single for i in b) == sorted(set(i for b in single for i in b))


def test_order_depends_on_seed_and_epoch_only():
    state = torch.get_rng_state()
    a = rank_batches(20, 4, 2, True, seed=1, epoch=0)
    assert a == rank_batches(20, 4, 2, True, seed=1, epoch=0)
    assert a != rank_batches(20, 4, 2, True, seed=1, epoch=1)
    assert a != rank_batches(20, 4, 2, True, seed=2, epoch=0)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never touched
    # A sampler that ran epochs 0..2 and a fresh one set to epoch 2 (a resumed run) agree.
    running = DistributedBatchSampler(RandomSampler(range(20)), 4, True, seed=1, rank=1, world_size=2)
    for epoch in range(3):
        running.set_epoch(epoch)
        last = list(running)
    assert last == rank_batches(20, 4, 2, True, seed=1, epoch=2)[1]


def test_grouped_samplers_and_sequential_order_are_cut_the_same_way():
    class Item:
        def __init__(self, domain, label):
            self.domain, self.label = domain, label

    data = [Item(i % 2, i % 4) for i in range(24)]
    seq = rank_batches(10, 4, 2, True, sampler_cls=SequentialSampler)
    assert seq == [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]
    for rank_lists in (
        [list(DistributedBatchSampler(build_sampler("RandomDomainSampler", data_source=data, batch_size=4, n_domain=2),
                                      4, True, seed=0, rank=r, world_size=2)) for r in range(2)],
        [list(DistributedBatchSampler(build_sampler("RandomClassSampler", data_source=data, batch_size=4, n_ins=2),
                                      4, True, seed=0, rank=r, world_size=2)) for r in range(2)],
    ):
        assert len(rank_lists[0]) == len(rank_lists[1]) > 0
        assert all(len(b) == 2 for b in rank_lists[0] + rank_lists[1])


def test_sampler_errors():
    with pytest.raises(ValueError, match="global batch size 5 is not divisible by the world size 2"):
        DistributedBatchSampler(RandomSampler(range(10)), 5, True, seed=0, rank=0, world_size=2)
    with pytest.raises(ValueError, match="cannot be split over 4 processes"):
        DistributedBatchSampler(RandomSampler(range(3)), 4, False, seed=0, rank=0, world_size=4)
    with pytest.raises(ValueError, match="non-negative seed"):
        DistributedBatchSampler(RandomSampler(range(10)), 4, True, seed=-1, rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank < world_size"):
        ShardedSampler(SequentialSampler(range(4)), rank=2, world_size=2)


@pytest.mark.parametrize("n,world,block", [(11, 2, 1), (30, 3, 1), (2, 4, 1), (30, 2, 8), (11, 3, 4), (5, 4, 4)])
def test_sharded_sampler_partitions_without_padding(n, world, block):
    shards = [list(ShardedSampler(SequentialSampler(range(n)), block_size=block, rank=r, world_size=world))
              for r in range(world)]
    assert sorted(sum(shards, [])) == list(range(n))
    assert [len(s) for s in shards] == [len(ShardedSampler(range(n), block, rank=r, world_size=world))
                                        for r in range(world)]
    if block == 1:
        assert shards == [list(range(n))[r::world] for r in range(world)]
    # Batching a shard with batch size = block gives exactly single-process batches.
    single = [list(range(n))[i:i + block] for i in range(0, n, block)]
    per_rank = [[s[i:i + block] for i in range(0, len(s), block)] for s in shards]
    assert sorted(sum(per_rank, [])) == sorted(single)


def test_single_process_defaults_and_torchrun_detection():
    assert not dist_utils.is_distributed()
    assert (dist_utils.rank(), dist_utils.world_size(), dist_utils.is_main_process()) == (0, 1, True)
    x = torch.arange(3)
    assert torch.equal(dist_utils.all_reduce(x), x) and dist_utils.all_gather_variable(x)[0] is x
    assert dist_utils.broadcast_int(7) == 7 and dist_utils.shared_seed(5) == 5
    assert dist_utils.global_batch_loss_scale(3, 3) == 1.0
    assert dist_utils.launched_by_torchrun({"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0"})
    assert not dist_utils.launched_by_torchrun({"WORLD_SIZE": "1", "RANK": "0"})


# ------------------------------------------------------------------ collectives (2 processes)
@pytest.fixture(scope="module")
def collective_results(tmp_path_factory):
    """Run tests/helpers/distributed_worker.py in two spawned gloo processes."""
    import torch.multiprocessing as mp

    from tests.helpers import distributed_worker

    workdir = str(tmp_path_factory.mktemp("collectives"))
    context = mp.start_processes(distributed_worker.run, args=(2, workdir), nprocs=2, join=False,
                                 start_method="spawn")
    deadline = time.time() + 120
    while not context.join(timeout=1):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two gloo workers did not finish within 120 s")
    results = [torch.load(os.path.join(workdir, f"rank{r}.pt"), weights_only=False) for r in range(2)]
    for r in results:
        assert "error" not in r, r.get("error")
    return results


@pytest.mark.slow
def test_gather_returns_dataset_order_on_every_rank(collective_results):
    for r in collective_results:
        index, times_100, payload = r["gathered"]
        assert index.tolist() == list(range(11))
        assert torch.equal(times_100, index * 100)
        assert torch.equal(payload, torch.stack([index * 10, -index], dim=1))
        assert [t.tolist() for t in r["variable"]] == [[], [3, 4, 5]]
        assert r["broadcast"] == 41
    assert [(r["rank"], r["world"], r["main"]) for r in collective_results] == [(0, 2, True), (1, 2, False)]


@pytest.mark.slow
def test_evaluator_gather_equals_one_process_evaluation(collective_results):
    from dassl.evaluation import build_evaluator
    from tests.helpers.distributed_worker import classification_cfg, dataset_logits_and_labels

    logits, labels = dataset_logits_and_labels()
    single = build_evaluator(classification_cfg())
    single.process(logits, labels)
    expected = dict(single.evaluate())
    for r in collective_results:
        assert r["metrics"] == expected
        assert torch.equal(r["y_true"], labels) and torch.equal(r["y_pred"], logits.argmax(1))


@pytest.mark.slow
def test_non_finite_loss_on_one_rank_is_seen_by_all(collective_results):
    assert all(r["reduced_loss_sum"] != r["reduced_loss_sum"] for r in collective_results)  # NaN everywhere


@pytest.mark.slow
def test_uneven_split_gradient_equals_global_batch_gradient(collective_results):
    assert [r["scale"] for r in collective_results] == [1.2, 0.8]  # n_r * W / N for 3 + 2 images
    for r in collective_results:
        torch.testing.assert_close(r["averaged_grad"], r["reference_grad"], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ torchrun end to end
def base_args(root, clip_path, out, trainer):
    return ["--root", root, "--seed", 1, "--trainer", trainer, "--dataset-config-file", EUROSAT_CFG,
            "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", clip_path, "--device", "cpu",
            # Deterministic pixels (resize + normalise): 1 and 2 processes see identical batches.
            "INPUT.TRANSFORMS", '["normalize"]']


# 30 test images in batches of 8: rank 0 evaluates batches 1 and 3, rank 1 batches 2 and 4.
# Two test images (one in batch 1, one in batch 2) and the training images of the first class are
# unreadable and skipped.
COOP_OPTS = ["DATASET.NUM_SHOTS", 4, "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32",
             "DATALOADER.TRAIN_X.BATCH_SIZE", 4, "TRAIN.CHECKPOINT_FREQ", 1, "TEST.OPENWORLD_METRICS", True,
             "DATALOADER.TEST.BATCH_SIZE", 8, "DATALOADER.SKIP_BAD_IMAGES", True]


def damaged_images(root):
    """Image paths (relative to the EuroSAT image folder) the CoOp runs find unreadable."""
    split = json.loads(Path(root, "eurosat", "split_zhou_EuroSAT.json").read_text())
    first_class = split["train"][0][1]
    return [rel for rel, label, _ in split["train"] if label == first_class] + [split["test"][0][0], split["test"][9][0]]
# 5 training images (base classes, 1 shot) < global batch 6: one partial batch, split 3 + 2.
# Its 15 test images fit one evaluation batch of 50: rank 1's shard is empty. BMIP's official
# batch_mean weights average attention over the whole global batch (an all-reduce under torchrun).
BMIP_OPTS = ["DATASET.NUM_SHOTS", 1, "DATASET.SUBSAMPLE_CLASSES", "base", "TRAINER.BMIP.N_CTX", 2,
             "TRAINER.BMIP.PROMPT_DEPTH", 3, "TRAINER.BMIP.PREC", "fp32", "TRAINER.BMIP.VISION_WEIGHT", "batch_mean",
             "DATALOADER.TRAIN_X.BATCH_SIZE", 6, "TEST.FINAL_MODEL", "best_val"]


class Launch:
    """One ``python -m torch.distributed.run --standalone`` run with its output in files."""

    def __init__(self, workdir, name, nproc, args, fresh_interpreters=False):
        """``fresh_interpreters``: each rank a new ``python train.py`` (the real start and exit
        path); otherwise the ranks are forked by the tests' train server (torchrun --no-python
        runs its client), which saves each rank the ~3.5 s start-up."""
        self.name, self.out = name, str(Path(workdir) / name)
        self.stdout_path, self.stderr_path = Path(workdir) / f"{name}.stdout", Path(workdir) / f"{name}.stderr"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        env.pop("PROMPTCLIP_DEBUG", None)
        entry = []
        if not fresh_interpreters:
            env.update(train_server_env())
            entry = ["--no-python", env["PYTHON"]]
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                 *entry, str(REPO / "train.py"), *map(str, args)],
                cwd=str(REPO), env=env, stdout=stdout, stderr=stderr, start_new_session=True,
            )

    def wait(self, deadline):
        """Wait for the launch; kill its process group (agent and workers) at the deadline."""
        try:
            self.proc.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.returncode = self.proc.returncode
        self.stdout, self.stderr = self.stdout_path.read_text(), self.stderr_path.read_text()
        return self

    def ok(self):
        assert self.returncode == 0, (f"{self.name}: exit {self.returncode}\nSTDOUT:\n{self.stdout[-3000:]}"
                                      f"\nSTDERR:\n{self.stderr[-3000:]}")
        return self


@pytest.fixture(scope="module")
def launches(tmp_path_factory, eurosat_root, tiny_clip_path):
    """All torchrun runs of this file, started together; the resumed run starts once the
    one-process CoOp run has left its epoch-1 checkpoint."""
    workdir = tmp_path_factory.mktemp("torchrun")
    # The CoOp runs read a copy with unreadable images (DATALOADER.SKIP_BAD_IMAGES in COOP_OPTS).
    damaged_root = str(workdir / "data")
    shutil.copytree(eurosat_root, damaged_root)
    for rel in damaged_images(damaged_root):
        Path(damaged_root, "eurosat", "2750", rel).write_bytes(b"not a jpeg")
    coop = lambda name: base_args(damaged_root, tiny_clip_path, str(workdir / name), "CoOp")  # noqa: E731
    bmip = lambda name: base_args(eurosat_root, tiny_clip_path, str(workdir / name), "BMIP")  # noqa: E731
    deadline = time.time() + RUN_TIMEOUT
    runs = {"coop1": Launch(workdir, "coop1", 1, coop("coop1") + COOP_OPTS)}
    runs["coop2"] = Launch(workdir, "coop2", 2, coop("coop2") + COOP_OPTS)
    runs["bmip1"] = Launch(workdir, "bmip1", 1, bmip("bmip1") + BMIP_OPTS)
    runs["bmip2"] = Launch(workdir, "bmip2", 2, bmip("bmip2") + BMIP_OPTS)
    runs["bad_batch"] = Launch(workdir, "bad_batch", 2, coop("bad_batch") + COOP_OPTS
                               + ["DATALOADER.TRAIN_X.BATCH_SIZE", 5])
    done = {"coop1": runs["coop1"].wait(deadline)}
    if done["coop1"].returncode == 0:
        # The state after epoch 1 of the one-process run, resumed with two processes.
        resumed = workdir / "resumed"
        shutil.copytree(done["coop1"].out, resumed)
        for rel in ("results.json", "prompt_learner/model.pth.tar-2"):
            os.remove(resumed / rel)
        # real interpreters here: the start-up and exit path of a torchrun rank (exit_process)
        runs["resumed"] = Launch(workdir, "resumed", 2, coop("resumed") + COOP_OPTS, fresh_interpreters=True)
    for name, launch in runs.items():
        done.setdefault(name, launch.wait(deadline))
    return done


def results(launch):
    with open(os.path.join(launch.out, "results.json")) as f:
        return json.load(f)


def checkpoint_tensors(out):
    """{(folder, file, key): tensor} of every saved weight file under ``out``."""
    found = {}
    for path in sorted(Path(out).glob("*/model*.pth.tar*")):
        state = torch.load(path, weights_only=True)["state_dict"]
        found.update({(path.parent.name, path.name, k): v for k, v in state.items()})
    return found


def assert_same_training(one, two):
    r1, r2 = results(one.ok()), results(two.ok())
    assert (r1["world_size"], r2["world_size"]) == (1, 2)
    assert r1["metrics"] == r2["metrics"]  # accuracy, error, macro-F1, counts (and base/new/HM)
    assert r1["epoch"] == r2["epoch"] and r1["metrics"]["total"] > 0
    w1, w2 = checkpoint_tensors(one.out), checkpoint_tensors(two.out)
    assert w1 and w1.keys() == w2.keys()
    assert not any(key.startswith("module.") for _, _, key in w1)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=0, atol=1e-5, msg=str(key))


@pytest.mark.slow
def test_coop_one_and_two_processes_train_the_same(launches):
    assert_same_training(launches["coop1"], launches["coop2"])
    metrics = results(launches["coop2"])["metrics"]
    assert {"base_accuracy", "new_accuracy", "hm"} <= set(metrics)


@pytest.mark.slow
def test_skipped_images_are_counted_over_all_processes(launches):
    """Each process reads its share of the unreadable images; the log counts all of them, and the
    metrics leave the unreadable test images out (28 of 30), as in one process."""
    def skip_lines(launch):
        return [line for line in launch.stdout.splitlines() if "DATALOADER.SKIP_BAD_IMAGES: skipped" in line]

    one, two = skip_lines(launches["coop1"].ok()), skip_lines(launches["coop2"].ok())
    assert one == two
    assert "DATALOADER.SKIP_BAD_IMAGES: skipped 2 unreadable image(s) while evaluating on test; " \
           "the metrics leave them out" in two
    assert any(" in epoch " in line for line in two)
    assert results(launches["coop2"])["metrics"]["total"] == 28


@pytest.mark.slow
def test_bmip_batch_mean_with_a_partial_batch_split_unevenly_trains_the_same(launches):
    assert_same_training(launches["bmip1"], launches["bmip2"])
    assert "Deploy the model with the best val performance" in launches["bmip2"].stdout


def log_lines(launch):
    # Mask numbers (timings, paths with run names); the few-shot cache lines depend on which
    # concurrent run sampled the selection first.
    text = Path(launch.out, "log.txt").read_text()
    return Counter(
        "".join("N" if ch.isdigit() else ch for ch in line) for line in text.splitlines()
        if "few-shot selection" not in line and not line.startswith("Sampling ")
        # each process warns about the unreadable images it meets; only rank 0's lines are logged
        and not line.startswith("Warning: cannot read image")
    )


@pytest.mark.slow
def test_rank_zero_alone_writes_the_log(launches):
    for one, two in (("coop1", "coop2"), ("bmip1", "bmip2")):
        assert log_lines(launches[one]) == log_lines(launches[two])
        files = sorted(os.listdir(launches[two].out))
        assert [f for f in files if f.startswith("log.txt")] == ["log.txt"]
        assert launches[two].stdout.count("Setting fixed seed: 1") == 1
        assert launches[two].stdout.count("Loading CLIP") == 1
    epoch_lines = [line for line in launches["coop2"].stdout.splitlines() if line.startswith("epoch [")]
    assert epoch_lines and len(epoch_lines) == len(set(epoch_lines))


@pytest.mark.slow
def test_resume_under_torchrun_from_a_one_process_checkpoint(launches):
    resumed = launches["resumed"].ok()
    assert "will resume training" in resumed.stdout
    assert "epoch [1/2]" not in resumed.stdout.split("will resume training")[1]
    assert results(resumed)["metrics"] == results(launches["coop2"])["metrics"]
    ours, uninterrupted = checkpoint_tensors(resumed.out), checkpoint_tensors(launches["coop2"].out)
    key = ("prompt_learner", "model.pth.tar-2", "ctx")
    torch.testing.assert_close(ours[key], uninterrupted[key], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_global_batch_not_divisible_by_world_size(launches):
    bad = launches["bad_batch"]
    assert bad.returncode != 0
    assert "error: DATALOADER.TRAIN_X.BATCH_SIZE=5 is not divisible by the world size 2" in bad.stderr
    assert not os.path.exists(os.path.join(bad.out, "results.json"))


# ------------------------------------------------------------------------------- process exit
def test_exit_process_without_a_process_group_is_sys_exit():
    assert not dist_utils._joined_process_group
    for code in (0, 3, None):
        with pytest.raises(SystemExit) as exit_:
            dist_utils.exit_process(code)
        assert exit_.value.code == code
    dist_utils.destroy_distributed(wait_for_peers=True)  # no process group: nothing to do


EXIT_AFTER_A_PROCESS_GROUP = """
import atexit, sys
import torch
from dassl.utils import distributed as dist_utils
dist_utils.init_distributed("cpu")
assert dist_utils.all_reduce(torch.ones(2)).tolist() == [1.0, 1.0]
atexit.register(print, "interpreter teardown")  # runs only if the interpreter is torn down
dist_utils.destroy_distributed(wait_for_peers=True)
assert not dist_utils.is_distributed()
sys.stdout.write("finished")  # still in the buffer: stdout is a pipe
dist_utils.exit_process(3)
"""


@pytest.mark.slow
def test_exit_process_after_a_process_group_flushes_and_skips_the_teardown():
    """A torchrun worker leaves without the interpreter's teardown, which races gloo's worker
    threads ("terminate called without an active exception"; tools/stress_torchrun.py)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
               LOCAL_RANK="0", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", EXIT_AFTER_A_PROCESS_GROUP], cwd=str(REPO), env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert (proc.returncode, proc.stdout) == (3, "finished"), proc.stderr


def test_stress_check_names_the_failing_rank():
    """tools/stress_torchrun.py reads the ranks and exit codes from torchrun's failure summary."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stress_torchrun", REPO / "tools" / "stress_torchrun.py")
    stress = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stress)
    summary = """train.py FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-07_00:56:13
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 7216)  (SIGTERM)
  error_file: <N/A>
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-07_00:56:13
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -6 (pid: 7217)  (SIGABRT)
  error_file: <N/A>
"""
    assert stress.failed_ranks(summary) == {0: "-15 (SIGTERM)", 1: "-6 (SIGABRT)"}
    assert stress.failed_ranks("") == {}
