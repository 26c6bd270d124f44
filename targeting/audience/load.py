"""Read and validate profile Parquet (contract §5) into domain-coded numpy columns.

Every check is vectorised per record batch. A column of the wrong type refuses
the whole load (no row can be trusted); bad *rows* (unknown adcode or tag,
age outside 0..120, unknown gender, negative or non-finite daily_impressions,
missing or duplicate user_id) are counted with examples and either skipped
(``on_error="skip"``, the default, refused anyway when more than
``max_bad_fraction`` of the rows are bad: that is a wrong file, not a few bad
rows) or refuse the load (``on_error="refuse"``). Nothing is built from a
refused load.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import TargetingError
from ..progress import Progress
from ..taxonomy import GENDERS, MAX_AGE, Taxonomy

MAX_EXAMPLES = 5


class ProfileError(TargetingError):
    """The profile load was refused; ``report`` has counts and examples per problem."""

    def __init__(self, message: str, report: dict[str, Any], path: str = "profiles") -> None:
        super().__init__(message, path=path, code="bad_profiles")
        self.report = report


@dataclass
class Columns:
    """Validated profiles, ``user_id`` ascending and unique; one entry per user.

    ``ids``: bytes ``S{w}`` (NUL-padded); ``leaf``: int16 geo leaf; ``gender``:
    uint8 (0 unknown, 1 male, 2 female); ``age``: uint8 age code (0 unknown, 1 + age);
    ``di``: float32 daily impressions (NaN unknown); ``tag_rows``/``tag_codes``:
    int64/uint8 pairs (user row, tag position in ``taxonomy.tag_ids``).
    """

    ids: np.ndarray
    leaf: np.ndarray
    gender: np.ndarray
    age: np.ndarray
    di: np.ndarray
    tag_rows: np.ndarray
    tag_codes: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


class _Problems:
    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.examples: dict[str, list[dict[str, Any]]] = {}

    def add(self, reason: str, mask: np.ndarray, file: str, first_row: int, ids: pa.Array,
            values: Any = None) -> None:
        n = int(mask.sum())
        if not n:
            return
        self.rows[reason] = self.rows.get(reason, 0) + n
        ex = self.examples.setdefault(reason, [])
        for i in np.flatnonzero(mask)[: MAX_EXAMPLES - len(ex)].tolist():
            item: dict[str, Any] = {"file": file, "row": first_row + i, "user_id": ids[i].as_py()}
            if callable(values):
                item["value"] = values(i)
            elif values is not None:
                v = values[i]
                item["value"] = v.as_py() if isinstance(v, pa.Scalar) else v.item() if hasattr(v, "item") else v
            ex.append(item)

    def report(self, total: int, kept: int) -> dict[str, Any]:
        return {
            "rows": total,
            "loaded": kept,
            "skipped": total - kept,
            "problems": {r: {"rows": n, "examples": self.examples[r]} for r, n in sorted(self.rows.items())},
        }


_EXPECTED = {
    "user_id": ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
    "province": ("an integer adcode (int32)", pa.types.is_integer),
    "city": ("an integer adcode (int32)", pa.types.is_integer),
    "gender": ("string (male|female)", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
    "age": ("an integer (int16)", pa.types.is_integer),
    "tags": ("list<string>", lambda t: (pa.types.is_list(t) or pa.types.is_large_list(t))
             and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type))),
    "daily_impressions": ("a number (float32)", lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)),
}


def profile_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.parquet") if not f.name.startswith("."))
        if not files:
            raise TargetingError(f"no .parquet files in {p}", path="profiles", code="bad_profiles")
        return files
    if not p.exists():
        raise TargetingError(f"profiles not found: {p}", path="profiles", code="not_found")
    return [p]


def _check_schema(f: Path, schema: pa.Schema) -> list[str]:
    if "user_id" not in schema.names:
        raise ProfileError(f"{f.name}: no user_id column", {"file": str(f)}, path="profiles.user_id")
    cols = []
    for name, (want, ok) in _EXPECTED.items():
        if name not in schema.names:
            continue
        t = schema.field(name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not ok(t):
            raise ProfileError(
                f"{f.name}: column {name} is {t}, expected {want}",
                {"file": str(f), "column": name, "type": str(t), "expected": want},
                path=f"profiles.{name}",
            )
        cols.append(name)
    return cols


class _Coder:
    """Vectorised adcode / tag / gender coding against the taxonomy (direct lookup tables)."""

    SPAN = 1_000_000  # adcodes are six digits

    def __init__(self, tx: Taxonomy) -> None:
        leaf_index = {lf: i for i, lf in enumerate(tx.geo_leaves)}
        self.prov_leaf = np.full(self.SPAN, -1, dtype=np.int16)
        self.city_leaf = np.full(self.SPAN, -1, dtype=np.int16)
        self.city_prov = np.zeros(self.SPAN, dtype=np.int32)
        for p in tx.provinces:
            self.prov_leaf[p] = leaf_index[(p, 0)]
        for a, pl in tx.places.items():
            if pl.level == "city":
                self.city_leaf[a] = leaf_index[(pl.province, a)]
                self.city_prov[a] = pl.province
        self.tag_pos = {t: i for i, t in enumerate(tx.tag_ids)}
        self.tag_pos.update({label: self.tag_pos[t] for t, label in tx.tags.items()})

    def geo(self, prov: np.ndarray, pnull: np.ndarray, city: np.ndarray, cnull: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """leaf int16[n], bad-province, bad-city, city-not-in-province masks (``*null`` = null)."""
        pin = (prov >= 0) & (prov < self.SPAN)
        cin = (city >= 0) & (city < self.SPAN)
        pl = np.where(pin & ~pnull, self.prov_leaf[np.where(pin, prov, 0)], -1)
        cl = np.where(cin & ~cnull, self.city_leaf[np.where(cin, city, 0)], -1)
        ml = np.where(cin & ~cnull, self.prov_leaf[np.where(cin, city, 0)], -1)  # municipality as city
        cp = self.city_prov[np.where(cin, city, 0)]
        bad_prov = ~pnull & (pl < 0)
        bad_city = ~cnull & (cl < 0) & (ml < 0)
        mismatch = ~pnull & ~bad_prov & (((cl >= 0) & (cp != prov)) | ((ml >= 0) & (city != prov)))
        leaf = np.where(cl >= 0, cl, np.where(ml >= 0, ml, np.maximum(pl, 0))).astype(np.int16)
        return leaf, bad_prov, bad_city, mismatch


def _ints(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values with nulls as 0, null mask)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    null = arr.is_null().to_numpy(zero_copy_only=False)
    vals = arr.fill_null(0).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return vals, null


def _strings(col: pa.ChunkedArray) -> pa.Array:
    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    return arr


def read_profiles(path: str | Path, taxonomy: Taxonomy, *, on_error: str = "skip",
                  max_bad_fraction: float = 0.01, progress: bool = False) -> Columns:
    """Validated :class:`Columns` of a Parquet file or a directory of shards. Raises
    :class:`ProfileError` (a 4xx TargetingError) when refused; never returns half a load."""
    if on_error not in ("skip", "refuse"):
        raise TargetingError("on_error is skip or refuse", path="on_error")
    files = profile_files(path)
    coder = _Coder(taxonomy)
    probs = _Problems()
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    schemas = [_check_schema(f, pq.read_schema(f)) for f in files]  # a bad type refuses before any work

    def read_file(f: Path, cols: list[str], bar: Progress) -> tuple[list[tuple[Any, ...]], _Problems, int]:
        mine = _Problems()
        table = pq.read_table(f, columns=cols, use_threads=True, read_dictionary=[
            c for c in ("tags.list.element", "gender") if c.split(".")[0] in cols])
        parts = []
        for start in range(0, table.num_rows, 1 << 22):
            chunk = table.slice(start, 1 << 22)
            parts.append(_batch(chunk, coder, mine, f.name, start))
            bar.update(chunk.num_rows)
        return parts, mine, table.num_rows

    ids_parts: list[pa.Array] = []
    leaf_p, gen_p, age_p, di_p, trow_p, tcode_p = [], [], [], [], [], []
    kept = 0
    seen = 0
    # files in parallel (Arrow decoding and numpy release the GIL), results in file order
    with Progress("profiles", total=total, enabled=progress) as bar, ThreadPoolExecutor(2) as pool:
        for parts, mine, n_rows in pool.map(lambda fc: read_file(fc[0], fc[1], bar), zip(files, schemas)):
            for reason, n in mine.rows.items():
                probs.rows[reason] = probs.rows.get(reason, 0) + n
                ex = probs.examples.setdefault(reason, [])
                ex.extend(mine.examples[reason][: MAX_EXAMPLES - len(ex)])
            for ids, leaf, gen, age, di, trow, tcode in parts:
                ids_parts.append(ids)
                leaf_p.append(leaf)
                gen_p.append(gen)
                age_p.append(age)
                di_p.append(di)
                trow_p.append(trow + kept)
                tcode_p.append(tcode)
                kept += len(ids)
            seen += n_rows
    ids_arr = _fixed_width(pa.chunked_array(ids_parts, type=pa.string()) if ids_parts else pa.chunked_array([], pa.string()))
    cols_out = Columns(
        ids=ids_arr,
        leaf=np.concatenate(leaf_p) if leaf_p else np.zeros(0, np.int16),
        gender=np.concatenate(gen_p) if gen_p else np.zeros(0, np.uint8),
        age=np.concatenate(age_p) if age_p else np.zeros(0, np.uint8),
        di=np.concatenate(di_p) if di_p else np.zeros(0, np.float32),
        tag_rows=np.concatenate(trow_p) if trow_p else np.zeros(0, np.int64),
        tag_codes=np.concatenate(tcode_p) if tcode_p else np.zeros(0, np.uint8),
    )
    cols_out = _sort_unique(cols_out, probs, ids_parts)
    report = probs.report(seen, len(cols_out))
    cols_out.report = report
    bad = report["skipped"]
    if bad and (on_error == "refuse" or bad > max_bad_fraction * max(seen, 1)):
        summary = "; ".join(f"{r}: {v['rows']} rows" for r, v in report["problems"].items())
        why = "" if on_error == "refuse" else f" (more than {max_bad_fraction:.0%} of {seen} rows)"
        raise ProfileError(f"profile load refused, {bad} bad rows{why}: {summary}", report)
    return cols_out


def _batch(t: pa.Table, coder: _Coder, probs: _Problems, fname: str, first: int
           ) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = t.num_rows
    ids = _strings(t.column("user_id"))
    bad_id = ids.is_null().to_numpy(zero_copy_only=False) | (
        pc.fill_null(pc.binary_length(ids), 0).to_numpy(zero_copy_only=False) == 0)
    bad_id |= pc.fill_null(pc.match_substring(ids, "\x00"), False).to_numpy(zero_copy_only=False)
    probs.add("missing or empty user_id (or one containing NUL)", bad_id, fname, first, ids)
    bad = bad_id.copy()

    zeros = np.zeros(n, dtype=np.int64)
    nulls = np.ones(n, dtype=bool)
    prov, pnull = _ints(t.column("province")) if "province" in t.column_names else (zeros, nulls)
    city, cnull = _ints(t.column("city")) if "city" in t.column_names else (zeros, nulls)
    leaf, bad_p, bad_c, mism = coder.geo(prov, pnull, city, cnull)
    probs.add("unknown province adcode", bad_p, fname, first, ids, prov)
    probs.add("unknown city adcode", bad_c, fname, first, ids, city)
    probs.add("city not in province", mism & ~bad_p & ~bad_c, fname, first, ids, city)
    bad |= bad_p | bad_c | mism

    gender = np.zeros(n, dtype=np.uint8)
    if "gender" in t.column_names:
        g = _strings(t.column("gender"))
        for k, name in enumerate(GENDERS, start=1):
            gender[pc.fill_null(pc.equal(g, name), False).to_numpy(zero_copy_only=False)] = k
        bad_g = (gender == 0) & ~g.is_null().to_numpy(zero_copy_only=False)
        probs.add("unknown gender (expected male, female or null)", bad_g, fname, first, ids, g)
        bad |= bad_g

    age = np.zeros(n, dtype=np.uint8)
    if "age" in t.column_names:
        a, anull = _ints(t.column("age"))
        bad_a = ~anull & ((a < 0) | (a > MAX_AGE))
        probs.add(f"age outside 0..{MAX_AGE}", bad_a, fname, first, ids, a)
        bad |= bad_a
        ok = ~anull & ~bad_a
        age[ok] = (a[ok] + 1).astype(np.uint8)

    di = np.full(n, np.nan, dtype=np.float32)
    if "daily_impressions" in t.column_names:
        col = t.column("daily_impressions").combine_chunks()
        dnull = col.is_null().to_numpy(zero_copy_only=False)
        d = col.fill_null(0).cast(pa.float64()).to_numpy(zero_copy_only=False)
        bad_d = ~dnull & (~np.isfinite(d) | (d < 0))
        probs.add("daily_impressions negative or not finite", bad_d, fname, first, ids, d)
        bad |= bad_d
        di = np.where(dnull | bad_d, np.nan, d).astype(np.float32)

    trow = np.zeros(0, dtype=np.int64)
    tcode = np.zeros(0, dtype=np.uint8)
    if "tags" in t.column_names:
        parent_parts, code_parts, value_parts = [], [], []
        base = 0
        for lists in t.column("tags").chunks:
            # tags are read dictionary-encoded (see read_profiles): code the few distinct
            # strings, not the tens of millions of list elements
            flat = pc.list_flatten(lists)
            parent_parts.append(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
                                + base)
            enc = flat if pa.types.is_dictionary(flat.type) else pc.dictionary_encode(flat)
            mapping = np.array([coder.tag_pos.get(v, -1) for v in enc.dictionary.to_pylist()] + [-1],
                               dtype=np.int64)
            idx = enc.indices.fill_null(len(mapping) - 1).to_numpy(zero_copy_only=False).astype(np.int64)
            code_parts.append(mapping[idx])
            value_parts.append(enc)
            base += len(lists)
        parents = np.concatenate(parent_parts) if parent_parts else np.zeros(0, np.int64)
        codes = np.concatenate(code_parts) if code_parts else np.zeros(0, np.int64)
        unknown = codes < 0
        bad_t = np.zeros(n, dtype=bool)
        bad_t[parents[unknown]] = True
        if bad_t.any():
            bad_parents = parents[unknown]
            flat_all = pa.chunked_array([v.cast(v.type.value_type) if pa.types.is_dictionary(v.type) else v
                                         for v in value_parts], type=pa.string())
            bad_values = flat_all.filter(pa.array(unknown))

            def first_unknown(i: int) -> Any:
                return bad_values[int(np.flatnonzero(bad_parents == i)[0])].as_py()

            probs.add("unknown tag", bad_t, fname, first, ids, first_unknown)
        bad |= bad_t
        trow, tcode = parents[~unknown], codes[~unknown].astype(np.uint8)

    keep = ~bad
    new_row = np.cumsum(keep) - 1
    tkeep = keep[trow]
    if keep.all():
        return ids, leaf, gender, age, di, trow, tcode
    return (ids.filter(pa.array(keep)), leaf[keep], gender[keep], age[keep], di[keep],
            new_row[trow[tkeep]], tcode[tkeep])


def _fixed_width(ids: pa.ChunkedArray) -> np.ndarray:
    """Arrow strings → NUL-padded ``S{w}`` numpy array (w = longest id), vectorised."""
    arr = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype="S1")
    if arr.offset or arr.null_count:
        arr = pa.concat_arrays([arr])  # normalise
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32 if pa.types.is_string(arr.type) else np.int64)
    offs = offs[arr.offset: arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offs)
    w = max(int(lengths.max()), 1)
    out = np.zeros((n, w), dtype=np.uint8)
    if (lengths == w).all():
        out[:] = data[offs[0]: offs[0] + n * w].reshape(n, w)
    else:
        row = np.repeat(np.arange(n, dtype=np.int64), lengths)
        src = np.arange(offs[0], offs[-1], dtype=np.int64)
        col = src - offs[:-1][row]
        out[row, col] = data[src]
    return out.view(f"S{w}").ravel()


def _sort_unique(c: Columns, probs: _Problems, ids_parts: list[pa.Array]) -> Columns:
    ids = c.ids
    if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
        return c
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    dup = np.zeros(len(s), dtype=bool)
    dup[1:] = s[1:] == s[:-1]
    if dup.any():
        d_ids = pa.array([x.decode() for x in s[dup][:MAX_EXAMPLES].tolist()])
        probs.add("duplicate user_id (later rows dropped)", np.ones(len(d_ids), dtype=bool), "*", 0, d_ids)
        probs.rows["duplicate user_id (later rows dropped)"] = int(dup.sum())
        for e in probs.examples["duplicate user_id (later rows dropped)"]:
            e.pop("row", None)
            e.pop("file", None)
    keep_sorted = order[~dup]
    new_of_old = np.full(len(ids), -1, dtype=np.int64)
    new_of_old[keep_sorted] = np.arange(len(keep_sorted))
    trow = new_of_old[c.tag_rows]
    tk = trow >= 0
    trow, tcode = trow[tk], c.tag_codes[tk]
    by_row = np.argsort(trow, kind="stable")  # shards slice tag pairs by row range
    return Columns(ids=ids[keep_sorted], leaf=c.leaf[keep_sorted], gender=c.gender[keep_sorted],
                   age=c.age[keep_sorted], di=c.di[keep_sorted], tag_rows=trow[by_row],
                   tag_codes=tcode[by_row], report=c.report)
