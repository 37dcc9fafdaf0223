"""Instruction tuning: a chat template, loss masks and a verifiable task set.

Supervised fine-tuning (SFT) on conversations trains a language model on the
assistant's turns only: the conversation is rendered to text by a chat template
(Jinja, as in Hugging Face tokenizers), tokenised, and every token that the
assistant did not write gets the label -100, which the cross-entropy ignores.
This module holds the pieces the "Instruction tuning" chapter builds by hand and
checks against transformers and TRL: the template and its special tokens, the
encoding with its mask, the collator, the loss, and a small task set whose
answers a program can check (arithmetic through a calculator tool, counting,
repeating), with a batched chat loop that runs the tool calls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lmbook.checks import check_int, tname

__all__ = [
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TASK_KINDS",
    "add_chat_format",
    "calculator",
    "chat",
    "collate_sft",
    "encode_chat",
    "exact_match",
    "make_tasks",
    "sft_loss",
]

USER, ASSISTANT, TOOL, END, PAD = SPECIAL_TOKENS = (
    "<|user|>",
    "<|assistant|>",
    "<|tool|>",
    "<|end|>",
    "<|pad|>",
)
ROLES = {"user": USER, "assistant": ASSISTANT, "tool": TOOL}

# Each turn is <|role|>content<|end|>. The assistant's content and its <|end|>
# are inside {% generation %} so that return_assistant_tokens_mask marks them:
# the model must learn to write <|end|>, or it never stops.
CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m.role == 'assistant' -%}"
    "<|assistant|>{% generation %}{{ m.content }}<|end|>{% endgeneration %}"
    "{%- elif m.role in ['user', 'tool'] -%}"
    "<|{{ m.role }}|>{{ m.content }}<|end|>"
    "{%- else -%}"
    "{{ raise_exception('unknown role: ' + m.role) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

TASK_KINDS = ("calc", "count", "repeat")
_OPS = {"plus": "+", "minus": "-", "times": "*"}
_CALL = re.compile(r"<calc>(.*?)</calc>")
_EXPR = re.compile(r"\s*(-?\d{1,9})\s*([-+*])\s*(-?\d{1,9})\s*")


def _check_messages(name, messages):
    if not isinstance(messages, (list, tuple)) or not messages:
        raise TypeError(
            f"{name} must be a non-empty list of {{'role', 'content'}} dicts, "
            f"got {tname(messages) if not messages else 'an empty list'}"
        )
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise TypeError(
                f"{name}[{i}] must be a dict with a str 'content', got {m!r:.60}"
            )
        if m.get("role") not in ROLES:
            raise ValueError(
                f"{name}[{i}]['role'] must be one of {sorted(ROLES)}, "
                f"got {m.get('role')!r}"
            )


def _describe(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else tname(x)


def _check_tokenizer(tokenizer, need_chat: bool = True):
    if not callable(getattr(tokenizer, "get_vocab", None)):
        raise TypeError(
            f"tokenizer must be a Hugging Face tokenizer, got {tname(tokenizer)}"
        )
    if not need_chat:
        return
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        raise ValueError(
            f"tokenizer must have the chat tokens {list(SPECIAL_TOKENS)} "
            f"(call add_chat_format first), got one without {missing}"
        )


def add_chat_format(tokenizer, model=None, init_from: str = "\n"):
    """Give tokenizer (and model) the chat format of this module, in place.

    Adds SPECIAL_TOKENS, makes <|end|> the end-of-sequence token and <|pad|>
    the padding token, and sets CHAT_TEMPLATE. With a Hugging Face model, its
    embeddings grow to the new vocabulary and each new row starts as the
    embedding of the last token of init_from (a newline by default): a token
    that the model already predicts at turn boundaries, instead of a random
    vector that the model gives almost no probability. Returns the ids of the
    new tokens.
    """
    if not isinstance(init_from, str) or not init_from:
        raise TypeError(f"init_from must be a non-empty str, got {init_from!r}")
    _check_tokenizer(tokenizer, need_chat=False)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.eos_token, tokenizer.pad_token = END, PAD
    tokenizer.chat_template = CHAT_TEMPLATE
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    if model is not None:
        if not hasattr(model, "resize_token_embeddings"):
            raise TypeError(
                f"model must be a Hugging Face PreTrainedModel, got {tname(model)}"
            )
        source = tokenizer(init_from, add_special_tokens=False).input_ids[-1]
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        emb = model.get_input_embeddings().weight
        with torch.no_grad():
            emb[ids] = emb[source].clone()
            out = model.get_output_embeddings().weight
            if out.data_ptr() != emb.data_ptr():  # untied head
                out[ids] = out[source].clone()
        for cfg in (model.config, model.generation_config):
            cfg.eos_token_id = tokenizer.eos_token_id
            cfg.pad_token_id = tokenizer.pad_token_id
    return ids


def encode_chat(tokenizer, messages) -> dict[str, list[int]]:
    """Token ids of a conversation and its labels, by hand.

    Each turn is its role token, the tokens of its content and <|end|>;
    labels copy the ids of the assistant's content and <|end|> and are -100
    everywhere else. The ids equal tokenizer.apply_chat_template(messages)
    and the labels its return_assistant_tokens_mask, because special tokens
    split the text before byte-level BPE sees it.
    """
    _check_messages("messages", messages)
    _check_tokenizer(tokenizer)
    vocab = tokenizer.get_vocab()
    ids, labels = [], []
    for m in messages:
        content = tokenizer(m["content"], add_special_tokens=False).input_ids
        turn = [*content, vocab[END]]
        ids += [vocab[ROLES[m["role"]]], *turn]
        trained = m["role"] == "assistant"
        labels += [-100, *(turn if trained else [-100] * len(turn))]
    return {"input_ids": ids, "labels": labels}


def collate_sft(examples, pad_token_id: int, ignore_index: int = -100):
    """Right-pad encoded examples into a batch of tensors.

    examples: dicts with equal-length "input_ids" and "labels" lists (from
    encode_chat). Returns input_ids (padded with pad_token_id),
    attention_mask (1 on real tokens) and labels (ignore_index on padding).
    """
    check_int("pad_token_id", pad_token_id, low=0)
    check_int("ignore_index", ignore_index)
    if not isinstance(examples, (list, tuple)) or not examples:
        raise TypeError(
            f"examples must be a non-empty list of dicts, got {tname(examples)}"
        )
    for i, e in enumerate(examples):
        if not isinstance(e, dict) or not {"input_ids", "labels"} <= set(e):
            raise TypeError(
                f"examples[{i}] must be a dict with 'input_ids' and 'labels', "
                f"got {tname(e)}"
            )
        if len(e["input_ids"]) != len(e["labels"]) or not e["input_ids"]:
            raise ValueError(
                f"examples[{i}] must have as many labels as input_ids (> 0), got "
                f"{len(e['labels'])} labels for {len(e['input_ids'])} ids"
            )
    T = max(len(e["input_ids"]) for e in examples)
    B = len(examples)
    ids = torch.full((B, T), pad_token_id, dtype=torch.long)
    labels = torch.full((B, T), ignore_index, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.as_tensor(e["input_ids"])
        labels[i, :n] = torch.as_tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def sft_loss(logits, labels, ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of the labelled tokens, as transformers computes it.

    logits (B, T, V) at position t predict labels[:, t + 1] (labels are not
    shifted, as in Hugging Face). Every labelled token of the batch counts
    once: a long answer weighs more than a short one.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        raise TypeError(f"logits must be a (B, T, V) tensor, got {_describe(logits)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"labels must be a tensor of shape {tuple(logits.shape[:2])}, got "
            f"{_describe(labels)}"
        )
    check_int("ignore_index", ignore_index)
    target = labels[:, 1:]
    if not (target != ignore_index).any():
        raise ValueError("labels must mark at least one token, got none")
    V = logits.size(-1)
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, V).float(),
        target.reshape(-1),
        ignore_index=ignore_index,
    )


def calculator(expression: str) -> str:
    """The calculator tool: "a op b" with integers and op one of + - *.

    Parsed, never evaluated: a model's text is untrusted input.
    """
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, got {tname(expression)}")
    m = _EXPR.fullmatch(expression)
    if m is None:
        raise ValueError(
            f"expression must be 'a op b' with integers of at most 9 digits and "
            f"op one of + - *, got {expression!r:.60}"
        )
    a, op, b = int(m[1]), m[2], int(m[3])
    return str(a + b if op == "+" else a - b if op == "-" else a * b)


def make_tasks(n: int, words: Sequence[str], seed: int = 0, kinds=TASK_KINDS):
    """n conversations whose answers a program can check, in turn by kind.

    calc: "What is 37 plus 58?"; the assistant calls the calculator,
      <calc>37+58</calc>, the tool answers 95 and the assistant says 95.
    count: "How many words: a b c?" (2 to 7 words) -> "3".
    repeat: "Say lord twice." -> "lord lord".
    words: the vocabulary of count and repeat. Each conversation is a list of
    {"role", "content"} messages; the last message is the answer.
    """
    check_int("n", n, low=0)
    check_int("seed", seed)
    if isinstance(words, str) or not isinstance(words, Sequence) or len(words) < 7:
        raise TypeError(
            f"words must be a sequence of at least 7 str, got {tname(words)}"
            f"{'' if isinstance(words, str) else f' of {len(words)}'}"
        )
    if not all(isinstance(w, str) and w.isalpha() for w in words):
        raise ValueError("words must be alphabetic str without spaces")
    kinds = tuple(kinds)
    if not kinds or any(k not in TASK_KINDS for k in kinds):
        raise ValueError(
            f"kinds must be a non-empty subset of {TASK_KINDS}, got {kinds}"
        )
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "calc":
            a, b = rng.randrange(10, 100), rng.randrange(10, 100)
            name = rng.choice(sorted(_OPS))
            expr = f"{a}{_OPS[name]}{b}"
            result = calculator(expr)
            out.append(
                [
                    {"role": "user", "content": f"What is {a} {name} {b}?"},
                    {"role": "assistant", "content": f"<calc>{expr}</calc>"},
                    {"role": "tool", "content": result},
                    {"role": "assistant", "content": result},
                ]
            )
        elif kind == "count":
            ws = rng.sample(list(words), rng.randint(2, 7))
            question = f"How many words: {' '.join(ws)}?"
            out.append(
                [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": str(len(ws))},
                ]
            )
        else:
            w = rng.choice(words)
            out.append(
                [
                    {"role": "user", "content": f"Say {w} twice."},
                    {"role": "assistant", "content": f"{w} {w}"},
                ]
            )
    return out


def _generate(model, tokenizer, conversations, max_new_tokens):
    """Greedy replies to a batch of conversations (left-padded), until <|end|>."""
    texts = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
        for c in conversations
    ]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        batch = tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    new = out[:, batch["input_ids"].size(1) :]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in new]


def chat(model, tokenizer, conversations, max_new_tokens: int = 16, batch_size=64):
    """Answer each conversation, running the calculator when the model calls it.

    model: a Hugging Face causal LM (it needs generate); conversations: lists
    of messages ending with a user turn. The model replies greedily; a reply
    of the form <calc>expression</calc> is a tool call: the calculator's
    result (or "error") is appended as a tool turn and the model replies once
    more. Returns (answers, transcripts): the last reply of each, and the
    conversations with every turn added.
    """
    check_int("max_new_tokens", max_new_tokens, low=1)
    check_int("batch_size", batch_size, low=1)
    if not hasattr(model, "generate"):
        raise TypeError(
            f"model must be a Hugging Face causal LM with generate, got {tname(model)}"
        )
    _check_tokenizer(tokenizer)
    if not isinstance(conversations, (list, tuple)):
        raise TypeError(
            f"conversations must be a list of message lists, got {tname(conversations)}"
        )
    for i, c in enumerate(conversations):
        _check_messages(f"conversations[{i}]", c)
        if c[-1]["role"] == "assistant":
            raise ValueError(
                f"conversations[{i}] must end with a user or tool turn, "
                f"got an assistant turn"
            )
    transcripts = [list(c) for c in conversations]
    pending = list(range(len(transcripts)))
    for _round in range(2):  # the first reply, then one after a tool call
        calls = []
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            replies = _generate(
                model, tokenizer, [transcripts[i] for i in chunk], max_new_tokens
            )
            for i, reply in zip(chunk, replies, strict=True):
                transcripts[i].append({"role": "assistant", "content": reply})
                call = _CALL.fullmatch(reply.strip())
                if call and _round == 0:
                    try:
                        result = calculator(call[1])
                    except ValueError:
                        result = "error"
                    transcripts[i].append({"role": "tool", "content": result})
                    calls.append(i)
        pending = calls
        if not pending:
            break
    answers = [t[-1]["content"] for t in transcripts]
    return answers, transcripts


def exact_match(predictions, references) -> float:
    """The fraction of predictions equal to their reference (spaces stripped)."""
    for name, value in (("predictions", predictions), ("references", references)):
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) for v in value
        ):
            raise TypeError(f"{name} must be a list of str, got {tname(value)}")
    if len(predictions) != len(references) or not references:
        raise ValueError(
            f"predictions and references must have the same length > 0, got "
            f"{len(predictions)} and {len(references)}"
        )
    hits = sum(
        p.strip() == r.strip() for p, r in zip(predictions, references, strict=True)
    )
    return hits / len(references)
