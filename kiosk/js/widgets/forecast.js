/** The forecast: the next hours (time, icon, temperature, rain), then the next days (high, low, rain). */

import { frame } from "../card.js";
import { el, fitChildren, setClass, setText, setWeatherIcon, show } from "../dom.js";
import { dayKey, DASH, hour, isNum, parseTime, percent, temperature, weekdayOfDate } from "../format.js";
import { everyMinute } from "../ticker.js";
import { t } from "../strings.js";

const MAX_DAYS = 7;
const HOUR_CELLS = 12; // as many as the widest layout shows; CSS cuts the grid to the row that fits
const HOUR_STEP = 2; // every other hour: four cells then reach eight hours ahead

function dayName(date, nowMs) {
  if (typeof date !== "string") return DASH;
  const today = dayKey(nowMs);
  if (date.startsWith(today)) return t("today");
  if (date.startsWith(dayKey(nowMs + 86_400_000))) return t("tomorrow");
  const name = weekdayOfDate(date);
  return name.charAt(0).toUpperCase() + name.slice(1);
}

export function mount(root, store) {
  const card = frame(root, t("forecast"));
  const cells = [];
  const hours = el("ol.hours");
  for (let i = 0; i < HOUR_CELLS; i += 1) {
    const cell = {
      root: el("li.hour"),
      time: el("span.hour-time"),
      icon: el("img.hour-icon", { alt: "" }),
      temp: el("span.hour-temp"),
      rain: el("span.hour-rain"),
    };
    cell.root.append(cell.time, cell.icon, cell.temp, cell.rain);
    cells.push(cell);
    hours.append(cell.root);
  }
  const rows = [];
  const list = el("ol.days");
  for (let i = 0; i < MAX_DAYS; i += 1) {
    const row = {
      root: el("li.day"),
      name: el("span.day-name"),
      icon: el("img.day-icon", { alt: "" }),
      high: el("span.day-high"),
      low: el("span.day-low"),
      rain: el("span.day-rain"),
    };
    row.root.append(row.name, row.icon, el("span.day-temps", row.high, row.low), row.rain);
    rows.push(row);
    list.append(row.root);
  }
  card.body.append(hours, list);
  let last = null;

  // Tighter day rows when the full ones would cut days off: a three-day forecast should show three days.
  const fit = () => {
    setClass(list, "is-compact", false);
    if (fitChildren(list) === 0) return;
    setClass(list, "is-compact", true);
    fitChildren(list);
  };

  const drawHours = (list_) => {
    // Hours that have fully passed are dropped on the page's own clock, between server updates.
    const fromMs = Date.now() - 3_600_000;
    const upcoming = list_
      .filter((h) => h && typeof h === "object" && (parseTime(h.time) ?? 0) > fromMs)
      .filter((_h, i) => i % HOUR_STEP === 0);
    cells.forEach((cell, i) => {
      const h = upcoming[i];
      cell.root.hidden = !h;
      if (!h) return;
      setText(cell.time, hour(parseTime(h.time)));
      setWeatherIcon(cell.icon, h.icon);
      setText(cell.temp, temperature(h.temperature_c));
      const rain = h.chance_of_rain_pct;
      setText(cell.rain, isNum(rain) && rain > 0 ? percent(rain) : "");
    });
    hours.hidden = upcoming.length === 0;
  };

  const draw = (state) => {
    card.setState(state);
    drawHours(Array.isArray(state?.data?.hours) ? state.data.hours : []);
    const days = Array.isArray(state?.data?.days) ? state.data.days : [];
    const nowMs = Date.now();
    const today = dayKey(nowMs);
    // Days before today (data older than midnight) are not a forecast any more.
    const upcoming = days.filter((d) => d && typeof d === "object" && !(typeof d.date === "string" && d.date < today));
    rows.forEach((row, i) => {
      const d = upcoming[i];
      show(row.root, Boolean(d));
      if (!d) return;
      setText(row.name, dayName(d.date, nowMs));
      setWeatherIcon(row.icon, d.icon);
      setText(row.high, temperature(d.max_c));
      setText(row.low, temperature(d.min_c));
      setText(row.rain, isNum(d.chance_of_rain_pct) ? `☂ ${percent(d.chance_of_rain_pct)}` : DASH);
      // The icon says it; the words are its title, for a viewer who hovers.
      row.icon.setAttribute("title", typeof d.condition === "string" ? d.condition.trim() : "");
    });
    fit();
  };

  store.subscribe("weather", (_topic, state) => {
    last = state;
    draw(state);
  });
  if (!store.get("weather")) draw(undefined);
  everyMinute(() => draw(last));
  // The list's size comes from the card, not from its rows, so fitting cannot feed back into another resize.
  new ResizeObserver(() => fit()).observe(list);
}
