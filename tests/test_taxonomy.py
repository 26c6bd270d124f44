"""The taxonomy: places and how names resolve, the geo leaf domain, tags, scenes."""

from __future__ import annotations

import pytest

from targeting.errors import TargetingError
from targeting.taxonomy import UNKNOWN, Taxonomy, gender_index


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return Taxonomy.load("rules/taxonomy")


# --------------------------------------------------------------- provinces
def test_34_provincial_units(tx: Taxonomy) -> None:
    provinces = tx.provinces
    assert len(provinces) == 34
    # 23 provinces + 5 autonomous regions + 4 municipalities + 2 SARs, by name
    names = {tx.places[p].short_name for p in provinces}
    assert {"北京", "上海", "天津", "重庆", "香港", "澳门", "台湾", "广东", "新疆", "西藏"} <= names
    assert all(tx.places[p].iso.startswith("CN-") for p in provinces)
    assert len({tx.places[p].iso for p in provinces}) == 34


def test_every_city_belongs_to_a_known_province(tx: Taxonomy) -> None:
    cities = [a for a, p in tx.places.items() if p.level == "city"]
    assert cities, "no city rows"
    for a in cities:
        assert tx.places[a].province in tx.provinces
        assert a // 10000 * 10000 == tx.places[a].province


def test_municipalities_and_sars_have_no_city_rows(tx: Taxonomy) -> None:
    # 市辖区 / 县 pseudo rows are dropped: a municipality is a leaf province
    for p in (110000, 120000, 310000, 500000, 810000, 820000, 710000):
        assert tx.cities_of(p) == []
    assert 110100 not in tx.places and 500200 not in tx.places


# ---------------------------------------------------------------- resolving
@pytest.mark.parametrize(
    "name, adcode",
    [
        (440000, 440000),  # adcode as int
        ("440300", 440300),  # adcode as text
        ("广东省", 440000),  # Chinese full name
        ("广东", 440000),  # Chinese short name
        ("guangdong", 440000),  # pinyin
        ("GuangDong", 440000),  # pinyin is case-insensitive
        (" 深圳 ", 440300),  # surrounding space ignored
        ("深圳市", 440300),  # city full name
        ("shenzhen", 440300),  # city pinyin
        ("cn-gd", 440000),  # ISO 3166-2 code
        ("吉林省", 220000),  # full name disambiguates the province ...
        ("吉林市", 220200),  # ... from the city of the same short name
        ("苏州市", 320500),  # full name of one of the two suzhou
        ("宿州", 341300),  # the other suzhou by Chinese short name
        ("shaanxi", 610000),  # 陕西, official spelling
        ("shanxi", 140000),  # 山西
        ("内蒙古", 150000),  # autonomous region short name
        ("xianggang", 810000),  # Hong Kong
        ("恩施", 422800),  # ethnic autonomous prefecture short name
    ],
    ids=lambda v: str(v),
)
def test_resolve_place(tx: Taxonomy, name: object, adcode: int) -> None:
    assert tx.resolve_place(name, "geo") == adcode


@pytest.mark.parametrize(
    "name, candidates",
    [
        ("吉林", [220000, 220200]),  # 吉林省 / 吉林市
        ("海南", [460000, 632500]),  # 海南省 / 海南藏族自治州 (青海)
        ("suzhou", [320500, 341300]),  # 苏州 / 宿州
        ("taizhou", [321200, 331000]),  # 泰州 / 台州
        ("jilin", [220000, 220200]),  # the pinyin is ambiguous too
        ("fuzhou", [350100, 361000]),  # 福州 / 抚州
    ],
    ids=["jilin-zh", "hainan-zh", "suzhou", "taizhou", "jilin-pinyin", "fuzhou"],
)
def test_ambiguous_name_lists_candidates_with_adcodes(
    tx: Taxonomy, name: str, candidates: list[int]
) -> None:
    with pytest.raises(TargetingError) as ei:
        tx.resolve_place(name, "targeting.geo.include[0]")
    err = ei.value
    assert err.code == "ambiguous_place"
    assert err.path == "targeting.geo.include[0]"
    for a in candidates:
        assert str(a) in err.message
        assert tx.full_name(a) in err.message  # with a readable name, not just digits


@pytest.mark.parametrize(
    "name, near",
    [
        ("guangdon", "guangdong"),  # missing letter
        ("shenzen", "shenzhen"),  # common misspelling
        ("hangzou", "hangzhou"),  # missing h
        ("Beijng", "beijing"),  # transposition, any case
    ],
    ids=["guangdon", "shenzen", "hangzou", "beijng"],
)
def test_unknown_name_suggests_closest(tx: Taxonomy, name: str, near: str) -> None:
    with pytest.raises(TargetingError) as ei:
        tx.resolve_place(name, "geo.city")
    assert ei.value.code == "unknown_place"
    assert ei.value.path == "geo.city"
    assert "closest" in ei.value.message and near in ei.value.message


@pytest.mark.parametrize(
    "value",
    [
        999999,  # no such adcode
        "440399",  # well-formed but not a prefecture
        "atlantis",  # nothing close at all
        True,  # bool is not an adcode
        3.5,  # nor is a float
        None,  # nor nothing
        ["广东"],  # a list is not a place
    ],
    ids=["int", "digits", "name", "bool", "float", "none", "list"],
)
def test_unresolvable_values_raise_with_path(tx: Taxonomy, value: object) -> None:
    with pytest.raises(TargetingError) as ei:
        tx.resolve_place(value, "p")
    assert ei.value.path == "p"


