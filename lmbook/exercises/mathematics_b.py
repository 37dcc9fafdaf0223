"""Self-checks for Part III, Mathematics: attention, recurrent networks, LSTM gates
and positional information.

The expected answers are computed, not typed in: scaled dot-product attention
follows Vaswani et al. (2017), the softmax Jacobian is taken by autograd, the RNN
gradient bound follows Bengio, Simard & Frasconi (1994) and Pascanu, Mikolov &
Bengio (2013), the LSTM cell Hochreiter & Schmidhuber (1997) with the forget gate
of Gers, Schmidhuber & Cummins (2000), and the sinusoidal encoding Vaswani et al.
(2017).
"""

from __future__ import annotations

import math

from lmbook.exercises import register

# Numbers used in the chapters' exercise statements.
ATTENTION_D_K = 64
QK_D_K, QK_STD_Q, QK_STD_K = 32, 2.0, 1.0
SOFTMAX_WEIGHTS = (1.0, 2.0, 5.0)  # the scores are their logarithms
RNN_NORM, RNN_DISTANCE = 0.9, 20
LSTM_PRE = (0.5, 2.0, -1.0, 1.0)  # pre-activations of i, f, g, o (torch's order)
LSTM_C_PREV = 3.0
# scalar LSTM cell (H = I = 1) for d c_t / d h_{t-1}: recurrent weights of i, f, g,
# o (torch's order), all input weights and biases 0
LSTM_W_HH = (1.0, 2.0, -1.0, 1.0)
LSTM_H_PREV, LSTM_C_PREV_GRAD = 0.5, 2.0
PE_D_MODEL, PE_PAIR, PE_OFFSET = 8, 1, 3


def _attention_scale() -> float:
    return 1.0 / math.sqrt(ATTENTION_D_K)


def _qk_variance() -> float:
    # q.k = sum_i q_i k_i with independent zero-mean terms of variance s_q^2 s_k^2
    return QK_D_K * QK_STD_Q**2 * QK_STD_K**2


def _softmax_jacobian() -> list[list[float]]:
    import torch

    s = torch.tensor(SOFTMAX_WEIGHTS, dtype=torch.float64).log()
    jac = torch.autograd.functional.jacobian(lambda z: torch.softmax(z, -1), s)
    return jac.tolist()  # jac[i][j] = d a_i / d s_j


def _rnn_gradient_bound() -> float:
    return RNN_NORM**RNN_DISTANCE


def _lstm_forget_gate() -> float:
    import torch

    i, f, g, o = torch.tensor(LSTM_PRE, dtype=torch.float64)
    return float(torch.sigmoid(f) * LSTM_C_PREV + torch.sigmoid(i) * torch.tanh(g))


def _lstm_dc_dh() -> float:
    # c_t = f c_{t-1} + i g, and i, f, g depend on h_{t-1} through W_hh
    w_i, w_f, w_g, _ = LSTM_W_HH
    i = 1 / (1 + math.exp(-w_i * LSTM_H_PREV))
    f = 1 / (1 + math.exp(-w_f * LSTM_H_PREV))
    g = math.tanh(w_g * LSTM_H_PREV)
    return (
        LSTM_C_PREV_GRAD * f * (1 - f) * w_f
        + g * i * (1 - i) * w_i
        + i * (1 - g**2) * w_g
    )


def _pe_rotation_angle() -> float:
    omega = 1.0 / 10000 ** (2 * PE_PAIR / PE_D_MODEL)
    return PE_OFFSET * omega


register(
    "attention-scale",
    _attention_scale,
    "the scores QK^T are divided by the square root of d_k before the softmax; "
    "give the factor that multiplies them, as a number.",
)
register(
    "qk-variance",
    _qk_variance,
    "q.k is a sum of d_k independent products q_i k_i; the variance of one product "
    "of independent zero-mean variables is Var(q_i) Var(k_i), and variances of "
    "independent terms add.",
)
register(
    "softmax-jacobian",
    _softmax_jacobian,
    "give a 3 x 3 nested list J with J[i][j] = d a_i / d s_j. Here a = (1, 2, 5) "
    "/ 8; the diagonal entries are a_i (1 - a_i) and the others -a_i a_j.",
)
register(
    "rnn-gradient-bound",
    _rnn_gradient_bound,
    "each step back in time multiplies by diag(1 - h^2) W_hh, whose norm is at "
    "most the norm of W_hh; multiply that bound once per step.",
    sig=2,  # the solution gives 0.12
)
register(
    "lstm-forget-gate",
    _lstm_forget_gate,
    "c' = f * c + i * g with f = sigmoid(a_f), i = sigmoid(a_i), g = tanh(a_g); the "
    "output gate does not enter c'.",
)
register(
    "lstm-dc-dh",
    _lstm_dc_dh,
    "c_t = f c_{t-1} + i g; differentiate each gate through its pre-activation "
    "w h_{t-1}: d f / d h = f (1 - f) w_f, d i / d h = i (1 - i) w_i, d g / d h = "
    "(1 - g^2) w_g, and c_{t-1} is held fixed.",
)
register(
    "pe-rotation-angle",
    _pe_rotation_angle,
    "pair i turns at frequency omega_i = 1 / 10000^(2i/d); moving k positions turns "
    "it by the angle k * omega_i (in radians).",
)
