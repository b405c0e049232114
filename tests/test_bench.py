"""benchmarks/bench.py at the tiny shape: the floor runs exactly the tokens of each trainer's step,
the JSON has the documented schema, checkpoints hold only what training changed, bad arguments are
refused. Nothing here asserts a time (the machine's load decides those)."""
import json
import subprocess
import sys
from collections import Counter

import pytest
import torch

from benchmarks import bench
from clip.model import Transformer

REPO = bench.REPO_ROOT
TRAINED = [m for m in bench.METHODS if m != "zsclip"]
# Which towers each method's backward runs through.
BACKWARD = {"coop": ["text"], "cocoop": ["text"], "vpt": ["image"], "language-prompting": ["text"],
            "independent-vlp": ["image", "text"], "maple": ["image", "text"], "bmip": ["image", "text"],
            "bloom": ["image", "text"], **{m: ["image", "text"] for m in bench.METHODS
                                           if m.startswith(("promptsrc", "coprompt"))}}
# The end-to-end benchmark test runs the lineage and one composition of each regularizer.
BENCHED = ["zsclip", "coop", "cocoop", "vpt", "language-prompting", "independent-vlp", "maple", "bmip", "bloom",
           "promptsrc", "coprompt-bloom"]


@pytest.fixture(scope="module")
def tiny_clip():
    return bench.make_clip("tiny", torch.device("cpu"))


def batch_of(clip_model, n_cls, n=4):
    gen = torch.Generator().manual_seed(0)
    res = clip_model.image_resolution
    return torch.randn(n, 3, res, res, generator=gen), torch.randint(0, n_cls, (n,), generator=gen)


def transformer_inputs(fn, monkeypatch):
    """Shapes of every (N, L, D) sequence entering a text or vision transformer during ``fn()``."""
    seen = Counter()
    original = Transformer.forward

    def recording(self, x, hook=None):
        seen[tuple(x.shape)] += 1
        return original(self, x, hook)

    monkeypatch.setattr(Transformer, "forward", recording)
    fn()
    monkeypatch.setattr(Transformer, "forward", original)
    return seen


@pytest.mark.parametrize("method", TRAINED)
def test_floor_processes_the_same_tokens_as_the_trainer_step(method, tiny_clip, monkeypatch):
    cfg = bench.build_cfg(method, "tiny", 4, "fp32", torch.device("cpu"))
    trainer = bench.build_trainer(method, cfg, bench.class_names(7), tiny_clip)
    images, labels = batch_of(tiny_clip, 7)
    floor = bench.TrainingFloor(trainer, images, labels)
    trainer.set_model_mode("train")
    views = cfg.DATALOADER.K_TRANSFORMS  # CoPrompt: a second view for the frozen encoder
    batch = {"img": images if views == 1 else [images] * views, "label": labels}
    trainer.forward_backward(batch)  # encodes fixed texts once (VPT)
    step = transformer_inputs(lambda: trainer.forward_backward(batch), monkeypatch)
    floor_step = transformer_inputs(lambda: floor.step(images), monkeypatch)
    assert step == floor_step
    assert sorted(t for t, leaf in (("image", floor.vision), ("text", floor.text_rows))
                  if leaf is not None and leaf.requires_grad) == BACKWARD[method]


@pytest.mark.parametrize("method", ["maple", "bmip", "bloom"])
def test_floor_of_a_siglip_shaped_model_sees_the_trainers_tokens(method, monkeypatch):
    """The family rows (--shape siglip_vit_b16): the floor is the same model without the method's extra
    arithmetic on SigLIP too (no class token, full-length bidirectional text)."""
    model = bench.make_clip("siglip_tiny", torch.device("cpu"))
    assert model.visual.num_prefix_tokens == 0 and model.text_tokenizer.prefix_length == 0
    cfg = bench.build_cfg(method, "siglip_tiny", 4, "fp32", torch.device("cpu"))
    trainer = bench.build_trainer(method, cfg, bench.class_names(7), model)
    images, labels = batch_of(model, 7)
    floor = bench.TrainingFloor(trainer, images, labels)
    assert floor.text_rows.shape[1] == 32  # SigLIP's text keeps its whole context
    trainer.set_model_mode("train")
    batch = {"img": images, "label": labels}
    step = transformer_inputs(lambda: trainer.forward_backward(batch), monkeypatch)
    assert step == transformer_inputs(lambda: floor.step(images), monkeypatch)


