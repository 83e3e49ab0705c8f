"use strict";
// The page talks only to the server that served it: GET /api/songs for the autocomplete
// (and, once at load, to learn the version and model date) and POST /api/recommend.

const SUGGESTION_LIMIT = 10;
const SONGS_API_MAX_LIMIT = 50;
// Long enough that a fast typist sends one request per pause, short enough to feel instant.
const DEBOUNCE_MS = 150;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 16000;

const form = document.getElementById("query-form");
const input = document.getElementById("song-input");
const listbox = document.getElementById("song-options");
const chipList = document.getElementById("chosen");
const chosenEmpty = document.getElementById("chosen-empty");
const statusRegion = document.getElementById("status");
const resultList = document.getElementById("results");
const resultsFor = document.getElementById("results-for");
const resultsNote = document.getElementById("results-note");
const versionText = document.getElementById("server-version");
const modelDateText = document.getElementById("model-date");

const chosen = [];
let options = [];
let active = -1;
let statusKind = "";
let waitingForServer = false;
let suggestTimer = 0;
let suggestAbort = null;
let recommendAbort = null;

/** A 503 or an unreachable server: worth retrying later, unlike a 4xx. */
class NotReady extends Error {
  constructor(message, retryAfterMs) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

function showStatus(text, kind = "info") {
  statusRegion.textContent = text;
  statusRegion.dataset.kind = kind;
  statusKind = kind;
}

function showError(error) {
  showStatus(error.message, "error");
}

function showServerInfo(body) {
  if (typeof body.version === "string") versionText.textContent = body.version;
  if (typeof body.model_date === "string") modelDateText.textContent = body.model_date;
}

function retryAfterMs(response) {
  const seconds = Number(response.headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

async function requestJSON(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new NotReady("The server cannot be reached.", 0);
  }
  const body = await response.json().catch(() => null);
  if (response.status === 503) {
    throw new NotReady(
      "The server is not ready yet: its recommendation rules are still loading.",
      retryAfterMs(response),
    );
  }
  if (!response.ok) {
    const detail = body && typeof body.error === "string" ? body.error : `HTTP ${response.status}`;
    throw new Error(`The server refused the request: ${detail}`);
  }
  return body;
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

// Doubling the wait (capped) keeps a room full of open pages from hammering a server that
// is still loading its rules; the server's Retry-After is honoured as a minimum.
async function withRetry(task, signal) {
  let backoff = BACKOFF_FIRST_MS;
  for (;;) {
    try {
      const result = await task();
      if (waitingForServer) {
        waitingForServer = false;
        showStatus("The server is ready.");
      }
      return result;
    } catch (error) {
      if (!(error instanceof NotReady)) throw error;
      const wait = Math.max(backoff, error.retryAfterMs);
      waitingForServer = true;
      showStatus(`${error.message} Trying again in ${Math.round(wait / 1000)} s.`, "waiting");
      await sleep(wait, signal);
      backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
    }
  }
}

function setExpanded(open) {
  listbox.hidden = !open;
  input.setAttribute("aria-expanded", String(open));
  if (!open) setActive(-1);
}

function setActive(index) {
  listbox.children[active]?.setAttribute("aria-selected", "false");
  active = index;
  const option = listbox.children[active];
  if (option) {
    option.setAttribute("aria-selected", "true");
    input.setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({ block: "nearest" });
  } else {
    input.removeAttribute("aria-activedescendant");
  }
}

function renderOptions(songs) {
  setExpanded(false);
  options = songs;
  listbox.replaceChildren(
    ...songs.map((song, index) => {
      const option = document.createElement("li");
      option.id = `song-option-${index}`;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      option.textContent = song;
      // Keep the focus (and the caret) in the text box while clicking an option.
      option.addEventListener("mousedown", (event) => event.preventDefault());
      option.addEventListener("click", () => choose(song));
      return option;
    }),
  );
  setExpanded(songs.length > 0 && document.activeElement === input);
}

function clearOptions() {
  clearTimeout(suggestTimer);
  suggestAbort?.abort();
  renderOptions([]);
}

function scheduleSuggestions() {
  clearTimeout(suggestTimer);
  suggestAbort?.abort();
  const query = input.value;
  if (query.trim() === "") {
    clearOptions();
    return;
  }
  suggestTimer = setTimeout(() => fetchSuggestions(query), DEBOUNCE_MS);
}

async function fetchSuggestions(query) {
  const controller = new AbortController();
  suggestAbort = controller;
  // Ask for a few more than shown, as the songs already chosen are left out.
  const limit = Math.min(SUGGESTION_LIMIT + chosen.length, SONGS_API_MAX_LIMIT);
  const url = `/api/songs?${new URLSearchParams({ q: query, limit: String(limit) })}`;
  try {
    const body = await withRetry(
      () => requestJSON(url, { signal: controller.signal }),
      controller.signal,
    );
    showServerInfo(body);
    const songs = body.songs.filter((song) => !chosen.includes(song)).slice(0, SUGGESTION_LIMIT);
    renderOptions(songs);
    if (songs.length === 0) {
      showStatus(`No other known song matches “${query.trim()}”.`, "no-match");
    } else if (statusKind === "no-match" || statusKind === "error") {
      // The user has moved on: an old complaint would only confuse.
      showStatus("");
    }
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
  }
}

function renderChips() {
  chipList.replaceChildren(
    ...chosen.map((song, index) => {
      const chip = document.createElement("li");
      chip.className = "chip";
      const name = document.createElement("span");
      name.textContent = song;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "chip-remove";
      remove.setAttribute("aria-label", `Remove ${song}`);
      remove.textContent = "×";
      remove.addEventListener("click", () => {
        removeChosen(index);
        input.focus();
      });
      chip.append(name, remove);
      return chip;
    }),
  );
  chosenEmpty.hidden = chosen.length > 0;
}

function choose(song) {
  if (!chosen.includes(song)) chosen.push(song);
  renderChips();
  input.value = "";
  clearOptions();
  input.focus();
  showStatus(`Added ${song}.`);
}

function removeChosen(index) {
  const [song] = chosen.splice(index, 1);
  renderChips();
  showStatus(`Removed ${song}.`);
}

// Where the answer's songs come from: the first `from_rules` from rules, the rest popular
// fill; the query songs the model does not know. A server that does not say marks nothing.
function describeOrigin(body) {
  const songs = body.songs;
  const fromRules = Number.isInteger(body.from_rules) ? body.from_rules : songs.length;
  const unknown = Array.isArray(body.unknown) ? body.unknown : [];
  const notes = [];
  if (songs.length > 0 && fromRules === 0) {
    notes.push("No rule matched these songs, so these are simply the most popular songs.");
  } else if (fromRules < songs.length) {
    const plural = fromRules === 1 ? "" : "s";
    notes.push(
      `The rules gave ${fromRules} song${plural}; the ones marked “popular” are the most ` +
        "popular songs, added to fill the list.",
    );
  }
  if (unknown.length > 0) {
    notes.push(`Not in the model, so ignored: ${unknown.join(", ")}.`);
  }
  return { fromRules, note: notes.join(" ") };
}

function renderResults(query, body) {
  const { fromRules, note } = describeOrigin(body);
  resultsFor.textContent = `For ${query.join(", ")}:`;
  resultsNote.textContent = note;
  resultsNote.hidden = note === "";
  resultList.replaceChildren(
    ...body.songs.map((song, index) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "song";
      name.textContent = song;
      item.append(name);
      if (index >= fromRules) {
        item.className = "filled";
        const tag = document.createElement("span");
        tag.className = "origin";
        tag.textContent = "popular";
        item.append(" ", tag);
      }
      return item;
    }),
  );
}

async function recommend() {
  if (chosen.length === 0) {
    showStatus("Add at least one song first.", "error");
    input.focus();
    return;
  }
  recommendAbort?.abort();
  const controller = new AbortController();
  recommendAbort = controller;
  const songs = [...chosen];
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ songs }),
    signal: controller.signal,
  };
  resultList.setAttribute("aria-busy", "true");
  showStatus("Asking the server…");
  try {
    const body = await withRetry(() => requestJSON("/api/recommend", init), controller.signal);
    showServerInfo(body);
    renderResults(songs, body);
    const plural = body.songs.length === 1 ? "" : "s";
    showStatus(`${body.songs.length} recommendation${plural} shown.`);
  } catch (error) {
    if (error.name !== "AbortError") showError(error);
  } finally {
    if (recommendAbort === controller) resultList.removeAttribute("aria-busy");
  }
}

