"""Random training windows from one long stream of token ids.

A language model learns from next-token prediction (Bengio et al., "A Neural
Probabilistic Language Model", 2003): every window of ``block_size + 1`` tokens
gives inputs ``x = w[:-1]`` and targets ``y = w[1:]``. Windows start at uniformly
random offsets, as in nanoGPT's ``get_batch`` and minGPT's char demo. The random
numbers come from the sampler's own seeded ``torch.Generator``, so a checkpoint
can save and restore exactly where the sampling stands.
"""

from __future__ import annotations

import torch

from lmbook.checks import check_int, tname


class TokenBatchSampler:
    """Callable ``sampler(batch_size) -> (x, y)``, each (B, T) int64, y = x shifted.

    `data` is a 1-D integer tensor of token ids (any device; the batches are on
    the same device). `block_size` is T. `seed` seeds the sampler's generator.
    ``state_dict()`` / ``load_state_dict()`` save and restore the generator; this
    is the protocol `lmbook.train.Trainer` uses to resume exactly.
    """

    def __init__(self, data: torch.Tensor, block_size: int, seed: int = 0):
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {tname(data)}")
        if data.dim() != 1:
            raise ValueError(
                f"data must be a 1-D stream of token ids, got shape {tuple(data.shape)}"
            )
        dtype = data.dtype
        if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
            raise TypeError(f"data must hold integer token ids, got dtype {data.dtype}")
        self.block_size = check_int("block_size", block_size, 1)
        if data.numel() < block_size + 1:
            raise ValueError(
                f"data has {data.numel()} tokens but block_size={block_size} needs at "
                f"least block_size + 1 = {block_size + 1}; use a smaller block_size"
            )
        check_int("seed", seed, 0, 2**63 - 1)
        self.data = data
        self.generator = torch.Generator().manual_seed(seed)
        self._offsets = torch.arange(block_size + 1)  # (T+1,)

    def __call__(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw `batch_size` windows; return ``x, y`` of shape (B, T)."""
        check_int("batch_size", batch_size, 1)
        high = self.data.numel() - self.block_size  # last start leaves T+1 tokens
        starts = torch.randint(high, (batch_size,), generator=self.generator)  # (B,)
        idx = (starts[:, None] + self._offsets).to(self.data.device)  # (B, T+1)
        windows = self.data[idx].long()  # (B, T+1)
        return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator's state, a uint8 tensor."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a state from `state_dict`."""
        gen = state.get("generator") if isinstance(state, dict) else None
        if not isinstance(gen, torch.Tensor) or gen.dtype != torch.uint8:
            raise ValueError(
                "state must be {'generator': uint8 tensor} from state_dict(), got "
                f"{state!r:.80}"
            )
        try:
            self.generator.set_state(gen)
        except RuntimeError as err:
            raise ValueError(
                f"state['generator'] is not a generator state: {err}"
            ) from err

    def __repr__(self) -> str:
        return (
            f"TokenBatchSampler(tokens={self.data.numel()}, "
            f"block_size={self.block_size})"
        )
