"""Every evaluation protocol end to end: the real scripts/sweep.sh drives train.py with the tiny
CLIP on generated datasets (two datasets, two seeds, one epoch), then the tables that
``parse_test_res.py --table ... --format csv`` prints are checked cell by cell against the
results.json files the runs wrote.

Training runs are shared as the layout allows: openworld tests the base2new models, dg tests the
ImageNet models xd trained. Each sweep runs once per module (module-scoped fixtures).
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import train_server_env

import parse_test_res
from tests.helpers.fake_datasets import (
    make_dtd,
    make_eurosat,
    make_imagenet,
    make_imagenet_a,
    make_imagenet_r,
    make_imagenet_sketch,
    make_imagenetv2,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SEEDS = (1, 2)
SHOTS = 2
SHOTS_LIST = (1, 2)
DATASETS = ("eurosat", "dtd")  # paper order: DTD before EuroSAT
XD_TARGETS = ("eurosat", "dtd")
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
# ImageNet-A / -R hold a few of ImageNet's wnid folders, so their classifiers are subsets.
IMAGENET_CLASSES = 4
COOP = ("CoOp", "vit_b16_ep100")  # base2new / openworld config of scripts/coop
COOP_XD = ("CoOp", "vit_b16_ep50")  # xd / dg / fewshot config
ZSCLIP = ("ZeroshotCLIP", "vit_b16")
# Every train.py call costs ~6 s of imports on 2 cores, so zero-shot CLIP (the second column) runs on
# one dataset only; its DTD cells then also check that a missing run is a gap with a warning.
ZSCLIP_DATASETS = ("eurosat",)
TITLES = parse_test_res.DATASET_TITLES


# ----------------------------------------------------------------------------- running the sweeps
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One DATA root with every dataset the five protocols need, tiny images and few classes."""
    root = str(tmp_path_factory.mktemp("protocol_data"))
    make_eurosat(root, n_classes=4, n_per_class=6, image_size=8)
    make_dtd(root, n_classes=4, n_per_class=6)
    make_imagenet(root, n_classes=IMAGENET_CLASSES, n_per_class=3, n_val_per_class=2)
    make_imagenetv2(root, n_classes=IMAGENET_CLASSES, n_per_class=2)
    make_imagenet_sketch(root, n_classes=IMAGENET_CLASSES, n_per_class=2)
    make_imagenet_a(root, n_classes=IMAGENET_CLASSES, subset=(3, 1), n_per_class=2)
    make_imagenet_r(root, n_classes=IMAGENET_CLASSES, subset=(0, 2, 3), n_per_class=2)
    return root


@pytest.fixture(scope="module")
def sweep(data_root, tiny_clip_path, tmp_path_factory):
    """``sweep(protocol, method, **env)`` runs bash scripts/sweep.sh into one shared OUTPUT; returns OUTPUT."""
    output = tmp_path_factory.mktemp("protocol_output")
    extra_opts = (
        f"--backbone {tiny_clip_path} --device cpu INPUT.SIZE (32,32) OPTIM.MAX_EPOCH 1 "
        "DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 50 "
        "TRAINER.COOP.PREC fp32 TRAINER.ZSCLIP.PREC fp32"
    )

    def run(protocol, method, **overrides):
        env = dict(os.environ)
        env.pop("PROMPTCLIP_DEBUG", None)
        env.update(
            DATA=data_root, OUTPUT=str(output), **train_server_env(), EXTRA_OPTS=extra_opts,
            SEEDS=" ".join(map(str, SEEDS)), SHOTS=str(SHOTS), LOADEP="1", DATASETS=" ".join(DATASETS),
        )
        env.update(overrides)
        proc = subprocess.run(
            ["bash", "scripts/sweep.sh", protocol, method],
            cwd=str(REPO), env=env, capture_output=True, text=True, timeout=900,
        )
        assert proc.returncode == 0, f"sweep {protocol} {method} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        assert f"python parse_test_res.py --table {protocol} {output}" in proc.stdout
        return output

    return run


