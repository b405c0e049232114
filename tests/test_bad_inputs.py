"""Bad input to train.py: one clear line on stderr naming the culprit, a
non-zero exit, and nothing already on disk overwritten or lost."""
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_train
from tests.helpers.files import digest_tree

pytestmark = pytest.mark.slow

SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")


def args_for(root, clip_path, out, *opts, flags=(), trainer="CoOp"):
    return [*flags, "--root", root, "--seed", 1, "--trainer", trainer,
            "--dataset-config-file", EUROSAT_CFG, "--config-file", SMOKE_CFG,
            "--output-dir", out, "--backbone", clip_path,
            "DATASET.NUM_SHOTS", 2, "TRAINER.COOP.N_CTX", 2, "TRAINER.COOP.PREC", "fp32",
            "OPTIM.MAX_EPOCH", 1, *opts]


def fails_with(proc, *fragments):
    """Assert a non-zero exit whose last stderr line is one 'error: ...' line containing fragments."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr[-2000:]
    for frag in fragments:
        assert frag in last, f"{frag!r} not in {last!r}"
    assert "Traceback" not in proc.stderr
    return last


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, eurosat_root, tiny_clip_path):
    """A complete 1-epoch CoOp run: later bad commands pointed at it must leave it intact."""
    out = str(tmp_path_factory.mktemp("runs") / "done")
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture
def data_copy(tmp_path, eurosat_root):
    dst = tmp_path / "data"
    shutil.copytree(eurosat_root, dst)
    shutil.rmtree(dst / "eurosat" / "split_fewshot", ignore_errors=True)
    return dst


def test_missing_data_root(tmp_path, tiny_clip_path):
    missing = str(tmp_path / "nowhere")
    fails_with(run_train(*args_for(missing, tiny_clip_path, str(tmp_path / "o"))), "data root", missing)


def test_unset_data_root(tmp_path, tiny_clip_path):
    args = args_for("", tiny_clip_path, str(tmp_path / "o"))
    i = args.index("--root")
    del args[i:i + 2]
    fails_with(run_train(*args), "DATASET.ROOT is not set", "--root")


def test_missing_split_file_names_fetch_command(tmp_path, tiny_clip_path, data_copy):
    os.remove(data_copy / "eurosat" / "split_zhou_EuroSAT.json")
    fails_with(run_train(*args_for(str(data_copy), tiny_clip_path, str(tmp_path / "o"))),
               "split_zhou_EuroSAT.json", "python -m datasets.fetch_splits")


def test_split_pointing_at_missing_images(tmp_path, tiny_clip_path, data_copy):
    victim = sorted((data_copy / "eurosat" / "2750").rglob("*.jpg"))[0]
    os.remove(victim)
    fails_with(run_train(*args_for(str(data_copy), tiny_clip_path, str(tmp_path / "o"))), victim.name)


def test_corrupt_image_is_named(tmp_path, tiny_clip_path, data_copy):
    for img in (data_copy / "eurosat" / "2750").rglob("*.jpg"):
        img.write_bytes(b"this is not a jpeg")
    last = fails_with(run_train(*args_for(str(data_copy), tiny_clip_path, str(tmp_path / "o"))))
    assert str(data_copy) in last and ".jpg" in last


def test_unknown_trainer_lists_close_match(tmp_path, eurosat_root, tiny_clip_path):
    fails_with(run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), trainer="CoOpp")),
               "CoOpp", "did you mean: CoOp")


def test_unknown_config_key_on_command_line(tmp_path, finished_run, eurosat_root, tiny_clip_path):
    before = digest_tree(finished_run)
    fails_with(run_train(*args_for(eurosat_root, tiny_clip_path, finished_run, "TRAINER.COOP.N_CTXX", 4)),
               "TRAINER.COOP.N_CTXX", "TRAINER.COOP.N_CTX")
    assert digest_tree(finished_run) == before


def test_unknown_config_key_in_yaml_names_file(tmp_path, eurosat_root, tiny_clip_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(SMOKE_CFG).read_text() + "\nOPTIM2:\n  LR: 0.1\n")
    args = args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"))
    args[args.index("--config-file") + 1] = str(bad)
    fails_with(run_train(*args), str(bad), "OPTIM2")


def test_input_size_must_match_backbone(tmp_path, eurosat_root, tiny_clip_path):
    fails_with(run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), "INPUT.SIZE", "(224, 224)")),
               "INPUT.SIZE [224, 224]", "32x32")


def test_num_shots_larger_than_a_class(tmp_path, eurosat_root, tiny_clip_path):
    fails_with(run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), "DATASET.NUM_SHOTS", 50)),
               "50 shots", "has only")


def test_eval_only_without_checkpoint_never_trains(tmp_path, eurosat_root, tiny_clip_path):
    empty = tmp_path / "empty_model_dir"
    empty.mkdir()
    out = tmp_path / "o"
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(out),
                               flags=("--eval-only", "--model-dir", str(empty), "--load-epoch", 3)))
    fails_with(proc, str(empty / "prompt_learner" / "model.pth.tar-3"))
    assert "epoch [" not in proc.stdout
    assert not (out / "results.json").exists()


def test_eval_only_wrong_epoch_lists_epochs_present(tmp_path, finished_run, eurosat_root, tiny_clip_path):
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"),
                               flags=("--eval-only", "--model-dir", finished_run, "--load-epoch", 7)))
    fails_with(proc, "model.pth.tar-7", "epochs present: [1]")


def test_corrupt_checkpoint_is_named_and_kept(tmp_path, finished_run, eurosat_root, tiny_clip_path):
    model_dir = tmp_path / "model"
    shutil.copytree(finished_run, model_dir)
    ckpt = model_dir / "prompt_learner" / "model.pth.tar-1"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    before = digest_tree(model_dir)
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"),
                               flags=("--eval-only", "--model-dir", str(model_dir), "--load-epoch", 1)))
    fails_with(proc, str(ckpt))
    assert digest_tree(model_dir) == before


def test_checkpoint_of_other_shape_names_keys(tmp_path, finished_run, eurosat_root, tiny_clip_path):
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), "TRAINER.COOP.N_CTX", 3,
                               flags=("--eval-only", "--model-dir", finished_run, "--load-epoch", 1)))
    fails_with(proc, "ctx", "checkpoint (2, ", "model (3, ")


def test_flag_after_opts_is_explained(tmp_path, eurosat_root, tiny_clip_path):
    args = args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o")) + ["--eval-only"]
    fails_with(run_train(*args), "--eval-only", "before")


def test_eval_only_without_model_dir_refuses_untrained_model(tmp_path, eurosat_root, tiny_clip_path):
    out = tmp_path / "o"
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(out), flags=("--eval-only",)))
    fails_with(proc, "--eval-only needs --model-dir", "CoOp")
    assert not (out / "results.json").exists()


def test_corrupt_image_named_with_worker_processes(tmp_path, tiny_clip_path, data_copy):
    for img in (data_copy / "eurosat" / "2750").rglob("*.jpg"):
        img.write_bytes(b"this is not a jpeg")
    last = fails_with(run_train(*args_for(str(data_copy), tiny_clip_path, str(tmp_path / "o"),
                                          "DATALOADER.NUM_WORKERS", 2)))
    assert str(data_copy) in last and ".jpg" in last and "worker" not in last


def test_resume_with_changed_config_names_the_keys(tmp_path, finished_run, eurosat_root, tiny_clip_path):
    out = tmp_path / "o"
    shutil.copytree(finished_run, out)
    before = digest_tree(out)
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(out), "OPTIM.LR", 0.5))
    fails_with(proc, "different config", "OPTIM.LR: 0.02 -> 0.5")
    after = digest_tree(out)
    assert {k: v for k, v in after.items() if not k.startswith("log.txt")} == \
        {k: v for k, v in before.items() if not k.startswith("log.txt")}


def test_ctx_init_that_splits_into_more_tokens(tmp_path, eurosat_root, tiny_clip_path):
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"),
                               "TRAINER.COOP.CTX_INIT", "a_photograph_of_xylophones"))
    fails_with(proc, "CTX_INIT 'a photograph of xylophones'",
               "6 token(s) of this backbone's tokenizer for 4 context vector(s)")


# --- added with docs/RELIABILITY.md: the remaining bad inputs of issue 8 -------------------------
def test_unknown_dataset_lists_close_match(tmp_path, eurosat_root, tiny_clip_path):
    fails_with(run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), "DATASET.NAME", "EuroSATT")),
               "EuroSATT", "did you mean: EuroSAT")


def test_missing_dataset_folder(tmp_path, tiny_clip_path):
    root = tmp_path / "data"
    root.mkdir()  # the data root exists, the eurosat/ folder in it does not
    fails_with(run_train(*args_for(str(root), tiny_clip_path, str(tmp_path / "o"))),
               "dataset folder", str(root / "eurosat"))


def test_truncated_split_json_is_named_and_kept(tmp_path, tiny_clip_path, data_copy):
    split = data_copy / "eurosat" / "split_zhou_EuroSAT.json"
    split.write_bytes(split.read_bytes()[:200])
    before = digest_tree(data_copy)
    fails_with(run_train(*args_for(str(data_copy), tiny_clip_path, str(tmp_path / "o"))),
               "invalid JSON", str(split))
    assert digest_tree(data_copy) == before  # neither regenerated nor overwritten


def test_output_dir_not_writable_fails_before_anything_is_written(tmp_path, tiny_clip_path, data_copy):
    # A path through a regular file cannot be created even by root (chmod would not stop root).
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file, not a directory\n")
    out = blocker / "run"
    data_before = digest_tree(data_copy)
    fails_with(run_train(*args_for(str(data_copy), tiny_clip_path, str(out))), "output dir", str(out), "not writable")
    assert blocker.read_text() == "a file, not a directory\n"
    assert digest_tree(data_copy) == data_before  # not even the few-shot cache was written


def test_checkpoint_of_another_trainer_names_keys(tmp_path, finished_run, eurosat_root, tiny_clip_path):
    """CoCoOp reads the same "prompt_learner" folder as CoOp; CoOp's weights lack its meta-net."""
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), "TRAINER.COCOOP.N_CTX", 2,
                               "TRAINER.COCOOP.PREC", "fp32", trainer="CoCoOp",
                               flags=("--eval-only", "--model-dir", finished_run, "--load-epoch", 1)))
    fails_with(proc, "does not fit trainer CoCoOp", "missing keys", "meta_net.linear1.weight")


