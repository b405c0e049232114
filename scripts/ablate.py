#!/usr/bin/env python
"""One command per ablation study of the papers: a spec -> the runs -> a table and a plot.

    python scripts/ablate.py bloom_dm --root $DATA --output-dir output/ablations
    python scripts/ablate.py bmip_table5 --root $DATA --output-dir out --datasets eurosat --seeds 1 \\
        --cfg mini_clip --device cpu OPTIM.MAX_EPOCH 2

A SPEC is a YAML file (a path, or a name under configs/ablations/) naming the protocol, the method
(a ``scripts/sweep.sh`` method, e.g. ``bloom``) and its config, the datasets and seeds, the axis,
and the variants: a label with config overrides, and optionally a method, config or shot count of
its own and the paper's values (see configs/ablations/README.md). Each variant is a sweep of the
protocol into ``OUT/<spec>/runs/<variant>/`` through the launcher's machinery (scripts/launch.py):
finished runs are skipped, so the same command resumes; ``--executor``, ``--jobs``,
``--jobs-per-gpu`` and the SLURM flags are the launcher's. Trailing arguments (``--flags`` first,
then ``KEY VALUE`` pairs) go to every run, before the variant's own overrides, so a spec runs on the
mini CLIP or a test CLIP unchanged.

Then ``OUT/<spec>/table.{md,csv,tex}``: one row per variant with, per dataset and on average, the
protocol's metrics as mean +- std over seeds (base2new: Base/New/HM; openworld: HM/Acc; fewshot:
accuracy per shot count; xd/dg: accuracy per target), the trainable-parameter count of the variant
(read from its training log) and the paper's values where the spec has them; incomplete runs are
footnoted (never counted). ``OUT/<spec>/plot.png``: a line plot over a numeric axis (d_m, shots,
depth, ...), bars for a categorical one, the paper's values as markers.
"""
import argparse
import glob
import importlib.util
import math
import os
import os.path as osp
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SCRIPTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS_DIR.parent
SPEC_DIR = REPO_ROOT / "configs" / "ablations"
sys.path.insert(0, str(REPO_ROOT))

import parse_test_res as ptr  # noqa: E402

PROTOCOLS = ("base2new", "openworld", "fewshot", "xd", "dg")
# metrics per protocol: (column header, results key), the first one is plotted
METRICS = {"base2new": (("HM", "HM"), ("Base", "Base"), ("New", "New")),
           "openworld": (("HM", "hm"), ("Acc", "accuracy")),
           "fewshot": (("Acc", "accuracy"),), "xd": (("Acc", "accuracy"),), "dg": (("Acc", "accuracy"),)}
SPEC_KEYS = {"name", "title", "source", "protocol", "method", "cfg", "datasets", "seeds", "shots", "axis",
             "numeric", "note", "variants"}
VARIANT_KEYS = {"label", "opts", "method", "cfg", "shots", "paper"}
PARAMS_LINE = re.compile(r"^# trainable params: ([\d,]+)", re.M)


class AblationError(Exception):
    """A problem with the spec or the request, reported as one line."""


def load_launch():
    """scripts/launch.py as a module (its planning and executors)."""
    spec = importlib.util.spec_from_file_location("promptclip_launch", SCRIPTS_DIR / "launch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("promptclip_launch", module)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------- the spec
@dataclass
class Variant:
    label: str
    opts: dict = field(default_factory=dict)
    method: str = ""
    cfg: str = ""
    shots: int = 0
    paper: dict = field(default_factory=dict)

    @property
    def slug(self):
        return re.sub(r"[^A-Za-z0-9_.+-]+", "-", self.label).strip("-") or "variant"


@dataclass
class Spec:
    name: str
    path: str
    protocol: str
    method: str
    cfg: str
    datasets: list
    seeds: list
    axis: str
    numeric: bool
    variants: list
    title: str = ""
    source: str = ""
    note: str = ""
    shots: list = field(default_factory=list)


def spec_path(name_or_path):
    """A spec file: the path itself, or configs/ablations/<name>.yaml."""
    if osp.isfile(name_or_path):
        return name_or_path
    candidate = SPEC_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return str(candidate)
    known = sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))
    raise AblationError(f"no ablation spec {name_or_path!r} (a YAML file, or one of: {', '.join(known)})")


