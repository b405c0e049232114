"""parse_test_res.py --table: base2new / openworld / xd / dg / fewshot / composition tables built
from fake OUTPUT trees (two datasets, two seeds, two methods; six trainers for composition), checked
against hand-computed numbers; plus one slow end-to-end run of train.py feeding the base2new and
openworld tables."""
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_train
import parse_test_res as ptr

COOP = ("CoOp", "vit_b16_ep50")
MAPLE = ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx")
SEEDS = (1, 2)


def write_run(run_dir, complete=True, **metrics):
    """A results.json as the trainer writes it (only the fields the tables read matter)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    content = {"complete": complete, "metrics": metrics, "split": "test"}
    (run_dir / "results.json").write_text(json.dumps(content))


def protocol_dir(output, kind, dataset, method, seed, shots=16):
    """OUTPUT/<kind>/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S> (kind: base2new/train_base, fewshot, ...)."""
    trainer, config = method
    return output / kind / dataset / f"shots_{shots}" / trainer / config / f"seed{seed}"


def hm(base, new):
    return 2 * base * new / (base + new)


def parse_markdown(text):
    """(headers, {first cell: {header: cell}}) of a GitHub markdown table."""
    lines = [line for line in text.strip().splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    headers, body = split[0], split[2:]  # split[1] is the |---| line
    return headers, {row[0]: dict(zip(headers, row)) for row in body}


def parse_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}


def number(cell):
    """The mean of a markdown cell, without its ± spread or footnote marker (e.g. "50.00¹")."""
    return float(cell.split("±")[0].rstrip("⁰¹²³⁴⁵⁶⁷⁸⁹"))


def table(kind, output, *args, capsys=None):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    status = ptr.main(["--table", kind, str(output), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# base2new
# ---------------------------------------------------------------------------------------------

# (method, dataset) -> (base accuracy per seed, new accuracy per seed)
BASE2NEW = {
    (COOP, "eurosat"): ([80.0, 84.0], [50.0, 60.0]),
    (COOP, "dtd"): ([70.0, 72.0], [40.0, 44.0]),
    (MAPLE, "eurosat"): ([90.0, 92.0], [70.0, 74.0]),
    (MAPLE, "dtd"): ([75.0, 79.0], [55.0, 57.0]),
}


@pytest.fixture
def base2new_output(tmp_path):
    output = tmp_path / "output"
    for (method, dataset), (bases, news) in BASE2NEW.items():
        for seed, base, new in zip(SEEDS, bases, news):
            write_run(protocol_dir(output, "base2new/train_base", dataset, method, seed), accuracy=base)
            write_run(protocol_dir(output, "base2new/test_new", dataset, method, seed), accuracy=new)
    return output


def expected_base2new(method, dataset):
    bases, news = BASE2NEW[method, dataset]
    return np.mean(bases), np.mean(news), hm(np.mean(bases), np.mean(news))


def test_base2new_numbers_and_paper_average_rule(base2new_output, capsys):
    status, out, err = table("base2new", base2new_output, capsys=capsys)
    assert status == 0, err
    headers, rows = parse_markdown(out)
    assert headers == ["Dataset"] + [f"{t}/{c} {col}" for t, c in (COOP, MAPLE) for col in ("Base", "New", "HM")]
    assert list(rows) == ["DTD", "EuroSAT", "Average"]  # the papers' order: dtd before eurosat
    for method in (COOP, MAPLE):
        label = "/".join(method)
        for dataset, title in (("dtd", "DTD"), ("eurosat", "EuroSAT")):
            base, new, harmonic = expected_base2new(method, dataset)
            assert number(rows[title][f"{label} Base"]) == round(base, 2)
            assert number(rows[title][f"{label} New"]) == round(new, 2)
            assert number(rows[title][f"{label} HM"]) == round(harmonic, 2)
        # Average: mean Base, mean New, HM of those two means (not the mean of the HMs)
        per_dataset = [expected_base2new(method, d) for d in ("dtd", "eurosat")]
        average_base = np.mean([b for b, _, _ in per_dataset])
        average_new = np.mean([n for _, n, _ in per_dataset])
        assert number(rows["Average"][f"{label} Base"]) == round(average_base, 2)
        assert number(rows["Average"][f"{label} New"]) == round(average_new, 2)
        assert number(rows["Average"][f"{label} HM"]) == round(hm(average_base, average_new), 2)
    coop_mean_of_hms = np.mean([expected_base2new(COOP, d)[2] for d in ("dtd", "eurosat")])
    assert number(rows["Average"]["CoOp/vit_b16_ep50 HM"]) != round(coop_mean_of_hms, 2)
    assert err == ""


def test_base2new_std_is_population_std_over_seeds(base2new_output, capsys):
    _, out, _ = table("base2new", base2new_output, "--std", capsys=capsys)
    _, rows = parse_markdown(out)
    assert rows["EuroSAT"]["CoOp/vit_b16_ep50 Base"] == "82.00 ± 2.00"
    assert rows["EuroSAT"]["CoOp/vit_b16_ep50 New"] == "55.00 ± 5.00"
    assert rows["DTD"]["MaPLe/vit_b16_c2_ep5_batch4_2ctx New"] == "56.00 ± 1.00"
    # derived values (HM, Average) carry no std
    assert "±" not in rows["EuroSAT"]["CoOp/vit_b16_ep50 HM"]
    assert "±" not in rows["Average"]["CoOp/vit_b16_ep50 Base"]


def test_missing_seed_is_warned_and_left_out(base2new_output, capsys):
    missing = protocol_dir(base2new_output, "base2new/test_new", "eurosat", COOP, 2)
    (missing / "results.json").unlink()
    status, out, err = table("base2new", base2new_output, capsys=capsys)
    assert status == 0
    _, rows = parse_markdown(out)
    assert number(rows["EuroSAT"]["CoOp/vit_b16_ep50 New"]) == 50.0  # seed 1 only
    assert str(missing) in err


def test_incomplete_run_counts_as_missing(base2new_output, capsys):
    incomplete = protocol_dir(base2new_output, "base2new/train_base", "dtd", MAPLE, 1)
    write_run(incomplete, complete=False, accuracy=10.0)
    _, out, err = table("base2new", base2new_output, capsys=capsys)
    _, rows = parse_markdown(out)
    assert number(rows["DTD"]["MaPLe/vit_b16_c2_ep5_batch4_2ctx Base"]) == 79.0  # seed 2 only
    assert str(incomplete / "results.json") in err and "incomplete" in err


def test_missing_dataset_is_a_gap_with_a_warning_never_a_zero(base2new_output, capsys):
    import shutil

    maple_dtd_base = base2new_output / "base2new/train_base/dtd/shots_16" / MAPLE[0] / MAPLE[1]
    shutil.rmtree(maple_dtd_base)
    _, out, err = table("base2new", base2new_output, capsys=capsys)
    _, rows = parse_markdown(out)
    label = "MaPLe/vit_b16_c2_ep5_batch4_2ctx"
    assert rows["DTD"][f"{label} Base"] == "-"
    assert rows["DTD"][f"{label} HM"] == "-"
    assert number(rows["DTD"][f"{label} New"]) == 56.0
    assert rows["Average"][f"{label} Base"] == "-" and rows["Average"][f"{label} HM"] == "-"
    assert number(rows["Average"][f"{label} New"]) == round(np.mean([56.0, 72.0]), 2)
    assert f"{maple_dtd_base} does not exist" in err
    # the other method is untouched
    assert number(rows["DTD"]["CoOp/vit_b16_ep50 Base"]) == 71.0


def test_csv_format(base2new_output, capsys):
    _, out, _ = table("base2new", base2new_output, "--format", "csv", capsys=capsys)
    headers, rows = parse_csv(out)
    assert headers[1] == "CoOp/vit_b16_ep50 Base"
    assert float(rows["EuroSAT"]["MaPLe/vit_b16_c2_ep5_batch4_2ctx Base"]) == 91.0
    assert float(rows["Average"]["MaPLe/vit_b16_c2_ep5_batch4_2ctx New"]) == round(np.mean([72.0, 56.0]), 2)


def test_latex_format_escapes_names_and_writes_pm(base2new_output, capsys):
    _, out, _ = table("base2new", base2new_output, "--format", "latex", "--std", capsys=capsys)
    assert out.lstrip().startswith("\\begin{tabular}") and "\\end{tabular}" in out
    assert r"CoOp/vit\_b16\_ep50 Base" in out
    assert r"82.00 $\pm$ 2.00" in out
    eurosat_line = next(line for line in out.splitlines() if line.strip().startswith("EuroSAT"))
    assert eurosat_line.rstrip().endswith("\\\\") and eurosat_line.count("&") == 6


def test_trainers_filter_by_trainer_or_trainer_config(base2new_output, capsys):
    _, out, _ = table("base2new", base2new_output, "--trainers", "maple", capsys=capsys)
    headers, _ = parse_markdown(out)
    assert headers == ["Dataset"] + [f"MaPLe/vit_b16_c2_ep5_batch4_2ctx {c}" for c in ("Base", "New", "HM")]
    _, out, _ = table("base2new", base2new_output, "--trainers", "MaPLe", "CoOp/vit_b16_ep50", capsys=capsys)
    headers, _ = parse_markdown(out)
    assert headers[1].startswith("MaPLe/") and headers[4].startswith("CoOp/")  # the order asked for
    status, _, err = table("base2new", base2new_output, "--trainers", "NoSuchTrainer", capsys=capsys)
    assert status == 1 and "--trainers NoSuchTrainer" in err and "no base2new results" in err


def test_plot_writes_a_png(base2new_output, tmp_path, capsys):
    png = tmp_path / "bars.png"
    status, _, err = table("base2new", base2new_output, "--plot", str(png), capsys=capsys)
    assert status == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    status, _, err = table("openworld", base2new_output, "--plot", str(tmp_path / "x.png"), capsys=capsys)
    assert status == 1 and "--plot" in err


def test_methods_with_different_shots_are_told_apart(base2new_output, capsys):
    write_run(protocol_dir(base2new_output, "base2new/train_base", "dtd", COOP, 1, shots=4), accuracy=60.0)
    _, out, _ = table("base2new", base2new_output, "--trainers", "CoOp", capsys=capsys)
    headers, rows = parse_markdown(out)
    assert "CoOp/vit_b16_ep50 (4 shots) Base" in headers and "CoOp/vit_b16_ep50 (16 shots) Base" in headers
    assert number(rows["DTD"]["CoOp/vit_b16_ep50 (4 shots) Base"]) == 60.0
    assert rows["EuroSAT"]["CoOp/vit_b16_ep50 (4 shots) Base"] == "-"


def test_cli_subprocess_and_empty_tree(base2new_output, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "parse_test_res.py"), "--table", "base2new", str(base2new_output),
         "--format", "csv"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    _, rows = parse_csv(proc.stdout)
    assert float(rows["DTD"]["CoOp/vit_b16_ep50 Base"]) == 71.0
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, str(REPO / "parse_test_res.py"), "--table", "xd", str(empty)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1 and "no xd results" in proc.stderr


# ---------------------------------------------------------------------------------------------
# openworld
# ---------------------------------------------------------------------------------------------

# (method, dataset) -> [(hm, accuracy) per seed]
OPENWORLD = {
    (COOP, "eurosat"): [(70.0, 60.0), (74.0, 66.0)],
    (COOP, "dtd"): [(50.0, 40.0), (54.0, 42.0)],
    (MAPLE, "eurosat"): [(80.0, 72.0), (82.0, 76.0)],
    (MAPLE, "dtd"): [(60.0, 50.0), (66.0, 52.0)],
}


@pytest.fixture
def openworld_output(tmp_path):
    output = tmp_path / "output"
    for (method, dataset), per_seed in OPENWORLD.items():
        for seed, (harmonic, accuracy) in zip(SEEDS, per_seed):
            write_run(protocol_dir(output, "base2new/test_all", dataset, method, seed),
                      accuracy=accuracy, hm=harmonic, base_accuracy=harmonic + 5, new_accuracy=harmonic - 5)
    return output


def test_openworld_table_bmip_layout(openworld_output, capsys):
    status, out, err = table("openworld", openworld_output, "--std", capsys=capsys)
    assert status == 0, err
    headers, rows = parse_markdown(out)
    assert headers == ["Method", "Average HM", "Average Acc", "DTD HM", "DTD Acc", "EuroSAT HM", "EuroSAT Acc"]
    assert list(rows) == ["CoOp/vit_b16_ep50", "MaPLe/vit_b16_c2_ep5_batch4_2ctx"]
    coop = rows["CoOp/vit_b16_ep50"]
    assert coop["EuroSAT HM"] == "72.00 ± 2.00" and coop["EuroSAT Acc"] == "63.00 ± 3.00"
    assert coop["DTD HM"] == "52.00 ± 2.00" and coop["DTD Acc"] == "41.00 ± 1.00"
    # BMIP's Average: mean of the per-dataset HM and of the per-dataset Acc
    assert number(coop["Average HM"]) == 62.0 and number(coop["Average Acc"]) == 52.0
    maple = rows["MaPLe/vit_b16_c2_ep5_batch4_2ctx"]
    assert number(maple["Average HM"]) == round(np.mean([81.0, 63.0]), 2)
    assert number(maple["Average Acc"]) == round(np.mean([74.0, 51.0]), 2)


def test_openworld_run_without_hm_is_missing(openworld_output, capsys):
    run = protocol_dir(openworld_output, "base2new/test_all", "dtd", COOP, 2)
    write_run(run, accuracy=99.0)  # evaluated without TEST.OPENWORLD_METRICS
    _, out, err = table("openworld", openworld_output, capsys=capsys)
    _, rows = parse_markdown(out)
    assert number(rows["CoOp/vit_b16_ep50"]["DTD HM"]) == 50.0
    assert str(run / "results.json") in err and "hm" in err


# ---------------------------------------------------------------------------------------------
# cross-dataset and domain generalization
# ---------------------------------------------------------------------------------------------

# method -> {dataset: accuracy per seed}; imagenet is the source
TRANSFER = {
    COOP: {"imagenet": [71.0, 72.0], "eurosat": [45.0, 47.0], "dtd": [40.0, 42.0],
           "imagenetv2": [64.0, 64.0], "imagenet_a": [49.0, 51.0]},
    MAPLE: {"imagenet": [70.0, 71.0], "eurosat": [48.0, 50.0], "dtd": [46.0, 46.0],
            "imagenetv2": [64.5, 65.5], "imagenet_a": [50.0, 52.0]},
}


@pytest.fixture
def transfer_output(tmp_path):
    """The dirs scripts/common.sh run_xd_train / run_xd_test write."""
    output = tmp_path / "output"
    for (trainer, config), per_dataset in TRANSFER.items():
        for dataset, values in per_dataset.items():
            for seed, accuracy in zip(SEEDS, values):
                step = "train" if dataset == "imagenet" else "test"
                run = output / "xd" / step / dataset / "shots_16" / trainer / config / f"seed{seed}"
                write_run(run, accuracy=accuracy)
    return output


def mean_of(method, dataset):
    return float(np.mean(TRANSFER[method][dataset]))


def test_xd_table_source_targets_and_target_average(transfer_output, capsys):
    status, out, err = table("xd", transfer_output, capsys=capsys)
    assert status == 0, err
    headers, rows = parse_markdown(out)
    assert headers == ["Method", "ImageNet (source)", "DTD", "EuroSAT", "Average"]  # no ImageNet variants
    for method in (COOP, MAPLE):
        row = rows["/".join(method)]
        assert number(row["ImageNet (source)"]) == round(mean_of(method, "imagenet"), 2)
        assert number(row["DTD"]) == round(mean_of(method, "dtd"), 2)
        assert number(row["EuroSAT"]) == round(mean_of(method, "eurosat"), 2)
        # the average is over the targets only
        assert number(row["Average"]) == round(np.mean([mean_of(method, "dtd"), mean_of(method, "eurosat")]), 2)


def test_dg_table_average_and_ood_average(transfer_output, capsys):
    _, out, _ = table("dg", transfer_output, "--format", "csv", capsys=capsys)
    headers, rows = parse_csv(out)
    assert headers == ["Method", "ImageNet (source)", "ImageNetV2", "ImageNet-A", "Average", "OOD Average"]
    for method in (COOP, MAPLE):
        row = rows["/".join(method)]
        source, v2, a = (mean_of(method, d) for d in ("imagenet", "imagenetv2", "imagenet_a"))
        assert float(row["ImageNetV2"]) == round(v2, 2) and float(row["ImageNet-A"]) == round(a, 2)
        assert float(row["Average"]) == round(np.mean([source, v2, a]), 2)  # source included (Table 3)
        assert float(row["OOD Average"]) == round(np.mean([v2, a]), 2)


def test_xd_missing_target_is_a_gap_and_the_average_too(transfer_output, capsys):
    import shutil

    missing = transfer_output / "xd" / "test" / "dtd" / "shots_16" / "MaPLe" / MAPLE[1]
    shutil.rmtree(missing)
    _, out, err = table("xd", transfer_output, "--datasets", "dtd", "eurosat", "ucf101", capsys=capsys)
    headers, rows = parse_markdown(out)
    assert headers[2:] == ["DTD", "EuroSAT", "UCF101", "Average"]
    maple = rows["MaPLe/vit_b16_c2_ep5_batch4_2ctx"]
    assert maple["DTD"] == "-" and maple["UCF101"] == "-" and maple["Average"] == "-"
    assert number(maple["EuroSAT"]) == 49.0
    assert f"{missing} does not exist" in err
    assert f"{transfer_output / 'xd' / 'test' / 'ucf101' / 'shots_16' / 'MaPLe' / MAPLE[1]} does not exist" in err


# ---------------------------------------------------------------------------------------------
# few-shot
# ---------------------------------------------------------------------------------------------

# (method, dataset, shots) -> accuracy per seed
FEWSHOT = {
    (COOP, "eurosat", 1): [50.0, 54.0], (COOP, "eurosat", 2): [60.0, 62.0],
    (COOP, "dtd", 1): [30.0, 34.0], (COOP, "dtd", 2): [40.0, 40.0],
    (MAPLE, "eurosat", 1): [55.0, 57.0], (MAPLE, "eurosat", 2): [65.0, 67.0],
    (MAPLE, "dtd", 1): [35.0, 35.0],  # MaPLe dtd 2 shots never ran
}


@pytest.fixture
def fewshot_output(tmp_path):
    output = tmp_path / "output"
    for (method, dataset, shots), values in FEWSHOT.items():
        for seed, accuracy in zip(SEEDS, values):
            write_run(protocol_dir(output, "fewshot", dataset, method, seed, shots=shots), accuracy=accuracy)
    return output


def test_fewshot_rows_are_shots_columns_datasets(fewshot_output, capsys):
    status, out, err = table("fewshot", fewshot_output, "--format", "csv", capsys=capsys)
    assert status == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["Method", "Shots", "DTD", "EuroSAT", "Average"]
    body = {(row[0], int(row[1])): dict(zip(rows[0], row)) for row in rows[1:]}
    assert list(body) == [("CoOp/vit_b16_ep50", 1), ("CoOp/vit_b16_ep50", 2),
                          ("MaPLe/vit_b16_c2_ep5_batch4_2ctx", 1), ("MaPLe/vit_b16_c2_ep5_batch4_2ctx", 2)]
    assert float(body["CoOp/vit_b16_ep50", 1]["DTD"]) == 32.0
    assert float(body["CoOp/vit_b16_ep50", 2]["EuroSAT"]) == 61.0
    assert float(body["CoOp/vit_b16_ep50", 2]["Average"]) == 50.5
    maple2 = body["MaPLe/vit_b16_c2_ep5_batch4_2ctx", 2]
    assert maple2["DTD"] == "-" and maple2["Average"] == "-" and float(maple2["EuroSAT"]) == 66.0
    assert "fewshot/dtd/shots_2/MaPLe/vit_b16_c2_ep5_batch4_2ctx does not exist" in err


# ---------------------------------------------------------------------------------------------
# end to end: train.py -> results.json -> tables
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_base2new_and_openworld_tables(tmp_path, eurosat_root, tiny_clip_path, capsys):
    output = tmp_path / "output"
    common = Path("eurosat") / "shots_2" / "CoOp" / "tiny_clip" / "seed1"
    train_dir = output / "base2new" / "train_base" / common

    def train(out_dir, subsample, *extra, flags=()):
        proc = run_train(
            *flags, "--root", eurosat_root, "--seed", 1, "--trainer", "CoOp",
            "--dataset-config-file", REPO / "configs/datasets/eurosat.yaml",
            "--config-file", REPO / "configs/smoke/tiny_clip.yaml",
            "--output-dir", out_dir, "--backbone", tiny_clip_path, "--device", "cpu",
            "DATASET.NUM_SHOTS", 2, "DATASET.SUBSAMPLE_CLASSES", subsample,
            "TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32", "OPTIM.MAX_EPOCH", 1, *extra,
        )
        assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-3000:]}"
        return json.loads((Path(out_dir) / "results.json").read_text())

    eval_flags = ("--eval-only", "--model-dir", train_dir, "--load-epoch", 1)
    base = train(train_dir, "base")
    new = train(output / "base2new" / "test_new" / common, "new", flags=eval_flags)
    everything = train(output / "base2new" / "test_all" / common, "all", "TEST.OPENWORLD_METRICS", True,
                       flags=eval_flags)

    metrics = everything["metrics"]
    assert metrics["hm"] == pytest.approx(ptr.harmonic_mean(metrics["base_accuracy"], metrics["new_accuracy"]))
    # EuroSAT has 10 classes with equally many test images each: overall = mean of the halves
    assert metrics["accuracy"] == pytest.approx((metrics["base_accuracy"] + metrics["new_accuracy"]) / 2)
    log = (output / "base2new" / "test_all" / common / "log.txt").read_text()
    assert f"* hm: {metrics['hm']:.1f}%" in log

    capsys.readouterr()
    status, out, err = table("base2new", output, capsys=capsys)
    assert status == 0, err
    _, rows = parse_markdown(out)
    row = rows["EuroSAT"]
    b, n = base["metrics"]["accuracy"], new["metrics"]["accuracy"]
    assert number(row["CoOp/tiny_clip Base"]) == round(b, 2)
    assert number(row["CoOp/tiny_clip New"]) == round(n, 2)
    assert number(row["CoOp/tiny_clip HM"]) == round(ptr.harmonic_mean(b, n), 2)

    status, out, err = table("openworld", output, capsys=capsys)
    assert status == 0, err
    _, rows = parse_markdown(out)
    assert number(rows["CoOp/tiny_clip"]["EuroSAT HM"]) == round(metrics["hm"], 2)
    assert number(rows["CoOp/tiny_clip"]["EuroSAT Acc"]) == round(metrics["accuracy"], 2)


def test_base2new_rows_methods_puts_one_method_per_row(base2new_output, capsys):
    status, out, err = table("base2new", base2new_output, "--rows", "methods", capsys=capsys)
    assert status == 0, err
    headers, rows = parse_markdown(out)
    assert headers == ["Method"] + [f"{d} {col}" for d in ("DTD", "EuroSAT", "Average")
                                    for col in ("Base", "New", "HM")]
    assert list(rows) == ["/".join(COOP), "/".join(MAPLE)]
    for method in (COOP, MAPLE):
        row = rows["/".join(method)]
        for dataset, title in (("dtd", "DTD"), ("eurosat", "EuroSAT")):
            base, new, harmonic = expected_base2new(method, dataset)
            assert number(row[f"{title} Base"]) == pytest.approx(base, abs=0.005)
            assert number(row[f"{title} New"]) == pytest.approx(new, abs=0.005)
            assert number(row[f"{title} HM"]) == pytest.approx(harmonic, abs=0.005)
        average_base = np.mean([expected_base2new(method, d)[0] for d in ("dtd", "eurosat")])
        assert number(row["Average Base"]) == pytest.approx(average_base, abs=0.005)
    # one dataset: no Average block
    status, out, _ = table("base2new", base2new_output, "--rows", "methods", "--datasets", "eurosat",
                           capsys=capsys)
    assert parse_markdown(out)[0] == ["Method", "EuroSAT Base", "EuroSAT New", "EuroSAT HM"]
    # other tables have no such layout
    status, _, err = table("xd", base2new_output, "--rows", "methods", capsys=capsys)
    assert status == 1 and "--rows methods is a base2new layout" in err


# ---------------------------------------------------------------------------------------------
# cells from fewer runs than expected: footnotes, precision, --strict
# ---------------------------------------------------------------------------------------------

COOP_LABEL, MAPLE_LABEL = "/".join(COOP), "/".join(MAPLE)


def drop_run(output, step, dataset, method, seed):
    """Remove one run's results.json (the run dir stays: a run that never finished)."""
    run = protocol_dir(output, f"base2new/{step}", dataset, method, seed)
    (run / "results.json").unlink()
    return run


