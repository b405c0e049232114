"""Turn run directories into mean +- std over seeds (CoOp's parse_test_res.py, same CLI).

A run directory is what one ``train.py`` call writes. Its metric is read from
``results.json`` when that file exists and is complete, otherwise from ``log.txt``
(the last ``* accuracy: X%`` line after the end-of-training marker).

    output/my_experiment/          python parse_test_res.py output/my_experiment
        seed1/ results.json        python parse_test_res.py output/my_experiment --ci95
        seed2/ log.txt             python parse_test_res.py output/my_experiment --keyword macro_f1
        seed3/ ...                 python parse_test_res.py output/evaluation/... --test-log

    output/sweep/exp-1/seed*/ ...  python parse_test_res.py output/sweep --multi-exp
    output/sweep/exp-2/seed*/ ...

``--test-log`` is for eval-only runs, whose logs have no "Finish training" line.
A directory that itself holds results.json or log.txt (e.g. a zero-shot run) is one run.
Missing or unreadable runs are reported on stderr and left out; they never count as zero.

The two building blocks, ``collect_results`` ({run_dir: {metric: value}}) and
``aggregate_over_seeds`` ({metric: SeedSummary}), are importable for table builders.
"""
import argparse
import json
import math
import os
import os.path as osp
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

RESULTS_FILE = "results.json"
LOG_FILE = "log.txt"
TRAIN_END_SIGNAL = "Finish training"
TEST_END_SIGNAL = "=> result"


@dataclass
class SeedSummary:
    """Mean and spread of one metric over the runs (seeds) of an experiment.

    ``spread`` is the population std (CoOp's ``np.std``) or, with ``ci95``, the
    half-width 1.96 * std / sqrt(n) of the 95% confidence interval.
    """

    mean: float
    spread: float
    values: List[float] = field(default_factory=list)

    @property
    def num_runs(self) -> int:
        """How many runs the summary is computed from."""
        return len(self.values)


def warn(message: str) -> None:
    """Report a skipped run on stderr, so stdout keeps only results."""
    print(f"WARNING: {message}", file=sys.stderr)


def end_signal_for(test_log: bool) -> str:
    """The log line after which result lines count: test-only logs have no training end."""
    return TEST_END_SIGNAL if test_log else TRAIN_END_SIGNAL


def metric_line_pattern(keyword: str) -> "re.Pattern[str]":
    """Regex for Dassl's result line of ``keyword``, e.g. ``* accuracy: 91.2%``."""
    return re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")


