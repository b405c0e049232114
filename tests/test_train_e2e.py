"""train.py end to end on the CPU: CoOp and zero-shot CLIP on a generated
EuroSAT layout with the tiny CLIP; best_val / last_step; resume; eval-only."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_train

pytestmark = pytest.mark.slow

SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")


def coop_args(root, clip_path, out, *extra, seed=1, final_model="last_step", shots=4, flags=()):
    """train.py arguments for CoOp on the generated EuroSAT; ``flags`` go before the opts."""
    return [
        *flags, "--root", root, "--seed", seed, "--trainer", "CoOp",
        "--dataset-config-file", EUROSAT_CFG, "--config-file", SMOKE_CFG,
        "--output-dir", out, "--backbone", clip_path, "--device", "cpu",
        "DATASET.NUM_SHOTS", shots, "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32",
        "TEST.FINAL_MODEL", final_model, *extra,
    ]


def read_results(out):
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def coop_last(tmp_path_factory, eurosat_root, tiny_clip_path):
    out = str(tmp_path_factory.mktemp("runs") / "coop_last")
    ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out, "TRAIN.CHECKPOINT_FREQ", 1)))
    return out


def test_coop_last_step_writes_dassl_outputs(coop_last):
    log = Path(coop_last, "log.txt").read_text()
    for line in ("=> result", "* total:", "* correct:", "* accuracy:", "* error:", "* macro_f1:"):
        assert line in log
    assert "epoch [1/2] batch [" in log and " lr " in log and " eta " in log
    res = read_results(coop_last)
    assert res["complete"] is True and res["trainer"] == "CoOp" and res["split"] == "test"
    m = res["metrics"]
    assert 0.0 <= m["accuracy"] <= 100.0
    assert abs(m["accuracy"] + m["error"] - 100.0) < 1e-6
    assert m["correct"] == round(m["accuracy"] * m["total"] / 100)
    # the accuracy printed in the log is the one in results.json
    printed = [l for l in log.splitlines() if l.startswith("* accuracy:")][-1]
    assert printed == f"* accuracy: {m['accuracy']:.1f}%"
    ckpt_dir = Path(coop_last, "prompt_learner")
    assert (ckpt_dir / "model.pth.tar-1").is_file() and (ckpt_dir / "model.pth.tar-2").is_file()
    ckpt = torch.load(ckpt_dir / "model.pth.tar-2", weights_only=True)
    assert set(ckpt) >= {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    assert ckpt["epoch"] == 2
    # only what training changed: the context vectors, not CLIP, not the class-name buffers
    assert list(ckpt["state_dict"]) == ["ctx"]
    assert tuple(ckpt["state_dict"]["ctx"].shape)[0] == 4


def test_results_record_the_arguments_a_rerun_is_checked_against(coop_last, eurosat_root, tiny_clip_path):
    """results.json keeps the arguments that define the run; scripts/finished_run.py (what the
    sweep scripts ask before skipping) accepts the same run, or one that only moved or changed
    device, and refuses one of other settings with the differences named."""
    args = [str(a) for a in coop_args(eurosat_root, tiny_clip_path, coop_last, "TRAIN.CHECKPOINT_FREQ", 1)]
    recorded = read_results(coop_last)["arguments"]
    assert recorded["trainer"] == "CoOp" and recorded["seed"] == 1 and recorded["backbone"] == tiny_clip_path
    assert recorded["opts"] == {"DATASET.NUM_SHOTS": "4", "TRAINER.COOP.N_CTX": "4", "TRAINER.COOP.PREC": "fp32",
                                "TEST.FINAL_MODEL": "last_step"}  # TRAIN.CHECKPOINT_FREQ is run-only
    assert "root" not in recorded and "device" not in recorded and "output_dir" not in recorded

    def check(argv):
        return subprocess.run([sys.executable, str(REPO / "scripts/finished_run.py"), *argv],
                              capture_output=True, text=True, cwd=REPO)

    same = check(args)
    assert same.returncode == 0 and same.stdout.strip() == f"Results are available in {coop_last}. Skip this job"
    moved = [a if a != eurosat_root else "/elsewhere" for a in args]
    moved[moved.index("--device") + 1] = "cuda"
    assert check(moved).returncode == 0
    other = check(args + ["OPTIM.LR", "0.5"])
    assert other.returncode == 2 and other.stdout == ""
    assert other.stderr.splitlines() == [
        f"error: {coop_last} holds a finished run of other arguments (OPTIM.LR: <unset> -> 0.5); "
        "set another OUTPUT, or move that dir away to rerun"]
    elsewhere = check([a if a != coop_last else coop_last + "-new" for a in args])
    assert elsewhere.returncode == 1


def test_default_checkpoint_freq_keeps_only_last_epoch(tmp_path, eurosat_root, tiny_clip_path):
    out = str(tmp_path / "run")
    ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out)))
    files = sorted(os.listdir(Path(out, "prompt_learner")))
    assert "model.pth.tar-2" in files and "model.pth.tar-1" not in files


def test_eval_only_reproduces_accuracy(tmp_path, coop_last, eurosat_root, tiny_clip_path):
    out = str(tmp_path / "eval")
    proc = ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out, flags=(
        "--eval-only", "--model-dir", coop_last, "--load-epoch", 2))))
    assert read_results(out)["metrics"]["accuracy"] == read_results(coop_last)["metrics"]["accuracy"]
    assert "epoch [" not in proc.stdout  # it never trains


def test_resume_equals_uninterrupted(tmp_path, coop_last, eurosat_root, tiny_clip_path):
    """Stop after epoch 1 (keep only what existed then) and rerun the same command."""
    out = str(tmp_path / "resumed")
    shutil.copytree(coop_last, out)
    for rel in ("results.json", "prompt_learner/model.pth.tar-2"):
        os.remove(os.path.join(out, rel))
    proc = ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out, "TRAIN.CHECKPOINT_FREQ", 1)))
    assert "will resume training" in proc.stdout
    assert "epoch [1/2]" not in proc.stdout.split("will resume training")[1]
    a, b = read_results(coop_last), read_results(out)
    assert a["metrics"] == b["metrics"]
    wa = torch.load(Path(coop_last, "prompt_learner/model.pth.tar-2"), weights_only=True)["state_dict"]["ctx"]
    wb = torch.load(Path(out, "prompt_learner/model.pth.tar-2"), weights_only=True)["state_dict"]["ctx"]
    assert torch.equal(wa, wb)


def test_sigkill_mid_training_then_resume(tmp_path, coop_last, eurosat_root, tiny_clip_path):
    """A real kill during epoch 2; rerunning the command ends with the same numbers."""
    out = str(tmp_path / "killed")
    args = coop_args(eurosat_root, tiny_clip_path, out, "TRAIN.CHECKPOINT_FREQ", 1)
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *map(str, args)], cwd=str(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = ""
    deadline = time.time() + 300
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if line.startswith("epoch [2/2]"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    assert "epoch [2/2]" in seen, seen[-2000:]
    assert not os.path.exists(os.path.join(out, "results.json"))
    ok(run_train(*args))
    assert read_results(out)["metrics"] == read_results(coop_last)["metrics"]


def test_best_val_saves_and_deploys_best(tmp_path, eurosat_root, tiny_clip_path):
    out = str(tmp_path / "best")
    proc = ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out, "OPTIM.MAX_EPOCH", 3,
                                   final_model="best_val")))
    best = Path(out, "prompt_learner", "model-best.pth.tar")
    assert best.is_file()
    assert "Deploy the model with the best val performance" in proc.stdout
    # the val accuracy printed after each epoch; the best is the first maximum
    val_acc = [float(block.split("* accuracy: ")[1].split("%")[0])
               for block in proc.stdout.split("Evaluate on the *val* set")[1:4]]
    assert len(val_acc) == 3
    ckpt = torch.load(best, weights_only=True)
    assert ckpt["epoch"] == val_acc.index(max(val_acc)) + 1
    assert abs(ckpt["val_result"] - max(val_acc)) <= 0.05
    assert read_results(out)["epoch"] == ckpt["epoch"]
    # eval-only on the best model gives the final test accuracy of the run
    out2 = str(tmp_path / "best_eval")
    ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out2, flags=("--eval-only", "--model-dir", out))))
    assert read_results(out2)["metrics"]["accuracy"] == read_results(out)["metrics"]["accuracy"]


def progress_losses(stdout):
    """Loss values of Dassl's progress lines ("... loss 1.2345 (1.3000) ...")."""
    return [float(line.split(" loss ")[1].split()[0]) for line in stdout.splitlines()
            if line.startswith("epoch [") and " loss " in line]


