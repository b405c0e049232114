"""Faults and bad inputs that used to cost a researcher a result without a word (issue "Hardening").

Each case is reproduced as a user hits it (train.py, the scripts, the loaders) and checks the one
line the user sees, the exit status, and that nothing on disk was lost:

* two runs into one output directory (an OS lock held for the whole run; exit 75);
* a real full disk (a small tmpfs) while a checkpoint, results.json or log.txt is written;
* checkpoints that safe loading refuses, and original-Dassl checkpoints with a pickled scheduler;
* YAML syntax errors with file:line:column; split files whose labels disagree;
* files written through a temporary file keep the umask's mode; --resume of a missing directory;
* a CLI key typo, batch size 0, a Latin-1 classnames.txt, a text file as the backbone, a
  non-UTF-8 class folder, and Ctrl-C.
"""
import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_train, train_server_env
from tests.helpers.files import digest_tree

SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")


def args_for(root, clip_path, out, *opts, flags=(), epochs=1, dataset_cfg=EUROSAT_CFG):
    return [*flags, "--root", root, "--seed", 1, "--trainer", "CoOp", "--dataset-config-file", dataset_cfg,
            "--config-file", SMOKE_CFG, "--output-dir", out, "--backbone", clip_path,
            "DATASET.NUM_SHOTS", 2, "TRAINER.COOP.N_CTX", 2, "TRAINER.COOP.PREC", "fp32",
            "OPTIM.MAX_EPOCH", epochs, *opts]


def last_error(proc, status=2):
    """The single ``error: ...`` line a failed run ends with (and no traceback), without the
    pointer to the traceback in log.txt that follows the message."""
    assert proc.returncode == status, f"exit {proc.returncode}\n{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-2000:]
    return re.sub(r" \(traceback in [^)]*\)$", "", last)


@pytest.fixture
def data_copy(tmp_path, eurosat_root):
    dst = tmp_path / "data"
    shutil.copytree(eurosat_root, dst)
    shutil.rmtree(dst / "eurosat" / "split_fewshot", ignore_errors=True)
    return dst


def start_run(args, **popen):
    """A train.py run in the background (through the train server), its output line by line."""
    env = dict(os.environ, **train_server_env(), PYTHONUNBUFFERED="1")
    return subprocess.Popen([env["PYTHON"], str(REPO / "train.py"), *map(str, args)], cwd=str(REPO), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for_line(proc, prefix, timeout=120):
    deadline = time.time() + timeout
    seen = ""
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
        if line.startswith(prefix):
            return seen
    proc.kill()
    raise AssertionError(f"never saw {prefix!r}:\n{seen[-2000:]}\n{proc.stderr.read()[-2000:]}")


# ----------------------------------------------------------------------- 1. one run per output dir
@pytest.mark.slow
def test_second_run_into_a_live_runs_dir_exits_at_once_and_the_first_finishes(tmp_path, eurosat_root,
                                                                              tiny_clip_path):
    out = tmp_path / "run"
    first = start_run(args_for(eurosat_root, tiny_clip_path, str(out), "TRAIN.CHECKPOINT_FREQ", 1, epochs=3))
    wait_for_line(first, "epoch [2/3]")
    # a temporary file of the live run (as if it were writing a checkpoint right now)
    temp = out / ".results.json.abcd1234.tmp"
    temp.write_text("half written")
    log_before = (out / "log.txt").read_text()
    second = run_train(*args_for(eurosat_root, tiny_clip_path, str(out), "TRAIN.CHECKPOINT_FREQ", 1, epochs=3,
                                 flags=()))
    line = last_error(second, status=75)
    assert line.startswith(f"error: output dir {out} is in use by another run (pid ")
    assert "started" in line and "choose another --output-dir" in line
    assert temp.read_text() == "half written"  # the second run's clean-up never touched it
    assert "Collecting env info" not in second.stdout  # it stopped before building (or logging) anything
    assert (out / "log.txt").read_text().startswith(log_before)
    assert not list(out.glob("log.txt-*"))
    first.stdout.read()
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    assert json.loads((out / "results.json").read_text())["seed"] == 1


@pytest.mark.slow
def test_a_killed_runs_lock_dies_with_it_and_resume_works(tmp_path, eurosat_root, tiny_clip_path):
    out = tmp_path / "run"
    args = args_for(eurosat_root, tiny_clip_path, str(out), "TRAIN.CHECKPOINT_FREQ", 1, epochs=2)
    first = start_run(args)
    wait_for_line(first, "epoch [2/2]")
    first.kill()  # SIGKILL: no clean-up runs (the train server kills the run with its client)
    first.wait()
    time.sleep(0.5)
    assert (out / ".run.lock").exists()  # the file stays; the lock went with the process
    proc = run_train(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "will resume training" in proc.stdout


def test_lock_holder_is_named_from_another_process(tmp_path):
    """A plain process holding the lock (any run of this framework) blocks lock_output_dir."""
    from dassl.utils.run_lock import OutputDirInUse, lock_output_dir

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dassl.utils.run_lock import lock_output_dir; "
         "lock_output_dir(sys.argv[1]); print('locked', flush=True); time.sleep(120)", str(tmp_path)],
        cwd=str(REPO), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirInUse, match=rf"output dir {tmp_path} is in use by another run \(pid "
                                                 rf"{holder.pid} on .*, started "):
            lock_output_dir(str(tmp_path))
    finally:
        holder.kill()
        holder.wait()