def test_partial_cells_get_markdown_footnotes(base2new_output, capsys):
    complete = table("base2new", base2new_output, capsys=capsys)[1]
    assert not any(mark in complete for mark in "¹²") and "runs" not in complete
    drop_run(base2new_output, "test_new", "eurosat", COOP, 2)
    status, out, err = table("base2new", base2new_output, "--std", capsys=capsys)
    assert status == 0, err
    _, rows = parse_markdown(out)
    assert rows["EuroSAT"][f"{COOP_LABEL} New"] == "50.00¹"  # one run: no spread shown
    # derived cells (HM, Average) and complete cells carry no marker
    marked = [(name, header) for name, row in rows.items() for header, text in row.items() if "¹" in text]
    assert marked == [("EuroSAT", f"{COOP_LABEL} New")]
    assert out.rstrip("\n").endswith("|\n\n¹ 1 of 2 runs")

    # one footnote per distinct "N of M runs", numbered in reading order
    status, out, _ = table("base2new", base2new_output, "--seeds", "1", "2", "3", capsys=capsys)
    _, rows = parse_markdown(out)
    assert rows["DTD"][f"{COOP_LABEL} Base"] == "71.00¹"
    assert rows["EuroSAT"][f"{COOP_LABEL} New"] == "50.00²"
    assert rows["EuroSAT"][f"{MAPLE_LABEL} New"] == "72.00¹"
    assert out.rstrip("\n").endswith("|\n\n¹ 2 of 3 runs\n² 1 of 3 runs")


