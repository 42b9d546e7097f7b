/**
 * All number, date and time formatting, through Intl with the configured locale, time zone and units.
 * The server sends numbers as measured or received (metric, unrounded); this is the one place they are
 * converted and rounded, once, for display.
 */

/** What the page shows for a value it does not have: never a made-up number. */
export const DASH = "–";

const DAY_MS = 86_400_000;
let locale = "en-GB";
let timeZone; // undefined: the browser's own zone
let hour12 = false;
let imperial = false;
let f = {};

const KM_PER_MILE = 1.609344;
const INHG_PER_HPA = 0.02953;

/** Build the formatters once. A bad locale or time zone falls back (with a console warning), never throws. */
export function configure({ locale: wantLocale, timeZone: wantZone, clock24h = true, units = "metric" } = {}) {
  locale = pickLocale(wantLocale);
  timeZone = pickZone(wantZone);
  hour12 = !clock24h;
  imperial = units === "imperial";
  // 12-hour times without a leading zero ("2:52 PM"); 24-hour ones with it ("09:05").
  const hourStyle = hour12 ? "numeric" : "2-digit";
  const dt = (opts) => new Intl.DateTimeFormat(locale, { timeZone, ...opts });
  f = {
    time: dt({ hour: hourStyle, minute: "2-digit", hour12 }),
    hour: dt({ hour: hourStyle, hour12 }),
    date: dt({ weekday: "long", day: "numeric", month: "long" }),
    weekdayShort: dt({ weekday: "short" }),
    dayShort: dt({ weekday: "short", day: "numeric", month: "short" }),
    // en-CA gives YYYY-MM-DD, a sortable key for "which local day is this".
    dayKey: new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }),
    wallUtc: new Intl.DateTimeFormat(locale, { timeZone: "UTC", hour: hourStyle, minute: "2-digit", hour12 }),
    weekdayUtc: new Intl.DateTimeFormat(locale, { timeZone: "UTC", weekday: "long" }),
    dateUtc: new Intl.DateTimeFormat(locale, { timeZone: "UTC", weekday: "short", day: "numeric", month: "short" }),
    clockParts: new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }),
  };
  numberCache.clear();
  percentFormat = new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 0 });
}

/** The locale in use (a BCP 47 tag the browser supports), e.g. for <html lang>. */
export function currentLocale() {
  return locale;
}

function pickLocale(wanted) {
  if (typeof wanted !== "string" || !wanted) return navigator.language || "en-GB";
  try {
    return Intl.DateTimeFormat.supportedLocalesOf([wanted]).length ? wanted : navigator.language || "en-GB";
  } catch (err) {
    console.warn("homeboard: unusable locale", wanted, err);
    return navigator.language || "en-GB";
  }
}

function pickZone(wanted) {
  if (!wanted) return undefined;
  try {
    new Intl.DateTimeFormat("en", { timeZone: wanted });
    return wanted;
  } catch (err) {
    console.warn("homeboard: unknown time zone", wanted, err);
    return undefined;
  }
}

const numberCache = new Map();
let percentFormat = null;
function numberFormat(digits) {
  let nf = numberCache.get(digits);
  if (!nf) {
    nf = new Intl.NumberFormat(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits });
    numberCache.set(digits, nf);
  }
  return nf;
}

/** A finite number (not NaN, not Infinity, not a numeric string). */
export function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

/** ISO 8601 text → epoch ms, or null when missing or unparseable. */
export function parseTime(iso) {
  if (typeof iso !== "string" || !iso) return null;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms : null;
}

export function number(v, digits = 0) {
  return isNum(v) ? numberFormat(digits).format(v) : DASH;
}

/** "21°" / "−3,5°" (°F when the units are imperial); rounding -0.4 must not show "−0°". */
export function temperature(celsius, digits = 0) {
  if (!isNum(celsius)) return DASH;
  const c = imperial ? (celsius * 9) / 5 + 32 : celsius;
  const factor = 10 ** digits;
  // Half away from zero, as Intl rounds: −3.25 → −3.3, not −3.2.
  const rounded = (Math.sign(c) * Math.round(Math.abs(c) * factor)) / factor;
  return `${numberFormat(digits).format(rounded === 0 ? 0 : rounded)}°`;
}

/** "40 %" in Swedish, "40%" in English: the locale decides the spacing. */
export function percent(v) {
  return isNum(v) ? percentFormat.format(v / 100) : DASH;
}

/** hPa, or inches of mercury when the units are imperial. */
export function pressure(hpa) {
  if (!isNum(hpa)) return DASH;
  if (imperial) return `${numberFormat(2).format(hpa * INHG_PER_HPA)} inHg`;
  return `${numberFormat(0).format(hpa)} hPa`;
}

/** Wind in the unit people use: mph (imperial), m/s in the Nordics, km/h elsewhere. */
export function wind(kph) {
  if (!isNum(kph)) return DASH;
  if (imperial) return `${numberFormat(0).format(kph / KM_PER_MILE)} mph`;
  const lang = locale.split("-")[0];
  if (["sv", "nb", "nn", "no", "da", "fi"].includes(lang)) return `${numberFormat(0).format(kph / 3.6)} m/s`;
  return `${numberFormat(0).format(kph)} km/h`;
}

/** A distance given in km: "4,2 km" / "4.2 km" (one decimal below 100), or miles when imperial. */
export function distance(km) {
  if (!isNum(km) || km <= 0) return DASH;
  const value = imperial ? km / KM_PER_MILE : km;
  return `${numberFormat(value < 100 ? 1 : 0).format(value)} ${imperial ? "mi" : "km"}`;
}


