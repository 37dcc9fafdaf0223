"""Tests for lmbook.decoding, checked against Hugging Face's ``generate`` and its
logits processors on the same weights (``GPT.to_hf()`` of tiny random GPTs), and,
for speculative decoding, against the target's exact distribution."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2
from torch.testing import assert_close
from transformers.generation import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from lmbook import decoding
from lmbook.decoding import (
    RepetitionPenalty,
    TopP,
    beam_search,
    generate,
    logits_processors,
    speculative_generate,
)
from lmbook.gpt import GPT, GPTConfig

V, L = 101, 32  # vocab_size and block_size of the tiny test models


def make_gpt(seed=0, vocab_size=V, n_layer=2, n_embd=32, std=0.15, block_size=L, **kw):
    """A tiny GPT whose every parameter is random (biases and norms too)."""
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size, block_size, n_layer=n_layer, n_head=2, n_embd=n_embd, **kw
    )
    gpt = GPT(config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in gpt.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * std
            p.copy_(noise + 1.0 if "ln" in name and name.endswith("weight") else noise)
    return gpt.eval()


def tokens(seed, B, T, vocab_size=V):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (B, T), generator=gen)


def hf_of(gpt):
    return gpt.to_hf(attn_implementation="eager").eval()


def hf_kwargs(idx, **kw):
    """generate() arguments that leave nothing to the model's defaults."""
    return dict(attention_mask=torch.ones_like(idx), pad_token_id=0, **kw)


# ------------------------------------------------------------- greedy, sampling
@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("penalty", [1.0, 1.5, 0.8])
def test_greedy_matches_hf_generate(penalty, use_cache):
    gpt = make_gpt(1)
    idx = tokens(1, 2, 5)
    ref = hf_of(gpt).generate(
        idx,
        **hf_kwargs(
            idx, max_new_tokens=20, do_sample=False, repetition_penalty=penalty
        ),
    )
    ours = generate(
        gpt, idx, 20, temperature=0, repetition_penalty=penalty, use_cache=use_cache
    )
    assert torch.equal(ours, ref)


def test_greedy_matches_gpt_generate_past_block_size():
    gpt = make_gpt(2)
    idx = tokens(2, 2, 20)
    ref = gpt.generate(idx, 30, temperature=0)  # 50 tokens > block_size 32
    assert torch.equal(generate(gpt, idx, 30, temperature=0), ref)
    assert torch.equal(generate(gpt, idx, 30, temperature=0, use_cache=False), ref)


def test_greedy_stops_at_eos_like_hf():
    gpt = make_gpt(3)
    idx = tokens(3, 2, 4)
    free = generate(gpt, idx, 15, temperature=0)
    eos = int(free[0, 8])  # a token row 0 produces, so that row stops early
    ref = hf_of(gpt).generate(
        idx,
        attention_mask=torch.ones_like(idx),
        max_new_tokens=15,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=7,
    )
    ours = generate(gpt, idx, 15, temperature=0, eos_token_id=eos, pad_token_id=7)
    assert torch.equal(ours, ref)
    assert (ours[0, 9:] == 7).all()


def test_any_callable_works_like_the_gpt():
    gpt = make_gpt(4)
    idx = tokens(4, 2, 6)
    hf = hf_of(gpt)  # a Hugging Face model: its output has .logits
    ours = generate(gpt, idx, 12, temperature=0, repetition_penalty=1.3)
    assert torch.equal(
        generate(hf, idx, 12, temperature=0, repetition_penalty=1.3), ours
    )
    assert torch.equal(
        generate(
            lambda ids: gpt(ids)[0], idx, 12, temperature=0, repetition_penalty=1.3
        ),
        ours,
    )


def hf_processors(temperature, top_k, top_p, penalty):
    """Hugging Face's processors for these settings, in generate()'s order."""
    out = LogitsProcessorList()
    if penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(penalty))
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k is not None:
        out.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1.0:
        out.append(TopPLogitsWarper(top_p))
    return out


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    temperature=st.sampled_from([0.3, 0.7, 1.0, 1.8]),
    top_k=st.sampled_from([None, 1, 5, 40]),
    top_p=st.sampled_from([None, 0.1, 0.5, 0.9, 1.0]),
    penalty=st.sampled_from([1.0, 1.2, 2.0, 0.7]),
)
def test_processors_match_hf_logits_processor_list(
    seed, temperature, top_k, top_p, penalty
):
    gen = torch.Generator().manual_seed(seed)
    scores = 3 * torch.randn(4, 50, generator=gen)
    input_ids = torch.randint(0, 50, (4, 9), generator=gen)
    ours = logits_processors(temperature, top_k, top_p, penalty)
    ref = hf_processors(temperature, top_k, top_p, penalty)(input_ids, scores)
    assert_close(decoding._process(ours, input_ids, scores), ref)