def test_partial_cells_csv_stays_numeric_with_comment_footnotes(base2new_output, capsys):
    drop_run(base2new_output, "test_new", "eurosat", COOP, 2)
    drop_run(base2new_output, "train_base", "dtd", MAPLE, 1)
    status, out, err = table("base2new", base2new_output, "--format", "csv", capsys=capsys)
    assert status == 0, err
    body, notes = out.rstrip("\n").split("\n\n")
    assert notes.splitlines() == [
        ptr.CSV_FOOTNOTE_HEADER,
        f"# DTD, {MAPLE_LABEL} Base: 1 of 2 runs",
        f"# EuroSAT, {COOP_LABEL} New: 1 of 2 runs",
    ]
    # a csv reader skipping blank and '#' lines reads the plain table, every value a number
    kept = [line for line in out.splitlines() if line and not line.startswith("#")]
    headers, rows = parse_csv("\n".join(kept))
    assert "\n".join(kept) == body
    assert float(rows["EuroSAT"][f"{COOP_LABEL} New"]) == 50.0
    assert float(rows["DTD"][f"{MAPLE_LABEL} Base"]) == 79.0
    assert all(float(rows[name][header]) for name in rows for header in headers[1:])
    # a complete table has no trailing lines at all
    assert "#" not in table("base2new", base2new_output, "--format", "csv", "--seeds", "2", capsys=capsys)[1]