def test_unknown_adcode_hints_places_in_that_province(tx: Taxonomy) -> None:
    with pytest.raises(TargetingError, match="440000"):
        tx.resolve_place(440399, "p")


# ----------------------------------------------------------------- geo leaves
def test_geo_domain_is_unknown_plus_provinces_plus_cities(tx: Taxonomy) -> None:
    n_cities = sum(1 for p in tx.places.values() if p.level == "city")
    assert tx.geo_domain == 1 + 34 + n_cities
    assert tx.geo_leaves[0] == (0, 0)
    assert len(set(tx.geo_leaves)) == tx.geo_domain


@pytest.mark.parametrize(
    "province, city, leaf",
    [
        (None, None, (0, 0)),  # nothing known: the unknown leaf
        (440000, None, (440000, 0)),  # province known, city unknown
        (None, 440300, (440000, 440300)),  # city alone implies its province
        (440000, 440300, (440000, 440300)),  # consistent pair
        (None, 110000, (110000, 0)),  # 北京 as a city: the municipality's province leaf
        (110000, None, (110000, 0)),  # same leaf as a province
        (None, 810000, (810000, 0)),  # Hong Kong as a city
        (0, 0, (0, 0)),  # zeros mean unknown (Parquet nulls filled with 0)
    ],
    ids=["unknown", "province", "city", "pair", "bj-as-city", "bj-as-province", "hk-as-city", "zeros"],
)
def test_geo_leaf(tx: Taxonomy, province: int | None, city: int | None, leaf: tuple[int, int]) -> None:
    assert tx.geo_leaves[tx.geo_leaf(province, city)] == leaf


@pytest.mark.parametrize(
    "province, city, path",
    [
        (None, 999900, "geo.city"),  # unknown city adcode
        (110000, 440300, "geo.city"),  # 深圳 is not in 北京
        (440300, None, "geo.province"),  # a city given as province
        (990000, None, "geo.province"),  # unknown province
    ],
    ids=["unknown-city", "city-not-in-province", "city-as-province", "unknown-province"],
)
def test_geo_leaf_rejects(tx: Taxonomy, province: int | None, city: int | None, path: str) -> None:
    with pytest.raises(TargetingError) as ei:
        tx.geo_leaf(province, city)
    assert ei.value.path == path


def test_province_leaves_cover_its_cities_and_the_city_unknown_leaf(tx: Taxonomy) -> None:
    gd = tx.place_leaves(440000)
    cities = tx.cities_of(440000)
    assert len(cities) == 21  # 广东's prefecture cities
    assert gd == {tx.geo_leaf(440000, None)} | {tx.geo_leaf(None, c) for c in cities}
    assert tx.place_leaves(440300) == {tx.geo_leaf(None, 440300)}
    assert tx.place_leaves(110000) == {tx.geo_leaf(None, 110000)}  # municipality: one leaf
    # provinces partition the known leaves
    union: set[int] = set()
    for p in tx.provinces:
        leaves = tx.place_leaves(p)
        assert not union & leaves
        union |= leaves
    assert union == set(range(1, tx.geo_domain))


# --------------------------------------------------------- tags and scenes
@pytest.mark.parametrize(
    "tag, label",
    [
        ("high_end", "高端人士"),
        ("white_collar_women", "白领丽人"),
        ("trendsetter", "潮流潮儿"),
        ("car_lover", "爱车一族"),
        ("investor", "投资理财"),
        ("it_fan", "IT迷"),
    ],
    ids=lambda v: v,
)
def test_contract_tags_with_labels(tx: Taxonomy, tag: str, label: str) -> None:
    assert tx.tags[tag] == label
    assert tx.check_tag(tag, "t") == tag
    assert tx.check_tag(label, "t") == tag  # a tag may also be named by its label


def test_at_least_20_tags_with_chinese_labels(tx: Taxonomy) -> None:
    assert len(tx.tags) >= 20
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in label) for label in tx.tags.values())


def test_unknown_tag_suggests_closest(tx: Taxonomy) -> None:
    with pytest.raises(TargetingError) as ei:
        tx.check_tag("car_lovers", "tags.any[0]")
    assert ei.value.code == "unknown_tag" and ei.value.path == "tags.any[0]"
    assert "car_lover" in ei.value.message


def test_scenes_and_domains(tx: Taxonomy) -> None:
    assert list(tx.scenes) == ["home", "office", "internet_cafe", "campus", "on_the_go"]
    assert tx.scene_index() == {"home": 1, "office": 2, "internet_cafe": 3, "campus": 4, "on_the_go": 5}
    assert tx.scene_domain == 6
    with pytest.raises(TargetingError) as ei:
        tx.check_scene("cafe", "scene")
    assert ei.value.path == "scene" and "internet_cafe" in ei.value.message


@pytest.mark.parametrize(
    "value, index",
    [("male", 1), ("female", 2), (None, UNKNOWN), ("other", UNKNOWN)],
    ids=["male", "female", "none", "other"],
)
def test_gender_index(value: str | None, index: int) -> None:
    assert gender_index(value) == index


def test_categories_have_priors(tx: Taxonomy) -> None:
    need = {"auto", "finance", "fashion", "tech", "travel", "food", "games", "education", "health", "retail"}
    assert need <= set(tx.categories)
    assert all(0 < c.prior_ctr < 0.1 for c in tx.categories.values())