/** Seconds → "42 min" or "1:05 h". */
export function duration(s) {
  if (!isNum(s) || s < 0) return DASH;
  const totalMin = Math.round(s / 60);
  if (totalMin < 60) return `${totalMin} min`;
  const h = Math.floor(totalMin / 60);
  const m = totalMin % 60;
  return `${h}:${String(m).padStart(2, "0")} h`;
}

/** Seconds per unit → "5:12". */
function minSec(totalS) {
  const rounded = Math.round(totalS);
  return `${Math.floor(rounded / 60)}:${String(rounded % 60).padStart(2, "0")}`;
}

/** Pace or speed as the sport is talked about (per mile and mph when imperial); "–" without distance or time. */
export function paceOrSpeed(sportType, distanceKmValue, movingS) {
  if (!isNum(distanceKmValue) || !isNum(movingS) || distanceKmValue <= 0 || movingS <= 0) return DASH;
  const sport = String(sportType || "");
  // Pools are measured in yards where miles are used: per 100 yd (91.44 m).
  if (/Swim/.test(sport)) {
    return imperial
      ? `${minSec(movingS / (distanceKmValue * (1000 / 91.44)))} /100 yd`
      : `${minSec(movingS / (distanceKmValue * 10))} /100 m`;
  }
  const miles = distanceKmValue / KM_PER_MILE;
  if (/Run|Walk|Hike|Snowshoe/.test(sport)) {
    return imperial ? `${minSec(movingS / miles)} /mi` : `${minSec(movingS / distanceKmValue)} /km`;
  }
  const speed = (imperial ? miles : distanceKmValue) / (movingS / 3600);
  return `${numberFormat(1).format(speed)} ${imperial ? "mph" : "km/h"}`;
}

/** Beats per minute as a bare number (the page puts a heart before it), or "–". */
export function heartRate(bpm) {
  return isNum(bpm) && bpm > 0 ? numberFormat(0).format(bpm) : DASH;
}

/** Epoch ms → "14:05" (or "2:05 PM") in the configured zone. */
export function time(ms) {
  return isNum(ms) ? f.time.format(ms) : DASH;
}

/** The time split for the big clock: {main: "2:05", suffix: "PM"} or {main: "14:05", suffix: ""}. */
export function clockParts(ms) {
  const parts = f.time.formatToParts(ms);
  const suffix = parts.find((p) => p.type === "dayPeriod")?.value ?? "";
  const main = parts
    .filter((p) => p.type !== "dayPeriod")
    .map((p) => p.value)
    .join("")
    .trim();
  return { main, suffix };
}

export function hour(ms) {
  return isNum(ms) ? f.hour.format(ms) : DASH;
}

export function longDate(ms) {
  return f.date.format(ms);
}

export function weekdayShort(ms) {
  return isNum(ms) ? f.weekdayShort.format(ms) : DASH;
}

/** "2026-11-25": the local calendar day of an instant, for comparisons. */
export function dayKey(ms) {
  return f.dayKey.format(ms);
}

/** Minutes since local midnight in the configured zone. */
export function minutesOfDay(ms) {
  const parts = f.clockParts.formatToParts(ms);
  const h = Number(parts.find((p) => p.type === "hour")?.value);
  const m = Number(parts.find((p) => p.type === "minute")?.value);
  return h * 60 + m;
}

/** ISO week number of the local day (weeks start Monday; week 1 holds the first Thursday). */
export function isoWeek(ms) {
  const [y, mo, d] = dayKey(ms).split("-").map(Number);
  const date = new Date(Date.UTC(y, mo - 1, d));
  const dow = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - dow);
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  return Math.ceil(((date.getTime() - yearStart) / DAY_MS + 1) / 7);
}

/** A wall-clock time given as ISO, "07:58" or "07:58 AM" → shown in the configured 12/24 h style. */
export function wallTime(value) {
  const ms = parseTime(value);
  if (ms !== null) return time(ms);
  const m = typeof value === "string" ? value.trim().match(/^(\d{1,2}):(\d{2})(?:\s*([AaPp])[Mm])?$/) : null;
  if (!m) return DASH;
  let h = Number(m[1]);
  const min = Number(m[2]);
  if (m[3]) h = (h % 12) + (m[3].toUpperCase() === "P" ? 12 : 0);
  if (h > 23 || min > 59) return DASH;
  // Any fixed day works: only the hour and minute are formatted, in UTC so no zone can shift them.
  return f.wallUtc.format(Date.UTC(2000, 0, 1, h, min));
}

/** "2026-11-26" → its weekday name; a calendar date has the same weekday in every zone. */
export function weekdayOfDate(dateText) {
  const m = typeof dateText === "string" ? dateText.match(/^(\d{4})-(\d{2})-(\d{2})/) : null;
  if (!m) return DASH;
  return f.weekdayUtc.format(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 12));
}

/** "2026-10-26" → "Mon 26 Oct" in the locale's words; a calendar date is the same day in every zone. */
export function dateShort(dateText) {
  const m = typeof dateText === "string" ? dateText.match(/^(\d{4})-(\d{2})-(\d{2})/) : null;
  if (!m) return DASH;
  return f.dateUtc.format(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), 12));
}

/** When a value was last good: "14:05" today, "Mon 14:05" this week, "24 Nov 14:05" before. */
export function since(ms, nowMs = Date.now()) {
  if (!isNum(ms)) return DASH;
  if (dayKey(ms) === dayKey(nowMs)) return time(ms);
  if (nowMs - ms < 6 * DAY_MS) return `${weekdayShort(ms)} ${time(ms)}`;
  return `${f.dayShort.format(ms)} ${time(ms)}`;
}

/** The same instant as ISO 8601 with the browser's UTC offset, e.g. for heartbeats. */
export function isoNow(ms = Date.now()) {
  return new Date(ms).toISOString();
}

configure();
