/** Boot: read the config, lay out the widgets, connect; each widget set up on its own so one cannot blank the wall. */

import { el, setText } from "./dom.js";
import * as format from "./format.js";
import { hhmm, inRange } from "./schedule.js";
import { LiveSocket } from "./socket.js";
import { Store } from "./store.js";
import { setLanguage, t } from "./strings.js";
import { everyMinute } from "./ticker.js";

const KNOWN_WIDGETS = ["clock", "weather", "departures", "sensors", "forecast", "strava", "calendar"];
// The calendar sits in the hero, in the room clock and weather leave on the right: the body's columns (and
// rows, in portrait) keep the width and height their lists need.
const HERO_WIDGETS = new Set(["clock", "weather", "calendar"]);
// Relative column widths in landscape: what each widget's content needs at the same type size.
const BODY_WEIGHT = { departures: 1, sensors: 1.1, forecast: 0.85, strava: 1 };
// Relative row heights in portrait.
const PORTRAIT_WEIGHT = { departures: 1.2, sensors: 1.2, forecast: 1.2, strava: 0.75 };
const DEFAULT_PAGE = {
  title: "Homeboard",
  locale: navigator.language || "en-GB",
  clock_24h: true,
  night_from: null,
  night_until: null,
  widgets: KNOWN_WIDGETS,
  large: ["departures", "strava"],
  reload_at: null,
};
const OFFLINE_GRACE_MS = 3_000; // a quick server restart should not flash the banner
const MIN_UPTIME_FOR_RELOAD_MS = 120_000; // never reload twice in the same minute
const RELOAD_GUARD_KEY = "homeboard.reloaded_at";

