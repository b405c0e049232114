"""Turn run directories into mean +- std over seeds (CoOp's parse_test_res.py, same CLI).

A run directory is what one ``train.py`` call writes. Its metric is read from
``results.json`` (the exact value) when that file has it, otherwise from ``log.txt`` (the last
``* accuracy: X%`` line after the end-of-training marker, as printed: one decimal). A
results.json that cannot be read or parsed is replaced by log.txt when there is one (with a
warning naming the file); one marked ``"complete": false`` is an incomplete run, log or not.

    output/my_experiment/          python parse_test_res.py output/my_experiment
        seed1/ results.json        python parse_test_res.py output/my_experiment --ci95
        seed2/ log.txt             python parse_test_res.py output/my_experiment --keyword macro_f1
        seed3/ ...                 python parse_test_res.py output/xd/test/... --test-log

    output/sweep/exp-1/seed*/ ...  python parse_test_res.py output/sweep --multi-exp
    output/sweep/exp-2/seed*/ ...

``--test-log`` is for eval-only runs, whose logs have no "Finish training" line.
A directory that itself holds results.json or log.txt (e.g. a zero-shot run) is one run.
Missing or unreadable runs are named on stderr (one warning per run) and left out; they never
count as zero. The summary line is CoOp's, ``* accuracy: 71.23% +- 0.45%``, followed by
``(2 of 3 runs)`` when only 2 of the 3 run directories found have a value.

Precision: a mean never mixes exact results.json values with the log's rounded ones. When some
runs of a mean have only a log.txt value, every value of that mean is rounded as Dassl prints
it (``f"{value:.1f}"``, the log's decimals), i.e. to exactly what that run's log.txt shows, and
a NOTE on stderr says so once for that mean. So 71.2345 (results.json) and 71.2 (log.txt) give
a std of 0, not 0.017.

``--strict`` (both modes): after printing everything, exit with status 1 and a one-line count
when any expected run is missing or incomplete; without it such runs only cause warnings.

The two building blocks, ``collect_results`` ({run_dir: {metric: value}}) and
``aggregate_over_seeds`` ({metric: SeedSummary}), are importable for table builders.

Table mode turns a whole OUTPUT tree (the folders the protocol scripts write) into the
tables the papers print::

    python parse_test_res.py --table base2new OUTPUT [--format markdown|csv|latex]
        [--trainers CoOp MaPLe/vit_b16_c2_ep5_batch4_2ctx] [--std] [--plot base2new.png]
    python parse_test_res.py --table {openworld,xd,dg,fewshot} OUTPUT ...
    python parse_test_res.py --table composition OUTPUT [--rows methods|datasets] ...

    base2new   OUTPUT/base2new/train_base/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>  (Base)
               OUTPUT/base2new/test_new/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>    (New)
    openworld  OUTPUT/base2new/test_all/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>    (hm, accuracy)
    xd, dg     OUTPUT/xd/train/<source>/shots_<K>/<TRAINER>/<CFG>/seed<S>              (source)
               OUTPUT/xd/test/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>              (targets)
    fewshot    OUTPUT/fewshot/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>
    composition  the base2new runs of PromptSRC, PromptSRC_BMIP, PromptSRC_Bloom, CoPrompt,
               CoPrompt_BMIP and CoPrompt_Bloom (BMIP's Table 4: regularizer x base)

Cells are means over the seeds found anywhere in the table (or ``--seeds``); a missing or
incomplete run is named on stderr and a cell without any run is a gap ("-"), never a zero.
An average over datasets is a gap as soon as one of its datasets is.

A cell averaged over fewer runs than the table expects is footnoted, one footnote per distinct
``N of M runs``: markdown ``70.62¹`` with ``¹ 2 of 3 runs`` under the table, LaTeX
``70.62$^{1}$`` with ``$^{1}$ 2 of 3 runs`` lines after the tabular. CSV keeps every cell a
plain number and appends, after a blank line, ``#`` comment lines naming each such cell by its
row and column (``# DTD, CoOp/vit_b16 New: 2 of 3 runs``); skip them as comments (pandas:
``comment="#"``). Derived cells (averages over datasets, HM of Base and New) carry no marker:
the cells they are computed from do.
"""
import argparse
import csv
import io
import json
import math
import os
import os.path as osp
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

RESULTS_FILE = "results.json"
LOG_FILE = "log.txt"
TRAIN_END_SIGNAL = "Finish training"
TEST_END_SIGNAL = "=> result"


@dataclass
class SeedSummary:
    """Mean and spread of one metric over the runs (seeds) of an experiment.

    ``spread`` is the population std (CoOp's ``np.std``) or, with ``ci95``, the
    half-width 1.96 * std / sqrt(n) of the 95% confidence interval. ``values`` are the
    numbers the mean is taken over (see :func:`at_common_precision`); ``expected_runs``
    is how many runs the experiment has (None when unknown).
    """

    mean: float
    spread: float
    values: List[float] = field(default_factory=list)
    expected_runs: Optional[int] = None

    @property
    def num_runs(self) -> int:
        """How many runs the summary is computed from."""
        return len(self.values)

    def runs_note(self) -> str:
        """``" (N of M runs)"`` when runs were left out, else "" (CoOp's line unchanged)."""
        if self.expected_runs is None or self.num_runs >= self.expected_runs:
            return ""
        return f" ({self.num_runs} of {self.expected_runs} runs)"


@dataclass
class RunTally:
    """Expected runs and the ones left out (missing, unreadable or incomplete), for ``--strict``."""

    expected: int = 0
    skipped: List[str] = field(default_factory=list)


class LoggedValue(float):
    """A metric read from log.txt: the float Dassl printed, remembering how many decimals it had.

    results.json holds the exact value; log.txt only ``f"{value:.1f}"``. The decimals let a
    mean over runs from both files put every value at the log's precision (at_common_precision).
    """

    decimals: int

    def __new__(cls, text: str) -> float:
        match = re.fullmatch(r"[+-]?\d*(?:\.(\d*))?", text)
        if not match:  # an exponent: no fixed number of decimals, keep it as a plain float
            return float(text)
        value = super().__new__(cls, text)
        value.decimals = len(match.group(1) or "")
        return value


