"""Evaluation: loss, top-1 and top-5 accuracy over the whole eval split, exact across processes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.data.transforms import batch_normalizer


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, accelerator) -> dict[str, float]:
    """Per-sample loss and hits gathered with `gather_for_metrics` (no duplicated padding samples)."""
    model.eval()
    normalize = batch_normalizer(loader, accelerator.device)  # uint8 batches are normalized here
    totals = torch.zeros(3, dtype=torch.float64, device=accelerator.device)
    count = torch.zeros((), dtype=torch.int64, device=accelerator.device)
    for images, labels in loader:
        logits = model(normalize(images)).float()
        loss = F.cross_entropy(logits, labels, reduction="none")
        k = min(5, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices
        hits = top == labels[:, None]
        top1, top5 = hits[:, 0], hits.any(dim=-1)
        loss, top1, top5 = accelerator.gather_for_metrics((loss, top1, top5))
        totals += torch.stack([loss.sum(), top1.sum(), top5.sum()]).to(torch.float64)
        count += loss.numel()
    n = max(int(count.item()), 1)
    loss_sum, top1_sum, top5_sum = totals.tolist()
    return {"eval_loss": loss_sum / n, "eval_top1": 100.0 * top1_sum / n, "eval_top5": 100.0 * top5_sum / n}
