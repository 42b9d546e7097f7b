/** The page's own words, in English and Swedish; chosen once from the configured locale. */

const WORDS = {
  en: {
    departures: "Departures",
    indoors: "Sensors",
    forecast: "Forecast",
    strava: "Training",
    thisWeek: "This week",
    now: "Now",
    today: "Today",
    tomorrow: "Tomorrow",
    cancelled: "cancelled",
    leaveIn: (min) => `leave in ${min} min`,
    leaveNow: "leave now",
    min: "min",
    seconds: "s",
    updated: (when) => `updated ${when}`,
    offlineSince: (when) => `offline since ${when}`,
    waiting: "waiting for data",
    unavailable: "unavailable",
    feelsLike: "feels like",
    wind: "wind",
    humidity: "humidity",
    sunrise: "sunrise",
    sunset: "sunset",
    week: (n) => `week ${n}`,
    todayRange: "today",
    noDepartures: "no departures in the next hour",
    noActivities: "no activities yet",
    noSensors: "no sensors configured",
    more: (n) => `+${n} more`,
    widgetFailed: "this part of the page failed to start",
    rising: "rising",
    falling: "falling",
    steady: "steady",
    activities: (n) => (n === 1 ? "1 activity" : `${n} activities`),
    calendar: "Calendar",
    nothingPlanned: "nothing planned",
    noTitle: "(no title)",
    leftOut: (n) => (n === 1 ? "1 event left out" : `${n} events left out`),
    allDay: "all day",
    // Compass points as WeatherAPI writes them (English letters): kept as they are.
    compass: (dir) => dir,
    sports: {},
  },
  sv: {
    departures: "Avgångar",
    indoors: "Givare",
    forecast: "Prognos",
    strava: "Träning",
    thisWeek: "Denna vecka",
    now: "Nu",
    today: "Idag",
    tomorrow: "Imorgon",
    cancelled: "inställd",
    leaveIn: (min) => `gå om ${min} min`,
    leaveNow: "gå nu",
    min: "min",
    seconds: "s",
    updated: (when) => `uppdaterad ${when}`,
    offlineSince: (when) => `offline sedan ${when}`,
    waiting: "väntar på data",
    unavailable: "inte tillgänglig",
    feelsLike: "känns som",
    wind: "vind",
    humidity: "fukt",
    sunrise: "soluppgång",
    sunset: "solnedgång",
    week: (n) => `vecka ${n}`,
    todayRange: "idag",
    noDepartures: "inga avgångar inom en timme",
    noActivities: "inga aktiviteter än",
    noSensors: "inga givare inställda",
    more: (n) => `+${n} till`,
    widgetFailed: "den här delen av sidan kunde inte starta",
    rising: "stiger",
    falling: "sjunker",
    steady: "stadig",
    activities: (n) => (n === 1 ? "1 aktivitet" : `${n} aktiviteter`),
    calendar: "Kalender",
    nothingPlanned: "inget inplanerat",
    noTitle: "(ingen rubrik)",
    leftOut: (n) => (n === 1 ? "1 händelse utelämnad" : `${n} händelser utelämnade`),
    allDay: "heldag",
    // In Swedish east is O (ost) and west V (väst): "SSW" is written "SSV".
    compass: (dir) => dir.replace(/E/g, "O").replace(/W/g, "V"),
    sports: {
      Run: "Löpning",
      TrailRun: "Terränglöpning",
      VirtualRun: "Löpband",
      Walk: "Promenad",
      Hike: "Vandring",
      Snowshoe: "Snöskor",
      Ride: "Cykling",
      GravelRide: "Grusvägscykling",
      MountainBikeRide: "Mountainbike",
      EBikeRide: "Elcykel",
      VirtualRide: "Inomhuscykling",
      Swim: "Simning",
      NordicSki: "Längdskidor",
      AlpineSki: "Utförsåkning",
      BackcountrySki: "Turskidor",
      Rowing: "Rodd",
      Kayaking: "Kajak",
      Canoeing: "Kanot",
      WeightTraining: "Styrketräning",
      Workout: "Träningspass",
      Yoga: "Yoga",
      IceSkate: "Skridskor",
    },
  },
};

let words = WORDS.en;

/** Pick the word list for a BCP 47 locale ("sv-SE" → Swedish); anything unknown is English. */
export function setLanguage(locale) {
  const lang = String(locale || "").split("-")[0].toLowerCase();
  words = WORDS[lang] || WORDS.en;
}

/** The word (or word function) for a key. */
export function t(key) {
  return words[key];
}

/** Every word list, so a test can check that each language has every key. */
export const LANGUAGES = Object.freeze(Object.keys(WORDS));
export function wordsFor(lang) {
  return WORDS[lang];
}
