"""scripts/ablate.py and the papers' studies shipped as specs (configs/ablations/).

* every spec loads, names the paper's grid (and values where the paper's text gives them), and
  each of its variants builds its model (the overrides are real keys with valid values);
* MaPLe-dagger matches BMIP's trainable-parameter count within 1 % at ViT-B/16 shape;
* each spec runs end to end with one command through the real scripts and launcher (a fake
  interpreter stands in for train.py) and writes its table (md, csv, tex) and plot; the slow test
  runs one spec for real on the tiny CLIP.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, train_server_env
from tests.helpers.methods import CLASSNAMES, make_cfg, n_params
from tests.helpers.script_harness import make_script_env

sys.path.insert(0, str(REPO / "scripts"))
import ablate  # noqa: E402

SPECS = sorted(p.stem for p in (REPO / "configs" / "ablations").glob("*.yaml"))


def test_the_papers_studies_are_shipped():
    assert SPECS == ["bloom_depth", "bloom_depth_mini", "bloom_direction", "bloom_dm", "bloom_fusion", "bloom_interval",
                     "bloom_interval_mini", "bloom_length", "bloom_shots", "bmip_depth", "bmip_depth_mini", "bmip_length",
                     "bmip_table5", "fewshot_curves"]
    grids = {name: [v.label for v in ablate.load_spec(name).variants] for name in SPECS}
    assert grids["bmip_table5"] == ["IVLP", "CoCoOp", "MaPLe", "MaPLe-dagger", "Addition", "Attention", "Joint", "BMIP"]
    assert grids["bloom_fusion"] == ["gate", "add", "concat", "routing"]
    assert grids["bloom_direction"] == ["both", "V->L only", "L->V only"]
    assert grids["bloom_dm"] == ["16", "32", "64", "128", "256"]
    assert grids["bloom_interval"] == ["[1,9)", "[2,10)", "[3,11)", "[4,12)", "[1,12)"]
    assert grids["bloom_depth"] == ["1", "2", "5", "8", "12"]
    assert grids["bloom_length"] == ["1", "2", "4", "6", "8"]
    assert grids["bloom_shots"] == ["1", "4", "8", "16", "32"]
    # the 4-layer mini CLIP's versions of the depth and interval studies (docs/RESULTS.md)
    assert grids["bloom_depth_mini"] == grids["bmip_depth_mini"] == ["1", "2", "3", "4"]
    assert grids["bloom_interval_mini"] == ["[0,2)", "[1,3)", "[2,4)", "[1,4)", "[0,4)"]
    for name in ("bloom_depth_mini", "bloom_interval_mini", "bmip_depth_mini"):
        spec = ablate.load_spec(name)
        assert (spec.cfg, spec.datasets, spec.seeds) == ("mini_clip", ["minishapes"], [1, 2, 3])
    assert [v.method for v in ablate.load_spec("fewshot_curves").variants] == [
        "zsclip", "linear-probe", "coop", "cocoop", "maple", "bmip", "bloom", "promptsrc"]
    assert ablate.load_spec("fewshot_curves").shots == [1, 2, 4, 8, 16]
    # the paper's values where its text has them
    table5 = {v.label: v.paper for v in ablate.load_spec("bmip_table5").variants}
    assert table5["BMIP"] == {"hm": 79.04, "acc": 72.17} and table5["MaPLe-dagger"] == {"hm": 77.19, "acc": 71.66}
    direction = {v.label: v.paper["hm"] for v in ablate.load_spec("bloom_direction").variants}
    assert direction == {"both": 74.08, "V->L only": 73.11, "L->V only": 73.09}
    # the interval names its reading (docs/METHODS.md, "Layer numbering")
    for variant in ablate.load_spec("bloom_interval").variants:
        assert variant.opts["TRAINER.BLOOM.INTERVAL_READING"] == "zero_based"


@pytest.mark.parametrize("name", SPECS)
def test_every_variant_builds_its_model(name, vit_b16_shaped):
    """The overrides are real config keys with values the methods accept (ViT-B/16 shape)."""
    import trainers
    from dassl.engine import TRAINER_REGISTRY

    spec = ablate.load_spec(name)
    methods = {"bmip": "BMIP", "bloom": "Bloom", "maple": "MaPLe", "independent-vlp": "IVLP", "cocoop": "CoCoOp",
               "coop": "CoOp", "zsclip": "ZeroshotCLIP", "promptsrc": "PromptSRC", "linear-probe": "LinearProbeCLIP"}
    for variant in spec.variants:
        trainer = methods[variant.method or spec.method]
        cfg = make_cfg()
        cfg.merge_from_list([w for pair in variant.opts.items() for w in (pair[0], str(pair[1]).replace(" ", ""))])
        cls = TRAINER_REGISTRY.get(trainer)
        if trainer in ("ZeroshotCLIP", "LinearProbeCLIP"):
            continue
        instance = cls.__new__(cls)
        instance.cfg = cfg
        learner = instance.build_prompt_learner(cfg, CLASSNAMES, vit_b16_shaped)
        assert n_params(learner) > 0, (name, variant.label)


def test_maple_dagger_matches_bmips_parameter_count(vit_b16_shaped):
    from trainers.bmip import BMIPPromptLearner
    from trainers.maple import MultiModalPromptLearner

    dagger = next(v for v in ablate.load_spec("bmip_table5").variants if v.label == "MaPLe-dagger")
    cfg = make_cfg(MAPLE={k.split(".")[-1]: v for k, v in dagger.opts.items()})
    maple = n_params(MultiModalPromptLearner(cfg, CLASSNAMES, vit_b16_shaped))
    bmip = n_params(BMIPPromptLearner(make_cfg(share=True), CLASSNAMES, vit_b16_shaped))
    assert (maple, bmip) == (1_192_704, 1_203_223)
    assert abs(maple / bmip - 1) < 0.01
    assert n_params(MultiModalPromptLearner(make_cfg(), CLASSNAMES, vit_b16_shaped)) == 3_555_072  # MaPLe itself


def test_bad_specs_are_one_line_errors(tmp_path):
    cases = {"protocol: base2new\nmethod: bloom\naxis: x\n": "missing key 'variants'",
             "protocol: b2n\nmethod: bloom\naxis: x\nvariants: [{label: a}]\n": "protocol 'b2n' is not one of",
             "protocol: base2new\nmethod: bloom\naxis: x\nvariants: [{label: a, opt: {}}]\n": "unknown key(s) ['opt']",
             "protocol: base2new\nmethod: bloom\naxis: x\nvariants: [{label: a}, {label: a}]\n": "must be distinct",
             "protocol: base2new\nmethod: bloom\n  axis: x\n": "mapping values are not allowed here"}
    for text, message in cases.items():
        path = tmp_path / "spec.yaml"
        path.write_text(text)
        with pytest.raises(ablate.AblationError) as caught:
            ablate.load_spec(str(path))
        assert str(caught.value).startswith(str(path)) and message in str(caught.value), str(caught.value)
    with pytest.raises(ablate.AblationError, match="no ablation spec 'bloom_dmm'.*bloom_dm"):
        ablate.load_spec("bloom_dmm")


def test_trainable_params_are_read_from_the_training_log(tmp_path):
    spec = ablate.load_spec("bloom_dm")
    run = tmp_path / "bloom_dm" / "runs" / "16" / "base2new" / "train_base" / "x" / "seed1"
    run.mkdir(parents=True)
    (run / "log.txt").write_text("Building custom CLIP\n# trainable params: 81,072\n")
    args = type("Args", (), {"output_dir": str(tmp_path)})()
    assert ablate.trainable_params(spec, spec.variants[0], args) == 81072
    assert ablate.trainable_params(spec, spec.variants[1], args) is None


def run_ablate(tmp_path, env, *args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "ablate.py"), *map(str, args)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=600)


def ablate_in_process(monkeypatch, env, *args):
    """scripts/ablate.py's main in this process (its runs still go through bash and the fake
    interpreter) with ``env`` as the environment; returns the exit status."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PROMPTCLIP_TRAIN_SERVER", raising=False)
    return ablate.main([str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize("name", SPECS)
def test_each_spec_runs_with_one_command_and_writes_its_table_and_plot(tmp_path, monkeypatch, capsys, name):
    """Through the real per-run scripts and the launcher; a fake interpreter writes each run's
    results.json (accuracy 50; open-world tests also HM 48), so the table's numbers are known."""
    env = make_script_env(tmp_path)
    (Path(env["DATA"]) / "eurosat").mkdir()
    env.update(SHOTS="2")
    out = tmp_path / "out"
    command = [name, "--root", env["DATA"], "--output-dir", out, "--datasets", "eurosat", "--seeds", "1",
               "--device", "cpu", "OPTIM.MAX_EPOCH", "1"]
    status = ablate_in_process(monkeypatch, env, *command)
    assert status == 0, capsys.readouterr()
    spec = ablate.load_spec(name)
    folder = out / name
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["plot.png", "table.csv", "table.md", "table.tex"]
    table = (folder / "table.md").read_text().splitlines()
    assert table[0].startswith(f"| {spec.axis}")
    rows = {line.split("|")[1].strip(): line for line in table[2:] if line.startswith("|")}
    assert list(rows) == [v.label for v in spec.variants]
    expected = {"openworld": "48.00", "fewshot": "50.00"}.get(spec.protocol, "50.00")
    assert all(expected in row for row in rows.values()), table
    # every run went through train.py's command line with the trailing overrides and the variant's own
    calls = [json.loads(line)["argv"] for line in Path(env["FAKE_CALLS"]).read_text().splitlines()]
    assert calls and all("OPTIM.MAX_EPOCH" in argv and "--device" in argv for argv in calls)
    for variant in spec.variants:
        for key in variant.opts:
            assert any(key in argv and f"/runs/{variant.slug}/" in " ".join(argv) for argv in calls), (variant.label, key)
    if name == "bloom_dm":
        # a second call runs nothing (finished runs are skipped) and rebuilds the same table
        assert ablate_in_process(monkeypatch, env, *command) == 0
        assert len(Path(env["FAKE_CALLS"]).read_text().splitlines()) == len(calls)
        assert (folder / "table.md").read_text().splitlines() == table


@pytest.mark.parametrize("name", ["bloom_dm", "bmip_table5", "fewshot_curves"])
def test_plots_draw_the_spread_over_seeds_as_error_bars(tmp_path, monkeypatch, name):
    """Lines (numeric axis, shots) and bars (categorical axis) carry each cell's spread over seeds;
    an HM computed from the mean accuracies has none."""
    from matplotlib.axes import Axes

    drawn = []
    real = Axes.errorbar  # (bar() draws its error bars through it too)

    def spy(self, *args, **kwargs):
        drawn.append(kwargs.get("yerr"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", spy)
    spec = ablate.load_spec(name)
    spreads = {"HM": None, "hm": 0.5, "Base": 1.5, "New": 2.5, "accuracy": 3.5}
    groups = [f"{s} shots" for s in spec.shots] if spec.protocol == "fewshot" else ["Average"]
    collected = {v.label: {g: {key: ablate.ptr.Cell(mean=40.0, spread=spreads[key], num_runs=3)
                               for _, key in ablate.METRICS[spec.protocol]} for g in groups}
                 for v in spec.variants}
    ablate.plot(spec, collected, groups, str(tmp_path / "plot.png"))
    assert (tmp_path / "plot.png").stat().st_size > 1000
    bars = [[None if v != v else float(v) for v in yerr] for yerr in drawn if yerr is not None]
    expected = {"base2new": [[None] * 5, [1.5] * 5, [2.5] * 5],
                "openworld": [[0.5] * 8, [3.5] * 8],
                "fewshot": [[3.5] * 5] * 8}[spec.protocol]
    assert bars == expected


def test_the_tests_load_the_epoch_the_runs_end_with():
    """A config other than the official one (or an OPTIM.MAX_EPOCH override) trains for another number of
    epochs than the test scripts' official LOADEP: the sweep is told which epoch to load."""
    from types import SimpleNamespace

    spec = ablate.load_spec("bmip_table5")
    variants = {v.label: v for v in spec.variants}

    def env_of(label, cfg="", overrides=(), base=None):
        args = SimpleNamespace(output_dir="/o", root="/d", datasets=["minishapes"], seeds=[1], cfg=cfg,
                               overrides=list(overrides))
        return ablate.variant_environment(spec, variants[label], args, base or {})

    assert env_of("BMIP", "mini_clip")["LOADEP"] == "10"      # configs/trainers/BMIP/mini_clip.yaml
    assert env_of("CoCoOp", "mini_clip")["LOADEP"] == "10"    # the variant's own method's config
    assert env_of("MaPLe", "mini_clip", ["OPTIM.MAX_EPOCH", "3"])["LOADEP"] == "3"
    assert "LOADEP" not in env_of("BMIP")                      # official config: the scripts' own epoch
    assert env_of("BMIP", "mini_clip", base={"LOADEP": "7"})["LOADEP"] == "7"  # the user's own wins


@pytest.mark.slow
def test_a_spec_runs_for_real_on_the_tiny_clip(tmp_path, eurosat_root, tiny_clip_path):
    env = dict(os.environ, **train_server_env(), SHOTS="2")  # LOADEP from OPTIM.MAX_EPOCH 1 below
    env.pop("LOADEP", None)
    out = tmp_path / "out"
    proc = run_ablate(tmp_path, env, "bloom_direction", "--root", eurosat_root, "--output-dir", out,
                      "--datasets", "eurosat", "--seeds", "1", "--variants", "both", "V->L only",
                      "--backbone", tiny_clip_path, "--device", "cpu", "INPUT.SIZE", "(32,32)", "OPTIM.MAX_EPOCH", 1,
                      "TRAINER.BLOOM.PREC", "fp32", "DATALOADER.TEST.BATCH_SIZE", 50)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "bloom_direction" / "table.md").read_text()
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert [r.split("|")[1].strip() for r in rows] == ["both", "V->L only"]
    both, v2l = (int(r.split("|")[2].strip().replace(",", "")) for r in rows)
    assert both > v2l > 0  # one direction trains one projection fewer
    assert "74.08" in rows[0] and "73.11" in rows[1]  # the paper's HM beside ours
    results = json.loads(next((out / "bloom_direction" / "runs" / "both").rglob("results.json")).read_text())
    assert results["trainer"] == "Bloom"
    assert (out / "bloom_direction" / "plot.png").stat().st_size > 1000