input.addEventListener("input", scheduleSuggestions);
input.addEventListener("blur", () => setExpanded(false));
input.addEventListener("keydown", (event) => {
  switch (event.key) {
    case "ArrowDown":
    case "ArrowUp": {
      if (options.length === 0) return;
      event.preventDefault();
      if (listbox.hidden) setExpanded(true);
      const step = event.key === "ArrowDown" ? 1 : -1;
      const start = active === -1 && step === -1 ? 0 : active;
      setActive((start + step + options.length) % options.length);
      break;
    }
    case "Enter":
      if (!listbox.hidden && active >= 0) {
        event.preventDefault();
        choose(options[active]);
      } else if (input.value.trim() !== "") {
        // Half a title is not a song: only an empty box lets Enter press Recommend.
        event.preventDefault();
        showStatus("Choose one of the suggestions (arrow keys, then Enter).");
      }
      break;
    case "Escape":
      if (!listbox.hidden) {
        event.preventDefault();
        setExpanded(false);
      } else if (input.value !== "") {
        event.preventDefault();
        input.value = "";
        clearOptions();
      }
      break;
    case "Backspace":
      if (input.value === "" && chosen.length > 0) {
        event.preventDefault();
        removeChosen(chosen.length - 1);
      }
      break;
    default:
  }
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  recommend();
});

renderChips();
withRetry(() => requestJSON("/api/songs?limit=1"))
  .then(showServerInfo)
  .catch(showError);
