"""parse_test_res.py: values read from results.json / log.txt, mean +- std over seeds, warnings."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import parse_test_res as ptr  # noqa: E402


def write_results_json(run_dir, accuracy, complete=True, **extra_metrics):
    """A results.json as the trainer writes it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = {"accuracy": accuracy, "error": 100 - accuracy, "macro_f1": accuracy - 1.0,
               "total": 8100, "correct": int(81 * accuracy)}
    metrics.update(extra_metrics)
    content = {"complete": complete, "trainer": "CoOp", "dataset": "EuroSAT", "backbone": "ViT-B/16",
               "seed": 1, "num_shots": 16, "subsample_classes": "all", "split": "test",
               "metrics": metrics, "epoch": 10, "wall_time_s": 1.0, "output_dir": str(run_dir), "config": {}}
    (run_dir / "results.json").write_text(json.dumps(content))


def dassl_result_block(accuracy, macro_f1=50.0):
    """The lines Dassl's evaluator prints for one evaluation."""
    return (
        "=> result\n"
        "* total: 8,100\n"
        "* correct: 7,000\n"
        f"* accuracy: {accuracy:.1f}%\n"
        f"* error: {100 - accuracy:.1f}%\n"
        f"* macro_f1: {macro_f1:.1f}%\n"
    )


def write_train_log(run_dir, val_accuracy, test_accuracy):
    """log.txt of a training run: a validation result mid-training, then the final test."""
    run_dir.mkdir(parents=True, exist_ok=True)
    text = (
        "Setting fixed seed: 1\n"
        "epoch [1/10] batch [5/5] loss 1.2\n"
        "Evaluate on the *val* set\n"
        + dassl_result_block(val_accuracy)
        + "Finish training\n"
        "Deploy the last-epoch model\n"
        "Evaluate on the *test* set\n"
        + dassl_result_block(test_accuracy)
        + "Elapsed: 0:00:10\n"
    )
    (run_dir / "log.txt").write_text(text)


