"""The GPU path checked on CPU: packed == padded, chunked head == full softmax, compiled == eager, cache == fresh."""

import pytest
import torch
from prefkit.train import losses as L
from prefkit.train.batching import collate, packing_supported
from prefkit.train.data import Pair
from prefkit.train.forward import ChunkedTokenLogps, SequenceLogps, run
from prefkit.train.refcache import cached, compute, data_fingerprint, model_fingerprint

from tests.support.tiny_model import make_model, make_tokenizer
from tests.train.synth import BAD, GOOD, TOPIC

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    tok = make_tokenizer(GOOD + BAD + TOPIC)
    m = make_model(len(tok), seed=3)
    m.eval()
    return m


def _examples(vocab: int, seed: int = 0) -> list[Pair]:
    g = torch.Generator().manual_seed(seed)
    lengths = [(2, 3, 40), (30, 1, 2), (5, 25, 7), (1, 2, 2), (17, 9, 31)]  # very different lengths

    def ids(n):
        return torch.randint(7, vocab, (n,), generator=g).tolist()

    return [Pair(ids(p), ids(c), ids(r)) for p, c, r in lengths]


def test_packed_equals_padded_logps_and_losses(model):
    assert packing_supported(), "the installed transformers should restrict attention within packed sequences"
    ex = _examples(model.config.vocab_size)
    mod = SequenceLogps(model, chunk=7)
    with torch.no_grad():
        padded = run(mod, collate(ex, packed=False, pad_id=0))
        one_row = run(mod, collate(ex, packed=True, pad_id=0, row_tokens=10**6))  # the varlen/GPU layout
        packed = run(mod, collate(ex, packed=True, pad_id=0))  # rows as long as the longest sequence
    torch.testing.assert_close(one_row, padded, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=0)
    n = len(ex)
    ref = padded + 0.3 * torch.arange(2 * n)  # any fixed reference
    dpo = [L.dpo(v[:n], v[n:], ref[:n], ref[n:]).losses for v in (padded, packed)]
    torch.testing.assert_close(dpo[1], dpo[0], atol=1e-5, rtol=0)
    labels = torch.tensor([i % 2 == 0 for i in range(n)])  # the first of each pair as a KTO completion
    kto = [L.kto(v[:n], ref[:n], labels, v[n:], ref[n:]).losses for v in (padded, packed)]
    torch.testing.assert_close(kto[1], kto[0], atol=1e-5, rtol=0)


def test_padded_logps_equal_the_plain_full_vocabulary_computation(model):
    ex = _examples(model.config.vocab_size)[:2]
    batch = collate(ex, packed=False, pad_id=0)
    with torch.no_grad():
        ours = run(SequenceLogps(model, chunk=4), batch)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()
    logp = logits.log_softmax(-1)[:, :-1].gather(2, batch.input_ids[:, 1:, None]).squeeze(2)
    expected = []
    for s, (p, c) in enumerate([(e.prompt, e.chosen) for e in ex] + [(e.prompt, e.rejected) for e in ex]):
        expected.append(logp[s, len(p) - 1 : len(p) + len(c) - 1].sum())
    torch.testing.assert_close(ours, torch.stack(expected), atol=1e-5, rtol=0)


def test_chunked_head_gradients_equal_full_log_softmax():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(13, 8, generator=g, requires_grad=True)
    w = torch.randn(50, 8, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (13,), generator=g)
    weights = torch.randn(13, generator=g)
    (ChunkedTokenLogps.apply(h, w, t, 4) * weights).sum().backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ((h @ w.t()).log_softmax(-1).gather(1, t[:, None]).squeeze(1) * weights).sum().backward()
    torch.testing.assert_close(gh, h.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gw, w.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # inductor compiles C++ kernels with gcc: ~60 s on a busy 2-core machine
def test_compiled_step_equals_eager():
    model = make_model(120, hidden=16, layers=1, heads=2, seed=1)  # one layer: fewer kernels to compile
    ex = [Pair([8, 9, 10], [11, 12, 2], [13, 2]), Pair([8], [11, 2], [13, 14, 15, 16, 17, 2])]
    batch = collate(ex, packed=True, pad_id=0)
    eager = SequenceLogps(model, chunk=4)
    compiled = torch.compile(SequenceLogps(model, chunk=4), backend="inductor")
    n = len(ex)
    results = []
    for mod in (eager, compiled):
        model.zero_grad(set_to_none=True)
        v = run(mod, batch)
        loss = L.dpo(v[:n], v[n:], v[:n].detach() - 1, v[n:].detach()).losses.mean()
        loss.backward()
        results.append(
            (
                v.detach(),
                loss.detach(),
                model.lm_head.weight.grad.clone(),
                model.model.layers[0].self_attn.q_proj.weight.grad.clone(),
            )
        )
    for a, b in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def test_cached_reference_logps_equal_fresh_ones(model, tmp_path):
    ex = _examples(model.config.vocab_size)
    mod = SequenceLogps(model)
    key = f"{data_fingerprint(ex)}-{model_fingerprint(model, 'tiny')}"
    calls = []

    def make():
        calls.append(1)
        return compute(mod, ex, packed=True, pad_id=0, device="cpu", micro_batch_size=2)

    first, hit1 = cached(key, tmp_path, make)
    again, hit2 = cached(key, tmp_path, make)
    assert (hit1, hit2) == (False, True) and len(calls) == 1
    with torch.no_grad():
        fresh = run(mod, collate(ex, packed=False, pad_id=0))
    n = len(ex)
    torch.testing.assert_close(again[:, 0], fresh[:n], atol=1e-5, rtol=0)
    torch.testing.assert_close(again[:, 1], fresh[n:], atol=1e-5, rtol=0)


def test_cache_key_changes_with_data_and_weights(model):
    ex = _examples(model.config.vocab_size)
    assert data_fingerprint(ex) != data_fingerprint(ex[:-1])
    before = model_fingerprint(model, "tiny")
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
    try:
        assert model_fingerprint(model, "tiny") != before
    finally:
        with torch.no_grad():
            model.lm_head.weight[0, 0] -= 1.0