def test_partial_cells_latex_footnotes(base2new_output, capsys):
    drop_run(base2new_output, "test_new", "eurosat", COOP, 2)
    status, out, err = table("base2new", base2new_output, "--format", "latex", "--std", capsys=capsys)
    assert status == 0, err
    eurosat_line = next(line for line in out.splitlines() if line.strip().startswith("EuroSAT"))
    assert r"50.00$^{1}$" in eurosat_line and eurosat_line.count("&") == 6
    assert eurosat_line.count("$^{") == 1
    tabular, footnotes = out.rstrip("\n").split("\\end{tabular}")
    assert "$^{1}$" in tabular and footnotes == "\n\n$^{1}$ 1 of 2 runs"
    _, out, _ = table("base2new", base2new_output, "--format", "latex", "--seeds", "1", "2", "3", capsys=capsys)
    assert out.rstrip("\n").endswith("\\end{tabular}\n\n$^{1}$ 2 of 3 runs \\\\\n$^{2}$ 1 of 3 runs")


def test_openworld_metric_missing_from_one_run_footnotes_only_that_cell(openworld_output, capsys):
    run = protocol_dir(openworld_output, "base2new/test_all", "dtd", COOP, 2)
    write_run(run, accuracy=99.0)  # no hm: the run counts for Acc, not for HM
    status, out, err = table("openworld", openworld_output, capsys=capsys)
    assert status == 0, err
    _, rows = parse_markdown(out)
    assert rows[COOP_LABEL]["DTD HM"] == "50.00¹"
    assert rows[COOP_LABEL]["DTD Acc"] == "69.50"
    assert sum(line.count(str(run)) for line in err.splitlines()) == 1