def load_spec(name_or_path):
    """Read and check a spec; every problem is one AblationError naming the file and the key."""
    path = spec_path(name_or_path)
    try:
        with open(path) as handle:
            raw = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise AblationError(f"{path}{where}: {getattr(error, 'problem', None) or error}") from None

    def fail(message):
        raise AblationError(f"{path}: {message}")

    if not isinstance(raw, dict):
        fail("a spec is a mapping (protocol, method, variants, ...)")
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        fail(f"unknown key(s) {unknown}; known: {sorted(SPEC_KEYS)}")
    for key in ("protocol", "method", "axis", "variants"):
        if key not in raw:
            fail(f"missing key {key!r}")
    if raw["protocol"] not in PROTOCOLS:
        fail(f"protocol {raw['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
    if not isinstance(raw["variants"], list) or not raw["variants"]:
        fail("variants must be a non-empty list")
    variants = []
    for index, item in enumerate(raw["variants"]):
        if not isinstance(item, dict) or "label" not in item:
            fail(f"variants[{index}] needs a label")
        unknown = sorted(set(item) - VARIANT_KEYS)
        if unknown:
            fail(f"variants[{index}] ({item['label']}): unknown key(s) {unknown}; known: {sorted(VARIANT_KEYS)}")
        opts = item.get("opts") or {}
        if not isinstance(opts, dict):
            fail(f"variants[{index}] ({item['label']}): opts must be a mapping KEY: VALUE")
        variants.append(Variant(label=str(item["label"]), opts=opts, method=str(item.get("method") or ""),
                                cfg=str(item.get("cfg") or ""), shots=int(item.get("shots") or 0),
                                paper=dict(item.get("paper") or {})))
    slugs = [v.slug for v in variants]
    if len(set(slugs)) != len(slugs):
        fail(f"variant labels must be distinct: {slugs}")
    numeric = raw.get("numeric")
    if numeric is None:
        numeric = all(_number(v.label) is not None for v in variants)
    shots = [int(s) for s in (raw.get("shots") or [])]
    if raw["protocol"] == "fewshot" and not shots:
        fail("a fewshot spec needs shots: [1, 2, 4, ...]")
    return Spec(name=str(raw.get("name") or Path(path).stem), path=path, protocol=raw["protocol"],
                method=str(raw["method"]), cfg=str(raw.get("cfg") or ""), datasets=[str(d) for d in raw.get("datasets") or []],
                seeds=[int(s) for s in raw.get("seeds") or [1, 2, 3]], axis=str(raw["axis"]), numeric=bool(numeric),
                variants=variants, title=str(raw.get("title") or ""), source=str(raw.get("source") or ""),
                note=str(raw.get("note") or ""), shots=shots)


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _opt_words(opts):
    words = []
    for key, value in opts.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ",".join(str(v) for v in value) + "]"
        words += [str(key), str(value).replace(" ", "")]
    return words


# ------------------------------------------------------------------------------------ the runs
# The sweep's method names -> the trainer folder under configs/trainers/ (for the epoch count).
METHOD_TRAINERS = {
    "zsclip": "CoOp", "coop": "CoOp", "cocoop": "CoCoOp", "vpt": "VPT", "language-prompting": "IVLP",
    "independent-vlp": "IVLP", "maple": "MaPLe", "bmip": "BMIP", "bloom": "Bloom", "promptsrc": "PromptSRC",
    "coprompt": "CoPrompt", "promptsrc-maple": "PromptSRC_MaPLe", "promptsrc-bmip": "PromptSRC_BMIP",
    "promptsrc-bloom": "PromptSRC_Bloom", "coprompt-bmip": "CoPrompt_BMIP", "coprompt-bloom": "CoPrompt_Bloom",
    "linear-probe": "LinearProbeCLIP",
}


def trained_epochs(method, cfg, opts):
    """The epoch count the variant's runs train for when it is not the scripts' own (a config other than
    the official one, or ``OPTIM.MAX_EPOCH`` among the overrides), else None. The test scripts load the
    official epoch unless told otherwise, which a shortened config never writes."""
    for key, value in reversed(opts):
        if key == "OPTIM.MAX_EPOCH":
            return int(value)
    if not cfg or method not in METHOD_TRAINERS:
        return None
    path = REPO_ROOT / "configs" / "trainers" / METHOD_TRAINERS[method] / f"{cfg}.yaml"
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError):
        return None  # the sweep itself reports a missing or broken config
    epochs = (config.get("OPTIM") or {}).get("MAX_EPOCH")
    return int(epochs) if isinstance(epochs, int) else None


