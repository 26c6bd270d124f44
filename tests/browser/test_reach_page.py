"""The reach page in a real headless Chromium against a real `targeting serve`.

A person's path through the page: pick a province (by pinyin) and exclude a city
(by Chinese name), paint the day-part grid by dragging, set an age range and tags;
then the numbers the page shows must be exactly what ``POST /v1/reach`` answers for
the spec the page shows. Errors from the API appear next to the field they name.

``UPDATE_SCREENSHOT=1`` also writes the README's ``docs/reach-page.png``.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from browser_harness import AD_SERVER_KEY, ADVERTISER_KEY, REPO, Service

pytestmark = pytest.mark.browser


def tid(name: str) -> str:
    return f'[data-testid="{name}"]'


# The results panel says which spec its numbers answer (data-spec); the page has
# settled when that is the spec it shows and no request is pending.
SETTLED = """() => {
  const r = document.querySelector('[data-testid=results]');
  const s = document.querySelector('[data-testid=spec-json]').textContent;
  return r.dataset.state !== 'loading' && r.dataset.spec === JSON.stringify(JSON.parse(s));
}"""


def settle(page: Any) -> tuple[str, dict[str, Any]]:
    """(results state: ready | error, the spec the page shows as JSON); the YAML it
    shows must be the same spec."""
    page.wait_for_function(SETTLED)
    spec = json.loads(page.text_content(tid("spec-json")))
    assert yaml.safe_load(page.text_content(tid("spec-yaml"))) == spec
    return page.get_attribute(tid("results"), "data-state"), spec


def drag(page: Any, start: tuple[int, int], end: tuple[int, int]) -> None:
    """Press on grid cell (day, hour) ``start``, move across to ``end``, release."""

    def centre(day: int, hour: int) -> tuple[float, float]:
        cell = page.locator(tid(f"grid-cell-{day}-{hour}"))
        cell.scroll_into_view_if_needed()
        box = cell.bounding_box()
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    x0, y0 = centre(*start)
    x1, y1 = centre(*end)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=12)
    page.mouse.up()


def painted(page: Any) -> set[tuple[int, int]]:
    cells = page.eval_on_selector_all(
        ".daypart .cell.on", "cs => cs.map(c => [+c.dataset.d, +c.dataset.h])"
    )
    return {(d, h) for d, h in cells}


def watch_reach(page: Any) -> list[dict[str, Any]]:
    """A list that fills with the bodies of the page's POST /v1/reach calls, in order."""
    bodies: list[dict[str, Any]] = []

    def seen(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/v1/reach"):
            bodies.append(request.post_data_json)

    page.on("request", seen)
    return bodies


def bars(page: Any, testid: str) -> list[tuple[str, str]]:
    """(label, value) of each bar in a breakdown chart, top to bottom."""
    rows = page.locator(f"{tid(testid)} .bar")
    return [
        (r.locator(".lbl").text_content().strip(), r.locator(".val").text_content().strip())
        for r in rows.all()
    ]


def count(value: Any, below: bool) -> str:
    """A count as the page must print it: "< 100" under the threshold, else 12,000."""
    return "< 100" if below or value is None else f"{round(value):,}"


def assert_page_shows(
    page: Any, service: Service, sent: list[dict[str, Any]], key: str | None = None
) -> dict[str, Any]:
    """Ask the API for the last body the page sent; the page must show that answer."""
    state, spec = settle(page)
    body = sent[-1]
    assert body["targeting"] == spec, "the page previews a different spec than it shows"
    resp = service.post("/v1/reach", body, key)
    answer = resp.json()
    if resp.status_code != 200:
        assert state == "error"
        err = answer["error"]
        shown = " ".join(
            t
            for t in page.locator(
                ".field-error:visible, [data-testid=error-banner]:visible"
            ).all_text_contents()
        )
        assert err["message"] in shown
        return answer
    assert state == "ready"
    assert page.text_content(tid("reach-users")).strip() == count(
        answer["users"], answer["below_threshold"]
    )
    imp = answer.get("est_daily_impressions")
    assert page.text_content(tid("est-impressions")).strip() == (
        count(imp, answer["below_threshold"])
        if imp is not None or answer["below_threshold"]
        else "—"
    )
    return answer


def test_reach_shown_equals_api_answer_for_the_spec_shown(
    page: Any, service: Service, tmp_path: Path
) -> None:
    sent = watch_reach(page)
    page.goto(service.url + "/")
    page.wait_for_selector(tid("geo-toggle-440000"))
    assert settle(page) == ("ready", {})
    everyone = assert_page_shows(page, service, sent)

    # geo: include Guangdong found by pinyin, exclude Shenzhen found by its Chinese name
    page.fill(tid("geo-search"), "guangdong")
    page.click(tid("geo-toggle-440000"))
    page.click(tid("geo-mode-exclude"))
    page.fill(tid("geo-search"), "深圳")
    page.click(tid("geo-toggle-440300"))
    page.click(tid("geo-mode-include"))
    page.fill(tid("geo-search"), "")
    assert "广东" in page.text_content(tid("geo-chip-440000"))
    assert "深圳" in page.text_content(tid("geo-chip-440300"))

    # day-parting: one drag paints the Monday-Friday × 9:00-17:59 rectangle
    drag(page, (0, 9), (4, 17))
    assert painted(page) == {(d, h) for d in range(5) for h in range(9, 18)}

    # age 25-34 typed into the range boxes; tags: any white-collar women, none IT fans
    page.click(tid("age-add"))
    page.fill(tid("age-min-0"), "25")
    page.fill(tid("age-max-0"), "34")
    page.click(tid("tag-white_collar_women"))
    page.click(tid("tag-mode-none"))
    page.click(tid("tag-it_fan"))

    state, spec = settle(page)
    assert spec == {
        "geo": {"include": [440000], "exclude": [440300]},
        "time": {"days": ["weekdays"], "hours": ["9-17"]},
        "age": [[25, 34]],
        "tags": {"any": ["white_collar_women"], "none": ["it_fan"]},
    }
    answer = assert_page_shows(page, service, sent)
    assert state == "ready" and not answer["below_threshold"], (
        "the test population is too small for this spec"
    )
    assert answer["users"] < everyone["users"]
    # breakdowns: the bars are the API's cells; everyone counted is in Guangdong, aged 25-34
    bd = answer["breakdown"]
    assert bars(page, "breakdown-province") == [("广东", count(bd["province"]["440000"], False))]
    assert bars(page, "breakdown-age") == [
        ("未知" if band == "unknown" else band, count(n, n is None))
        for band, n in bd["age"].items()
    ]
    assert {band for band, n in bd["age"].items() if n is not None} == {"25-34"}
    gender_label = {"male": "男", "female": "女", "unknown": "未知"}
    assert bars(page, "breakdown-gender") == [
        (gender_label[g], count(n, n is None)) for g, n in bd["gender"].items()
    ]
    if answer.get("funnel"):  # each step's count, in the API's order
        shown = page.locator(f"{tid('funnel')} li .val").all_text_contents()
        assert len(shown) == len(answer["funnel"])
        for text, step in zip(shown, answer["funnel"]):
            assert text.startswith(count(step["users"], step["users"] is None)), (text, step)
    # the YAML names the places and tags for a human reader
    yaml_text = page.text_content(tid("spec-yaml"))
    assert "include: [440000]  # 广东省" in yaml_text and 'hours: ["9-17"]' in yaml_text

    shot = (
        REPO / "docs" / "reach-page.png"
        if os.environ.get("UPDATE_SCREENSHOT")
        else tmp_path / "reach-page.png"
    )
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # the copy button puts the spec shown (YAML tab by default, then JSON) on the clipboard
    page.click(tid("copy-spec"))
    assert yaml.safe_load(page.evaluate("navigator.clipboard.readText()")) == spec
    page.click(tid("spec-tab-json"))
    page.click(tid("copy-spec"))
    assert json.loads(page.evaluate("navigator.clipboard.readText()")) == spec
    page.click(tid("spec-tab-yaml"))

    # dragging from a painted cell erases: Wednesday 12:00-13:59 off, so the grid form is needed
    drag(page, (2, 12), (2, 13))
    _, spec = settle(page)
    assert spec["time"]["grid"][2] == "000000000111001111000000"
    assert spec["time"]["grid"][0] == "000000000111111111000000"
    assert_page_shows(page, service, sent)

    # an inverted age range: the API's error appears in the age card, naming the field
    page.fill(tid("age-min-0"), "40")
    state, spec = settle(page)
    assert state == "error" and spec["age"] == [[40, 34]]
    error = assert_page_shows(page, service, sent)["error"]
    assert error["path"] == "targeting.age[0]"
    assert page.is_visible(tid("error-age"))
    assert "targeting.age[0]" in page.text_content(tid("error-age"))
    page.fill(tid("age-min-0"), "25")
    assert settle(page)[0] == "ready"
    assert not page.is_visible(tid("error-age"))

    # a tiny audience is never counted exactly: retirees who are also 25-34
    page.click(tid("tag-mode-all"))
    page.click(tid("tag-retiree"))
    answer = assert_page_shows(page, service, sent)
    assert answer["below_threshold"] and page.text_content(tid("reach-users")).strip() == "< 100"


def _user_ids(profiles: Path, n: int) -> list[str]:
    table = (
        pq.read_table(profiles, columns=["user_id"])
        if profiles.is_file()
        else pq.ParquetDataset(profiles).read(columns=["user_id"])
    )
    return [str(u) for u in table.column("user_id").to_pylist()[:n]]


def test_advertiser_key_unlocks_retargeting(
    page: Any, auth_service: Service, profiles: Path
) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    events = [
        {"user_id": u, "advertiser": "acme-auto", "event": "visit", "ts": now}
        for u in _user_ids(profiles, 400)
    ]
    assert auth_service.post("/v1/events", {"events": events}, AD_SERVER_KEY).status_code == 200

    sent = watch_reach(page)
    page.goto(auth_service.url + "/")
    # with --auth nothing but /healthz answers without a key: the page says so and waits
    page.wait_for_selector(f"{tid('error-banner')}:visible")
    assert "key" in page.text_content(tid("error-banner")).lower()
    assert not page.is_visible(tid("retargeting"))

    page.fill(tid("api-key"), ADVERTISER_KEY)
    page.click(tid("api-key-save"))
    page.wait_for_selector(tid("geo-toggle-440000"))
    assert page.is_visible(tid("retargeting"))
    page.click(tid("rt-add"))
    page.select_option(tid("rt-event-0"), "visit")
    page.fill(tid("rt-days-0"), "7")
    _, spec = settle(page)
    assert spec == {"retargeting": {"any": [{"event": "visit", "within_days": 7}]}}
    answer = assert_page_shows(page, auth_service, sent, ADVERTISER_KEY)
    assert "error" not in answer, answer
    assert not answer["below_threshold"], "the 400 recorded visitors should be counted"

    # a bad window: the API's error sits in the retargeting card, naming the rule
    page.fill(tid("rt-days-0"), "0")
    state, _ = settle(page)
    error = assert_page_shows(page, auth_service, sent, ADVERTISER_KEY)["error"]
    assert state == "error" and error["path"] == "targeting.retargeting.any[0].within_days"
    assert error["path"] in page.text_content(tid("error-retargeting"))
    page.fill(tid("rt-days-0"), "7")
    assert settle(page)[0] == "ready"

    # the key lives in sessionStorage: a reload keeps it, signing out forgets it
    page.reload()
    page.wait_for_selector(tid("geo-toggle-440000"))
    assert page.input_value(tid("api-key")) == ADVERTISER_KEY
    assert page.is_visible(tid("retargeting"))
    page.click(tid("api-key-clear"))
    assert page.evaluate("sessionStorage.getItem('targeting.apiKey')") is None
    assert not page.is_visible(tid("retargeting"))


def test_shortcuts_demographics_and_scene(page: Any, service: Service) -> None:
    sent = watch_reach(page)
    page.goto(service.url + "/")
    page.wait_for_selector(tid("geo-toggle-440000"))

    # day-part shortcuts, then one hour column across the week
    page.click(tid("grid-weekends"))
    assert settle(page)[1] == {"time": {"days": ["weekends"]}}
    page.click(tid("grid-weekdays"))
    assert settle(page)[1] == {"time": {"days": ["weekdays"]}}
    page.click(tid("grid-hour-20"))
    weekend = "0" * 20 + "1" + "0" * 3
    assert settle(page)[1] == {"time": {"grid": ["1" * 24] * 5 + [weekend] * 2}}
    page.click(tid("grid-all"))
    assert settle(page)[1] == {}, "every hour of the week is no time constraint"
    page.click(tid("grid-clear"))
    assert painted(page) == set() and settle(page)[1] == {}

    # a whole province from the two-pane picker, then removed again by its chip
    page.click(tid("geo-province-110000"))
    page.click(tid("geo-whole-110000"))
    assert settle(page)[1] == {"geo": {"include": [110000]}}
    page.click(f"{tid('geo-chip-110000')} button")
    assert settle(page)[1] == {}
    # the bubble map picks in the current mode too: exclude Shanghai, then click it away
    page.click(tid("geo-mode-exclude"))
    page.click(tid("map-310000"))
    assert settle(page)[1] == {"geo": {"exclude": [310000]}}
    page.click(tid("map-310000"))
    page.click(tid("geo-mode-include"))
    assert settle(page)[1] == {}

    # men in two age bands (presets), online from home or the office
    page.click(tid("gender-male"))
    page.click(tid("age-preset-18-24"))
    page.click(tid("age-preset-35-44"))
    page.click(tid("scene-office"))
    page.click(tid("scene-home"))
    state, spec = settle(page)
    assert spec == {
        "gender": "male",
        "age": [[18, 24], [35, 44]],
        "scene": {"include": ["home", "office"]},
    }
    answer = assert_page_shows(page, service, sent)
    assert state == "ready" and not answer["below_threshold"]
    gender_label = {"male": "男", "female": "女", "unknown": "未知"}
    assert bars(page, "breakdown-gender") == [
        (gender_label[g], count(n, n is None)) for g, n in answer["breakdown"]["gender"].items()
    ]
    assert answer["breakdown"]["gender"]["female"] is None  # nobody else is counted

    # a preset clicked again removes its range; the typed boxes follow
    page.click(tid("age-preset-18-24"))
    _, spec = settle(page)
    assert spec["age"] == [[35, 44]]
    assert page.input_value(tid("age-min-0")) == "35"
    assert_page_shows(page, service, sent)
