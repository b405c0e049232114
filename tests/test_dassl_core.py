"""Tests for dassl.config, dassl.optim, dassl.metrics, dassl.evaluation and dassl.utils."""
import io
import json
import math
import os
import random
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from dassl.config import get_cfg_default
from dassl.evaluation import build_evaluator, Classification, macro_f1_score
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    UnreadableImageError,
    check_availability,
    close_logger,
    collect_env_info,
    listdir_nohidden,
    load_checkpoint,
    read_image,
    read_json,
    resume_from_checkpoint,
    save_checkpoint,
    set_random_seed,
    setup_logger,
    write_json,
)


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------
def test_cfg_has_dassl_defaults_and_additions():
    cfg = get_cfg_default()
    assert cfg.OPTIM.NAME == "adam" and cfg.OPTIM.LR == 0.0003
    assert cfg.OPTIM.LR_SCHEDULER == "single_step" and tuple(cfg.OPTIM.STEPSIZE) == (-1,)
    assert cfg.OPTIM.WARMUP_EPOCH == -1 and cfg.OPTIM.WARMUP_TYPE == "linear"
    assert cfg.OPTIM.WARMUP_RECOUNT is True and cfg.OPTIM.SGD_DAMPNING == 0
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and cfg.DATALOADER.TEST.SAMPLER == "SequentialSampler"
    assert cfg.TEST.FINAL_MODEL == "last_step" and cfg.TEST.EVALUATOR == "Classification"
    assert cfg.INPUT.PIXEL_MEAN == [0.485, 0.456, 0.406] and cfg.INPUT.INTERPOLATION == "bilinear"
    assert cfg.TRAINER.FIXMATCH.CONF_THRE == 0.95
    # Keys added for the prompt-learning repositories.
    assert cfg.DATASET.NUM_SHOTS == -1 and cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    assert cfg.DATASET.ALLOW_GENERATED_SPLIT is False and cfg.DATASET.IMAGEFOLDER_DIR == ""
    assert cfg.DATALOADER.SKIP_BAD_IMAGES is False
    assert cfg.TRAIN.COMPILE is False and cfg.TRAIN.EARLY_STOPPING is False
    assert isinstance(cfg.TRAIN.PATIENT_COUNT, int) and cfg.MODEL.INIT_SEED == -1


def test_cfg_is_a_fresh_copy_and_merges_an_official_style_yaml(tmp_path):
    first = get_cfg_default()
    first.OPTIM.LR = 123.0
    assert get_cfg_default().OPTIM.LR == 0.0003
    yaml_file = tmp_path / "bmip.yaml"
    yaml_file.write_text(
        "OPTIM:\n  NAME: sgd\n  LR: 0.0035\n  STEPSIZE: [20]\n  WARMUP_CONS_LR: 1e-5\n"
        "TRAIN:\n  EARLY_STOPPING: True\n  PATIENT_COUNT: 4\n"
        "SHARE:\n  SHARE_PARAMETER_VISUAL: True\n"
        "TEST:\n  FINAL_MODEL: best_val\n"
    )
    cfg = get_cfg_default()
    cfg.merge_from_file(str(yaml_file))
    cfg.merge_from_list(["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"])
    assert cfg.OPTIM.NAME == "sgd" and cfg.OPTIM.LR == 0.0035 and list(cfg.OPTIM.STEPSIZE) == [20]
    assert cfg.TRAIN.PATIENT_COUNT == 4 and cfg.TEST.FINAL_MODEL == "best_val"
    assert cfg.DATASET.NUM_SHOTS == 16 and cfg.DATASET.SUBSAMPLE_CLASSES == "base"


# --------------------------------------------------------------------------------------------
# optimizer
# --------------------------------------------------------------------------------------------
def _optim_cfg(**overrides):
    optim_cfg = get_cfg_default().OPTIM
    for key, value in overrides.items():
        setattr(optim_cfg, key, value)
    return optim_cfg


class _TwoPartNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)


