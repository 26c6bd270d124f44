"""The user-side index: shards of users, clustered by (geo leaf, gender, age), plus tag bitmaps.

Layout of one shard (a contiguous ``user_id`` range, the unit of parallel work):

* rows are sorted by the *cell* ``(geo_leaf * 3 + gender) * AGE_DOMAIN + age`` (the
  taxonomy's domain indices, 0 = unknown). ``offsets: int64[n_cells + 1]`` gives each
  cell's row range, so any geo/gender/age constraint is a union of row *ranges*: no
  per-user bits at all for those three dimensions, and a count without tags is a sum
  of cell counts. (Measured against per-value bitmaps and a bit-sliced age column in
  ``benchmarks/bench_reach.py``.)
* ``tags``: one pyroaring ``BitMap`` of rows per tag (compressed: rare tags are array
  containers, common ones 8 KiB bitmap containers per 65536 rows).
* ``di``: daily impressions, rounded to whole impressions (unknown = the population's
  mean), *bit-sliced*: ``di[k]`` is the BitMap of rows whose bit ``k`` is set, so the sum
  over any selection X is ``Σ_k 2**k * |X ∩ di[k]|`` (a few cardinality counts, no
  materialised rows; ~1 byte per user instead of 4 for a float32 column);
  ``cell_di: float64[n_cells]`` the per-cell sums (for selections that are whole cells).
* ``ids: S{w}[n]`` user ids in row order and ``sorter: int32[n]`` with
  ``ids[sorter]`` ascending (lookup by binary search; export by gather).

Saved as a directory (``manifest.json`` + one folder of ``.npy`` files and serialized
bitmaps per shard) and memory-mapped back: reopening costs the bitmap deserialisation only.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from ..errors import TargetingError
from ..progress import Progress
from ..spec import Clause, Spec
from ..taxonomy import AGE_DOMAIN, GENDERS, Taxonomy
from .load import Columns, profile_files, read_profiles

log = logging.getLogger("targeting.audience")
FORMAT = 2
SHARD_ROWS = 1 << 23
N_GENDER = 3
MAX_DAILY = (1 << 20) - 1  # daily impressions are capped here (20 bit-slices at most)
FENCE = 512  # lookup fence stride (n/512 ids in memory per shard)
CACHE_SIZE = 1024  # memoised specs and clauses (a dict cleared when full: no unbounded growth)


def bitmap_of(a: np.ndarray) -> BitMap:
    """BitMap from a sorted integer array, via the fast array.array path."""
    import array

    buf = array.array("I")
    buf.frombytes(np.ascontiguousarray(a, dtype=np.uint32).tobytes())
    return BitMap(buf)


def _stable_order(code: np.ndarray) -> np.ndarray:
    """``argsort(code, kind="stable")`` for codes < 2**32, as two 16-bit radix passes
    (numpy radix-sorts 16-bit keys; a 32-bit stable argsort is a 4x slower merge sort)."""
    first = np.argsort((code & 0xFFFF).astype(np.uint16), kind="stable")
    return first[np.argsort((code[first] >> 16).astype(np.uint16), kind="stable")]


def rows_of(bm: BitMap) -> np.ndarray:
    """uint32[len(bm)] rows of a bitmap, ascending."""
    return np.frombuffer(bm.to_array(), dtype=np.uint32)


@dataclass
class Shard:
    """One user-id range. See the module docstring for the arrays' meaning."""

    offsets: np.ndarray
    cell_di: np.ndarray
    tags: list[BitMap]
    di: list[BitMap]
    ids: np.ndarray
    sorter: np.ndarray
    first_id: bytes
    last_id: bytes

    @property
    def n(self) -> int:
        return int(self.offsets[-1])

    @functools.cached_property
    def fence(self) -> np.ndarray:
        """``S{w}``: every FENCE-th id in ascending order (kept in memory for lookups)."""
        return np.ascontiguousarray(self.ids[np.asarray(self.sorter[::FENCE], dtype=np.intp)])

    @functools.cached_property
    def sample(self) -> BitMap:
        """Every 8th row (dense enough to be stored as bitset containers, so intersecting
        with it costs one probe per selected row): rows are in cell order, so this is a systematic sample
        stratified by geo, gender and age, for estimating sums over large selections."""
        return bitmap_of(np.arange(0, self.n, 8))

    def nbytes(self) -> dict[str, int]:
        """Bytes per part: the reach index (offsets, cell sums, tags, di) and the id columns."""
        return {"cells": self.offsets.nbytes + self.cell_di.nbytes, "tags": _roaring_bytes(self.tags),
                "daily_impressions": _roaring_bytes(self.di), "ids": self.ids.nbytes + self.sorter.nbytes}

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` (``S`` array) in this shard, -1 where absent; same length as keys."""
        if self.n == 0 or len(keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        keys = keys.astype(self.ids.dtype) if keys.dtype.itemsize <= self.ids.dtype.itemsize else keys
        pos = np.searchsorted(self.ids, keys, sorter=np.asarray(self.sorter, dtype=np.intp))
        pos = np.minimum(pos, self.n - 1)
        rows = self.sorter[pos].astype(np.int64)
        hit = self.ids[rows] == keys
        return np.where(hit, rows, -1)

    def cell_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.offsets, rows, side="right") - 1

    # ------------------------------------------------------------- building
    @classmethod
    def build(cls, c: Columns, lo: int, hi: int, tx: Taxonomy, di_fill: float) -> Shard:
        n = hi - lo
        n_cells = tx.geo_domain * N_GENDER * AGE_DOMAIN
        code = (c.leaf[lo:hi].astype(np.int32) * N_GENDER + c.gender[lo:hi]) * AGE_DOMAIN + c.age[lo:hi]
        order = _stable_order(code)
        counts = np.bincount(code, minlength=n_cells)
        offsets = np.zeros(n_cells + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        inv = np.empty(n, dtype=np.int64)
        inv[order] = np.arange(n)
        di_raw = c.di[lo:hi][order]
        di_int = np.rint(np.where(np.isnan(di_raw), di_fill, di_raw)).clip(0, MAX_DAILY).astype(np.int64)
        cell_di = np.bincount(code[order], weights=di_int.astype(np.float64), minlength=n_cells)
        di = [bitmap_of(np.flatnonzero((di_int >> k) & 1)) for k in range(int(di_int.max(initial=0)).bit_length())]
        a, b = np.searchsorted(c.tag_rows, [lo, hi])  # tag pairs are grouped by row
        trows = inv[c.tag_rows[a:b] - lo]
        tcodes = c.tag_codes[a:b]
        n_tags = len(tx.tag_ids)
        dense = np.zeros((n_tags, n), dtype=bool)
        dense.ravel()[tcodes.astype(np.int64) * n + trows] = True
        tags = [bitmap_of(np.flatnonzero(dense[t])) for t in range(n_tags)]
        for bm in tags:
            bm.run_optimize()
        w = c.ids.dtype.itemsize
        ids = np.take(c.ids[lo:hi].view(np.uint8).reshape(n, w), order, axis=0).view(f"S{w}").ravel()
        return cls(offsets=offsets, cell_di=cell_di, tags=tags, di=di, ids=ids,
                   sorter=inv.astype(np.int32), first_id=bytes(c.ids[lo]) if n else b"",
                   last_id=bytes(c.ids[hi - 1]) if n else b"")

    # ------------------------------------------------------------ persistence
    def save(self, d: Path) -> dict[str, Any]:
        d.mkdir(parents=True)
        for name in ("offsets", "cell_di", "ids", "sorter"):
            np.save(d / f"{name}.npy", getattr(self, name))
        sizes = {}
        for name, maps in (("tags", self.tags), ("di", self.di)):
            blobs = [bm.serialize() for bm in maps]
            with open(d / f"{name}.bin", "wb") as fh:
                fh.writelines(blobs)
            sizes[f"{name}_sizes"] = [len(b) for b in blobs]
        return {"n": self.n, "first_id": self.first_id.hex(), "last_id": self.last_id.hex(), **sizes}

    @classmethod
    def open(cls, d: Path, meta: dict[str, Any]) -> Shard:
        # plain ndarray views of the maps: np.memmap's Python-level __getitem__ costs
        # microseconds per scalar read, which the lookup's binary search would pay 40 times
        arrays = {name: np.asarray(np.load(d / f"{name}.npy", mmap_mode="r"))
                  for name in ("offsets", "cell_di", "ids", "sorter")}
        maps: dict[str, list[BitMap]] = {}
        for name in ("tags", "di"):
            raw = (d / f"{name}.bin").read_bytes()
            maps[name], pos = [], 0
            for size in meta[f"{name}_sizes"]:
                maps[name].append(BitMap.deserialize(raw[pos: pos + size]))
                pos += size
        return cls(tags=maps["tags"], di=maps["di"], first_id=bytes.fromhex(meta["first_id"]),
                   last_id=bytes.fromhex(meta["last_id"]), **arrays)


class AudienceIndex:
    """Profiles of many users, for decide lookups, reach and export.

    Build with :meth:`open` (a Parquet file, a directory of Parquet shards, or a saved
    index directory) or :meth:`build` (validated :class:`Columns`).
    """

    def __init__(self, taxonomy: Taxonomy, shards: Sequence[Shard], *, directory: Path | None = None,
                 report: dict[str, Any] | None = None, build_seconds: float | None = None) -> None:
        self.taxonomy = taxonomy
        self.shards = list(shards)
        self.directory = directory
        self.load_report = report or {}
        self.build_seconds = build_seconds
        self._bounds = np.array([s.first_id for s in self.shards]) if self.shards else np.zeros(0, "S1")
        self.population = sum(s.n for s in self.shards)
        self._tag_names = taxonomy.tag_ids
        self._tag_pos = taxonomy.tag_index()
        self._clause_cache: dict[Spec, tuple[Clause, ...]] = {}
        self._runs_cache: dict[Clause, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.population

    # --------------------------------------------------------------- building
    @classmethod
    def build(cls, columns: Columns, taxonomy: Taxonomy, *, shard_rows: int = SHARD_ROWS,
              progress: bool = False, workers: int = 2) -> AudienceIndex:
        t0 = time.perf_counter()
        n = len(columns)
        known = columns.di[~np.isnan(columns.di)]
        di_fill = float(known.mean()) if known.size else 0.0
        bounds = list(range(0, n, shard_rows)) or [0]
        spans = [(lo, min(lo + shard_rows, n)) for lo in bounds]
        with Progress("index", total=n, unit="users", enabled=progress) as bar, ThreadPoolExecutor(max(1, workers)) as pool:
            def one(span: tuple[int, int]) -> Shard:
                s = Shard.build(columns, span[0], span[1], taxonomy, di_fill)
                bar.update(span[1] - span[0])
                return s

            shards = list(pool.map(one, spans))
        return cls(taxonomy, shards, report=columns.report, build_seconds=time.perf_counter() - t0)

    @classmethod
    def open(cls, path: str | Path, taxonomy: Taxonomy, *, on_error: str = "skip", cache: bool = True,
             progress: bool = False, shard_rows: int = SHARD_ROWS) -> AudienceIndex:
        """A saved index directory (memory-mapped), or profile Parquet (file or directory).

        Parquet is validated and indexed, and (``cache``) the index is saved next to it as
        ``<name>.index/`` keyed by the files' sizes and mtimes and the taxonomy, so the
        next open (a ``serve`` restart) only maps it back.
        """
        p = Path(path)
        if (p / "manifest.json").exists():
            return cls.load(p, taxonomy)
        files = profile_files(p)
        sig = _signature(files, taxonomy, shard_rows)
        cache_dir = p.with_name(p.name + ".index")
        if cache and (cache_dir / "manifest.json").exists():
            try:
                idx = cls.load(cache_dir, taxonomy)
                if idx.signature == sig:
                    return idx
            except (OSError, ValueError, KeyError, TargetingError) as e:
                log.warning("ignoring unreadable index cache %s: %s", cache_dir, e)
        t0 = time.perf_counter()
        cols = read_profiles(p, taxonomy, on_error=on_error, progress=progress)
        idx = cls.build(cols, taxonomy, shard_rows=shard_rows, progress=progress)
        idx.build_seconds = time.perf_counter() - t0
        rep = cols.report
        if rep.get("skipped"):
            log.warning("profiles %s: skipped %d of %d rows: %s", p, rep["skipped"], rep["rows"],
                        {k: v["rows"] for k, v in rep["problems"].items()})
        if cache:
            try:
                idx.save(cache_dir, signature=sig)
            except OSError as e:
                log.warning("could not cache the audience index in %s: %s", cache_dir, e)
        return idx

    # ------------------------------------------------------------ persistence
    signature: str | None = None

    def save(self, directory: str | Path, *, signature: str | None = None, adopt: bool = True) -> Path:
        """Write to ``directory`` atomically (a temporary sibling renamed at the end).
        ``adopt``: remember it as this index's directory (Dask exports read shards from it)."""
        d = Path(directory)
        tmp = d.with_name(f".{d.name}.tmp-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        try:
            metas = [s.save(tmp / f"shard-{i:05d}") for i, s in enumerate(self.shards)]
            manifest = {
                "format": FORMAT, "population": self.population, "shards": metas,
                "taxonomy": _tx_fingerprint(self.taxonomy), "signature": signature or self.signature,
                "load_report": self.load_report, "build_seconds": self.build_seconds,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
            if d.exists():
                old = d.with_name(f".{d.name}.old-{os.getpid()}")
                d.rename(old)
                tmp.rename(d)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(d)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        if adopt:
            self.directory = d
            self.signature = signature or self.signature
        return d

    @classmethod
    def load(cls, directory: str | Path, taxonomy: Taxonomy) -> AudienceIndex:
        d = Path(directory)
        m = json.loads((d / "manifest.json").read_text())
        if m.get("format") != FORMAT:
            raise TargetingError(f"{d}: index format {m.get('format')}, expected {FORMAT}; rebuild it",
                                 path="profiles", code="bad_profiles")
        if m.get("taxonomy") != _tx_fingerprint(taxonomy):
            raise TargetingError(f"{d}: built for another taxonomy; rebuild it from the profiles",
                                 path="profiles", code="bad_profiles")
        shards = [Shard.open(d / f"shard-{i:05d}", meta) for i, meta in enumerate(m["shards"])]
        idx = cls(taxonomy, shards, directory=d, report=m.get("load_report"),
                  build_seconds=m.get("build_seconds"))
        idx.signature = m.get("signature")
        return idx

    def nbytes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.nbytes().items():
                out[k] = out.get(k, 0) + v
        return out

    # ----------------------------------------------------------------- lookup
    def locate(self, user_ids: Sequence[str] | np.ndarray) -> list[np.ndarray]:
        """Per shard, the sorted rows of those ``user_ids`` present in it (uint32 arrays)."""
        keys = np.asarray([u.encode() if isinstance(u, str) else u for u in user_ids], dtype="S")
        out: list[np.ndarray] = []
        if len(self.shards) == 0:
            return out
        which = np.searchsorted(self._bounds, keys, side="right") - 1
        for i, s in enumerate(self.shards):
            k = keys[which == i]
            if len(k) and k.dtype.itemsize > s.ids.dtype.itemsize:
                k = k[np.char.str_len(k) <= s.ids.dtype.itemsize]
            rows = s.find(k) if len(k) else np.zeros(0, dtype=np.int64)
            out.append(np.sort(rows[rows >= 0]).astype(np.uint32))
        return out

    def lookup(self, user_id: str) -> dict[str, Any] | None:
        """The profile row of one user (province, city, gender, age, tags), or None."""
        if not self.shards or not isinstance(user_id, str) or not user_id:
            return None
        key = user_id.encode()
        i = int(np.searchsorted(self._bounds, np.array([key]), side="right")[0]) - 1
        if i < 0:
            return None
        s = self.shards[i]
        if len(key) > s.ids.dtype.itemsize or key > s.last_id:
            return None
        ids, sorter = s.ids, s.sorter
        # an in-memory fence of every FENCE-th id narrows the search to one block of the
        # sorter, leaving log2(FENCE) probes into the mapped ids instead of log2(n)
        block = int(np.searchsorted(s.fence, np.array([key], dtype=s.fence.dtype), side="right")[0])
        lo = max(0, (block - 1) * FENCE)
        pos = bisect.bisect_left(_Sorted(ids, sorter), key, lo, min(s.n, lo + FENCE + 1))
        if pos >= s.n or bytes(ids[int(sorter[pos])]) != key:
            return None
        row = int(sorter[pos])
        cell = int(s.cell_of(np.array([row]))[0])
        leaf, rest = divmod(cell, N_GENDER * AGE_DOMAIN)
        g, a = divmod(rest, AGE_DOMAIN)
        prov, city = self.taxonomy.geo_leaves[leaf]
        return {
            "province": prov or None,
            "city": city or None,
            "gender": GENDERS[g - 1] if g else None,
            "age": a - 1 if a else None,
            "tags": [t for t, bm in zip(self._tag_names, s.tags) if row in bm],
        }

    # ------------------------------------------------------ reach and export
    def reach(self, spec: Spec, *, breakdown: Sequence[str] = (), advertiser: str | None = None,
              store: Any = None, now: float = 0.0, **options: Any) -> dict[str, Any]:
        """Operator view of reach (exact counts); see :func:`targeting.audience.reach.reach`."""
        from .reach import reach

        unknown = set(options) - {"funnel", "overlap", "audience_key"}
        if unknown:
            name = min(unknown)
            raise TargetingError(f"unknown reach option {name!r}; known: funnel, overlap, audience_key",
                                 path=name, code="unknown_option")
        return reach(self, spec, breakdown=breakdown, advertiser=advertiser, store=store, now=now, **options)

    def export(self, spec: Spec, path: str | Path, *, advertiser: str | None = None, store: Any = None,
               now: float = 0.0, **options: Any) -> int:
        """Write the audience's user ids; see :func:`targeting.audience.export.export`."""
        from .export import export

        return export(self, spec, path, advertiser=advertiser, store=store, now=now, **options)

    # ------------------------------------------------------------- evaluation
    def clauses_of(self, spec: Spec) -> tuple[Clause, ...]:
        """``spec.clauses(taxonomy)``, memoised (specs are immutable; the taxonomy is fixed)."""
        got = self._clause_cache.get(spec)
        if got is None:
            got = spec.clauses(self.taxonomy)
            if len(self._clause_cache) >= CACHE_SIZE:
                self._clause_cache.clear()
            self._clause_cache[spec] = got
        return got

    def cell_runs(self, clause: Clause) -> tuple[np.ndarray, np.ndarray]:
        """Runs ``[start, end)`` of allowed cells for the clause's geo/gender/age (scene
        and time are not user attributes and are ignored here); memoised per clause."""
        got = self._runs_cache.get(clause)
        if got is None:
            got = self._cell_runs(clause)
            if len(self._runs_cache) >= CACHE_SIZE:
                self._runs_cache.clear()
            self._runs_cache[clause] = got
        return got

    def _cell_runs(self, clause: Clause) -> tuple[np.ndarray, np.ndarray]:
        tx = self.taxonomy
        geo = _mask(tx.geo_domain, clause.geo)
        gen = _mask(N_GENDER, clause.gender)
        age = _mask(AGE_DOMAIN, clause.age)
        allowed = (geo[:, None, None] & gen[None, :, None] & age[None, None, :]).ravel()
        edges = np.diff(np.concatenate(([0], allowed.view(np.int8), [0])))
        return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)

    def rows_for(self, clause: Clause, runs: tuple[np.ndarray, np.ndarray], shard: int,
                 rt: dict[Any, list[BitMap]] | None = None) -> Selection:
        """The clause's rows in one shard."""
        s = self.shards[shard]
        starts, ends = s.offsets[runs[0]], s.offsets[runs[1]]
        nonempty = ends > starts
        starts, ends = starts[nonempty], ends[nonempty]
        if len(starts) > 1:  # coalesce runs separated only by empty cells
            join = starts[1:] == ends[:-1]
            if join.any():
                keep_s = np.concatenate(([True], ~join))
                keep_e = np.concatenate((~join, [True]))
                starts, ends = starts[keep_s], ends[keep_e]
        needs_bits = bool(clause.tags_any or clause.tags_all or clause.tags_none
                          or clause.rt_any or clause.rt_none)
        if not needs_bits:
            return Selection(starts, ends, None)
        x = BitMap()
        for a, b in zip(starts.tolist(), ends.tolist()):
            x.add_range(a, b)
        tp = self._tag_pos
        for group in clause.tags_any:
            x = BitMap.union(*(x & s.tags[tp[t]] for t in sorted(group)))
        for t in sorted(clause.tags_all):
            x &= s.tags[tp[t]]
        for t in sorted(clause.tags_none):
            x -= s.tags[tp[t]]
        for rules in clause.rt_any:
            assert rt is not None
            x = BitMap.union(*(x & rt[r][shard] for r in rules))
        for r in sorted(clause.rt_none):
            assert rt is not None
            x -= rt[r][shard]
        return Selection(starts, ends, x)


@dataclass
class Selection:
    """Rows of one shard: the ranges ``[starts, ends)``, refined by ``bits`` when not None."""

    starts: np.ndarray
    ends: np.ndarray
    bits: BitMap | None

    def count(self) -> int:
        return len(self.bits) if self.bits is not None else int((self.ends - self.starts).sum())

    def bitmap(self) -> BitMap:
        if self.bits is not None:
            return self.bits
        x = BitMap()
        for a, b in zip(self.starts.tolist(), self.ends.tolist()):
            x.add_range(a, b)
        return x

    def rows(self) -> np.ndarray:
        """uint32 rows, ascending."""
        if self.bits is not None:
            return rows_of(self.bits)
        if len(self.starts) == 0:
            return np.zeros(0, dtype=np.uint32)
        lengths = self.ends - self.starts
        base = np.repeat(self.starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        return (np.arange(int(lengths.sum()), dtype=np.int64) + base).astype(np.uint32)


class _Sorted:
    """``ids`` in ascending order as a lazy sequence (for :func:`bisect.bisect_left`)."""

    def __init__(self, ids: np.ndarray, sorter: np.ndarray) -> None:
        self.ids, self.sorter = ids, sorter

    def __len__(self) -> int:
        return len(self.sorter)

    def __getitem__(self, i: int) -> bytes:
        return bytes(self.ids[int(self.sorter[i])])


def _roaring_bytes(maps: Sequence[BitMap]) -> int:
    stats = [b.get_statistics() for b in maps]
    return int(sum(st["n_bytes_array_containers"] + st["n_bytes_bitset_containers"]
                   + st["n_bytes_run_containers"] + 8 * st["n_containers"] for st in stats))


def _mask(size: int, allowed: frozenset[int] | None) -> np.ndarray:
    if allowed is None:
        return np.ones(size, dtype=bool)
    m = np.zeros(size, dtype=bool)
    m[[v for v in allowed if 0 <= v < size]] = True
    return m


def _tx_fingerprint(tx: Taxonomy) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([tx.geo_leaves, tx.tag_ids, list(GENDERS), AGE_DOMAIN]).encode())
    return h.hexdigest()[:16]


def _signature(files: list[Path], tx: Taxonomy, shard_rows: int) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(f"{_tx_fingerprint(tx)}|{shard_rows}|{FORMAT}".encode())
    return h.hexdigest()[:24]


def ids_to_arrow(ids: np.ndarray) -> pa.Array:
    """``S{w}`` ids → Arrow strings (NUL padding stripped), vectorised."""
    n = len(ids)
    w = ids.dtype.itemsize
    mat = np.ascontiguousarray(ids).view(np.uint8).reshape(n, w) if n else np.zeros((0, w), np.uint8)
    if n and bool(mat[:, w - 1].all()):  # every id is full width (ids never contain NUL)
        offsets = np.arange(0, w * (n + 1), w, dtype=np.int32)
        data = mat.ravel()
    else:
        nz = mat != 0
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(nz.sum(axis=1), out=offsets[1:])
        data = mat[nz]
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data)))