def test_table_mean_never_mixes_json_and_log_precision(base2new_output, capsys):
    # seed1 kept only its log (71.2 printed), seed2 its results.json (71.2345): one true value
    seed1 = drop_run(base2new_output, "train_base", "dtd", COOP, 1)
    (seed1 / "log.txt").write_text("Finish training\n=> result\n* accuracy: 71.2%\n")
    write_run(protocol_dir(base2new_output, "base2new/train_base", "dtd", COOP, 2), accuracy=71.2345)
    status, out, err = table("base2new", base2new_output, "--std", capsys=capsys)
    assert status == 0
    _, rows = parse_markdown(out)
    assert rows["DTD"][f"{COOP_LABEL} Base"] == "71.20 ± 0.00"  # not 71.22 ± 0.02
    config_dir = seed1.parent
    assert err.count("NOTE:") == 1 and f"NOTE: {config_dir}: accuracy: 1 of 2 runs" in err


def test_table_falls_back_to_log_when_results_json_is_corrupt(base2new_output, capsys):
    run = protocol_dir(base2new_output, "base2new/test_new", "dtd", MAPLE, 1)
    (run / "results.json").write_text('{"complete": true, "metr')
    (run / "log.txt").write_text("Evaluate on the *test* set\n=> result\n* accuracy: 54.0%\n")
    status, out, err = table("base2new", base2new_output, capsys=capsys)
    assert status == 0
    _, rows = parse_markdown(out)
    assert rows["DTD"][f"{MAPLE_LABEL} New"] == "55.50"  # (54.0 + 57.0) / 2, both runs used
    assert f"cannot read {run / 'results.json'}" in err and f"read {run / 'log.txt'} instead" in err


