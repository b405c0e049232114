"""CoOp: learnable context vectors in the text prompt (Zhou et al., IJCV 2022)."""
import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from .base import ClipPromptTrainer, PromptSet
from .prompting import ClassPromptTemplate, init_text_context

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def class_token_order(n_ctx, name_lens, seq_len, position, start=1):
    """Index map that rearranges "[SOS][ctx][name][rest]" into the wanted order.

    The source sequence of class c is ``[SOS, ctx_0..ctx_{n-1}, name tokens,
    '.', EOS, pad...]`` (length ``seq_len``; ``start`` leading special tokens, 1 for
    OpenAI's SOS, 0 for a tokenizer without one); the result is a (n_cls, seq_len)
    LongTensor ``idx`` such that ``source.gather(1, idx)`` puts the class-name
    tokens at the end (identity), in the middle of the context, or in front of
    it. Computed once, so the forward pass is a single gather for all classes.
    """
    if position not in CLASS_TOKEN_POSITIONS:
        raise ValueError(
            f"TRAINER.COOP.CLASS_TOKEN_POSITION {position!r} is not one of {CLASS_TOKEN_POSITIONS}"
        )
    rows = []
    head = list(range(start))
    ctx = list(range(start, start + n_ctx))
    for name_len in name_lens:
        name = list(range(start + n_ctx, start + n_ctx + name_len))
        rest = list(range(start + n_ctx + name_len, seq_len))
        if position == "end":
            order = head + ctx + name + rest
        elif position == "middle":
            half = n_ctx // 2
            order = head + ctx[:half] + name + ctx[half:] + rest
        else:
            order = head + name + ctx + rest
        rows.append(order)
    return torch.tensor(rows, dtype=torch.long)


class CoOpPromptLearner(nn.Module):
    """Context vectors shared by all classes (or one set per class with CSC).

    Parameter and buffer names follow the official CoOp checkpoints
    (``ctx``; ``token_prefix``/``token_suffix`` are rebuilt from the class
    names and are not saved).
    """

    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        ccfg = cfg.TRAINER.COOP
        n_cls = len(classnames)
        if ccfg.CSC and not ccfg.CTX_INIT:
            print("Initializing class-specific contexts")
            n_ctx = ccfg.N_CTX
            ctx = torch.empty(n_cls, n_ctx, clip_model.text_width)
            nn.init.normal_(ctx, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        else:
            if ccfg.CSC:
                print("TRAINER.COOP.CSC is ignored with CTX_INIT: one context shared by all classes "
                      "is initialised from the words (as in the official code)")
            ctx, prompt_prefix, n_ctx = init_text_context(clip_model, ccfg.N_CTX, ccfg.CTX_INIT, rule="coop")
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        self.template = ClassPromptTemplate(clip_model, classnames, prompt_prefix, n_ctx)
        name_lens = [len(clip_model.text_tokenizer.encode(name.replace("_", " "))) for name in classnames]
        self.position = ccfg.CLASS_TOKEN_POSITION
        order = class_token_order(n_ctx, name_lens, self.template.tokenized_prompts.shape[1], self.position,
                                  self.template.context_start)
        self.register_buffer("order", order, persistent=False)
        self.n_cls, self.n_ctx = n_cls, n_ctx

    @property
    def token_prefix(self):
        return self.template.token_prefix

    @property
    def token_suffix(self):
        return self.template.token_suffix

    def forward(self):
        prompts = self.template(self.ctx)
        if self.position != "end":
            prompts = prompts.gather(1, self.order.unsqueeze(-1).expand(-1, -1, prompts.shape[-1]))
        return PromptSet(prompts, self.template.eot_indices, text_length=self.template.text_length)


@TRAINER_REGISTRY.register()
class CoOp(ClipPromptTrainer):
    """Context Optimization: learn the words of the prompt, keep CLIP frozen."""

    CFG_NODE = "COOP"

    @staticmethod
    def extend_cfg(cfg):
        cfg.TRAINER.COOP = CN()
        cfg.TRAINER.COOP.N_CTX = 16  # number of context vectors
        cfg.TRAINER.COOP.CSC = False  # class-specific context
        cfg.TRAINER.COOP.CTX_INIT = ""  # initialisation words, e.g. "a photo of a"
        cfg.TRAINER.COOP.PREC = "fp16"  # fp16, fp32, amp, bf16
        cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end, middle or front

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        pos = cfg.TRAINER.COOP.CLASS_TOKEN_POSITION
        if pos not in CLASS_TOKEN_POSITIONS:
            raise ValueError(f"TRAINER.COOP.CLASS_TOKEN_POSITION {pos!r} is not one of {CLASS_TOKEN_POSITIONS}")

    def build_prompt_learner(self, cfg, classnames, clip_model):
        return CoOpPromptLearner(cfg, classnames, clip_model)