@pytest.fixture(scope="module")
def base2new_output(sweep):
    """CoOp and zero-shot CLIP through base2new, then openworld (CoOp reusing its base2new models)."""
    sweep("base2new", "coop")
    sweep("base2new", "zsclip", DATASETS=" ".join(ZSCLIP_DATASETS))  # train_base, test_new, test_all at once
    return sweep("openworld", "coop")


@pytest.fixture(scope="module")
def transfer_output(sweep):
    """CoOp trained on ImageNet (xd), then evaluated on the ImageNet variants (dg) with the same models."""
    sweep("xd", "coop", DATASETS=" ".join(XD_TARGETS))
    return sweep("dg", "coop", DATASETS=" ".join(DG_TARGETS))


@pytest.fixture(scope="module")
def fewshot_output(sweep):
    """CoOp at 1 and 2 shots on all classes."""
    return sweep("fewshot", "coop", SHOTS_LIST=" ".join(map(str, SHOTS_LIST)))


# ----------------------------------------------------------------------------- reading the results
def results(run_dir):
    """The results.json of one run (it must be complete)."""
    path = Path(run_dir) / "results.json"
    assert path.is_file(), f"no results.json in {run_dir}"
    data = json.loads(path.read_text())
    assert data["complete"] is True, path
    return data


def seed_mean(config_dir, metric="accuracy"):
    """Mean over SEEDS of one metric of ``config_dir/seed<S>/results.json``."""
    return float(np.mean([results(Path(config_dir) / f"seed{seed}")["metrics"][metric] for seed in SEEDS]))


def hm(base, new):
    return 2 * base * new / (base + new) if base + new else 0.0


def csv_table(kind, output, capsys, *extra, missing=()):
    """``parse_test_res.py --table KIND OUTPUT --format csv``: (headers, rows as lists of texts).

    Its stderr must be exactly one warning per config dir in ``missing`` (none by default).
    """
    assert parse_test_res.main(["--table", kind, str(output), "--format", "csv", *extra]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"WARNING: missing runs: {d} does not exist" for d in missing]
    lines = [line.split(",") for line in captured.out.strip().splitlines()]
    headers = lines[0]
    return headers, lines[1:]


def as_dicts(headers, rows, key_columns=1):
    """Rows keyed by their first ``key_columns`` cells (joined with '|')."""
    return {"|".join(row[:key_columns]): dict(zip(headers, row)) for row in rows}


def assert_cell(text, expected):
    """A two-decimal table cell equals the value computed from results.json."""
    assert text != parse_test_res.GAP, f"gap where {expected:.4f} was expected"
    assert abs(float(text) - expected) <= 0.005 + 1e-9, (text, expected)


# ----------------------------------------------------------------------------- base2new / openworld
def b2n_dir(output, step, dataset, method):
    trainer, config = method
    return output / "base2new" / step / dataset / f"shots_{SHOTS}" / trainer / config


def test_base2new_sweep_writes_the_official_layout(base2new_output):
    for method, datasets in ((COOP, DATASETS), (ZSCLIP, ZSCLIP_DATASETS)):
        for step, sub in (("train_base", "base"), ("test_new", "new"), ("test_all", "all")):
            for dataset in datasets:
                for seed in SEEDS:
                    data = results(b2n_dir(base2new_output, step, dataset, method) / f"seed{seed}")
                    assert (data["trainer"], data["seed"], data["num_shots"]) == (method[0], seed, SHOTS)
                    assert data["subsample_classes"] == sub
                    assert data["num_classes"] == (4 if sub == "all" else 2)  # half of 4 classes each
    # CoOp's test runs evaluate the checkpoint its training run saved (LOADEP=1); zero-shot has none
    coop_model = b2n_dir(base2new_output, "train_base", "eurosat", COOP) / "seed1" / "prompt_learner"
    assert (coop_model / "model.pth.tar-1").is_file()