def test_strict_exit_status_in_table_mode(base2new_output, fewshot_output, capsys):
    status, _, err = table("base2new", base2new_output, "--strict", capsys=capsys)
    assert status == 0 and err == ""
    missing = drop_run(base2new_output, "test_new", "eurosat", COOP, 2)
    status, out, err = table("base2new", base2new_output, capsys=capsys)
    assert status == 0  # without --strict: a footnote and a warning, as before
    status, out, err = table("base2new", base2new_output, "--strict", capsys=capsys)
    assert status == 1
    assert "¹ 1 of 2 runs" in out  # the table is still printed
    assert str(missing) in err
    assert err.splitlines()[-1] == (
        "ERROR: --strict: 1 of 16 expected runs is missing or incomplete (see the warnings above)")
    # a config dir that never ran counts all its seeds; so do gaps (fewshot: MaPLe dtd 2 shots)
    status, _, err = table("fewshot", fewshot_output, "--strict", "--format", "csv", capsys=capsys)
    assert status == 1 and "ERROR: --strict: 2 of 16 expected runs are missing" in err
    status, _, _ = table("fewshot", fewshot_output, "--strict", "--trainers", "CoOp", capsys=capsys)
    assert status == 0


def test_strict_cli_exit_codes_in_table_mode(transfer_output):
    command = [sys.executable, str(REPO / "parse_test_res.py"), "--table", "xd", str(transfer_output), "--strict"]
    assert subprocess.run(command, capture_output=True, text=True, timeout=120).returncode == 0
    (transfer_output / "xd" / "test" / "dtd" / "shots_16" / "CoOp" / COOP[1] / "seed2" / "results.json").unlink()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "1 of 12 expected runs is missing" in proc.stderr
    assert "40.00¹" in proc.stdout and "¹ 1 of 2 runs" in proc.stdout


# ---------------------------------------------------------------------------------------------
# composition: BMIP's Table 4 (regularizer x base) from the base2new tree
# ---------------------------------------------------------------------------------------------

PROMPTSRC = ("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx")
PROMPTSRC_BMIP = ("PromptSRC_BMIP", "vit_bitp_ctx4_ep20TT_adam_PromptSRC")
PROMPTSRC_BLOOM = ("PromptSRC_Bloom", "vit_b16_c2_ep20_batch4_2ctx")
COPROMPT = ("CoPrompt", "coprompt")
COPROMPT_BMIP = ("CoPrompt_BMIP", "vit_b16_c2_ep8_batch4_2ctx_randaug")
COPROMPT_BLOOM = ("CoPrompt_Bloom", "vit_b16_c2_ep8_batch4_2ctx_randaug")
# method -> {dataset: (base accuracy per seed, new accuracy per seed)}
COMPOSITION = {
    PROMPTSRC: {"eurosat": ([90.0, 92.0], [70.0, 74.0]), "dtd": ([80.0, 82.0], [60.0, 62.0])},
    PROMPTSRC_BMIP: {"eurosat": ([91.0, 93.0], [72.0, 76.0]), "dtd": ([81.0, 85.0], [61.0, 65.0])},
    PROMPTSRC_BLOOM: {"eurosat": ([89.0, 91.0], [73.0, 75.0]), "dtd": ([79.0, 81.0], [62.0, 64.0])},
    COPROMPT: {"eurosat": ([94.0, 96.0], [68.0, 70.0]), "dtd": ([83.0, 85.0], [58.0, 62.0])},
    COPROMPT_BMIP: {"eurosat": ([95.0, 95.0], [71.0, 73.0]), "dtd": ([84.0, 86.0], [60.0, 60.0])},
    COPROMPT_BLOOM: {"eurosat": ([93.0, 97.0], [70.0, 72.0]), "dtd": ([82.0, 84.0], [59.0, 63.0])},
    # not in Table 4: left out of the table, also from the datasets it expects (ucf101)
    MAPLE: {"eurosat": ([1.0, 1.0], [1.0, 1.0]), "ucf101": ([1.0, 1.0], [1.0, 1.0])},
    ("PromptSRC_MaPLe", "vit_b16_c2_ep20_batch4_2ctx"): {"ucf101": ([2.0, 2.0], [2.0, 2.0])},
}
# Average over eurosat and dtd of the seed means, worked out by hand: (Base, Novel, HM of the two)
# e.g. PromptSRC: Base (91 + 81) / 2 = 86, Novel (72 + 61) / 2 = 66.5, HM 2 * 86 * 66.5 / 152.5 = 75.0033
TABLE4 = {
    "PromptSRC": {"Alone": ("86.00", "66.50", "75.00"), "+BMIP": ("87.50", "68.50", "76.84"),
                  "+Bloom": ("85.00", "68.50", "75.86")},
    "CoPrompt": {"Alone": ("89.50", "64.50", "74.97"), "+BMIP": ("90.00", "66.00", "76.15"),
                 "+Bloom": ("89.00", "66.00", "75.79")},
}
GROUPS = ("Alone", "+BMIP", "+Bloom")


@pytest.fixture
def composition_output(tmp_path):
    output = tmp_path / "output"
    for method, per_dataset in COMPOSITION.items():
        for dataset, (bases, news) in per_dataset.items():
            for seed, base, new in zip(SEEDS, bases, news):
                write_run(protocol_dir(output, "base2new/train_base", dataset, method, seed), accuracy=base)
                write_run(protocol_dir(output, "base2new/test_new", dataset, method, seed), accuracy=new)
    return output


def table4_headers():
    return ["Regularizer"] + [f"{group} {column}" for group in GROUPS for column in ("Base", "Novel", "HM")]


