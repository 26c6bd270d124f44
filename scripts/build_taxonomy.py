#!/usr/bin/env python3
"""Regenerate rules/taxonomy/geo.csv from the cpca adcodes table.

Usage:
    python scripts/build_taxonomy.py --cpca-csv PATH/TO/cpca/resources/adcodes.csv [--out rules/taxonomy/geo.csv]

Dev-only tool: needs ``pypinyin`` (pip install pypinyin). The product reads the
generated CSV at run time and never needs cpca or pypinyin.

Source: ``adcodes.csv`` from the MIT-licensed PyPI package ``cpca`` 0.5.5
(https://github.com/DQinYuan/chinese_province_city_area_mapper), columns
``adcode,name,longitude,latitude`` with 12-digit codes. Province rows end in
``0000000000``, prefecture rows end in ``00000000``. It has 34 province rows and
344 prefecture-level rows. See rules/taxonomy/ATTRIBUTION.md.

Output columns: adcode,level,province,name,short_name,pinyin,iso,longitude,latitude
(adcode = first 6 digits of the 12-digit code).

Choices made for the odd rows of the source (also in rules/taxonomy/README.md):

1. Municipalities 北京 110000, 天津 120000, 上海 310000, 重庆 500000 come with
   pseudo prefecture rows 市辖区 (110100, 120100, 310100, 500100) and 县
   (500200). They are not cities and are dropped. A municipality is a
   province-level row with no city rows; a request for "city 110000" means the
   province itself (the loader's job).
2. "Directly administered county-level units" groups 省直辖县级行政区划 /
   自治区直辖县级行政区划 (139000 Hebei, 419000 Henan, 429000 Hubei, 469000
   Hainan, 659000 Xinjiang) are bookkeeping groups, not cities. Each group row
   is dropped and replaced by ALL of its county-level members found in the
   table (codes PP90xx), emitted as level ``city`` of that province, because
   no prefecture sits above them and users located there need a target:
     419001 济源; 429004 仙桃, 429005 潜江, 429006 天门, 429021 神农架林区;
     469001-469007 五指山 琼海 文昌 万宁 东方 plus the counties and
     autonomous counties 469021-469030 (定安 屯昌 澄迈 临高 白沙 昌江 乐东
     陵水 保亭 琼中); 659001-659006 石河子 阿拉尔 图木舒克 五家渠 铁门关
     (as present in the table); 139001 定州, 139002 辛集.
   The Hebei group (139000) is not in the brief's list but is in the table and
   is handled the same way. Its two members have no coordinates in the source;
   the coordinates of their city seats are filled in from COORD_OVERRIDES below
   (the only coordinates not taken from cpca). Note that in the MCA list
   定州/辛集 are also known as 130682/130181 (under 保定/石家庄); the table
   only has the 139001/139002 statistical codes, which we keep.
3. Hong Kong 810000, Macau 820000, Taiwan 710000 are province rows. The table
   has no city rows for them (checked at build time), so none are emitted.
4. Names are kept as in the source, even where the division has since been
   renamed or merged (e.g. 542400 那曲地区 became 那曲市 540600 in 2017;
   371200 莱芜市 was merged into 济南 in 2019; the table predates the later
   Xinjiang county-level cities 659005 北屯, 659007 双河 ...): the table is the
   source of truth for codes, and profiles/requests use the same codes.

short_name: provinces from a fixed table (广东, 内蒙古, 广西, 香港 ...). Cities:
strip the suffix 市/地区/盟/林区/县/自治州/自治县, then strip trailing ethnic group
names (with or without 族, e.g. 恩施土家族苗族自治州 -> 恩施, 巴音郭楞蒙古自治州
-> 巴音郭楞, 伊犁哈萨克自治州 -> 伊犁).

pinyin: lowercase ascii, no spaces/tones, of the short name (ü -> v, e.g.
吕梁 lvliang). Provinces use official romanisations (陕西 shaanxi, 内蒙古
neimenggu, 西藏 xizang, 香港 xianggang, 澳门 aomen). City pinyin comes from
pypinyin with PINYIN_OVERRIDES for polyphones; the script prints every value
shared by more than one place, and every short name shared by more than one
place, so a human can eyeball them (collisions are fine: the loader reports
ambiguity).
"""
from __future__ import annotations

import argparse
import collections
import csv
import os
import sys