def variant_environment(spec, variant, args, base_env):
    """The environment of one variant's sweep (the launcher's RUN_VARIABLES and lists)."""
    env = dict(base_env)
    env["OUTPUT"] = osp.join(args.output_dir, spec.name, "runs", variant.slug)
    env["DATA"] = osp.abspath(args.root)
    env["DATASETS"] = " ".join(args.datasets or spec.datasets) if (args.datasets or spec.datasets) else env.get("DATASETS", "")
    if not env["DATASETS"]:
        env.pop("DATASETS")
    env["SEEDS"] = " ".join(str(s) for s in (args.seeds or spec.seeds))
    cfg = args.cfg or variant.cfg or spec.cfg
    if cfg:
        env["CFG"] = cfg
    else:
        env.pop("CFG", None)
    if variant.shots:
        env["SHOTS"] = str(variant.shots)
    if spec.protocol == "fewshot":
        env["SHOTS_LIST"] = " ".join(str(s) for s in spec.shots)
    flag_args, pairs, skip = [], [], False
    for i, word in enumerate(args.overrides):
        if skip:
            skip = False
            continue
        if word.startswith("--"):
            flag_args.append(word)
            # a flag with a value (--device cpu, --backbone PATH) keeps it
            if i + 1 < len(args.overrides) and not args.overrides[i + 1].startswith("--") and word not in (
                    "--deterministic",):
                flag_args.append(args.overrides[i + 1])
                skip = True
        else:
            pairs.append(word)
    env["EXTRA_OPTS"] = " ".join(flag_args + pairs + _opt_words(variant.opts))
    if "LOADEP" not in base_env:  # test the model the runs end with
        opts = list(zip(pairs[::2], pairs[1::2])) + [(k, v) for k, v in variant.opts.items()]
        epochs = trained_epochs(variant.method or spec.method, cfg, opts)
        if epochs:
            env["LOADEP"] = str(epochs)
    return env


def plan(spec, args, launch):
    """Every job of every variant, named ``<spec>-<variant>-...``."""
    jobs = []
    for variant in spec.variants:
        env = variant_environment(spec, variant, args, os.environ)
        try:
            variant_jobs = launch.plan_jobs(spec.protocol, [variant.method or spec.method], env)
        except launch.LaunchError as error:
            raise AblationError(f"{spec.name} variant {variant.label!r}: {error}") from None
        for job in variant_jobs:
            job.name = f"{spec.name}-{variant.slug}-{job.name}"
        jobs += variant_jobs
    return jobs


def run_jobs(jobs, spec, args, launch):
    """Run the jobs with the launcher's executors; returns the launcher's exit code (0 all ok)."""
    launch_dir = launch.make_launch_dir(argparse.Namespace(launch_dir=args.launch_dir), str(Path(args.output_dir) / spec.name))
    launch_dir.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        job.log = str(launch_dir / f"{job.name}.log")
    if args.executor == "local":
        gpus = launch.visible_gpus(os.environ)
        workers = args.jobs or max(len(gpus) * args.jobs_per_gpu, 1)
        print(f"{spec.name}: {len(jobs)} jobs, local, {workers} worker(s); logs in {launch_dir}", flush=True)
        outcomes = launch.launch_local(jobs, workers, gpus)
    else:
        launch.import_submitit(args.executor)
        args.protocol = spec.protocol
        print(f"{spec.name}: {len(jobs)} jobs, {args.executor}; logs in {launch_dir}", flush=True)
        outcomes = launch.launch_submitit(jobs, args, launch_dir)
        if outcomes is None:
            return None
    failed = [o for o in outcomes if not o["ok"]]
    for outcome in failed:
        print(launch.failure_line(outcome))
    print(f"{spec.name}: {len(outcomes) - len(failed)} of {len(outcomes)} jobs ok")
    return 1 if failed else 0