@pytest.mark.parametrize(
    "name, expected_class",
    [("adam", torch.optim.Adam), ("amsgrad", torch.optim.Adam), ("sgd", torch.optim.SGD),
     ("rmsprop", torch.optim.RMSprop), ("radam", torch.optim.RAdam), ("adamw", torch.optim.AdamW)],
)
def test_build_optimizer_names(name, expected_class):
    optimizer = build_optimizer(_TwoPartNet(), _optim_cfg(NAME=name, LR=0.01, WEIGHT_DECAY=1e-3))
    assert type(optimizer) is expected_class
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["weight_decay"] == 1e-3
    assert len(group["params"]) == 4
    if name in ("adam", "amsgrad"):
        assert group["amsgrad"] is (name == "amsgrad")
    if name == "sgd":
        assert group["momentum"] == 0.9 and group["nesterov"] is False


def test_build_optimizer_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="adamx") as info:
        build_optimizer(_TwoPartNet(), _optim_cfg(NAME="adamx"))
    assert "adamx" in str(info.value) and "sgd" in str(info.value)


def test_staged_lr_splits_children_and_checks_names():
    net = _TwoPartNet()
    cfg = _optim_cfg(NAME="sgd", LR=0.1, STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1)
    optimizer = build_optimizer(net, cfg)
    base, new = optimizer.param_groups
    assert base["lr"] == pytest.approx(0.01) and new["lr"] == 0.1
    assert {id(p) for p in new["params"]} == {id(p) for p in net.head.parameters()}
    assert {id(p) for p in base["params"]} == {id(p) for p in net.backbone.parameters()}
    with pytest.raises(ValueError, match="classifier"):
        build_optimizer(net, _optim_cfg(STAGED_LR=True, NEW_LAYERS=("classifier",)))


def test_build_optimizer_accepts_params_and_param_groups():
    net = _TwoPartNet()
    optimizer = build_optimizer(net.head.parameters(), _optim_cfg(NAME="adamw", LR=0.5))
    assert len(optimizer.param_groups[0]["params"]) == 2
    groups = [{"params": net.backbone.parameters(), "lr": 0.2}, {"params": net.head.parameters()}]
    optimizer = build_optimizer(None, _optim_cfg(NAME="sgd", LR=0.5), param_groups=groups)
    assert [g["lr"] for g in optimizer.param_groups] == [0.2, 0.5]


# --------------------------------------------------------------------------------------------
# LR schedulers: each expected list below is Dassl's rule written out by hand.
# --------------------------------------------------------------------------------------------
def _per_epoch_lrs(optim_cfg, num_epochs=None):
    """LR of param group 0 in each epoch: after construction, then after every step()."""
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=optim_cfg.LR)
    scheduler = build_lr_scheduler(optimizer, optim_cfg)
    lrs = []
    for _ in range(num_epochs or optim_cfg.MAX_EPOCH):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def _cosine(base_lr, k, max_epoch):
    return 0.5 * base_lr * (1 + math.cos(math.pi * k / max_epoch))


def test_cosine_with_constant_warmup_coop_setting():
    cfg = _optim_cfg(LR=0.002, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=1,
                     WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    # Epoch 0 warms up; the cosine restarts at epoch 1 and so never reaches its last value.
    expected = [1e-5] + [_cosine(0.002, k, 10) for k in range(9)]
    assert _per_epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12, abs=0)
    assert expected[1] == 0.002


def test_cosine_with_linear_warmup():
    cfg = _optim_cfg(LR=0.01, MAX_EPOCH=8, LR_SCHEDULER="cosine", WARMUP_EPOCH=3,
                     WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-4)
    expected = [1e-4, 0.01 / 3, 0.02 / 3] + [_cosine(0.01, k, 8) for k in range(5)]
    assert _per_epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12, abs=0)


def test_cosine_warmup_without_recount():
    cfg = _optim_cfg(LR=0.01, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=2,
                     WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5, WARMUP_RECOUNT=False)
    # Dassl jumps the cosine's counter to W and chains torch's ratio updates from the full LR.
    expected = [1e-5, 1e-5] + [
        0.01 * (1 + math.cos(math.pi * e / 10)) / (1 + math.cos(math.pi * 2 / 10)) for e in range(2, 10)
    ]
    assert _per_epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12, abs=0)


