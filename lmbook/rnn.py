"""Recurrent networks: RNN, LSTM and GRU cells and layers, and an RNN language model.

Elman, "Finding structure in time" (1990); Hochreiter & Schmidhuber, "Long short-term
memory" (1997), with the forget gate of Gers, Schmidhuber & Cummins (2000); Cho et
al., "Learning phrase representations using RNN encoder-decoder" (2014) for the GRU;
Zaremba, Sutskever & Vinyals, "Recurrent neural network regularization" (2014) for
dropout between layers; Karpathy's char-rnn (2015) for the language model.

The cells are written from the equations, with the gate order and parameter names of
``torch.nn.RNNCell`` / ``LSTMCell`` / ``GRUCell``; the layers use the names of
``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (``weight_ih_l0``, ...), so state dicts load
in either direction. Layers are always batch-first.

Each layer has two paths over the same parameters. The teaching path
(``fused=False``) loops over layers and time steps with `rnn_step`, `lstm_step` and
`gru_step`. The fused path (``fused=True``) runs torch's own kernel: the layer keeps
an unregistered twin ``nn.RNN/LSTM/GRU`` on the "meta" device (no memory, not in the
state dict, untouched by ``.to()``) and calls it with the layer's own parameters
through ``torch.func.functional_call``, so gradients reach them and there is one
source of truth. ``fused`` may be flipped at any time.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.checks import check_bool, check_choice, check_float, check_int, tname

Tensor = torch.Tensor
State = Tensor | tuple[Tensor, Tensor]


def rnn_step(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh") -> Tensor:
    """Elman step ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``; x (B, I), h (B, H)."""
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, H)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_step(x, state, w_ih, w_hh, b_ih=None, b_hh=None) -> tuple[Tensor, Tensor]:
    """LSTM step; x (B, I), state (h, c) each (B, H) -> (h', c').

    Gates in torch's order i, f, g, o: ``c' = f * c + i * g``, ``h' = o * tanh(c')``.
    """
    h, c = state
    gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c + i * g
    return o * torch.tanh(c), c


def gru_step(x, h, w_ih, w_hh, b_ih=None, b_hh=None) -> Tensor:
    """GRU step (gates r, z, n in torch's order); x (B, I), h (B, H) -> h'.

    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
    """
    xr, xz, xn = F.linear(x, w_ih, b_ih).chunk(3, dim=1)  # 3 x (B, H)
    hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=1)  # 3 x (B, H)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def _check_dropout(value: object) -> float:
    return check_float("dropout", value, 0, 1, high_open=True)


def _check_nonlinearity(value: object) -> None:
    check_choice("nonlinearity", value, ("tanh", "relu"))


def _check_tensor(name: str, t: object, shape: tuple, ref: Tensor) -> None:
    """`t` must be a tensor of `shape` (None = any size) with `ref`'s dtype/device."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {tname(t)}")
    sizes = zip(shape, t.shape, strict=False)
    ok = t.dim() == len(shape) and all(s is None or s == n for s, n in sizes)
    if not ok:
        want = ", ".join("*" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape ({want}), got {tuple(t.shape)}")
    mixed = torch.is_autocast_enabled(t.device.type)  # autocast casts as it goes
    if not t.is_floating_point() or (t.dtype != ref.dtype and not mixed):
        raise TypeError(
            f"{name} must have the weights' dtype {ref.dtype}, got {t.dtype}"
        )
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but the weights are on {ref.device}")


class _Recurrent(nn.Module):
    """Shared by cells and layers: sizes, checks, torch's uniform(-1/sqrt(H)) init."""

    gates = 1  # rows of W_ih per hidden unit: 1 (RNN), 4 (LSTM), 3 (GRU)
    has_cell = False  # True for the LSTM, whose state is (h, c)

    def _setup(self, input_size: int, hidden_size: int, bias: bool) -> None:
        check_int("input_size", input_size, 1)
        check_int("hidden_size", hidden_size, 1)
        check_bool("bias", bias)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias

    def _add_weights(self, suffix: str, in_size: int) -> None:
        G, H = self.gates * self.hidden_size, self.hidden_size
        shapes = {"weight_ih": (G, in_size), "weight_hh": (G, H)}
        if self.bias:
            shapes.update(bias_ih=(G,), bias_hh=(G,))
        for name, shape in shapes.items():  # torch's names and order
            self.register_parameter(name + suffix, nn.Parameter(torch.empty(shape)))

    def _weights(self, suffix: str = "") -> tuple:
        """(w_ih, w_hh, b_ih, b_hh) for one layer; biases are None when bias=False."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return tuple(getattr(self, n + suffix, None) for n in names)

    def reset_parameters(self) -> None:
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def _check_state(self, state: object, shape: tuple, ref: Tensor) -> None:
        if self.has_cell:
            if not isinstance(state, tuple | list) or len(state) != 2:
                raise TypeError(
                    f"state must be a tuple (h, c) of two tensors, got {tname(state)}"
                )
            _check_tensor("h", state[0], shape, ref)
            _check_tensor("c", state[1], shape, ref)
        else:
            _check_tensor("h", state, shape, ref)

    def _zeros(self, shape: tuple, ref: Tensor) -> State:
        h = ref.new_zeros(shape)
        return (h, ref.new_zeros(shape)) if self.has_cell else h


class _Cell(_Recurrent):
    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, bias)
        self._add_weights("", input_size)
        self.reset_parameters()

    def forward(self, x: Tensor, state: State | None = None) -> State:
        """x (B, input_size), state (B, H) or (h, c) -> the next state, same shapes."""
        w = self.weight_ih
        _check_tensor("x", x, (None, self.input_size), w)
        shape = (x.shape[0], self.hidden_size)
        if state is None:
            state = self._zeros(shape, x)
        self._check_state(state, shape, w)
        return self._step(x, tuple(state) if self.has_cell else state, self._weights())


class RNNCell(_Cell):
    """Elman cell, ``h' = tanh(W_ih x + b_ih + W_hh h + b_hh)``, as torch.nn.RNNCell."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        _check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def _step(self, x, h, w):
        return rnn_step(x, h, *w, nonlinearity=self.nonlinearity)


class LSTMCell(_Cell):
    """LSTM cell as torch.nn.LSTMCell: ``forward(x, (h, c)) -> (h', c')``."""

    gates, has_cell = 4, True

    def _step(self, x, state, w):
        return lstm_step(x, state, *w)


class GRUCell(_Cell):
    """GRU cell as torch.nn.GRUCell: ``forward(x, h) -> h'``."""

    gates = 3

    def _step(self, x, h, w):
        return gru_step(x, h, *w)


class _Layer(_Recurrent):
    """A stack of `num_layers` recurrent layers over (B, T, input_size) inputs.

    ``fused=False`` runs lmbook's time-step loop, ``fused=True`` torch's kernel on
    the same parameters (see the module docstring). ``dropout`` acts on the outputs
    of every layer but the last, in training mode, as in torch.
    """

    torch_class: type[nn.RNNBase] = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__()
        self._setup(input_size, hidden_size, bias)
        check_int("num_layers", num_layers, 1)
        _check_dropout(dropout)
        check_bool("fused", fused)
        if batch_first is not True:
            raise ValueError(
                f"batch_first must be True (lmbook's layers take (B, T, C)), got "
                f"{batch_first!r}; transpose the input with x.transpose(0, 1) instead"
            )
        self.num_layers, self.dropout, self.fused = num_layers, float(dropout), fused
        for layer in range(num_layers):
            self._add_weights(f"_l{layer}", input_size if layer == 0 else hidden_size)
        self.reset_parameters()
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} acts between recurrent layers, so it has no "
                f"effect with num_layers=1",
                stacklevel=2,
            )

    def _twin(self) -> nn.RNNBase:
        """The parameter-free torch module that runs the fused kernel (built once)."""
        twin = self.__dict__.get("_twin_module")
        if twin is None:
            twin = self.torch_class(
                self.input_size, self.hidden_size, self.num_layers, bias=self.bias,
                batch_first=True, dropout=self.dropout if self.num_layers > 1 else 0.0,
                device="meta", **self._twin_kwargs(),
            )  # fmt: skip
            self.__dict__["_twin_module"] = twin  # not registered as a submodule
        return twin

    def _twin_kwargs(self) -> dict:
        return {}

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """x (B, T, input_size), state (L, B, H) or (h, c) -> out (B, T, H), state.

        The returned state has the same form as `state`: for the LSTM (h_n, c_n),
        else h_n, each (num_layers, B, H). A missing `state` means zeros.
        """
        w = self.weight_ih_l0
        _check_tensor("x", x, (None, None, self.input_size), w)
        B, T, _ = x.shape
        if B == 0 or T == 0:
            raise ValueError(f"x must have B >= 1 and T >= 1, got {tuple(x.shape)}")
        shape = (self.num_layers, B, self.hidden_size)
        if state is not None:
            self._check_state(state, shape, w)
            state = tuple(state) if self.has_cell else state
        if self.fused:
            twin = self._twin()
            twin.training = self.training
            params = dict(self.named_parameters())
            return torch.func.functional_call(twin, params, (x, state))
        if state is None:
            state = self._zeros(shape, x)
        finals = []
        for layer in range(self.num_layers):
            s = tuple(t[layer] for t in state) if self.has_cell else state[layer]
            weights = self._weights(f"_l{layer}")
            outs = []
            for t in range(T):
                s = self._step(x[:, t], s, weights)  # (B, H) or ((B, H), (B, H))
                outs.append(s[0] if self.has_cell else s)
            x = torch.stack(outs, dim=1)  # (B, T, H)
            if layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)
            finals.append(s)
        if self.has_cell:
            h, c = zip(*finals, strict=True)
            return x, (torch.stack(h), torch.stack(c))  # 2 x (L, B, H)
        return x, torch.stack(finals)  # (B, T, H), (L, B, H)