PROVINCES = {
    # adcode: (short_name, pinyin, iso 3166-2)
    110000: ("北京", "beijing", "CN-BJ"),
    120000: ("天津", "tianjin", "CN-TJ"),
    130000: ("河北", "hebei", "CN-HE"),
    140000: ("山西", "shanxi", "CN-SX"),
    150000: ("内蒙古", "neimenggu", "CN-NM"),
    210000: ("辽宁", "liaoning", "CN-LN"),
    220000: ("吉林", "jilin", "CN-JL"),
    230000: ("黑龙江", "heilongjiang", "CN-HL"),
    310000: ("上海", "shanghai", "CN-SH"),
    320000: ("江苏", "jiangsu", "CN-JS"),
    330000: ("浙江", "zhejiang", "CN-ZJ"),
    340000: ("安徽", "anhui", "CN-AH"),
    350000: ("福建", "fujian", "CN-FJ"),
    360000: ("江西", "jiangxi", "CN-JX"),
    370000: ("山东", "shandong", "CN-SD"),
    410000: ("河南", "henan", "CN-HA"),
    420000: ("湖北", "hubei", "CN-HB"),
    430000: ("湖南", "hunan", "CN-HN"),
    440000: ("广东", "guangdong", "CN-GD"),
    450000: ("广西", "guangxi", "CN-GX"),
    460000: ("海南", "hainan", "CN-HI"),
    500000: ("重庆", "chongqing", "CN-CQ"),
    510000: ("四川", "sichuan", "CN-SC"),
    520000: ("贵州", "guizhou", "CN-GZ"),
    530000: ("云南", "yunnan", "CN-YN"),
    540000: ("西藏", "xizang", "CN-XZ"),
    610000: ("陕西", "shaanxi", "CN-SN"),
    620000: ("甘肃", "gansu", "CN-GS"),
    630000: ("青海", "qinghai", "CN-QH"),
    640000: ("宁夏", "ningxia", "CN-NX"),
    650000: ("新疆", "xinjiang", "CN-XJ"),
    710000: ("台湾", "taiwan", "CN-TW"),
    810000: ("香港", "xianggang", "CN-HK"),
    820000: ("澳门", "aomen", "CN-MO"),
}

MUNICIPALITIES = {110000, 120000, 310000, 500000}

# Pseudo prefecture rows of municipalities: dropped.
MUNICIPAL_PSEUDO_NAMES = {"市辖区", "县"}

# Group rows replaced by their members.
DIRECT_GROUP_NAMES = {"省直辖县级行政区划", "自治区直辖县级行政区划"}

# Coordinates missing in the source (city seat, WGS84-ish, 4 decimals).
COORD_OVERRIDES = {
    139001: ("114.9902", "38.5162"),  # 定州市
    139002: ("115.2179", "37.9436"),  # 辛集市
}

# Short names of cities where the suffix rules are not enough (none needed so
# far; kept as a hook).
SHORT_NAME_OVERRIDES: dict[int, str] = {}

# Polyphones / romanisation fixes, keyed by short name. Applied regardless of
# what pypinyin returns, so the output is stable across pypinyin versions.
PINYIN_OVERRIDES = {
    "重庆": "chongqing",
    "长沙": "changsha",
    "长春": "changchun",
    "长治": "changzhi",
    "厦门": "xiamen",
    "蚌埠": "bengbu",
    "六安": "luan",
    "丽水": "lishui",
    "丽江": "lijiang",
    "大理": "dali",
    "乐山": "leshan",
    "乐东": "ledong",
    "肇庆": "zhaoqing",
    "莆田": "putian",
    "亳州": "bozhou",
    "儋州": "danzhou",
    "台州": "taizhou",
    "泰州": "taizhou",
    "朝阳": "chaoyang",
    "吕梁": "lvliang",
    "东莞": "dongguan",
    "濮阳": "puyang",
    "漯河": "luohe",
    "衢州": "quzhou",
    "郴州": "chenzhou",
    "阜阳": "fuyang",
    "阜新": "fuxin",
    "曲靖": "qujing",
    "那曲": "naqu",
    "日喀则": "rikaze",
    "阿坝": "aba",
    "屯昌": "tunchang",
    "石河子": "shihezi",
    "铁门关": "tiemenguan",
    "阿拉尔": "alaer",
    "克孜勒苏": "kezilesu",
    "巴音郭楞": "bayinguoleng",
    "大兴安岭": "daxinganling",
    "兴安": "xingan",
    "果洛": "guoluo",
    "和田": "hetian",
    "锡林郭勒": "xilinguole",
    "昌都": "changdu",
    "阿勒泰": "aletai",
    "阿拉善": "alashan",
    "吉安": "jian",
    "黔南": "qiannan",
    "黔东南": "qiandongnan",
    "黔西南": "qianxinan",
    "宿迁": "suqian",
    "宿州": "suzhou",
    "盘锦": "panjin",
    "泸州": "luzhou",
    "银川": "yinchuan",
    "鹤壁": "hebi",
    "琼中": "qiongzhong",
    "保亭": "baoting",
    "陵水": "lingshui",
    "白沙": "baisha",
    "昌江": "changjiang",
    "澄迈": "chengmai",
    "临高": "lingao",
    "定安": "dingan",
}