def write_eval_log(run_dir, accuracy):
    """log.txt of an eval-only run (no 'Finish training')."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log.txt").write_text("Loading weights\nEvaluate on the *test* set\n" + dassl_result_block(accuracy))


def summary_line(output, keyword="accuracy"):
    """The '* keyword: mean% +- spread%' line of the printed summary, as two floats."""
    for line in output.splitlines():
        if line.startswith(f"* {keyword}:") and "+-" in line:
            mean, spread = line.split(":", 1)[1].replace("%", "").split("+-")
            return float(mean), float(spread)
    raise AssertionError(f"no summary line in:\n{output}")


@pytest.fixture
def mixed_experiment(tmp_path):
    """seed1/seed2 with results.json, seed3 with only a training log.txt."""
    experiment = tmp_path / "exp"
    write_results_json(experiment / "seed1", 80.0)
    write_results_json(experiment / "seed2", 84.0)
    write_train_log(experiment / "seed3", val_accuracy=99.0, test_accuracy=85.0)
    return experiment


def test_mixed_json_and_log_runs_give_coop_mean_and_population_std(mixed_experiment, capsys):
    summaries = ptr.parse_experiment(str(mixed_experiment))
    out = capsys.readouterr().out

    values = [80.0, 84.0, 85.0]  # seed3's value is the final test, not the 99.0 validation
    assert summaries["accuracy"].values == values
    assert summaries["accuracy"].mean == pytest.approx(83.0)
    assert summaries["accuracy"].spread == pytest.approx(np.std(values))  # ddof=0, as CoOp
    assert summary_line(out) == (83.00, round(float(np.std(values)), 2))
    assert f"Summary of directory: {mixed_experiment}" in out
    assert f"file: {mixed_experiment / 'seed1' / 'results.json'}. accuracy: 80.00%." in out
    assert f"file: {mixed_experiment / 'seed3' / 'log.txt'}. accuracy: 85.00%." in out


def test_ci95_is_196_std_over_sqrt_n(mixed_experiment, capsys):
    summaries = ptr.parse_experiment(str(mixed_experiment), ci95=True)
    expected = 1.96 * np.std([80.0, 84.0, 85.0]) / math.sqrt(3)
    assert summaries["accuracy"].spread == pytest.approx(expected)
    assert summary_line(capsys.readouterr().out)[1] == round(expected, 2)


def test_collect_and_aggregate_are_usable_without_printing(mixed_experiment, capsys):
    results = ptr.collect_results(str(mixed_experiment), keywords=("accuracy", "macro_f1"))
    assert list(results) == [str(mixed_experiment / f"seed{i}") for i in (1, 2, 3)]
    assert results[str(mixed_experiment / "seed1")] == {"accuracy": 80.0, "macro_f1": 79.0}
    assert results[str(mixed_experiment / "seed3")] == {"accuracy": 85.0, "macro_f1": 50.0}
    summaries = ptr.aggregate_over_seeds(results)
    assert summaries["macro_f1"].mean == pytest.approx((79.0 + 83.0 + 50.0) / 3)
    assert summaries["accuracy"].num_runs == 3
    assert capsys.readouterr().out == ""


def test_keyword_selects_another_metric(tmp_path, capsys):
    write_results_json(tmp_path / "seed1", 80.0)  # macro_f1 79
    write_train_log(tmp_path / "seed2", val_accuracy=10.0, test_accuracy=70.0)  # macro_f1 50
    summaries = ptr.parse_experiment(str(tmp_path), keyword="macro_f1")
    assert summaries["macro_f1"].values == [79.0, 50.0]
    assert summary_line(capsys.readouterr().out, "macro_f1") == (64.50, 14.50)


def test_training_log_without_finish_line_is_a_warning_not_a_zero(tmp_path, capsys):
    write_results_json(tmp_path / "seed1", 80.0)
    crashed = tmp_path / "seed2"
    crashed.mkdir()
    (crashed / "log.txt").write_text("Evaluate on the *val* set\n" + dassl_result_block(55.0))
    summaries = ptr.parse_experiment(str(tmp_path))
    captured = capsys.readouterr()
    assert summaries["accuracy"].values == [80.0]
    assert str(crashed / "log.txt") in captured.err and "Finish training" in captured.err


def test_test_log_mode_reads_eval_only_logs(tmp_path, capsys):
    write_eval_log(tmp_path / "seed1", 60.0)
    write_eval_log(tmp_path / "seed2", 64.0)
    assert ptr.parse_experiment(str(tmp_path)) == {}  # no 'Finish training' in eval-only logs
    assert "nothing found" in capsys.readouterr().err
    summaries = ptr.parse_experiment(str(tmp_path), test_log=True)
    assert summaries["accuracy"].values == [60.0, 64.0]
    assert summary_line(capsys.readouterr().out) == (62.00, 2.00)


def test_missing_empty_and_incomplete_runs_are_warned_and_left_out(tmp_path, capsys):
    write_results_json(tmp_path / "seed1", 80.0)
    (tmp_path / "seed2").mkdir()
    write_results_json(tmp_path / "seed3", 10.0, complete=False)
    (tmp_path / "seed4").mkdir()
    (tmp_path / "seed4" / "results.json").write_text("{not json")
    (tmp_path / ".hidden").mkdir()
    summaries = ptr.parse_experiment(str(tmp_path))
    err = capsys.readouterr().err
    assert summaries["accuracy"].values == [80.0]
    assert summaries["accuracy"].mean == 80.0
    assert f"no results.json or log.txt in {tmp_path / 'seed2'}" in err
    assert f"{tmp_path / 'seed3' / 'results.json'} is marked incomplete" in err
    assert f"cannot read {tmp_path / 'seed4' / 'results.json'}" in err
    assert ".hidden" not in err


def test_json_without_keyword_falls_back_to_log(tmp_path):
    run = tmp_path / "seed1"
    write_train_log(run, val_accuracy=1.0, test_accuracy=2.0)
    write_results_json(run, 80.0)
    with open(run / "log.txt", "a") as f:
        f.write("* average: 77.5%\n")
    assert ptr.collect_results(str(tmp_path), keywords=("average",)) == {str(run): {"average": 77.5}}
    assert ptr.collect_results(str(tmp_path)) == {str(run): {"accuracy": 80.0}}


def test_directory_that_is_itself_a_run(tmp_path):
    write_results_json(tmp_path / "ZeroshotCLIP" / "vit_b16" / "eurosat", 48.4)
    (tmp_path / "ZeroshotCLIP" / "vit_b16" / "eurosat" / "tensorboard").mkdir()
    run = str(tmp_path / "ZeroshotCLIP" / "vit_b16" / "eurosat")
    assert ptr.collect_results(run) == {run: {"accuracy": 48.4}}


def test_multi_exp_averages_experiment_means_and_skips_empty_ones(tmp_path, capsys):
    write_results_json(tmp_path / "exp-1" / "seed1", 70.0)
    write_results_json(tmp_path / "exp-1" / "seed2", 72.0)
    write_results_json(tmp_path / "exp-2" / "seed1", 90.0)
    (tmp_path / "exp-3" / "seed1").mkdir(parents=True)
    averages = ptr.parse_multi_experiment(str(tmp_path))
    captured = capsys.readouterr()
    assert averages == {"accuracy": pytest.approx(80.5)}
    assert "Average performance\n* accuracy: 80.50%" in captured.out
    assert f"nothing found in {tmp_path / 'exp-3'}" in captured.err


def test_seed_dirs_are_in_natural_order(tmp_path):
    for seed in (10, 2, 1):
        write_results_json(tmp_path / f"seed{seed}", float(seed))
    assert [os.path.basename(d) for d in ptr.collect_results(str(tmp_path))] == ["seed1", "seed2", "seed10"]


def run_cli(*args):
    return subprocess.run([sys.executable, str(REPO_ROOT / "parse_test_res.py"), *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_summary_and_exits_nonzero_when_nothing_found(mixed_experiment, tmp_path):
    ok = run_cli(str(mixed_experiment), "--ci95")
    assert ok.returncode == 0, ok.stderr
    expected = 1.96 * np.std([80.0, 84.0, 85.0]) / math.sqrt(3)
    assert summary_line(ok.stdout) == (83.00, round(expected, 2))

    missing = run_cli(str(tmp_path / "does-not-exist"))
    assert missing.returncode == 1
    assert f"directory not found: {tmp_path / 'does-not-exist'}" in missing.stderr

    (tmp_path / "empty" / "seed1").mkdir(parents=True)
    empty = run_cli(str(tmp_path / "empty"))
    assert empty.returncode == 1
    assert "no 'accuracy' result found" in empty.stderr


# ---------------------------------------------------------------------------------------------
# N of M runs, precision, fallback, --strict
# ---------------------------------------------------------------------------------------------


def write_log_only(run_dir, printed):
    """A finished run that left only log.txt, its test accuracy printed as ``printed`` (text)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log.txt").write_text(
        f"Finish training\nEvaluate on the *test* set\n=> result\n* accuracy: {printed}%\n")


