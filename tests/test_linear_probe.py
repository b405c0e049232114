"""LinearProbeCLIP: CoOp's lpclip protocol (C searched on val) as a trainer of the framework.

Unit tests check the search against a reference written directly on scikit-learn the way
lpclip/linear_probe.py runs it; the end-to-end tests fit the probe with train.py on the tiny
CLIP and the generated EuroSAT, evaluate it with --eval-only, and refuse new classes."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, run_train
from tests.helpers.methods import make_cfg
from trainers.linear_probe import (LPCLIP_C_GRID, LinearProbeCLIP, classifier_tensors,
                                   fit_linear_probe, search_c)

sklearn_linear = pytest.importorskip("sklearn.linear_model")
from threadpoolctl import threadpool_limits  # noqa: E402  (installed with scikit-learn)

SMOKE_CFG = str(REPO / "configs/smoke/tiny_clip.yaml")
EUROSAT_CFG = str(REPO / "configs/datasets/eurosat.yaml")


# ------------------------------------------------------------------ reference: lpclip's loop
def lpclip_reference(x_train, y_train, x_val, y_val, steps=8):
    """lpclip/linear_probe.py's search, step by step on scikit-learn: the grid, then ``steps``
    rounds fitting both ends (kept in linear space, bisected in log10) and keeping the better
    one (the left one on a tie). Returns (C, classifier, val accuracy)."""
    def fit(c):
        return sklearn_linear.LogisticRegression(solver="lbfgs", max_iter=1000, C=c).fit(x_train, y_train)

    def val_acc(clf):
        return 100.0 * np.mean(clf.predict(x_val) == y_val)

    grid = [1e6, 1e4, 1e2, 1, 1e-2, 1e-4, 1e-6]
    accs = [val_acc(fit(c)) for c in grid]
    peak = grid[int(np.argmax(accs))]
    left, right = 0.1 * peak, 10 * peak
    final = None
    for _ in range(steps):
        clf_left, clf_right = fit(left), fit(right)
        acc_left, acc_right = val_acc(clf_left), val_acc(clf_right)
        if acc_left < acc_right:
            final = (right, clf_right, acc_right)
            left, right = 0.5 * (np.log10(right) + np.log10(left)), np.log10(right)
        else:
            final = (left, clf_left, acc_left)
            right, left = 0.5 * (np.log10(right) + np.log10(left)), np.log10(left)
        left, right = np.power(10, left), np.power(10, right)
    return final


def blobs(seed, n_cls=4, dim=3, n_train=10, n_val=4, spread=2.0):
    """Overlapping Gaussian classes, so that the validation accuracy depends on C (and, not
    separable, every fit converges in a few dozen L-BFGS steps)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_cls, dim))

    def draw(n):
        y = np.repeat(np.arange(n_cls), n)
        return centres[y] + spread * rng.normal(size=(len(y), dim)) + 3.0, y

    return draw(n_train) + draw(n_val)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_search_matches_lpclip_on_sklearn(seed):
    x_train, y_train, x_val, y_val = blobs(seed)
    with threadpool_limits(limits=1, user_api="blas"):  # tiny matrices: threads only slow it down
        c_ref, clf_ref, acc_ref = lpclip_reference(x_train, y_train, x_val, y_val)
    clf, info = fit_linear_probe(x_train, y_train, x_val, y_val, log=lambda *_: None)
    assert math.isclose(info["C"], c_ref, rel_tol=1e-9), (info["C"], c_ref)
    assert info["val_accuracy"] == acc_ref
    np.testing.assert_allclose(clf.coef_, clf_ref.coef_, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(clf.predict(x_val), clf_ref.predict(x_val))
    # the grid comes first, in lpclip's order; then at most one new C per step plus the first step's two
    trace = [c for c, _ in info["search"]]
    assert trace[:7] == list(LPCLIP_C_GRID) and len(trace) <= 7 + 8 + 1
    assert info["C"] in trace and dict(info["search"])[info["C"]] == info["val_accuracy"]
    assert info["train_accuracy"] == 100.0 * np.mean(clf.predict(x_train) == y_train)


def test_search_rules_on_known_scores():
    # unimodal in log10(C), peak at C = 3: the grid picks 1, the bisection then closes in on 3
    calls = []

    def peaked(c):
        calls.append(c)
        return -abs(math.log10(c) - math.log10(3.0))

    c, score, trace = search_c(peaked, steps=8)
    assert abs(math.log10(c) - math.log10(3.0)) < 2.0 / 2 ** 7
    assert len(calls) == len(set(calls)) == len(trace) <= 7 + 9  # an end carried over is not refitted
    assert score == peaked(c)
    # flat scores: the grid's first value (the largest C) wins, every tie then keeps the left end
    c, score, trace = search_c(lambda c: 50.0, steps=8)
    assert c == 1e5 and score == 50.0
    # no bisection: the best grid value
    c, _, trace = search_c(lambda c: -abs(math.log10(c)), steps=0)
    assert c == 1.0 and len(trace) == 7


@pytest.mark.parametrize("n_cls", [2, 5])
def test_classifier_tensors_predict_like_sklearn(n_cls):
    rng = np.random.default_rng(n_cls)
    x = rng.normal(size=(60, 7))
    y = np.arange(60) % n_cls
    x[:, 0] += y  # learnable
    clf = sklearn_linear.LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    weight, bias = classifier_tensors(clf, n_cls)
    assert weight.shape == (n_cls, 7) and weight.dtype == torch.float64
    logits = torch.from_numpy(x) @ weight.t() + bias
    np.testing.assert_array_equal(logits.argmax(1).numpy(), clf.predict(x))
    with pytest.raises(ValueError, match=r"no training image of class\(es\) \[" + str(n_cls) + r"\]"):
        classifier_tensors(clf, n_cls + 1)


def test_config_checks():
    trainer = LinearProbeCLIP.__new__(LinearProbeCLIP)
    cfg = make_cfg()
    trainer.check_cfg(cfg)  # the defaults are valid
    cfg.DATASET.SUBSAMPLE_CLASSES = "new"
    with pytest.raises(ValueError, match="no classifier for classes it was not fitted on"):
        trainer.check_cfg(cfg)
    cfg = make_cfg(LINEAR_PROBE={"C_GRID": ["1e6", 1.0]})
    with pytest.raises(ValueError, match="C_GRID must be a non-empty list of positive numbers"):
        trainer.check_cfg(cfg)
    assert list(make_cfg().TRAINER.LINEAR_PROBE.C_GRID) == list(LPCLIP_C_GRID)


# ------------------------------------------------------------------------- end to end
def lp_args(root, clip_path, out, *extra, flags=()):
    return [*flags, "--root", root, "--seed", 1, "--trainer", "LinearProbeCLIP",
            "--dataset-config-file", EUROSAT_CFG, "--config-file", SMOKE_CFG, "--output-dir", out,
            "--backbone", clip_path, "--device", "cpu", "DATASET.NUM_SHOTS", 4,
            "TRAINER.LINEAR_PROBE.PREC", "fp32", *extra]


def ok(proc):
    assert proc.returncode == 0, (f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\n"
                                  f"STDERR:\n{proc.stderr[-3000:]}")
    return proc


def read_results(out):
    with open(os.path.join(out, "results.json")) as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory, eurosat_root, tiny_clip_path):
    out = str(tmp_path_factory.mktemp("runs") / "lp")
    proc = ok(run_train(*lp_args(eurosat_root, tiny_clip_path, out)))
    return out, proc