def trained_ctx(tmp_path, root, clip_path, name, *opts):
    out = str(tmp_path / name)
    proc = ok(run_train(*coop_args(root, clip_path, out, "OPTIM.MAX_EPOCH", 1, *opts)))
    ctx = torch.load(Path(out, "prompt_learner/model.pth.tar-1"), weights_only=True)["state_dict"]["ctx"]
    return proc, ctx


@pytest.mark.parametrize("opts", [
    ("TRAINER.COOP.CLASS_TOKEN_POSITION", "middle", "TRAINER.COOP.CSC", True),
    ("TRAINER.COOP.CLASS_TOKEN_POSITION", "front", "TRAINER.COOP.CSC", True),
    ("TRAINER.COOP.PREC", "bf16"),
], ids=["middle-csc", "front-csc", "bf16"])
def test_variants_train_the_context(tmp_path, eurosat_root, tiny_clip_path, opts):
    """Each variant runs, logs finite losses and moves the context away from its
    initial value (a run with LR 0 keeps the initial value, same seed)."""
    proc, ctx = trained_ctx(tmp_path, eurosat_root, tiny_clip_path, "trained", *opts)
    _, ctx0 = trained_ctx(tmp_path, eurosat_root, tiny_clip_path, "frozen", *opts,
                          "OPTIM.LR", 0.0, "OPTIM.WARMUP_CONS_LR", 0.0)
    losses = progress_losses(proc.stdout)
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert ctx.shape == ctx0.shape
    assert not torch.equal(ctx, ctx0)