def test_summary_says_n_of_m_runs_and_names_each_skipped_run_once(tmp_path, capsys):
    write_results_json(tmp_path / "seed1", 80.0)
    write_results_json(tmp_path / "seed2", 82.0)
    (tmp_path / "seed3").mkdir()  # never ran
    write_results_json(tmp_path / "seed4", 10.0, complete=False)
    crashed = tmp_path / "seed5"  # unreadable results.json, and its log has no final result either
    crashed.mkdir()
    (crashed / "results.json").write_text("{not json")
    (crashed / "log.txt").write_text("epoch [1/10]\n")
    summaries = ptr.parse_experiment(str(tmp_path))
    captured = capsys.readouterr()
    assert summaries["accuracy"].num_runs == 2 and summaries["accuracy"].expected_runs == 5
    assert "* accuracy: 81.00% +- 1.00% (2 of 5 runs)\n" in captured.out
    warnings = captured.err.splitlines()
    for skipped in ("seed3", "seed4", "seed5"):
        naming = [line for line in warnings if f"{tmp_path / skipped}" in line]
        assert len(naming) == 1 and naming[0].startswith("WARNING: "), (skipped, captured.err)
    assert not any(f"{tmp_path / kept}" in captured.err for kept in ("seed1", "seed2"))


def test_complete_experiment_keeps_coops_summary_line(tmp_path, capsys):
    write_results_json(tmp_path / "seed1", 80.0)
    write_results_json(tmp_path / "seed2", 82.0)
    summaries = ptr.parse_experiment(str(tmp_path))
    captured = capsys.readouterr()
    assert summaries["accuracy"].expected_runs == 2 and summaries["accuracy"].runs_note() == ""
    assert f"Summary of directory: {tmp_path}\n* accuracy: 81.00% +- 1.00%\n===\n" in captured.out
    assert captured.err == ""


def test_json_and_log_values_of_one_mean_are_taken_at_the_log_precision(tmp_path, capsys):
    # The same true accuracy: seed1 kept results.json (exact), seed2 only its log (1 decimal).
    write_results_json(tmp_path / "seed1", 71.2345)
    write_log_only(tmp_path / "seed2", "71.2")
    assert np.std([71.2345, 71.2]) > 0.017  # what mixing the precisions would report
    summaries = ptr.parse_experiment(str(tmp_path))
    captured = capsys.readouterr()
    assert summaries["accuracy"].values == [71.2, 71.2]
    assert summaries["accuracy"].spread == 0.0
    assert summaries["accuracy"].mean == pytest.approx(71.2, abs=1e-12)
    assert summary_line(captured.out) == (71.20, 0.00)
    notes = [line for line in captured.err.splitlines() if line.startswith("NOTE:")]
    assert len(notes) == 1 and str(tmp_path) in notes[0] and "1 of 2 runs" in notes[0], captured.err