@pytest.mark.parametrize(
    "temperature,top_k,top_p,penalty",
    [
        (1.0, None, None, 1.0),
        (0.7, 10, None, 1.0),
        (1.3, None, 0.8, 1.0),
        (0.9, 20, 0.9, 1.3),
    ],
)
def test_sampling_distributions_match_hf_generate(temperature, top_k, top_p, penalty):
    """The logits after the processors, at every step of an HF sampled sequence."""
    gpt = make_gpt(5)
    idx = tokens(5, 2, 4)
    torch.manual_seed(0)
    out = hf_of(gpt).generate(
        idx,
        **hf_kwargs(
            idx,
            max_new_tokens=10,
            do_sample=True,
            temperature=temperature,
            top_k=top_k or 0,
            top_p=top_p,
            repetition_penalty=penalty,
            output_scores=True,
            return_dict_in_generate=True,
        ),
    )
    processors = logits_processors(temperature, top_k, top_p, penalty)
    seq = out.sequences
    for step, hf_scores in enumerate(out.scores):
        prefix = seq[:, : idx.size(1) + step]
        logits = gpt(prefix)[0][:, -1]
        ours = decoding._process(processors, prefix, logits)
        assert_close(ours, hf_scores, atol=1e-5, rtol=1e-5)
        chosen = seq[:, idx.size(1) + step]
        assert torch.isfinite(ours.gather(1, chosen[:, None])).all()


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), top_p=st.floats(0.05, 0.99))
def test_top_p_keeps_the_smallest_set_reaching_p(seed, top_p):
    gen = torch.Generator().manual_seed(seed)
    scores = 2 * torch.randn(1, 30, generator=gen, dtype=torch.float64)
    kept = torch.isfinite(TopP(top_p)(None, scores))[0]
    probs = scores.softmax(-1)[0].sort(descending=True).values
    before = probs.cumsum(0) - probs  # mass of the better tokens
    n = int((before < top_p).sum())  # the first n reach top_p, n - 1 do not
    assert int(kept.sum()) == n
    assert probs[:n].sum() >= top_p > probs[: n - 1].sum()


def test_repetition_penalty_by_hand():
    scores = torch.tensor([[2.0, -1.0, 0.5, -3.0]])
    seen = torch.tensor([[0, 1, 0]])  # token 0 twice: penalised once
    out = RepetitionPenalty(2.0)(seen, scores)
    assert_close(out, torch.tensor([[1.0, -2.0, 0.5, -3.0]]))


def test_sampling_is_reproducible_and_cache_independent():
    gpt = make_gpt(6)
    idx = tokens(6, 3, 5)

    def run(use_cache):
        gen = torch.Generator().manual_seed(123)
        return generate(
            gpt, idx, 15, top_k=20, top_p=0.9, generator=gen, use_cache=use_cache
        )

    assert torch.equal(run(True), run(True))
    assert torch.equal(run(True), run(False))


def test_generate_restores_training_mode():
    gpt = make_gpt(7, dropout=0.5).train()
    idx = tokens(7, 1, 4)
    a = generate(gpt, idx, 10, temperature=0)
    assert gpt.training
    assert torch.equal(a, generate(gpt.eval(), idx, 10, temperature=0))


# ---------------------------------------------------------------- beam search
BEAM_CASES = [  # (num_beams, length_penalty, early_stopping)
    (2, 1.0, False),
    (3, 1.0, True),
    (4, 1.0, "never"),
    (3, 0.0, False),
    (4, 2.0, False),
    (2, -1.0, True),
    (3, -1.0, "never"),
    (4, 2.0, "never"),
    (4, 0.5, True),
]


