// Reach preview page: build a targeting spec by clicking, watch POST /v1/reach answer.
// Plain DOM, no framework, no build step. State lives in `state`; every change calls
// changed(), which re-renders the controls and the spec at once and asks the API for
// the reach after a 250 ms pause (older answers are dropped by sequence number).
import { $, $$, bilingual, el, fmt, fmtCn, pct, tid } from "./dom.js";
import { DAYS, prettyJSON, timeSpec, toYAML } from "./spec.js";
import { ageRows, genderRows, provinceRows, renderBars, renderFunnel, renderMap } from "./charts.js";

const DEBOUNCE_MS = 250;
const KEY_STORAGE = "targeting.apiKey";
const AGE_PRESETS = [[18, 24], [25, 34], [35, 44], [45, 54], [55, 64], [65, 120]];
const EVENT_LABELS = { visit: "访问 visited", click: "点击 clicked", add_to_cart: "加购 added to cart",
  purchase: "购买 purchased" };
const GROUP_LABELS = { lifestyle: "生活方式 Lifestyle", interest: "兴趣爱好 Interests",
  life_stage: "人生阶段 Life stage", consumption: "消费意向 Intent" };
const SECTIONS = ["geo", "time", "gender", "age", "tags", "scene", "retargeting"];

const state = {
  taxonomy: null,
  places: new Map(), // adcode -> {adcode, name, short_name, pinyin, province, level, cities?}
  geo: new Map(), // adcode -> "include" | "exclude"
  geoMode: "include",
  focus: null, // province whose cities are shown
  search: "",
  grid: DAYS.map(() => new Array(24).fill(false)),
  gender: "",
  ages: [], // [[min, max] as typed (numbers or null)]
  tags: new Map(), // tag id -> "any" | "all" | "none"
  tagMode: "any",
  scenes: new Set(),
  rt: [], // [{kind: "any"|"none", event, within_days}]
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  seq: 0,
  timer: 0,
};

// --------------------------------------------------------------- the spec
function ageValue(v) {
  const n = Number(v);
  return v === "" || v === null || !Number.isFinite(n) ? null : n;
}

function buildSpec() {
  const spec = {};
  const pick = (mode) => [...state.geo].filter(([, m]) => m === mode).map(([a]) => a).sort((a, b) => a - b);
  const inc = pick("include");
  const exc = pick("exclude");
  if (inc.length || exc.length) {
    spec.geo = {};
    if (inc.length) spec.geo.include = inc;
    if (exc.length) spec.geo.exclude = exc;
  }
  const t = timeSpec(state.grid);
  if (t) spec.time = t;
  if (state.gender) spec.gender = state.gender;
  if (state.ages.length) spec.age = state.ages.map(([lo, hi]) => [ageValue(lo), ageValue(hi)]);
  const order = state.taxonomy ? state.taxonomy.tags.map((t) => t.id) : [...state.tags.keys()];
  const tags = {};
  for (const mode of ["any", "all", "none"]) {
    const ids = order.filter((id) => state.tags.get(id) === mode);
    if (ids.length) tags[mode] = ids;
  }
  if (Object.keys(tags).length) spec.tags = tags;
  if (state.scenes.size) {
    const sorder = state.taxonomy ? state.taxonomy.scenes.map((s) => s.id) : [...state.scenes];
    spec.scene = { include: sorder.filter((s) => state.scenes.has(s)) };
  }
  if (state.key && state.rt.length) {
    const rt = {};
    for (const kind of ["any", "none"]) {
      const rules = state.rt.filter((r) => r.kind === kind)
        .map((r) => ({ event: r.event, within_days: ageValue(r.within_days) }));
      if (rules.length) rt[kind] = rules;
    }
    spec.retargeting = rt;
  }
  return spec;
}

// ------------------------------------------------------------ API access
function headers() {
  const h = { "Content-Type": "application/json" };
  if (state.key) h.Authorization = `Bearer ${state.key}`;
  return h;
}

