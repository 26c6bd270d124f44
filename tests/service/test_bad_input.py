"""Bad input never gives a 5xx: a table of the classic mistakes, then a fuzz of
malformed bodies over every POST route. Each 4xx has the contract's error shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from fakes import RecordingAudience
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from svc import TestClient

from targeting import Engine
from targeting.request import REQUEST_FIELDS

JSON = {"content-type": "application/json"}


def assert_error(r: Any, status: int, code: str | None = None, path: str | None = "*") -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"code", "message", "path"} and err["message"]
    if code is not None:
        assert err["code"] == code, err
    if path != "*":
        assert err["path"] == path, err
    return err


def post(c: TestClient, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return c.post(url, content=content, headers=headers or JSON)


CASES = [
    # (url, body, status, code, path)
    ("/v1/decide", b"", 400, "empty_body", None),  # empty body
    ("/v1/decide", b"  \n", 400, "empty_body", None),  # only whitespace
    ("/v1/decide", b"{", 400, "invalid_json", None),  # truncated JSON
    ("/v1/decide", b"{'user_id': 'u'}", 400, "invalid_json", None),  # Python, not JSON
    ("/v1/decide", b"\xff\xfe{}", 400, "invalid_json", None),  # not UTF-8
    ("/v1/decide", b'{"user_id": NaN}', 400, "invalid_json", None),  # NaN is not JSON
    ("/v1/decide", [], 400, "invalid", None),  # an array
    ("/v1/decide", "u1", 400, "invalid", None),  # a string
    ("/v1/decide", None, 400, "invalid", None),  # null
    ("/v1/decide", {}, 400, "invalid", "user_id"),  # no user id
    ("/v1/decide", {"user_id": 7}, 400, "invalid", "user_id"),  # wrong type
    ("/v1/decide", {"user_id": "u", "foo": 1}, 400, "invalid", "foo"),  # unknown field
    ("/v1/decide", {"user_id": "u", "geo": {"city": "atlantis"}}, 400, "unknown_place", "geo.city"),
    ("/v1/decide", {"user_id": "u", "geo": {"town": 440300}}, 400, "invalid", "geo.town"),
    ("/v1/decide", {"user_id": "u", "geo": "广东"}, 400, "invalid", "geo"),
    ("/v1/decide", {"user_id": "u", "tags": ["golf_nut"]}, 400, "unknown_tag", "tags[0]"),
    ("/v1/decide", {"user_id": "u", "tags": "investor"}, 400, "invalid", "tags"),
    ("/v1/decide", {"user_id": "u", "age": -3}, 400, "invalid", "age"),
    ("/v1/decide", {"user_id": "u", "age": "old"}, 400, "invalid", "age"),
    ("/v1/decide", {"user_id": "u", "age": 30.5}, 400, "invalid", "age"),
    ("/v1/decide", {"user_id": "u", "age": True}, 400, "invalid", "age"),
    ("/v1/decide", {"user_id": "u", "gender": "x"}, 400, "invalid", "gender"),
    ("/v1/decide", {"user_id": "u", "scene": "moon"}, 400, "unknown_scene", "scene"),
    ("/v1/decide", {"user_id": "u", "ts": "2026-11-24T10:00:00"}, 400, "no_timezone", "ts"),
    ("/v1/decide", {"user_id": "u", "ts": "yesterday"}, 400, "invalid", "ts"),
    ("/v1/decide", {"user_id": "u", "limit": 0}, 400, "invalid", "limit"),
    ("/v1/decide", {"user_id": "u", "floor_cpm": -1}, 400, "invalid", "floor_cpm"),
    ("/v1/decide", {"user_id": "u", "explain": "yes"}, 400, "invalid", "explain"),
    ("/v1/decide/batch", {}, 400, "invalid", "requests"),
    ("/v1/decide/batch", {"requests": {}}, 400, "invalid", "requests"),
    ("/v1/decide/batch", {"requests": [], "x": 1}, 400, "invalid", "x"),
    ("/v1/decide/batch", {"requests": [{"user_id": "u"}] * 1001}, 413, "too_large", "requests"),
    ("/v1/impressions", {}, 400, "invalid", "impressions"),
    ("/v1/impressions", {"impressions": "x"}, 400, "invalid", "impressions"),
    ("/v1/impressions", {"impressions": [{"user_id": "u", "campaign_id": "acme-spring",
                                          "ts": "2026-11-24T10:00:00"}]}, 400, "no_timezone", "impressions[0].ts"),
    ("/v1/impressions", {"impressions": [{"user_id": "u", "campaign_id": "acme-spring", "price": -1}]},
     400, "invalid", "impressions[0].price"),
    ("/v1/events", {}, 400, "invalid", "events"),
    ("/v1/events", {"events": [], "more": 1}, 400, "invalid", "more"),
    ("/v1/reach", {}, 400, "invalid", "targeting"),
    ("/v1/reach", {"targeting": {"colour": "red"}}, 400, "invalid_spec", "targeting.colour"),
    ("/v1/reach", {"targeting": {"age": [[40, 30]]}}, 400, "invalid_spec", "targeting.age[0]"),
    ("/v1/reach", {"targeting": {"tags": {"any": ["nope"]}}}, 400, "invalid_spec", "targeting.tags.any[0]"),
    ("/v1/reach", {"targeting": {"geo": {"include": ["atlantis"]}}}, 400, "invalid_spec",
     "targeting.geo.include[0]"),
    ("/v1/reach", {"targeting": {}, "breakdown": "province"}, 400, "invalid", "breakdown"),
    ("/v1/reach", {"targeting": {}, "advertiser": 5}, 400, "invalid", "advertiser"),
    ("/v1/reach", {"targeting": {}, "x": 1}, 400, "invalid", "x"),
    ("/v1/audiences/export", {"targeting": {}, "format": "xlsx"}, 400, "invalid", "format"),
    ("/v1/audiences/export", {"targeting": {}, "hash_salt": 5}, 400, "invalid", "hash_salt"),
    ("/v1/campaigns/reload", {"rules": "/etc"}, 400, "invalid", "rules"),
]


@pytest.fixture
def c(make_client: Callable[..., TestClient], engine: Engine) -> TestClient:
    engine.audience = RecordingAudience()
    return make_client(bench=True)


@pytest.mark.parametrize("url,body,status,code,path", CASES,
                         ids=[f"{u} {orjson.dumps(b)[:40].decode() if not isinstance(b, bytes) else b[:20]!r}"
                              for u, b, *_ in CASES])
def test_bad_input_table(c: TestClient, url: str, body: Any, status: int, code: str, path: str | None) -> None:
    assert_error(post(c, url, body), status, code, path)


def test_deeply_nested_spec(c: TestClient) -> None:
    spec: dict[str, Any] = {}
    for _ in range(100):
        spec = {"any_of": [spec]}
    assert_error(post(c, "/v1/reach", {"targeting": spec}), 400, path="targeting")


def test_deeply_nested_json(c: TestClient) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    assert_error(post(c, "/v1/decide", b'{"user_id":"u","tags":[' + deep + b"]}"), 400)
    assert_error(post(c, "/v1/decide", b'{"user_id":"u","geo":{"city":' + deep + b"}}"), 400)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                   "application/xml"])
def test_wrong_content_type(c: TestClient, ctype: str) -> None:
    assert_error(post(c, "/v1/decide", {"user_id": "u"}, {"content-type": ctype}), 415, "unsupported_media_type")


def test_json_subtypes_and_charset_are_fine(c: TestClient) -> None:
    for ctype in ("application/json; charset=utf-8", "application/vnd.api+json", "APPLICATION/JSON"):
        assert post(c, "/v1/decide", {"user_id": "u"}, {"content-type": ctype}).status_code == 200


def test_oversized_body_refused_before_parsing(c: TestClient) -> None:
    big = b'{"user_id": "' + b"x" * (2 << 20) + b'"}'
    assert_error(post(c, "/v1/decide", big), 413, "too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield b'{"user_id": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    r = c.post("/v1/decide", content=chunks(), headers=JSON)
    assert_error(r, 413, "too_large")
    assert c.post("/v1/decide", json={"user_id": "u"}).status_code == 200  # still serving


def test_unknown_routes_and_methods(c: TestClient) -> None:
    assert_error(c.get("/v1/nope"), 404, "not_found")
    assert_error(c.get("/v1/decide"), 405, "method_not_allowed")
    assert_error(c.get("/v1/audiences/export/j1?download=maybe"), 422, "invalid", "download")


@pytest.mark.parametrize("ts", [1e300, -1e15, "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+14:00"],
                         ids=["huge", "negative", "year-9999", "year-1"])
def test_out_of_range_ts(c: TestClient, ts: Any) -> None:
    assert_error(post(c, "/v1/decide", {"user_id": "u", "ts": ts}), 400, path="ts")
    r = post(c, "/v1/decide/batch", {"requests": [{"user_id": "u", "ts": ts}]})
    assert r.status_code == 200 and r.json()["responses"][0]["error"]["path"] == "requests[0].ts"


@pytest.mark.parametrize("city", ["²", "٣", "１１００００", "½"],
                         ids=["superscript", "arabic-indic", "fullwidth", "fraction"])
def test_unicode_digit_places(c: TestClient, city: str) -> None:
    r = post(c, "/v1/decide", {"user_id": "u", "geo": {"city": city}})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"]["path"] == "geo.city"


# ----------------------------------------------------------------------------- fuzz
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # orjson refuses lone surrogates
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=False, allow_infinity=False), text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(text, inner, max_size=4)), max_leaves=12)
ts_values = st.one_of(text, st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), st.sampled_from(
    ["2026-11-24T10:00:00", "2026-11-24T10:00:00Z", "2026-13-01T00:00:00+08:00", "", "0001-01-01T00:00:00+14:00"]))
field_values = st.one_of(json_values, st.sampled_from(
    [440300, "深圳", "广东", "shenzhen", 999999, -1, "female", "investor", ["investor", 3], {"city": 440300},
     {"province": "440300", "city": 110000}, {"city": None}, 121, 0, "office"]))


@st.composite
def decide_like(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(sorted(REQUEST_FIELDS) + ["junk"]), max_size=6, unique=True))
    body = {k: (draw(ts_values) if k == "ts" else draw(field_values)) for k in keys}
    if draw(st.booleans()):
        body["user_id"] = draw(st.one_of(text, field_values))
    return body


spec_like = st.recursive(
    st.dictionaries(st.sampled_from(["geo", "time", "gender", "age", "tags", "scene", "retargeting", "x"]),
                    field_values, max_size=3),
    lambda inner: st.fixed_dictionaries({"any_of": st.lists(inner, max_size=3)}), max_leaves=6)

bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(orjson.dumps),
    decide_like().map(orjson.dumps),
    st.lists(decide_like(), max_size=4).map(lambda rs: orjson.dumps({"requests": rs})),
    st.lists(decide_like(), max_size=3).map(lambda rs: orjson.dumps({"impressions": rs})),
    st.lists(decide_like(), max_size=3).map(lambda rs: orjson.dumps({"events": rs})),
    st.fixed_dictionaries({"targeting": spec_like}, optional={
        "advertiser": field_values, "breakdown": field_values, "format": field_values}).map(orjson.dumps),
)
ROUTES = ["/v1/decide", "/v1/decide/batch", "/v1/impressions", "/v1/events", "/v1/reach",
          "/v1/audiences/export", "/v1/campaigns/reload", "/v1/noop"]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
@given(body=bodies, route=st.sampled_from(ROUTES))
def test_fuzz_never_5xx(c: TestClient, body: bytes, route: str) -> None:
    # the TestClient re-raises any unexpected exception, so a 5xx path fails loudly here
    r = c.post(route, content=body, headers=JSON)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) >= {"code", "message", "path"}
