"""Bit helpers (``targeting.bitset``) against numpy's own unpacking."""

from __future__ import annotations

import numpy as np
import pytest

from targeting.bitset import bit_pairs, byte_bits


@pytest.mark.parametrize(("rows", "words", "density"), [(1, 1, 0.0), (5, 3, 0.5), (100, 7, 0.02), (3, 2, 1.0)])
def test_bit_pairs_are_the_set_bits_in_order(rows: int, words: int, density: float) -> None:
    bits = np.random.default_rng(rows).random((rows, words * 64)) < density
    packed = np.packbits(bits, axis=1, bitorder="little").view(np.uint64).reshape(rows, words)
    r, c = bit_pairs(packed)
    want_r, want_c = np.nonzero(bits)  # by row, then bit
    assert np.array_equal(r, want_r) and np.array_equal(c, want_c)


@pytest.mark.parametrize(("size", "density"), [(0, 0.5), (1, 1.0), (7, 0.3), (1333, 0.05), (64, 0.9)])
def test_byte_bits_are_the_set_bits(size: int, density: float) -> None:
    bits = np.random.default_rng(size).random(size * 8) < density
    raw = np.frombuffer(np.packbits(bits, bitorder="little").tobytes(), dtype=np.uint8)
    assert np.array_equal(byte_bits(raw), np.flatnonzero(bits))