def warn(message: str) -> None:
    """Report a skipped run on stderr, so stdout keeps only results."""
    print(f"WARNING: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Say on stderr how a number was computed, when that is not the obvious way."""
    print(f"NOTE: {message}", file=sys.stderr)


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


def read_results_json(path: str, keywords: Sequence[str]) -> Tuple[Optional[Dict[str, float]], List[str], bool]:
    """``(metrics, problems, readable)`` of a results.json file, printing nothing.

    ``metrics`` holds the ``keywords`` the file has as numbers (exact values), or is None when
    the file cannot be used: ``readable`` False when it cannot be read or parsed (log.txt may
    stand in for it), True when it is marked ``"complete": false`` (an unfinished run, which
    no log stands in for). ``problems`` says what is wrong, one text per problem.
    """
    try:
        with open(path, "r") as f:
            content = json.load(f)
    except (OSError, ValueError) as error:
        return None, [f"cannot read {path}: {error}"], False
    if isinstance(content, dict) and content.get("complete") is False:
        return None, [f"{path} is marked incomplete (the run did not finish)"], True
    if not isinstance(content, dict) or not isinstance(content.get("metrics"), dict):
        return None, [f"{path} has no 'metrics' object"], False
    metrics, problems = {}, []
    for keyword in keywords:
        value = content["metrics"].get(keyword)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{path}: metrics.{keyword} is not a number: {value!r}")
            continue
        metrics[keyword] = float(value)
    return metrics, problems, True


def read_log_metrics(path: str, keywords: Sequence[str], end_signal: str) -> Dict[str, float]:
    """Metrics ``keywords`` from a Dassl log.txt, as printed (``LoggedValue``, e.g. 1 decimal).

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
                    try:
                        metrics[keyword] = LoggedValue(match.group(1))
                    except ValueError:  # e.g. "1.2.3": not a number, keep the previous line's
                        pass
    return metrics


@dataclass
class RunValues:
    """What one run dir gave: ``values`` {metric: value}, ``sources`` {metric: file read}.

    ``problem`` is the one warning printed about the run (None when every metric was found).
    """

    run_dir: str
    values: Dict[str, float] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    problem: Optional[str] = None


def read_run_values(run_dir: str, keywords: Sequence[str], end_signal: str) -> RunValues:
    """Metrics ``keywords`` of one run dir, with at most one warning naming the run.

    Each metric comes from results.json when the file has it (exact value), otherwise from
    log.txt (as printed). A results.json that cannot be read or parsed is replaced by log.txt
    when there is one (with a warning naming the file); one marked ``"complete": false`` is an
    incomplete run whatever its log says.
    """
    json_path = osp.join(run_dir, RESULTS_FILE)
    log_path = osp.join(run_dir, LOG_FILE)
    has_json, has_log = osp.isfile(json_path), osp.isfile(log_path)
    run = RunValues(run_dir)
    if not has_json and not has_log:
        run.problem = f"no {RESULTS_FILE} or {LOG_FILE} in {run_dir}: run missing or not started"
        warn(run.problem)
        return run

    problems: List[str] = []
    replaced = False  # results.json unreadable, log.txt read instead
    if has_json:
        metrics, problems, readable = read_results_json(json_path, keywords)
        if metrics is None and (readable or not has_log):
            run.problem = "; ".join(problems)
            warn(run.problem)
            return run
        replaced = metrics is None
        for keyword, value in (metrics or {}).items():
            run.values[keyword], run.sources[keyword] = value, json_path

    missing = [keyword for keyword in keywords if keyword not in run.values]
    if missing and not has_log:
        problems.append(f"{json_path} has no metric {', '.join(missing)} and there is no {LOG_FILE}")
    elif missing:
        for keyword, value in read_log_metrics(log_path, missing, end_signal).items():
            run.values[keyword], run.sources[keyword] = value, log_path
        absent = [keyword for keyword in missing if keyword not in run.values]
        if absent:
            lines = " / ".join(f"'* {keyword}: X%'" for keyword in absent)
            problems.append(f"no {lines} line after '{end_signal}' in {log_path}")
        elif replaced:
            problems.append(f"read {log_path} instead")
    if problems:
        run.problem = "; ".join(problems)
        warn(run.problem)
    return run


def read_run(run_dir: str, keywords: Sequence[str], end_signal: str):
    """``(metrics, source)`` of one run dir, or (None, None) when it has none of ``keywords``.

    ``source`` is the file the first metric came from; see :func:`read_run_values`.
    """
    run = read_run_values(run_dir, keywords, end_signal)
    if not run.values:
        return None, None
    return run.values, next(iter(run.sources.values()))


@dataclass
class ExperimentRuns:
    """The runs of one experiment dir: every run dir, the values read and the runs skipped."""

    run_dirs: List[str]
    results: "OrderedDict[str, Dict[str, float]]"
    sources: Dict[str, Dict[str, str]]
    skipped: List[str]


def read_experiment(
    directory: str, keywords: Sequence[str] = ("accuracy",), end_signal: str = TRAIN_END_SIGNAL
) -> ExperimentRuns:
    """Every run of ``directory`` (its non-hidden subdirectories, or itself when it is a run).

    A run lacking any of ``keywords`` is in ``skipped`` (after its warning); the metrics it has
    are still in ``results``.
    """
    if not osp.isdir(directory):
        raise FileNotFoundError(f"directory not found: {directory}")
    run_dirs = [directory] if is_run_dir(directory) else list_subdirs(directory)
    if not run_dirs:
        warn(f"{directory} has no run subdirectories")
    runs = ExperimentRuns(run_dirs, OrderedDict(), {}, [])
    for run_dir in run_dirs:
        run = read_run_values(run_dir, keywords, end_signal)
        if run.values:
            runs.results[run_dir] = run.values
            runs.sources[run_dir] = run.sources
        if len(run.values) < len(keywords):
            runs.skipped.append(run_dir)
    return runs


def collect_results(
    directory: str,
    keywords: Sequence[str] = ("accuracy",),
    end_signal: str = TRAIN_END_SIGNAL,
    sources: Optional[Dict[str, str]] = None,
) -> "OrderedDict[str, Dict[str, float]]":
    """Read every run under ``directory`` into {run_dir: {metric: value}}.

    The runs are the non-hidden subdirectories of ``directory`` (one per seed), or
    ``directory`` itself when it holds results.json or log.txt. Runs without a value
    are warned about and left out. Values from results.json are exact, those from log.txt
    are ``LoggedValue``s (the printed number). When ``sources`` is given, it is filled with
    {run_dir: file the (first) value was read from}.
    """
    runs = read_experiment(directory, keywords, end_signal)
    if sources is not None:
        for run_dir, files in runs.sources.items():
            sources[run_dir] = next(iter(files.values()))
    return runs.results


def at_common_precision(values: Sequence[float]) -> Tuple[List[float], Optional[int]]:
    """The values of one mean, all at one precision, and the decimals they were rounded to.

    results.json values are exact, log.txt values (``LoggedValue``) have the decimals the log
    printed. When the two kinds meet in one mean, every value is rounded the way Dassl prints
    it, ``float(f"{value:.{d}f}")`` with ``d`` the fewest decimals of a logged value, which
    turns a results.json value into exactly the number its log.txt shows. Otherwise the values
    are unchanged and the decimals are None.
    """
    decimals = {getattr(value, "decimals", None) for value in values}
    logged = {d for d in decimals if d is not None}
    if not logged or len(decimals) == 1:
        return [float(value) for value in values], None
    places = min(logged)
    return [float(f"{value:.{places}f}") for value in values], places


def aggregate_over_seeds(
    results: Dict[str, Dict[str, float]],
    ci95: bool = False,
    expected_runs: Optional[int] = None,
    where: Optional[str] = None,
) -> "OrderedDict[str, SeedSummary]":
    """Mean and std (or 95% CI half-width) of each metric over the runs in ``results``.

    When some values of a metric come from log.txt and others from results.json, all are taken
    at the log's precision (:func:`at_common_precision`), with a note on stderr naming ``where``
    (default: the runs' common parent dir).
    """
    values_per_metric: "OrderedDict[str, List[float]]" = OrderedDict()
    for metrics in results.values():
        for name, value in metrics.items():
            values_per_metric.setdefault(name, []).append(value)
    summaries: "OrderedDict[str, SeedSummary]" = OrderedDict()
    for name, raw in values_per_metric.items():
        values, places = at_common_precision(raw)
        if places is not None:
            logged = sum(1 for value in raw if getattr(value, "decimals", None) is not None)
            place = where or osp.commonpath(list(results))
            note(f"{place}: {name}: {logged} of {len(raw)} runs have only the {LOG_FILE} value "
                 f"({places} decimal{'s' if places != 1 else ''}); the mean takes all {len(raw)} "
                 f"at that precision")
        std = float(np.std(values))
        spread = 1.96 * std / math.sqrt(len(values)) if ci95 else std
        summaries[name] = SeedSummary(mean=float(np.mean(values)), spread=spread, values=values,
                                      expected_runs=expected_runs)
    return summaries


def parse_experiment(
    directory: str,
    keyword: str = "accuracy",
    test_log: bool = False,
    ci95: bool = False,
    tally: Optional[RunTally] = None,
) -> "OrderedDict[str, SeedSummary]":
    """Print each run's value and the summary of one experiment; return the summary.

    The summary line is CoOp's, plus ``(N of M runs)`` when only N of the M run dirs have a
    value. Returns an empty dict (after a warning) when no run has a value. ``tally``, when
    given, gets the expected and the skipped runs added.
    """
    print(f"Parsing files in {directory}")
    runs = read_experiment(directory, (keyword,), end_signal_for(test_log))
    if tally is not None:
        tally.expected += len(runs.run_dirs)
        tally.skipped += runs.skipped
    if not runs.results:
        warn(f"nothing found in {directory}")
        return OrderedDict()
    for run_dir, metrics in runs.results.items():
        source = next(iter(runs.sources[run_dir].values()))
        values = " ".join(f"{name}: {value:.2f}%." for name, value in metrics.items())
        print(f"file: {source}. {values}")
    summaries = aggregate_over_seeds(runs.results, ci95=ci95, expected_runs=len(runs.run_dirs), where=directory)
    print("===")
    print(f"Summary of directory: {directory}")
    for name, summary in summaries.items():
        print(f"* {name}: {summary.mean:.2f}% +- {summary.spread:.2f}%{summary.runs_note()}")
    print("===")
    return summaries


def parse_multi_experiment(
    directory: str,
    keyword: str = "accuracy",
    test_log: bool = False,
    ci95: bool = False,
    tally: Optional[RunTally] = None,
) -> "OrderedDict[str, float]":
    """Summarize each sub-experiment of ``directory``, then print the average of their means."""
    if not osp.isdir(directory):
        raise FileNotFoundError(f"directory not found: {directory}")
    means_per_metric: "OrderedDict[str, List[float]]" = OrderedDict()
    for experiment_dir in list_subdirs(directory):
        for name, summary in parse_experiment(experiment_dir, keyword, test_log, ci95, tally).items():
            means_per_metric.setdefault(name, []).append(summary.mean)
    averages = OrderedDict((name, float(np.mean(means))) for name, means in means_per_metric.items())
    if averages:
        print("Average performance")
        for name, average in averages.items():
            print(f"* {name}: {average:.2f}%")
    return averages


# ---------------------------------------------------------------------------------------------
# Table mode: whole OUTPUT trees -> the papers' tables
# ---------------------------------------------------------------------------------------------

TABLE_KINDS = ("base2new", "openworld", "xd", "dg", "fewshot", "composition")
TABLE_FORMATS = ("markdown", "csv", "latex")
GAP = "-"

# The order of the papers' tables (CoOp, CoCoOp, MaPLe, BMIP); other datasets follow, sorted.
PAPER_DATASET_ORDER = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
)
# Domain-generalization targets of a model trained on ImageNet, in the papers' order.
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
DATASET_TITLES = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNet-Sketch",
    "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R", "minishapes": "MiniShapes",
}

SEED_DIR_PATTERN = re.compile(r"^seed(\d+)$")
SHOTS_DIR_PATTERN = re.compile(r"^shots_(\d+)$")


@dataclass(frozen=True)
class Method:
    """A trainer run with one config file (and shot count): one row or column block of a table.

    ``shots`` is None where shots are not part of the method (the few-shot table's rows).
    """

    trainer: str
    config: str
    shots: Optional[int] = None

    def label(self, with_shots: bool = False) -> str:
        """``TRAINER/CFG``, plus the shots when methods of a table differ in them."""
        text = f"{self.trainer}/{self.config}"
        return f"{text} ({self.shots} shots)" if with_shots and self.shots is not None else text

    def matches(self, names: Sequence[str]) -> bool:
        """True when a name equals the trainer or ``trainer/config`` (case-insensitive)."""
        own = {self.trainer.casefold(), f"{self.trainer}/{self.config}".casefold()}
        return any(name.casefold() in own for name in names)

    def sort_key(self):
        """Trainer, then config, then shots, in natural order."""
        return (self.trainer.casefold(), _natural_key(self.config), self.shots or 0)


@dataclass
class Cell:
    """One table value: mean over seeds and its spread (None for derived values), or a gap.

    A cell averaged over seeds knows the run dirs it ``expected`` and those ``skipped``
    (missing, unreadable or incomplete); a derived cell (an average or HM of other cells)
    expects none.
    """

    mean: Optional[float] = None
    spread: Optional[float] = None
    num_runs: int = 0
    expected: Tuple[str, ...] = ()
    skipped: Tuple[str, ...] = ()

    @property
    def missing(self) -> bool:
        """True when there is no value (rendered as a gap)."""
        return self.mean is None

    @property
    def partial(self) -> bool:
        """True when the cell has a value from fewer runs than it expected (it gets a footnote)."""
        return not self.missing and self.num_runs < len(self.expected)


@dataclass
class ResultTable:
    """Headers and rows of a rendered table; a row holds labels (str) and values (Cell)."""

    headers: List[str]
    rows: List[List[Union[str, Cell]]]


@dataclass
class Base2NewResults:
    """Base / New / HM cells of every (method, dataset) and each method's Average."""

    methods: List[Method]
    datasets: List[str]
    cells: Dict[Tuple[Method, str], Dict[str, Cell]]
    averages: Dict[Method, Dict[str, Cell]]

    @property
    def with_shots(self) -> bool:
        """Whether method labels must name the shots to be told apart."""
        return len({method.shots for method in self.methods}) > 1


def harmonic_mean(base: float, new: float) -> float:
    """2*B*N/(B+N), 0 when both are 0 (the evaluator's rule; kept here so tables need no torch)."""
    total = base + new
    return 2.0 * base * new / total if total > 0 else 0.0


def dataset_title(name: str) -> str:
    """The name the papers print for a dataset folder name (unknown names unchanged)."""
    return DATASET_TITLES.get(name, name)


def dataset_order_key(name: str):
    """Papers' order (the 11 datasets, then the 4 ImageNet variants), other names after, sorted."""
    known = PAPER_DATASET_ORDER + DG_TARGETS
    return (0, known.index(name), "") if name in known else (1, 0, name)


def seeds_in(config_dir: str) -> List[int]:
    """Seeds of the ``seed<S>`` folders in ``config_dir`` (none when it does not exist)."""
    if not osp.isdir(config_dir):
        return []
    return [int(m.group(1)) for m in (SEED_DIR_PATTERN.match(osp.basename(d)) for d in list_subdirs(config_dir)) if m]


def mean_of_cells(cells: Iterable[Cell]) -> Cell:
    """Mean of the cells' means; a gap when any cell is one (an average needs every dataset)."""
    cells = list(cells)
    if not cells or any(cell.missing for cell in cells):
        return Cell()
    return Cell(mean=float(np.mean([cell.mean for cell in cells])))


def harmonic_mean_cell(base: Cell, new: Cell) -> Cell:
    """HM of two cells' means; a gap when either is one."""
    if base.missing or new.missing:
        return Cell()
    return Cell(mean=harmonic_mean(base.mean, new.mean))


def summarize_runs(
    config_dir: str, seeds: Sequence[int], keywords: Sequence[str], end_signal: str, ci95: bool = False
) -> Dict[str, Cell]:
    """Mean and spread over ``config_dir/seed<S>`` of each metric in ``keywords``.

    Every missing, unreadable or incomplete run is named on stderr and left out (the cell
    records it in ``skipped``); a metric no run has becomes a gap.
    """
    expected = tuple(osp.join(config_dir, f"seed{seed}") for seed in seeds)
    if not osp.isdir(config_dir):
        warn(f"missing runs: {config_dir} does not exist")
        return {keyword: Cell(expected=expected, skipped=expected) for keyword in keywords}
    results: "OrderedDict[str, Dict[str, float]]" = OrderedDict()
    for run_dir in expected:
        run = read_run_values(run_dir, keywords, end_signal)
        if run.values:
            results[run_dir] = run.values
    summaries = aggregate_over_seeds(results, ci95=ci95, expected_runs=len(expected), where=config_dir)
    cells = {}
    for keyword in keywords:
        skipped = tuple(run_dir for run_dir in expected if keyword not in results.get(run_dir, {}))
        if keyword in summaries:
            summary = summaries[keyword]
            cells[keyword] = Cell(summary.mean, summary.spread, summary.num_runs, expected, skipped)
        else:
            cells[keyword] = Cell(expected=expected, skipped=skipped)
    return cells


def scan_protocol_tree(root: str) -> Dict[Method, Dict[str, str]]:
    """{method: {dataset: config dir}} of ``root/<dataset>/shots_<K>/<TRAINER>/<CFG>``."""
    found: Dict[Method, Dict[str, str]] = {}
    if not osp.isdir(root):
        return found
    for dataset_dir in list_subdirs(root):
        for shots_dir in list_subdirs(dataset_dir):
            shots = SHOTS_DIR_PATTERN.match(osp.basename(shots_dir))
            if not shots:
                continue
            for trainer_dir in list_subdirs(shots_dir):
                for config_dir in list_subdirs(trainer_dir):
                    method = Method(osp.basename(trainer_dir), osp.basename(config_dir), int(shots.group(1)))
                    found.setdefault(method, {})[osp.basename(dataset_dir)] = config_dir
    return found


def xd_source_dir(output: str, source: str, method: Method) -> str:
    """Where scripts/common.sh run_xd_train writes the source-dataset runs of ``method``."""
    return osp.join(output, "xd", "train", source, f"shots_{method.shots}", method.trainer, method.config)


def xd_target_dir(output: str, dataset: str, method: Method) -> str:
    """Where scripts/common.sh run_xd_test writes ``method``'s runs on target ``dataset``."""
    return osp.join(output, "xd", "test", dataset, f"shots_{method.shots}", method.trainer, method.config)


def scan_xd_tree(output: str, source: str) -> Tuple[Dict[Method, str], Dict[Method, Dict[str, str]]]:
    """Cross-dataset runs: ({method: source config dir}, {method: {target dataset: config dir}})."""
    trained = scan_protocol_tree(osp.join(output, "xd", "train"))
    sources = {method: datasets[source] for method, datasets in trained.items() if source in datasets}
    targets = scan_protocol_tree(osp.join(output, "xd", "test"))
    return sources, targets


def select_methods(found: Iterable[Method], trainers: Optional[Sequence[str]]) -> List[Method]:
    """The methods to show: all found, or those ``trainers`` names, in the order they are named."""
    methods = sorted(set(found), key=Method.sort_key)
    if not trainers:
        return methods
    selected: List[Method] = []
    for name in trainers:
        matching = [method for method in methods if method.matches([name]) and method not in selected]
        if not matching and not any(method.matches([name]) for method in selected):
            warn(f"--trainers {name}: no run of that trainer (or trainer/config) in this table")
        selected.extend(matching)
    return selected


def expected_seeds(config_dirs: Iterable[str], seeds: Optional[Sequence[int]]) -> List[int]:
    """``seeds`` when given, else every seed found in any of ``config_dirs``."""
    if seeds:
        return list(seeds)
    return sorted({seed for config_dir in config_dirs for seed in seeds_in(config_dir)})


def expected_datasets(found: Iterable[str], datasets: Optional[Sequence[str]]) -> List[str]:
    """``datasets`` when given, else the datasets found, in the papers' order."""
    if datasets:
        return list(datasets)
    return sorted(set(found), key=dataset_order_key)


def collect_base2new(
    output: str,
    trainers: Optional[Sequence[str]] = None,
    datasets: Optional[Sequence[str]] = None,
    seeds: Optional[Sequence[int]] = None,
    ci95: bool = False,
    only_trainers: Optional[Sequence[str]] = None,
) -> Base2NewResults:
    """Base (train_base runs), New (test_new runs) and HM per method and dataset.

    The per-dataset HM is the HM of the seed-averaged Base and New; the Average row takes
    the mean of the per-dataset Base and of the New, and the HM of those two means.
    ``only_trainers`` keeps the runs of these trainers alone (before ``trainers`` selects), so
    that the datasets and seeds a table expects come from its own methods.
    """
    train_root = osp.join(output, "base2new", "train_base")
    new_root = osp.join(output, "base2new", "test_new")
    base_dirs, new_dirs = scan_protocol_tree(train_root), scan_protocol_tree(new_root)
    found = list(base_dirs) + list(new_dirs)
    if only_trainers is not None:
        found = [method for method in found if method.trainer in only_trainers]
    methods = select_methods(found, trainers)
    datasets = expected_datasets(
        [d for m in methods for tree in (base_dirs, new_dirs) for d in tree.get(m, {})], datasets
    )
    seeds = expected_seeds(
        [path for m in methods for tree in (base_dirs, new_dirs) for path in tree.get(m, {}).values()], seeds
    )
    cells: Dict[Tuple[Method, str], Dict[str, Cell]] = {}
    averages: Dict[Method, Dict[str, Cell]] = {}
    for method in methods:
        for dataset in datasets:
            relative = osp.join(dataset, f"shots_{method.shots}", method.trainer, method.config)
            base = summarize_runs(osp.join(train_root, relative), seeds, ("accuracy",), TRAIN_END_SIGNAL, ci95)
            new = summarize_runs(osp.join(new_root, relative), seeds, ("accuracy",), TEST_END_SIGNAL, ci95)
            base, new = base["accuracy"], new["accuracy"]
            cells[method, dataset] = {"Base": base, "New": new, "HM": harmonic_mean_cell(base, new)}
        average_base = mean_of_cells(cells[method, d]["Base"] for d in datasets)
        average_new = mean_of_cells(cells[method, d]["New"] for d in datasets)
        averages[method] = {
            "Base": average_base, "New": average_new, "HM": harmonic_mean_cell(average_base, average_new)
        }
    return Base2NewResults(methods, datasets, cells, averages)


def base2new_table(results: Base2NewResults, rows: str = "datasets") -> ResultTable:
    """Base / New / HM of every method and dataset, plus each method's Average.

    ``rows="datasets"``: one row per dataset (+ Average), a Base / New / HM column block per method.
    ``rows="methods"``: one row per method, a column block per dataset (+ Average when there are
    several), the layout of the per-dataset tables in the CoCoOp / MaPLe papers.
    """
    columns = ("Base", "New", "HM")
    if rows == "methods":
        groups = [(dataset_title(d), lambda m, d=d: results.cells[m, d]) for d in results.datasets]
        if len(results.datasets) > 1:
            groups.append(("Average", lambda m: results.averages[m]))
        headers = ["Method"] + [f"{title} {column}" for title, _ in groups for column in columns]
        table_rows = [[method.label(results.with_shots)] + [cells(method)[column] for _, cells in groups
                                                            for column in columns]
                      for method in results.methods]
        return ResultTable(headers, table_rows)
    if rows != "datasets":
        raise ValueError(f"rows must be 'datasets' or 'methods', got {rows!r}")
    headers = ["Dataset"]
    for method in results.methods:
        label = method.label(results.with_shots)
        headers += [f"{label} {column}" for column in columns]
    table_rows: List[List[Union[str, Cell]]] = []
    for dataset in results.datasets:
        row: List[Union[str, Cell]] = [dataset_title(dataset)]
        for method in results.methods:
            row += [results.cells[method, dataset][column] for column in columns]
        table_rows.append(row)
    average_row: List[Union[str, Cell]] = ["Average"]
    for method in results.methods:
        average_row += [results.averages[method][column] for column in columns]
    table_rows.append(average_row)
    return ResultTable(headers, table_rows)


def openworld_table(output, trainers=None, datasets=None, seeds=None, ci95=False) -> ResultTable:
    """BMIP Table 1: one row per method; Average HM / Acc, then HM / Acc of each dataset.

    Values are the test_all runs' ``hm`` and ``accuracy`` (all-class classifier) averaged over
    seeds; the Average columns are the means of the per-dataset values, as the paper computes them.
    """
    root = osp.join(output, "base2new", "test_all")
    tree = scan_protocol_tree(root)
    methods = select_methods(tree, trainers)
    with_shots = len({method.shots for method in methods}) > 1
    datasets = expected_datasets([d for m in methods for d in tree[m]], datasets)
    seeds = expected_seeds([path for m in methods for path in tree[m].values()], seeds)
    headers = ["Method", "Average HM", "Average Acc"]
    for dataset in datasets:
        headers += [f"{dataset_title(dataset)} HM", f"{dataset_title(dataset)} Acc"]
    rows: List[List[Union[str, Cell]]] = []
    for method in methods:
        per_dataset = [
            summarize_runs(
                osp.join(root, dataset, f"shots_{method.shots}", method.trainer, method.config),
                seeds, ("hm", "accuracy"), TEST_END_SIGNAL, ci95,
            )
            for dataset in datasets
        ]
        row: List[Union[str, Cell]] = [method.label(with_shots)]
        row += [mean_of_cells(c["hm"] for c in per_dataset), mean_of_cells(c["accuracy"] for c in per_dataset)]
        for cells in per_dataset:
            row += [cells["hm"], cells["accuracy"]]
        rows.append(row)
    return ResultTable(headers, rows)


def transfer_table(
    output: str,
    kind: str,
    trainers: Optional[Sequence[str]] = None,
    datasets: Optional[Sequence[str]] = None,
    seeds: Optional[Sequence[int]] = None,
    ci95: bool = False,
    source: str = "imagenet",
) -> ResultTable:
    """Cross-dataset (``kind`` "xd", BMIP Table 2) or domain generalization ("dg", Table 3).

    One row per method: accuracy on the source dataset, on each target, then for xd the
    average over the targets, for dg the average over source and targets and the OOD average
    over the targets. Targets default to the evaluated datasets that are not ImageNet variants
    (xd) or the ImageNet variants (dg).
    """
    if kind not in ("xd", "dg"):
        raise ValueError(f"transfer_table kind must be 'xd' or 'dg', got {kind!r}")
    source_dirs, target_dirs = scan_xd_tree(output, source)
    methods = select_methods(list(source_dirs) + list(target_dirs), trainers)
    with_shots = len({method.shots for method in methods}) > 1
    evaluated = {d for m in methods for d in target_dirs.get(m, {}) if d != source}
    wanted = evaluated & set(DG_TARGETS) if kind == "dg" else evaluated - set(DG_TARGETS)
    targets = expected_datasets(wanted, datasets)
    seeds = expected_seeds(
        [xd_source_dir(output, source, m) for m in methods]
        + [xd_target_dir(output, d, m) for m in methods for d in targets],
        seeds,
    )
    headers = ["Method", f"{dataset_title(source)} (source)"] + [dataset_title(d) for d in targets]
    headers += ["Average", "OOD Average"] if kind == "dg" else ["Average"]
    rows: List[List[Union[str, Cell]]] = []
    for method in methods:
        source_cell = summarize_runs(
            xd_source_dir(output, source, method), seeds, ("accuracy",), TRAIN_END_SIGNAL, ci95
        )["accuracy"]
        target_cells = [
            summarize_runs(xd_target_dir(output, d, method), seeds, ("accuracy",), TEST_END_SIGNAL, ci95)["accuracy"]
            for d in targets
        ]
        row: List[Union[str, Cell]] = [method.label(with_shots), source_cell, *target_cells]
        if kind == "dg":
            row += [mean_of_cells([source_cell, *target_cells]), mean_of_cells(target_cells)]
        else:
            row.append(mean_of_cells(target_cells))
        rows.append(row)
    return ResultTable(headers, rows)


def fewshot_table(output, trainers=None, datasets=None, seeds=None, ci95=False) -> ResultTable:
    """Rows (method, shots) for every shot count found, columns datasets and their Average."""
    root = osp.join(output, "fewshot")
    tree = scan_protocol_tree(root)
    runs = select_methods(tree, trainers)
    # Shots become rows, so a method here is the trainer and config alone (order kept from runs).
    methods = list(dict.fromkeys(Method(m.trainer, m.config) for m in runs))
    shot_counts = sorted({m.shots for m in runs})
    datasets = expected_datasets([d for m in runs for d in tree[m]], datasets)
    seeds = expected_seeds([path for m in runs for path in tree[m].values()], seeds)
    headers = ["Method", "Shots"] + [dataset_title(d) for d in datasets] + ["Average"]
    rows: List[List[Union[str, Cell]]] = []
    for method in methods:
        for shots in shot_counts:
            cells = [
                summarize_runs(
                    osp.join(root, d, f"shots_{shots}", method.trainer, method.config),
                    seeds, ("accuracy",), TRAIN_END_SIGNAL, ci95,
                )["accuracy"]
                for d in datasets
            ]
            rows.append([method.label(), str(shots), *cells, mean_of_cells(cells)])
    return ResultTable(headers, rows)


# BMIP's Table 4: each regularizer over its official base ("Alone"), over BMIP and over Bloom.
COMPOSITIONS = (
    ("PromptSRC", ("PromptSRC", "PromptSRC_BMIP", "PromptSRC_Bloom")),  # PromptSRC alone: over IVLP
    ("CoPrompt", ("CoPrompt", "CoPrompt_BMIP", "CoPrompt_Bloom")),  # CoPrompt alone: over MaPLe
)
COMPOSITION_GROUPS = ("Alone", "+BMIP", "+Bloom")
COMPOSITION_COLUMNS = (("Base", "Base"), ("Novel", "New"), ("HM", "HM"))  # (header, Base2NewResults key)
COMPOSITION_TRAINERS = tuple(trainer for _, trainers in COMPOSITIONS for trainer in trainers)


@dataclass
class CompositionRow:
    """One row of the composition table: a regularizer with one method (or None) per column group.

    ``missing`` holds the trainers of the groups that have no run at all, although the table asks
    for them: their cells are gaps that count as missing runs for ``--strict``.
    """

    regularizer: str
    label: str
    shots: int
    methods: Tuple[Optional[Method], ...]
    missing: Tuple[str, ...] = ()


def pair_configs(slots: Sequence[Sequence[Method]]) -> List[Tuple[Optional[str], List[Optional[Method]]]]:
    """Split the methods of the column groups (``slots``, one list per group, one shot count) into
    rows: ``[(config label or None, [method or None per group])]``.

    When no group has more than one config, that is one row (label None). Otherwise a config name
    that several groups share (e.g. mini_clip) first gets a row of its own, labelled with it; a
    group's further config that nothing pairs with also gets its own row; what is left, at most one
    config per group, is the unlabelled row, which comes first.
    """
    remaining = [sorted(slot, key=Method.sort_key) for slot in slots]
    labelled: List[Tuple[Optional[str], List[Optional[Method]]]] = []
    while any(len(slot) > 1 for slot in remaining):
        counts: Dict[str, int] = {}
        for slot in remaining:
            for method in slot:
                counts[method.config] = counts.get(method.config, 0) + 1
        shared = sorted((name for name, count in counts.items() if count > 1),
                        key=lambda name: (-counts[name], _natural_key(name)))
        if shared:
            picked = [next((m for m in slot if m.config == shared[0]), None) for slot in remaining]
        else:  # one group's extra config that no other group has
            index = next(i for i, slot in enumerate(remaining) if len(slot) > 1)
            picked = [None] * len(remaining)
            picked[index] = remaining[index][-1]
        for slot, method in zip(remaining, picked):
            if method is not None:
                slot.remove(method)
        labelled.append((next(m.config for m in picked if m is not None), picked))
    rows = [(None, [slot[0] if slot else None for slot in remaining])] if any(remaining) else []
    return rows + sorted(labelled, key=lambda row: _natural_key(row[0]))


def composition_rows(methods: Sequence[Method], asked: Sequence[str]) -> List[CompositionRow]:
    """Arrange the selected base2new ``methods`` of the composition trainers into table rows.

    A regularizer gets a row when any of its trainers has runs: one row when each trainer has one
    config (the usual case), more when a trainer has several (:func:`pair_configs`; such rows are
    labelled with their config). Methods that differ in shots never share a row. ``asked`` names the
    trainers the table wants (all, or those ``--trainers`` names): a group of such a trainer without
    any run is recorded in ``CompositionRow.missing``.
    """
    with_shots = len({method.shots for method in methods}) > 1
    rows: List[CompositionRow] = []
    for regularizer, trainers in COMPOSITIONS:
        own = [method for method in methods if method.trainer in trainers]
        for shots in sorted({method.shots for method in own}):
            slots = [[m for m in own if m.trainer == trainer and m.shots == shots] for trainer in trainers]
            paired = pair_configs(slots)
            for config, group in paired:
                label = regularizer
                if config is not None and len(paired) > 1:
                    label += f" ({config})"
                if with_shots:
                    label += f" ({shots} shots)"
                missing = tuple(trainer for trainer, method in zip(trainers, group) if method is None
                                and trainer in asked and not any(m.trainer == trainer for m in own))
                rows.append(CompositionRow(regularizer, label, shots, tuple(group), missing))
    return rows


def average_over_datasets(cells: Sequence[Cell]) -> Cell:
    """The mean over datasets of seed-averaged cells, keeping the runs they expected and skipped
    (so that a partial average is footnoted and counted by ``--strict``); a gap when any cell is.
    One cell is returned as it is (with its spread over seeds)."""
    if len(cells) == 1:
        return cells[0]
    expected = tuple(run for cell in cells for run in cell.expected)
    skipped = tuple(run for cell in cells for run in cell.skipped)
    mean = mean_of_cells(cells).mean
    return Cell(mean=mean, num_runs=sum(cell.num_runs for cell in cells) if mean is not None else 0,
                expected=expected, skipped=skipped)


def composition_table(
    output: str,
    trainers: Optional[Sequence[str]] = None,
    datasets: Optional[Sequence[str]] = None,
    seeds: Optional[Sequence[int]] = None,
    ci95: bool = False,
    rows: str = "methods",
) -> ResultTable:
    """BMIP Table 4 from the base2new tree: one row per regularizer (PromptSRC, CoPrompt), a
    Base / Novel / HM column block for the regularizer alone (over its official base: IVLP for
    PromptSRC, MaPLe for CoPrompt), over BMIP and over Bloom.

    ``rows="methods"`` (the paper's layout): each value is the average over the datasets, computed as
    the base2new table's Average row: the mean of the per-dataset (seed-averaged) Base and of the
    Novel, HM of those two means. An average carries the runs of its cells, so one from fewer runs
    than expected is footnoted; it has no spread unless it is over one dataset (``--datasets X``),
    where it is that dataset's mean +- std over seeds.
    ``rows="datasets"``: one row per regularizer and dataset (seed-averaged cells with their
    spread), then the regularizer's Average row (derived: no marker, no spread).
    """
    if rows not in ("methods", "datasets"):
        raise ValueError(f"rows must be 'methods' or 'datasets', got {rows!r}")
    results = collect_base2new(output, trainers, datasets, seeds, ci95, only_trainers=COMPOSITION_TRAINERS)
    asked = [trainer for trainer in COMPOSITION_TRAINERS
             if not trainers or any(name.casefold() == trainer.casefold()
                                    or name.casefold().startswith(trainer.casefold() + "/") for name in trainers)]
    table_rows = composition_rows(results.methods, asked)
    seed_list = expected_seeds(
        [osp.join(output, "base2new", step, d, f"shots_{m.shots}", m.trainer, m.config)
         for m in results.methods for d in results.datasets for step in ("train_base", "test_new")], seeds)

    def absent_cells(row: CompositionRow, trainer: str, dataset_list: Sequence[str]) -> Dict[str, Cell]:
        """Gaps of a group without runs; Base and Novel expect every run the group should have."""
        cells = {}
        for key, step in (("Base", "train_base"), ("New", "test_new")):
            expected = tuple(osp.join(output, "base2new", step, d, f"shots_{row.shots}", trainer, "*", f"seed{s}")
                             for d in dataset_list for s in seed_list)
            cells[key] = Cell(expected=expected, skipped=expected)
        cells["HM"] = Cell()
        return cells

    for trainer in dict.fromkeys(trainer for row in table_rows for trainer in row.missing):
        regularizer = next(row.regularizer for row in table_rows if trainer in row.missing)
        warn(f"composition: no base2new runs of {trainer} under {osp.join(output, 'base2new')}, so its "
             f"{regularizer} cells are gaps (bash scripts/sweep.sh base2new {trainer.lower().replace('_', '-')})")
    headers = [f"{group} {header}" for group in COMPOSITION_GROUPS for header, _ in COMPOSITION_COLUMNS]
    out_rows: List[List[Union[str, Cell]]] = []
    if rows == "methods":
        for row in table_rows:
            values: List[Union[str, Cell]] = [row.label]
            for trainer, method in zip(dict(COMPOSITIONS)[row.regularizer], row.methods):
                if method is None:
                    cells = absent_cells(row, trainer, results.datasets) if trainer in row.missing else {}
                    values += [cells.get(key, Cell()) for _, key in COMPOSITION_COLUMNS]
                    continue
                base = average_over_datasets([results.cells[method, d]["Base"] for d in results.datasets])
                new = average_over_datasets([results.cells[method, d]["New"] for d in results.datasets])
                values += [base, new, harmonic_mean_cell(base, new)]
            out_rows.append(values)
        return ResultTable(["Regularizer"] + headers, out_rows)
    for row in table_rows:
        group_trainers = dict(COMPOSITIONS)[row.regularizer]
        for dataset in results.datasets:
            values = [row.label, dataset_title(dataset)]
            for trainer, method in zip(group_trainers, row.methods):
                if method is None:
                    cells = absent_cells(row, trainer, [dataset]) if trainer in row.missing else {}
                else:
                    cells = results.cells[method, dataset]
                values += [cells.get(key, Cell()) for _, key in COMPOSITION_COLUMNS]
            out_rows.append(values)
        average: List[Union[str, Cell]] = [row.label, "Average"]
        for method in row.methods:
            cells = results.averages[method] if method is not None else {}
            average += [cells.get(key, Cell()) for _, key in COMPOSITION_COLUMNS]
        out_rows.append(average)
    return ResultTable(["Regularizer", "Dataset"] + headers, out_rows)


def build_table(kind: str, output: str, **options) -> ResultTable:
    """The ``kind`` table (one of TABLE_KINDS) of the OUTPUT tree ``output``.

    ``options``: trainers, datasets, seeds, ci95 and, for xd/dg, source, for composition, rows.
    """
    if not osp.isdir(output):
        raise FileNotFoundError(f"directory not found: {output}")
    if kind == "base2new":
        return base2new_table(collect_base2new(output, **options))
    if kind == "openworld":
        return openworld_table(output, **options)
    if kind in ("xd", "dg"):
        return transfer_table(output, kind, **options)
    if kind == "fewshot":
        return fewshot_table(output, **options)
    if kind == "composition":
        return composition_table(output, **options)
    raise ValueError(f"unknown table {kind!r}; choose one of {', '.join(TABLE_KINDS)}")


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (dataset and config names hold ``_``)."""
    replacements = {
        "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    }
    return "".join(replacements.get(char, char) for char in text)


def format_cell(cell: Union[str, Cell], show_std: bool = False, fmt: str = "markdown") -> str:
    """Text of one cell: two decimals, ``mean ± spread`` with ``show_std``, a gap for no value."""
    if isinstance(cell, str):
        return latex_escape(cell) if fmt == "latex" else cell
    if cell.missing:
        return GAP
    text = f"{cell.mean:.2f}"
    if show_std and cell.spread is not None and cell.num_runs != 1:  # one run has no spread to show
        plus_minus = r" $\pm$ " if fmt == "latex" else " ± "
        text += f"{plus_minus}{cell.spread:.2f}"
    return text


SUPERSCRIPT_DIGITS = str.maketrans("0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")
CSV_FOOTNOTE_HEADER = "# cells averaged over fewer runs than expected (row, column: runs used):"


def footnote_marker(number: int, fmt: str) -> str:
    """The marker of footnote ``number`` after a cell: superscript digits, ``$^{n}$`` in LaTeX."""
    return f"$^{{{number}}}$" if fmt == "latex" else str(number).translate(SUPERSCRIPT_DIGITS)


def render_table(table: ResultTable, fmt: str = "markdown", show_std: bool = False) -> str:
    """The table as markdown (GitHub pipes), csv or a LaTeX tabular, then its footnotes.

    A cell averaged over fewer runs than it expected (``Cell.partial``) is footnoted. Markdown
    and LaTeX: the cell gets a numbered marker (``71.20¹``, ``71.20$^{1}$``), one number per
    distinct ``N of M runs``, and the footnotes follow the table after a blank line
    (``¹ 2 of 3 runs``; in LaTeX ``$^{1}$ 2 of 3 runs``, one per line of a paragraph). CSV: cells stay
    plain numbers; after a blank line, ``#`` comment lines name each such cell by its row
    labels and column (``# DTD, CoOp/cfg Base: 2 of 3 runs``), which a reader skips as comments.
    """
    if fmt not in TABLE_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(TABLE_FORMATS)}, got {fmt!r}")
    headers = [format_cell(header, fmt=fmt) for header in table.headers]
    footnotes: "OrderedDict[str, int]" = OrderedDict()  # "N of M runs" -> its number
    csv_notes: List[str] = []
    rows: List[List[str]] = []
    for row in table.rows:
        texts = []
        for column, cell in enumerate(row):
            text = format_cell(cell, show_std, fmt)
            if isinstance(cell, Cell) and cell.partial:
                runs = f"{cell.num_runs} of {len(cell.expected)} runs"
                if fmt == "csv":
                    labels = [label for label in row if isinstance(label, str)]
                    csv_notes.append(f"# {', '.join(labels + [table.headers[column]])}: {runs}")
                else:
                    text += footnote_marker(footnotes.setdefault(runs, len(footnotes) + 1), fmt)
            texts.append(text)
        rows.append(texts)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        text = buffer.getvalue().rstrip("\n")
        if not csv_notes:
            return text
        return text + "\n\n" + "\n".join([CSV_FOOTNOTE_HEADER] + csv_notes)
    from tabulate import tabulate

    # latex_raw keeps our own escaping and $\pm$; number parsing would reformat "-" and decimals.
    tablefmt = "latex_raw" if fmt == "latex" else "github"
    value_columns = {i for row in table.rows for i, cell in enumerate(row) if isinstance(cell, Cell)}
    alignment = ["right" if i in value_columns else "left" for i in range(len(headers))]
    text = tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True, colalign=alignment)
    if not footnotes:
        return text
    lines = [f"{footnote_marker(number, fmt)} {runs}" for runs, number in footnotes.items()]
    return text + "\n\n" + (" \\\\\n" if fmt == "latex" else "\n").join(lines)


def table_tally(table: ResultTable) -> RunTally:
    """Expected and skipped runs of every seed-averaged cell of ``table`` (each run dir once)."""
    expected: Dict[str, None] = {}
    skipped: Dict[str, None] = {}
    for row in table.rows:
        for cell in row:
            if isinstance(cell, Cell):
                expected.update(dict.fromkeys(cell.expected))
                skipped.update(dict.fromkeys(cell.skipped))
    return RunTally(len(expected), list(skipped))


def strict_failure(tally: RunTally) -> bool:
    """``--strict``: print one line and return True when any expected run was skipped."""
    if not tally.skipped:
        return False
    count = len(tally.skipped)
    print(f"ERROR: --strict: {count} of {tally.expected} expected run{'s' if tally.expected != 1 else ''} "
          f"{'is' if count == 1 else 'are'} missing or incomplete (see the warnings above)", file=sys.stderr)
    return True


def plot_base2new(results: Base2NewResults, path: str) -> str:
    """Bar chart of Base / New / HM per dataset (and Average), one panel per method, saved to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise RuntimeError(f"--plot needs matplotlib (pip install matplotlib): {error}") from None
    if not results.methods:
        raise ValueError("nothing to plot: no base2new runs")
    groups = [dataset_title(d) for d in results.datasets] + ["Average"]
    positions = np.arange(len(groups))
    width = 0.27
    figure, axes = plt.subplots(
        len(results.methods), 1, figsize=(max(6.0, 0.9 * len(groups) + 2), 3.2 * len(results.methods)),
        squeeze=False,
    )
    for axis, method in zip(axes[:, 0], results.methods):
        per_group = [results.cells[method, d] for d in results.datasets] + [results.averages[method]]
        for offset, column in zip((-width, 0.0, width), ("Base", "New", "HM")):
            # A gap is NaN, which matplotlib leaves out instead of drawing a zero-height bar.
            heights = [np.nan if cells[column].missing else cells[column].mean for cells in per_group]
            axis.bar(positions + offset, heights, width, label=column)
        axis.set_title(method.label(results.with_shots))
        axis.set_xticks(positions)
        axis.set_xticklabels(groups, rotation=30, ha="right")
        axis.set_ylabel("accuracy (%)")
        axis.set_ylim(0, 100)
        axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def run_table_mode(args: argparse.Namespace) -> int:
    """Print the requested table (and plot); returns the exit status."""
    if args.rows == "methods" and args.table not in ("base2new", "composition"):
        print(f"ERROR: --rows methods is a base2new layout (and composition's default); it cannot be used "
              f"with --table {args.table}", file=sys.stderr)
        return 1
    if args.plot and args.table != "base2new":
        print(f"ERROR: --plot draws base2new bars; it cannot be used with --table {args.table}", file=sys.stderr)
        return 1
    if not osp.isdir(args.directory):
        print(f"ERROR: directory not found: {args.directory}", file=sys.stderr)
        return 1
    options = dict(trainers=args.trainers, datasets=args.datasets, seeds=args.seeds, ci95=args.ci95)
    base2new_results = None
    if args.table == "base2new":
        # Kept apart from build_table so that --plot draws from the same numbers as the table.
        base2new_results = collect_base2new(args.directory, **options)
        table = base2new_table(base2new_results, args.rows or "datasets")
    elif args.table == "composition":
        table = composition_table(args.directory, rows=args.rows or "methods", **options)
    else:
        if args.table in ("xd", "dg"):
            options["source"] = args.source
        table = build_table(args.table, args.directory, **options)
    if not any(isinstance(cell, Cell) and not cell.missing for row in table.rows for cell in row):
        wanted = f" (base2new runs of {', '.join(COMPOSITION_TRAINERS)})" if args.table == "composition" else ""
        print(f"ERROR: no {args.table} results under {args.directory}{wanted}", file=sys.stderr)
        return 1
    print(render_table(table, args.format, args.std))
    if args.plot:
        print(f"Plot saved to {plot_base2new(base2new_results, args.plot)}", file=sys.stderr)
    if args.strict and strict_failure(table_tally(table)):
        return 1
    return 0


def build_arg_parser() -> argparse.ArgumentParser:
    """Command line of CoOp's parse_test_res.py, plus the table mode (``--table``)."""
    parser = argparse.ArgumentParser(description="Mean and std of test results over seeds, or whole tables.")
    parser.add_argument(
        "directory", type=str, help="experiment dir holding one subdir per seed (with --table: the OUTPUT root)"
    )
    parser.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of std")
    parser.add_argument("--test-log", action="store_true", help="parse logs of eval-only runs")
    parser.add_argument("--multi-exp", action="store_true", help="directory holds several experiments")
    parser.add_argument("--keyword", default="accuracy", type=str, help="metric to extract, e.g. macro_f1")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when any expected run is missing or incomplete")
    table = parser.add_argument_group("table mode")
    table.add_argument("--table", choices=TABLE_KINDS, help="build this table from the whole OUTPUT tree")
    table.add_argument("--format", choices=TABLE_FORMATS, default="markdown", help="table format (default markdown)")
    table.add_argument("--trainers", nargs="+", metavar="NAME", help="only these trainers (TRAINER or TRAINER/CFG), in this order")
    table.add_argument("--std", action="store_true", help="add +- std over seeds (the 95%% CI with --ci95)")
    table.add_argument("--rows", choices=("datasets", "methods"),
                       help="base2new: one row per dataset (default) or per method; composition: one row "
                            "per regularizer, averaged over datasets (methods, default) or per regularizer "
                            "and dataset (datasets)")
    table.add_argument("--plot", metavar="PNG", help="base2new only: also draw Base/New/HM bars to this file")
    table.add_argument("--datasets", nargs="+", metavar="NAME", help="columns/rows to show (default: every dataset found)")
    table.add_argument("--seeds", nargs="+", type=int, metavar="S", help="seeds every cell expects (default: all found)")
    table.add_argument("--source", default="imagenet", help="xd/dg: the dataset the models were trained on")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (1 when nothing could be read, or with ``--strict``
    when any expected run is missing or incomplete)."""
    args = build_arg_parser().parse_args(argv)
    if args.table:
        return run_table_mode(args)
    tally = RunTally()
    try:
        if args.multi_exp:
            found = parse_multi_experiment(args.directory, args.keyword, args.test_log, args.ci95, tally)
        else:
            found = parse_experiment(args.directory, args.keyword, args.test_log, args.ci95, tally)
    except FileNotFoundError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    if not found:
        print(f"ERROR: no '{args.keyword}' result found under {args.directory}", file=sys.stderr)
        return 1
    if args.strict and strict_failure(tally):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