# ---------------------------------------------------------------------------- 2. a real full disk
@contextlib.contextmanager
def small_disk(path, kib):
    """A ``kib`` KiB tmpfs mounted at ``path`` (yields True), or, where mounting is not allowed,
    a plain folder (yields False): the caller then injects the exact error a full disk gives."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


class _FullDiskFile:
    """A file whose writes fail as on a full disk once ``room`` bytes were written."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.handle.close()


def test_checkpoint_on_a_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from dassl.utils import tools
    from dassl.utils.torchtools import atomic_torch_save

    with small_disk(tmp_path / "disk", kib=256) as mounted:
        target = tmp_path / "disk" / "model.pth.tar-1"
        atomic_torch_save({"w": torch.ones(1000)}, str(target))  # 4 KB: fits
        before = target.read_bytes()
        if not mounted:  # the exact failure torch.save sees on ENOSPC, from the file's write()
            real = tools.os.fdopen
            monkeypatch.setattr(tools.os, "fdopen", lambda fd, mode: _FullDiskFile(real(fd, mode), 64 << 10))
        with pytest.raises(OSError) as caught:
            atomic_torch_save({"w": torch.ones(1_000_000)}, str(target))  # 4 MB: does not fit
        assert str(caught.value) == f"[Errno 28] No space left on device while writing {target}"
        assert target.read_bytes() == before
        assert sorted(p.name for p in target.parent.iterdir()) == ["model.pth.tar-1"]  # no temporary left


def test_results_json_on_a_full_disk_names_the_file(tmp_path, monkeypatch):
    from dassl.utils import tools, write_json

    with small_disk(tmp_path / "disk", kib=64) as mounted:
        if not mounted:
            real = tools.os.fdopen
            monkeypatch.setattr(tools.os, "fdopen", lambda fd, mode: _FullDiskFile(real(fd, mode), 32 << 10))
        target = tmp_path / "disk" / "results.json"
        with pytest.raises(OSError, match=rf"^\[Errno 28\] No space left on device while writing {target}$"):
            write_json({"x": "y" * 200_000}, str(target))
        assert not list(target.parent.iterdir())


@pytest.mark.slow
def test_log_txt_on_a_full_disk_ends_in_one_line(tmp_path, eurosat_root, tiny_clip_path):
    """The disk fills while the run prints into log.txt: one error line, exit 2 (not exit 120 with
    'lost sys.stderr')."""
    with small_disk(tmp_path / "disk", kib=4) as mounted:
        out = tmp_path / "disk" / "run"
        env = {} if mounted else {"PROMPTCLIP_FAULT": "checkpoint_write:1:enospc"}
        proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(out)), env=env)
        line = last_error(proc)
        written = "log.txt" if mounted else "model.pth.tar-1"
        assert "No space left on device while writing" in line and written in line, line
        assert "lost sys.stderr" not in proc.stderr