def test_base2new_table_matches_results_json(base2new_output, capsys):
    missing = [b2n_dir(base2new_output, step, "dtd", ZSCLIP) for step in ("train_base", "test_new")]
    headers, rows = csv_table("base2new", base2new_output, capsys, missing=missing)
    labels = {method: "/".join(method) for method in (COOP, ZSCLIP)}
    expected_headers = ["Dataset"]
    for method in (COOP, ZSCLIP):  # methods side by side, sorted by trainer
        expected_headers += [f"{labels[method]} {column}" for column in ("Base", "New", "HM")]
    assert headers == expected_headers
    table = as_dicts(headers, rows)
    assert list(table) == [TITLES["dtd"], TITLES["eurosat"], "Average"]
    for method in (COOP, ZSCLIP):
        label = labels[method]
        bases, news = [], []
        for dataset in DATASETS:
            row = table[TITLES[dataset]]
            if method == ZSCLIP and dataset not in ZSCLIP_DATASETS:
                # never run: gaps, never zeros, and so is every average over the datasets
                assert [row[f"{label} {c}"] for c in ("Base", "New", "HM")] == [parse_test_res.GAP] * 3
                assert [table["Average"][f"{label} {c}"] for c in ("Base", "New", "HM")] == [parse_test_res.GAP] * 3
                continue
            base = seed_mean(b2n_dir(base2new_output, "train_base", dataset, method))
            new = seed_mean(b2n_dir(base2new_output, "test_new", dataset, method))
            assert_cell(row[f"{label} Base"], base)
            assert_cell(row[f"{label} New"], new)
            assert_cell(row[f"{label} HM"], hm(base, new))
            bases.append(base)
            news.append(new)
        if method == ZSCLIP:
            continue
        average = table["Average"]
        assert_cell(average[f"{label} Base"], np.mean(bases))
        assert_cell(average[f"{label} New"], np.mean(news))
        # the papers' rule: HM of the averaged Base and New, not the mean of per-dataset HMs
        assert_cell(average[f"{label} HM"], hm(np.mean(bases), np.mean(news)))


def test_openworld_table_matches_results_json(base2new_output, capsys):
    headers, rows = csv_table("openworld", base2new_output, capsys,
                              missing=[b2n_dir(base2new_output, "test_all", "dtd", ZSCLIP)])
    expected_headers = ["Method", "Average HM", "Average Acc"]
    for dataset in ("dtd", "eurosat"):
        expected_headers += [f"{TITLES[dataset]} HM", f"{TITLES[dataset]} Acc"]
    assert headers == expected_headers
    table = as_dicts(headers, rows)
    assert list(table) == ["/".join(COOP), "/".join(ZSCLIP)]
    zsclip = table["/".join(ZSCLIP)]
    assert [zsclip[h] for h in headers[1:] if not h.startswith(TITLES["eurosat"])] == [parse_test_res.GAP] * 4
    for method in (COOP, ZSCLIP):
        row = table["/".join(method)]
        hms, accuracies = [], []
        for dataset in DATASETS if method == COOP else ZSCLIP_DATASETS:
            config_dir = b2n_dir(base2new_output, "test_all", dataset, method)
            for seed in SEEDS:  # the all-class test reports its own base/new/HM
                metrics = results(config_dir / f"seed{seed}")["metrics"]
                assert metrics["hm"] == pytest.approx(hm(metrics["base_accuracy"], metrics["new_accuracy"]), abs=0.01)
            hms.append(seed_mean(config_dir, "hm"))
            accuracies.append(seed_mean(config_dir, "accuracy"))
            assert_cell(row[f"{TITLES[dataset]} HM"], hms[-1])
            assert_cell(row[f"{TITLES[dataset]} Acc"], accuracies[-1])
        if method == ZSCLIP:
            continue
        assert_cell(row["Average HM"], np.mean(hms))
        assert_cell(row["Average Acc"], np.mean(accuracies))


