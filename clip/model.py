"""CLIP image and text encoders with prompt and per-layer hook entry points.

One implementation serves every OpenAI checkpoint (ViT and ModifiedResNet). Parameter names and
shapes follow OpenAI's, so their state dicts load with ``strict=True``. Tensors are batch-first,
``(N, L, D)``, everywhere.

Prompt-learning methods never subclass these blocks. They pass

* ``prompts`` to :meth:`VisionTransformer.forward` (tokens appended after ``[CLS, patches]``),
* token embeddings to :meth:`CLIP.encode_text_embeddings`,
* a ``hook(i, x, block) -> x`` to :meth:`Transformer.forward`, which owns each block call and can
  use :meth:`ResidualAttentionBlock.qkv` / :meth:`ResidualAttentionBlock.finish` to reach inside.
"""
import math
from collections import OrderedDict
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

# Signature of a per-layer hook: (layer index, tokens entering the block, the block) -> tokens out.
LayerHook = Callable[[int, torch.Tensor, nn.Module], torch.Tensor]

# Scalar entries some OpenAI archives carry next to the weights; they are not parameters.
_NON_PARAMETER_KEYS = ("input_resolution", "context_length", "vocab_size")


def attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """Fused attention that also returns each query's log-sum-exp of scaled scores, for inference.

    ``(output (N, H, Lq, Dh) in q's dtype, logsumexp (N, H, Lq) in float32)``, or ``None`` where no
    fused kernel exposes the normaliser (then the caller takes its plain path). No mask, no
    dropout, no gradient through the log-sum-exp: only for code under ``torch.no_grad``. The
    kernels are PyTorch's own (the ones ``scaled_dot_product_attention`` dispatches to), reached by
    their operator names since the public function does not return the normaliser.
    """
    try:
        if q.device.type == "cpu":
            out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
        elif q.device.type == "cuda":
            out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
        else:
            return None
    except (RuntimeError, AttributeError, NotImplementedError):  # kernel absent or inputs it refuses
        return None
    return out, lse[..., :q.shape[-2]].float()  # the CUDA kernel may pad the query axis


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 and cast back to the input dtype.

    Normalising half-precision activations in half precision loses too much accuracy, so the
    statistics are always taken in fp32 (also when the module itself was cast to half).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        normed = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return normed.to(x.dtype)


