"""CoOp: learnable context vectors in the text prompt (Zhou et al., IJCV 2022)."""
import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip.simple_tokenizer import SimpleTokenizer
from dassl.engine import TRAINER_REGISTRY

from .base import ClipPromptTrainer, PromptSet, tokenize_prompts

_tokenizer = SimpleTokenizer()
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


def class_token_order(n_ctx, name_lens, seq_len, position):
    """Index map that rearranges "[SOS][ctx][name][rest]" into the wanted order.

    The source sequence of class c is ``[SOS, ctx_0..ctx_{n-1}, name tokens,
    '.', EOS, pad...]`` (length ``seq_len``); the result is a (n_cls, seq_len)
    LongTensor ``idx`` such that ``source.gather(1, idx)`` puts the class-name
    tokens at the end (identity), in the middle of the context, or in front of
    it. Computed once, so the forward pass is a single gather for all classes.
    """
    if position not in CLASS_TOKEN_POSITIONS:
        raise ValueError(
            f"TRAINER.COOP.CLASS_TOKEN_POSITION {position!r} is not one of {CLASS_TOKEN_POSITIONS}"
        )
    rows = []
    ctx = list(range(1, 1 + n_ctx))
    for name_len in name_lens:
        name = list(range(1 + n_ctx, 1 + n_ctx + name_len))
        rest = list(range(1 + n_ctx + name_len, seq_len))
        if position == "end":
            order = [0] + ctx + name + rest
        elif position == "middle":
            half = n_ctx // 2
            order = [0] + ctx[:half] + name + ctx[half:] + rest
        else:
            order = [0] + name + ctx + rest
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
        n_ctx = ccfg.N_CTX
        ctx_init = ccfg.CTX_INIT
        ctx_dim = clip_model.ln_final.weight.shape[0]

        if ctx_init:
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            with torch.no_grad():
                embedding = clip_model.token_embedding(tokenize_prompts([ctx_init]))
            ctx_vectors = embedding[0, 1:1 + n_ctx, :].clone()
            prompt_prefix = ctx_init
        else:
            shape = (n_cls, n_ctx, ctx_dim) if ccfg.CSC else (n_ctx, ctx_dim)
            print("Initializing class-specific contexts" if ccfg.CSC else "Initializing a generic context")
            ctx_vectors = torch.empty(*shape)
            nn.init.normal_(ctx_vectors, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx_vectors)

        classnames = [name.replace("_", " ") for name in classnames]
        name_lens = [len(_tokenizer.encode(name)) for name in classnames]
        tokens = tokenize_prompts([f"{prompt_prefix} {name}." for name in classnames])
        with torch.no_grad():
            embedding = clip_model.token_embedding(tokens)
        self.register_buffer("token_prefix", embedding[:, :1, :], persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:, :], persistent=False)
        self.register_buffer("eot_indices", tokens.argmax(dim=-1), persistent=False)
        self.position = ccfg.CLASS_TOKEN_POSITION
        order = class_token_order(n_ctx, name_lens, tokens.shape[1], self.position)
        self.register_buffer("order", order, persistent=False)
        self.n_cls, self.n_ctx = n_cls, n_ctx
        self.tokenized_prompts = tokens

    def forward(self):
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx.to(self.token_prefix.dtype), self.token_suffix], dim=1)
        if self.position != "end":
            prompts = prompts.gather(1, self.order.unsqueeze(-1).expand(-1, -1, prompts.shape[-1]))
        return PromptSet(prompts, self.eot_indices)


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
