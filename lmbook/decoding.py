"""Decoding: turning a language model's next-token logits into text.

Greedy search and sampling with logits processors: temperature, top-k (Fan et
al., 2018, "Hierarchical Neural Story Generation"), top-p (Holtzman et al.,
2020, "The Curious Case of Neural Text Degeneration") and CTRL's repetition
penalty (Keskar et al., 2019). Beam search with Hugging Face's length penalty
and early-stopping rules. Speculative decoding with a small draft model
(Leviathan et al., 2023, "Fast Inference from Transformers via Speculative
Decoding"; Chen et al., 2023, "Accelerating Large Language Model Decoding with
Speculative Sampling"). The processors use the interface and the arithmetic of
Hugging Face's ``LogitsProcessor`` classes, so results can be compared with
``generate`` token for token.

Every function takes an lmbook `GPT`, whose KV cache it then passes through the
model's own modules, or any callable that maps ids (B, T) to logits (B, T, V):
a tensor, a ``(logits, ...)`` tuple or an output with ``.logits`` (so a Hugging
Face model works too, without a cache).
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
import torch.nn as nn

from lmbook.checks import check_choice, check_float, check_int, tname
from lmbook.gpt import GPT, KVCache
from lmbook.sampling import check_sampling

__all__ = [
    "Temperature",
    "TopK",
    "TopP",
    "RepetitionPenalty",
    "logits_processors",
    "generate",
    "beam_search",
    "BeamSearchOutput",
    "speculative_generate",
    "SpeculativeOutput",
]


# ------------------------------------------------------------ logits processors
class Temperature:
    """Divide the logits by t > 0: t < 1 sharpens the distribution, t > 1 flattens."""

    def __init__(self, temperature: float):
        self.temperature = check_float("temperature", temperature, low=0, low_open=True)

    def __call__(self, input_ids, scores):
        """scores (B, V) -> (B, V); input_ids (B, T) is not used."""
        return scores / self.temperature


class TopK:
    """Keep the k largest logits (and ties with the k-th); the rest become -inf."""

    def __init__(self, top_k: int):
        self.top_k = check_int("top_k", top_k, low=1)

    def __call__(self, input_ids, scores):
        """scores (B, V) -> (B, V); input_ids (B, T) is not used."""
        k = min(self.top_k, scores.size(-1))
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, float("-inf"))


class TopP:
    """Keep the smallest set of most likely tokens whose probabilities sum to >= p.

    As Hugging Face's ``TopPLogitsWarper``: sort ascending and drop every token
    whose cumulative probability, counted from the least likely, is <= 1 - p; the
    most likely token is always kept.
    """

    def __init__(self, top_p: float):
        self.top_p = check_float("top_p", top_p, 0.0, 1.0, low_open=True)

    def __call__(self, input_ids, scores):
        """scores (B, V) -> (B, V); input_ids (B, T) is not used."""
        sorted_scores, order = torch.sort(scores, dim=-1)  # ascending, (B, V)
        mass_up_to = sorted_scores.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
        drop = mass_up_to <= 1 - self.top_p
        drop[..., -1] = False  # the most likely token stays
        drop = drop.scatter(-1, order, drop)  # back to vocabulary order
        return scores.masked_fill(drop, float("-inf"))


class RepetitionPenalty:
    """CTRL's penalty: lower the logit of every token already in input_ids.

    A positive logit is divided by the penalty and a negative one multiplied by
    it, so penalty > 1 always lowers it; each token is penalised once, however
    often it occurred. The prompt counts too (as in Hugging Face).
    """

    def __init__(self, penalty: float):
        self.penalty = check_float("repetition_penalty", penalty, low=0, low_open=True)

    def __call__(self, input_ids, scores):
        """input_ids (B, T), scores (B, V) -> (B, V)."""
        seen = scores.gather(-1, input_ids)  # (B, T) logits of tokens present
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(-1, input_ids, seen)


def logits_processors(temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0):
    """The processors for these settings, in the order Hugging Face applies them.

    temperature=0 means greedy search: only the repetition penalty is kept
    (temperature, top-k and top-p never change which logit is largest).
    """
    check_sampling(temperature, top_k, top_p, None)
    check_float("repetition_penalty", repetition_penalty, low=0, low_open=True)
    if 0 < temperature < 1e-30:
        raise ValueError(
            f"temperature must be 0 (greedy) or at least 1e-30, got {temperature}: "
            "logits / temperature would overflow"
        )
    processors = []
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenalty(repetition_penalty))
    if temperature == 0:
        return processors
    if temperature != 1.0:
        processors.append(Temperature(temperature))
    if top_k is not None:
        processors.append(TopK(top_k))
    if top_p is not None and top_p < 1.0:
        processors.append(TopP(top_p))
    return processors


def _process(processors, input_ids, scores):
    for processor in processors:
        scores = processor(input_ids, scores)
    return scores


def _draw(scores, greedy, generator):
    """One token per row of processed logits (B, V) -> (B,)."""
    if greedy:
        return scores.argmax(dim=-1)
    probs = torch.softmax(scores, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---------------------------------------------- models: lmbook GPT or callables
class _Runner:
    """Last-position logits of a model for a batch of growing sequences.

    With an lmbook GPT and use_cache, the keys and values of the tokens seen so
    far stay in a `KVCache` and each call feeds only the new tokens; `rewind`
    forgets cached positions (speculative decoding) and `reorder` moves cache
    rows (beam search). Past block_size tokens every call re-encodes the last
    block_size, as `GPT.generate` does. Other callables see every token.
    """

    def __init__(self, model, name, batch_size, max_len, use_cache):
        self.model, self.name, self.cache = model, name, None
        self.block_size = model.config.block_size if isinstance(model, GPT) else None
        if use_cache and self.block_size is not None and max_len > 0:
            w = model.lm_head.weight
            size = min(max_len, self.block_size)
            self.cache = KVCache(model.config, batch_size, size, w.device, w.dtype)

    def logits(self, ids, n=1):
        """ids (B, T) -> float32 logits (B, n, V) of the last n positions."""
        cache, L = self.cache, self.block_size
        if cache is None:
            out = self.model(ids if L is None else ids[:, -L:])
        elif ids.size(1) > cache.max_len:  # past block_size: encode the last L
            cache.length = 0
            out = self.model(ids[:, -L:], kv_cache=cache)
        else:
            assert ids.size(1) - cache.length >= n, "logits of cached positions"
            out = self.model(ids[:, cache.length :], kv_cache=cache)
        if isinstance(out, tuple):
            out = out[0]
        logits = getattr(out, "logits", out)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
            got = tname(out)
            if isinstance(logits, torch.Tensor):
                got = f"shape {tuple(logits.shape)}"
            raise TypeError(
                f"{self.name} must return logits of shape (B, T, V) (a tensor, a "
                f"(logits, ...) tuple or an output with .logits), got {got}"
            )
        return logits[:, -n:].float()

    def rewind(self, length):
        """Forget cached positions from `length` on."""
        if self.cache is not None:
            self.cache.length = min(self.cache.length, length)

    def reorder(self, rows):
        """Row i of the cache becomes row rows[i] (rows: (B,) int64)."""
        if self.cache is not None:
            for t in (self.cache.keys, self.cache.values):  # (n_layer, B, ...)
                t.copy_(t[:, rows])


@contextlib.contextmanager
def _decoding_mode(*models):
    """Eval mode (no dropout) and torch.inference_mode; restores the modes after.

    Tensors made inside are inference tensors: results are cloned on the way
    out, which gives normal tensors that autograd accepts.
    """
    modes = [(m, m.training) for m in models if isinstance(m, nn.Module)]
    for m, _ in modes:
        m.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for m, was_training in modes:
            m.train(was_training)


def _check_inputs(model, idx, max_new_tokens, name="model"):
    """Check the arguments every decoder takes; returns the vocabulary size or None."""
    if not callable(model):
        raise TypeError(
            f"{name} must be an lmbook GPT or a callable returning logits, got "
            f"{tname(model)}"
        )
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"idx must be a torch.Tensor, got {tname(idx)}")
    if idx.dtype != torch.long:
        raise TypeError(f"idx must hold token ids as torch.int64, got {idx.dtype}")
    if idx.dim() != 2 or idx.size(0) < 1 or idx.size(1) < 1:
        raise ValueError(
            f"idx must have shape (B, T) with B >= 1 and T >= 1, got {tuple(idx.shape)}"
        )
    check_int("max_new_tokens", max_new_tokens, low=0)
    V = model.config.vocab_size if isinstance(model, GPT) else None
    if V is not None and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(
            f"idx holds token ids outside [0, vocab_size={V}) of {name}: "
            f"min {int(idx.min())}, max {int(idx.max())}"
        )
    return V


def _check_token(name, token, V):
    if token is not None:
        check_int(name, token, low=0, high=None if V is None else V - 1)


def _check_generator(generator, idx):
    check_sampling(1.0, None, None, generator)
    if generator is not None and generator.device.type != idx.device.type:
        raise ValueError(
            f"generator is on {generator.device} but idx is on {idx.device}; "
            "create it with torch.Generator(device=idx.device)"
        )


# ----------------------------------------------------- greedy search, sampling
def generate(
    model,
    idx,
    max_new_tokens,
    temperature=1.0,
    top_k=None,
    top_p=None,
    repetition_penalty=1.0,
    eos_token_id=None,
    pad_token_id=None,
    generator=None,
    use_cache=True,
):
    """Greedy search (temperature=0) or sampling: idx (B, T) -> (B, T + n).

    Each step processes the last logits with `logits_processors` and takes the
    argmax (greedy) or samples from their softmax. n = max_new_tokens, or fewer
    once every row has produced eos_token_id; a row that has finished continues
    with pad_token_id (default: eos_token_id), as Hugging Face's ``generate``.
    """
    V = _check_inputs(model, idx, max_new_tokens)
    processors = logits_processors(temperature, top_k, top_p, repetition_penalty)
    _check_token("eos_token_id", eos_token_id, V)
    pad = eos_token_id if pad_token_id is None else pad_token_id
    _check_token("pad_token_id", pad, V)
    _check_generator(generator, idx)
    B, T0 = idx.shape
    runner = _Runner(model, "model", B, T0 + max_new_tokens - 1, use_cache)
    finished = torch.zeros(B, dtype=torch.bool, device=idx.device)
    ids = idx
    with _decoding_mode(model):
        for _ in range(max_new_tokens):
            scores = _process(processors, ids, runner.logits(ids)[:, -1])  # (B, V)
            token = _draw(scores, temperature == 0, generator)  # (B,)
            if eos_token_id is not None:
                token = token.masked_fill(finished, pad)
                finished |= token == eos_token_id
            ids = torch.cat([ids, token[:, None]], dim=1)  # (B, T + 1)
            if finished.all():
                break
    return ids.clone()


# ---------------------------------------------------------------- beam search
class BeamSearchOutput(NamedTuple):
    sequences: torch.Tensor  # (B * num_return_sequences, T + n), best first per row
    scores: torch.Tensor  # (B * num_return_sequences,) log p / n_new ** length_penalty


def beam_search(
    model,
    idx,
    max_new_tokens,
    num_beams=4,
    length_penalty=1.0,
    early_stopping=False,
    eos_token_id=None,
    pad_token_id=None,
    num_return_sequences=1,
    use_cache=True,
):
    """Beam search with Hugging Face's rules: idx (B, T) -> `BeamSearchOutput`.

    Keeps the num_beams best running sequences by total log-probability. A
    candidate that ends (eos_token_id, or max_new_tokens reached) among the
    num_beams best of a step is finished, scored log p / n ** length_penalty
    (n: new tokens, eos included; length_penalty > 0 favours longer ones). The
    search stops when num_beams are finished and either early_stopping=True, or
    (False) the best running beam, scored at its current length, cannot beat
    the worst finished one, or ("never") not even at max_new_tokens. Shorter
    sequences are padded with pad_token_id (default: eos_token_id).
    """
    V = _check_inputs(model, idx, max_new_tokens)
    check_int("max_new_tokens", max_new_tokens, low=1)
    check_int("num_beams", num_beams, low=1)
    check_float("length_penalty", length_penalty)
    check_choice("early_stopping", early_stopping, (True, False, "never"))
    check_int("num_return_sequences", num_return_sequences, low=1, high=num_beams)
    _check_token("eos_token_id", eos_token_id, V)
    pad = eos_token_id if pad_token_id is None else pad_token_id
    _check_token("pad_token_id", pad, V)
    if pad is None:
        pad = 0  # every sequence has max_new_tokens new tokens: nothing to pad
    rows = []
    with _decoding_mode(model):
        for b in range(idx.size(0)):
            found = _beam_search_row(
                model,
                idx[b : b + 1],
                max_new_tokens,
                num_beams,
                length_penalty,
                early_stopping,
                eos_token_id,
                use_cache,
            )
            rows += found[:num_return_sequences]
    longest = max(seq.numel() for _, seq in rows)
    out = torch.full((len(rows), longest), pad, dtype=torch.long, device=idx.device)
    for i, (_, seq) in enumerate(rows):
        out[i, : seq.numel()] = seq
    return BeamSearchOutput(out, torch.stack([score for score, _ in rows]))


def _beam_search_row(model, prompt, n_new, num_beams, alpha, early, eos, use_cache):
    """Finished hypotheses [(score, ids (T + n,))], best first, for prompt (1, T)."""
    T0 = prompt.size(1)
    runner = _Runner(model, "model", num_beams, T0 + n_new - 1, use_cache)
    beams = prompt.expand(num_beams, -1)  # (num_beams, T) running sequences
    # all beams start as copies of the prompt: only the first one may expand
    # (-1e9 rather than -inf, as Hugging Face, keeps every score finite)
    beam_scores = torch.full((num_beams,), -1e9, device=prompt.device)
    beam_scores[0] = 0.0
    finished = []
    for step in range(1, n_new + 1):  # step = new tokens after this one
        log_probs = torch.log_softmax(runner.logits(beams)[:, -1], dim=-1)  # (nb, V)
        V = log_probs.size(-1)
        total = (beam_scores[:, None] + log_probs).view(-1)  # (nb * V,)
        # 2 * num_beams candidates: enough to continue num_beams even if half end
        top_scores, top = total.topk(min(2 * num_beams, total.numel()))
        parent, token = top // V, top % V
        if step == n_new:  # the last step: every candidate ends
            ends = torch.ones_like(token, dtype=torch.bool)
        else:
            ends = token == (-1 if eos is None else eos)
        for rank in range(num_beams):  # only the best num_beams may finish
            if ends[rank]:
                seq = torch.cat([beams[parent[rank]], token[rank : rank + 1]])
                finished.append((top_scores[rank] / step**alpha, seq))
        finished.sort(key=lambda pair: pair[0].item(), reverse=True)
        del finished[num_beams:]
        keep = (~ends).nonzero().squeeze(-1)[:num_beams]  # best that continue
        if step == n_new or len(keep) < num_beams:
            break
        runner.reorder(parent[keep])
        beams = torch.cat([beams[parent[keep]], token[keep, None]], dim=1)
        beam_scores = top_scores[keep]
        if len(finished) == num_beams:  # can a running beam still do better?
            if early is True:
                break
            n = n_new if (early == "never" and alpha > 0) else step
            if beam_scores[0] / n**alpha <= finished[-1][0]:
                break
    return finished


# ------------------------------------------------------- speculative decoding
class SpeculativeOutput(NamedTuple):
    sequences: torch.Tensor  # (1, T + max_new_tokens)
    drafted: int  # tokens the draft model proposed
    accepted: int  # proposals the target accepted
    target_calls: int  # forward passes of the target model


def speculative_generate(
    target,
    draft,
    idx,
    max_new_tokens,
    num_draft=4,
    temperature=1.0,
    top_k=None,
    top_p=None,
    generator=None,
    use_cache=True,
):
    """Sample from `target` with proposals from `draft`: idx (1, T) -> output.

    Each round the draft proposes up to num_draft tokens y_i ~ q_i, one at a
    time; the target scores them all in one forward pass, giving p_i. Draft i
    is accepted with probability min(1, p_i(y_i) / q_i(y_i)); at the first
    rejection a token is drawn from max(0, p_i - q_i), renormalised, and the
    round ends; if all are accepted, one more token comes from p. The tokens
    are distributed exactly as when sampling from the target alone (with the
    same temperature / top_k / top_p, applied to p and q); temperature=0 gives
    the target's greedy output. The text must fit the target's context: the
    verifying pass would otherwise see a shorter context than plain decoding.
    """
    V = _check_inputs(target, idx, max_new_tokens, "target")
    V_draft = _check_inputs(draft, idx, max_new_tokens, "draft")
    if V is not None and V_draft is not None and V != V_draft:
        raise ValueError(
            f"draft must share the target's vocabulary: target vocab_size={V}, "
            f"draft vocab_size={V_draft}"
        )
    if idx.size(0) != 1:
        raise ValueError(
            f"idx must hold one sequence, shape (1, T), got {tuple(idx.shape)}"
        )
    sizes = [m.config.block_size for m in (target, draft) if isinstance(m, GPT)]
    # the target scores num_draft + 1 positions in one pass of at most block_size
    check_int("num_draft", num_draft, low=1, high=min(sizes) - 1 if sizes else None)
    n_fed = idx.size(1) + max_new_tokens - 1  # the last token is never fed
    if isinstance(target, GPT) and n_fed > target.config.block_size:
        L = target.config.block_size
        raise ValueError(
            f"max_new_tokens={max_new_tokens} after {idx.size(1)} tokens of idx "
            f"would slide the target's context window (block_size={L}), which "
            f"would change its distribution; use at most {L + 1 - idx.size(1)}"
        )
    processors = logits_processors(temperature, top_k, top_p)
    _check_generator(generator, idx)

    def probs(logits):  # processed logits (n, V) -> distributions (n, V)
        scores = _process(processors, None, logits)
        if temperature == 0:  # greedy: all the probability on the argmax
            return nn.functional.one_hot(scores.argmax(-1), scores.size(-1)).float()
        return torch.softmax(scores, dim=-1)

    def draw(p):  # (V,) -> (1,)
        return torch.multinomial(p, 1, generator=generator)

    total = idx.size(1) + max_new_tokens
    big = _Runner(target, "target", 1, total - 1, use_cache)
    small = _Runner(draft, "draft", 1, total - 1, use_cache)
    ids, drafted, accepted, calls = idx, 0, 0, 0
    with _decoding_mode(target, draft):
        while ids.size(1) < total:
            t = ids.size(1)
            k = min(num_draft, total - t - 1)  # the round adds at most k + 1
            q = []
            for _ in range(k):  # 1. the draft proposes k tokens
                q.append(probs(small.logits(ids)[0]).squeeze(0))  # (V,)
                ids = torch.cat([ids, draw(q[-1])[None]], dim=1)
            p = probs(big.logits(ids, n=k + 1)[0])  # 2. one target pass: (k + 1, V)
            if q and p.size(-1) != q[0].size(-1):
                raise ValueError(
                    f"draft must share the target's vocabulary: target gives "
                    f"{p.size(-1)} logits, draft {q[0].size(-1)}"
                )
            calls, drafted = calls + 1, drafted + k
            n = 0  # 3. accept drafts while r < p(y) / q(y)
            while n < k:
                y = ids[0, t + n]
                r = torch.rand((), generator=generator, device=ids.device)
                if not r * q[n][y] < p[n, y]:
                    break
                n += 1
            if n < k:  # rejected: draw from the residual max(0, p - q)
                residual = (p[n] - q[n]).clamp_min(0)
                # an empty residual means p == q up to rounding: then draw from p
                new = draw(residual if residual.sum() > 0 else p[n])
            else:  # every draft accepted: one more token from the target
                new = draw(p[k])
            accepted += n
            ids = torch.cat([ids[:, : t + n], new[None]], dim=1)
            big.rewind(t + n)
            small.rewind(t + n)
    return SpeculativeOutput(ids.clone(), drafted, accepted, calls)