def test_composition_table_is_bmips_table4(composition_output, capsys):
    status, out, err = table("composition", composition_output, capsys=capsys)
    assert status == 0, err
    headers, rows = parse_markdown(out)
    assert headers == table4_headers()
    assert list(rows) == ["PromptSRC", "CoPrompt"]
    for regularizer, groups in TABLE4.items():
        for group, values in groups.items():
            assert tuple(rows[regularizer][f"{group} {c}"] for c in ("Base", "Novel", "HM")) == values, group
    # the Average rule of the base2new table: HM of the averages, not the mean of per-dataset HMs
    assert round(np.mean([hm(91.0, 72.0), hm(81.0, 61.0)]), 2) == 74.99
    assert err == ""  # every expected run is there: ucf101 (MaPLe only) is not expected
    status, out, err = table("composition", composition_output, "--rows", "methods", "--strict", capsys=capsys)
    assert status == 0 and parse_markdown(out)[1]["CoPrompt"]["+BMIP HM"] == "76.15"


def test_composition_csv_and_latex(composition_output, capsys):
    _, out, _ = table("composition", composition_output, "--format", "csv", capsys=capsys)
    headers, rows = parse_csv(out)
    assert headers == table4_headers()
    assert [rows["CoPrompt"][h] for h in headers[1:]] == [v for g in GROUPS for v in TABLE4["CoPrompt"][g]]
    _, out, _ = table("composition", composition_output, "--format", "latex", capsys=capsys)
    assert r"\begin{tabular}" in out and r"+BMIP Base" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("PromptSRC"))
    assert [cell.strip() for cell in line.rstrip().rstrip("\\").split("&")[1:]] == [
        v for g in GROUPS for v in TABLE4["PromptSRC"][g]]


def test_composition_std_per_dataset(composition_output, capsys):
    # averages over datasets are derived, as the base2new Average row: no spread
    _, out, _ = table("composition", composition_output, "--std", capsys=capsys)
    assert "±" not in out
    # over one dataset the value is that dataset's mean +- population std over the seeds
    _, out, _ = table("composition", composition_output, "--datasets", "eurosat", "--std", capsys=capsys)
    _, rows = parse_markdown(out)
    assert rows["PromptSRC"]["Alone Base"] == "91.00 ± 1.00"
    assert rows["PromptSRC"]["+BMIP Novel"] == "74.00 ± 2.00"
    assert rows["CoPrompt"]["+BMIP Base"] == "95.00 ± 0.00"
    assert rows["CoPrompt"]["+Bloom HM"] == f"{hm(95.0, 71.0):.2f}"  # derived: no spread
    # one row per regularizer and dataset, then its Average
    status, out, err = table("composition", composition_output, "--rows", "datasets", "--std", capsys=capsys)
    assert status == 0, err
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
             if line.startswith("|")]
    assert lines[0] == ["Regularizer", "Dataset"] + table4_headers()[1:]
    assert [line[:2] for line in lines[2:]] == [["PromptSRC", "DTD"], ["PromptSRC", "EuroSAT"],
                                                ["PromptSRC", "Average"], ["CoPrompt", "DTD"],
                                                ["CoPrompt", "EuroSAT"], ["CoPrompt", "Average"]]
    assert lines[2][2:5] == ["81.00 ± 1.00", "61.00 ± 1.00", f"{hm(81.0, 61.0):.2f}"]  # PromptSRC, DTD, Alone
    assert lines[3][5:8] == ["92.00 ± 1.00", "74.00 ± 2.00", f"{hm(92.0, 74.0):.2f}"]  # PromptSRC, EuroSAT, +BMIP
    assert lines[7][2:] == [v for g in GROUPS for v in TABLE4["CoPrompt"][g]]  # CoPrompt, Average


def test_composition_missing_cell_is_a_gap_and_partial_cells_are_footnoted(composition_output, capsys):
    import shutil

    # CoPrompt over Bloom never trained on dtd: its +Bloom Base (and HM) is a gap, never a zero
    never = composition_output / "base2new/train_base/dtd/shots_16" / COPROMPT_BLOOM[0] / COPROMPT_BLOOM[1]
    shutil.rmtree(never)
    # PromptSRC over BMIP lost one eurosat test: its +BMIP Novel averages 3 of the 4 runs
    lost = protocol_dir(composition_output, "base2new/test_new", "eurosat", PROMPTSRC_BMIP, 2)
    (lost / "results.json").unlink()
    status, out, err = table("composition", composition_output, "--std", capsys=capsys)
    assert status == 0, err
    _, rows = parse_markdown(out)
    assert rows["CoPrompt"]["+Bloom Base"] == "-" and rows["CoPrompt"]["+Bloom HM"] == "-"
    assert rows["CoPrompt"]["+Bloom Novel"] == "66.00"
    novel = (72.0 + 63.0) / 2  # eurosat: seed 1 only (72), dtd: (61 + 65) / 2
    assert rows["PromptSRC"]["+BMIP Novel"] == f"{novel:.2f}¹" == "67.50¹"
    assert rows["PromptSRC"]["+BMIP HM"] == f"{hm(87.5, novel):.2f}"  # derived: no marker
    marked = [(name, header) for name, row in rows.items() for header, text in row.items() if "¹" in text]
    assert marked == [("PromptSRC", "+BMIP Novel")]
    assert out.rstrip("\n").endswith("|\n\n¹ 3 of 4 runs")
    assert f"{never} does not exist" in err and str(lost) in err
    # rows for the other regularizer and groups are untouched
    assert rows["CoPrompt"]["+BMIP HM"] == "76.15" and rows["PromptSRC"]["Alone HM"] == "75.00"

    _, out, _ = table("composition", composition_output, "--format", "csv", capsys=capsys)
    assert out.rstrip("\n").split("\n\n")[1].splitlines() == [
        ptr.CSV_FOOTNOTE_HEADER, "# PromptSRC, +BMIP Novel: 3 of 4 runs"]
    _, out, _ = table("composition", composition_output, "--format", "latex", capsys=capsys)
    assert "67.50$^{1}$" in out and out.rstrip("\n").endswith("\\end{tabular}\n\n$^{1}$ 3 of 4 runs")
    # per dataset, the footnote sits on the eurosat cell itself (seed 1's 72), the Average has none
    _, out, _ = table("composition", composition_output, "--rows", "datasets", capsys=capsys)
    lines = [[c.strip() for c in line.strip().strip("|").split("|")] for line in out.splitlines()
             if line.startswith("|")]
    by_row = {tuple(line[:2]): dict(zip(lines[0], line)) for line in lines[2:]}
    assert by_row["PromptSRC", "EuroSAT"]["+BMIP Novel"] == "72.00¹"
    assert by_row["PromptSRC", "Average"]["+BMIP Novel"] == "67.50"
    assert by_row["CoPrompt", "DTD"]["+Bloom Base"] == "-" and by_row["CoPrompt", "DTD"]["+Bloom Novel"] == "61.00"

    # --strict: the dtd training runs of CoPrompt_Bloom (2 seeds) and the lost test run
    status, _, err = table("composition", composition_output, "--strict", capsys=capsys)
    assert status == 1
    assert err.splitlines()[-1] == "ERROR: --strict: 3 of 48 expected runs are missing or incomplete (see the warnings above)"


