"""Self-checks for Part V, "Instruction tuning": which tokens SFT trains on, how
the loss averages over them, and the length of a conversation in ChatML.

The answers are computed with the package where it has the code
(`lmbook.instruct.encode_chat` on the house model shakespeare-bpe with the chat
format of `lmbook.instruct.add_chat_format`); the ChatML template is the one of
Qwen and SmolLM, with the assistant's turn in a generation block.
"""

from __future__ import annotations

from lmbook.exercises import register

# make_tasks cycles calc, count, repeat: its first conversation is a calc one,
# which does not depend on the word list (any 7 words will do).
TASK_SEED = 3
ANY_WORDS = ("lord", "king", "sweet", "night", "death", "love", "heaven")
# Two answers of one batch: per-token losses in nats.
TOKEN_LOSSES = ((1.0, 3.0), (0.5,) * 6)
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
CHATML = (
    "{%- for m in messages -%}"
    "{{- '<|im_start|>' + m.role + '\\n' -}}"
    "{%- if m.role == 'assistant' -%}"
    "{% generation %}{{- m.content + '<|im_end|>' -}}{% endgeneration %}"
    "{{- '\\n' -}}"
    "{%- else -%}{{- m.content + '<|im_end|>\\n' -}}{%- endif -%}"
    "{%- endfor -%}"
)


def conversation():
    from lmbook.instruct import make_tasks

    return make_tasks(1, list(ANY_WORDS), seed=TASK_SEED)[0]


def house_tokenizer(chat: bool):
    """The house BPE tokenizer, with lmbook's chat format or with ChatML."""
    from transformers import AutoTokenizer

    from lmbook.instruct import add_chat_format
    from lmbook.pretrained import house_model_path

    tok = AutoTokenizer.from_pretrained(house_model_path("shakespeare-bpe"))
    if chat:
        add_chat_format(tok)
    else:
        tok.add_special_tokens({"additional_special_tokens": list(CHATML_TOKENS)})
        tok.chat_template = CHATML
    return tok


def _trained_tokens() -> int:
    from lmbook.instruct import encode_chat

    enc = encode_chat(house_tokenizer(chat=True), conversation())
    return sum(label != -100 for label in enc["labels"])


def _token_mean() -> float:
    import torch

    from lmbook.instruct import sft_loss

    # logits whose per-token cross-entropy is the given loss: log p = -loss
    T = max(map(len, TOKEN_LOSSES)) + 1
    logits = torch.zeros(len(TOKEN_LOSSES), T, 2, dtype=torch.float64)
    labels = torch.full((len(TOKEN_LOSSES), T), -100)
    for b, losses in enumerate(TOKEN_LOSSES):
        for t, loss in enumerate(losses):
            p = torch.tensor(-loss, dtype=torch.float64).exp()
            logits[b, t] = torch.stack([p.log(), (1 - p).log()])
            labels[b, t + 1] = 0
    return float(sft_loss(logits, labels))


def _chatml_length() -> int:
    tok = house_tokenizer(chat=False)
    ids = tok.apply_chat_template(conversation(), tokenize=True)["input_ids"]
    return len(ids)


register(
    "sft-trained-tokens",
    _trained_tokens,
    "count the tokens of both assistant turns (the tool call and the repeated "
    "result), each with its <|end|>; role tokens, the question and the tool's "
    "result are not trained",
    sig=None,
)
register(
    "sft-token-mean",
    _token_mean,
    "every labelled token of the batch counts once: add all eight losses and "
    "divide by the number of labelled tokens, not by the number of answers",
)
register(
    "sft-chatml-length",
    _chatml_length,
    "render the conversation with the ChatML template and count the ids of "
    "apply_chat_template(..., tokenize=True); each turn adds <|im_start|>, the "
    "role's name, two newlines and <|im_end|>",
    sig=None,
)