def test_single_step():
    cfg = _optim_cfg(LR=0.1, MAX_EPOCH=9, LR_SCHEDULER="single_step", STEPSIZE=(3,), GAMMA=0.5)
    assert _per_epoch_lrs(cfg) == pytest.approx([0.1 * 0.5 ** (e // 3) for e in range(9)], rel=1e-12)
    # STEPSIZE -1 means "decay once, at MAX_EPOCH".
    cfg = _optim_cfg(LR=0.1, MAX_EPOCH=4, LR_SCHEDULER="single_step", STEPSIZE=(-1,), GAMMA=0.5)
    assert _per_epoch_lrs(cfg, num_epochs=6) == pytest.approx([0.1] * 4 + [0.05] * 2, rel=1e-12)


def test_multi_step_with_constant_warmup():
    cfg = _optim_cfg(LR=0.1, MAX_EPOCH=9, LR_SCHEDULER="multi_step", STEPSIZE=[2, 5], GAMMA=0.1)
    expected = [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 0.001]
    assert _per_epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12)
    cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE, cfg.WARMUP_CONS_LR = 1, "constant", 1e-3
    expected = [1e-3, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001, 0.001]
    assert _per_epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12)


def test_scheduler_bad_names():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="'cosin'"):
        build_lr_scheduler(optimizer, _optim_cfg(LR_SCHEDULER="cosin"))
    with pytest.raises(ValueError, match="'exp'"):
        build_lr_scheduler(optimizer, _optim_cfg(LR_SCHEDULER="cosine", WARMUP_EPOCH=1, WARMUP_TYPE="exp"))
    with pytest.raises(TypeError, match="STEPSIZE"):
        build_lr_scheduler(optimizer, _optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=3))


@pytest.mark.parametrize("warmup_type", ["constant", "linear"])
def test_scheduler_state_dict_round_trip_resumes_exactly(warmup_type):
    cfg = _optim_cfg(NAME="sgd", LR=0.002, MAX_EPOCH=10, LR_SCHEDULER="cosine", WARMUP_EPOCH=2,
                     WARMUP_TYPE=warmup_type)

    def make():
        param = nn.Parameter(torch.ones(2))
        optimizer = build_optimizer([param], cfg)
        return param, optimizer, build_lr_scheduler(optimizer, cfg)

    def train_epoch(param, optimizer, scheduler):
        optimizer.zero_grad()
        (param ** 2).sum().backward()
        optimizer.step()
        scheduler.step()
        return optimizer.param_groups[0]["lr"]

    param, optimizer, scheduler = make()
    reference = [train_epoch(param, optimizer, scheduler) for _ in range(9)]

    param, optimizer, scheduler = make()
    for _ in range(4):
        train_epoch(param, optimizer, scheduler)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "param": param.detach().clone()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # plain data only: safe loading must work

    param2, optimizer2, scheduler2 = make()
    with torch.no_grad():
        param2.copy_(saved["param"])
    optimizer2.load_state_dict(saved["optimizer"])
    scheduler2.load_state_dict(saved["scheduler"])
    resumed = [train_epoch(param2, optimizer2, scheduler2) for _ in range(5)]
    assert resumed == reference[4:]


# --------------------------------------------------------------------------------------------
# metrics and evaluation
# --------------------------------------------------------------------------------------------
def _logits_for(predictions, num_classes):
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float()


def test_compute_accuracy_topk():
    output = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    target = torch.tensor([1, 1, 0, 2])
    top1, top2 = compute_accuracy(output, target, topk=(1, 2))
    assert top1.shape == (1,) and top1.item() == pytest.approx(25.0)
    assert top2.item() == pytest.approx(50.0)


# y_true / y_pred worked by hand: per-class F1 = 2/3, 1/2, 6/7, 1 over labels {0,1,2,3};
# the prediction of class 4 (absent from y_true) must not add a fifth class.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3]
Y_PRED = [0, 0, 1, 1, 4, 2, 2, 0, 2, 3]
MACRO_F1 = 100.0 * (2 / 3 + 1 / 2 + 6 / 7 + 1) / 4


def _evaluator(per_class=False, **cfg_overrides):
    cfg = get_cfg_default()
    cfg.TEST.PER_CLASS_RESULT = per_class
    for key, value in cfg_overrides.items():
        setattr(cfg.TEST, key, value)
    names = {0: "cat", 1: "dog", 2: "owl", 3: "eel", 4: "ant"}
    return Classification(cfg, lab2cname=names)


