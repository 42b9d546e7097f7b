/** Calendar: today, tomorrow and the next days; all-day events as coloured bands, then timed events in order. */

import { frame } from "../card.js";
import { el, fitChildren, setClass, setText, show } from "../dom.js";
import { dateShort, dayKey, parseTime, time } from "../format.js";
import { t } from "../strings.js";
import { everyMinute } from "../ticker.js";

const MAX_ITEMS = 48; // day heads, bands and events; the list shows what fits and fitChildren hides the rest
const MAX_DAYS = 14;
const ALWAYS_SHOWN_DAYS = 2; // today and tomorrow, even with nothing planned
const PALETTE = ["#e07a5f", "#5b8def", "#81b29a", "#f2cc8f", "#b388eb", "#4ecdc4"];
const COLOR_RE = /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

/** "2026-10-26" + n days, as a date key (calendar arithmetic in UTC: no zone can shift a date). */
function addDays(key, n) {
  const [y, m, d] = key.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

function dayLabel(key, todayKey) {
  if (key === todayKey) return t("today");
  if (key === addDays(todayKey, 1)) return t("tomorrow");
  const text = dateShort(key);
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function text(v) {
  return typeof v === "string" ? v.trim() : "";
}

/** "Work: 2 events left out (2 could not be read)": the server's reason, the page's own words for the count. */
function leftOutNote(c) {
  const why = text(c.skipped_reason);
  return `${text(c.name)}: ${t("leftOut")(c.skipped)}${why ? ` (${why})` : ""}`;
}

/**
 * The rows to show, in order: [{kind: "day"|"allday"|"event"|"empty", ...}]. Pure; exported for the page tests.
 * Timed events that started on an earlier day are listed under today; an all-day event shows on every day it covers.
 */
export function plan(events, nowMs) {
  const todayKey = dayKey(nowMs);
  const byDay = new Map();
  const dayOf = (key) => {
    if (!byDay.has(key)) byDay.set(key, { bands: [], timed: [] });
    return byDay.get(key);
  };
  let lastKey = addDays(todayKey, ALWAYS_SHOWN_DAYS - 1);
  const horizon = addDays(todayKey, MAX_DAYS - 1);
  for (const e of Array.isArray(events) ? events : []) {
    if (!e || typeof e !== "object") continue;
    if (e.all_day === true) {
      if (!DATE_RE.test(e.start) || !DATE_RE.test(e.end)) continue;
      for (let key = e.start < todayKey ? todayKey : e.start; key < e.end && key <= horizon; key = addDays(key, 1)) {
        dayOf(key).bands.push(e);
        if (key > lastKey) lastKey = key;
      }
      continue;
    }
    const startMs = parseTime(e.start);
    const endMs = parseTime(e.end);
    if (startMs === null || endMs === null || endMs <= nowMs) continue;
    let key = dayKey(startMs);
    if (key < todayKey) key = todayKey;
    if (key > horizon) continue;
    dayOf(key).timed.push({ e, startMs, endMs, now: startMs <= nowMs });
    if (key > lastKey) lastKey = key;
  }
  const rows = [];
  for (let key = todayKey; key <= lastKey; key = addDays(key, 1)) {
    const day = byDay.get(key);
    const always = key <= addDays(todayKey, ALWAYS_SHOWN_DAYS - 1);
    if (!day && !always) continue;
    rows.push({ kind: "day", key, label: dayLabel(key, todayKey) });
    if (!day) {
      rows.push({ kind: "empty" });
      continue;
    }
    for (const e of day.bands) rows.push({ kind: "allday", e });
    for (const item of day.timed) {
      const sameDay = dayKey(item.endMs - 1) === dayKey(item.startMs);
      const started = dayKey(item.startMs) < key;
      rows.push({ kind: "event", ...item, sameDay, started });
    }
  }
  return rows;
}

function setTimes(item, start, end) {
  setText(item.start, start);
  setText(item.end, end);
  setClass(item.when, "is-empty", !start && !end);
}

export function mount(root, store) {
  const card = frame(root, t("calendar"));
  const list = el("ol.cal-list");
  const items = [];
  for (let i = 0; i < MAX_ITEMS; i += 1) {
    const item = {
      root: el("li.cal-item"),
      when: el("span.cal-when"),
      start: el("span.cal-start"),
      end: el("span.cal-end"),
      title: el("span.cal-title"),
      where: el("span.cal-where"),
      tag: el("span.cal-tag"),
    };
    item.when.append(item.start, item.end);
    item.root.append(item.when, el("span.cal-text", item.title, item.where), item.tag);
    item.root.hidden = true;
    items.push(item);
    list.append(item.root);
  }
  const problems = el("p.cal-problems");
  problems.hidden = true;
  card.body.append(list, problems);

  /** Hide what does not fit, and a day head left without any of its rows below it. */
  const fit = () => {
    fitChildren(list);
    const shown = items.filter((item) => !item.root.hidden);
    const last = shown[shown.length - 1];
    if (shown.length > 1 && last.root.classList.contains("is-day")) {
      last.root.hidden = true;
      last.root.dataset.fitHidden = "1";
    }
  };

  const colors = new Map(); // calendar name → colour, from /api/config (names and colours only)
  let lastState;

  const colorOf = (name, calendars) => {
    const configured = colors.get(name);
    if (typeof configured === "string" && COLOR_RE.test(configured)) return configured;
    const index = Math.max(0, calendars.findIndex((c) => c && c.name === name));
    return PALETTE[index % PALETTE.length];
  };

  const draw = (state) => {
    lastState = state;
    card.setState(state);
    const data = state?.data ?? {};
    const calendars = Array.isArray(data.calendars) ? data.calendars.filter((c) => c && typeof c === "object") : [];
    const nowMs = store.now();
    const rows = state?.data ? plan(data.events, nowMs) : [];
    items.forEach((item, i) => {
      const row = rows[i];
      show(item.root, Boolean(row));
      if (!row) return;
      for (const kind of ["day", "allday", "event", "empty"]) setClass(item.root, `is-${kind}`, row.kind === kind);
      setClass(item.root, "is-now", row.kind === "event" && row.now);
      const e = row.e;
      if (e) item.root.style.setProperty("--cal-color", colorOf(e.calendar, calendars));
      else item.root.style.removeProperty("--cal-color");
      if (e) item.root.setAttribute("title", text(e.calendar));
      else item.root.removeAttribute("title");
      if (row.kind === "day") {
        setTimes(item, "", "");
        setText(item.title, row.label);
        setText(item.where, "");
        setText(item.tag, "");
        return;
      }
      if (row.kind === "empty") {
        setTimes(item, "", "");
        setText(item.title, t("nothingPlanned"));
        setText(item.where, "");
        setText(item.tag, "");
        return;
      }
      setText(item.title, text(e.title) || t("noTitle"));
      setText(item.where, text(e.location));
      if (row.kind === "allday") {
        setTimes(item, "", "");
        setText(item.tag, t("allDay"));
        return;
      }
      const start = row.started ? "" : time(row.startMs);
      const end = row.sameDay || row.started ? time(row.endMs) : `${time(row.endMs)} ${dateShort(dayKey(row.endMs))}`;
      // A narrow column shows the start only (CSS hides .cal-end): one line per event, more events.
      setTimes(item, start || "…", `–${end}`);
      setText(item.tag, row.now ? t("now") : "");
    });
    const failing = calendars.filter((c) => c.status === "error" && typeof c.error === "string");
    // Events of a feed that could not be read, or more occurrences than the wall takes: how many, and why.
    const leftOut = calendars.filter((c) => Number.isInteger(c.skipped) && c.skipped > 0);
    const notes = [...failing.map((c) => `${text(c.name)}: ${c.error}`), ...leftOut.map(leftOutNote)];
    setText(problems, notes.join(" · "));
    problems.hidden = notes.length === 0;
    fit();
  };

  store.subscribe("calendar", (_topic, state) => draw(state));
  if (!store.get("calendar")) draw(undefined);
  // Events end and days change without a new message: redraw on the minute.
  everyMinute(() => draw(lastState));
  new ResizeObserver(fit).observe(list);
  fetch("/api/config", { cache: "no-store" })
    .then((response) => (response.ok ? response.json() : null))
    .then((config) => {
      for (const c of Array.isArray(config?.calendars) ? config.calendars : []) {
        if (c && typeof c.name === "string") colors.set(c.name, c.color);
      }
      draw(lastState);
    })
    .catch((err) => console.warn("homeboard: calendar colours unavailable", err));
}