def _natural_key(name: str):
    """Sort key putting seed2 before seed10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_subdirs(directory: str) -> List[str]:
    """Non-hidden subdirectories of ``directory``, full paths, in natural order."""
    names = [
        name
        for name in os.listdir(directory)
        if not name.startswith(".") and osp.isdir(osp.join(directory, name))
    ]
    return [osp.join(directory, name) for name in sorted(names, key=_natural_key)]


def is_run_dir(directory: str) -> bool:
    """True when ``directory`` is the output of one train.py call."""
    return osp.isfile(osp.join(directory, RESULTS_FILE)) or osp.isfile(osp.join(directory, LOG_FILE))


def read_results_json(path: str, keywords: Sequence[str]) -> Optional[Dict[str, float]]:
    """Metrics ``keywords`` from a results.json file.

    Returns None (after a warning) when the file is unreadable or marked incomplete,
    and a dict without the keywords the file does not hold.
    """
    try:
        with open(path, "r") as f:
            content = json.load(f)
    except (OSError, ValueError) as error:
        warn(f"cannot read {path}: {error}")
        return None
    if not isinstance(content, dict) or not isinstance(content.get("metrics"), dict):
        warn(f"{path} has no 'metrics' object")
        return None
    if content.get("complete") is False:
        warn(f"{path} is marked incomplete (the run did not finish)")
        return None
    metrics = {}
    for keyword in keywords:
        value = content["metrics"].get(keyword)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            warn(f"{path}: metrics.{keyword} is not a number: {value!r}")
            continue
        metrics[keyword] = float(value)
    return metrics


def read_log_metrics(path: str, keywords: Sequence[str], end_signal: str) -> Dict[str, float]:
    """Metrics ``keywords`` from a Dassl log.txt.

    Only lines after the first ``end_signal`` line count, and for each keyword the
    last matching ``* keyword: X%`` line wins (the final test follows any validation).
    """
    patterns = {keyword: metric_line_pattern(keyword) for keyword in keywords}
    metrics: Dict[str, float] = {}
    reached_end = False
    with open(path, "r", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line == end_signal:
                reached_end = True
            if not reached_end:
                continue
            for keyword, pattern in patterns.items():
                match = pattern.search(line)
                if match:
                    metrics[keyword] = float(match.group(1))
    return metrics


def read_run(run_dir: str, keywords: Sequence[str], end_signal: str):
    """Metrics of one run dir and the file they came from, or (None, None) after a warning.

    results.json is preferred; log.txt is used when results.json is absent or lacks
    a requested keyword (e.g. a metric only printed in the log).
    """
    json_path = osp.join(run_dir, RESULTS_FILE)
    log_path = osp.join(run_dir, LOG_FILE)
    has_json, has_log = osp.isfile(json_path), osp.isfile(log_path)
    if not has_json and not has_log:
        warn(f"no {RESULTS_FILE} or {LOG_FILE} in {run_dir}: run missing or not started")
        return None, None

    if has_json:
        metrics = read_results_json(json_path, keywords)
        if metrics is None:
            return None, None
        if all(keyword in metrics for keyword in keywords):
            return metrics, json_path
        if not has_log:
            missing = [keyword for keyword in keywords if keyword not in metrics]
            warn(f"{json_path} has no metric {', '.join(missing)} and there is no {LOG_FILE}")
            return None, None

    metrics = read_log_metrics(log_path, keywords, end_signal)
    if not metrics:
        lines = " / ".join(f"'* {keyword}: X%'" for keyword in keywords)
        warn(f"no {lines} line after '{end_signal}' in {log_path}")
        return None, None
    return metrics, log_path


def collect_results(
    directory: str,
    keywords: Sequence[str] = ("accuracy",),
    end_signal: str = TRAIN_END_SIGNAL,
    sources: Optional[Dict[str, str]] = None,
) -> "OrderedDict[str, Dict[str, float]]":
    """Read every run under ``directory`` into {run_dir: {metric: value}}.

    The runs are the non-hidden subdirectories of ``directory`` (one per seed), or
    ``directory`` itself when it holds results.json or log.txt. Runs without a value
    are warned about and left out. When ``sources`` is given, it is filled with
    {run_dir: file the values were read from}.
    """
    if not osp.isdir(directory):
        raise FileNotFoundError(f"directory not found: {directory}")
    run_dirs = [directory] if is_run_dir(directory) else list_subdirs(directory)
    if not run_dirs:
        warn(f"{directory} has no run subdirectories")
    results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
    for run_dir in run_dirs:
        metrics, source = read_run(run_dir, keywords, end_signal)
        if metrics:
            results[run_dir] = metrics
            if sources is not None:
                sources[run_dir] = source
    return results


def aggregate_over_seeds(
    results: Dict[str, Dict[str, float]], ci95: bool = False
) -> "OrderedDict[str, SeedSummary]":
    """Mean and std (or 95% CI half-width) of each metric over the runs in ``results``."""
    values_per_metric: "OrderedDict[str, List[float]]" = OrderedDict()
    for metrics in results.values():
        for name, value in metrics.items():
            values_per_metric.setdefault(name, []).append(value)
    summaries: "OrderedDict[str, SeedSummary]" = OrderedDict()
    for name, values in values_per_metric.items():
        std = float(np.std(values))
        spread = 1.96 * std / math.sqrt(len(values)) if ci95 else std
        summaries[name] = SeedSummary(mean=float(np.mean(values)), spread=spread, values=list(values))
    return summaries


def parse_experiment(
    directory: str, keyword: str = "accuracy", test_log: bool = False, ci95: bool = False
) -> "OrderedDict[str, SeedSummary]":
    """Print each run's value and the summary of one experiment; return the summary.

    Returns an empty dict (after a warning) when no run has a value.
    """
    print(f"Parsing files in {directory}")
    sources: Dict[str, str] = {}
    results = collect_results(directory, (keyword,), end_signal_for(test_log), sources)
    if not results:
        warn(f"nothing found in {directory}")
        return OrderedDict()
    for run_dir, metrics in results.items():
        values = " ".join(f"{name}: {value:.2f}%." for name, value in metrics.items())
        print(f"file: {sources[run_dir]}. {values}")
    summaries = aggregate_over_seeds(results, ci95=ci95)
    print("===")
    print(f"Summary of directory: {directory}")
    for name, summary in summaries.items():
        print(f"* {name}: {summary.mean:.2f}% +- {summary.spread:.2f}%")
    print("===")
    return summaries


def parse_multi_experiment(
    directory: str, keyword: str = "accuracy", test_log: bool = False, ci95: bool = False
) -> "OrderedDict[str, float]":
    """Summarize each sub-experiment of ``directory``, then print the average of their means."""
    if not osp.isdir(directory):
        raise FileNotFoundError(f"directory not found: {directory}")
    means_per_metric: "OrderedDict[str, List[float]]" = OrderedDict()
    for experiment_dir in list_subdirs(directory):
        for name, summary in parse_experiment(experiment_dir, keyword, test_log, ci95).items():
            means_per_metric.setdefault(name, []).append(summary.mean)
    averages = OrderedDict((name, float(np.mean(means))) for name, means in means_per_metric.items())
    if averages:
        print("Average performance")
        for name, average in averages.items():
            print(f"* {name}: {average:.2f}%")
    return averages


def build_arg_parser() -> argparse.ArgumentParser:
    """Command line of CoOp's parse_test_res.py."""
    parser = argparse.ArgumentParser(description="Mean and std of test results over seeds.")
    parser.add_argument("directory", type=str, help="experiment dir holding one subdir per seed")
    parser.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of std")
    parser.add_argument("--test-log", action="store_true", help="parse logs of eval-only runs")
    parser.add_argument("--multi-exp", action="store_true", help="directory holds several experiments")
    parser.add_argument("--keyword", default="accuracy", type=str, help="metric to extract, e.g. macro_f1")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (1 when nothing could be read)."""
    args = build_arg_parser().parse_args(argv)
    try:
        if args.multi_exp:
            found = parse_multi_experiment(args.directory, args.keyword, args.test_log, args.ci95)
        else:
            found = parse_experiment(args.directory, args.keyword, args.test_log, args.ci95)
    except FileNotFoundError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    if not found:
        print(f"ERROR: no '{args.keyword}' result found under {args.directory}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