class QuickGELU(nn.Module):
    """The sigmoid approximation of GELU that OpenAI's CLIP weights were trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


# MLP activations of the CLIP families: OpenAI's weights were trained with QuickGELU, open_clip's
# native models (LAION, DataComp) with the exact GELU.
# SigLIP 2's towers use the tanh approximation of GELU.
def _gelu_tanh() -> nn.Module:
    return nn.GELU(approximate="tanh")


ACTIVATIONS = {"quick_gelu": QuickGELU, "gelu": nn.GELU, "gelu_tanh": _gelu_tanh}


class SelfAttentionProjections(nn.Module):
    """Holds the fused q/k/v input projection and the output projection of a self-attention layer.

    The attribute names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) match
    ``nn.MultiheadAttention`` so OpenAI's ``attn.*`` keys load unchanged; the attention itself is
    computed by :class:`ResidualAttentionBlock`.
    """

    def __init__(self, d_model: int):
        super().__init__()
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``.

    ``forward(x) == finish(x, *qkv(x))``. The two halves are public so a layer hook can edit
    queries, keys and values (or read attention probabilities) without a second pass.
    Input and output are ``(N, L, d_model)``.
    """

    def __init__(self, d_model: int, n_head: int, causal: bool = False,
                 act_layer: Callable[[], nn.Module] = QuickGELU, mlp_ratio: float = 4.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        if d_model % n_head != 0:
            raise ValueError(f"d_model={d_model} is not divisible by n_head={n_head}")
        self.d_model = d_model
        self.n_head = n_head
        self.head_dim = d_model // n_head
        self.causal = causal
        self.attn = SelfAttentionProjections(d_model)
        self.ln_1 = LayerNorm(d_model, eps=norm_eps)
        mlp_width = int(d_model * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(d_model, mlp_width)),
            ("gelu", act_layer()),
            ("c_proj", nn.Linear(mlp_width, d_model)),
        ]))
        self.ln_2 = LayerNorm(d_model, eps=norm_eps)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``ln_1`` and the fused input projection to ``x`` (N, L, D): ``(N, L, 3 * D)``.

        Acts on each token independently, so it works on any subset of tokens, and rows of the
        result may be replaced (in place) by the projection of other tokens.
        """
        return F.linear(self.ln_1(x), self.attn.in_proj_weight, self.attn.in_proj_bias)

    def split_heads(self, projected: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v views of a :meth:`project` output, each ``(N, n_head, L, head_dim)``."""
        batch, length, _ = projected.shape
        q, k, v = projected.view(batch, length, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def qkv(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``split_heads(project(x))``: q, k, v of ``x`` (N, L, D), each ``(N, n_head, L, head_dim)``."""
        return self.split_heads(self.project(x))

    def finish(self, x: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
               v: torch.Tensor) -> torch.Tensor:
        """Attend with (q, k, v), merge heads, project, add to ``x``, then apply the MLP residual.

        Uses the fused ``scaled_dot_product_attention`` kernel; attention weights are never
        materialised on this path.
        """
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        batch, _, length, _ = attended.shape
        return self.finish_attended(x, attended.transpose(1, 2).reshape(batch, length, self.d_model))

    def finish_attended(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The rest of the block once its attention output is known: ``attended`` (N, L, D), heads
        merged, goes through the output projection into the residual, then the MLP residual."""
        x = x + self.attn.out_proj(attended)
        return x + self.mlp(self.ln_2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block on ``x`` (N, L, D)."""
        return self.finish(x, *self.qkv(x))

    def attention_probs(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Softmax attention probabilities ``(N, n_head, Lq, Lk)`` for queries ``q`` and keys ``k``.

        For methods that need the probabilities themselves; the normal forward never calls this.
        With a causal block, query ``i`` sees keys ``0..i`` (top-left aligned, as in ``finish``).
        """
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        if self.causal:
            query_len, key_len = scores.shape[-2:]
            future = torch.ones(query_len, key_len, dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        return scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)


class Transformer(nn.Module):
    """A stack of :class:`ResidualAttentionBlock` whose every block call can be wrapped by a hook.

    ``forward(x, hook)`` calls ``hook(i, x, block)`` instead of ``block(x)`` for every layer ``i``
    when a hook is given. Set ``grad_checkpointing = True`` to recompute each call (block or hook)
    in the backward pass while training, trading compute for memory; note that a hook with side
    effects then runs twice per step.
    """

    def __init__(self, width: int, layers: int, heads: int, causal: bool = False,
                 act_layer: Callable[[], nn.Module] = QuickGELU, mlp_ratio: float = 4.0,
                 norm_eps: float = 1e-5):
        super().__init__()
        self.width = width
        self.layers = layers
        self.heads = heads
        self.grad_checkpointing = False
        self.resblocks = nn.Sequential(*[
            ResidualAttentionBlock(width, heads, causal=causal, act_layer=act_layer, mlp_ratio=mlp_ratio,
                                   norm_eps=norm_eps)
            for _ in range(layers)
        ])

    def forward(self, x: torch.Tensor, hook: Optional[LayerHook] = None) -> torch.Tensor:
        """Run all blocks on ``x`` (N, L, width), each through ``hook`` when one is given."""
        use_checkpoint = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.resblocks):
            if hook is None:
                x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
            elif use_checkpoint:
                x = checkpoint(hook, i, x, block, use_reentrant=False)
            else:
                x = hook(i, x, block)
        return x


def _check_image_size(image: torch.Tensor, resolution: int) -> None:
    if image.dim() != 4:
        raise ValueError(f"CLIP image encoder expects a (N, 3, H, W) batch, got shape "
                         f"{tuple(image.shape)}")
    height, width = image.shape[-2:]
    if (height, width) != (resolution, resolution):
        raise ValueError(f"CLIP image encoder: expected resolution {resolution}x{resolution}, "
                         f"got {height}x{width} (input shape {tuple(image.shape)})")


class AttentionPoolHead(nn.Module):
    """Attention pooling with one learned query (SigLIP's "MAP" head), then an MLP residual.

    Parameter names follow timm's ``AttentionPoolLatent`` (``latent``, ``q``, ``kv``, ``proj``,
    ``norm``, ``mlp.fc1``, ``mlp.fc2``). Input ``(N, L, width)``, output ``(N, width)``.
    """

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0,
                 act_layer: Callable[[], nn.Module] = nn.GELU, norm_eps: float = 1e-6):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.latent = nn.Parameter(width ** -0.5 * torch.randn(1, 1, width))
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.norm = LayerNorm(width, eps=norm_eps)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(width, hidden)), ("act", act_layer()), ("fc2", nn.Linear(hidden, width))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q = self.q(self.latent.to(x.dtype)).view(1, 1, self.heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(batch, length, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        pooled = F.scaled_dot_product_attention(q.expand(batch, -1, -1, -1), k, v)
        pooled = self.proj(pooled.transpose(1, 2).reshape(batch, 1, width))
        pooled = pooled + self.mlp(self.norm(pooled))
        return pooled[:, 0]


class VisionTransformer(nn.Module):
    """ViT image encoder: patch embedding, class token, transformer, projected CLS (OpenAI's).

    The options other CLIP families need (defaults = OpenAI's): no class token (``class_token``
    False: the positional embedding covers the patches only), a bias in the patch embedding, no
    ``ln_pre``, pooling by the class token (``pool="token"``: ``ln_post(x[:, 0])``) or by an
    :class:`AttentionPoolHead` over the normalised image tokens (``pool="map"``, SigLIP), and no
    output projection (``proj`` None). ``num_prefix_tokens`` is 1 with a class token, else 0.
    """

    def __init__(self, input_resolution: int, patch_size: int, width: int, layers: int,
                 heads: int, output_dim: int, act_layer: Callable[[], nn.Module] = QuickGELU,
                 mlp_ratio: float = 4.0, norm_eps: float = 1e-5, class_token: bool = True,
                 patch_bias: bool = False, ln_pre: bool = True, pool: str = "token", proj: bool = True):
        super().__init__()
        if input_resolution % patch_size != 0:
            raise ValueError(f"input_resolution={input_resolution} is not a multiple of "
                             f"patch_size={patch_size}")
        if pool not in ("token", "map") or (pool == "token" and not class_token):
            raise ValueError(f"vision pooling {pool!r} is not one of 'token' (needs a class token), 'map'")
        self.input_resolution = input_resolution
        self.patch_size = patch_size
        self.width = width
        self.output_dim = output_dim if proj else width
        self.num_patches = (input_resolution // patch_size) ** 2
        self.num_prefix_tokens = 1 if class_token else 0
        self.pool = pool
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=patch_bias)
        scale = width ** -0.5
        if class_token:
            self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.num_patches + self.num_prefix_tokens,
                                                                     width))
        self.ln_pre = LayerNorm(width, eps=norm_eps) if ln_pre else nn.Identity()
        self.transformer = Transformer(width, layers, heads, act_layer=act_layer, mlp_ratio=mlp_ratio,
                                       norm_eps=norm_eps)
        self.ln_post = LayerNorm(width, eps=norm_eps)
        if pool == "map":
            self.attn_pool = AttentionPoolHead(width, heads, mlp_ratio, act_layer, norm_eps)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim)) if proj else None

    def forward(self, x: torch.Tensor, prompts: Optional[torch.Tensor] = None,
                hook: Optional[LayerHook] = None) -> torch.Tensor:
        """Encode images ``x`` (N, 3, R, R) to ``(N, output_dim)``.

        ``prompts`` of shape (P, width) (shared) or (N, P, width) (per image) are appended after
        ``[CLS, patches]`` (``[patches]`` without a class token) once the positional embedding is
        added, before ``ln_pre``. The pooled feature reads only the image's own tokens: the class
        token, or (attention pooling) the class token and patches; prompts act through the blocks.
        """
        _check_image_size(x, self.input_resolution)
        x = self.conv1(x.to(self.conv1.weight.dtype))
        x = x.flatten(2).transpose(1, 2)
        if self.num_prefix_tokens:
            cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
            x = torch.cat([cls, x], dim=1)
        x = x + self.positional_embedding.to(x.dtype)
        if prompts is not None:
            if prompts.dim() == 2:
                prompts = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)
            if prompts.dim() != 3 or prompts.shape[0] != x.shape[0] or prompts.shape[2] != self.width:
                raise ValueError(f"vision prompts must be (P, {self.width}) or "
                                 f"({x.shape[0]}, P, {self.width}), got {tuple(prompts.shape)}")
            x = torch.cat([x, prompts.to(x.dtype)], dim=1)
        x = self.ln_pre(x)
        x = self.transformer(x, hook)
        if self.pool == "token":
            pooled = self.ln_post(x[:, 0, :])
        else:
            pooled = self.attn_pool(self.ln_post(x[:, :self.num_prefix_tokens + self.num_patches]))
        return pooled if self.proj is None else pooled @ self.proj