# ----------------------------------------------------------------------------- xd / dg
def xd_dir(output, step, dataset):
    trainer, config = COOP_XD
    return output / "xd" / step / dataset / f"shots_{SHOTS}" / trainer / config


def test_transfer_sweeps_train_once_on_imagenet_and_test_its_weights(transfer_output):
    source_dir = xd_dir(transfer_output, "train", "imagenet")
    for seed in SEEDS:
        assert results(source_dir / f"seed{seed}")["num_classes"] == IMAGENET_CLASSES
        for dataset in XD_TARGETS + DG_TARGETS:
            data = results(xd_dir(transfer_output, "test", dataset) / f"seed{seed}")
            assert data["seed"] == seed
    # one source run per seed: dg reused xd's ImageNet models instead of training again
    assert sorted(p.name for p in (transfer_output / "xd" / "train").iterdir()) == ["imagenet"]
    # A and R are classified over their subset of ImageNet's classes only
    assert results(xd_dir(transfer_output, "test", "imagenet_a") / "seed1")["num_classes"] == 2
    assert results(xd_dir(transfer_output, "test", "imagenet_r") / "seed1")["num_classes"] == 3


def test_xd_table_matches_results_json(transfer_output, capsys):
    headers, rows = csv_table("xd", transfer_output, capsys)
    assert headers == ["Method", "ImageNet (source)", TITLES["dtd"], TITLES["eurosat"], "Average"]
    (row,) = as_dicts(headers, rows).values()
    assert row["Method"] == "/".join(COOP_XD)
    assert_cell(row["ImageNet (source)"], seed_mean(xd_dir(transfer_output, "train", "imagenet")))
    targets = [seed_mean(xd_dir(transfer_output, "test", d)) for d in ("dtd", "eurosat")]
    assert_cell(row[TITLES["dtd"]], targets[0])
    assert_cell(row[TITLES["eurosat"]], targets[1])
    assert_cell(row["Average"], np.mean(targets))  # over the targets only


def test_dg_table_matches_results_json(transfer_output, capsys):
    headers, rows = csv_table("dg", transfer_output, capsys)
    assert headers == ["Method", "ImageNet (source)"] + [TITLES[d] for d in DG_TARGETS] + ["Average", "OOD Average"]
    (row,) = as_dicts(headers, rows).values()
    source = seed_mean(xd_dir(transfer_output, "train", "imagenet"))
    assert_cell(row["ImageNet (source)"], source)
    targets = [seed_mean(xd_dir(transfer_output, "test", d)) for d in DG_TARGETS]
    for dataset, value in zip(DG_TARGETS, targets):
        assert_cell(row[TITLES[dataset]], value)
    assert_cell(row["Average"], np.mean([source, *targets]))  # source included, as in the papers
    assert_cell(row["OOD Average"], np.mean(targets))


# ----------------------------------------------------------------------------- few-shot
def test_fewshot_table_matches_results_json(fewshot_output, capsys):
    headers, rows = csv_table("fewshot", fewshot_output, capsys)
    assert headers == ["Method", "Shots", TITLES["dtd"], TITLES["eurosat"], "Average"]
    table = as_dicts(headers, rows, key_columns=2)
    label = "/".join(COOP_XD)
    assert list(table) == [f"{label}|{shots}" for shots in SHOTS_LIST]
    trainer, config = COOP_XD
    for shots in SHOTS_LIST:
        row = table[f"{label}|{shots}"]
        values = []
        for dataset in ("dtd", "eurosat"):
            config_dir = fewshot_output / "fewshot" / dataset / f"shots_{shots}" / trainer / config
            assert results(config_dir / "seed1")["num_shots"] == shots
            assert results(config_dir / "seed1")["subsample_classes"] == "all"
            values.append(seed_mean(config_dir))
            assert_cell(row[TITLES[dataset]], values[-1])
        assert_cell(row["Average"], np.mean(values))