@pytest.mark.slow
def test_probe_fits_chooses_c_on_val_and_writes_dassl_outputs(probe_run):
    out, proc = probe_run
    log = Path(out, "log.txt").read_text()
    for line in ("=> result", "* total:", "* correct:", "* accuracy:", "* error:", "* macro_f1:",
                 "Linear probe: searching C on the validation split", "Linear probe: chosen C = "):
        assert line in log, line
    assert "epoch [" not in log  # no gradient training
    res = read_results(out)
    assert res["complete"] is True and res["trainer"] == "LinearProbeCLIP" and res["split"] == "test"
    assert res["num_shots"] == 4 and res["epoch"] == 1 and res["max_epoch"] == 1
    m = res["metrics"]
    assert m["total"] == 30 and abs(m["accuracy"] + m["error"] - 100.0) < 1e-6
    assert [l for l in log.splitlines() if l.startswith("* accuracy:")][-1] == f"* accuracy: {m['accuracy']:.1f}%"
    probe = res["linear_probe"]
    assert probe["num_train"] == 40 and probe["num_val"] == 20  # 4 shots; val min(4, 4) shots of 2 per class
    searched = dict((c, acc) for c, acc in probe["search"])
    assert 7 < len(searched) <= 7 + 8 + 1 and probe["C"] in searched and searched[probe["C"]] == probe["val_accuracy"]
    assert f"chosen C = {probe['C']:.6g}" in log
    assert probe["train_accuracy"] >= 90.0  # it can fit the few-shot features
    ckpt = torch.load(Path(out, "linear_probe", "model.pth.tar-1"), weights_only=True)
    assert sorted(ckpt["state_dict"]) == ["C", "bias", "classnames_sha256", "val_accuracy", "weight"]
    assert tuple(ckpt["state_dict"]["weight"].shape) == (10, 32) and float(ckpt["state_dict"]["C"]) == probe["C"]
    assert Path(out, "linear_probe", "model-best.pth.tar").is_file()


@pytest.mark.slow
def test_eval_only_reproduces_the_accuracy(tmp_path, probe_run, eurosat_root, tiny_clip_path):
    out, _ = probe_run
    eval_out = str(tmp_path / "eval")
    proc = ok(run_train(*lp_args(eurosat_root, tiny_clip_path, eval_out,
                                 flags=("--eval-only", "--model-dir", out, "--load-epoch", 1))))
    assert "searching C" not in proc.stdout
    trained, evaluated = read_results(out), read_results(eval_out)
    assert evaluated["metrics"] == trained["metrics"]
    assert evaluated["linear_probe"]["C"] == trained["linear_probe"]["C"]
    assert evaluated["linear_probe"]["val_accuracy"] == trained["linear_probe"]["val_accuracy"]


@pytest.mark.slow
def test_new_classes_are_refused_in_one_line(tmp_path, eurosat_root, tiny_clip_path):
    proc = run_train(*lp_args(eurosat_root, tiny_clip_path, str(tmp_path / "new"), "DATASET.SUBSAMPLE_CLASSES", "new"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no classifier for classes it was not fitted on" in proc.stderr