# ----------------------------------------------------------------------------------- the table
def collect_variant(spec, variant, args):
    """{column group: {metric header: Cell}} of one variant: each dataset and "Average"."""
    root = osp.join(args.output_dir, spec.name, "runs", variant.slug)
    datasets = args.datasets or spec.datasets or None
    seeds = args.seeds or spec.seeds
    groups = {}
    if spec.protocol == "base2new":
        results = ptr.collect_base2new(root, datasets=datasets, seeds=seeds)
        if results.methods:
            method = results.methods[0]
            for dataset in results.datasets:
                groups[ptr.dataset_title(dataset)] = dict(results.cells[method, dataset])
            groups["Average"] = dict(results.averages[method])
    elif spec.protocol == "openworld":
        tree_root = osp.join(root, "base2new", "test_all")
        tree = ptr.scan_protocol_tree(tree_root)
        for method, by_dataset in list(tree.items())[:1]:
            names = ptr.expected_datasets(list(by_dataset), datasets)
            per = {d: ptr.summarize_runs(osp.join(tree_root, d, f"shots_{method.shots}", method.trainer, method.config),
                                         seeds, ("hm", "accuracy"), ptr.TEST_END_SIGNAL) for d in names}
            for d in names:
                groups[ptr.dataset_title(d)] = per[d]
            groups["Average"] = {k: ptr.mean_of_cells(per[d][k] for d in names) for k in ("hm", "accuracy")}
    elif spec.protocol == "fewshot":
        tree_root = osp.join(root, "fewshot")
        tree = ptr.scan_protocol_tree(tree_root)
        for shots in spec.shots:
            methods = [m for m in tree if m.shots == shots]
            if not methods:
                groups[f"{shots} shots"] = {"accuracy": ptr.Cell()}
                continue
            method = methods[0]
            names = ptr.expected_datasets(list(tree[method]), datasets)
            cells = [ptr.summarize_runs(osp.join(tree_root, d, f"shots_{shots}", method.trainer, method.config),
                                        seeds, ("accuracy",), ptr.TRAIN_END_SIGNAL)["accuracy"] for d in names]
            groups[f"{shots} shots"] = {"accuracy": cells[0] if len(cells) == 1 else ptr.mean_of_cells(cells)}
    else:
        table = ptr.transfer_table(root, spec.protocol, datasets=datasets, seeds=seeds)
        if table.rows:
            for header, cell in zip(table.headers[1:], table.rows[0][1:]):
                groups[header] = {"accuracy": cell}
    return groups


def trainable_params(spec, variant, args):
    """The ``# trainable params`` a training log of the variant prints, or None (no training run)."""
    root = osp.join(args.output_dir, spec.name, "runs", variant.slug)
    for log in sorted(glob.glob(osp.join(root, "**", "log.txt"), recursive=True)):
        with open(log, errors="replace") as handle:
            match = PARAMS_LINE.search(handle.read())
        if match:
            return int(match.group(1).replace(",", ""))
    return None