async function loadTaxonomy() {
  const list = tid("geo-list");
  list.className = "geo-list searching"; // one column for the message until the places arrive
  list.replaceChildren(el("div", { class: "empty pad" }, "加载中… loading places"));
  let r;
  let body;
  try {
    r = await fetch("/v1/taxonomy", { headers: headers() });
    body = await r.json().catch(() => null);
  } catch (e) {
    body = { error: { message: `服务不可达 · service unreachable (${e.message})` } };
  }
  if (!r || !r.ok || !body || body.error) {
    const err = (body && body.error) || { message: `HTTP ${r.status}` };
    const needKey = r && r.status === 401;
    const text = needKey
      ? `需要 API 密钥 · this service needs an API key: enter it at the top right (${err.message})`
      : `无法加载分类 · could not load the taxonomy: ${err.message}`;
    showBanner(text);
    list.replaceChildren(el("div", { class: "empty pad" }, text));
    if (needKey) { keyState(false, err.message); tid("api-key").focus(); }
    return;
  }
  state.taxonomy = body;
  for (const p of body.provinces) {
    state.places.set(p.adcode, { ...p, level: "province", province: p.adcode });
    for (const c of p.cities) state.places.set(c.adcode, { ...c, level: "city", province: p.adcode });
  }
  state.focus = body.provinces.length ? body.provinces[0].adcode : null;
  renderTaxonomyControls();
}

function changed() {
  renderControls();
  const spec = buildSpec();
  renderSpec(spec);
  const res = tid("results");
  state.seq++; // answers to older specs still in flight are now stale
  res.dataset.state = "loading";
  tid("reach-status").textContent = "计算中… updating";
  clearTimeout(state.timer);
  state.timer = setTimeout(() => fetchReach(spec), DEBOUNCE_MS);
}

