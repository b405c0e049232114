"""BMIP: bi-directional modality interaction prompts (Lv et al., IJCAI 2025).

Both branches learn their own deep prompts ("local") and receive, at every
prompted layer, a linear projection of the other branch's prompts ("foreign").
The default aggregation weighs the two by the attention the prompt tokens
receive in that layer: ``w = sigmoid(a * attention + b)`` per layer and branch,
prompt = ``w * local + (1 - w) * foreign``.

Defaults follow the official code (LAMDASZ-ML/BMIP), which produced the
published numbers; docs/METHODS.md lists where it departs from the paper and
the options that give the paper's version.
"""
import copy
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY
from dassl.utils import distributed as dist_utils

from clip.model import attention_with_lse

from .base import ClipPromptTrainer, PromptSet
from .prompting import ClassPromptTemplate, DeepPromptHook, init_text_context, normal_prompts, require_vit, splice_prompts

AGGREGATIONS = ("attention_weighted", "addition", "attention", "joint")
SHARED_VISUAL_MODES = ("copies", "alias", "tied")
VISION_WEIGHT_MODES = ("batch_mean", "per_sample")
TEXT_WEIGHT_MODES = ("sos_row", "received")


def attention_to_prompts(q, k, n_prompts, where, eot_indices=None, start=1, causal=True):
    """Mean attention probability each prompt token receives, heads averaged, (N, P).

    vision (prompts are the last ``n_prompts`` tokens): averaged over the
    non-prompt query tokens. text (prompts at positions start..start+P-1, after
    the start token): averaged over the query tokens after the prompts up to each
    sequence's EOT (pooled position), with the text tower's mask (``causal``).
    No gradient.

    The probabilities come out of the fused attention kernel: with one-hot value
    vectors for the prompt keys (and zeros elsewhere) the attention output of a
    query is exactly the probability it gives each prompt key. No (L x L) score
    matrix is written, and the softmax normaliser still spans all keys.
    """
    with torch.no_grad():
        batch, heads, length, head_dim = k.shape
        first = length - n_prompts if where == "vision" else start
        # value width = the head width, so the kernel stays on its fused path
        values = q.new_zeros(length, max(head_dim, n_prompts))
        values[first:first + n_prompts, :n_prompts] = torch.eye(n_prompts, dtype=q.dtype, device=q.device)
        values = values.expand(batch, heads, -1, -1)
        if where == "vision":
            probs = F.scaled_dot_product_attention(q[:, :, :first], k, values)[..., :n_prompts]
            return probs.float().mean(dim=(1, 2))
        after = first + n_prompts
        probs = F.scaled_dot_product_attention(q, k, values, is_causal=causal)[:, :, after:, :n_prompts]
        probs = probs.float().mean(dim=1)  # (N, rows, P), heads averaged
        query_pos = torch.arange(after, length, device=q.device)
        valid = (query_pos[None, :] <= eot_indices[:, None]).float()  # rows up to each EOT
        return (probs * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp(min=1)


class AttentionWeightedHook:
    """The BMIP aggregation inside the per-layer hook.

    At deep layer ``i`` (1 <= i <= len(local)) it projects q, k, v of the block's
    current input once, reads the attention the prompt tokens receive (only when
    the weight depends on it), forms ``w * local + (1 - w) * foreign``, projects
    just the new prompt rows, splices them into x, q, k, v and finishes the
    block with its fused attention. At inference the vision read-out and the
    block share one attention pass (:meth:`evaluate_vision`).
    """

    def __init__(self, local, foreign, gate, where, weight_mode, eot_indices=None, recorder=None,
                 mean_across_ranks=False, start=1):
        self.start = start  # text: where the prompts begin (the template's context_start)
        self.local, self.foreign, self.gate = local, foreign, gate
        self.where, self.weight_mode, self.eot_indices = where, weight_mode, eot_indices
        self.recorder = recorder
        # "batch_mean" under torchrun training: average over the global batch, as one
        # process would (each rank holds only its slice of the batch).
        self.mean_across_ranks = mean_across_ranks

    def record(self, j, w, p):
        """Keep the mean weight per prompt token of layer j+1 (for the interpretability plot)."""
        if self.recorder is not None:
            self.recorder.setdefault((self.where, j + 1), []).append(w.detach().float().reshape(-1, p).mean(0))

    def prompt_slice(self, x, p):
        return slice(self.start, self.start + p) if self.where == "text" else slice(x.shape[1] - p, x.shape[1])

    def __call__(self, i, x, block):
        j = i - 1
        if not 0 <= j < len(self.local):
            return block(x)
        local, foreign = self.local[j], self.foreign[j]
        p = local.shape[0]
        if self.weight_mode == "sos_row":
            # The official text weight reads the SOS row, which the causal mask
            # makes zero: w = sigmoid(bias), no attention needed.
            w = torch.sigmoid(self.gate(j, None)).expand(p)
            self.record(j, w, p)
            return block(splice_prompts(x, w[:, None] * local + (1 - w[:, None]) * foreign, self.where, self.start))
        projected = block.project(x)
        q, k, v = block.split_heads(projected)
        if self.where == "vision" and p > 0 and not torch.is_grad_enabled():
            n_rest = x.shape[1] - p
            fused = attention_with_lse(q, k[:, :, :n_rest], v[:, :, :n_rest])
            if fused is not None:
                return self.evaluate_vision(x, block, projected, local, foreign, j, p, *fused)
        att = attention_to_prompts(q, k, p, self.where, self.eot_indices, self.start,
                                   block.causal).to(local.dtype)  # (N, P)
        x, projected = self.aggregate(x, block, projected, local, foreign, j, p, att)
        return block.finish(x, *block.split_heads(projected))

    def aggregate(self, x, block, projected, local, foreign, j, p, att):
        """Form layer j+1's prompts from the attention ``att`` (N, P) they received and splice them
        into ``x`` and, projected, into ``projected`` (in place)."""
        if self.weight_mode == "batch_mean":  # official: one weight per prompt token for the whole batch
            if self.mean_across_ranks:
                totals = dist_utils.all_reduce(torch.cat([att.sum(dim=0), att.new_tensor([att.shape[0]])]))
                att = totals[:-1] / totals[-1]
            else:
                att = att.mean(dim=0)
        w = torch.sigmoid(self.gate(j, att)).unsqueeze(-1)
        self.record(j, w, p)
        prompts = w * local + (1 - w) * foreign  # (P, D) or (N, P, D)
        x = splice_prompts(x, prompts, self.where, self.start)
        rows = self.prompt_slice(x, p)
        # Only the prompt rows change: project just them (from a copy, since a view would make
        # ln_1 keep all of the spliced x alive for the backward) and write them over the old
        # rows in place, so no full-size q, k, v is assembled in the forward or the backward.
        projected[:, rows] = block.project(x[:, rows].clone())
        return x, projected

    def evaluate_vision(self, x, block, projected, local, foreign, j, p, attended, lse):
        """The vision layer with one attention pass (inference only).

        ``attended``, ``lse``: every query over the non-prompt keys, with each row's log-sum-exp.
        That pass is shared by the read-out and the block: the probability an old prompt key
        receives, and the block's attention over the new prompt keys, differ from it only by
        the P prompt columns, which are scored directly and merged in through the normalisers.
        The P prompt rows, whose queries change with the new prompts, attend again (P rows).
        Equal to the two-pass path up to float rounding; no (L x L) matrix is written.
        """
        n_rest = x.shape[1] - p
        scale = 1.0 / math.sqrt(block.head_dim)
        q, k, _ = block.split_heads(projected)
        # scored twice against P keys: scaled first (no fp16 overflow), laid out for the matrix products
        q_rest = q.new_empty(q.shape[0], q.shape[1], n_rest, q.shape[3])
        torch.mul(q[:, :, :n_rest], scale, out=q_rest)
        lse = lse[:, :, :n_rest]
        old_scores = torch.matmul(q_rest, k[:, :, n_rest:].transpose(-2, -1)).float()  # (N, H, R, P)
        log_z = torch.logaddexp(lse, torch.logsumexp(old_scores, dim=-1))
        att = torch.exp(old_scores - log_z.unsqueeze(-1)).mean(dim=(1, 2)).to(local.dtype)  # (N, P)
        x, projected = self.aggregate(x, block, projected, local, foreign, j, p, att)
        q, k, v = block.split_heads(projected)  # the prompt rows are the new ones now
        new_scores = torch.matmul(q_rest, k[:, :, n_rest:].transpose(-2, -1)).float()
        log_z = torch.logaddexp(lse, torch.logsumexp(new_scores, dim=-1))
        rest = attended[:, :, :n_rest]  # rescaled to the new normaliser, plus the new prompt columns
        to_new = torch.matmul(torch.exp(new_scores - log_z.unsqueeze(-1)).to(v.dtype), v[:, :, n_rest:])
        torch.addcmul(to_new, rest, torch.exp(lse - log_z).unsqueeze(-1).to(rest.dtype), out=rest)
        attended[:, :, n_rest:] = F.scaled_dot_product_attention(q[:, :, n_rest:], k, v)
        batch, _, length, _ = attended.shape
        return block.finish_attended(x, attended.transpose(1, 2).reshape(batch, length, block.d_model))


class Gates(nn.Module):
    """Per-layer 1x1 maps from attention to the aggregation logit.

    ``with_input``: ``weight * attention + bias`` (official ``learnable_linear``);
    otherwise only the bias (the official text branch, whose input is always 0).
    """

    def __init__(self, n_layers, with_input):
        super().__init__()
        bound = 1.0  # nn.Linear(1, 1)'s default init range: 1 / sqrt(fan_in)
        self.bias = nn.Parameter(torch.empty(n_layers).uniform_(-bound, bound))
        self.weight = nn.Parameter(torch.empty(n_layers).uniform_(-bound, bound)) if with_input else None

    def forward(self, j, att):
        if self.weight is None:
            return self.bias[j]
        return self.weight[j] * att + self.bias[j]


class BMIPPromptLearner(nn.Module):
    """All of BMIP's trainable tensors (names follow the official checkpoints
    where the tensor exists there)."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        bcfg = cfg.TRAINER.BMIP
        self.aggregation = bcfg.AGGREGATION
        self.vision_weight, self.text_weight = bcfg.VISION_WEIGHT, bcfg.TEXT_WEIGHT
        depth, n_ctx = bcfg.PROMPT_DEPTH, bcfg.N_CTX
        n_layers = min(len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks))
        if not 1 <= depth <= n_layers:
            raise ValueError(f"TRAINER.BMIP.PROMPT_DEPTH must be in [1, {n_layers}], got {depth}")
        d_t, d_v = clip_model.text_width, clip_model.vision_width
        n_deep = depth - 1
        # The official text branch replaces one layer fewer than the vision branch.
        self.n_text_deep = n_deep if bcfg.MATCH_TEXT_DEPTH else max(n_deep - 1, 0)
        n_layer0 = 2 * n_ctx if self.aggregation == "joint" else n_ctx

        ctx, prompt_prefix, n_layer0 = init_text_context(clip_model, n_layer0, bcfg.CTX_INIT, rule="maple")
        print("BMIP design: bi-directional modality interaction prompts")
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of BMIP context words (tokens): {n_ctx}; aggregation: {self.aggregation}")
        self.ctx_t = nn.Parameter(ctx)
        self.proj_t = nn.Linear(d_t, d_v)  # layer-0 vision prompts from the text context

        # local language prompts, layers 1..depth-1
        self.compound_prompts_text = normal_prompts(n_deep, n_ctx, d_t)
        # local vision prompts
        share_v, share_t = cfg.SHARE.SHARE_PARAMETER_VISUAL, cfg.SHARE.SHARE_PARAMETER_TEXT
        self.compound_prompts_visual = nn.ParameterList()
        if share_v:
            first = torch.empty(n_ctx, d_v)
            nn.init.normal_(first, std=0.02)
            mode = bcfg.SHARED_VISUAL_PROMPT
            if mode == "tied":
                if n_deep:  # depth 1 has no deep layer to share a prompt between
                    self.compound_prompts_visual.append(nn.Parameter(first))
            else:
                for _ in range(n_deep):
                    # "alias": one storage under n_deep Parameters (each applies its own
                    # update to it); "copies": n_deep Parameters with the same initial value.
                    self.compound_prompts_visual.append(nn.Parameter(first if mode == "alias" else first.clone()))
        else:
            bound = math.sqrt(6.0 / float(3 * 16 + d_v))  # official per-layer init range
            for _ in range(n_deep):
                self.compound_prompts_visual.append(nn.Parameter(torch.empty(n_ctx, d_v).uniform_(-bound, bound)))
        # projections text -> vision (foreign vision prompts) and vision -> text;
        # only what is used is created, so every trainable tensor gets a gradient
        if n_deep:
            if share_t:
                self.single_layer_t = nn.Linear(d_t, d_v)
            else:
                self.compound_prompt_projections_t = _clones(nn.Linear(d_t, d_v), n_deep)
        if self.n_text_deep:
            if share_v:
                self.single_layer_v = nn.Linear(d_v, d_t)
            else:
                self.compound_prompt_projections_v = _clones(nn.Linear(d_v, d_t), self.n_text_deep)
        if self.aggregation == "attention_weighted":
            self.vision_gates = Gates(n_deep, with_input=True) if n_deep else None
            self.text_gates = (Gates(self.n_text_deep, with_input=self.text_weight == "received")
                               if self.n_text_deep else None)
        self.alias_visual = share_v and bcfg.SHARED_VISUAL_PROMPT == "alias"
        # A dict set by tools/plot_weights.py to collect the aggregation weights w.
        self.weight_recorder = None
        self.template = ClassPromptTemplate(clip_model, classnames, prompt_prefix, n_layer0)

    def _apply(self, fn, *args, **kwargs):
        # Moving or casting a module gives every Parameter its own new storage;
        # "alias" mode puts the shared vision prompt's storage back under all of them.
        super()._apply(fn, *args, **kwargs)
        if getattr(self, "alias_visual", False):
            first = self.compound_prompts_visual[0]
            for p in list(self.compound_prompts_visual)[1:]:
                p.data = first.data
        return self

    # ----------------------------------------------------------------- pieces
    def local_visual(self, j):
        return self.compound_prompts_visual[0 if len(self.compound_prompts_visual) == 1 else j]

    def project_t(self, j, prompt):
        layer = self.single_layer_t if hasattr(self, "single_layer_t") else self.compound_prompt_projections_t[j]
        return layer(prompt)

    def project_v(self, j, prompt):
        layer = self.single_layer_v if hasattr(self, "single_layer_v") else self.compound_prompt_projections_v[j]
        return layer(prompt)

    def deep_prompts(self):
        """Per deep layer: (local, foreign) lists for the vision and the text branch."""
        n_deep = len(self.compound_prompts_text)
        text_local = list(self.compound_prompts_text)
        vision_local = [self.local_visual(j) for j in range(n_deep)]
        vision_foreign = [self.project_t(j, text_local[j]) for j in range(n_deep)]
        text_foreign = [self.project_v(j, vision_local[j]) for j in range(self.n_text_deep)]
        return (vision_local, vision_foreign), (text_local[:self.n_text_deep], text_foreign)

    def forward(self):
        (v_local, v_foreign), (t_local, t_foreign) = self.deep_prompts()
        eot = self.template.eot_indices
        if self.aggregation == "attention_weighted":
            rec = self.weight_recorder
            vision_hook = AttentionWeightedHook(v_local, v_foreign, self.vision_gates, "vision", self.vision_weight,
                                                recorder=rec,
                                                mean_across_ranks=self.training and dist_utils.is_distributed())
            text_hook = AttentionWeightedHook(t_local, t_foreign, self.text_gates, "text", self.text_weight, eot,
                                              recorder=rec, start=self.template.context_start)
        else:
            combine = {"addition": lambda loc, fo: loc + fo,
                       "attention": lambda loc, fo: loc + torch.softmax(fo @ loc.t(), dim=-1) @ fo,
                       "joint": lambda loc, fo: torch.cat([loc, fo], dim=0)}[self.aggregation]
            vision_hook = DeepPromptHook([combine(a, b) for a, b in zip(v_local, v_foreign)], "vision")
            text_hook = DeepPromptHook([combine(a, b) for a, b in zip(t_local, t_foreign)], "text",
                                       self.template.context_start)
        return PromptSet(
            text_embeddings=self.template(self.ctx_t),
            eot_indices=eot,
            text_length=self.template.text_length,
            text_hook=text_hook,
            vision_prompts=self.proj_t(self.ctx_t),
            vision_hook=vision_hook,
        )


def _clones(module, n):
    """``n`` copies of one initialised module (the official ``_get_clones``)."""
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


def _official_unused(key, n_deep, n_text_deep):
    """Whether ``key`` of an official BMIP checkpoint is a tensor its forward never uses."""
    if key == "prompt_learner.ctx_v" or key.startswith(("prompt_learner.proj_v.", "prompt_learner.exchange_layer_",
                                                        "prompt_learner.compound_exchange_")):
        return True
    if key.startswith("prompt_learner.single_layer_t.") and n_deep == 0:
        return True
    if key.startswith("prompt_learner.single_layer_v.") and n_text_deep == 0:
        return True
    match = re.match(r"^prompt_learner\.compound_prompt_projections_v\.(\d+)\.", key)
    return bool(match) and int(match.group(1)) >= n_text_deep


def _summarise_keys(keys):
    """Keys with their ``.weight``/``.bias`` (and per-block) variants folded: a readable list."""
    folded = []
    for key in keys:
        short = re.sub(r"\.(weight|bias)$", "", key)
        short = re.sub(r"resblocks\.\d+\.", "resblocks.*.", short)
        if short not in folded:
            folded.append(short)
    return folded


def _official_gate_key(branch, j, part):
    encoder, linear = ("image_encoder", 1) if branch == "vision" else ("text_encoder", 2)
    return f"{encoder}.transformer.resblocks.{j + 1}.learnable_linear{linear}.{part}"


_OFFICIAL_GATE = re.compile(r"^(image|text)_encoder\.transformer\.resblocks\.(\d+)\.learnable_linear([12])\.(weight|bias)$")


@TRAINER_REGISTRY.register()
class BMIP(ClipPromptTrainer):
    """Bi-directional modality interaction prompts; checkpoints as the official
    ones (``MultiModalPromptLearner/``, keys ``prompt_learner.*``)."""

    CFG_NODE = "BMIP"
    MODEL_NAME = "MultiModalPromptLearner"
    PREFIXED_KEYS = True

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.BMIP = CN()
        cfg.TRAINER.BMIP.N_CTX = 2  # prompt tokens per layer and branch
        cfg.TRAINER.BMIP.CTX_INIT = "a photo of a"  # layer-0 text context (first N_CTX tokens)
        cfg.TRAINER.BMIP.PREC = "fp16"  # fp16, fp32, amp, bf16
        cfg.TRAINER.BMIP.PROMPT_DEPTH = 9  # layers 0..PROMPT_DEPTH-1 get prompts
        cfg.TRAINER.BMIP.CONNECT_METHOD = "None"  # official key; AGGREGATION selects the variant
        cfg.TRAINER.BMIP.WEIGHT_THRESHOLD = 0.0025  # official key, unused by the official method too
        # attention_weighted (BMIP), addition, attention (BITP-style), joint (2*N_CTX tokens)
        cfg.TRAINER.BMIP.AGGREGATION = "attention_weighted"
        # Shared vision prompt (SHARE.SHARE_PARAMETER_VISUAL True): "copies" = what the
        # official code does once the model is moved to a GPU (per-layer Parameters with
        # the same initial value), "alias" = what it does on the CPU (one storage under
        # every layer's Parameter), "tied" = ordinary weight tying. See docs/METHODS.md.
        cfg.TRAINER.BMIP.SHARED_VISUAL_PROMPT = "copies"
        cfg.TRAINER.BMIP.VISION_WEIGHT = "batch_mean"  # official; "per_sample" = the paper's
        cfg.TRAINER.BMIP.TEXT_WEIGHT = "sos_row"  # official (= sigmoid(bias)); "received" = the paper's
        cfg.TRAINER.BMIP.MATCH_TEXT_DEPTH = False  # official text has one deep layer fewer; True matches

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        bcfg = cfg.TRAINER.BMIP
        for key, allowed in (("AGGREGATION", AGGREGATIONS), ("SHARED_VISUAL_PROMPT", SHARED_VISUAL_MODES),
                             ("VISION_WEIGHT", VISION_WEIGHT_MODES), ("TEXT_WEIGHT", TEXT_WEIGHT_MODES)):
            if bcfg[key] not in allowed:
                raise ValueError(f"TRAINER.BMIP.{key} {bcfg[key]!r} is not one of {', '.join(allowed)}")

    def build_prompt_learner(self, cfg, classnames, clip_model):
        require_vit(clip_model, "BMIP", cfg.MODEL.BACKBONE.NAME)
        return BMIPPromptLearner(cfg, classnames, clip_model)

    def map_checkpoint_keys(self, state_dict):
        """Official BMIP keys -> ours: the per-block 1x1 layers become per-layer gate
        entries; tensors the official model holds but its forward never uses are dropped
        (and listed in the log).

        Never used by the official forward, at any depth: ``ctx_v``, ``proj_v``, the
        ``exchange_layer_*`` / ``compound_exchange_*`` layers, the ``learnable_linear`` layers
        of blocks outside the prompted range (and linear2 of vision blocks, linear1 of text
        blocks). Depending on the depth: ``single_layer_t`` at depth 1 (no deep layer), and the
        vision-to-text projections past the text branch's last prompted layer, which is one
        layer shallower than the vision branch (``single_layer_v`` at depths 1 and 2, the last
        ``compound_prompt_projections_v`` at every depth). Ours does not create those tensors.
        """
        learner = self.prompt_learner
        n_deep, n_text_deep = len(learner.compound_prompts_text), learner.n_text_deep
        mapped, gates, dropped = {}, {}, []
        for key, value in state_dict.items():
            match = _OFFICIAL_GATE.match(key)
            if match:
                branch, block, which, part = match.groups()
                j = int(block) - 1
                in_range = 0 <= j < (n_deep if branch == "image" else n_text_deep)
                if (branch == "image") == (which == "1") and in_range:  # vision: linear1, text: linear2
                    gates[("vision" if branch == "image" else "text", j, part)] = value
                else:
                    dropped.append(key)
                continue
            if _official_unused(key, n_deep, n_text_deep):
                dropped.append(key)
                continue
            mapped[key] = value
        used = set()
        for branch in ("vision", "text"):
            module = getattr(learner, f"{branch}_gates", None)
            for part in ("weight", "bias"):
                if module is None or getattr(module, part) is None:
                    continue
                n = getattr(module, part).shape[0]
                if not all((branch, j, part) in gates for j in range(n)):
                    continue  # incomplete: left out, so the strict load names the missing key
                mapped[f"prompt_learner.{branch}_gates.{part}"] = torch.stack(
                    [gates[(branch, j, part)].reshape(()) for j in range(n)])
                used.update((branch, j, part) for j in range(n))
        # e.g. the text blocks' linear2 weight, whose input the causal mask keeps at 0
        dropped += [_official_gate_key(*entry) for entry in sorted(set(gates) - used)]
        if len(learner.compound_prompts_visual) == 1 and n_deep > 1:  # tied: one prompt stands for all layers
            mapped = {k: v for k, v in mapped.items()
                      if not re.match(r"prompt_learner\.compound_prompts_visual\.[1-9]\d*$", k)}
        if dropped:
            shown = ", ".join(_summarise_keys(dropped))
            print(f"Dropped {len(dropped)} tensor(s) of the official BMIP checkpoint that its forward never "
                  f"uses at PROMPT_DEPTH {n_deep + 1}: {shown}")
        return mapped