@pytest.mark.parametrize("num_beams,length_penalty,early_stopping", BEAM_CASES)
def test_beam_search_matches_hf_generate(num_beams, length_penalty, early_stopping):
    gpt = make_gpt(8)
    idx = tokens(8, 2, 5)
    counts = generate(gpt, idx, 25, temperature=0)[:, 5:].flatten().bincount()
    eos = int(counts.argmax())  # a frequent token, so that beams end early
    ref = hf_of(gpt).generate(
        idx,
        attention_mask=torch.ones_like(idx),
        max_new_tokens=12,
        num_beams=num_beams,
        do_sample=False,
        early_stopping=early_stopping,
        length_penalty=length_penalty,
        eos_token_id=eos,
        pad_token_id=eos,
        num_return_sequences=num_beams,
        output_scores=True,
        return_dict_in_generate=True,
    )
    ours = beam_search(
        gpt,
        idx,
        12,
        num_beams,
        length_penalty,
        early_stopping,
        eos_token_id=eos,
        num_return_sequences=num_beams,
    )
    assert torch.equal(ours.sequences, ref.sequences)
    assert_close(ours.scores, ref.sequences_scores)
    assert (ours.sequences[:, 5:] == eos).any()  # some beams did end early


def test_beam_search_without_eos_matches_hf_and_beats_greedy():
    gpt = make_gpt(9)
    idx = tokens(9, 1, 4)
    ref = hf_of(gpt).generate(
        idx, **hf_kwargs(idx, max_new_tokens=10, num_beams=5, do_sample=False)
    )
    ours = beam_search(gpt, idx, 10, num_beams=5)
    assert torch.equal(ours.sequences, ref)
    greedy = generate(gpt, idx, 10, temperature=0)
    logp = torch.log_softmax(gpt(greedy[:, :-1])[0], -1)[0, 3:]  # new tokens
    greedy_score = logp.gather(1, greedy[0, 4:, None]).sum() / 10
    assert ours.scores[0] >= greedy_score - 1e-6


@pytest.mark.parametrize("early_stopping", [True, False])
def test_one_beam_is_greedy_search(early_stopping):
    gpt = make_gpt(10)
    idx = tokens(10, 2, 4)
    out = beam_search(gpt, idx, 12, num_beams=1, early_stopping=early_stopping)
    assert torch.equal(out.sequences, generate(gpt, idx, 12, temperature=0))


def test_beam_search_cache_and_callable_agree():
    gpt = make_gpt(11)
    idx = tokens(11, 1, 6)
    cached = beam_search(gpt, idx, 30, num_beams=3, num_return_sequences=3)
    uncached = beam_search(
        gpt, idx, 30, num_beams=3, num_return_sequences=3, use_cache=False
    )  # 36 tokens: past block_size 32
    hf = beam_search(
        lambda ids: gpt(ids[:, -L:])[0], idx, 30, num_beams=3, num_return_sequences=3
    )
    for other in (uncached, hf):
        assert torch.equal(cached.sequences, other.sequences)
        assert_close(cached.scores, other.scores)
    assert cached.sequences.shape == (3, 36)
    assert (cached.scores[:-1] >= cached.scores[1:]).all()  # best first


# ------------------------------------------------------- speculative decoding
@pytest.mark.parametrize("num_draft", [1, 3, 6])
@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_speculative_equals_greedy_target(num_draft, use_cache):
    target = make_gpt(12, n_layer=3, n_embd=48)
    draft = make_gpt(13, n_layer=1, n_embd=16)
    idx = tokens(12, 1, 5)
    out = speculative_generate(
        target, draft, idx, 20, num_draft, temperature=0, use_cache=use_cache
    )
    assert torch.equal(out.sequences, generate(target, idx, 20, temperature=0))
    hf = hf_of(target).generate(
        idx, **hf_kwargs(idx, max_new_tokens=20, do_sample=False)
    )
    assert torch.equal(out.sequences, hf)
    assert 0 <= out.accepted <= out.drafted
    assert out.target_calls * (num_draft + 1) >= 20


def test_a_draft_with_a_short_context_still_gives_the_target_text():
    target = make_gpt(20)
    draft = make_gpt(21, block_size=6)  # its window slides: q changes, p not
    idx = tokens(20, 1, 4)
    out = speculative_generate(target, draft, idx, 28, 3, temperature=0)
    assert torch.equal(out.sequences, generate(target, idx, 28, temperature=0))
    gen = torch.Generator().manual_seed(0)
    out = speculative_generate(target, draft, idx, 28, 3, generator=gen)
    assert out.sequences.shape == (1, 32)