async function fetchReach(spec) {
  const seq = ++state.seq;
  const body = { targeting: spec, breakdown: ["province", "age", "gender"] };
  if (!state.noFunnel) body.funnel = true;
  const specText = JSON.stringify(spec);
  let r;
  let answer;
  try {
    r = await fetch("/v1/reach", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    answer = await r.json().catch(() => null);
  } catch (e) {
    if (seq === state.seq) showError(specText, { message: `服务不可达 · service unreachable (${e.message})` });
    return;
  }
  if (seq !== state.seq) return; // a newer spec is on its way
  if (r.status === 400 && answer && answer.error && answer.error.path === "funnel" && !state.noFunnel) {
    // a service without the funnel option: ask again without it, and say so in the funnel card
    console.warn("this service does not take the funnel option:", answer.error.message);
    state.noFunnel = true;
    fetchReach(spec);
    return;
  }
  if (!r.ok || !answer || answer.error) {
    const err = (answer && answer.error) || { message: `HTTP ${r.status}` };
    if (r.status === 401 || r.status === 403) keyState(false, err.message);
    showError(specText, err);
    return;
  }
  renderResults(specText, answer);
}

// -------------------------------------------------------------- results
function clearErrors() {
  for (const p of $$(".field-error")) { p.hidden = true; p.textContent = ""; }
  for (const c of $$(".card.has-error")) c.classList.remove("has-error");
  for (const r of $$(".age-row.bad")) r.classList.remove("bad");
  const b = tid("error-banner");
  b.hidden = true;
  b.textContent = "";
}
function showBanner(text) {
  const b = tid("error-banner");
  b.hidden = false;
  b.textContent = text;
}

// Put the API's error next to the field its path names ("targeting.age[1]" -> the age card,
// second row); anything else goes to the banner above the results.
function showError(specText, err) {
  clearErrors();
  const res = tid("results");
  res.dataset.state = "error";
  res.dataset.spec = specText;
  tid("reach-status").textContent = "";
  const path = (err.path || "").replace(/^targeting\.?/, "");
  const section = path.split(/[.[]/)[0];
  const msg = [err.message || "error", err.path ? el("code", {}, err.path) : null];
  if (err.code === "unauthorized") msg.unshift("需要 API 密钥 · this service needs an API key: ");
  const slot = SECTIONS.includes(section) && $(`[data-error-for="${section}"]`);
  if (slot && !slot.parentElement.closest("[hidden]")) {
    slot.replaceChildren(...bilingualMsg(msg));
    slot.hidden = false;
    slot.closest(".card").classList.add("has-error");
    const m = path.match(/^age\[(\d+)\]/);
    if (m) { const row = $$(".age-row")[Number(m[1])]; if (row) row.classList.add("bad"); }
    showBanner("定向条件有误，见左侧标红处 · the spec has an error, see the highlighted field.");
  } else {
    const b = tid("error-banner");
    b.hidden = false;
    b.replaceChildren(...bilingualMsg(msg));
  }
}
function bilingualMsg(parts) {
  return parts.filter(Boolean).flatMap((p, i) => (i ? [" ", p] : [p]));
}

function renderResults(specText, a) {
  clearErrors();
  const res = tid("results");
  const users = tid("reach-users");
  if (a.below_threshold) users.replaceChildren(el("span", { class: "lt" }, "< 100"));
  else users.textContent = fmt(a.users);
  users.title = a.below_threshold ? "fewer than 100 users: the exact count is withheld" : "";
  const share = tid("reach-share");
  if (typeof a.users === "number" && typeof a.population === "number" && a.population > 0) {
    const cn = fmtCn(a.users);
    share.textContent = `${cn ? `≈ ${cn}人 · ` : ""}${pct(a.users / a.population)} of ${fmt(a.population)} users`;
  } else if (typeof a.population === "number") {
    share.textContent = `of ${fmt(a.population)} users`;
  } else {
    share.textContent = "";
  }
  const imp = a.est_daily_impressions;
  tid("est-impressions").textContent = imp === null || imp === undefined ? (a.below_threshold ? "< 100" : "—") : fmt(imp);
  tid("reach-status").textContent = fmtCn(imp) ? `≈ ${fmtCn(imp)}次 / day` : "per day";
  const bd = a.breakdown || {};
  renderBars(tid("breakdown-province"), provinceRows(bd.province, state.places), 10);
  renderMap(tid("geo-map"), state.taxonomy, bd.province, { places: state.places, picked: state.geo, onPick: toggleGeo });
  renderBars(tid("breakdown-age"), ageRows(bd.age));
  renderBars(tid("breakdown-gender"), genderRows(bd.gender));
  renderFunnel(tid("funnel"), a.funnel, state.noFunnel
    ? "此服务不支持漏斗 · this service does not offer the funnel option" : "未提供 · the API gave no funnel");
  res.dataset.spec = specText;
  res.dataset.state = "ready";
}

function placeName(a) {
  const p = state.places.get(Number(a));
  return p ? p.name : String(a);
}
function tagLabel(id) {
  const t = state.taxonomy && state.taxonomy.tags.find((x) => x.id === id);
  return t ? t.label : id;
}
function renderSpec(spec) {
  tid("spec-json").textContent = prettyJSON(spec);
  tid("spec-yaml").textContent = toYAML(spec, { placeName, tagLabel });
}

// --------------------------------------------------------------- geo
function norm(s) { return String(s || "").toLowerCase().replace(/[\s']/g, ""); }
function placeMatches(p, q) {
  return norm(p.name).includes(q) || norm(p.short_name).includes(q) || norm(p.pinyin).startsWith(q)
    || (q.length >= 3 && norm(p.pinyin).includes(q)) || String(p.adcode).startsWith(q);
}
function toggleGeo(adcode) {
  if (state.geo.get(adcode) === state.geoMode) state.geo.delete(adcode);
  else state.geo.set(adcode, state.geoMode);
  const p = state.places.get(adcode);
  if (p) state.focus = p.province; // show where the pick sits once the search is cleared
  changed();
}
function placeRow(p, { context = false } = {}) {
  const mode = state.geo.get(p.adcode) || "";
  const isProv = p.level === "province";
  const picked = isProv ? p.cities.filter((c) => state.geo.has(c.adcode)).length : 0;
  const row = el("div", {
    class: `place ${p.level} ${mode} ${isProv && state.focus === p.adcode && !state.search ? "focus" : ""} ${picked && !mode ? "partial" : ""}`,
    role: "treeitem", testid: `geo-${p.level}-${p.adcode}`, "data-adcode": p.adcode, title: `${p.name} · ${p.pinyin} · ${p.adcode}`,
  },
  el("button", { type: "button", class: "box", testid: `geo-toggle-${p.adcode}`, "aria-label": `toggle ${p.name}`,
    onclick: (ev) => { ev.stopPropagation(); toggleGeo(p.adcode); } }),
  el("span", { class: "nm" }, context ? p.name : p.short_name || p.name),
  context && !isProv ? el("span", { class: "of" }, placeName(p.province)) : null,
  isProv && picked ? el("span", { class: "cnt" }, String(picked)) : null,
  el("span", { class: "py" }, p.pinyin),
  isProv && !context ? el("span", { class: "chev" }, "›") : null);
  row.addEventListener("click", () => {
    if (isProv && !context && !state.search) { state.focus = p.adcode; renderGeo(); } else toggleGeo(p.adcode);
  });
  return row;
}
function renderGeo() {
  const tx = state.taxonomy;
  if (!tx) return;
  const list = tid("geo-list");
  const q = norm(state.search);
  if (q) {
    const hits = [...state.places.values()].filter((p) => placeMatches(p, q))
      .sort((a, b) => (a.level === b.level ? a.adcode - b.adcode : a.level === "province" ? -1 : 1));
    list.className = "geo-list searching";
    list.replaceChildren(hits.length
      ? el("div", { class: "geo-hits" }, hits.slice(0, 60).map((p) => placeRow(p, { context: true })))
      : el("div", { class: "empty pad" }, `没有匹配 · nothing matches “${state.search}”`));
  } else {
    list.className = "geo-list";
    const focus = state.places.get(state.focus);
    const left = el("div", { class: "geo-provinces" }, tx.provinces.map((p) => placeRow(state.places.get(p.adcode))));
    const right = el("div", { class: "geo-cities", testid: "geo-cities" });
    if (focus) {
      const mode = state.geo.get(focus.adcode);
      right.append(el("div", { class: "geo-cities-h" },
        el("strong", {}, focus.name), " ", el("small", {}, focus.pinyin),
        el("button", { type: "button", class: `btn small ${mode ? "on " + mode : ""}`, testid: `geo-whole-${focus.adcode}`,
          onclick: () => toggleGeo(focus.adcode) },
        mode ? `已${mode === "include" ? "包含" : "排除"}全省 · whole province ${mode}d` : `${state.geoMode === "include" ? "包含" : "排除"}全省 · ${state.geoMode} whole province`)));
      const cities = focus.cities.map((c) => placeRow(state.places.get(c.adcode)));
      right.append(cities.length ? el("div", { class: "city-grid" }, cities)
        : el("div", { class: "empty pad" }, "直辖/特别行政区，无下级地级市 · no prefecture-level cities"));
    }
    // rebuilding the panes must not lose the reader's place in them
    const [oldLeft, oldRight] = [$(".geo-provinces", list), $(".geo-cities", list)];
    const keep = [oldLeft ? oldLeft.scrollTop : 0, oldRight && renderGeo.shown === state.focus ? oldRight.scrollTop : 0];
    list.replaceChildren(left, right);
    [left.scrollTop, right.scrollTop] = keep;
    renderGeo.shown = state.focus;
    const f = $(".focus", left);
    if (f && renderGeo.scrolledTo !== state.focus) {
      // a newly focused province (e.g. picked from a search) is scrolled into the list's view
      if (f.offsetTop < left.scrollTop || f.offsetTop + f.offsetHeight > left.scrollTop + left.clientHeight) {
        left.scrollTop = f.offsetTop - 60;
      }
      renderGeo.scrolledTo = state.focus;
    }
  }
  const picked = tid("geo-picked");
  const chips = [...state.geo].map(([a, m]) => el("span", { class: `pick ${m}`, testid: `geo-chip-${a}` },
    el("small", {}, m === "include" ? "包含" : "排除"), " ", placeName(a),
    el("button", { type: "button", "aria-label": `remove ${placeName(a)}`, onclick: () => { state.geo.delete(a); changed(); } }, "×")));
  picked.replaceChildren(...(chips.length ? chips : [el("span", { class: "empty" }, "全国 · all of China (pick provinces or cities below)")]));
}

// ----------------------------------------------------------- day-parting
function buildGrid() {
  const g = tid("daypart-grid");
  g.append(el("div", { class: "hh corner" }));
  for (let h = 0; h < 24; h++) {
    g.append(el("div", { class: "hh", testid: `grid-hour-${h}`, title: `toggle ${h}:00–${h + 1}:00 on every day`,
      onclick: () => { const on = !state.grid.every((r) => r[h]); state.grid.forEach((r) => { r[h] = on; }); changed(); } }, String(h)));
  }
  DAYS.forEach(([id, zh, en], d) => {
    g.append(el("div", { class: "dl", testid: `grid-day-${id}`, title: `toggle all of ${en}`,
      onclick: () => { const on = !state.grid[d].every(Boolean); state.grid[d].fill(on); changed(); } }, zh, el("small", {}, en)));
    for (let h = 0; h < 24; h++) {
      g.append(el("div", { class: `cell ${d >= 5 ? "weekend" : ""}`, role: "gridcell", testid: `grid-cell-${d}-${h}`,
        "data-d": d, "data-h": h, title: `${en} ${h}:00–${h + 1}:00` }));
    }
  });
  // Drag paints the rectangle between the first cell and the current one; the first cell's
  // state decides whether the drag paints or erases.
  let drag = null;
  const cellAt = (x, y) => {
    const c = document.elementFromPoint(x, y);
    return c && c.classList.contains("cell") ? [Number(c.dataset.d), Number(c.dataset.h)] : null;
  };
  const apply = (to) => {
    const [d0, h0] = drag.from;
    const [d1, h1] = to;
    state.grid = drag.before.map((r) => r.slice());
    for (let d = Math.min(d0, d1); d <= Math.max(d0, d1); d++) {
      for (let h = Math.min(h0, h1); h <= Math.max(h0, h1); h++) state.grid[d][h] = drag.value;
    }
    renderGrid();
  };
  g.addEventListener("pointerdown", (ev) => {
    const at = cellAt(ev.clientX, ev.clientY);
    if (!at || ev.button !== 0) return;
    ev.preventDefault();
    drag = { from: at, value: !state.grid[at[0]][at[1]], before: state.grid.map((r) => r.slice()), last: at };
    apply(at);
  });
  window.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const at = cellAt(ev.clientX, ev.clientY);
    if (at && (at[0] !== drag.last[0] || at[1] !== drag.last[1])) { drag.last = at; apply(at); }
  });
  const end = () => { if (drag) { drag = null; changed(); } };
  window.addEventListener("pointerup", end);
  window.addEventListener("pointercancel", end);
}
function renderGrid() {
  for (const c of $$(".daypart .cell")) c.classList.toggle("on", state.grid[c.dataset.d][c.dataset.h]);
  const on = state.grid.flat().filter(Boolean).length;
  tid("grid-summary").textContent = on === 0 || on === 168
    ? "不限时段 · any time (drag across cells to paint; drag from a painted cell to erase)"
    : `已选 ${on} 小时/周 · ${on} of 168 hours a week, in the campaign's time zone (Asia/Shanghai by default). Time shapes impressions, not users.`;
}
function gridShortcut(which) {
  state.grid = DAYS.map((_, d) => new Array(24).fill(
    which === "all" || (which === "weekdays" && d < 5) || (which === "weekends" && d >= 5)));
  changed();
}

// ---------------------------------------------------------------- age
function renderAges() {
  const root = tid("age-ranges");
  const rows = state.ages.map(([lo, hi], i) => el("div", { class: "age-row", testid: `age-row-${i}` },
    el("input", { type: "number", min: 0, max: 120, step: 1, value: lo ?? "", testid: `age-min-${i}`, "aria-label": "min age",
      oninput: (ev) => { state.ages[i][0] = ageValue(ev.target.value); changedKeepFocus(); } }),
    "–",
    el("input", { type: "number", min: 0, max: 120, step: 1, value: hi ?? "", testid: `age-max-${i}`, "aria-label": "max age",
      oninput: (ev) => { state.ages[i][1] = ageValue(ev.target.value); changedKeepFocus(); } }),
    el("span", {}, "岁 ", el("small", {}, "years, inclusive")),
    el("button", { type: "button", class: "x", testid: `age-remove-${i}`, "aria-label": "remove range",
      onclick: () => { state.ages.splice(i, 1); changed(); } }, "×")));
  root.replaceChildren(...(rows.length ? rows : [el("div", { class: "empty" }, "不限年龄 · any age (add a range or pick a preset)")]));
}
// Typing in a number box must not rebuild the box under the cursor.
function changedKeepFocus() {
  state.skipAges = true;
  changed();
  state.skipAges = false;
}
function renderPresets() {
  const root = tid("age-presets");
  if (!root.childElementCount) {
    for (const [lo, hi] of AGE_PRESETS) {
      root.append(el("button", { type: "button", class: "btn small", testid: `age-preset-${lo}-${hi}`,
        "data-range": `${lo}-${hi}`, onclick: () => {
          const i = state.ages.findIndex(([a, b]) => a === lo && b === hi);
          if (i >= 0) state.ages.splice(i, 1); else state.ages.push([lo, hi]);
          changed();
        } }, hi >= 120 ? `${lo}+` : `${lo}-${hi}`));
    }
  }
  for (const b of $$("button", root)) {
    const [lo, hi] = b.dataset.range.split("-").map(Number);
    b.classList.toggle("on", state.ages.some(([a, c]) => a === lo && c === hi));
  }
}

// --------------------------------------------------------- tags, scenes
function renderTaxonomyControls() {
  const tx = state.taxonomy;
  const groups = new Map();
  for (const t of tx.tags) {
    if (!groups.has(t.group)) groups.set(t.group, []);
    groups.get(t.group).push(t);
  }
  const root = tid("tag-chips");
  root.replaceChildren(...[...groups].map(([g, tags]) => el("div", { class: "tag-group" },
    el("div", { class: "tag-group-h" }, GROUP_LABELS[g] || g || "其他 Other"),
    el("div", { class: "chips" }, tags.map((t) => el("button", {
      type: "button", class: "chip", testid: `tag-${t.id}`, "data-tag": t.id, title: t.id,
      onclick: () => {
        if (state.tags.get(t.id) === state.tagMode) state.tags.delete(t.id); else state.tags.set(t.id, state.tagMode);
        changed();
      },
    }, t.label))))));
  tid("scene-chips").replaceChildren(...tx.scenes.map((s) => el("button", {
    type: "button", class: "chip", testid: `scene-${s.id}`, "data-scene": s.id,
    onclick: () => { if (state.scenes.has(s.id)) state.scenes.delete(s.id); else state.scenes.add(s.id); changed(); },
  }, s.label, " ", el("small", {}, s.id.replace(/_/g, " ")))));
  changed();
}
function renderChips() {
  const badge = { any: "任一", all: "全部", none: "排除" };
  for (const c of $$("[data-tag]")) {
    const m = state.tags.get(c.dataset.tag) || "";
    c.className = `chip ${m}`;
    const b = $(".badge", c);
    if (m && !b) c.prepend(el("span", { class: "badge" }, badge[m]));
    else if (b && !m) b.remove();
    else if (b) b.textContent = badge[m];
  }
  for (const c of $$("[data-scene]")) c.classList.toggle("on", state.scenes.has(c.dataset.scene));
}

// ---------------------------------------------------------- retargeting
function renderRetargeting() {
  tid("retargeting").hidden = !state.key;
  const events = (state.taxonomy && state.taxonomy.events) || Object.keys(EVENT_LABELS);
  const rows = state.rt.map((r, i) => el("div", { class: "rt-row", testid: `rt-row-${i}` },
    select(`rt-kind-${i}`, [["any", "包含 who have"], ["none", "排除 who have not"]], r.kind, (v) => { r.kind = v; changed(); }),
    select(`rt-event-${i}`, events.map((e) => [e, EVENT_LABELS[e] || e]), r.event, (v) => { r.event = v; changed(); }),
    el("span", {}, "最近"),
    el("input", { type: "number", min: 1, max: 365, value: r.within_days ?? "", testid: `rt-days-${i}`, "aria-label": "within days",
      oninput: (ev) => { r.within_days = ageValue(ev.target.value); state.skipRt = true; changed(); state.skipRt = false; } }),
    el("span", {}, "天内 ", el("small", {}, "days")),
    el("button", { type: "button", class: "x", testid: `rt-remove-${i}`, "aria-label": "remove rule",
      onclick: () => { state.rt.splice(i, 1); changed(); } }, "×")));
  tid("rt-rules").replaceChildren(...(rows.length ? rows
    : [el("div", { class: "empty" }, "无再营销规则 · no retargeting rule")]));
}
function select(testid, options, value, onchange) {
  return el("select", { testid, onchange: (ev) => onchange(ev.target.value) },
    options.map(([v, label]) => el("option", { value: v, selected: v === value }, label)));
}

// -------------------------------------------------------------- api key
function keyState(ok, why) {
  const s = tid("key-state");
  tid("api-key-clear").hidden = !state.key;
  if (!state.key) {
    s.textContent = ok ? "未登录 · open demo" : "需要密钥 · key required";
    s.className = `keystate ${ok ? "" : "bad"}`;
    return;
  }
  s.textContent = ok ? `已使用密钥 · key …${state.key.slice(-4)}` : `密钥被拒 · key refused${why ? ": " + why : ""}`;
  s.className = `keystate ${ok ? "on" : "bad"}`;
}
function setKey(key) {
  state.key = key.trim();
  if (state.key) sessionStorage.setItem(KEY_STORAGE, state.key); else sessionStorage.removeItem(KEY_STORAGE);
  tid("api-key").value = state.key;
  keyState(true);
  if (!state.taxonomy) loadTaxonomy(); else changed();
}

// ------------------------------------------------------------- render
function renderControls() {
  for (const b of $$("[data-geo-mode]")) b.classList.toggle("on", b.dataset.geoMode === state.geoMode);
  for (const b of $$("[data-tag-mode]")) b.classList.toggle("on", b.dataset.tagMode === state.tagMode);
  for (const b of $$("[data-gender]")) b.classList.toggle("on", b.dataset.gender === state.gender);
  for (const b of $$("[data-spec-tab]")) b.classList.toggle("on", b.dataset.specTab === state.specTab);
  renderGeo();
  renderGrid();
  if (!state.skipAges) renderAges();
  renderPresets();
  renderChips();
  if (!state.skipRt) renderRetargeting();
}

function init() {
  state.specTab = "yaml";
  buildGrid();
  tid("api-key").value = state.key;
  keyState(true);
  tid("key-form").addEventListener("submit", (ev) => { ev.preventDefault(); setKey(tid("api-key").value); });
  tid("api-key-clear").addEventListener("click", () => setKey(""));
  for (const b of $$("[data-geo-mode]")) b.addEventListener("click", () => { state.geoMode = b.dataset.geoMode; renderControls(); });
  for (const b of $$("[data-tag-mode]")) b.addEventListener("click", () => { state.tagMode = b.dataset.tagMode; renderControls(); });
  for (const b of $$("[data-gender]")) b.addEventListener("click", () => { state.gender = b.dataset.gender; changed(); });
  for (const b of $$("[data-grid]")) b.addEventListener("click", () => gridShortcut(b.dataset.grid));
  tid("geo-search").addEventListener("input", (ev) => { state.search = ev.target.value; renderGeo(); });
  tid("geo-search").addEventListener("keydown", (ev) => {
    // Enter picks the first hit, as in any search-as-you-type picker.
    if (ev.key !== "Enter") return;
    ev.preventDefault();
    const first = $(".geo-list .place");
    if (first) { toggleGeo(Number(first.dataset.adcode)); }
  });
  tid("age-add").addEventListener("click", () => { state.ages.push([18, 35]); changed(); });
  tid("rt-add").addEventListener("click", () => { state.rt.push({ kind: "any", event: "visit", within_days: 30 }); changed(); });
  for (const b of $$("[data-spec-tab]")) {
    b.addEventListener("click", () => {
      state.specTab = b.dataset.specTab;
      tid("spec-yaml").hidden = state.specTab !== "yaml";
      tid("spec-json").hidden = state.specTab !== "json";
      renderControls();
    });
  }
  tid("copy-spec").addEventListener("click", copySpec);
  renderControls();
  renderSpec(buildSpec());
  for (const id of ["breakdown-province", "breakdown-age", "breakdown-gender"]) renderBars(tid(id), []);
  tid("funnel").replaceChildren(el("li", { class: "empty" }, "等待结果 · waiting for the first answer"));
  loadTaxonomy();
}

async function copySpec() {
  const text = tid(state.specTab === "json" ? "spec-json" : "spec-yaml").textContent;
  const btn = tid("copy-spec");
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const t = el("textarea", { style: "position:fixed;opacity:0" });
    t.value = text;
    document.body.append(t);
    t.select();
    document.execCommand("copy");
    t.remove();
  }
  btn.replaceChildren(...bilingual("已复制", "Copied"));
  setTimeout(() => btn.replaceChildren(...bilingual("复制", "Copy")), 1200);
}

init();
