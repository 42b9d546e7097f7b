/**
 * Boot: read the config, connect, lay out the widgets whose data the server has; each widget set up on its own so
 * one cannot blank the wall.
 */

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
// The topic a widget draws (a key ending in "/" is a prefix: any sensor). The server's topics are exactly those of
// its config, so a widget whose topic is absent belongs to a source that is not configured: it is left out rather
// than "waiting for data" forever. The clock needs nothing.
const WIDGET_TOPIC = {
  clock: null,
  weather: "weather",
  forecast: "weather",
  departures: "departures",
  strava: "strava",
  sensors: "sensor/",
  calendar: "calendar",
};
// Relative column widths in landscape: what each widget's content needs at the same type size.
const BODY_WEIGHT = { departures: 1, sensors: 1.1, forecast: 0.85, strava: 1 };
// Relative row heights in portrait.
const PORTRAIT_WEIGHT = { departures: 1.2, sensors: 1.2, forecast: 1.2, strava: 0.75 };
const DEFAULT_PAGE = {
  title: "Homeboard",
  locale: navigator.language || "en-GB",
  units: "metric",
  clock_24h: true,
  night_from: null,
  night_until: null,
  widgets: KNOWN_WIDGETS,
  large: ["departures", "strava"],
  reload_at: null,
};
const FIRST_SNAPSHOT_WAIT_MS = 2_000; // then lay out what is known; later topics still bring their widgets
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

/** One section per configured widget, in the config's order, not yet on the page. */
function makeSections(page) {
  const wanted = Array.isArray(page.widgets) ? page.widgets : KNOWN_WIDGETS;
  const large = new Set(Array.isArray(page.large) ? page.large : []);
  const sections = [];
  for (const name of wanted) {
    if (!KNOWN_WIDGETS.includes(name) || sections.some((s) => s.name === name)) {
      console.warn("homeboard: unknown or repeated widget in page.widgets:", name);
      continue;
    }
    const node = el(`section.w.w-${name}`, { "data-widget": name });
    // A large widget gets a wider column in landscape and a whole row in portrait.
    if (large.has(name)) node.classList.add("is-large");
    sections.push({ name, node, mounted: false });
  }
  return sections;
}

/** Whether the server has the data a widget draws (see WIDGET_TOPIC). */
function hasTopic(store, name) {
  const key = WIDGET_TOPIC[name];
  if (key === null) return true;
  return key.endsWith("/") ? store.names(key).length > 0 : store.get(key) !== undefined;
}

/**
 * Put on the page the widgets whose topic the server has, in the config's order, and share the room among them;
 * the others leave the page. Returns the sections that came on for the first time (to be mounted).
 */
function arrange(sections, store) {
  const hero = document.getElementById("hero");
  const body = document.getElementById("body");
  const on = sections.filter((s) => hasTopic(store, s.name));
  const wantHero = on.filter((s) => HERO_WIDGETS.has(s.name)).map((s) => s.node);
  const wantBody = on.filter((s) => !HERO_WIDGETS.has(s.name)).map((s) => s.node);
  const same = (parent, want) =>
    parent.children.length === want.length && want.every((node, i) => parent.children[i] === node);
  if (!same(hero, wantHero) || !same(body, wantBody)) {
    for (const s of sections) if (!on.includes(s)) s.node.remove();
    hero.append(...wantHero);
    body.append(...wantBody);
    const columns = wantBody.map((node) => {
      const name = node.dataset.widget;
      const weight = (BODY_WEIGHT[name] ?? 1) * (node.classList.contains("is-large") ? 1.45 : 1);
      return `minmax(0, ${weight.toFixed(2)}fr)`;
    });
    body.style.setProperty("--columns", columns.join(" ") || "minmax(0, 1fr)");
    markPortraitPlaces(body);
    hero.hidden = !hero.children.length;
    body.hidden = !body.children.length;
  }
  const fresh = on.filter((s) => !s.mounted);
  for (const s of fresh) s.mounted = true;
  return fresh;
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
    format.configure({
      locale: page.locale,
      timeZone: config?.timezone,
      clock24h: page.clock_24h !== false,
      units: page.units,
    });
    setLanguage(page.locale);
    if (config?.sensor_names && typeof config.sensor_names === "object") store.sensorNames = config.sensor_names;
    document.documentElement.lang = format.currentLocale();
    if (typeof page.title === "string" && page.title) document.title = page.title;

    // Widgets come and go with their topics: the first snapshot, or a server restarted with another config.
    const sections = makeSections(page);
    const mountFresh = () => {
      const fresh = arrange(sections, store);
      if (fresh.some((s) => s.name === "weather")) {
        fresh.push({ name: "alerts", node: document.getElementById("alerts") });
      }
      return Promise.all(fresh.map((s) => mountWidget(s.name, s.node, store)));
    };
    // The first layout waits (briefly) for the snapshot, so the wall does not start as a lone clock and then jump.
    await Promise.race([store.firstSnapshot, new Promise((resolve) => setTimeout(resolve, FIRST_SNAPSHOT_WAIT_MS))]);
    store.onTopicSet(() => mountFresh());
    await mountFresh();

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
