"""Top-k accuracy of a batch of logits."""

__all__ = ["compute_accuracy"]


def compute_accuracy(output, target, topk=(1,)):
    """Percentage of rows of ``output`` whose true class is among the k highest scores.

    Args:
        output: logits or scores, shape (N, C); a tuple/list uses its first element (Dassl).
        target: class indices, shape (N,).
        topk: the k values to report.

    Returns:
        A list with one 1-element float tensor per k, in percent.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    batch_size = target.size(0)
    maxk = max(topk)
    # (N, maxk) -> True where the i-th ranked prediction is the target.
    hits = output.topk(maxk, dim=1, largest=True, sorted=True).indices.eq(target.view(-1, 1))
    return [hits[:, :k].float().sum().view(1) * (100.0 / batch_size) for k in topk]
