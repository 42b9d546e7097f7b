/** The latest state per topic, and who to tell when it changes. */

const CLOCK_SKEW_MS = 5_000; // below this the snapshot's 1-second server_time is no better than our own clock

/** A prefix subscription ends with "/" ("sensor/" gets every sensor topic). */
function matches(key, topic) {
  return key.endsWith("/") ? topic.startsWith(key) : key === topic;
}

export class Store {
  constructor() {
    this.topics = new Map(); // topic → {data, updated_at, stale, status, error}
    this.serverOffsetMs = 0; // server clock − browser clock, from the last snapshot
    this.connection = { online: false, sinceMs: Date.now() };
    this.lastRenderMs = null; // when the clock last drew: sent in heartbeats as proof of life
    this.sensorNames = {}; // sensor id → configured name (from /api/config), for a sensor with no reading yet
    this._subs = new Set(); // {key, fn}
    this._connSubs = new Set();
    this._setSubs = new Set();
    this._batch = false; // inside replaceAll: topic-set listeners hear once, at the end
    // Settles with the first snapshot: which topics exist (and so which widgets) is known from then on.
    this.firstSnapshot = new Promise((resolve) => {
      this._snapshotArrived = resolve;
    });
  }

  /** The server's clock when this browser's is off by more than a few seconds (a phone), else the browser's. */
  now() {
    return Date.now() + (Math.abs(this.serverOffsetMs) > CLOCK_SKEW_MS ? this.serverOffsetMs : 0);
  }

  get(topic) {
    return this.topics.get(topic);
  }

  /** Topic names under a prefix, in the order the server first sent them. */
  names(prefix) {
    return [...this.topics.keys()].filter((t) => t.startsWith(prefix));
  }

  /** fn(topic, state) now for what is known, and on every change; state is undefined when a topic goes away. */
  subscribe(key, fn) {
    const sub = { key, fn };
    this._subs.add(sub);
    for (const [topic, state] of this.topics) if (matches(key, topic)) this._call(sub, topic, state);
    return () => this._subs.delete(sub);
  }

  /** A snapshot replaces everything: topics it does not name are gone. */
  replaceAll(topics) {
    const incoming = topics && typeof topics === "object" ? topics : {};
    const gone = [...this.topics.keys()].filter((t) => !(t in incoming));
    for (const topic of gone) {
      this.topics.delete(topic);
      this._notify(topic, undefined);
    }
    this._batch = true;
    let added = false;
    try {
      for (const [topic, state] of Object.entries(incoming)) added = this.apply(topic, state) || added;
    } finally {
      this._batch = false;
    }
    if (gone.length || added) this._topicSetChanged();
    this._snapshotArrived();
  }

  /** fn() whenever a topic appears or goes away (after a whole snapshot, once). */
  onTopicSet(fn) {
    this._setSubs.add(fn);
    return () => this._setSubs.delete(fn);
  }

  /** Store one topic's state; true when the topic is new. */
  apply(topic, state) {
    if (typeof topic !== "string" || !state || typeof state !== "object") return false;
    const added = !this.topics.has(topic);
    const clean = {
      data: state.data && typeof state.data === "object" ? state.data : null,
      updated_at: typeof state.updated_at === "string" ? state.updated_at : null,
      stale: state.stale === true,
      status: typeof state.status === "string" ? state.status : "ok",
      error: typeof state.error === "string" ? state.error : null,
    };
    this.topics.set(topic, clean);
    this._notify(topic, clean);
    if (added && !this._batch) this._topicSetChanged();
    return added;
  }

  _topicSetChanged() {
    for (const fn of this._setSubs) {
      try {
        fn();
      } catch (err) {
        console.error("homeboard: topic-set listener failed", err);
      }
    }
  }

  setConnection(online) {
    if (online === this.connection.online) return;
    this.connection = { online, sinceMs: Date.now() };
    for (const fn of this._connSubs) {
      try {
        fn(this.connection);
      } catch (err) {
        console.error("homeboard: connection listener failed", err);
      }
    }
  }

  onConnection(fn) {
    this._connSubs.add(fn);
    fn(this.connection);
    return () => this._connSubs.delete(fn);
  }

  _notify(topic, state) {
    for (const sub of this._subs) if (matches(sub.key, topic)) this._call(sub, topic, state);
  }

  _call(sub, topic, state) {
    // One widget's bug must not keep the others from their update.
    try {
      sub.fn(topic, state);
    } catch (err) {
      console.error(`homeboard: listener for ${sub.key} failed on ${topic}`, err);
    }
  }
}