def test_coop_floor_computes_the_trainers_loss(tiny_clip):
    """CoOp has no hooks: with the trainer's own prompts as the floor's leaves, the floor's first
    loss is the trainer's loss (same tokens, same values, same CLIP)."""
    cfg = bench.build_cfg("coop", "tiny", 4, "fp32", torch.device("cpu"))
    trainer = bench.build_trainer("coop", cfg, bench.class_names(7), tiny_clip)
    images, labels = batch_of(tiny_clip, 7)
    floor = bench.TrainingFloor(trainer, images, labels)
    floor_loss = floor.step(images)
    summary = trainer.forward_backward({"img": images, "label": labels})
    assert summary["loss"] == pytest.approx(floor_loss, rel=1e-5)


def test_exact_work_counts_fused_cpu_attention_and_saved_activations():
    q = torch.randn(2, 3, 16, 8, requires_grad=True)
    forward = bench.exact_work(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    # both matrix products of the fused CPU kernel (FlopCounterMode alone counts 0 for it)
    assert forward["gflop"] * 1e9 == 2 * (2 * 2 * 3 * 16 * 16 * 8)
    x = torch.randn(1000, requires_grad=True)
    # exp saves its output (1000 floats); the product by a constant saves nothing; x is excluded
    work = bench.exact_work(lambda: (x * 2).exp().sum().backward(), exclude=[x])
    assert work["saved_mb"] == pytest.approx(1000 * 4 / 2 ** 20)
    # written: x * 2, exp, sum (1) forward; backward: ones, exp grad, mul grad
    assert work["written_m"] * 1e6 >= 2 * 1000 + 1


def test_class_names_are_distinct():
    names = bench.class_names(1000)
    assert len(set(names)) == 1000 and all(1 <= len(n.split()) - 1 <= 3 for n in names)


@pytest.mark.slow
def test_tiny_benchmark_writes_the_documented_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--shape", "tiny", "--steps", "1", "--warmup", "1",
         "--memory-steps", "1", "--train-classes", "10", "--eval-classes", "10", "60",
         "--eval-batches", "1", "--eval-batch", "4", "--json", str(out), "--trainers", *BENCHED],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert set(result["trainers"]) == set(BENCHED) - {"zsclip"}
    assert set(result["eval"]) == set(BENCHED)
    for method, row in result["trainers"].items():
        for key in ("step_s", "floor_s", "ratio", "peak_mem_mb", "ckpt_mb"):
            assert key in row, (method, key)
        assert row["step_s"] > 0 and row["floor_s"] > 0
        assert row["ratio_iqr"][0] <= row["ratio"] <= row["ratio_iqr"][1]
        assert row["backward_through"] == BACKWARD[method]
        assert row["text_tokens"] < 77 and row["vision_prompt_tokens"] in (0, 2, 4, 8)
        # the checkpoint holds the prompt learner and its optimizer state, not the frozen CLIP
        values = row["trainable_params"]
        assert values * 4 / 2 ** 20 < row["ckpt_mb"] < (values * 4 * 3 + 200_000) / 2 ** 20
        if row["official_ckpt_mb"] is not None:
            assert row["official_ckpt_mb"] > row["ckpt_mb"]
    assert result["trainers"]["bloom"]["official_ckpt_mb"] is None
    # Arithmetic beyond the floor (exact counts): none for the methods that only splice or
    # append prompts; the projections of MaPLe / Bloom and BMIP's attention read-out otherwise.
    flops = {m: row["flop_ratio"] for m, row in result["trainers"].items()}
    for method in ("coop", "cocoop", "vpt", "language-prompting", "independent-vlp", "promptsrc"):
        assert flops[method] == 1.0, (method, flops[method])
    assert 1.0 < flops["maple"] < 1.01 and 1.0 < flops["bloom"] < 1.01 and 1.0 < flops["bmip"] < 1.05
    # Activations kept for the backward (exact): the floor's wherever prompts are only spliced
    # or appended (up to a few bytes of the loss: its target index); a few small prompt-side
    # tensors more for BMIP and Bloom.
    saved = {m: row["saved_ratio"] for m, row in result["trainers"].items()}
    for method in ("coop", "cocoop", "vpt", "language-prompting", "independent-vlp", "maple"):
        assert 1.0 <= saved[method] <= 1.00002, (method, saved[method])
    assert 1.0 < saved["bmip"] < 1.01 and 1.0 < saved["bloom"] < 1.01
    assert all(row["written_ratio"] > 0.99 for row in result["trainers"].values())
    for method, ratios in result["eval"].items():
        assert set(ratios) == {"10", "60"} and all(r > 0 for r in ratios.values())
        lower, upper = result["eval_detail"][method]["10"]["ratio_iqr"]
        assert lower <= ratios["10"] <= upper
        detail = result["eval_detail"][method]["60"]
        assert detail["images_per_s"] > 0 and detail["text_once_s"] >= 0
        # per test batch: the image encoder and one matrix product (text cached), except
        # BMIP's read-out and CoCoOp's per-image text
        limit = {"bmip": 1.05, "cocoop": float("inf")}.get(method, 1.001)
        assert 1.0 <= detail["flop_ratio"] < limit, (method, detail["flop_ratio"])
    assert result["eval_detail"]["cocoop"]["60"]["flop_ratio"] > 4 * result["eval_detail"]["cocoop"]["10"]["flop_ratio"]
    # the frozen-feature cache: a test batch from cached features costs a small fraction of the
    # image encoder, with the very logits of the normal evaluation (methods whose images meet no prompt)
    for method in BENCHED:
        detail = result["eval_detail"][method]["60"]
        if method in ("zsclip", "coop", "language-prompting"):
            assert detail["cached_logits_identical"] is True and 0 < detail["cached_ratio"] < 0.1, (method, detail)
        else:
            assert "cached_ratio" not in detail, method
    table = proc.stdout.strip().splitlines()
    assert table[0].startswith("| method |") and len(table) == 2 + len(BENCHED)


