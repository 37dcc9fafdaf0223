"""lmbook.rnn against torch.nn's cells and layers (state dicts loaded both ways),
fast vs teaching paths of RNNLM, a tiny overfitting run, and bad input."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook.rnn import GRU, LSTM, RNN, RNNLM, GRUCell, LSTMCell, RNNCell

# (name, lmbook class, torch class, extra constructor kwargs)
CELLS = [
    ("rnn-tanh", RNNCell, nn.RNNCell, {"nonlinearity": "tanh"}),
    ("rnn-relu", RNNCell, nn.RNNCell, {"nonlinearity": "relu"}),
    ("lstm", LSTMCell, nn.LSTMCell, {}),
    ("gru", GRUCell, nn.GRUCell, {}),
]
LAYERS = [
    ("rnn-tanh", RNN, nn.RNN, {"nonlinearity": "tanh"}),
    ("rnn-relu", RNN, nn.RNN, {"nonlinearity": "relu"}),
    ("lstm", LSTM, nn.LSTM, {}),
    ("gru", GRU, nn.GRU, {}),
]
IDS = [c[0] for c in CELLS]


def _state(is_lstm, shape, seed):
    g = torch.Generator().manual_seed(seed + 100)
    h = torch.randn(shape, generator=g)
    return (h, torch.randn(shape, generator=g)) if is_lstm else h


def _layer_pair(ours_cls, torch_cls, kw, L, bias, seed, direction, fused=False):
    torch.manual_seed(seed)
    ours = ours_cls(3, 5, L, bias=bias, fused=fused, **kw)  # input 3, hidden 5
    ref = torch_cls(3, 5, L, bias=bias, batch_first=True, **kw)
    if direction == "torch->ours":
        ours.load_state_dict(ref.state_dict())  # strict: same names and shapes
    else:
        ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("name,ours_cls,torch_cls,kw", CELLS, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("given_state", [False, True])
def test_cells_match_torch(name, ours_cls, torch_cls, kw, bias, seed, given_state):
    torch.manual_seed(seed)
    ref = torch_cls(4, 6, bias=bias, **kw)
    ours = ours_cls(4, 6, bias=bias, **kw)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in ref.state_dict().items()
    ]
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 4)
    state = _state(name == "lstm", (3, 6), seed) if given_state else None
    want, got = ref(x, state), ours(x, state)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name,ours_cls,torch_cls,kw", LAYERS, ids=IDS)
@pytest.mark.parametrize("L", [1, 2, 3])
@pytest.mark.parametrize("direction", ["torch->ours", "ours->torch"])
@pytest.mark.parametrize("given_state", [False, True])
@pytest.mark.parametrize("fused", [False, True])
def test_layers_match_torch(
    name, ours_cls, torch_cls, kw, L, direction, given_state, fused
):
    ours, ref = _layer_pair(ours_cls, torch_cls, kw, L, True, L, direction, fused)
    B, T = 2, 6
    x = torch.randn(B, T, 3)
    state = _state(name == "lstm", (L, B, 5), L) if given_state else None
    out, final = ours(x, state)
    want_out, want_final = ref(x, state)
    assert out.shape == (B, T, 5)
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(final, want_final)  # (h, c) or h, each (L, B, H)


@pytest.mark.parametrize("name,ours_cls,torch_cls,kw", LAYERS, ids=IDS)
@pytest.mark.parametrize("fused", [False, True])
def test_layers_without_bias_and_gradients_match_torch(
    name, ours_cls, torch_cls, kw, fused
):
    ours, ref = _layer_pair(ours_cls, torch_cls, kw, 2, False, 7, "torch->ours", fused)
    x = torch.randn(2, 4, 3)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    state = _state(name == "lstm", (2, 2, 5), 0)
    out, final = ours(x1, state)
    want_out, want_final = ref(x2, state)
    torch.testing.assert_close(out, want_out)
    h, h_ref = (final[0], want_final[0]) if name == "lstm" else (final, want_final)
    (out.pow(2).sum() + h.sum()).backward()
    (want_out.pow(2).sum() + h_ref.sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    for key, p in ref.named_parameters():
        torch.testing.assert_close(getattr(ours, key).grad, p.grad, msg=key)


@pytest.mark.parametrize("name,ours_cls,torch_cls,kw", LAYERS, ids=IDS)
def test_layer_dropout_matches_torch_in_eval_and_acts_in_training(
    name, ours_cls, torch_cls, kw
):
    torch.manual_seed(0)
    ours = ours_cls(3, 5, 2, dropout=0.5, **kw)
    ref = torch_cls(3, 5, 2, dropout=0.5, batch_first=True, **kw).eval()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 3)
    ours.eval()
    for fused in (False, True):
        ours.fused = fused
        torch.testing.assert_close(ours(x)[0], ref(x)[0])
    ours.train()
    for fused in (False, True):  # the fused twin follows the training flag
        ours.fused = fused
        assert not torch.allclose(ours(x)[0], ref(x)[0])


def test_fused_path_follows_dtype_changes():
    torch.manual_seed(0)
    ours = LSTM(3, 4, 2, fused=True).double()
    ref = nn.LSTM(3, 4, 2, batch_first=True).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    out, (h, c) = ours(x)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref(x)[0], rtol=1e-12, atol=1e-12)
    assert "_twin_module" not in dict(ours.named_modules())


@pytest.mark.parametrize("fused", [False, True])
def test_autocast_accepts_lower_precision_input(fused):
    torch.manual_seed(0)
    lstm = LSTM(3, 8, 2, fused=fused)
    x = torch.randn(2, 5, 3)
    want, _ = lstm(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, (h, c) = lstm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, rtol=0.05, atol=0.05)


# --- RNNLM --------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_rnnlm_fast_equals_slow(cell, num_layers, seed):
    torch.manual_seed(seed)
    V = 13
    fast = RNNLM(V, 8, num_layers, cell=cell, dropout=0.2, fast=True).eval()
    slow = RNNLM(V, 8, num_layers, cell=cell, dropout=0.2, fast=False).eval()
    slow.load_state_dict(fast.state_dict())
    idx, targets = torch.randint(0, V, (2, 2, 7))
    logits, loss = fast(idx, targets)
    logits2, loss2 = slow(idx, targets)
    assert logits.shape == (2, 7, V)
    torch.testing.assert_close(logits, logits2)
    torch.testing.assert_close(loss, loss2)
    loss.backward(), loss2.backward()
    for (key, p), p2 in zip(fast.named_parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p2.grad, msg=key)


@pytest.mark.parametrize("cell,torch_cls", [("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_rnnlm_equals_hand_built_torch_model(cell, torch_cls):
    torch.manual_seed(0)
    V, H = 11, 6
    model = RNNLM(V, H, 2, cell=cell)
    emb, head = nn.Embedding(V, H), nn.Linear(H, V)
    rnn = torch_cls(H, H, 2, batch_first=True)
    emb.load_state_dict({"weight": model.embedding.weight})
    rnn.load_state_dict(model.rnn.state_dict())
    head.load_state_dict(model.lm_head.state_dict())
    idx, targets = torch.randint(0, V, (2, 3, 5))
    logits = head(rnn(emb(idx))[0])  # (B, T, V)
    loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    got_logits, got_loss = model(idx, targets)
    torch.testing.assert_close(got_logits, logits)
    torch.testing.assert_close(got_loss, loss)
    assert model(idx)[1] is None


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_rnnlm_overfits_a_tiny_sequence(cell):
    torch.manual_seed(0)
    text = "hello world, hello rnn. " * 2
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(ch) for ch in text])
    idx, targets = ids[:-1].unsqueeze(0), ids[1:].unsqueeze(0)
    model = RNNLM(len(chars), 32, cell=cell)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = model(idx, targets)[1].item()
    for _ in range(30):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = model(idx, targets)[1].item()
    assert first > 2.0  # about ln(12) = 2.48 at initialization
    assert final < 0.5, (first, final)


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="no effect with num_layers=1"):
        LSTM(3, 4, dropout=0.5)


def test_rnnlm_fast_switch():
    model = RNNLM(5, 4, fast=True)
    model.fast = False
    assert model.fast is False and model.rnn.fused is False


# --- bad input ----------------------------------------------------------------------


def test_bad_hidden_size():
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0"):
        LSTM(3, 0)


def test_bad_input_size_type():
    with pytest.raises(TypeError, match="input_size must be an int, got float"):
        RNN(3.0, 4)


def test_bad_num_layers():
    with pytest.raises(ValueError, match="num_layers must be >= 1, got 0"):
        LSTM(3, 4, num_layers=0)


def test_bad_dropout():
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        GRU(3, 4, 2, dropout=1.5)


def test_bad_batch_first():
    with pytest.raises(ValueError, match="batch_first must be True"):
        LSTM(3, 4, batch_first=False)


def test_bad_nonlinearity():
    with pytest.raises(
        ValueError, match="nonlinearity must be one of 'tanh', 'relu', got 'sigmoid'"
    ):
        RNN(3, 4, nonlinearity="sigmoid")


def test_bad_bias_type():
    with pytest.raises(TypeError, match="bias must be a bool, got str"):
        LSTMCell(3, 4, bias="yes")


def test_bad_unsupported_torch_option():
    with pytest.raises(TypeError, match="bidirectional"):
        LSTM(3, 4, bidirectional=True)


def test_bad_layer_input_rank():
    with pytest.raises(
        ValueError, match=r"x must have shape \(\*, \*, 3\), got \(5, 3\)"
    ):
        LSTM(3, 4)(torch.randn(5, 3))


def test_bad_layer_input_width():
    with pytest.raises(ValueError, match=r"x must have shape .* got \(2, 5, 4\)"):
        RNN(3, 4)(torch.randn(2, 5, 4))


def test_bad_layer_input_dtype():
    with pytest.raises(TypeError, match="x must have the weights' dtype torch.float32"):
        GRU(3, 4)(torch.ones(2, 5, 3, dtype=torch.long))


def test_bad_layer_input_double_on_float_weights():
    with pytest.raises(TypeError, match="got torch.float64"):
        LSTM(3, 4, fused=True)(torch.randn(2, 5, 3, dtype=torch.float64))


def test_bad_layer_empty_sequence():
    with pytest.raises(ValueError, match=r"T >= 1, got \(2, 0, 3\)"):
        LSTM(3, 4)(torch.randn(2, 0, 3))


def test_bad_lstm_state_not_a_pair():
    with pytest.raises(TypeError, match=r"state must be a tuple \(h, c\)"):
        LSTM(3, 4)(torch.randn(2, 5, 3), torch.zeros(1, 2, 4))


def test_bad_state_num_layers():
    with pytest.raises(
        ValueError, match=r"h must have shape \(2, 2, 4\), got \(1, 2, 4\)"
    ):
        RNN(3, 4, num_layers=2)(torch.randn(2, 5, 3), torch.zeros(1, 2, 4))


def test_bad_cell_input_shape():
    with pytest.raises(
        ValueError, match=r"x must have shape \(\*, 3\), got \(2, 5, 3\)"
    ):
        RNNCell(3, 4)(torch.randn(2, 5, 3))


def test_bad_cell_state_shape():
    with pytest.raises(ValueError, match=r"c must have shape \(2, 4\), got \(2, 5\)"):
        LSTMCell(3, 4)(torch.randn(2, 3), (torch.zeros(2, 4), torch.zeros(2, 5)))


def test_bad_rnnlm_cell_name():
    with pytest.raises(
        ValueError, match="cell must be one of 'gru', 'lstm', 'rnn', got 'transf"
    ):
        RNNLM(10, 8, cell="transformer")


def test_bad_rnnlm_vocab_size():
    with pytest.raises(ValueError, match="vocab_size must be >= 1, got 0"):
        RNNLM(0, 8)


def test_bad_rnnlm_idx_dtype():
    with pytest.raises(
        TypeError, match="idx must have dtype torch.int64, got torch.fl"
    ):
        RNNLM(10, 8)(torch.zeros(2, 3))


def test_bad_rnnlm_idx_rank():
    with pytest.raises(ValueError, match=r"idx must be \(B, T\) .* got \(5,\)"):
        RNNLM(10, 8)(torch.zeros(5, dtype=torch.long))


def test_bad_rnnlm_idx_out_of_range():
    with pytest.raises(ValueError, match=r"ids in \[0, 10\), got ids in \[0, 10\]"):
        RNNLM(10, 8)(torch.tensor([[0, 10]]))


def test_bad_rnnlm_idx_negative():
    with pytest.raises(ValueError, match=r"got ids in \[-1, 3\]"):
        RNNLM(10, 8)(torch.tensor([[-1, 3]]))


def test_bad_rnnlm_targets_shape():
    idx = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"targets must have idx's shape \(2, 3\)"):
        RNNLM(10, 8)(idx, torch.zeros(2, 4, dtype=torch.long))


def test_bad_rnnlm_targets_dtype():
    idx = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(TypeError, match="targets must have dtype torch.int64"):
        RNNLM(10, 8)(idx, idx.int())


def test_bad_rnnlm_fast_type():
    model = RNNLM(10, 8)
    with pytest.raises(TypeError, match="fast must be a bool, got str"):
        model.fast = "no"


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
def test_bad_rnnlm_empty_batch(shape):
    idx = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ValueError, match=r"idx must be \(B, T\) with B, T >= 1"):
        RNNLM(10, 8)(idx, idx)
    full = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"targets must be \(B, T\) with B, T >= 1"):
        RNNLM(10, 8)(full, idx)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bad_rnnlm_dropout_not_finite(value):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got"):
        RNNLM(10, 8, dropout=value)


def test_rnnlm_model_args_rebuild_the_model():
    model = RNNLM(10, 6, num_layers=2, cell="gru", dropout=0.2, fast=False)
    assert model.model_args == dict(
        vocab_size=10, hidden_size=6, num_layers=2, cell="gru", dropout=0.2, fast=False
    )
    twin = RNNLM(**model.model_args)
    twin.load_state_dict(model.state_dict())  # strict: same names and shapes
    model.eval(), twin.eval()
    idx = torch.randint(0, 10, (2, 5), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(twin(idx)[0], model(idx)[0], rtol=0, atol=0)
