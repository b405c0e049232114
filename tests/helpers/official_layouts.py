"""Checkpoints in the key layouts the official repositories write, built from their naming rules.

The official MaPLe/IVLP/VPT (muzairkhattak/multimodal-prompt-learning) and BMIP (LAMDASZ-ML/BMIP)
trainers register the *whole* model, so a checkpoint holds the frozen CLIP (``image_encoder.*``,
``text_encoder.*``, ``logit_scale``), the class-name buffers and every tensor the prompt learner
creates, used by the forward or not. These builders take the trained tensors of one of our
learners and lay them out as the official code would have saved them; tensors the official
model holds but never uses get random values (loading must drop them, whatever they hold).

BMIP, by the official code (n = PROMPT_DEPTH - 1 deep layers, every block of both encoders):

* ``prompt_learner.ctx_t`` (n_ctx, d_t), ``proj_t`` (d_t -> d_v): layer 0.
* ``prompt_learner.ctx_v`` (77, d_v) and ``proj_v`` (d_v -> d_t): built, never used.
* ``compound_prompts_text.{0..n-1}`` (n_ctx, d_t), ``compound_prompts_visual.{0..n-1}`` (n_ctx, d_v).
* shared text projection (SHARE_PARAMETER_TEXT): ``single_layer_t`` (d_t -> d_v) and
  ``exchange_layer_t`` (2 d_t -> d_t); otherwise ``compound_prompt_projections_t.{j}`` and
  ``compound_exchange_t.{j}`` for j < n. The vision side mirrors it (``single_layer_v``
  (d_v -> d_t), ``exchange_layer_v`` (2 d_v -> d_v), ``compound_prompt_projections_v.{j}``,
  ``compound_exchange_v.{j}``). Exchange layers are never used; the vision-to-text projections
  only up to the text branch's last prompted layer (one shallower than the vision branch).
* ``{image,text}_encoder.transformer.resblocks.{i}.learnable_linear{1,2}`` (weight (1, 1),
  bias (1,)) in every block i; vision blocks 1..n use linear1, text blocks 1..n-1 linear2.
"""
import torch

from clip.model import CLIP

CONTEXT_LENGTH = 77


def _random(shape, generator):
    return torch.randn(*shape, generator=generator)


def _linear(prefix, d_in, d_out, generator):
    return {f"{prefix}.weight": _random((d_out, d_in), generator), f"{prefix}.bias": _random((d_out,), generator)}


def frozen_clip_keys(clip_model: CLIP):
    """The frozen CLIP as the official ``CustomCLIP`` names it (no token embedding)."""
    state = {}
    for key, value in clip_model.state_dict().items():
        if key.startswith("visual."):
            state["image_encoder." + key[len("visual."):]] = value.clone()
        elif key.startswith(("transformer.", "ln_final.", "positional_embedding", "text_projection")):
            state["text_encoder." + key] = value.clone()
        elif key == "logit_scale":
            state[key] = value.clone()
    return state


def class_name_buffers(n_cls, n_ctx, d_t, generator):
    return {"prompt_learner.token_prefix": _random((n_cls, 1, d_t), generator),
            "prompt_learner.token_suffix": _random((n_cls, CONTEXT_LENGTH - 1 - n_ctx, d_t), generator)}