class RNN(_Layer):
    """Elman RNN layers, as torch.nn.RNN(batch_first=True): ``out, h = rnn(x, h0)``."""

    def __init__(
        self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", **kwargs
    ):
        _check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, **kwargs)
        self.nonlinearity = nonlinearity

    def _twin_kwargs(self) -> dict:
        return {"nonlinearity": self.nonlinearity}

    def _step(self, x, h, w):
        return rnn_step(x, h, *w, nonlinearity=self.nonlinearity)


class LSTM(_Layer):
    """LSTM layers, as torch.nn.LSTM(batch_first=True): ``out, (h, c) = lstm(x, s)``."""

    gates, has_cell, torch_class = 4, True, nn.LSTM

    def _step(self, x, state, w):
        return lstm_step(x, state, *w)


class GRU(_Layer):
    """GRU layers, as torch.nn.GRU(batch_first=True): ``out, h = gru(x, h0)``."""

    gates, torch_class = 3, nn.GRU

    def _step(self, x, h, w):
        return gru_step(x, h, *w)


_LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def _check_ids(name: str, t: object, vocab_size: int, ref: Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {tname(t)}")
    if t.dtype != torch.long:
        raise TypeError(f"{name} must have dtype torch.int64, got {t.dtype}")
    if t.dim() != 2 or t.numel() == 0:
        raise ValueError(f"{name} must be (B, T) with B, T >= 1, got {tuple(t.shape)}")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but the model is on {ref.device}")
    lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one device sync, not two
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"{name} must hold token ids in [0, {vocab_size}), got ids in [{lo}, {hi}]"
        )


