"""Open-world metrics of the Classification evaluator (BMIP sec. 5.1): accuracy on base-class
and on new-class images inside the all-class label space, and their harmonic mean."""
import math

import pytest
import torch

import parse_test_res as ptr
from dassl.config import get_cfg_default
from dassl.evaluation import Classification, harmonic_mean, openworld_accuracies


def openworld_cfg(enabled=True, subsample="all"):
    cfg = get_cfg_default()
    cfg.TEST.OPENWORLD_METRICS = enabled
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    return cfg


def one_hot_logits(predictions, num_classes):
    """Logits whose arg-max is ``predictions``."""
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float()


# 5 classes: base = labels 0, 1, 2 (ceil(5/2) = 3), new = 3, 4.
# base images: 4, right: 3 (label 0 once predicted as new class 3)  -> 75%
# new images:  6, right: 2 (two predicted as base classes, two as the other new class) -> 33.3%
LABELS = [0, 0, 1, 2, 3, 3, 3, 4, 4, 4]
PREDICTIONS = [0, 3, 1, 2, 3, 1, 4, 4, 0, 3]
BASE, NEW = 75.0, 100.0 * 2 / 6
OVERALL = 100.0 * 5 / 10


def evaluate(cfg, labels=LABELS, predictions=PREDICTIONS, num_classes=5, batch=4):
    """Feed the prediction set in batches of ``batch`` and evaluate."""
    evaluator = Classification(cfg)
    for start in range(0, len(labels), batch):
        evaluator.process(
            one_hot_logits(predictions[start:start + batch], num_classes),
            torch.tensor(labels[start:start + batch]),
        )
    return evaluator.evaluate()


def test_base_new_hm_on_a_hand_made_prediction_set(capsys):
    results = evaluate(openworld_cfg())
    hm = 2 * BASE * NEW / (BASE + NEW)
    assert results["accuracy"] == pytest.approx(OVERALL)
    assert results["base_accuracy"] == pytest.approx(BASE)
    assert results["new_accuracy"] == pytest.approx(NEW)
    assert results["hm"] == pytest.approx(hm)
    # trainers report the first value, so accuracy stays first and the new keys come last
    assert list(results)[:4] == ["accuracy", "error", "macro_f1", "error_rate"]
    assert list(results)[4:] == ["base_accuracy", "new_accuracy", "hm"]
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[-3:] == ["* base_accuracy: 75.0%", "* new_accuracy: 33.3%", f"* hm: {hm:.1f}%"]
    assert lines.index("* macro_f1: " + f"{results['macro_f1']:.1f}%") < len(lines) - 3


def test_metrics_are_absent_unless_asked(capsys):
    results = evaluate(openworld_cfg(enabled=False))
    assert "base_accuracy" not in results and "hm" not in results
    assert "base_accuracy" not in capsys.readouterr().out


def test_only_allowed_on_the_all_class_label_space():
    with pytest.raises(ValueError, match=r"TEST.OPENWORLD_METRICS.*SUBSAMPLE_CLASSES.*'new'"):
        Classification(openworld_cfg(subsample="new"))


def test_a_half_without_images_is_reported_not_zeroed(capsys):
    results = evaluate(openworld_cfg(), labels=[0, 1, 2, 1], predictions=[0, 1, 4, 1])
    assert "base_accuracy" not in results and "new_accuracy" not in results and "hm" not in results
    assert "no test image belongs to the new classes" in capsys.readouterr().out


def test_even_and_odd_class_counts_split_like_subsample_classes():
    # 4 classes: base = 0, 1; 3 classes: base = 0, 1 (ceil(3/2) = 2)
    labels = torch.tensor([0, 1, 2, 3])
    predictions = torch.tensor([0, 0, 2, 2])
    assert openworld_accuracies(labels, predictions, 4) == (50.0, 50.0)
    labels3, predictions3 = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 0])
    assert openworld_accuracies(labels3, predictions3, 3) == (100.0, 0.0)


def test_harmonic_mean_rule():
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(50.0, 0.0) == 0.0
    # parse_test_res keeps a torch-free copy; both must agree
    assert ptr.harmonic_mean(71.3, 42.9) == harmonic_mean(71.3, 42.9)