def official_bmip_checkpoint(ours, clip_model, depth, share_visual, share_text, n_ctx, n_cls, seed=0):
    """The official BMIP state dict holding the trained tensors ``ours`` (our BMIP learner's
    state dict, keys without the ``prompt_learner.`` prefix, attention-weighted aggregation).

    Vision gates ``vision_gates.{weight,bias}[j]`` go to image block j+1's ``learnable_linear1``;
    text gate biases to text block j+1's ``learnable_linear2.bias`` (its weight gets a random
    value: its input is always 0 in the official code). Everything unused is random.
    """
    g = torch.Generator().manual_seed(seed)
    d_t, d_v = clip_model.text_width, clip_model.vision_width
    n = depth - 1
    n_text = max(n - 1, 0)
    state = frozen_clip_keys(clip_model)
    state.update(class_name_buffers(n_cls, n_ctx, d_t, g))
    state["prompt_learner.ctx_t"] = ours["ctx_t"].clone()
    state["prompt_learner.proj_t.weight"] = ours["proj_t.weight"].clone()
    state["prompt_learner.proj_t.bias"] = ours["proj_t.bias"].clone()
    state["prompt_learner.ctx_v"] = _random((CONTEXT_LENGTH, d_v), g)
    state.update(_linear("prompt_learner.proj_v", d_v, d_t, g))
    for j in range(n):
        state[f"prompt_learner.compound_prompts_text.{j}"] = ours[f"compound_prompts_text.{j}"].clone()
        visual = ours.get(f"compound_prompts_visual.{j}", ours.get("compound_prompts_visual.0"))
        state[f"prompt_learner.compound_prompts_visual.{j}"] = visual.clone()
    if share_text:
        if n:
            state.update({f"prompt_learner.{k}": v.clone() for k, v in ours.items() if k.startswith("single_layer_t.")})
        else:
            state.update(_linear("prompt_learner.single_layer_t", d_t, d_v, g))
        state.update(_linear("prompt_learner.exchange_layer_t", 2 * d_t, d_t, g))
    else:
        for j in range(n):
            state.update({f"prompt_learner.{k}": v.clone() for k, v in ours.items()
                          if k.startswith(f"compound_prompt_projections_t.{j}.")})
            state.update(_linear(f"prompt_learner.compound_exchange_t.{j}", 2 * d_t, d_t, g))
    if share_visual:
        if n_text:
            state.update({f"prompt_learner.{k}": v.clone() for k, v in ours.items() if k.startswith("single_layer_v.")})
        else:
            state.update(_linear("prompt_learner.single_layer_v", d_v, d_t, g))
        state.update(_linear("prompt_learner.exchange_layer_v", 2 * d_v, d_v, g))
    else:
        for j in range(n):
            if j < n_text:
                state.update({f"prompt_learner.{k}": v.clone() for k, v in ours.items()
                              if k.startswith(f"compound_prompt_projections_v.{j}.")})
            else:
                state.update(_linear(f"prompt_learner.compound_prompt_projections_v.{j}", d_v, d_t, g))
            state.update(_linear(f"prompt_learner.compound_exchange_v.{j}", 2 * d_v, d_v, g))
    blocks = {"image_encoder": len(clip_model.visual.transformer.resblocks),
              "text_encoder": len(clip_model.transformer.resblocks)}  # 24 and 12 at ViT-L/14
    for encoder, n_blocks in blocks.items():
        for i in range(n_blocks):
            for linear in (1, 2):
                prefix = f"{encoder}.transformer.resblocks.{i}.learnable_linear{linear}"
                state.update(_linear(prefix, 1, 1, g))
    for j in range(n):
        block = f"image_encoder.transformer.resblocks.{j + 1}.learnable_linear1"
        state[f"{block}.weight"] = ours["vision_gates.weight"][j].reshape(1, 1).clone()
        state[f"{block}.bias"] = ours["vision_gates.bias"][j].reshape(1).clone()
    for j in range(n_text):
        state[f"text_encoder.transformer.resblocks.{j + 1}.learnable_linear2.bias"] = \
            ours["text_gates.bias"][j].reshape(1).clone()
    return state


def official_bmip_unused(depth, share_visual, share_text):
    """Prompt-learner key stems of an official BMIP checkpoint that its forward never uses."""
    n = depth - 1
    n_text = max(n - 1, 0)
    unused = {"ctx_v", "proj_v"}
    unused |= {"exchange_layer_t"} if share_text else {f"compound_exchange_t.{j}" for j in range(n)}
    unused |= {"exchange_layer_v"} if share_visual else {f"compound_exchange_v.{j}" for j in range(n)}
    if share_text and n == 0:
        unused.add("single_layer_t")
    if share_visual and n_text == 0:
        unused.add("single_layer_v")
    if not share_visual:
        unused |= {f"compound_prompt_projections_v.{j}" for j in range(n_text, n)}
    return {f"prompt_learner.{stem}" for stem in unused}


def official_maple_checkpoint(ours, clip_model, n_ctx, n_cls, seed=0):
    """Official MaPLe layout: ``prompt_learner.{ctx, proj, compound_prompts_text.j,
    compound_prompt_projections.j}`` (our names), the class-name buffers and the frozen CLIP."""
    g = torch.Generator().manual_seed(seed)
    state = frozen_clip_keys(clip_model)
    state.update(class_name_buffers(n_cls, n_ctx, clip_model.text_width, g))
    state.update({f"prompt_learner.{k}": v.clone() for k, v in ours.items()})
    return state


def official_ivlp_checkpoint(ctx, vision_ctx, deep_text, deep_vision, clip_model, n_ctx, n_cls, seed=0):
    """Official IVLP layout: ``prompt_learner.ctx``, ``image_encoder.VPT`` (layer-0 vision prompt,
    when vision prompting is on), ``{image,text}_encoder.transformer.resblocks.{i}.VPT_shallow``
    for blocks i >= 1, the class-name buffers and the frozen CLIP."""
    g = torch.Generator().manual_seed(seed)
    state = frozen_clip_keys(clip_model)
    state.update(class_name_buffers(n_cls, n_ctx, clip_model.text_width, g))
    state["prompt_learner.ctx"] = ctx.clone()
    if vision_ctx is not None:
        state["image_encoder.VPT"] = vision_ctx.clone()
    for j, prompt in enumerate(deep_text):
        state[f"text_encoder.transformer.resblocks.{j + 1}.VPT_shallow"] = prompt.clone()
    for j, prompt in enumerate(deep_vision):
        state[f"image_encoder.transformer.resblocks.{j + 1}.VPT_shallow"] = prompt.clone()
    return state


def official_vpt_checkpoint(vision_ctx, deep_vision, clip_model):
    """Official VPT layout: no prompt learner keys at all (its fixed text features are not a
    module), ``image_encoder.VPT``, the deep ``VPT_shallow`` prompts and the frozen CLIP."""
    state = frozen_clip_keys(clip_model)
    state["image_encoder.VPT"] = vision_ctx.clone()
    for j, prompt in enumerate(deep_vision):
        state[f"image_encoder.transformer.resblocks.{j + 1}.VPT_shallow"] = prompt.clone()
    return state
