/** Departures: line badge by mode, destination, a countdown ticking every second on the page's own clock. */

import { frame } from "../card.js";
import { el, fitChildren, setClass, setText, show } from "../dom.js";
import { DASH, isNum, parseTime, time } from "../format.js";
import { everySecond } from "../ticker.js";
import { t } from "../strings.js";

const MAX_ROWS = 16;
const GONE_AFTER_MS = 30_000; // a departure this far in the past has left: drop it without waiting for the server
const MODES = new Set(["metro", "bus", "train", "tram", "ship", "ferry", "taxi"]);

function modeOf(value) {
  const mode = String(value || "").toLowerCase();
  return MODES.has(mode) ? mode : "other";
}

/**
 * Countdown text that cannot be taken for a time of day from across the room: "Now" in the last half
 * minute, "45 s" within the minute (it ticks), "3 min" within the hour (whole minutes left, as SL's signs
 * count), else the clock time of the departure.
 */
export function countdown(untilMs, atMs) {
  const s = Math.floor((untilMs - atMs) / 1000);
  if (s <= 30) return { main: t("now"), unit: "" };
  if (s < 60) return { main: String(s), unit: t("seconds") };
  if (s < 60 * 60) return { main: String(Math.floor(s / 60)), unit: t("min") };
  return { main: time(untilMs), unit: "" };
}

function makeRow() {
  const row = {
    root: el("li.dep"),
    badge: el("span.dep-badge"),
    modeIcon: el("img.dep-mode", { alt: "" }),
    line: el("span.dep-line"),
    destination: el("span.dep-destination"),
    deviation: el("span.dep-deviation"),
    count: el("span.dep-count"),
    unit: el("span.dep-unit"),
    leave: el("span.dep-leave"),
    expectedMs: null,
    leaveMs: null,
    cancelled: false,
  };
  row.badge.append(row.modeIcon, row.line);
  row.root.append(
    row.badge,
    el("span.dep-what", row.destination, row.deviation),
    el("span.dep-when", el("span.dep-countline", row.count, row.unit), row.leave),
  );
  row.root.hidden = true;
  return row;
}

export function mount(root, store) {
  const card = frame(root, t("departures"));
  const notice = el("p.dep-notice");
  notice.hidden = true;
  const list = el("ol.deps");
  const empty = el("p.card-empty", t("noDepartures"));
  empty.hidden = true;
  card.body.append(notice, list, empty);
  const rows = [];
  for (let i = 0; i < MAX_ROWS; i += 1) {
    rows.push(makeRow());
    list.append(rows[i].root);
  }
  let stopTicking = null;
  let shown = 0;
  let hasData = false;

  // Countdowns run on the server's clock when this browser's is off (a phone with a wrong clock).
  const tick = (_tickMs) => {
    const nowMs = store.now();
    let visible = 0;
    let changedRows = false;
    for (const row of rows) {
      if (row.expectedMs === null) continue;
      if (row.expectedMs < nowMs - GONE_AFTER_MS) {
        row.expectedMs = null;
        show(row.root, false);
        changedRows = true;
        continue;
      }
      visible += 1;
      if (row.cancelled) continue;
      const c = countdown(row.expectedMs, nowMs);
      setText(row.count, c.main);
      setText(row.unit, c.unit);
      setClass(row.root, "is-soon", row.expectedMs - nowMs < 5 * 60_000);
      if (row.leaveMs !== null) {
        // Whole minutes left to leave, rounded down: "leave in 5 min" never promises time you do not have.
        const leaveMin = Math.floor((row.leaveMs - nowMs) / 60_000);
        // "now" twice on one row says nothing more: the countdown alone does.
        const text = leaveMin > 0 ? t("leaveIn")(leaveMin) : t("leaveNow");
        setText(row.leave, c.main === t("now") ? "" : text);
      }
    }
    empty.hidden = visible > 0 || !hasData;
    if (changedRows) fitChildren(list);
  };

  const draw = (state) => {
    card.setState(state);
    hasData = Boolean(state?.data);
    const data = state?.data ?? {};
    const site = typeof data.site_name === "string" ? data.site_name.trim() : "";
    card.setDetail(site);
    const stopDeviations = Array.isArray(data.stop_deviations)
      ? data.stop_deviations.filter((s) => typeof s === "string" && s.trim())
      : [];
    setText(notice, stopDeviations.join(" · "));
    notice.hidden = stopDeviations.length === 0;
    const list_ = Array.isArray(data.departures) ? data.departures.filter((d) => d && typeof d === "object") : [];
    // "Leave in" counts down from when the server computed it, so it keeps ticking between fetches.
    const computedMs = parseTime(state?.updated_at) ?? store.now();
    // Without a walking time "leave in" is the same as the countdown: say it once.
    const walking = !isNum(data.walk_time_min) || data.walk_time_min > 0;
    shown = 0;
    rows.forEach((row, i) => {
      const d = list_[i];
      const whenMs = d ? (parseTime(d.expected) ?? parseTime(d.scheduled)) : null;
      if (!d || whenMs === null) {
        row.expectedMs = null;
        show(row.root, false);
        return;
      }
      shown += 1;
      row.expectedMs = whenMs;
      row.cancelled = d.cancelled === true;
      row.leaveMs = walking && isNum(d.leave_in_min) && !row.cancelled ? computedMs + d.leave_in_min * 60_000 : null;
      row.badge.className = `dep-badge mode-${modeOf(d.transport_mode)}`;
      row.modeIcon.setAttribute("src", `/icons/mode-${modeOf(d.transport_mode)}.svg`);
      setText(row.line, typeof d.line === "string" || isNum(d.line) ? String(d.line).trim() : DASH);
      setText(row.destination, typeof d.destination === "string" ? d.destination.trim() : DASH);
      const devs = Array.isArray(d.deviations) ? d.deviations.filter((s) => typeof s === "string" && s.trim()) : [];
      setText(row.deviation, devs.join(" · "));
      row.deviation.hidden = devs.length === 0;
      setClass(row.root, "is-cancelled", row.cancelled);
      if (row.cancelled) {
        setText(row.count, t("cancelled"));
        setText(row.unit, "");
      }
      setText(row.leave, "");
      row.leave.hidden = row.leaveMs === null;
      show(row.root, true);
    });
    tick();
    fitChildren(list);
    // Tick only while there is something to count down: an empty board costs nothing.
    if (shown && !stopTicking) stopTicking = everySecond(tick);
    if (!shown && stopTicking) {
      stopTicking();
      stopTicking = null;
    }
  };

  store.subscribe("departures", (_topic, state) => draw(state));
  if (!store.get("departures")) draw(undefined);
  // Icons and fonts arriving late, a rotation or a resize change the room a list has.
  new ResizeObserver(() => fitChildren(list)).observe(list);
}
