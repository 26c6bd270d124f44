// The spec the page shows: the day-part grid as the language's time forms, and the
// spec written out as JSON and YAML. Pure functions, no DOM.

export const DAYS = [["mon", "周一", "Mon"], ["tue", "周二", "Tue"], ["wed", "周三", "Wed"], ["thu", "周四", "Thu"],
  ["fri", "周五", "Fri"], ["sat", "周六", "Sat"], ["sun", "周日", "Sun"]];

// grid: 7 rows (Monday first) of 24 booleans -> {days, hours} when the painted cells
// are a days × hours rectangle, else {grid: 7 strings of '0'/'1'}; null when nothing
// or everything is painted (time then constrains nothing).
export function timeSpec(grid) {
  const on = grid.flat().filter(Boolean).length;
  if (on === 0 || on === 7 * 24) return null; // nothing painted, or everything: time is unconstrained
  const rows = grid.map((r) => r.map((b) => (b ? "1" : "0")).join(""));
  const used = rows.map((r, d) => [r, d]).filter(([r]) => r.includes("1"));
  if (used.every(([r]) => r === used[0][0])) {
    // a days × hours rectangle reads better as {days, hours}
    const t = {};
    const days = used.map(([, d]) => d);
    if (days.length < 7) t.days = dayNames(days);
    const hours = [];
    [...used[0][0]].forEach((c, h) => c === "1" && hours.push(h));
    if (hours.length < 24) t.hours = hourRuns(hours);
    return t;
  }
  return { grid: rows };
}
function dayNames(days) {
  const key = days.join(",");
  if (key === "0,1,2,3,4") return ["weekdays"];
  if (key === "5,6") return ["weekends"];
  return days.map((d) => DAYS[d][0]);
}
function hourRuns(hours) {
  const out = [];
  for (let i = 0; i < hours.length;) {
    let j = i;
    while (j + 1 < hours.length && hours[j + 1] === hours[j] + 1) j++;
    out.push(i === j ? hours[i] : `${hours[i]}-${hours[j]}`);
    i = j + 1;
  }
  return out;
}

// JSON with short arrays on one line, as one would write it by hand.
export function prettyJSON(v, ind = "") {
  const flat = (x) => x === null || typeof x !== "object" || (Array.isArray(x) && x.every(flat));
  if (flat(v)) return JSON.stringify(v).replace(/,(?=\S)/g, ", ");
  const next = ind + "  ";
  if (Array.isArray(v)) return `[\n${v.map((x) => next + prettyJSON(x, next)).join(",\n")}\n${ind}]`;
  const keys = Object.keys(v);
  if (!keys.length) return "{}";
  return `{\n${keys.map((k) => `${next}${JSON.stringify(k)}: ${prettyJSON(v[k], next)}`).join(",\n")}\n${ind}}`;
}

// A small YAML writer for this one shape: mappings, flow lists, scalars; names as comments.
function yamlScalar(s) {
  if (s === null) return "null";
  if (typeof s !== "string") return String(s);
  const plain = /^[A-Za-z_\u4e00-\u9fff][\w\u4e00-\u9fff-]*$/.test(s)
    && !/^(y|n|yes|no|on|off|true|false|null)$/i.test(s);
  return plain ? s : JSON.stringify(s);
}
function yamlFlow(v) {
  if (Array.isArray(v)) return `[${v.map(yamlFlow).join(", ")}]`;
  if (v && typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `${k}: ${yamlFlow(x)}`).join(", ")}}`;
  return yamlScalar(v);
}
export function toYAML(spec, { placeName = String, tagLabel = String } = {}) {
  const out = [];
  const comment = (k, sub, v) => {
    if (!Array.isArray(v)) return "";
    if (k === "geo") return `  # ${v.map(placeName).join(", ")}`;
    if (k === "tags") return `  # ${v.map(tagLabel).join(", ")}`;
    return "";
  };
  for (const [k, v] of Object.entries(spec)) {
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      out.push(`${k}: ${yamlFlow(v)}`);
      continue;
    }
    out.push(`${k}:`);
    for (const [sub, x] of Object.entries(v)) {
      if (k === "time" && sub === "grid") {
        out.push("  grid:");
        x.forEach((row, d) => out.push(`    - ${yamlScalar(row)}  # ${DAYS[d][0]}`));
      } else {
        out.push(`  ${sub}: ${yamlFlow(x)}${comment(k, sub, x)}`);
      }
    }
  }
  return out.length ? out.join("\n") : "{}  # no constraint: everyone";
}