def test_greedy_speculative_with_itself_accepts_everything():
    target = make_gpt(14)
    idx = tokens(14, 1, 5)
    out = speculative_generate(target, target, idx, 20, 4, temperature=0)
    assert out.accepted == out.drafted == 16 and out.target_calls == 4


def test_sampling_speculative_with_itself_accepts_everything():
    target = make_gpt(15)
    gen = torch.Generator().manual_seed(0)
    out = speculative_generate(target, target, tokens(15, 1, 3), 24, 5, generator=gen)
    assert out.accepted == out.drafted == 20


def test_speculative_cache_does_not_change_the_draws():
    target = make_gpt(16, n_layer=3, n_embd=48)
    draft = make_gpt(17, n_layer=1, n_embd=16)
    idx = tokens(16, 1, 4)

    def run(use_cache):
        gen = torch.Generator().manual_seed(7)
        return speculative_generate(
            target,
            draft,
            idx,
            29,
            4,
            temperature=0.8,
            top_k=30,
            generator=gen,
            use_cache=use_cache,
        )

    cached, uncached = run(True), run(False)
    assert torch.equal(cached.sequences, uncached.sequences)
    assert cached[1:] == uncached[1:]
    assert 0 < cached.accepted < cached.drafted  # some rejections happened


class MarkovLM:
    """A tiny language model given by a table: the logits of the next token
    depend on the last one only, so generated text is a Markov chain."""

    def __init__(self, seed, vocab_size, scale=1.5):
        gen = torch.Generator().manual_seed(seed)
        self.table = scale * torch.randn(vocab_size, vocab_size, generator=gen)

    def __call__(self, ids):  # (B, T) -> (B, T, V)
        return self.table[ids]

    def transitions(self, processors):
        """(V, V): the processed next-token distribution after each token."""
        return decoding._process(processors, None, self.table).softmax(-1).double()


def transition_p_value(seq, probs):
    """Chi-square test that the transitions of seq follow probs (Anderson and
    Goodman's test for Markov chains); impossible transitions must not occur."""
    V = probs.size(0)
    counts = torch.zeros(V, V, dtype=torch.float64)
    counts.index_put_(
        (seq[:-1], seq[1:]), torch.ones(len(seq) - 1).double(), accumulate=True
    )
    assert (counts[probs == 0] == 0).all()
    expected = probs * counts.sum(1, keepdim=True)
    cells = probs > 0
    stat = ((counts - expected)[cells] ** 2 / expected[cells]).sum().item()
    df = int(cells.sum()) - V
    return chi2.sf(stat, df)


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(1.0, None, None), (0.7, 3, None), (1.5, None, 0.8)]
)
def test_speculative_samples_follow_the_target_distribution(temperature, top_k, top_p):
    """Monte Carlo over 2,000 tokens of a Markov chain on 4 tokens (chi-square):
    the transitions are the target's, not the draft's."""
    target, draft = MarkovLM(0, 4), MarkovLM(1, 4)
    processors = logits_processors(temperature, top_k, top_p)
    gen = torch.Generator().manual_seed(2024)
    prompt = torch.tensor([[0]])
    kw = dict(temperature=temperature, top_k=top_k, top_p=top_p, generator=gen)
    out = speculative_generate(target, draft, prompt, 2000, num_draft=3, **kw)
    seq = out.sequences[0]
    assert transition_p_value(seq, target.transitions(processors)) > 1e-3
    assert 0.2 < out.accepted / out.drafted < 0.95  # the draft is being corrected
    with pytest.raises(AssertionError):  # the test has power: not the draft's
        assert transition_p_value(seq, draft.transitions(processors)) > 1e-6