def build_table(spec, args):
    """The ablation's ResultTable, the per-variant groups (for the plot) and the params."""
    metrics = METRICS[spec.protocol]
    collected = {v.label: collect_variant(spec, v, args) for v in spec.variants}
    params = {v.label: trainable_params(spec, v, args) for v in spec.variants}
    order = []
    for groups in collected.values():
        for name in groups:
            if name not in order:
                order.append(name)
    if "Average" in order:  # last
        order = [g for g in order if g != "Average"] + (["Average"] if len(order) > 2 else [])
    if spec.protocol == "fewshot":
        order = [f"{s} shots" for s in spec.shots]
    paper_keys = []
    for variant in spec.variants:
        for key in variant.paper:
            if key not in paper_keys:
                paper_keys.append(key)
    headers = [spec.axis, "params"]
    for group in order:
        headers += [f"{group} {header}" if len(metrics) > 1 or spec.protocol == "fewshot" else group
                    for header, _ in metrics]
    headers += [f"paper {key}" for key in paper_keys]
    rows = []
    for variant in spec.variants:
        groups = collected[variant.label]
        row = [variant.label, "-" if params[variant.label] is None else f"{params[variant.label]:,}"]
        for group in order:
            cells = groups.get(group, {})
            row += [cells.get(key, ptr.Cell()) for _, key in metrics]
        row += [ptr.Cell(mean=float(variant.paper[key])) if variant.paper.get(key) is not None else ptr.Cell()
                for key in paper_keys]
        rows.append(row)
    return ptr.ResultTable(headers, rows), collected, params, order


def _spreads(cells):
    """Error-bar lengths: each cell's spread over seeds (std, or the 95% CI half-width), NaN if none."""
    return [math.nan if c is None or c.spread is None else c.spread for c in cells]