# The 56 officially recognised ethnic groups (stripped from the end of
# autonomous prefecture / county names, with or without the trailing 族).
ETHNIC_GROUPS = (
    "汉族 蒙古族 回族 藏族 维吾尔族 苗族 彝族 壮族 布依族 朝鲜族 满族 侗族 瑶族 白族 "
    "土家族 哈尼族 哈萨克族 傣族 黎族 傈僳族 佤族 畲族 高山族 拉祜族 水族 东乡族 纳西族 "
    "景颇族 柯尔克孜族 土族 达斡尔族 仫佬族 羌族 布朗族 撒拉族 毛南族 仡佬族 锡伯族 "
    "阿昌族 普米族 塔吉克族 怒族 乌孜别克族 俄罗斯族 鄂温克族 德昂族 保安族 裕固族 京族 "
    "塔塔尔族 独龙族 鄂伦春族 赫哲族 门巴族 珞巴族 基诺族"
).split()
ETHNIC_STEMS = sorted(
    {g for g in ETHNIC_GROUPS} | {g[:-1] for g in ETHNIC_GROUPS if len(g) > 2},
    key=len,
    reverse=True,
)
# Order matters: longest first.
CITY_SUFFIXES = ("自治州", "自治县", "地区", "林区", "盟", "市", "县")

HEADER = ["adcode", "level", "province", "name", "short_name", "pinyin", "iso", "longitude", "latitude"]


def city_short_name(name: str) -> str:
    s = name
    for suf in CITY_SUFFIXES:
        if s.endswith(suf) and len(s) - len(suf) >= 2:
            s = s[: -len(suf)]
            break
    changed = True
    while changed:
        changed = False
        for stem in ETHNIC_STEMS:
            if s.endswith(stem) and len(s) - len(stem) >= 2:
                s = s[: -len(stem)]
                changed = True
                break
    return s


def to_pinyin(short: str) -> str:
    if short in PINYIN_OVERRIDES and PINYIN_OVERRIDES[short]:
        return PINYIN_OVERRIDES[short]
    from pypinyin import Style, lazy_pinyin

    parts = lazy_pinyin(short, style=Style.NORMAL, v_to_u=False)
    out = "".join(parts).lower().replace("ü", "v")
    if not out.isascii() or not out.isalpha():
        raise SystemExit(f"non-ascii pinyin for {short!r}: {out!r}")
    return out


def polyphonic_chars(short: str) -> list[str]:
    from pypinyin import Style, pinyin

    res = []
    for ch, readings in zip(short, pinyin(short, style=Style.NORMAL, heteronym=True)):
        if len(set(readings)) > 1:
            res.append(f"{ch}({'/'.join(sorted(set(readings)))})")
    return res