/** GET JSON with a timeout; null on any failure (the caller decides what that means). */
async function getJson(url, timeoutMs = 5_000) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  try {
    const response = await fetch(url, { cache: "no-store", signal: ctrl.signal });
    return response.ok ? await response.json() : null;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

function pageRole() {
  const wall = new URLSearchParams(location.search).get("wall");
  if (wall === "1") return "wall";
  if (wall === "0") return "viewer";
  // The kiosk browser on the Pi opens the page on loopback; anything from the LAN is a viewer.
  return ["127.0.0.1", "localhost", "[::1]"].includes(location.hostname) ? "wall" : "viewer";
}

/** Reload, but never in a loop: at most once a minute even if the server keeps asking. */
function safeReload(reason) {
  try {
    const last = Number(sessionStorage.getItem(RELOAD_GUARD_KEY) || 0);
    if (Date.now() - last < 60_000) {
      console.warn("homeboard: reload skipped (reloaded less than a minute ago):", reason);
      return;
    }
    sessionStorage.setItem(RELOAD_GUARD_KEY, String(Date.now()));
  } catch (err) {
    console.warn("homeboard: no session storage, reload without a loop guard", err);
  }
  console.info("homeboard: reloading:", reason);
  location.reload();
}

function layout(page) {
  const hero = document.getElementById("hero");
  const body = document.getElementById("body");
  const wanted = Array.isArray(page.widgets) ? page.widgets : KNOWN_WIDGETS;
  const large = new Set(Array.isArray(page.large) ? page.large : []);
  const names = [];
  for (const name of wanted) {
    if (!KNOWN_WIDGETS.includes(name) || names.includes(name)) {
      console.warn("homeboard: unknown or repeated widget in page.widgets:", name);
      continue;
    }
    names.push(name);
  }
  const placed = [];
  const columns = [];
  for (const name of names) {
    const section = el(`section.w.w-${name}`, { "data-widget": name });
    if (HERO_WIDGETS.has(name)) hero.append(section);
    else {
      // A large widget gets a wider column in landscape and a whole row in portrait.
      if (large.has(name)) section.classList.add("is-large");
      const weight = (BODY_WEIGHT[name] ?? 1) * (large.has(name) ? 1.45 : 1);
      columns.push(`minmax(0, ${weight.toFixed(2)}fr)`);
      body.append(section);
    }
    placed.push([name, section]);
  }
  body.style.setProperty("--columns", columns.join(" ") || "minmax(0, 1fr)");
  markPortraitPlaces(body);
  hero.hidden = !hero.children.length;
  body.hidden = !body.children.length;
  return placed;
}

/**
 * Where each body widget lands in the two-column portrait grid (a lone half-width widget takes the whole row),
 * and how the rows share the height.
 */
function markPortraitPlaces(body) {
  const sections = [...body.children];
  const rows = [];
  let column = 0;
  sections.forEach((section, i) => {
    const next = sections[i + 1];
    let place;
    if (section.classList.contains("is-large")) place = "full";
    else if (column === 1) place = "right";
    else place = !next || next.classList.contains("is-large") ? "full" : "left";
    section.dataset.portrait = place;
    const weight = PORTRAIT_WEIGHT[section.dataset.widget] ?? 1;
    if (place === "right") rows[rows.length - 1] = Math.max(rows[rows.length - 1], weight);
    else rows.push(weight);
    column = place === "left" ? 1 : 0;
  });
  body.style.setProperty("--portrait-rows", rows.map((w) => `minmax(0, ${w}fr)`).join(" ") || "none");
}

/** Import and mount one widget; a failure is shown in its place and logged, never thrown. */
async function mountWidget(name, section, store) {
  try {
    const module = await import(`./widgets/${name}.js`);
    module.mount(section, store);
  } catch (err) {
    console.error(`homeboard: widget ${name} failed`, err);
    section.classList.add("is-broken");
    section.append(el("p.card-status", t("widgetFailed")));
  }
}

function setupOfflineBanner(store) {
  const banner = document.getElementById("offline");
  let timer = null;
  store.onConnection((conn) => {
    clearTimeout(timer);
    if (conn.online) {
      banner.hidden = true;
      document.body.classList.remove("is-offline");
      return;
    }
    const show = () => {
      setText(banner, t("offlineSince")(format.time(conn.sinceMs)));
      banner.hidden = false;
      document.body.classList.add("is-offline");
    };
    timer = setTimeout(show, Math.max(0, conn.sinceMs + OFFLINE_GRACE_MS - Date.now()));
  });
}

function setupSchedule(page, loadedMs) {
  const nightFrom = hhmm(page.night_from);
  const nightUntil = hhmm(page.night_until);
  const reloadAt = hhmm(page.reload_at);
  const check = async (nowMs) => {
    const minute = format.minutesOfDay(nowMs);
    document.body.dataset.theme = inRange(minute, nightFrom, nightUntil) ? "night" : "day";
    // Daily reload caps browser memory; only when the server answers, so we never reload into an error page.
    if (reloadAt !== null && minute === reloadAt && nowMs - loadedMs > MIN_UPTIME_FOR_RELOAD_MS) {
      if ((await getJson("/healthz")) !== null) safeReload("daily reload");
    }
  };
  check(Date.now());
  everyMinute(check);
}

function setupDisplay(store, role) {
  // A wall whose screen the server switched "off" goes black too, in case the backend cannot cut the power.
  store.subscribe("display", (_topic, state) => {
    const power = state?.data?.power;
    document.body.dataset.display = role === "wall" && power === "off" ? "off" : "on";
  });
}

async function boot() {
  const store = new Store();
  const loadedMs = Date.now();
  let version = null;
  Object.defineProperty(window, "__homeboard", {
    value: Object.freeze({
      store,
      get version() {
        return version;
      },
    }),
    writable: false,
    configurable: false,
  });
  try {
    const role = pageRole();
    document.body.dataset.role = role;
    const configLoaded = getJson("/api/config");
    // Connect at once: the snapshot fills the store while the config and widgets load, and each widget
    // draws what the store already holds when it subscribes.
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new LiveSocket(
      `${scheme}//${location.host}/ws`,
      {
        onSnapshot(msg) {
          if (version === null && typeof msg.version === "string") version = msg.version;
          else if (typeof msg.version === "string" && msg.version !== version) {
            safeReload(`server version ${msg.version} replaces ${version}`);
          }
          const serverMs = format.parseTime(msg.server_time);
          if (serverMs !== null) store.serverOffsetMs = serverMs - Date.now();
          store.replaceAll(msg.topics);
        },
        onUpdate(msg) {
          store.apply(msg.topic, msg);
        },
        onCommand(msg) {
          if (msg.type === "reload") safeReload("asked by the server");
        },
        onOnline: () => store.setConnection(true),
        onOffline: () => store.setConnection(false),
      },
      () => ({
        type: "heartbeat",
        role,
        version,
        rendered_at: format.isoNow(store.lastRenderMs ?? Date.now()),
      }),
    );
    socket.start();

    const config = await configLoaded;
    const page = { ...DEFAULT_PAGE, ...(config?.page ?? {}) };
    if (version === null && typeof config?.version === "string") version = config.version;
    format.configure({ locale: page.locale, timeZone: config?.timezone, clock24h: page.clock_24h !== false });
    setLanguage(page.locale);
    document.documentElement.lang = String(page.locale || "en").split("-")[0];
    if (typeof page.title === "string" && page.title) document.title = page.title;

    // No calendars configured: no calendar column (the server lists names and colours, never addresses).
    if (Array.isArray(config?.calendars) && !config.calendars.length && Array.isArray(page.widgets)) {
      page.widgets = page.widgets.filter((name) => name !== "calendar");
    }
    const placed = layout(page);
    if (placed.some(([name]) => name === "weather")) {
      placed.push(["alerts", document.getElementById("alerts")]);
    }
    await Promise.all(placed.map(([name, section]) => mountWidget(name, section, store)));

    if (config === null) {
      // Started while the server was away (defaults in use): reload once it can tell us the real config.
      store.onConnection(async (conn) => {
        if (conn.online && (await getJson("/api/config")) !== null) safeReload("the config is available now");
      });
    }

    for (const setup of [
      () => setupOfflineBanner(store),
      () => setupSchedule(page, loadedMs),
      () => setupDisplay(store, role),
    ]) {
      try {
        setup();
      } catch (err) {
        console.error("homeboard: setup failed", err);
      }
    }
  } catch (err) {
    console.error("homeboard: boot failed", err);
  } finally {
    document.body.dataset.ready = "1";
  }
}

boot();