def plot(spec, collected, order, path):
    """Line plot over a numeric axis, bars over a categorical one; the paper's values as markers.
    Error bars: the spread over seeds where a value is a mean of several runs (not on an HM, which
    is computed from the mean base and new accuracies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = METRICS[spec.protocol]
    labels = [v.label for v in spec.variants]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 2), 3.6))
    if spec.protocol == "fewshot":
        shots = spec.shots
        for variant in spec.variants:
            groups = collected[variant.label]
            cells = [groups.get(f"{s} shots", {}).get("accuracy", ptr.Cell()) for s in shots]
            axis.errorbar(shots, [math.nan if c.mean is None else c.mean for c in cells], yerr=_spreads(cells),
                          marker="o", capsize=3, label=variant.label)
        axis.set_xscale("log", base=2)
        axis.set_xticks(shots)
        axis.set_xticklabels([str(s) for s in shots])
        axis.set_xlabel("shots per class")
        axis.set_ylabel("accuracy (%)")
    else:
        group = "Average" if "Average" in order else (order[0] if order else None)

        def cells(key):
            return [ptr.Cell() if group is None else collected[label].get(group, {}).get(key, ptr.Cell())
                    for label in labels]

        def series(key):
            return [math.nan if c.mean is None else c.mean for c in cells(key)]

        paper_key = {"base2new": "hm", "openworld": "hm"}.get(spec.protocol, "acc")
        paper = [v.paper.get(paper_key, v.paper.get(paper_key.upper())) for v in spec.variants]
        if spec.numeric:
            xs = [float(label) for label in labels]
            for header, key in metrics:
                axis.errorbar(xs, series(key), yerr=_spreads(cells(key)), marker="o", capsize=3, label=header)
            if any(p is not None for p in paper):
                axis.plot(xs, [math.nan if p is None else p for p in paper], "k*", label=f"paper {paper_key.upper()}")
            if min(xs) > 0 and max(xs) / min(xs) >= 8:  # d_m, shots: doubling steps
                axis.set_xscale("log", base=2)
            axis.set_xticks(xs)
            axis.set_xticklabels(labels)
        else:
            positions = range(len(labels))
            width = 0.8 / (len(metrics) + (1 if any(p is not None for p in paper) else 0))
            for i, (header, key) in enumerate(metrics):
                axis.bar([p + i * width for p in positions], series(key), width, yerr=_spreads(cells(key)),
                         capsize=2, label=header)
            if any(p is not None for p in paper):
                axis.bar([p + len(metrics) * width for p in positions], [math.nan if p is None else p for p in paper],
                         width, label=f"paper {paper_key.upper()}", color="lightgray", edgecolor="black")
            axis.set_xticks([p + width * (len(metrics) - 1) / 2 for p in positions])
            axis.set_xticklabels(labels, rotation=20, ha="right")
        axis.set_xlabel(spec.axis)
        axis.set_ylabel("accuracy (%)" + (f", {group}" if group else ""))
    axis.set_title(spec.title or spec.name)
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_outputs(spec, args):
    table, collected, params, order = build_table(spec, args)
    folder = Path(args.output_dir) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt, ext in (("markdown", "md"), ("csv", "csv"), ("latex", "tex")):
        text = ptr.render_table(table, fmt, show_std=True)
        (folder / f"table.{ext}").write_text(text + "\n")
        written[ext] = str(folder / f"table.{ext}")
    written["png"] = plot(spec, collected, order, str(folder / "plot.png"))
    print(ptr.render_table(table, "markdown", show_std=True))
    print(f"Table: {written['md']} (.csv, .tex); plot: {written['png']}")
    return table, written


# ------------------------------------------------------------------------------------ the CLI
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python scripts/ablate.py", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="a spec name under configs/ablations/ or a YAML path")
    parser.add_argument("--root", required=True, help="the datasets folder (DATA)")
    parser.add_argument("--output-dir", required=True, help="where OUT/<spec>/ goes")
    parser.add_argument("--datasets", nargs="+", help="instead of the spec's datasets")
    parser.add_argument("--seeds", nargs="+", type=int, help="instead of the spec's seeds")
    parser.add_argument("--cfg", help="config name for every variant (configs/trainers/<T>/<CFG>.yaml), e.g. mini_clip")
    parser.add_argument("--variants", nargs="+", metavar="LABEL", help="only these variants (e.g. what fits a small backbone)")
    parser.add_argument("--table-only", action="store_true", help="build the table and plot from the runs there are")
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and their runs, run nothing")
    parser.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local")
    parser.add_argument("--jobs", type=int, help="parallel local jobs (default: visible GPUs x --jobs-per-gpu, else 1)")
    parser.add_argument("--jobs-per-gpu", type=int, default=1)
    parser.add_argument("--launch-dir", help="logs folder (default OUT/<spec>/launch/<timestamp>)")
    for name in ("partition", "account", "qos"):
        parser.add_argument(f"--{name}")
    for name, kind in (("time", int), ("gpus-per-job", int), ("cpus-per-task", int), ("mem-gb", float),
                       ("array-parallelism", int)):
        parser.add_argument(f"--{name}", type=kind)
    parser.add_argument("--wait", action="store_true", help="slurm: wait for the jobs, then build the table")
    args, overrides = parser.parse_known_args(argv)
    args.overrides = overrides
    args.output_dir = osp.abspath(args.output_dir)
    if args.jobs_per_gpu < 1 or (args.jobs is not None and args.jobs < 1):
        parser.error("--jobs and --jobs-per-gpu must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        spec = load_spec(args.spec)
        if args.variants:
            unknown = sorted(set(args.variants) - {v.label for v in spec.variants})
            if unknown:
                raise AblationError(f"{spec.path}: no variant(s) {unknown}; the spec has "
                                    f"{[v.label for v in spec.variants]}")
            spec.variants = [v for v in spec.variants if v.label in args.variants]
        if not osp.isdir(args.root):
            raise AblationError(f"--root {args.root}: no such directory")
        if not args.table_only:
            launch = load_launch()
            jobs = plan(spec, args, launch)
            if args.dry_run:
                print(f"{spec.name}: {len(jobs)} jobs, {sum(len(j.runs) for j in jobs)} runs")
                for job in jobs:
                    print(f"  {job.name}")
                    for run in job.runs:
                        print(f"      {run.command()}")
                return 0
            status = run_jobs(jobs, spec, args, launch)
            if status is None:
                print("Submitted; build the table when the jobs are done with the same command and --table-only")
                return 0
        else:
            status = 0
        write_outputs(spec, args)
        return status
    except AblationError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
