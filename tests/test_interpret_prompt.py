"""tools/interpret_prompt.py: nearest vocabulary tokens of learned text contexts, for every
trainer's checkpoint layout (built from the trainers' own prompt learners on the tiny CLIP)."""
import json
import os
import subprocess
import sys

import pytest
import torch

import clip
from conftest import REPO
from dassl.engine import TRAINER_REGISTRY
from tests.helpers.methods import CLASSNAMES, make_cfg
from tools.interpret_prompt import (EMBEDDING, HIDDEN, InterpretError, config_from_log, interpret,
                                    main)
from trainers.bloom import BloomPromptLearner
from trainers.bmip import BMIPPromptLearner
from trainers.cocoop import CoCoOpPromptLearner
from trainers.coop import CoOpPromptLearner
from trainers.ivlp import IndependentVLPromptLearner
from trainers.maple import MultiModalPromptLearner
from trainers.prompting import init_text_context


def save_run(run_dir, state_dict, config=None, folder="prompt_learner", epoch=2):
    """A run dir as train.py leaves it: ``<run>/<folder>/model.pth.tar-<epoch>``; ``config`` (flat,
    plain values) is stored as our checkpoints store the training config (repr strings)."""
    path = os.path.join(str(run_dir), folder, f"model.pth.tar-{epoch}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ckpt = {"state_dict": state_dict, "epoch": epoch, "optimizer": None, "scheduler": None, "val_result": None}
    if config is not None:
        ckpt["trainer_state"] = {"config": {k: repr(v) for k, v in config.items()}}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def mini_clip():
    """The bundled mini CLIP (its token embeddings are trained)."""
    model, _ = clip.load("mini-clip", device="cpu")
    return model


def test_coop_context_initialised_from_words_reads_back(tmp_path, mini_clip):
    """CoOp's CTX_INIT "a photo of a" (the trained mini CLIP's embeddings, slightly perturbed) reads
    back as those words; the backbone comes from the config stored in the checkpoint."""
    ctx, prefix, n_ctx = init_text_context(mini_clip, 4, "a photo of a", rule="coop")
    assert prefix == "a photo of a" and n_ctx == 4
    noisy = ctx + 1e-3 * torch.randn(ctx.shape, generator=torch.Generator().manual_seed(0))
    save_run(tmp_path / "run", {"ctx": noisy}, {"MODEL.BACKBONE.NAME": "mini-clip", "TRAINER.NAME": "CoOp"})
    result = interpret(str(tmp_path / "run"), topk=3)
    assert result["backbone"] == "mini-clip" and result["trainer"] == "CoOp" and result["layout"] == "CoOp"
    (prompt,) = result["prompts"]
    assert prompt["reading"] == "a photo of a"
    assert prompt["kind"] == EMBEDDING and prompt["layer"] == 0
    ids = [t["nearest"][0]["id"] for t in prompt["tokens"]]
    assert ids == clip.get_tokenizer().encode("a photo of a")
    for token in prompt["tokens"]:
        distances = [n["distance"] for n in token["nearest"]]
        assert distances == sorted(distances) and distances[0] < 0.05 < distances[1]


def test_json_and_table_output(tmp_path, mini_clip, capsys):
    ctx, _, _ = init_text_context(mini_clip, 4, "a photo of a", rule="coop")
    ckpt = save_run(tmp_path / "run", {"ctx": ctx}, {"MODEL.BACKBONE.NAME": "mini-clip"})
    out = tmp_path / "deep" / "words.json"
    assert main([ckpt, "--topk", "4", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'ctx (layer 0; input token embeddings): reads "a photo of a"' in printed
    assert "top-4" in printed and "photo (0.0000)" in printed
    data = json.loads(out.read_text())
    assert set(data) >= {"source", "checkpoint", "trainer", "layout", "backbone", "token_embedding_shape", "metric",
                         "topk", "prompts", "notes"}
    assert data["metric"] == "euclidean" and data["topk"] == 4
    assert data["token_embedding_shape"] == list(mini_clip.token_embedding.weight.shape)
    (prompt,) = data["prompts"]
    assert set(prompt) == {"key", "name", "layer", "kind", "class_index", "shape", "reading", "tokens"}
    assert prompt["shape"] == [4, mini_clip.text_width] and len(prompt["tokens"]) == 4
    for position, token in enumerate(prompt["tokens"]):
        assert token["position"] == position and len(token["nearest"]) == 4
        assert set(token["nearest"][0]) == {"id", "token", "text", "distance"}
    assert [t["nearest"][0]["token"] for t in prompt["tokens"]] == ["a</w>", "photo</w>", "of</w>", "a</w>"]


# ---------------------------------------------------------------------------- every layout
def _learner(ctor, **nodes):
    return lambda m: ctor(make_cfg(**nodes), CLASSNAMES, m)


# trainer -> (learner builder, stored config, expected layout, expected [(name, layer, kind, class)] in order)
A = ("ctx", 0, EMBEDDING, None)
LAYOUTS = {
    "CoOp": (_learner(CoOpPromptLearner, COOP={"N_CTX": 4, "CTX_INIT": "a photo of a"}), {}, "CoOp", [A]),
    "CoOp-CSC": (_learner(CoOpPromptLearner, COOP={"N_CTX": 4, "CSC": True}), {}, "CoOp (class-specific)",
                 [("ctx", 0, EMBEDDING, c) for c in range(len(CLASSNAMES))]),
    "CoCoOp": (_learner(CoCoOpPromptLearner, COCOOP={"N_CTX": 4, "CTX_INIT": "a photo of a"}), {}, "CoCoOp", [A]),
    "MaPLe": (_learner(MultiModalPromptLearner, MAPLE={"PROMPT_DEPTH": 3}), {}, "MaPLe",
              [A, ("compound_prompts_text.0", 1, HIDDEN, None), ("compound_prompts_text.1", 2, HIDDEN, None)]),
    "IVLP": (_learner(IndependentVLPromptLearner, IVLP={"PROMPT_DEPTH_TEXT": 3, "PROMPT_DEPTH_VISION": 3}), {}, "IVLP",
             [A, ("deep_text_prompts.0", 1, HIDDEN, None), ("deep_text_prompts.1", 2, HIDDEN, None)]),
    "BMIP": (_learner(BMIPPromptLearner, BMIP={"PROMPT_DEPTH": 3}), {}, "BMIP",
             [("ctx_t", 0, EMBEDDING, None), ("compound_prompts_text.0", 1, HIDDEN, None),
              ("compound_prompts_text.1", 2, HIDDEN, None)]),
    "Bloom": (_learner(BloomPromptLearner, BLOOM={"START": 0, "END": 3}), {"TRAINER.BLOOM.START": 0}, "Bloom",
              [("text_prompts", 0, EMBEDDING, None), ("text_prompts", 1, HIDDEN, None),
               ("text_prompts", 2, HIDDEN, None)]),
    "Bloom-start1": (_learner(BloomPromptLearner, BLOOM={"START": 1, "END": 3}), {"TRAINER.BLOOM.START": 1}, "Bloom",
                     [("text_prompts", 1, HIDDEN, None), ("text_prompts", 2, HIDDEN, None)]),
}
# compositions: the base's learner under prompt_learner., plus the regularizer's own modules
COMPOSITIONS = {"PromptSRC": "IVLP", "CoPrompt": "MaPLe", "PromptSRC_BMIP": "BMIP", "CoPrompt_Bloom": "Bloom",
                "PromptSRC_MaPLe": "MaPLe"}


def registered_keys(trainer, learner_state):
    """The checkpoint keys ``trainer`` saves for a prompt learner with ``learner_state``."""
    cls = TRAINER_REGISTRY.get(trainer)
    prefix = "prompt_learner." if cls.PREFIXED_KEYS else ""
    state = {prefix + k: v for k, v in learner_state.items()}
    if trainer.startswith("CoPrompt"):  # its residual adapters, registered beside the learner
        state["adapter_image.fc.0.weight"] = torch.zeros(8, 32)
        state["adapter_text.fc.0.weight"] = torch.zeros(8, 32)
    return state


CASES = [(name, name.split("-")[0]) for name in LAYOUTS] + [(base, trainer) for trainer, base in COMPOSITIONS.items()]


@pytest.mark.parametrize("layout_name,trainer", CASES, ids=[f"{t}:{n}" for n, t in CASES])
def test_every_trainer_layout_is_recognised(tmp_path, tiny_clip_path, clip_model, layout_name, trainer):
    build, config, layout, expected = LAYOUTS[layout_name]
    torch.manual_seed(0)
    learner = build(clip_model)
    state = registered_keys(trainer, learner.state_dict())
    save_run(tmp_path / "run", state, dict(config, **{"TRAINER.NAME": trainer}),
             folder=TRAINER_REGISTRY.get(trainer).MODEL_NAME)
    result = interpret(str(tmp_path / "run"), topk=2, backbone=tiny_clip_path)
    assert result["layout"] == layout and result["trainer"] == trainer
    got = [(p["name"], p["layer"], p["kind"], p["class_index"]) for p in result["prompts"]]
    assert got == expected
    prefixed = TRAINER_REGISTRY.get(trainer).PREFIXED_KEYS
    for prompt in result["prompts"]:
        assert prompt["key"].startswith("prompt_learner.") == prefixed
    if any(p["kind"] == HIDDEN for p in result["prompts"]):
        assert any("not token embeddings" in note for note in result["notes"])
    first = result["prompts"][0]
    if first["kind"] == EMBEDDING and first["class_index"] is None:
        # every learner here starts its layer-0 context from CTX_INIT "a photo of a" (2 or 4 tokens)
        assert "a photo of a".startswith(first["reading"]) and first["reading"].startswith("a photo")


def test_official_ivlp_layout_and_bloom_start_from_the_log(tmp_path, tiny_clip_path, clip_model):
    """Official IVLP keys (whole model: frozen CLIP, class-name buffers, VPT_shallow per block); a
    Bloom run whose checkpoint has no config but whose log.txt records START 1."""
    torch.manual_seed(0)
    ctx = clip_model.token_embedding(clip.tokenize(["a photo of a"]))[0, 1:3].detach()
    deep = {f"text_encoder.transformer.resblocks.{layer}.VPT_shallow": torch.randn(2, 64) for layer in (1, 2)}
    state = {"prompt_learner.ctx": ctx, "prompt_learner.token_prefix": torch.zeros(5, 1, 64),
             "text_encoder.positional_embedding": torch.zeros(77, 64), "image_encoder.VPT": torch.zeros(2, 128),
             **deep}
    ckpt = save_run(tmp_path / "ivlp", state, folder="VLPromptLearner")
    result = interpret(ckpt, topk=1, backbone=tiny_clip_path)
    assert result["layout"] == "IVLP"
    assert [(p["key"], p["layer"]) for p in result["prompts"]] == [
        ("prompt_learner.ctx", 0), ("text_encoder.transformer.resblocks.1.VPT_shallow", 1),
        ("text_encoder.transformer.resblocks.2.VPT_shallow", 2)]
    assert result["prompts"][0]["reading"] == "a photo"

    cfg = make_cfg(BLOOM={"START": 1, "END": 3})
    cfg.MODEL.BACKBONE.NAME = tiny_clip_path
    run = tmp_path / "bloom"
    save_run(run, {"text_prompts": torch.randn(2, 2, 64)}, folder="prompt_learner")
    (run / "log.txt").write_text(f"***************\n** Config **\n************\n{cfg}\nCollecting env info ...\n")
    assert config_from_log(str(run / "log.txt"))["TRAINER.BLOOM.START"] == 1
    result = interpret(str(run), topk=1)  # backbone and START from the log
    assert result["backbone"] == tiny_clip_path
    assert [(p["layer"], p["kind"]) for p in result["prompts"]] == [(1, HIDDEN), (2, HIDDEN)]


def test_backbone_from_results_json_and_errors(tmp_path, tiny_clip_path, capsys):
    ctx = torch.randn(4, 64)
    run = tmp_path / "run"
    save_run(run, {"ctx": ctx})
    with pytest.raises(InterpretError, match="pass --backbone"):
        interpret(str(run))
    (run / "results.json").write_text(json.dumps({"backbone": tiny_clip_path, "trainer": "CoOp"}))
    assert interpret(str(run), topk=1)["backbone"] == tiny_clip_path
    with pytest.raises(InterpretError, match="width 64 but the token embedding of backbone mini-clip has width 128"):
        interpret(str(run), backbone="mini-clip")
    with pytest.raises(InterpretError, match="no model.pth.tar-7"):
        interpret(str(run), epoch=7)

    # unknown checkpoints: a one-line error and exit status 2
    vpt = save_run(tmp_path / "vpt", {"prompt_learner.vision.vision_ctx": torch.zeros(2, 128)}, folder="x")
    probe = save_run(tmp_path / "probe", {"weight": torch.zeros(5, 32), "bias": torch.zeros(5)}, folder="linear_probe")
    for path, message in ((vpt, "no learned text context"), (probe, "no learned text context"),
                          (str(tmp_path / "missing"), "no such file or directory")):
        assert main([path, "--backbone", tiny_clip_path]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


@pytest.mark.slow
def test_cli_unknown_checkpoint_is_one_line_error(tmp_path):
    probe = save_run(tmp_path / "probe", {"weight": torch.zeros(5, 32)}, folder="linear_probe")
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "interpret_prompt.py"), probe,
                           "--backbone", "mini-clip"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "no learned text context" in proc.stderr
    assert proc.stdout == ""
