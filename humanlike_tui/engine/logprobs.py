"""Answer log-probs with logits only where a label exists (the head in chunks): what training's losses and
the scorecard's likelihood figures both need. It sits below training/ and evaluation/ so that scoring never
depends on training."""

from __future__ import annotations

from humanlike_tui.engine import data as D
from humanlike_tui.engine.planning.estimate import logits_chunk_tokens


# Below this many bytes of fp32 logits for the whole pass (a small vocabulary or few answer tokens),
# keep them for backward: recomputing the head would cost more time than the memory is worth.
LOGITS_KEEP_BYTES = 64 * 2**20


def _chunk_logp(h, targets, weight, bias):
    import torch.nn.functional as F

    logits = F.linear(h, weight, bias).float()
    return -F.cross_entropy(logits, targets, reduction="none")


def token_logprobs(hidden, head, targets):
    """log p(target) per selected token, the head applied in chunks under checkpointing so that at
    most one chunk's fp32 logits (chunk x vocab) exist at once, in forward and in backward. Logits
    under LOGITS_KEEP_BYTES are computed at once and kept: no recompute."""
    import torch
    from torch.utils.checkpoint import checkpoint

    if hidden.shape[0] * head.weight.shape[0] * 4 <= LOGITS_KEEP_BYTES:
        return _chunk_logp(hidden, targets, head.weight, head.bias)
    outs = []
    chunk = logits_chunk_tokens(head.weight.shape[0])
    for i in range(0, hidden.shape[0], chunk):
        h, t = hidden[i:i + chunk], targets[i:i + chunk]
        if torch.is_grad_enabled() and h.requires_grad:
            outs.append(checkpoint(_chunk_logp, h, t, head.weight, head.bias, use_reentrant=False))
        else:
            outs.append(_chunk_logp(h, t, head.weight, head.bias))
    return torch.cat(outs) if outs else hidden.new_zeros(0, dtype=torch.float32)


def answer_logprobs(model, input_ids, labels, attention, device):
    """Per-token log-probs of the labelled tokens and their row, with no logits for masked positions.

    The selection indices are computed on the CPU from the labels, so nothing waits on the device.
    """
    import torch

    tgt = labels[:, 1:]
    sel = (tgt != D.IGNORE).reshape(-1).nonzero().squeeze(1)
    rows = torch.div(sel, tgt.shape[1], rounding_mode="floor")
    targets = tgt.reshape(-1)[sel]
    base = model.get_base_model()
    out = base.get_decoder()(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False)
    hidden = out.last_hidden_state[:, :-1].reshape(-1, out.last_hidden_state.shape[-1])
    hidden = hidden.index_select(0, sel.to(device))
    logp = token_logprobs(hidden, base.get_output_embeddings(), targets.to(device))
    return logp, rows.to(device)


def per_row_sum(values, rows, n_rows: int):
    import torch

    return torch.zeros(n_rows, device=values.device, dtype=values.dtype).index_add_(0, rows, values)