def test_amp_on_cpu_is_bf16_autocast_and_changes_the_math(tmp_path, eurosat_root, tiny_clip_path):
    """PREC amp on a CPU says so once and trains exactly as PREC bf16 (autocast to bfloat16),
    which differs from fp32: the autocast really is applied to the training step."""
    proc, amp = trained_ctx(tmp_path, eurosat_root, tiny_clip_path, "amp", "TRAINER.COOP.PREC", "amp")
    _, bf16 = trained_ctx(tmp_path, eurosat_root, tiny_clip_path, "bf16", "TRAINER.COOP.PREC", "bf16")
    _, fp32 = trained_ctx(tmp_path, eurosat_root, tiny_clip_path, "fp32", "TRAINER.COOP.PREC", "fp32")
    assert proc.stdout.count("PREC amp on cpu: using bf16 autocast") == 1
    assert torch.equal(amp, bf16)
    assert not torch.allclose(amp, fp32, atol=1e-6)


def test_zeroshot_clip_eval_only(tmp_path, eurosat_root, tiny_clip_path):
    out = str(tmp_path / "zs")
    proc = ok(run_train("--root", eurosat_root, "--seed", 1, "--trainer", "ZeroshotCLIP",
                        "--dataset-config-file", EUROSAT_CFG, "--config-file", SMOKE_CFG,
                        "--output-dir", out, "--backbone", tiny_clip_path, "--eval-only"))
    assert "a centered satellite photo of" in proc.stdout
    res = read_results(out)
    assert res["trainer"] == "ZeroshotCLIP" and res["metrics"]["total"] > 0


def test_fp16_falls_back_on_cpu_with_one_log_line(tmp_path, eurosat_root, tiny_clip_path):
    out = str(tmp_path / "fp16")
    args = coop_args(eurosat_root, tiny_clip_path, out, "OPTIM.MAX_EPOCH", 1)
    args[args.index("TRAINER.COOP.PREC") + 1] = "fp16"
    proc = ok(run_train(*args))
    assert proc.stdout.count("PREC fp16 is not supported on cpu; using fp32") == 1


def test_rerun_sets_previous_results_aside(tmp_path, eurosat_root, tiny_clip_path):
    out = tmp_path / "zs"
    args = ["--root", eurosat_root, "--seed", 1, "--trainer", "ZeroshotCLIP", "--dataset-config-file",
            EUROSAT_CFG, "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", tiny_clip_path,
            "--eval-only"]
    ok(run_train(*args))
    first = (out / "results.json").read_text()
    ok(run_train(*args))
    assert (out / "results.json.prev").read_text() == first
    assert json.loads((out / "results.json").read_text())["complete"] is True