def test_classification_numbers_and_printed_lines(capsys):
    evaluator = _evaluator()
    # Two batches, to check accumulation.
    evaluator.process(_logits_for(Y_PRED[:4], 5), torch.tensor(Y_TRUE[:4]))
    evaluator.process(_logits_for(Y_PRED[4:], 5), torch.tensor(Y_TRUE[4:]))
    results = evaluator.evaluate()
    assert list(results) == ["accuracy", "error", "macro_f1", "error_rate"]
    assert results["accuracy"] == pytest.approx(70.0)
    assert results["error"] == pytest.approx(30.0) and results["error_rate"] == results["error"]
    assert results["macro_f1"] == pytest.approx(MACRO_F1)
    assert (evaluator.total, evaluator.correct) == (10, 7)
    assert capsys.readouterr().out == (
        "=> result\n* total: 10\n* correct: 7\n* accuracy: 70.0%\n* error: 30.0%\n* macro_f1: 75.6%\n"
    )
    summary = evaluator.summary()
    assert summary["total"] == 10 and summary["correct"] == 7
    json.dumps(summary)  # must be JSON-serialisable for results.json


def test_macro_f1_zero_true_positive_class():
    # class 0: no TP -> F1 0; class 1: P = 1/2, R = 1 -> F1 2/3.
    value = macro_f1_score(torch.tensor([0, 1]), torch.tensor([1, 1]))
    assert value == pytest.approx((0 + 2 / 3) / 2)


def test_classification_per_class_lines(capsys):
    evaluator = _evaluator(per_class=True)
    evaluator.process(_logits_for(Y_PRED, 5), torch.tensor(Y_TRUE))
    results = evaluator.evaluate()
    mean_acc = (200 / 3 + 50 + 75 + 100) / 4
    assert results["perclass_accuracy"] == pytest.approx(mean_acc)
    out = capsys.readouterr().out
    assert out.endswith(
        "=> per-class result\n"
        "* class: 0 (cat)\ttotal: 3\tcorrect: 2\tacc: 66.7%\n"
        "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%\n"
        "* class: 2 (owl)\ttotal: 4\tcorrect: 3\tacc: 75.0%\n"
        "* class: 3 (eel)\ttotal: 1\tcorrect: 1\tacc: 100.0%\n"
        "* average: 72.9%\n"
    )
    assert [row["correct"] for row in evaluator.summary()["per_class"]] == [2, 1, 3, 1]


def test_classification_thousands_separator_and_reset(capsys):
    evaluator = _evaluator()
    labels = torch.arange(1500) % 3
    evaluator.process(_logits_for(labels.tolist(), 3), labels)
    evaluator.evaluate()
    assert "* total: 1,500\n* correct: 1,500\n" in capsys.readouterr().out
    evaluator.reset()
    assert evaluator.total == 0
    with pytest.raises(ValueError, match="before any batch"):
        evaluator.evaluate()


def test_confusion_matrix_file(tmp_path, capsys):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.COMPUTE_CMAT = True
    evaluator = Classification(cfg)
    evaluator.process(_logits_for([0, 1, 1, 1], 2), torch.tensor([0, 0, 1, 1]))
    evaluator.evaluate()
    saved = torch.load(tmp_path / "cmat.pt", weights_only=True)
    assert torch.allclose(saved["cmat"], torch.tensor([[0.5, 0.5], [0.0, 1.0]], dtype=torch.float64))


def test_build_evaluator(capsys):
    cfg = get_cfg_default()
    assert isinstance(build_evaluator(cfg, lab2cname={0: "a"}), Classification)
    assert "Loading evaluator: Classification" in capsys.readouterr().out
    cfg.TEST.EVALUATOR = "Clasification"
    with pytest.raises(ValueError, match=r"\[Classification\]"):
        build_evaluator(cfg)
    cfg.TEST.EVALUATOR = "Classification"
    cfg.TEST.PER_CLASS_RESULT = True
    with pytest.raises(ValueError, match="lab2cname"):
        build_evaluator(cfg)


# --------------------------------------------------------------------------------------------
# utils: files, checkpoints, logging, seeding, meters, images
# --------------------------------------------------------------------------------------------
def test_write_json_is_atomic(tmp_path):
    target = tmp_path / "sub" / "results.json"
    write_json({"accuracy": 71.5, "labels": [1, 2]}, str(target))
    assert read_json(str(target)) == {"accuracy": 71.5, "labels": [1, 2]}
    assert os.listdir(target.parent) == ["results.json"]
    # A failing write leaves the previous file intact and no temporary file behind.
    with pytest.raises(TypeError):
        write_json({"bad": object()}, str(target))
    assert read_json(str(target))["accuracy"] == 71.5
    assert os.listdir(target.parent) == ["results.json"]