def test_checkpoint_of_other_class_count_names_keys(tmp_path, finished_run, eurosat_root, tiny_clip_path):
    """Class-specific contexts saved for the 10 classes, evaluated on the 5 base classes."""
    import torch

    model_dir = tmp_path / "model"
    shutil.copytree(finished_run, model_dir)
    path = model_dir / "prompt_learner" / "model.pth.tar-1"
    ckpt = torch.load(path, weights_only=True)
    ctx = ckpt["state_dict"]["ctx"]
    ckpt["state_dict"]["ctx"] = ctx.unsqueeze(0).repeat(10, 1, 1)
    torch.save(ckpt, path)
    proc = run_train(*args_for(eurosat_root, tiny_clip_path, str(tmp_path / "o"), "TRAINER.COOP.CSC", True,
                               "DATASET.SUBSAMPLE_CLASSES", "base",
                               flags=("--eval-only", "--model-dir", str(model_dir), "--load-epoch", 1)))
    fails_with(proc, "(5 classes)", "ctx: checkpoint (10, 2, ", "model (5, 2, ")


def test_skip_bad_images_counts_them_in_the_log(tmp_path, tiny_clip_path, data_copy):
    """Off by default (test_corrupt_image_is_named); on, the run finishes and says how many it skipped."""
    split = json.loads((data_copy / "eurosat" / "split_zhou_EuroSAT.json").read_text())
    first_class = split["train"][0][1]
    # Every training image of the first class (so both of its 2 shots) and two test images.
    bad = [rel for rel, label, _ in split["train"] if label == first_class] + [rel for rel, _, _ in split["test"][:2]]
    for rel in bad:
        (data_copy / "eurosat" / "2750" / rel).write_bytes(b"not a jpeg")
    out = tmp_path / "o"
    # 20 training items in batches of 4: no batch is dropped, so every item is read once.
    proc = run_train(*args_for(str(data_copy), tiny_clip_path, str(out), "DATALOADER.SKIP_BAD_IMAGES", True,
                               "DATALOADER.TRAIN_X.BATCH_SIZE", 4))
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = (out / "log.txt").read_text()
    assert "DATALOADER.SKIP_BAD_IMAGES: skipped 2 unreadable image(s) in epoch 1" in log
    assert "DATALOADER.SKIP_BAD_IMAGES: skipped 2 unreadable image(s) while evaluating on test" in log
    # the metrics count every readable test image once and the unreadable ones not at all (their
    # stand-ins, the next readable items, are not counted a second time)
    assert json.loads((out / "results.json").read_text())["metrics"]["total"] == len(split["test"]) - 2


def test_diverged_loss_is_a_one_line_error(monkeypatch, capsys):
    """A non-finite loss stops the run with exit 2 and one line naming epoch and batch."""
    import train

    def diverge(args):
        raise FloatingPointError("Loss is infinite or NaN at epoch 1, batch 2")

    monkeypatch.delenv("PROMPTCLIP_DEBUG", raising=False)
    monkeypatch.setattr(train, "main", diverge)
    assert train.cli([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Loss is infinite or NaN at epoch 1, batch 2"]