# ------------------------------------------------------------------- 3. refused checkpoints
class _Payload:
    """Pickles as a call of os.system: what a malicious checkpoint holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_asking_for_a_forbidden_global_is_refused_not_called_corrupt(tmp_path):
    from dassl.utils import load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"ctx": torch.zeros(2, 64)}, "extra": _Payload(marker)}, path)
    with pytest.raises(RuntimeError) as caught:
        load_checkpoint(str(path))
    message = str(caught.value)
    assert message.startswith(f'checkpoint "{path}" holds Python objects that safe loading refuses (posix.system)')
    assert "corrupt" not in message and "weights_only=False will likely succeed" not in message
    assert not marker.exists()


@pytest.mark.slow
def test_released_weights_with_a_forbidden_global_evaluate_with_inert_placeholders(tmp_path, eurosat_root,
                                                                                   tiny_clip_path):
    trained = tmp_path / "trained"
    assert run_train(*args_for(eurosat_root, tiny_clip_path, str(trained))).returncode == 0
    ckpt_path = trained / "prompt_learner" / "model.pth.tar-1"
    ckpt = torch.load(ckpt_path, weights_only=True)
    marker = tmp_path / "pwned"
    ckpt["extra"] = _Payload(marker)
    torch.save(ckpt, ckpt_path)
    out = tmp_path / "eval"
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(out),
                               flags=("--eval-only", "--model-dir", str(trained), "--load-epoch", 1)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "safe loading refuses (posix.system); loading it with inert placeholders instead" in proc.stdout
    assert not marker.exists()
    ours = json.loads((trained / "results.json").read_text())["metrics"]["accuracy"]
    assert json.loads((out / "results.json").read_text())["metrics"]["accuracy"] == ours


def test_original_dassl_checkpoint_with_a_pickled_scheduler_loads_for_third_party_code(tmp_path):
    """The official PromptSRC/BMIP load_model calls dassl.utils.load_checkpoint on what the original
    Dassl saved: the warm-up scheduler's successor (a CosineAnnealingLR holding its SGD) is pickled."""
    from dassl.utils import load_checkpoint
    from dassl.utils.torchtools import InertObject

    weights = torch.nn.Parameter(torch.randn(4, 512))
    optimizer = torch.optim.SGD([weights], lr=0.0025, momentum=0.9)
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 20)
    path = tmp_path / "model.pth.tar-20"
    torch.save({"state_dict": {"prompt_learner.ctx": weights.detach().clone()}, "epoch": 20,
                "optimizer": optimizer.state_dict(),
                "scheduler": {"successor": successor, "warmup_epoch": 1, "last_epoch": 20},
                "val_result": None}, path)
    ckpt = load_checkpoint(str(path))
    assert torch.equal(ckpt["state_dict"]["prompt_learner.ctx"], weights.detach())
    assert isinstance(ckpt["scheduler"]["successor"], InertObject)
    assert ckpt["epoch"] == 20 and ckpt["scheduler"]["warmup_epoch"] == 1


# ------------------------------------------------------------------------ 4. YAML error location
@pytest.mark.slow
def test_yaml_syntax_error_names_file_line_column_and_cause(tmp_path, eurosat_root, tiny_clip_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("OPTIM:\n  LR: 0.1\n  NAME: sgd: x\n")
    args = args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"))
    args[args.index("--config-file") + 1] = str(bad)
    assert last_error(run_train(*args)) == f"error: {bad}:3:12: mapping values are not allowed here"


# ------------------------------------------------------------------------- 5. split file labels
def _edit_split(data_root, edit):
    path = Path(data_root) / "eurosat" / "split_zhou_EuroSAT.json"
    split = json.loads(path.read_text())
    edit(split)
    path.write_text(json.dumps(split))
    return path


def _set(split, part, index, label=None, name=None):
    record = split[part][index]
    split[part][index] = [record[0], record[1] if label is None else label, record[2] if name is None else name]


def _swap_test_labels(split):
    for record in split["test"]:
        record[1] = 9 - record[1]


def _first(split, part, label):
    return next(i for i, r in enumerate(split[part]) if r[1] == label)


LABEL_CASES = {
    "test label 10": (lambda s: _set(s, "test", 0, label=10),
                      "[test] entry 0: label 10 is not one of the training labels 0..9"),
    "test label -1": (lambda s: _set(s, "test", 3, label=-1),
                      "[test] entry 3: label -1 is not one of the training labels 0..9"),
    "train label 10 of an existing class": (lambda s: _set(s, "train", 0, label=10),
                                            "has label 0, but 10 in"),
    "train label -1": (lambda s: _set(s, "train", 0, label=-1, name="nowhere"), "label -1 is negative"),
    "a label-0 record named 'Forest'": (lambda s: _set(s, "val", _first(s, "val", 0), name="Forest"),
                                        "label 0 is named 'Forest', but 'Annual Crop Land' in"),
    "test labels swapped against train": (_swap_test_labels, "[test] entry 0: label 9 is named"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_split_file_labels_that_disagree_are_named(tmp_path, tiny_clip_path, data_copy, case):
    edit, fragment = LABEL_CASES[case]
    split_path = _edit_split(data_copy, edit)
    before = digest_tree(data_copy)
    out = tmp_path / "o"
    line = last_error(run_train(*args_for(str(data_copy), tiny_clip_path, str(out))))
    assert str(split_path) in line and fragment in line, line
    assert digest_tree(data_copy) == before
    assert not (out / "results.json").exists()


# -------------------------------------------------------------------------- 7. modes under umask
@pytest.mark.slow
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_results_and_checkpoints_get_the_mode_a_plain_open_would(tmp_path, eurosat_root, tiny_clip_path, umask,
                                                                 mode):
    out = tmp_path / "run"
    previous = os.umask(umask)
    try:
        proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(out), "TEST.FINAL_MODEL", "best_val"))
    finally:
        os.umask(previous)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = [out / "results.json", out / "log.txt", out / "prompt_learner" / "model.pth.tar-1",
               out / "prompt_learner" / "model-best.pth.tar", out / "prompt_learner" / "checkpoint"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(mode) for p in written}
    cache = next((Path(eurosat_root) / "eurosat" / "split_fewshot").glob("*.json"))
    assert cache.stat().st_mode & 0o077 != 0  # the few-shot cache is readable by others too


# ------------------------------------------------------------------------ 8. --resume DIR missing
@pytest.mark.slow
def test_resume_from_a_directory_that_does_not_exist_is_an_error(tmp_path, eurosat_root, tiny_clip_path):
    missing = tmp_path / "typo"
    out = tmp_path / "o"
    line = last_error(run_train(*args_for(eurosat_root, tiny_clip_path, str(out), flags=("--resume", missing))))
    assert line.startswith(f"error: --resume {missing}: no such directory")
    assert not (out / "results.json").exists()


# ------------------------------------------------------------------------ 9. smaller messages
@pytest.mark.slow
def test_command_line_key_typo_suggests_the_key(tmp_path, eurosat_root, tiny_clip_path):
    line = last_error(run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), "OPTIM.LRR", 0.1)))
    assert line == "error: command line: unknown config key OPTIM.LRR (did you mean: OPTIM.LR, OPTIM.STAGED_LR, " \
                   "OPTIM.LR_SCHEDULER?)"