def test_read_json_names_a_malformed_file(tmp_path):
    broken = tmp_path / "split.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="split.json"):
        read_json(str(broken))


def _state(epoch):
    return {
        "state_dict": {"module.weight": torch.arange(4.0), "bias": torch.ones(2)},
        "epoch": epoch,
        "val_result": 55.5,
    }


def test_save_and_load_checkpoint_round_trip(tmp_path, capsys):
    original = _state(3)
    fpath = save_checkpoint(original, str(tmp_path), is_best=True)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]
    assert fpath == str(tmp_path / "model.pth.tar-3")
    assert (tmp_path / "checkpoint").read_text() == "model.pth.tar-3\n"
    assert "module.weight" in original["state_dict"]  # the caller's dict is untouched
    for name in ("model.pth.tar-3", "model-best.pth.tar"):
        loaded = load_checkpoint(str(tmp_path / name))
        assert sorted(loaded["state_dict"]) == ["bias", "weight"]
        assert torch.equal(loaded["state_dict"]["weight"], torch.arange(4.0))
        assert loaded["epoch"] == 3 and loaded["val_result"] == 55.5

    save_checkpoint(_state(4), str(tmp_path), model_name="model-last.pth.tar")
    assert (tmp_path / "checkpoint").read_text() == "model-last.pth.tar\n"
    assert "Checkpoint saved to" in capsys.readouterr().out


