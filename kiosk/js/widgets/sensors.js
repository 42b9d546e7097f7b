/** Sensors: current values, a trend arrow, a 24-hour sparkline from the history endpoint, and today's min/max. */

import { frame, showState } from "../card.js";
import { el, fitChildren, setClass, setText, svg } from "../dom.js";
import { dayKey, DASH, isNum, parseTime, percent, pressure, temperature } from "../format.js";
import { everyMinute } from "../ticker.js";
import { t } from "../strings.js";

const WINDOW_MS = 24 * 3_600_000;
const REFETCH_MS = 10 * 60_000; // history is re-read at most this often; live readings fill the gap meanwhile
const REDRAW_MS = 2_000; // sparkline redraws are coalesced: a burst of readings costs one redraw
const MAX_POINTS = 2_000;
const GAP_MS = 90 * 60_000;
const MIN_SPAN_MS = 60 * 60_000; // no reading for this long: the line breaks instead of inventing a slope
const VIEW_W = 240;
const VIEW_H = 60;
// Compact rows are tried at these sizes, largest first: three sensors need not be as small as eight.
const COMPACT_SCALES = [1.25, 1.12, 1];

/** {glyph, word} from the change over about the last hour, or null when there is no reading that old. */
export function trend(points) {
  if (points.length < 2) return null;
  const last = points[points.length - 1];
  const target = last.ms - 3_600_000;
  let best = null;
  for (const p of points) {
    if (Math.abs(p.ms - target) <= 20 * 60_000 && (!best || Math.abs(p.ms - target) < Math.abs(best.ms - target))) {
      best = p;
    }
  }
  if (!best || best === last) return null;
  const perHour = (last.c - best.c) / ((last.ms - best.ms) / 3_600_000);
  if (perHour >= 0.5) return { glyph: "↑", word: t("rising") };
  if (perHour >= 0.15) return { glyph: "↗", word: t("rising") };
  if (perHour <= -0.5) return { glyph: "↓", word: t("falling") };
  if (perHour <= -0.15) return { glyph: "↘", word: t("falling") };
  return { glyph: "→", word: t("steady") };
}

/** The SVG path for the last 24 h ending at nowMs, scaled into the view box; "" when there is too little. */
export function sparkPath(points, nowMs) {
  const from = nowMs - WINDOW_MS;
  const shown = points.filter((p) => p.ms >= from);
  // Two readings a minute apart would draw a cliff, not a trend: wait for an hour of data.
  if (shown.length < 2 || shown[shown.length - 1].ms - shown[0].ms < MIN_SPAN_MS) return "";
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of shown) {
    lo = Math.min(lo, p.c);
    hi = Math.max(hi, p.c);
  }
  // At least 2 °C of height, so sensor noise does not look like weather.
  const mid = (lo + hi) / 2;
  const half = Math.max(1, (hi - lo) / 2) * 1.1;
  const y = (c) => (VIEW_H - ((c - (mid - half)) / (2 * half)) * VIEW_H).toFixed(1);
  const x = (ms) => (((ms - from) / WINDOW_MS) * VIEW_W).toFixed(1);
  let d = "";
  let prev = null;
  for (const p of shown) {
    d += `${prev === null || p.ms - prev > GAP_MS ? "M" : "L"}${x(p.ms)} ${y(p.c)}`;
    prev = p.ms;
  }
  return d;
}

class Series {
  constructor(id) {
    this.id = id;
    this.points = []; // {ms, c, day}, oldest first
    this.ok = false; // history loaded at least once: min/max and trend are meaningful
    this.fetchedMs = 0;
    this.loading = false;
  }

  add(ms, c) {
    if (!isNum(ms) || !isNum(c)) return;
    const last = this.points[this.points.length - 1];
    if (last && ms <= last.ms) return; // already have it (from history or an earlier push)
    this.points.push({ ms, c, day: dayKey(ms) });
    this.trim(ms);
  }

  trim(nowMs) {
    const from = nowMs - WINDOW_MS;
    let cut = 0;
    while (cut < this.points.length && this.points[cut].ms < from) cut += 1;
    if (this.points.length - cut > MAX_POINTS) cut = this.points.length - MAX_POINTS;
    if (cut) this.points.splice(0, cut);
  }

