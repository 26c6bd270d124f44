"""Fixed-width bitsets as ``uint64`` numpy arrays (bit i of word i // 64, little-endian)."""

from __future__ import annotations

import numpy as np

WORD = 64


def n_words(n_bits: int) -> int:
    return max(1, (n_bits + WORD - 1) // WORD)


def pack(bools: np.ndarray) -> np.ndarray:
    """bool[n] → uint64[n_words(n)]; bool[r, n] → uint64[r, n_words(n)]."""
    width = n_words(bools.shape[-1]) * WORD
    if bools.shape[-1] != width:
        pad = [(0, 0)] * (bools.ndim - 1) + [(0, width - bools.shape[-1])]
        bools = np.pad(bools, pad)
    return np.packbits(bools, axis=-1, bitorder="little").view(np.uint64)


def to_indices(words: np.ndarray) -> np.ndarray:
    """Indices of the set bits of uint64[n_words], ascending, as int64.

    Unpacks only the non-zero words, so sparse sets cost little.
    """
    nz = np.flatnonzero(words)
    if nz.size == 0:
        return nz
    if nz.size * 4 > words.size:  # dense: one pass over all the bits is cheaper
        return np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little"))
    bits = np.unpackbits(words[nz].view(np.uint8), bitorder="little").reshape(nz.size, WORD)
    rows, cols = np.nonzero(bits)
    return nz[rows] * WORD + cols