class ReleasedSchedulerStandIn:
    """Pickled into a checkpoint the way the original Dassl pickles its scheduler.
    Unpickling it must never run this code."""

    def __init__(self, marker):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code from a checkpoint ran")


def test_released_coop_checkpoint_evaluates(tmp_path, coop_last, eurosat_root, tiny_clip_path):
    """An official-style CoOp checkpoint (token_prefix/suffix saved, a pickled
    scheduler object) evaluates like ours, and no code from it runs."""
    ours = torch.load(Path(coop_last, "prompt_learner/model.pth.tar-2"), weights_only=True)
    marker = tmp_path / "ran.txt"
    n_cls = read_results(coop_last)["num_classes"]
    released = {
        "state_dict": {"ctx": ours["state_dict"]["ctx"],
                       "token_prefix": torch.zeros(n_cls, 1, 64), "token_suffix": torch.zeros(n_cls, 72, 64)},
        "epoch": 2, "optimizer": None, "val_result": None,
        "scheduler": {"successor": ReleasedSchedulerStandIn(str(marker)), "last_epoch": 2},
    }
    model_dir = tmp_path / "released"
    (model_dir / "prompt_learner").mkdir(parents=True)
    torch.save(released, model_dir / "prompt_learner" / "model.pth.tar-2")
    out = str(tmp_path / "eval")
    # The class is importable in the child, so an unsafe loader would run its code.
    proc = ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out, flags=(
        "--eval-only", "--model-dir", str(model_dir), "--load-epoch", 2)),
        env={"PYTHONPATH": str(Path(__file__).parent)}))
    assert "inert placeholders" in proc.stdout
    assert not marker.exists()
    assert read_results(out)["metrics"]["accuracy"] == read_results(coop_last)["metrics"]["accuracy"]


def test_early_stopping_on_validation(tmp_path, eurosat_root, tiny_clip_path):
    """LR 0: validation never improves after epoch 1, so patience 1 stops after epoch 2."""
    out = tmp_path / "early"
    proc = ok(run_train(*coop_args(eurosat_root, tiny_clip_path, str(out), "OPTIM.MAX_EPOCH", 5,
                                   "OPTIM.LR", 0.0, "OPTIM.WARMUP_CONS_LR", 0.0, "TRAIN.EARLY_STOPPING", True,
                                   "TRAIN.PATIENT_COUNT", 1, "TRAIN.EARLY_STOPPING_MIN_EPOCHS", 2,
                                   final_model="best_val")))
    assert "Early stopping after epoch 2" in proc.stdout
    assert "epoch [3/5]" not in proc.stdout
    assert sorted(os.listdir(out / "prompt_learner")) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2"]
    res = read_results(str(out))
    assert res["epoch"] == 1  # the best (first) epoch was deployed
    # rerunning the finished command trains nothing more
    proc2 = ok(run_train(*coop_args(eurosat_root, tiny_clip_path, str(out), "OPTIM.MAX_EPOCH", 5,
                                    "OPTIM.LR", 0.0, "OPTIM.WARMUP_CONS_LR", 0.0, "TRAIN.EARLY_STOPPING", True,
                                    "TRAIN.PATIENT_COUNT", 1, "TRAIN.EARLY_STOPPING_MIN_EPOCHS", 2,
                                    final_model="best_val")))
    assert "epoch [" not in proc2.stdout
    assert read_results(str(out))["metrics"] == res["metrics"]


def test_deterministic_rerun_gives_identical_results_and_weights(tmp_path, coop_last, eurosat_root,
                                                                 tiny_clip_path):
    """Same command, same seed, on the CPU: --deterministic changes nothing and the numbers and
    the trained context are bit-identical to the plain run's."""
    out = str(tmp_path / "deterministic")
    proc = ok(run_train(*coop_args(eurosat_root, tiny_clip_path, out, "TRAIN.CHECKPOINT_FREQ", 1,
                                   flags=("--deterministic",))))
    assert "DETERMINISTIC: True" in proc.stdout
    assert read_results(out)["metrics"] == read_results(coop_last)["metrics"]
    ours = torch.load(Path(out, "prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]
    plain = torch.load(Path(coop_last, "prompt_learner", "model.pth.tar-2"), weights_only=True)["state_dict"]
    assert ours.keys() == plain.keys() and all(torch.equal(ours[k], plain[k]) for k in ours)
