"""npkit.rng.seeded: reproducible draws inside, the caller's random state untouched outside."""

import torch

from npkit.rng import seeded


def test_seeded_blocks_draw_the_same_and_leave_the_global_state_as_it_was():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with seeded(7):
        first = torch.randn(5)
    assert torch.equal(torch.get_rng_state(), before)  # restored: the caller's next draw is unchanged
    with seeded(7):
        second = torch.randn(5)
    with seeded(8):
        other = torch.randn(5)
    assert torch.equal(first, second) and not torch.equal(first, other)