class RNNLM(nn.Module):
    """Embedding -> recurrent layers -> linear head; a char-rnn style language model.

    ``forward(idx, targets=None)`` maps idx (B, T) int64 to ``(logits, loss)``:
    logits (B, T, vocab_size), loss the mean cross-entropy or None. ``fast=True`` runs
    the recurrence on torch's fused nn.LSTM/GRU/RNN kernel, ``fast=False`` on lmbook's
    own loop (GRU included); both use the same parameters, and ``fast`` may be
    changed at any time. Dropout, when > 0, is applied to the embeddings, between
    recurrent layers and before the head (Zaremba et al., 2014).
    """

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "lstm",
        dropout: float = 0.0,
        fast: bool = True,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 1)
        check_int("hidden_size", hidden_size, 1)
        check_int("num_layers", num_layers, 1)
        check_bool("fast", fast)
        check_choice("cell", cell, sorted(_LAYERS))
        _check_dropout(dropout)  # the others are checked by the layers
        self.vocab_size, self.cell = vocab_size, cell
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        between = dropout if num_layers > 1 else 0.0
        self.rnn = _LAYERS[cell](
            hidden_size, hidden_size, num_layers, dropout=between, fused=fast
        )
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(hidden_size, vocab_size)

    @property
    def model_args(self) -> dict:
        """The constructor's arguments: ``RNNLM(**model.model_args)`` rebuilds it.

        Checkpoints store them (as nanoGPT stores ``model_args``), so that
        `lmbook.checkpoint.load_model` can rebuild the model.
        """
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.embedding.embedding_dim,
            "num_layers": self.rnn.num_layers,
            "cell": self.cell,
            "dropout": self.drop.p,
            "fast": self.fast,
        }

    @property
    def fast(self) -> bool:
        """True: torch's fused recurrent kernel; False: lmbook's time-step loop."""
        return self.rnn.fused

    @fast.setter
    def fast(self, value: bool) -> None:
        check_bool("fast", value)
        self.rnn.fused = value

    def forward(
        self, idx: Tensor, targets: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) int64 -> logits (B, T, vocab_size), loss (scalar) or None."""
        _check_ids("idx", idx, self.vocab_size, self.embedding.weight)
        if targets is not None:
            _check_ids("targets", targets, self.vocab_size, self.embedding.weight)
            if targets.shape != idx.shape:
                raise ValueError(
                    f"targets must have idx's shape {tuple(idx.shape)}, "
                    f"got {tuple(targets.shape)}"
                )
        x = self.drop(self.embedding(idx))  # (B, T, H)
        out, _ = self.rnn(x)  # (B, T, H)
        logits = self.lm_head(self.drop(out))  # (B, T, V)
        loss = None
        if targets is not None:
            flat = logits.view(-1, self.vocab_size)  # (B*T, V)
            loss = F.cross_entropy(flat, targets.reshape(-1))
        return logits, loss