  async refetch() {
    this.loading = true;
    this.fetchedMs = Date.now();
    const until = new Date();
    const since = new Date(until.getTime() - WINDOW_MS);
    const url =
      `/api/sensors/${encodeURIComponent(this.id)}/history` +
      `?since=${encodeURIComponent(since.toISOString())}&until=${encodeURIComponent(until.toISOString())}`;
    try {
      const response = await fetch(url, { cache: "no-store" });
      if (!response.ok) throw new Error(`history: HTTP ${response.status}`);
      const body = await response.json();
      const fresh = [];
      for (const p of Array.isArray(body?.points) ? body.points : []) {
        const ms = parseTime(p?.t);
        if (ms !== null && isNum(p.temperature_c)) fresh.push({ ms, c: p.temperature_c, day: dayKey(ms) });
      }
      fresh.sort((a, b) => a.ms - b.ms);
      // Live readings newer than the history answer are kept on top of it.
      const newest = fresh.length ? fresh[fresh.length - 1].ms : -Infinity;
      this.points = fresh.concat(this.points.filter((p) => p.ms > newest));
      this.trim(Date.now());
      this.ok = true;
    } catch (err) {
      // The sparkline is an extra: without history the current values still show.
      console.warn(`homeboard: no history for ${this.id}`, err);
    } finally {
      this.loading = false;
    }
  }
}

function makeRow(topic) {
  const row = {
    topic,
    series: new Series(topic.slice("sensor/".length)),
    root: el("li.sensor"),
    name: el("span.sensor-name"),
    temp: el("span.sensor-temp"),
    arrow: el("span.sensor-trend"),
    humidity: el("span.sensor-humidity"),
    pressure: el("span.sensor-pressure"),
    range: el("span.sensor-range"),
    rangeLabel: el("span.sensor-range-label"),
    low: el("span.sensor-low"),
    high: el("span.sensor-high"),
    status: el("span.sensor-status"),
    path: svg("path", { class: "spark-line", d: "" }),
    spark: svg("svg", {
      class: "spark",
      viewBox: `0 0 ${VIEW_W} ${VIEW_H}`,
      preserveAspectRatio: "none",
      "aria-hidden": "true",
    }),
    state: null,
    redrawTimer: null,
    drawnMs: 0,
    shape: "", // see reshaped(): what the last fit saw of this row
  };
  row.spark.append(row.path);
  // Label and values apart: a compact row drops the word and keeps the numbers.
  row.range.append(row.rangeLabel, row.low, el("span.sensor-range-sep", "–"), row.high);
  row.range.hidden = true;
  row.root.append(
    el("div.sensor-head", row.name, row.range, row.status),
    el("div.sensor-now", row.temp, row.arrow),
    el("div.sensor-side", row.humidity, row.pressure),
    el("div.sensor-chart", row.spark),
  );
  return row;
}

