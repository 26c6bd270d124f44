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


def bit_pairs(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64[P] row, int64[P] bit) of every set bit of uint64[B, W], sorted by row then bit.

    Byte by byte: the non-zero bytes, then each one's set bits from a 256-entry table
    (twice as fast as unpacking every bit of the non-zero words)."""
    b8 = np.ascontiguousarray(words).view(np.uint8)  # [B, 8W]; little-endian: byte k holds bits 8k..8k+7
    r, c = np.nonzero(b8)
    count, bit = _byte_table_bits(b8[r, c])
    return np.repeat(r, count), np.repeat(c, count) * 8 + bit


def byte_bits(raw: np.ndarray) -> np.ndarray:
    """int64[]: the set bits of the bytes ``raw`` (uint8[], little-endian bit order), ascending."""
    c = np.flatnonzero(raw)
    count, bit = _byte_table_bits(raw[c])
    return np.repeat(c, count) * 8 + bit


def int_bits(chunk: int, width: int) -> np.ndarray:
    """int64[]: the set bits of the Python integer ``chunk`` (< 2**width), ascending."""
    return byte_bits(np.frombuffer(chunk.to_bytes((width + 7) // 8, "little"), dtype=np.uint8))


def to_int(bools: np.ndarray) -> int:
    """bool[n] → a Python integer with bit ``i`` set where ``bools[i]``."""
    return int.from_bytes(np.packbits(bools, bitorder="little").tobytes(), "little")


def _byte_table_bits(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64[k] set bits of each byte of ``v``, int64[sum] those bits within their byte, in order)."""
    count = _BYTE_BITS[v]
    # the k-th bit of byte i is _BYTE_POS[_BYTE_START[v[i]] + k]
    at = np.repeat(_BYTE_START[v] - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))
    return count, _BYTE_POS[at]


_BYTE_BITS = np.array([v.bit_count() for v in range(256)], dtype=np.int64)
_BYTE_START = np.concatenate([[0], np.cumsum(_BYTE_BITS)[:-1]])
_BYTE_POS = np.array([i for v in range(256) for i in range(8) if v >> i & 1], dtype=np.int64)
LOW = np.array([(1 << k) - 1 for k in range(65)], dtype=np.uint64)  # LOW[k]: the k low bits of a word

__all__ = ["LOW", "WORD", "bit_pairs", "byte_bits", "int_bits", "n_words", "pack", "to_indices", "to_int"]
