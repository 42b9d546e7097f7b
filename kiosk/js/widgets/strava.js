/** Strava: the latest activities (sport, name, distance, time, pace or speed, heart rate) and this week per sport. */

import { frame } from "../card.js";
import { el, fitChildren, setText, show } from "../dom.js";
import { DASH, distance, duration, heartRate, isNum, paceOrSpeed, parseTime, weekdayShort } from "../format.js";
import { t } from "../strings.js";

const MAX_ACTIVITIES = 10;
const MAX_SPORTS = 6;

/** sport_type → icon file; Strava has ~50 sport types, they fold into a handful of pictures. */
const SPORT_ICONS = [
  [/^(Run|TrailRun|VirtualRun)$/, "run"],
  [/^(Walk|Snowshoe)$/, "walk"],
  [/^Hike$/, "hike"],
  [/Ride$|^Velomobile$|^Handcycle$/, "ride"],
  [/Swim/, "swim"],
  [/Ski|Snowboard/, "ski"],
  [/^(Rowing|VirtualRow|Canoeing|Kayaking|StandUpPaddling)$/, "row"],
  [/^(WeightTraining|Workout|Crossfit|HighIntensityIntervalTraining|Pilates|Elliptical|StairStepper)$/, "workout"],
  [/^Yoga$/, "yoga"],
];

export function sportIcon(sportType) {
  const sport = String(sportType || "");
  for (const [pattern, name] of SPORT_ICONS) if (pattern.test(sport)) return `/icons/sport-${name}.svg`;
  return "/icons/sport-generic.svg";
}

/** The sport's name in the page's language; otherwise "TrailRun" → "Trail run". */
function sportLabel(sportType) {
  const known = t("sports")[sportType];
  if (typeof known === "string") return known;
  const words = String(sportType || "").replace(/([a-z])([A-Z])/g, "$1 $2");
  return words ? words.charAt(0) + words.slice(1).toLowerCase() : DASH;
}

function text(v) {
  return typeof v === "string" && v.trim() ? v.trim() : DASH;
}

export function mount(root, store) {
  const card = frame(root, t("strava"));
  const list = el("ol.acts");
  const rows = [];
  for (let i = 0; i < MAX_ACTIVITIES; i += 1) {
    const row = {
      root: el("li.act"),
      icon: el("img.act-icon", { alt: "" }),
      name: el("span.act-name"),
      when: el("span.act-when"),
      distance: el("span.act-distance"),
      time: el("span.act-time"),
      pace: el("span.act-pace"),
      hr: el("span.act-hr"),
    };
    row.root.append(
      row.icon,
      el("div.act-text", el("div.act-title", row.name, row.when), el("div.act-stats", row.distance, row.time, row.pace, row.hr)),
    );
    row.root.hidden = true;
    rows.push(row);
    list.append(row.root);
  }
  const empty = el("p.card-empty", t("noActivities"));
  empty.hidden = true;
  const weekTitle = el("h3.week-title", t("thisWeek"));
  const sports = [];
  const week = el("ul.week");
  for (let i = 0; i < MAX_SPORTS; i += 1) {
    const s = {
      root: el("li.week-sport"),
      icon: el("img.week-icon", { alt: "" }),
      distance: el("span.week-distance"),
      detail: el("span.week-detail"),
    };
    s.root.append(s.icon, el("span.week-text", s.distance, s.detail));
    s.root.hidden = true;
    sports.push(s);
    week.append(s.root);
  }
  card.body.append(list, empty, el("div.week-box", weekTitle, week));

  const draw = (state) => {
    card.setState(state);
    const data = state?.data ?? {};
    const acts = Array.isArray(data.activities) ? data.activities.filter((a) => a && typeof a === "object") : [];
    rows.forEach((row, i) => {
      const a = acts[i];
      show(row.root, Boolean(a));
      if (!a) return;
      row.icon.setAttribute("src", sportIcon(a.sport_type));
      row.icon.setAttribute("title", sportLabel(a.sport_type));
      setText(row.name, text(a.name));
      const startMs = parseTime(a.start);
      setText(row.when, startMs === null ? "" : weekdayShort(startMs));
      setText(row.distance, distance(a.distance_km));
      setText(row.time, duration(a.moving_time_s));
      setText(row.pace, paceOrSpeed(a.sport_type, a.distance_km, a.moving_time_s));
      setText(row.hr, `♥ ${heartRate(a.average_heartrate)}`);
    });
    empty.hidden = acts.length > 0 || !state?.data;

    const bySport = data.week_by_sport && typeof data.week_by_sport === "object" ? data.week_by_sport : null;
    const entries = bySport
      ? Object.entries(bySport)
          .filter(([, v]) => v && typeof v === "object")
          .sort((a, b) => (b[1].moving_time_s || 0) - (a[1].moving_time_s || 0))
      : data.week && typeof data.week === "object"
        ? [["", data.week]]
        : [];
    sports.forEach((s, i) => {
      const entry = entries[i];
      s.root.hidden = !entry;
      if (!entry) return;
      const [sport, totals] = entry;
      s.icon.setAttribute("src", sportIcon(sport));
      s.icon.setAttribute("title", sportLabel(sport));
      setText(s.distance, isNum(totals.distance_km) && totals.distance_km > 0 ? distance(totals.distance_km) : duration(totals.moving_time_s));
      const extra = isNum(totals.distance_km) && totals.distance_km > 0 ? duration(totals.moving_time_s) : "";
      setText(s.detail, extra);
      s.root.setAttribute("title", isNum(totals.count) ? t("activities")(totals.count) : "");
    });
    weekTitle.hidden = entries.length === 0;
    fitChildren(list);
  };

  store.subscribe("strava", (_topic, state) => draw(state));
  if (!store.get("strava")) draw(undefined);
  // Icons and fonts arriving late, a rotation or a resize change the room a list has.
  new ResizeObserver(() => fitChildren(list)).observe(list);
}
