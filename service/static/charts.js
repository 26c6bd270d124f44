// The results charts: breakdown bars, the funnel and the province bubble map,
// drawn from the advertiser-view reach answer (null = under the threshold of 100).
import { el, fmt, pct, splitLabel, svg } from "./dom.js";

export const GENDER_LABELS = { male: "男 Male", female: "女 Female", unknown: "未知 Unknown" };
export const CRITERION_LABELS = { all: "全部 All users", population: "全部 All users", geo: "地域 Geo",
  time: "时段 Time", gender: "性别 Gender", age: "年龄 Age", tags: "标签 Tags", "tags.any": "标签·任一 Tags any",
  "tags.all": "标签·全部 Tags all", "tags.none": "标签·排除 Tags none", scene: "场景 Scene",
  retargeting: "再营销 Retargeting", "retargeting.any": "再营销 Retargeting", "retargeting.none": "再营销·排除 RT none",
  any_of: "任一组合 any_of" };

export function entries(obj) {
  if (!obj) return [];
  if (Array.isArray(obj)) return obj.map((x) => [x.value ?? x.key, x.users]);
  return Object.entries(obj).map(([k, v]) => [k, v && typeof v === "object" ? v.users : v]);
}
const byUsers = (a, b) => (b[1] ?? 0) - (a[1] ?? 0);
export function provinceRows(obj, places) {
  return entries(obj).sort(byUsers).map(([k, v]) => {
    const p = places.get(Number(k));
    return { label: p ? p.short_name : k === "unknown" || k === "0" ? "未知" : k, title: p ? `${p.name} ${p.pinyin}` : k,
      users: v };
  });
}
// Age bands and genders keep the API's order (youngest first, unknown last).
export function ageRows(obj) {
  return entries(obj).map(([k, v]) => ({ label: k === "unknown" ? "未知" : k, title: k, users: v,
    cls: k === "unknown" ? "unknown" : "" }));
}
export function genderRows(obj) {
  return entries(obj).map(([k, v]) => ({ label: (GENDER_LABELS[k] || k).split(" ")[0], title: GENDER_LABELS[k] || k,
    users: v, cls: k }));
}
export function renderBars(root, rows, limit = Infinity) {
  rows = rows.slice(0, limit);
  if (!rows.length) { root.replaceChildren(el("div", { class: "empty" }, "无数据 · no data")); return; }
  const max = Math.max(1, ...rows.map((r) => r.users || 0));
  root.replaceChildren(...rows.map((r) => el("div", { class: `bar ${r.cls || ""}`, title: r.title },
    el("span", { class: "lbl" }, r.label),
    el("span", { class: "track" }, el("span", { class: "fill", style: `width:${(100 * (r.users || 0)) / max}%` })),
    el("span", { class: `val ${typeof r.users === "number" ? "" : "lt"}` },
      typeof r.users === "number" ? fmt(r.users) : "< 100"))));
}
// Each step's bar is the share of the previous step it keeps (the rest, in red, is what
// that criterion removes); the first step is the whole population.
export function renderFunnel(root, funnel, emptyText) {
  if (!Array.isArray(funnel) || !funnel.length) {
    root.replaceChildren(el("li", { class: "empty" }, emptyText));
    return;
  }
  let prev = null;
  root.replaceChildren(...funnel.map((f, i) => {
    const step = f.step ?? f.criterion; // {step, users} from targeting.audience
    const label = CRITERION_LABELS[step] || step;
    const users = typeof f.users === "number" ? f.users : null;
    const kept = i === 0 ? 1 : prev && users !== null ? Math.min(1, users / prev) : prev ? 0 : null;
    const removed = f.removed ?? (prev !== null && users !== null ? prev - users : null);
    const li = el("li", { "data-step": step, title: step },
      el("span", { class: "lbl" }, ...splitLabel(label)),
      el("span", { class: "track" },
        kept === null ? null : el("span", { class: "fill", style: `width:${100 * kept}%` }),
        kept === null || i === 0 ? null : el("span", { class: "cut", style: `width:${100 * (1 - kept)}%` })),
      el("span", { class: "val" }, users === null ? "< 100" : fmt(users),
        i > 0 && typeof removed === "number" && prev
          ? el("small", { class: "drop" }, ` −${pct(removed / prev)}`) : null));
    if (users !== null) prev = users;
    return li;
  }));
}
// Provinces as bubbles at their capitals' coordinates (equirectangular, squeezed by
// cos 35°), area proportional to the audience there; a click picks the province in
// the geo card's current mode. No map tiles or outlines: nothing to download.
export function renderMap(root, tx, cells, { places, picked, onPick }) {
  if (!tx) return;
  const provs = tx.provinces.filter((p) => p.longitude && p.latitude);
  if (!provs.length) { root.hidden = true; return; }
  const squeeze = Math.cos((35 * Math.PI) / 180);
  const lons = provs.map((p) => p.longitude);
  const lats = provs.map((p) => p.latitude);
  const [lon0, lon1] = [Math.min(...lons) - 2.5, Math.max(...lons) + 2.5];
  const [lat0, lat1] = [Math.min(...lats) - 1.5, Math.max(...lats) + 1.5];
  const W = 400;
  const scale = W / ((lon1 - lon0) * squeeze);
  const H = Math.round((lat1 - lat0) * scale);
  root.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const x = (lon) => (lon - lon0) * squeeze * scale;
  const y = (lat) => (lat1 - lat) * scale;
  const users = new Map(entries(cells).map(([k, v]) => [Number(k), v]));
  const max = Math.max(1, ...[...users.values()].map((v) => v || 0));
  const ranked = [...users].filter(([, v]) => typeof v === "number" && v > 0).sort((a, b) => b[1] - a[1])
    .map(([a]) => a);
  const radius = (n) => (typeof n === "number" && n > 0 ? 3 + 10 * Math.sqrt(n / max) : 2.6);
  const dots = provs.map((p) => {
    const n = users.get(p.adcode);
    const mode = picked.get(p.adcode) || "";
    return svg("g", { class: `pv ${mode} ${typeof n === "number" && n > 0 ? "has" : ""}`, "data-testid": `map-${p.adcode}`,
      onclick: () => onPick(p.adcode) },
    svg("circle", { cx: x(p.longitude).toFixed(1), cy: y(p.latitude).toFixed(1), r: radius(n).toFixed(1) }),
    svg("title", {}, `${p.name} ${p.pinyin}: ${typeof n === "number" ? fmt(n) : "< 100"}`));
  });
  // big bubbles first so small ones stay clickable on top
  dots.sort((a, b) => Number(b.firstChild.getAttribute("r")) - Number(a.firstChild.getAttribute("r")));
  // names of the biggest few, skipping any that would overlap a name already placed
  const placed = [];
  const labels = [];
  for (const a of ranked.slice(0, 8)) {
    const p = places.get(a);
    if (!p || !p.longitude) continue;
    const r = radius(users.get(a));
    const box = [x(p.longitude) + r + 2, y(p.latitude) - 7, 13.5 * p.short_name.length, 14];
    if (placed.some((b) => box[0] < b[0] + b[2] && b[0] < box[0] + box[2] && box[1] < b[1] + b[3] && b[1] < box[1] + box[3])) continue;
    placed.push(box);
    labels.push(svg("text", { x: box[0].toFixed(1), y: (box[1] + 11.5).toFixed(1) }, p.short_name));
    if (placed.length >= 5) break;
  }
  root.replaceChildren(...dots, ...labels);
}