def test_precision_rule_rounds_as_dassl_prints_and_leaves_pure_means_exact(tmp_path, capsys):
    # 71.25 is exactly representable: Dassl's f"{:.1f}" prints 71.2 (round half to even), 71.26 -> 71.3
    for seed, accuracy in ((1, 71.25), (2, 71.26)):
        write_results_json(tmp_path / "mixed" / f"seed{seed}", accuracy)
    write_log_only(tmp_path / "mixed" / "seed3", "71.2")
    assert ptr.parse_experiment(str(tmp_path / "mixed"))["accuracy"].values == [71.2, 71.3, 71.2]
    # only results.json: exact values, no note
    for seed, accuracy in ((1, 71.2345), (2, 71.2355)):
        write_results_json(tmp_path / "exact" / f"seed{seed}", accuracy)
    capsys.readouterr()
    exact = ptr.parse_experiment(str(tmp_path / "exact"))["accuracy"]
    assert exact.values == [71.2345, 71.2355] and exact.mean == pytest.approx(71.235, abs=1e-12)
    # only logs: the printed values, no note
    for seed, printed in ((1, "71.2"), (2, "71.4")):
        write_log_only(tmp_path / "logs" / f"seed{seed}", printed)
    assert ptr.parse_experiment(str(tmp_path / "logs"))["accuracy"].values == [71.2, 71.4]
    assert "NOTE" not in capsys.readouterr().err


def test_unreadable_results_json_falls_back_to_log(tmp_path, capsys):
    corrupt = tmp_path / "seed1"
    write_train_log(corrupt, val_accuracy=10.0, test_accuracy=70.0)
    (corrupt / "results.json").write_text('{"complete": true, "metrics": {"accuracy": 7')  # cut short
    no_metrics = tmp_path / "seed2"
    write_train_log(no_metrics, val_accuracy=10.0, test_accuracy=74.0)
    (no_metrics / "results.json").write_text("[]")
    incomplete = tmp_path / "seed3"  # marked incomplete: no fallback, even with a finished log
    write_train_log(incomplete, val_accuracy=10.0, test_accuracy=99.0)
    write_results_json(incomplete, 99.0, complete=False)
    summaries = ptr.parse_experiment(str(tmp_path))
    captured = capsys.readouterr()
    assert summaries["accuracy"].values == [70.0, 74.0]
    assert f"file: {corrupt / 'log.txt'}. accuracy: 70.00%." in captured.out
    assert "(2 of 3 runs)" in captured.out
    assert f"cannot read {corrupt / 'results.json'}" in captured.err
    assert f"read {corrupt / 'log.txt'} instead" in captured.err
    assert (f"{no_metrics / 'results.json'} has no 'metrics' object; read {no_metrics / 'log.txt'} instead"
            in captured.err)
    assert f"{incomplete / 'results.json'} is marked incomplete" in captured.err


def test_strict_exit_status_in_experiment_mode(tmp_path, capsys):
    complete = tmp_path / "complete"
    for seed, accuracy in ((1, 80.0), (2, 82.0), (3, 84.0)):
        write_results_json(complete / f"seed{seed}", accuracy)
    assert ptr.main([str(complete), "--strict"]) == 0
    assert "--strict" not in capsys.readouterr().err

    partial = tmp_path / "partial"
    for seed, accuracy in ((1, 80.0), (2, 82.0)):
        write_results_json(partial / f"seed{seed}", accuracy)
    (partial / "seed3").mkdir()
    assert ptr.main([str(partial)]) == 0  # without --strict: warnings only, as before
    capsys.readouterr()
    assert ptr.main([str(partial), "--strict"]) == 1
    captured = capsys.readouterr()
    assert "* accuracy: 81.00% +- 1.00% (2 of 3 runs)" in captured.out  # printed before failing
    assert captured.err.splitlines()[-1] == (
        "ERROR: --strict: 1 of 3 expected runs is missing or incomplete (see the warnings above)")

    # --multi-exp counts over every experiment
    assert ptr.main([str(tmp_path), "--multi-exp", "--strict"]) == 1
    assert "ERROR: --strict: 1 of 6 expected runs is missing" in capsys.readouterr().err
    (partial / "seed3").rmdir()
    assert ptr.main([str(tmp_path), "--multi-exp", "--strict"]) == 0


def test_strict_cli_exit_codes(tmp_path):
    write_results_json(tmp_path / "seed1", 80.0)
    write_results_json(tmp_path / "seed2", 82.0)
    assert run_cli(str(tmp_path), "--strict").returncode == 0
    write_results_json(tmp_path / "seed3", 50.0, complete=False)
    assert run_cli(str(tmp_path)).returncode == 0
    strict = run_cli(str(tmp_path), "--strict")
    assert strict.returncode == 1
    assert "(2 of 3 runs)" in strict.stdout and "1 of 3 expected runs" in strict.stderr