def test_whole_model_official_layout_counts_the_frozen_encoders(tiny_clip):
    cfg = bench.build_cfg("maple", "tiny", 4, "fp32", torch.device("cpu"))
    trainer = bench.build_trainer("maple", cfg, bench.class_names(7), tiny_clip)
    frozen = sum(t.numel() for k, t in tiny_clip.state_dict().items() if not k.startswith("token_embedding"))
    trainable = sum(p.numel() for p in trainer.prompt_learner.parameters() if p.requires_grad)
    tokens = 7 * (77 - 2) * tiny_clip.text_width  # class-token buffers of a 2-token context
    expected = (frozen + trainable + tokens) * 2 / 2 ** 20
    assert bench.official_checkpoint_mb("maple", trainer, tiny_clip) == pytest.approx(expected)


@pytest.mark.parametrize("argv,message", [
    (["--trainers", "coop", "mapel"], "unknown method(s) mapel"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--eval-classes", "1"], "--eval-classes must all be >= 2"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_training_step_equals_the_eager_one(tiny_clip):
    """TRAIN.COMPILE runs BMIP's training forward (hooks, attention read-out, splices) through
    torch.compile in one graph; two steps give the prompts of two eager steps. aot_eager traces
    exactly what inductor would compile, without the minutes of C++ compilation on a CPU."""
    images, labels = batch_of(tiny_clip, 7)
    learned = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        cfg = bench.build_cfg("bmip", "tiny", 4, "fp32", torch.device("cpu"),
                              opts=["TRAIN.COMPILE", compiled, "TRAIN.COMPILE_BACKEND", "aot_eager"])
        trainer = bench.build_trainer("bmip", cfg, bench.class_names(7), tiny_clip)
        assert (trainer.train_model is trainer.model) != compiled
        trainer.set_model_mode("train")
        losses = [trainer.forward_backward({"img": images, "label": labels})["loss"] for _ in range(2)]
        # the gradients of the second step (left in .grad by the optimizer step)
        learned[compiled] = losses, {n: p.grad.clone() for n, p in trainer.prompt_learner.named_parameters()
                                     if p.requires_grad}
    (eager_losses, eager_grads), (compiled_losses, compiled_grads) = learned[False], learned[True]
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    assert compiled_grads.keys() == eager_grads.keys() and len(eager_grads) > 5
    for name, grad in eager_grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(compiled_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_unknown_compile_backend_is_a_one_line_error(tiny_clip):
    cfg = bench.build_cfg("coop", "tiny", 4, "fp32", torch.device("cpu"),
                          opts=["TRAIN.COMPILE", True, "TRAIN.COMPILE_BACKEND", "inductr"])
    with pytest.raises(ValueError, match="TRAIN.COMPILE_BACKEND 'inductr' is not a torch.compile backend"):
        bench.build_trainer("coop", cfg, bench.class_names(7), tiny_clip)