# ---------------------------------------------------------------- bad input
GPT_ = make_gpt(0)
IDX = tokens(0, 1, 3)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: generate(3, IDX, 2), TypeError, "model must be an lmbook GPT"),
        (lambda: generate(GPT_, [[1, 2]], 2), TypeError, "idx must be a torch.Tensor"),
        (lambda: generate(GPT_, IDX.int(), 2), TypeError, "idx must hold token ids"),
        (
            lambda: generate(GPT_, IDX[0], 2),
            ValueError,
            r"idx must have shape \(B, T\)",
        ),
        (
            lambda: generate(GPT_, IDX + V, 2),
            ValueError,
            "outside \\[0, vocab_size=101",
        ),
        (lambda: generate(GPT_, IDX, -1), ValueError, "max_new_tokens must be >= 0"),
        (
            lambda: generate(GPT_, IDX, 2, temperature=-1),
            ValueError,
            "temperature must be >= 0.0, got -1",
        ),
        (
            lambda: generate(GPT_, IDX, 2, temperature=1e-40),
            ValueError,
            "at least 1e-30",
        ),
        (lambda: generate(GPT_, IDX, 2, top_k=0), ValueError, "top_k must be >= 1"),
        (lambda: generate(GPT_, IDX, 2, top_p=0.0), ValueError, "top_p must be in"),
        (
            lambda: generate(GPT_, IDX, 2, repetition_penalty=0.0),
            ValueError,
            "repetition_penalty must be > 0",
        ),
        (
            lambda: generate(GPT_, IDX, 2, eos_token_id=V),
            ValueError,
            "eos_token_id must be in \\[0, 100\\], got 101",
        ),
        (
            lambda: generate(GPT_, IDX, 2, generator=0),
            TypeError,
            "generator must be a torch.Generator",
        ),
        (
            lambda: generate(lambda ids: ids.float(), IDX, 2),
            TypeError,
            r"model must return logits of shape \(B, T, V\).*got shape \(1, 3\)",
        ),
        (lambda: beam_search(GPT_, IDX, 0), ValueError, "max_new_tokens must be >= 1"),
        (
            lambda: beam_search(GPT_, IDX, 2, num_beams=0),
            ValueError,
            "num_beams must be >= 1, got 0",
        ),
        (
            lambda: beam_search(GPT_, IDX, 2, length_penalty=math.nan),
            ValueError,
            "length_penalty must be a finite number",
        ),
        (
            lambda: beam_search(GPT_, IDX, 2, early_stopping="yes"),
            ValueError,
            "early_stopping must be one of True, False, 'never', got 'yes'",
        ),
        (
            lambda: beam_search(GPT_, IDX, 2, num_beams=2, num_return_sequences=3),
            ValueError,
            "num_return_sequences must be in \\[1, 2\\], got 3",
        ),
        (
            lambda: speculative_generate(GPT_, "draft", IDX, 2),
            TypeError,
            "draft must be an lmbook GPT or a callable",
        ),
        (
            lambda: speculative_generate(GPT_, GPT_, IDX.repeat(2, 1), 2),
            ValueError,
            r"idx must hold one sequence, shape \(1, T\), got \(2, 3\)",
        ),
        (
            lambda: speculative_generate(GPT_, make_gpt(0, vocab_size=50), IDX % 50, 2),
            ValueError,
            "target vocab_size=101, draft vocab_size=50",
        ),
        (
            lambda: speculative_generate(
                GPT_, lambda ids: torch.zeros(1, ids.size(1), 7), IDX, 3
            ),
            ValueError,
            "target gives 101 logits, draft 7",
        ),
        (
            lambda: speculative_generate(GPT_, GPT_, IDX, 2, num_draft=0),
            ValueError,
            "num_draft must be in \\[1, 31\\], got 0",
        ),
        (
            lambda: speculative_generate(GPT_, GPT_, IDX, 2, num_draft=32),
            ValueError,
            "num_draft must be in \\[1, 31\\], got 32",
        ),
        (
            lambda: speculative_generate(GPT_, GPT_, IDX, 31),
            ValueError,
            "max_new_tokens=31 after 3 tokens of idx would slide the target's "
            "context window \\(block_size=32\\).*use at most 30",
        ),
    ],
)
def test_bad_input_gives_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_outputs_are_normal_tensors_that_autograd_accepts():
    """Decoding runs under torch.inference_mode; its results must not be
    inference tensors, or training on generated text would fail."""
    gpt = make_gpt(18)
    idx = tokens(18, 1, 4)
    outs = [
        generate(gpt, idx, 6, temperature=0),
        beam_search(gpt, idx, 6, num_beams=2).sequences,
        speculative_generate(gpt, make_gpt(19), idx, 6, temperature=0).sequences,
    ]
    for out in outs:
        assert not out.is_inference()
        gpt(out[:, :-1], out[:, 1:])[1].backward()