class Bottleneck(nn.Module):
    """ResNet bottleneck whose strided variant average-pools before the last conv (anti-aliasing)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # OpenAI names the pool "-1" so that the conv/bn keys stay "downsample.0/1".
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck on an NCHW tensor."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    """Pools an NCHW feature map with one attention query: the mean token plus position."""

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads: int,
                 output_dim: Optional[int] = None):
        super().__init__()
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.num_heads = num_heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, output_dim)."""
        tokens = x.flatten(2).transpose(1, 2)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.positional_embedding.to(tokens.dtype)
        batch, length, channels = tokens.shape
        head_dim = channels // self.num_heads

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.num_heads, head_dim).transpose(1, 2)

        # Only the pooled (first) token's output is kept, so only its query is computed.
        q = split_heads(self.q_proj(tokens[:, :1]))
        k = split_heads(self.k_proj(tokens))
        v = split_heads(self.v_proj(tokens))
        pooled = F.scaled_dot_product_attention(q, k, v)
        return self.c_proj(pooled.transpose(1, 2).reshape(batch, channels))


class ModifiedResNet(nn.Module):
    """OpenAI's ResNet image encoder: 3-conv stem with average pooling, anti-aliased bottlenecks,
    attention pooling instead of global average pooling."""

    def __init__(self, layers: Sequence[int], output_dim: int, heads: int,
                 input_resolution: int = 224, width: int = 64):
        super().__init__()
        self.output_dim = output_dim
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)

        inplanes = width
        stages = []
        for stage_index, num_blocks in enumerate(layers):
            planes = width * 2 ** stage_index
            stride = 1 if stage_index == 0 else 2
            blocks = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            blocks += [Bottleneck(inplanes, planes) for _ in range(1, num_blocks)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode images ``x`` (N, 3, R, R) to ``(N, output_dim)``."""
        _check_image_size(x, self.input_resolution)
        x = x.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class CLIP(nn.Module):
    """Contrastive image-text model with OpenAI's parameter names.

    Convenience attributes: ``embed_dim`` (joint space), ``image_resolution``, ``is_vit``,
    ``vision_width`` (ViT token width; for a ResNet, the stem width as in OpenAI's constructor),
    ``text_width``, ``context_length``, ``vocab_size``.
    """

    def __init__(self, embed_dim: int, image_resolution: int,
                 vision_layers: Union[Tuple[int, int, int, int], int], vision_width: int,
                 vision_patch_size: Optional[int], context_length: int, vocab_size: int,
                 transformer_width: int, transformer_heads: int, transformer_layers: int,
                 vision_heads: Optional[int] = None, activation: str = "quick_gelu",
                 vision_mlp_ratio: float = 4.0, text_mlp_ratio: float = 4.0,
                 vision_activation: Optional[str] = None, vision_norm_eps: float = 1e-5,
                 text_norm_eps: float = 1e-5, vision_class_token: bool = True, vision_patch_bias: bool = False,
                 vision_ln_pre: bool = True, vision_pool: str = "token", vision_proj: bool = True,
                 text_causal: bool = True, text_pool: str = "argmax", text_proj_bias: bool = False,
                 logit_bias: Optional[float] = None):
        """OpenAI's constructor arguments, plus what other CLIP families vary (defaults = OpenAI's):
        ``vision_heads`` (default ``vision_width // 64``), ``activation`` of the MLPs
        (``quick_gelu``, ``gelu`` or ``gelu_tanh``, see :data:`ACTIVATIONS`; ``vision_activation``
        when the image tower differs), the MLP width ratios and LayerNorm epsilons, the image
        tower's options (see :class:`VisionTransformer`), a text tower without causal mask pooled at
        the last position (``text_causal`` False, ``text_pool="last"``; default: causal, pooled at
        the end-of-text token, the highest id), a bias in the text projection, and a learned logit
        bias (SigLIP; ``logit_bias`` is its initial value, None: none)."""
        super().__init__()
        for name in (activation, vision_activation or activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"activation {name!r} is not one of {sorted(ACTIVATIONS)}")
        if text_pool not in ("argmax", "last"):
            raise ValueError(f"text pooling {text_pool!r} is not one of 'argmax', 'last'")
        if not vision_proj and vision_width != embed_dim:
            raise ValueError(f"an image tower without projection needs vision_width == embed_dim, got "
                             f"{vision_width} and {embed_dim}")
        act_layer = ACTIVATIONS[activation]
        self.activation = activation
        self.vision_activation = vision_activation or activation
        self.text_causal, self.text_pool = text_causal, text_pool
        self.embed_dim = embed_dim
        self.image_resolution = image_resolution
        self.vision_width = vision_width
        self.text_width = transformer_width
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.is_vit = not isinstance(vision_layers, (tuple, list))

        if self.is_vit:
            self.visual = VisionTransformer(
                input_resolution=image_resolution, patch_size=vision_patch_size,
                width=vision_width, layers=vision_layers, heads=vision_heads or vision_width // 64,
                output_dim=embed_dim, act_layer=ACTIVATIONS[self.vision_activation], mlp_ratio=vision_mlp_ratio,
                norm_eps=vision_norm_eps, class_token=vision_class_token, patch_bias=vision_patch_bias,
                ln_pre=vision_ln_pre, pool=vision_pool, proj=vision_proj)
        else:
            self.visual = ModifiedResNet(
                layers=vision_layers, output_dim=embed_dim, heads=vision_width * 32 // 64,
                input_resolution=image_resolution, width=vision_width)

        self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads,
                                       causal=text_causal, act_layer=act_layer, mlp_ratio=text_mlp_ratio,
                                       norm_eps=text_norm_eps)
        self.token_embedding = nn.Embedding(vocab_size, transformer_width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, transformer_width))
        self.ln_final = LayerNorm(transformer_width, eps=text_norm_eps)
        self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
        self.text_projection_bias = nn.Parameter(torch.zeros(embed_dim)) if text_proj_bias else None
        self.logit_scale = nn.Parameter(torch.ones([]) * math.log(1 / 0.07))
        self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias))) if logit_bias is not None else None
        self.tokenizer = None  # set by the loader when the text is not OpenAI's BPE (see text_tokenizer)
        self.initialize_parameters()

    def initialize_parameters(self) -> None:
        """Random initialisation following OpenAI's scheme (used only when no weights are loaded)."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        if isinstance(self.visual, ModifiedResNet):
            pool = self.visual.attnpool
            std = pool.c_proj.in_features ** -0.5
            for linear in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
                nn.init.normal_(linear.weight, std=std)
            for stage in (self.visual.layer1, self.visual.layer2, self.visual.layer3,
                          self.visual.layer4):
                for name, param in stage.named_parameters():
                    if name.endswith("bn3.weight"):
                        nn.init.zeros_(param)
        transformers = [self.transformer]
        if self.is_vit:
            transformers.append(self.visual.transformer)
        for transformer in transformers:
            proj_std = transformer.width ** -0.5 * (2 * transformer.layers) ** -0.5
            attn_std = transformer.width ** -0.5
            fc_std = (2 * transformer.width) ** -0.5
            for block in transformer.resblocks:
                nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
                nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
                nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
                nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=self.text_width ** -0.5)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch gradient checkpointing of both transformers (the ResNet encoder has none)."""
        self.transformer.grad_checkpointing = enable
        if self.is_vit:
            self.visual.transformer.grad_checkpointing = enable

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the image encoder's first conv weight (the model's compute dtype)."""
        return self.visual.conv1.weight.dtype

    def encode_image(self, image: torch.Tensor, prompts: Optional[torch.Tensor] = None,
                     hook: Optional[LayerHook] = None) -> torch.Tensor:
        """Image features ``(N, embed_dim)``; ``prompts``/``hook`` as in :class:`VisionTransformer`."""
        if not self.is_vit:
            if prompts is not None or hook is not None:
                raise ValueError("encode_image with vision prompts or a layer hook requires a ViT "
                                 "backbone; this CLIP has a ModifiedResNet image encoder")
            return self.visual(image.to(self.dtype))
        return self.visual(image.to(self.dtype), prompts, hook)

    @property
    def text_tokenizer(self):
        """This model's tokenizer (see :mod:`clip.tokenizer`): OpenAI's BPE unless the loader set
        another (``model.tokenizer``), with the model's context length."""
        if self.tokenizer is None:
            from .tokenizer import BPETextTokenizer
            self.tokenizer = BPETextTokenizer(self.context_length)
        return self.tokenizer

    def pool_indices(self, text: torch.Tensor) -> torch.Tensor:
        """The position of every row of token ids ``text`` (N, L) whose final state is the text
        feature: the end-of-text token (the highest id) or, for ``text_pool="last"``, L - 1."""
        if self.text_pool == "last":
            return torch.full((text.shape[0],), text.shape[1] - 1, dtype=torch.long, device=text.device)
        return text.argmax(dim=-1)

    def text_length_needed(self, text: torch.Tensor) -> int:
        """How many leading positions of ``text`` determine its features: up to the last pooled
        position under a causal mask (later positions are never seen), all of them otherwise."""
        if self.text_causal:
            return int(self.pool_indices(text).max()) + 1
        return text.shape[1]

    def encode_text(self, text: torch.Tensor, hook: Optional[LayerHook] = None) -> torch.Tensor:
        """Text features ``(N, embed_dim)`` for token ids ``text`` (N, L) from the model's tokenizer."""
        return self.encode_text_embeddings(self.token_embedding(text), self.pool_indices(text), hook)

    def encode_text_embeddings(self, x: torch.Tensor, eot_indices: torch.Tensor,
                               hook: Optional[LayerHook] = None) -> torch.Tensor:
        """Text features from token embeddings ``x`` (N, L, text_width), L <= context_length.

        ``eot_indices`` (N,) gives the end-of-text position of every row, whose final hidden
        state is projected into the joint space.
        """
        length = x.shape[1]
        if length > self.context_length:
            raise ValueError(f"text sequence length {length} exceeds the context length "
                             f"{self.context_length}")
        x = x.to(self.dtype) + self.positional_embedding[:length].to(self.dtype)
        x = self.ln_final(self.transformer(x, hook))
        rows = torch.arange(x.shape[0], device=x.device)
        features = x[rows, eot_indices.to(x.device)] @ self.text_projection.to(x.dtype)
        if self.text_projection_bias is not None:
            features = features + self.text_projection_bias.to(x.dtype)
        return features

    def forward(self, image: torch.Tensor,
                text: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Scaled cosine similarities ``(logits_per_image, logits_per_text)``."""
        image_features = F.normalize(self.encode_image(image), dim=-1)
        text_features = F.normalize(self.encode_text(text), dim=-1)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        if self.logit_bias is not None:
            logits_per_image = logits_per_image + self.logit_bias
        return logits_per_image, logits_per_image.t()


def _unwrap_state_dict(checkpoint_dict: dict) -> dict:
    for wrapper_key in ("state_dict", "model"):
        if wrapper_key in checkpoint_dict and isinstance(checkpoint_dict[wrapper_key], dict):
            return checkpoint_dict[wrapper_key]
    return checkpoint_dict


def _count_distinct(state_dict: dict, prefix: str) -> int:
    """Number of distinct ``<prefix><index>.`` sub-module indices among the keys."""
    return len({k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)})


def infer_clip_config(state_dict: dict) -> dict:
    """The :class:`CLIP` constructor arguments that produce ``state_dict``'s architecture.

    Follows OpenAI's rules: widths from weight shapes, layer counts from key indices,
    heads = width // 64 (ResNet attention pool: width * 32 // 64), resolution from the
    positional embedding (ViT: patch size x grid; ResNet: 32 x pooled grid).
    """
    is_vit = "visual.proj" in state_dict
    required = ["text_projection", "positional_embedding", "token_embedding.weight",
                "ln_final.weight"]
    required += (["visual.conv1.weight", "visual.positional_embedding"] if is_vit else
                 ["visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding"])
    missing = [key for key in required if key not in state_dict]
    if missing:
        raise ValueError(f"not an OpenAI CLIP state dict: missing key '{missing[0]}'")

    if is_vit:
        vision_width = state_dict["visual.conv1.weight"].shape[0]
        vision_layers = _count_distinct(state_dict, "visual.transformer.resblocks.")
        vision_patch_size = state_dict["visual.conv1.weight"].shape[-1]
        grid_size = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        image_resolution = vision_patch_size * grid_size
    else:
        vision_layers = tuple(_count_distinct(state_dict, f"visual.layer{stage}.")
                              for stage in (1, 2, 3, 4))
        vision_width = state_dict["visual.layer1.0.conv1.weight"].shape[0]
        num_pool_tokens = state_dict["visual.attnpool.positional_embedding"].shape[0]
        output_width = round((num_pool_tokens - 1) ** 0.5)
        if output_width ** 2 + 1 != num_pool_tokens:
            raise ValueError(f"visual.attnpool.positional_embedding has {num_pool_tokens} rows, "
                             f"expected a square grid plus one")
        vision_patch_size = None
        image_resolution = output_width * 32

    transformer_width = state_dict["ln_final.weight"].shape[0]
    return dict(
        embed_dim=state_dict["text_projection"].shape[1],
        image_resolution=image_resolution,
        vision_layers=vision_layers,
        vision_width=vision_width,
        vision_patch_size=vision_patch_size,
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        transformer_width=transformer_width,
        transformer_heads=transformer_width // 64,
        transformer_layers=_count_distinct(state_dict, "transformer.resblocks."),
    )


def build_model(state_dict: dict) -> CLIP:
    """Build a fp32 :class:`CLIP` in eval mode whose architecture is inferred from OpenAI weights.

    Accepts a plain state dict or one wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``.
    The caller's dict is not modified.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"build_model expects a state dict, got {type(state_dict).__name__}")
    state_dict = dict(_unwrap_state_dict(state_dict))
    for key in _NON_PARAMETER_KEYS:
        state_dict.pop(key, None)
    model = CLIP(**infer_clip_config(state_dict))
    # load_state_dict copies into the fp32 parameters, so fp16 checkpoints are upcast here.
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