def test_resume_from_checkpoint_restores_everything(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    cfg = _optim_cfg(NAME="sgd", LR=0.1, MAX_EPOCH=5, LR_SCHEDULER="cosine", WARMUP_EPOCH=1,
                     WARMUP_TYPE="constant")
    optimizer = build_optimizer(model, cfg)
    scheduler = build_lr_scheduler(optimizer, cfg)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.ones(1, 3)).sum().backward()
        optimizer.step()
        scheduler.step()
    save_checkpoint({"state_dict": model.state_dict(), "epoch": 2, "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict()}, str(tmp_path))

    model2 = nn.Linear(3, 2)
    optimizer2 = build_optimizer(model2, cfg)
    scheduler2 = build_lr_scheduler(optimizer2, cfg)
    assert resume_from_checkpoint(str(tmp_path), model2, optimizer2, scheduler2) == 2
    assert torch.equal(model2.weight, model.weight)
    assert scheduler2.last_epoch == scheduler.last_epoch
    assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert optimizer2.state_dict()["state"][0]["momentum_buffer"].equal(
        optimizer.state_dict()["state"][0]["momentum_buffer"]
    )


def test_load_checkpoint_errors_name_the_path(tmp_path):
    missing = tmp_path / "model.pth.tar-9"
    with pytest.raises(FileNotFoundError, match="model.pth.tar-9"):
        load_checkpoint(str(missing))
    good = tmp_path / "good.pth"
    torch.save(_state(1), str(good))
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    garbage = [(f"garbage{i}.pth", rng.integers(0, 256, 256, dtype=np.uint8).tobytes()) for i in range(50)]
    for name, content in [("truncated.pth", data[: len(data) // 2]), ("empty.pth", b""), *garbage]:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(RuntimeError, match="corrupt or incomplete checkpoint") as info:
            load_checkpoint(str(bad))
        assert str(bad) in str(info.value)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"value": np.float64(1.0)}, str(unsafe))
    with pytest.raises(RuntimeError, match="weights_only=False") as info:
        load_checkpoint(str(unsafe))
    assert str(unsafe) in str(info.value)
    assert load_checkpoint(str(unsafe), weights_only=False)["value"] == 1.0


def test_resume_without_pointer_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        resume_from_checkpoint(str(tmp_path), nn.Linear(1, 1))


def test_setup_logger_tees_stdout_and_stderr(tmp_path):
    first_dir, second_dir = tmp_path / "run1", tmp_path / "run2"
    original_stdout, original_stderr = sys.stdout, sys.stderr
    try:
        log_path = setup_logger(str(first_dir))
        assert log_path == str(first_dir / "log.txt")
        print("* accuracy: 71.2%")
        sys.stderr.write("a warning\n")
        # A second call replaces the tee: later prints go only to the new file.
        second_path = setup_logger(str(second_dir))
        print("second run line")
        sys.stdout.flush()
    finally:
        close_logger()
    assert sys.stdout is original_stdout and sys.stderr is original_stderr
    first_text = (first_dir / "log.txt").read_text()
    assert first_text == "* accuracy: 71.2%\na warning\n"
    assert open(second_path).read() == "second run line\n"

    # An existing log is never overwritten: the new one gets a time-stamped name.
    try:
        third_path = setup_logger(str(first_dir))
        print("third")
    finally:
        close_logger()
    assert third_path.startswith(str(first_dir / "log.txt-"))
    assert (first_dir / "log.txt").read_text() == first_text
    assert open(third_path).read() == "third\n"


def test_setup_logger_accepts_a_file_path(tmp_path):
    target = tmp_path / "logs" / "train.log"
    try:
        assert setup_logger(str(target), tee_stderr=False) == str(target)
        print("hello")
    finally:
        close_logger()
    assert target.read_text() == "hello\n"


def test_set_random_seed_reproduces_all_generators():
    def draw():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    set_random_seed(7)
    first = draw()
    set_random_seed(7)
    assert draw() == first
    set_random_seed(8)
    assert draw() != first


def test_average_meter_and_metric_meter():
    meter = AverageMeter()
    meter.update(2.0, n=2)
    meter.update(torch.tensor(4.0))
    assert meter.val == 4.0 and meter.sum == 8.0 and meter.count == 3
    assert meter.avg == pytest.approx(8.0 / 3)
    ema = AverageMeter(ema=True)
    ema.update(1.0)
    ema.update(2.0)
    assert ema.avg == pytest.approx(0.9 * 0.1 + 0.2)
    metrics = MetricMeter()
    metrics.update({"loss": 1.5, "acc": torch.tensor(50.0)})
    metrics.update({"loss": 0.5, "acc": 100.0})
    assert str(metrics) == "loss 0.5000 (1.0000) acc 100.0000 (75.0000)"
    with pytest.raises(TypeError):
        metrics.update([1.0])


def test_read_image(tmp_path):
    gray = tmp_path / "gray.png"
    Image.new("L", (5, 4), color=128).save(gray)
    image = read_image(str(gray))
    assert image.mode == "RGB" and image.size == (5, 4)
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        read_image(str(corrupt))
    good_jpeg = tmp_path / "ok.jpg"
    Image.new("RGB", (64, 64), color=(10, 200, 30)).save(good_jpeg)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good_jpeg.read_bytes()[:200])
    with pytest.raises(OSError, match="truncated.jpg"):
        read_image(str(truncated))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(str(tmp_path / "nope.png"))


def test_small_tools(tmp_path):
    for name in ("b", "a", ".hidden"):
        (tmp_path / name).mkdir()
    assert listdir_nohidden(str(tmp_path), sort=True) == ["a", "b"]
    with pytest.raises(ValueError, match=r"do you mean \[cosine\]"):
        check_availability("cosin", ["cosine", "single_step"])
    info = collect_env_info()
    assert "PyTorch: " + torch.__version__ in info and "CUDA available" in info


class _Stream:
    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("stdout_tty, stderr_tty, expected", [
    (True, True, "stdout"), (False, True, "stderr"), (True, False, "stdout"), (False, False, None)])
def test_progress_bars_go_to_the_terminal_never_to_a_pipe(monkeypatch, stdout_tty, stderr_tty, expected):
    """scripts/quickstart.sh pipes stdout through grep: the bars then use stderr if it is a terminal."""
    from dassl.utils.logger import progress_stream

    streams = {"stdout": _Stream(stdout_tty), "stderr": _Stream(stderr_tty)}
    monkeypatch.setattr(sys, "__stdout__", streams["stdout"])
    monkeypatch.setattr(sys, "__stderr__", streams["stderr"])
    assert progress_stream() is (streams[expected] if expected else None)


def test_set_deterministic_switches_the_kernel_flags(monkeypatch):
    from dassl.utils import set_deterministic

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # a user's own setting is kept
        set_deterministic(True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
