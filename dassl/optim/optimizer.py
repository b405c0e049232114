"""Build a torch optimizer from the ``cfg.OPTIM`` node (Dassl semantics)."""
import warnings

import torch
import torch.nn as nn

__all__ = ["AVAILABLE_OPTIMIZERS", "build_optimizer"]

AVAILABLE_OPTIMIZERS = ("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")


def _staged_param_groups(model, new_layers, lr, base_lr_mult):
    """Split ``model``'s direct children into "base" (LR * mult) and "new" (LR) parameter groups."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            "OPTIM.STAGED_LR=True needs an nn.Module to split into layers, "
            f"but build_optimizer got {type(model).__name__}"
        )
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    new_layers = list(new_layers)
    if not new_layers:
        warnings.warn("OPTIM.STAGED_LR=True but OPTIM.NEW_LAYERS is empty: every layer gets the base LR")

    child_names = [name for name, _ in model.named_children()]
    unknown = [name for name in new_layers if name not in child_names]
    if unknown:
        raise ValueError(
            f"OPTIM.NEW_LAYERS names {unknown}, which are not child modules of "
            f"{type(model).__name__} (children: {child_names})"
        )

    base_params, new_params = [], []
    for name, module in model.named_children():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [{"params": base_params, "lr": lr * base_lr_mult}, {"params": new_params}]


def build_optimizer(model_or_params, optim_cfg, param_groups=None):
    """Create the optimizer named by ``optim_cfg.NAME``.

    Args:
        model_or_params: an ``nn.Module`` (all its parameters are optimised), an iterable of
            parameters, or a list of param-group dicts.
        optim_cfg: the ``cfg.OPTIM`` node (NAME, LR, WEIGHT_DECAY, MOMENTUM, SGD_DAMPNING,
            SGD_NESTEROV, RMSPROP_ALPHA, ADAM_BETA1/2, STAGED_LR, NEW_LAYERS, BASE_LR_MULT).
        param_groups: when given, optimised instead of ``model_or_params`` (STAGED_LR is then
            ignored with a warning, as in Dassl).

    With STAGED_LR the model's direct children listed in NEW_LAYERS train at LR and every other
    child at LR * BASE_LR_MULT. Unknown optimizer names raise ``ValueError``.
    """
    name = optim_cfg.NAME
    if name not in AVAILABLE_OPTIMIZERS:
        raise ValueError(
            f"OPTIM.NAME must be one of {list(AVAILABLE_OPTIMIZERS)}, but got {name!r}"
        )
    lr = optim_cfg.LR
    weight_decay = optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)

    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            warnings.warn(
                "OPTIM.STAGED_LR is ignored because explicit param_groups were given; "
                "put the staged learning rates into the param_groups instead"
            )
        params = param_groups
    elif optim_cfg.STAGED_LR:
        params = _staged_param_groups(
            model_or_params, optim_cfg.NEW_LAYERS, lr, optim_cfg.BASE_LR_MULT
        )
    elif isinstance(model_or_params, nn.Module):
        params = model_or_params.parameters()
    else:
        params = model_or_params

    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            params, lr=lr, weight_decay=weight_decay, betas=betas, amsgrad=(name == "amsgrad")
        )
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=weight_decay,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    if name == "radam":
        # Dassl's RAdam shrinks the weights by lr * weight_decay directly (decoupled decay) and
        # falls back to an SGD-with-momentum step while the variance estimate is unreliable;
        # torch's RAdam with decoupled_weight_decay=True follows the same update rule.
        return torch.optim.RAdam(
            params, lr=lr, weight_decay=weight_decay, betas=betas, decoupled_weight_decay=True
        )
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
