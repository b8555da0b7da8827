"""Per-sequence completion log-probs (or reward-model scores) from a batch, without a [B, L, V] tensor.

The decoder runs once over all sequences of the micro-batch (chosen and rejected together). Only the
hidden states at completion positions go through the LM head, a chunk of rows at a time, with the
log-softmax in fp32; the backward pass recomputes each chunk's logits instead of keeping them, so the
head's memory is `chunk × vocab`, whatever the batch.
"""

from __future__ import annotations

import torch
from prefkit.train.batching import Batch
from torch import nn


class ChunkedTokenLogps(torch.autograd.Function):
    """log softmax(h·Wᵀ)[target] for rows of h, in chunks. Shapes: hidden (N, H), weight (V, H),
    targets (N,) → (N,) fp32. Gradient: ∂/∂logits = g·(onehot(target) − softmax(logits))."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int):
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk):
            logits = (hidden[s : s + chunk] @ weight.t()).float()
            out[s : s + chunk] = logits.gather(1, targets[s : s + chunk, None]).squeeze(1) - logits.logsumexp(-1)
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, targets = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        for s in range(0, hidden.shape[0], ctx.chunk):
            h, t, g = hidden[s : s + ctx.chunk], targets[s : s + ctx.chunk], grad[s : s + ctx.chunk]
            d = -torch.softmax((h @ weight.t()).float(), dim=-1) * g[:, None]
            d.scatter_add_(1, t[:, None], g[:, None].float())
            d = d.to(hidden.dtype)
            if need_h:
                grad_h[s : s + ctx.chunk] = d @ weight
            if need_w:
                grad_w += (d.t() @ h).float()
        return grad_h, (grad_w.to(weight.dtype) if need_w else None), None, None


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps the model
    return base.get_decoder(), base.get_output_embeddings()


class SequenceLogps(nn.Module):
    """`forward(batch) -> (n_seq,)` summed completion log-probs. A module, so DDP and torch.compile wrap it."""

    def __init__(self, model: nn.Module, chunk: int = 1024):
        super().__init__()
        self.model = model
        self.chunk = chunk
        decoder, head = _decoder_and_head(model)
        self._full_logits = (
            getattr(head, "bias", None) is not None
            or bool(getattr(model.config, "final_logit_softcapping", None))
            or getattr(model.config, "logit_scale", None)
        )

    def forward(self, input_ids, attention_mask, position_ids, src, tgt, seg, n_seq: int):
        decoder, head = _decoder_and_head(self.model)
        hidden = decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, src)
        if self._full_logits:  # heads with a bias, scaling or soft-capping: plain path (still completion-only)
            logits = self.model.get_output_embeddings()(h).float()
            tok = logits.log_softmax(-1).gather(1, tgt[:, None]).squeeze(1)
        else:
            tok = ChunkedTokenLogps.apply(h, head.weight, tgt, self.chunk)
        return torch.zeros(n_seq, dtype=torch.float32, device=tok.device).index_add(0, seg, tok)


class SequenceScores(nn.Module):
    """`forward(batch) -> (n_seq,)` reward-model scores: the classification head at each sequence's last token."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, last, n_seq: int):
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        hidden = base.base_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, last)
        return base.score(h).float().squeeze(-1)


def run(module: nn.Module, batch: Batch) -> torch.Tensor:
    """Call a SequenceLogps/SequenceScores (possibly DDP-wrapped or compiled) on a batch."""
    inner = getattr(module, "module", module)
    inner = getattr(inner, "_orig_mod", inner)
    if isinstance(inner, SequenceScores):
        return module(batch.input_ids, batch.attention_mask, batch.position_ids, batch.last, batch.n_seq)
    return module(
        batch.input_ids, batch.attention_mask, batch.position_ids, batch.src, batch.tgt, batch.seg, batch.n_seq
    )


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