@pytest.mark.slow
def test_batch_size_zero_names_the_key(tmp_path, eurosat_root, tiny_clip_path):
    line = last_error(run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"),
                                          "DATALOADER.TRAIN_X.BATCH_SIZE", 0)))
    assert line == "error: DATALOADER.TRAIN_X.BATCH_SIZE must be a positive integer, got 0"


@pytest.mark.slow
def test_latin1_classnames_file_is_named(tmp_path, tiny_clip_path):
    from tests.helpers.fake_datasets import make_imagefolder

    make_imagefolder(str(tmp_path / "data"), subdir="mydata", n_classes=3)
    names = tmp_path / "data" / "mydata" / "classnames.txt"
    names.write_bytes("class_a caf\xe9\nclass_b tea\n".encode("latin-1"))
    line = last_error(run_train(*args_for(str(tmp_path / "data"), tiny_clip_path, str(tmp_path / "o"),
                                          "DATASET.IMAGEFOLDER_DIR", "mydata",
                                          dataset_cfg=str(REPO / "configs/datasets/imagefolder.yaml"))))
    assert line == f"error: {names}:1: not UTF-8 text (byte 0xe9); save the file as UTF-8"


@pytest.mark.slow
def test_text_file_as_backbone_is_named(tmp_path, eurosat_root):
    afile = tmp_path / "afile"
    afile.write_text("i am not a checkpoint\n")
    line = last_error(run_train(*args_for(eurosat_root, str(afile), str(tmp_path / "o"))))
    assert line.startswith(f"error: {afile} is not a CLIP checkpoint (not a PyTorch file); the backbone is an "
                           "OpenAI model name")


def test_non_utf8_class_folder_is_warned_about_by_name(tmp_path, capsys):
    from datasets.base import list_subfolders

    (tmp_path / "good").mkdir()
    os.mkdir(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    assert len(list_subfolders(str(tmp_path))) == 2
    out = capsys.readouterr().out
    assert f"Warning: class folder '{tmp_path}/caf\ufffd' has a name that is not valid UTF-8" in out
    assert "would be 'caf\ufffd'" in out


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, eurosat_root, tiny_clip_path):
    out = tmp_path / "run"
    args = args_for(eurosat_root, tiny_clip_path, str(out), "TRAIN.CHECKPOINT_FREQ", 1, epochs=3)
    proc = start_run(args)
    wait_for_line(proc, "epoch [2/3]")
    proc.send_signal(signal.SIGINT)
    proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"interrupted: kept the checkpoint of the last finished epoch (1) in {out}; run the same command "
        "again to resume from it")
    assert "Traceback" in (out / "log.txt").read_text()  # the details stay in the log
    again = run_train(*args)
    assert again.returncode == 0 and "will resume training" in again.stdout
