"""Self-checks of Part V, "Instruction tuning": each expected answer is
recomputed here independently (from the tokenizer and the formula, not the
package's encoder or loss), right answers pass, typical mistakes fail, and the
feedback never reveals the answer."""

from __future__ import annotations

import lmbook.exercises.practice_instruct as pi
from tests.exercise_helpers import exercise_tests

NAMES = ["sft-trained-tokens", "sft-token-mean", "sft-chatml-length"]


def _tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False).input_ids)


def _independent(name: str):
    conv = pi.conversation()
    if name == "sft-trained-tokens":
        tok = pi.house_tokenizer(chat=True)
        answers = [m["content"] for m in conv if m["role"] == "assistant"]
        return sum(_tokens(tok, a) + 1 for a in answers)  # + <|end|>
    if name == "sft-token-mean":
        flat = [x for losses in pi.TOKEN_LOSSES for x in losses]
        return sum(flat) / len(flat)
    if name == "sft-chatml-length":
        tok = pi.house_tokenizer(chat=False)
        text = "".join(
            f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conv
        )
        return _tokens(tok, text)
    raise AssertionError(name)


def _chatml_without_newlines() -> int:
    tok = pi.house_tokenizer(chat=False)
    text = "".join(
        f"<|im_start|>{m['role']}{m['content']}<|im_end|>" for m in pi.conversation()
    )
    return _tokens(tok, text)


ROUNDED = {
    "sft-trained-tokens": [_independent("sft-trained-tokens")],
    "sft-token-mean": [0.875],
    "sft-chatml-length": [_independent("sft-chatml-length")],
}

WRONG = {
    "sft-trained-tokens": [
        _independent("sft-trained-tokens") - 2,  # without the <|end|> tokens
        _independent("sft-trained-tokens") + 2,  # with the assistant role tokens
        _independent("sft-trained-tokens") // 2,  # the first turn only
    ],
    "sft-token-mean": [
        (2.0 + 0.5) / 2,  # the mean of the answers' means
        7.0 / 2,  # summed over tokens, divided by the answers
        (1.0 + 3.0 + 0.5) / 3,  # each distinct loss once
    ],
    "sft-chatml-length": [
        _chatml_without_newlines(),  # the newlines dropped
        _independent("sft-trained-tokens"),  # the trained tokens only
    ],
}


globals().update(exercise_tests(NAMES, ROUNDED, WRONG, _independent))
