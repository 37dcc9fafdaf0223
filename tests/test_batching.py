"""lmbook.batching.TokenBatchSampler: windows are slices of the data, y is x shifted
by one, draws are reproducible and resumable, and bad input is refused."""

from __future__ import annotations

import pytest
import torch

from lmbook.batching import TokenBatchSampler


def _distinct_stream(n: int, seed: int = 0) -> torch.Tensor:
    """A permutation, so that every window's position in the stream is unique."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("block_size", [1, 5, 32])
@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("seed", [0, 3])
def test_windows_are_contiguous_slices_shifted_by_one(block_size, batch_size, seed):
    data = _distinct_stream(200, seed)
    x, y = TokenBatchSampler(data, block_size, seed=seed)(batch_size)
    assert x.shape == y.shape == (batch_size, block_size)
    assert x.dtype == y.dtype == torch.long
    where = {int(v): i for i, v in enumerate(data)}
    for row_x, row_y in zip(x, y, strict=True):
        start = where[int(row_x[0])]
        torch.testing.assert_close(row_x, data[start : start + block_size])
        torch.testing.assert_close(row_y, data[start + 1 : start + block_size + 1])


def test_every_start_is_reachable_including_the_last():
    data = _distinct_stream(10)
    x, _ = TokenBatchSampler(data, block_size=7, seed=0)(400)  # starts 0, 1, 2
    starts = {int((data == row[0]).nonzero()) for row in x}
    assert starts == {0, 1, 2}


def test_shortest_possible_stream_gives_the_whole_stream():
    data = torch.arange(9)
    x, y = TokenBatchSampler(data, block_size=8)(3)
    torch.testing.assert_close(x, data[:-1].expand(3, 8))
    torch.testing.assert_close(y, data[1:].expand(3, 8))


def test_same_seed_same_batches_other_seed_other_batches():
    data = _distinct_stream(500)
    a = [TokenBatchSampler(data, 16, seed=1)(8)[0] for _ in range(2)]
    b = TokenBatchSampler(data, 16, seed=2)(8)[0]
    torch.testing.assert_close(a[0], a[1])
    assert not torch.equal(a[0], b)


def test_state_dict_restores_the_draws():
    sampler = TokenBatchSampler(_distinct_stream(500), 16, seed=5)
    sampler(4)
    state = sampler.state_dict()
    first = [sampler(4) for _ in range(3)]
    sampler.load_state_dict(state)
    again = [sampler(4) for _ in range(3)]
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        torch.testing.assert_close(x1, x2)
        torch.testing.assert_close(y1, y2)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32, torch.int64])
def test_small_integer_dtypes_come_out_as_int64(dtype):
    data = (torch.arange(100) % 50).to(dtype)
    x, y = TokenBatchSampler(data, 4)(2)
    assert x.dtype == y.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])


# --- bad input ---------------------------------------------------------------------


def test_data_not_a_tensor():
    with pytest.raises(TypeError, match="data must be a torch.Tensor, got list"):
        TokenBatchSampler([1, 2, 3], 2)


def test_data_two_dimensional():
    with pytest.raises(ValueError, match=r"1-D stream.*\(4, 25\)"):
        TokenBatchSampler(torch.zeros(4, 25, dtype=torch.long), 2)


def test_data_float_dtype():
    with pytest.raises(TypeError, match="integer token ids.*torch.float32"):
        TokenBatchSampler(torch.zeros(100), 2)


def test_data_bool_dtype():
    with pytest.raises(TypeError, match="integer token ids.*torch.bool"):
        TokenBatchSampler(torch.zeros(100, dtype=torch.bool), 2)


def test_data_shorter_than_a_window():
    with pytest.raises(ValueError, match=r"8 tokens but block_size=8 .* 9"):
        TokenBatchSampler(torch.arange(8), 8)


def test_block_size_zero():
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        TokenBatchSampler(torch.arange(8), 0)


def test_block_size_not_int():
    with pytest.raises(TypeError, match="block_size must be an int, got float"):
        TokenBatchSampler(torch.arange(8), 2.0)


def test_batch_size_zero():
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        TokenBatchSampler(torch.arange(8), 2)(0)


def test_negative_seed():
    with pytest.raises(ValueError, match="seed must be in"):
        TokenBatchSampler(torch.arange(8), 2, seed=-1)


def test_load_state_dict_garbage():
    with pytest.raises(ValueError, match="generator"):
        TokenBatchSampler(torch.arange(8), 2).load_state_dict({"generator": [1, 2]})


def test_load_state_dict_wrong_size():
    state = {"generator": torch.zeros(3, dtype=torch.uint8)}
    with pytest.raises(ValueError, match="not a generator state"):
        TokenBatchSampler(torch.arange(8), 2).load_state_dict(state)