def test_composition_group_without_any_run_warns_and_counts_for_strict(composition_output, capsys):
    import shutil

    for step in ("train_base", "test_new"):
        for dataset in ("eurosat", "dtd"):
            shutil.rmtree(composition_output / "base2new" / step / dataset / "shots_16" / "CoPrompt_Bloom")
    status, out, err = table("composition", composition_output, "--strict", capsys=capsys)
    assert status == 1
    _, rows = parse_markdown(out)
    assert [rows["CoPrompt"][f"+Bloom {c}"] for c in ("Base", "Novel", "HM")] == ["-", "-", "-"]
    assert rows["CoPrompt"]["+BMIP Base"] == "90.00"
    assert (f"WARNING: composition: no base2new runs of CoPrompt_Bloom under {composition_output / 'base2new'}, "
            "so its CoPrompt cells are gaps (bash scripts/sweep.sh base2new coprompt-bloom)") in err
    # its 2 datasets x 2 seeds x (train, test) runs are expected: 40 found + 8 missing
    assert err.splitlines()[-1] == "ERROR: --strict: 8 of 48 expected runs are missing or incomplete (see the warnings above)"
    # a group left out with --trainers is not expected: no warning, no strict failure
    status, out, err = table("composition", composition_output, "--strict", "--trainers", "CoPrompt",
                             "CoPrompt_BMIP", capsys=capsys)
    assert status == 0 and err == ""
    _, rows = parse_markdown(out)
    assert list(rows) == ["CoPrompt"] and rows["CoPrompt"]["+Bloom Base"] == "-"
    assert rows["CoPrompt"]["Alone HM"] == "74.97"


def test_composition_configs_pair_by_shared_name_and_trainers_filter(composition_output, capsys):
    # mini_clip runs of two PromptSRC trainers: a row of their own, paired by the config name
    mini = {("PromptSRC", "mini_clip"): (50.0, 40.0), ("PromptSRC_BMIP", "mini_clip"): (56.0, 44.0)}
    for method, (base, new) in mini.items():
        for dataset in ("eurosat", "dtd"):
            for seed in SEEDS:
                write_run(protocol_dir(composition_output, "base2new/train_base", dataset, method, seed), accuracy=base)
                write_run(protocol_dir(composition_output, "base2new/test_new", dataset, method, seed), accuracy=new)
    status, out, err = table("composition", composition_output, capsys=capsys)
    assert status == 0, err
    _, rows = parse_markdown(out)
    assert list(rows) == ["PromptSRC", "PromptSRC (mini_clip)", "CoPrompt"]
    assert [rows["PromptSRC"][f"{g} HM"] for g in GROUPS] == [TABLE4["PromptSRC"][g][2] for g in GROUPS]
    assert [rows["PromptSRC (mini_clip)"][f"{g} Base"] for g in GROUPS] == ["50.00", "56.00", "-"]
    assert rows["PromptSRC (mini_clip)"]["+BMIP HM"] == f"{hm(56.0, 44.0):.2f}"
    assert err == ""  # PromptSRC_Bloom has runs (in the other row): its mini_clip gap is no missing run
    # --trainers picks the configs (TRAINER/CFG), as in the base2new table
    _, out, err = table("composition", composition_output, "--trainers", "PromptSRC/mini_clip",
                        "PromptSRC_BMIP/mini_clip", "MaPLe", capsys=capsys)
    _, rows = parse_markdown(out)
    assert list(rows) == ["PromptSRC"] and rows["PromptSRC"]["Alone Base"] == "50.00"
    assert rows["PromptSRC"]["+Bloom Base"] == "-"
    assert "--trainers MaPLe: no run of that trainer" in err  # MaPLe is not one of the table's trainers
    # without any PromptSRC_Bloom run, both PromptSRC rows miss it: one warning, its 8 runs counted once
    import shutil

    for step in ("train_base", "test_new"):
        for dataset in ("eurosat", "dtd"):
            shutil.rmtree(composition_output / "base2new" / step / dataset / "shots_16" / "PromptSRC_Bloom")
    status, out, err = table("composition", composition_output, "--strict", capsys=capsys)
    _, rows = parse_markdown(out)
    assert rows["PromptSRC"]["+Bloom Base"] == "-" and rows["PromptSRC (mini_clip)"]["+Bloom Base"] == "-"
    assert status == 1 and err.count("no base2new runs of PromptSRC_Bloom") == 1
    assert err.splitlines()[-1] == "ERROR: --strict: 8 of 64 expected runs are missing or incomplete (see the warnings above)"


def test_composition_errors(composition_output, tmp_path, capsys):
    status, _, err = table("composition", composition_output, "--plot", str(tmp_path / "x.png"), capsys=capsys)
    assert status == 1 and "--plot" in err
    status, _, err = table("composition", composition_output, "--trainers", "MaPLe", capsys=capsys)
    assert status == 1 and "ERROR: no composition results under" in err and "CoPrompt_Bloom" in err
    status, _, err = table("xd", composition_output, "--rows", "methods", capsys=capsys)
    assert status == 1 and "--rows methods is a base2new layout" in err
