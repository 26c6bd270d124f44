// Small DOM and number helpers shared by the reach page's modules.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
export const tid = (id) => $(`[data-testid="${id}"]`);

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "testid") e.dataset.testid = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function bilingual(zh, en) {
  return [zh, " ", el("small", {}, en)];
}

// numbers: en-US separators; 万/亿 only for the secondary Chinese reading
export function fmt(n) {
  return typeof n === "number" ? Math.round(n).toLocaleString("en-US") : "—";
}
export function fmtCn(n) {
  if (typeof n !== "number" || n < 1e4) return "";
  if (n >= 1e8) return `${+(n / 1e8).toFixed(2)} 亿`;
  if (n >= 1e4) return `${+(n / 1e4).toFixed(1)} 万`;
  return String(n);
}

export function splitLabel(label) {
  const i = label.indexOf(" ");
  return i < 0 ? [label] : [label.slice(0, i), " ", el("small", {}, label.slice(i + 1))];
}
export function pct(x) {
  const p = 100 * x;
  return `${p >= 10 || p === 0 ? p.toFixed(0) : p >= 1 ? p.toFixed(1) : p.toPrecision(2)}%`;
}

const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}