def test_mismatched_class_counts_between_batches_are_rejected():
    evaluator = Classification(openworld_cfg())
    evaluator.process(one_hot_logits([0, 1], 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="4 logit columns after 5"):
        evaluator.process(one_hot_logits([0, 1], 4), torch.tensor([0, 1]))


def test_log_parser_reads_overall_and_openworld_lines_apart(tmp_path, capsys):
    """'* accuracy' must not pick up '* base_accuracy'/'* new_accuracy' lines in log.txt."""
    evaluate(openworld_cfg())
    log = tmp_path / "log.txt"
    log.write_text(capsys.readouterr().out)
    metrics = ptr.read_log_metrics(str(log), ("accuracy", "base_accuracy", "new_accuracy", "hm"), "=> result")
    assert metrics["accuracy"] == pytest.approx(OVERALL, abs=0.05)
    assert metrics["base_accuracy"] == pytest.approx(BASE, abs=0.05)
    assert metrics["new_accuracy"] == pytest.approx(NEW, abs=0.05)
    assert math.isclose(metrics["hm"], harmonic_mean(BASE, NEW), abs_tol=0.05)


# ------------------------------------------------ open-world metrics without the flag (issue 15)
def test_trained_classes_are_read_from_checkpoint_results_or_log(tmp_path):
    from dassl.engine.trainer import trained_subsample

    ours = {"state_dict": {}, "trainer_state": {"config": {"DATASET.SUBSAMPLE_CLASSES": "'base'"}}}
    assert trained_subsample(ours, str(tmp_path)) == "base"
    # no record in the checkpoint (released weights): results.json beside them, then log.txt
    assert trained_subsample({"state_dict": {}}, str(tmp_path)) is None
    (tmp_path / "log.txt").write_text(
        "** Config **\nDATALOADER:\n  NUM_WORKERS: 8\nDATASET:\n  NAME: EuroSAT\n  NUM_SHOTS: 16\n"
        "  SOURCE_DOMAINS: ()\n  SUBSAMPLE_CLASSES: base\n  VAL_PERCENT: 0.1\nINPUT:\n  SIZE: (224, 224)\n")
    assert trained_subsample({"state_dict": {}}, str(tmp_path)) == "base"
    (tmp_path / "results.json").write_text('{"subsample_classes": "all"}')
    assert trained_subsample({"state_dict": {}}, str(tmp_path)) == "all"
    # a SUBSAMPLE_CLASSES line of another config node does not count
    other = tmp_path / "other"
    other.mkdir()
    (other / "log.txt").write_text("TRAINER:\n  X:\n    SUBSAMPLE_CLASSES: base\n")
    assert trained_subsample({"state_dict": {}}, str(other)) is None


class _Loaded:
    """The part of a trainer that ``after_load_model`` looks at."""

    def __init__(self, setting, subsample, trained):
        from dassl.evaluation import Classification

        self.cfg = openworld_cfg(enabled=setting, subsample=subsample)
        self.evaluator = Classification(self.cfg)
        self.trained_classes = trained


@pytest.mark.parametrize("setting, subsample, trained, expected", [
    (None, "all", "base", True),     # BMIP's open-world protocol: automatic
    (None, "all", "all", False),     # trained on every class: not open-world
    (None, "all", None, False),      # nothing recorded: no guess
    (None, "new", "base", False),    # base-to-novel test on the new classes
    (False, "all", "base", False),   # explicit override: off
    (True, "all", "all", True),      # explicit override: on
])
def test_openworld_metrics_follow_what_the_model_was_trained_on(setting, subsample, trained, expected, capsys):
    from dassl.engine.trainer import SimpleTrainer

    trainer = _Loaded(setting, subsample, trained)
    SimpleTrainer.after_load_model(trainer)
    assert trainer.evaluator.openworld is expected
    assert ("open-world metrics" in capsys.readouterr().out) is (expected and setting is None)


def test_openworld_setting_must_be_true_false_or_none():
    with pytest.raises(ValueError, match="TEST.OPENWORLD_METRICS must be True, False or None"):
        Classification(openworld_cfg(enabled="yes"))


@pytest.mark.slow
def test_base_trained_model_tested_on_all_classes_reports_openworld_metrics_without_the_flag(
        tmp_path, eurosat_root, tiny_clip_path):
    import json
    from pathlib import Path

    from conftest import REPO, run_train

    common = ["--root", eurosat_root, "--seed", 1, "--trainer", "CoOp",
              "--dataset-config-file", REPO / "configs/datasets/eurosat.yaml",
              "--config-file", REPO / "configs/smoke/tiny_clip.yaml", "--backbone", tiny_clip_path]
    opts = ["DATASET.NUM_SHOTS", 2, "TRAINER.COOP.N_CTX", 2, "TRAINER.COOP.PREC", "fp32", "OPTIM.MAX_EPOCH", 1]
    trained = tmp_path / "train_base"
    proc = run_train(*common, "--output-dir", trained, *opts, "DATASET.SUBSAMPLE_CLASSES", "base")
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = {}
    for name, extra in (("auto", []), ("off", ["TEST.OPENWORLD_METRICS", False])):
        out = tmp_path / f"test_all_{name}"
        proc = run_train("--eval-only", "--model-dir", trained, "--load-epoch", 1, *common, "--output-dir", out,
                         *opts, "DATASET.SUBSAMPLE_CLASSES", "all", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[name] = (json.loads(Path(out, "results.json").read_text()), Path(out, "log.txt").read_text())
    summary, log = results["auto"]
    assert summary["trained_classes"] == "base" and summary["num_classes"] == 10
    metrics = summary["metrics"]
    for key in ("base_accuracy", "new_accuracy", "hm"):
        assert f"* {key}: {metrics[key]:.1f}%" in log
    assert metrics["hm"] == pytest.approx(harmonic_mean(metrics["base_accuracy"], metrics["new_accuracy"]))
    assert "The model was trained on the base classes and is tested on all classes" in log
    summary_off, log_off = results["off"]
    assert "hm" not in summary_off["metrics"] and "* hm:" not in log_off
    assert summary_off["metrics"]["accuracy"] == metrics["accuracy"]