def build(cpca_csv: str) -> list[dict]:
    with open(cpca_csv, encoding="utf-8", newline="") as f:
        src = list(csv.DictReader(f))
    rows12 = {}
    for r in src:
        code = r["adcode"].strip()
        if len(code) != 12 or not code.isdigit():
            raise SystemExit(f"unexpected adcode {code!r}")
        rows12[code] = r

    provinces = [r for c, r in rows12.items() if c.endswith("0000000000")]
    prefectures = [r for c, r in rows12.items() if c.endswith("00000000") and not c.endswith("0000000000")]
    print(f"source: {len(src)} rows, {len(provinces)} province rows, {len(prefectures)} prefecture-level rows")

    out: list[dict] = []
    for r in provinces:
        code = int(r["adcode"][:6])
        if code not in PROVINCES:
            raise SystemExit(f"unknown province {code} {r['name']}")
        short, py, iso = PROVINCES[code]
        out.append(dict(adcode=code, level="province", province=code, name=r["name"], short_name=short,
                        pinyin=py, iso=iso, longitude=r["longitude"], latitude=r["latitude"]))
    missing = set(PROVINCES) - {int(r["adcode"][:6]) for r in provinces}
    if missing:
        raise SystemExit(f"provinces missing from source: {sorted(missing)}")

    dropped, groups = [], []
    city_src = []
    for r in prefectures:
        code = int(r["adcode"][:6])
        prov = code // 10000 * 10000
        if prov in MUNICIPALITIES:
            if r["name"] not in MUNICIPAL_PSEUDO_NAMES:
                raise SystemExit(f"unexpected municipality row {code} {r['name']}")
            dropped.append(f"{code} {r['name']}")
            continue
        if r["name"] in DIRECT_GROUP_NAMES:
            members = sorted(
                (m for c, m in rows12.items()
                 if c[:4] == r["adcode"][:4] and c[4:6] != "00" and c.endswith("000000")),
                key=lambda m: m["adcode"],
            )
            groups.append((code, r["name"], [f"{m['adcode'][:6]} {m['name']}" for m in members]))
            city_src.extend(members)
            continue
        if prov in (710000, 810000, 820000):
            raise SystemExit(f"unexpected city row for HK/MO/TW: {code} {r['name']} - decide and document")
        city_src.append(r)

    for r in city_src:
        code = int(r["adcode"][:6])
        prov = code // 10000 * 10000
        lon, lat = r["longitude"], r["latitude"]
        if not lon or not lat:
            if code not in COORD_OVERRIDES:
                raise SystemExit(f"no coordinates for {code} {r['name']}")
            lon, lat = COORD_OVERRIDES[code]
        short = SHORT_NAME_OVERRIDES.get(code) or city_short_name(r["name"])
        out.append(dict(adcode=code, level="city", province=prov, name=r["name"], short_name=short,
                        pinyin=to_pinyin(short), iso="", longitude=lon, latitude=lat))

    out.sort(key=lambda d: d["adcode"])

    print("dropped municipal pseudo-rows:", ", ".join(sorted(dropped)))
    for code, name, members in sorted(groups):
        print(f"replaced group {code} {name} by {len(members)} members: {', '.join(members)}")
    for p in (710000, 810000, 820000):
        n = sum(1 for d in out if d["province"] == p and d["level"] == "city")
        print(f"city rows for {p} {PROVINCES[p][0]}: {n}")
    return out


def report(out: list[dict]) -> None:
    by_py = collections.defaultdict(list)
    by_short = collections.defaultdict(list)
    for d in out:
        by_py[d["pinyin"]].append(f"{d['adcode']} {d['short_name']}")
        by_short[d["short_name"]].append(f"{d['adcode']} {d['name']}")
    print("\npinyin shared by more than one place:")
    for k in sorted(by_py):
        if len(by_py[k]) > 1:
            print(f"  {k}: {'; '.join(by_py[k])}")
    print("\nshort names shared by more than one place:")
    for k in sorted(by_short):
        if len(by_short[k]) > 1:
            print(f"  {k}: {'; '.join(by_short[k])}")
    print("\ncity short names with polyphonic characters (pinyin used; check):")
    for d in out:
        if d["level"] == "city":
            poly = polyphonic_chars(d["short_name"])
            if poly:
                src = "override" if d["short_name"] in PINYIN_OVERRIDES else "pypinyin"
                print(f"  {d['adcode']} {d['short_name']} -> {d['pinyin']} [{src}] {' '.join(poly)}")


def verify(path: str) -> None:
    with open(path, encoding="utf-8", newline="") as f:
        rd = csv.DictReader(f)
        assert rd.fieldnames == HEADER, rd.fieldnames
        rows = list(rd)
    codes = [int(r["adcode"]) for r in rows]
    assert len(codes) == len(set(codes)), "duplicate adcodes"
    provs = {int(r["adcode"]) for r in rows if r["level"] == "province"}
    assert len(provs) == 34, len(provs)
    for r in rows:
        assert len(r["adcode"]) == 6 and r["level"] in ("province", "city")
        assert int(r["province"]) in provs, r
        if r["level"] == "province":
            assert r["province"] == r["adcode"] and r["iso"].startswith("CN-")
        else:
            assert r["iso"] == "" and int(r["adcode"]) // 10000 * 10000 == int(r["province"])
        assert r["pinyin"].isascii() and r["pinyin"].isalpha() and r["pinyin"] == r["pinyin"].lower(), r
        float(r["longitude"]), float(r["latitude"])
        assert r["short_name"] and r["name"]
    for m in MUNICIPALITIES:
        assert not any(int(r["province"]) == m and r["level"] == "city" for r in rows)
    ncity = sum(1 for r in rows if r["level"] == "city")
    print(f"\nverified {path}: {len(rows)} rows = {len(provs)} provinces + {ncity} cities")


def main(argv=None) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpca-csv", required=True, help="path to cpca/resources/adcodes.csv (cpca 0.5.5)")
    ap.add_argument("--out", default=os.path.join(here, "..", "rules", "taxonomy", "geo.csv"))
    a = ap.parse_args(argv)
    out = build(a.cpca_csv)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADER, lineterminator="\n")
        w.writeheader()
        w.writerows(out)
    report(out)
    verify(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