export function mount(root, store) {
  const card = frame(root, t("indoors"));
  const list = el("ul.sensors");
  const more = el("p.sensors-more");
  more.hidden = true;
  const empty = el("p.card-empty", t("noSensors"));
  card.body.append(list, more, empty);
  const rows = new Map(); // topic → row

  const cutOff = () => [...rows.values()].filter((row) => row.root.dataset.fitHidden);
  // A larger step is only worth it while every name still reads whole (the values' column grows with it).
  const namesWhole = () => [...rows.values()].every((row) => row.name.scrollWidth <= row.name.clientWidth + 1);

  /**
   * Roomy rows when they all fit; compact rows (one band each, the value still the biggest thing) when they
   * do not; and when even those do not, a line that names the sensors left out: a sensor never silently vanishes.
   */
  const fit = () => {
    more.hidden = true;
    setClass(list, "is-compact", false);
    list.style.removeProperty("--sensor-scale");
    fitChildren(list);
    if (!cutOff().length) return;
    setClass(list, "is-compact", true);
    for (const [i, scale] of COMPACT_SCALES.entries()) {
      list.style.setProperty("--sensor-scale", String(scale));
      fitChildren(list);
      if (!cutOff().length && (namesWhole() || i === COMPACT_SCALES.length - 1)) return;
    }
    // The note takes a line from the list: show it first, then fit again and count what is left out.
    setText(more, t("more")(cutOff().length));
    more.hidden = false;
    fitChildren(list);
    const left = cutOff();
    setText(more, `${t("more")(left.length)} · ${left.map((row) => row.name.textContent).join(", ")}`);
  };

  // A snapshot brings every sensor in one go: fit once after the last of them, still before the next paint.
  let fitQueued = false;
  const queueFit = () => {
    if (fitQueued) return;
    fitQueued = true;
    queueMicrotask(() => {
      fitQueued = false;
      fit();
    });
  };

  const drawChart = (row) => {
    row.redrawTimer = null;
    row.drawnMs = Date.now();
    const { series } = row;
    const d = series.ok ? sparkPath(series.points, row.drawnMs) : "";
    row.path.setAttribute("d", d);
    row.spark.classList.toggle("is-empty", !d);
    const tr = series.ok ? trend(series.points) : null;
    setText(row.arrow, tr ? tr.glyph : "");
    if (tr) row.arrow.setAttribute("title", tr.word);
    else row.arrow.removeAttribute("title");
    const today = dayKey(row.drawnMs);
    let lo = Infinity;
    let hi = -Infinity;
    let count = 0;
    for (const p of series.points) {
      if (p.day !== today) continue;
      lo = Math.min(lo, p.c);
      hi = Math.max(hi, p.c);
      count += 1;
    }
    const known = series.ok && count >= 2;
    setText(row.rangeLabel, t("todayRange"));
    setText(row.low, known ? temperature(lo, 1) : "");
    setText(row.high, known ? temperature(hi, 1) : "");
    if (row.range.hidden === known) {
      row.range.hidden = !known;
      queueFit();
    }
  };

  const scheduleChart = (row) => {
    if (row.redrawTimer !== null) return;
    const wait = Math.max(0, row.drawnMs + REDRAW_MS - Date.now());
    row.redrawTimer = setTimeout(() => drawChart(row), wait);
  };

  const drawValues = (row, state) => {
    const data = state?.data ?? {};
    const d = showState(row.root, row.status, state);
    const configured = store.sensorNames[row.series.id];
    const name = [data.name, configured].find((n) => typeof n === "string" && n.trim());
    setText(row.name, name ? name.trim() : row.series.id);
    setText(row.temp, temperature(data.temperature_c, 1));
    setText(row.humidity, isNum(data.humidity_pct) ? percent(data.humidity_pct) : "");
    setText(row.pressure, isNum(data.pressure_hpa) ? pressure(data.pressure_hpa) : "");
    if (d.kind === "waiting" || d.kind === "unavailable") setText(row.temp, DASH);
  };

  const onReading = async (row, state) => {
    const data = state?.data;
    const ms = parseTime(data?.measured_at) ?? parseTime(state?.updated_at);
    const { series } = row;
    if (data && isNum(data.temperature_c) && ms !== null) series.add(ms, data.temperature_c);
    if (!series.loading && Date.now() - series.fetchedMs > REFETCH_MS) {
      await series.refetch();
      drawChart(row);
      return;
    }
    scheduleChart(row);
  };

  // Sensors with a value first (in the server's order), then the waiting and failed ones: the ones that fit
  // on a small screen should be the informative ones.
  const order = () => {
    const all = [...rows.values()];
    const wanted = all.filter((r) => r.state?.data).concat(all.filter((r) => !r.state?.data));
    const current = [...list.children];
    if (!wanted.some((r, i) => current[i] !== r.root)) return false;
    list.append(...wanted.map((r) => r.root));
    return true;
  };

  // What decides a row's size. Fitting costs a few layouts, so a new reading of the same shape (the usual case:
  // only the digits change) skips it.
  const reshaped = (row) => {
    const shape = [
      row.root.className,
      row.name.textContent,
      row.status.textContent,
      row.temp.textContent.length,
      Boolean(row.humidity.textContent),
      Boolean(row.pressure.textContent),
    ].join("|");
    if (shape === row.shape) return false;
    row.shape = shape;
    return true;
  };

  store.subscribe("sensor/", (topic, state) => {
    let row = rows.get(topic);
    let changed = false;
    if (!state) {
      if (row) {
        clearTimeout(row.redrawTimer);
        row.root.remove();
        rows.delete(topic);
        changed = true;
      }
    } else {
      if (!row) {
        row = makeRow(topic);
        rows.set(topic, row);
        list.append(row.root);
      }
      row.state = state;
      drawValues(row, state);
      changed = reshaped(row);
      onReading(row, state);
    }
    empty.hidden = rows.size > 0;
    if (order() || changed) queueFit();
  });

  card.setState({ data: {}, status: "ok", stale: false, updated_at: null, error: null });
  empty.hidden = rows.size > 0;
  // The sparkline's window slides and the day's min/max resets at midnight even without new readings.
  everyMinute(() => {
    let changed = false;
    for (const row of rows.values()) {
      row.series.trim(Date.now());
      drawValues(row, row.state);
      changed = reshaped(row) || changed;
      scheduleChart(row);
    }
    if (changed) queueFit();
  });
  // A rotation or a resize changes the room the list has. The card body, not the list, is watched: its size
  // does not depend on the rows or the note, so fitting cannot feed back into another resize.
  new ResizeObserver(() => queueFit()).observe(card.body);
}
