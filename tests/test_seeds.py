"""flashsim.seeds: one stream per (seed, purpose, place), for any integer seed."""

from __future__ import annotations

import numpy as np

from flashsim.seeds import seed_sequence, seeded_rng


def _state(*key) -> tuple[int, ...]:
    return tuple(seed_sequence(*key).generate_state(4).tolist())


def test_different_keys_give_different_streams():
    keys = [
        (1, "minbias_pool", 2), (2, "minbias_pool", 1),  # seed + chunk would collide
        (5, "minbias_pool", 0), (-5, "minbias_pool", 0),  # abs(seed) would collide
        (2**32, 0), (0, 1, 0),  # a plain SeedSequence([...]) collides on these words
        (2**32, "a"), (0, 1, "a"),
        (1, "detector", 0, 0), (1, "detector", 0, 1), (1, "pileup_profile", 0, 0),
        (0,), (-1,), (1,), ("0",), (2**200,), (-(2**200),), (2**200 + 1,),
    ]
    states = [_state(*key) for key in keys]
    assert len(set(states)) == len(keys)


def test_same_key_same_stream():
    assert _state(-7, "detector", 3, 1) == _state(-7, "detector", 3, 1)
    a = seeded_rng(2**100, "x").standard_normal(5)
    np.testing.assert_array_equal(a, seeded_rng(2**100, "x").standard_normal(5))
    assert not np.array_equal(a, seeded_rng(2**100, "y").standard_normal(5))


def test_flash_chunk_streams_take_any_seed():
    from flashsim.runtime import batch_rng, chunk_seed

    def draw(seed, start, stop):
        return batch_rng(chunk_seed(seed, "file-uuid", start, stop), 0).random(3).tolist()

    draws = {s: draw(s, 0, 100) for s in (-1, 1, 2**80)}
    assert len({tuple(d) for d in draws.values()}) == 3
    assert draw(-1, 0, 100) == draws[-1]
    assert draw(1, 100, 200) != draws[1]
