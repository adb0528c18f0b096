// memrec's page: a user's history, top-k and memory, through the service's own endpoints. No framework, no build.
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY_SHOWN = 50;
const state = {
  token: sessionStorage.getItem("memrec-token") || "",
  model: null,     // GET /model
  titles: new Map(),  // item id -> {title, category}
  shown: null,     // {user, k, items}: the top-k on screen, to mark what entered or left
};

// ----------------------------------------------------------------------------- helpers
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((child) => child != null));
  return node;
}

class NeedsToken extends Error {}

function describe(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${d.loc.slice(1).join(".")}: ${d.msg}`).join("; ");
  return `the service answered ${status}`;
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body) headers["Content-Type"] = "application/json";
  const reply = await fetch(path, { ...options, headers });
  const body = await reply.json().catch(() => null);
  if (reply.status === 401) {
    $("token-form").hidden = false;
    throw new NeedsToken(state.token ? "The token was refused: enter the service's token." : "This service needs its token: enter it below.");
  }
  if (!reply.ok) throw new Error(describe(body, reply.status));
  return body;
}

function say(text, kind = "") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

function fail(error) {
  say(error.message, "error");
  if (error instanceof NeedsToken) $("token").focus();
}

function when(time) {
  if (time == null) return "never";
  if (time > 1e8) return new Date(time * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  return `t = ${time}`;  // a data set without timestamps counts positions
}

function plural(n, word) {
  const many = word.endsWith("y") ? `${word.slice(0, -1)}ies` : `${word}s`;  // entry: entries
  return `${n.toLocaleString()} ${n === 1 ? word : many}`;
}

function meter(fraction) {
  const bar = el("span");
  bar.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  return el("span", { class: "meter", "aria-hidden": "true" }, bar);
}

function describeItem(item) {
  const info = state.titles.get(item) || {};
  const meta = [info.category, `item ${item}`].filter(Boolean).join(" · ");
  return [el("span", { class: "title", text: info.title || item }), el("span", { class: "meta", text: meta })];
}

async function lookUp(items) {
  const wanted = [...new Set(items)].filter((item) => !state.titles.has(item));
  for (let start = 0; start < wanted.length; start += 200) {
    const query = wanted.slice(start, start + 200).map((item) => `id=${encodeURIComponent(item)}`).join("&");
    const reply = await api(`/items?${query}`);
    for (const info of reply.items) state.titles.set(info.item, info);
  }
}

// ----------------------------------------------------------------------------- the model and sample users
async function loadModel() {
  const model = (state.model = await api("/model"));
  const memory = model.has_memory ? `per-user memory (update trigger: ${triggerText(model.trigger)})` : "no per-user memory";
  const parts = [`${model.model}`, plural(model.items, "item"), memory];
  if (model.neighbours) parts.push("neighbour memory");
  $("model").textContent = `Model: ${parts.join(" · ")}`;
}

function triggerText(trigger) {
  switch (trigger.update_trigger) {
    case "interaction_count": return `every ${plural(trigger.interaction_threshold, "interaction")}`;
    case "drift_threshold": return `a drift above ${trigger.drift_threshold}`;
    case "time_based": return `every ${trigger.time_period} time units`;
    default: return "only when asked";
  }
}

async function loadSamples() {
  const { users } = await api("/users?limit=6");
  const list = $("sample-list");
  list.replaceChildren(...users.map((user) => el("li", {}, el("button", { type: "button", onclick: () => pick(user) }, user))));
  $("samples").hidden = users.length === 0;
}

function pick(user) {
  $("user").value = user;
  show(user).catch(fail);
}

// ----------------------------------------------------------------------------- a user
async function show(user, event = null) {
  const k = Math.max(1, Math.min(50, Number($("k").value) || 10));
  const path = encodeURIComponent(user);
  say(`Loading ${user}…`);
  const withNeighbours = state.model && state.model.neighbours;
  const [rec, info, , near] = await Promise.all([api(`/recommend?user=${path}&k=${k}`), api(`/users/${path}?limit=${HISTORY_SHOWN}`),
                                                withNeighbours ? loadModel() : null,
                                                withNeighbours ? api(`/users/${path}/neighbours?k=5`) : null]);
  rec.near = near ? near.neighbours : [];
  await lookUp([...rec.items.map((r) => r.item), ...info.history.map((e) => e.item), ...rec.near.flatMap((n) => n.next)]);
  const same = state.shown && state.shown.user === user && state.shown.k === k;
  const before = same && event ? state.shown.items : null;
  state.shown = { user, k, items: rec.items.map((r) => r.item) };
  history.replaceState(null, "", `#${path}`);
  $("user-view").hidden = false;
  $("user-heading").textContent = `User ${user}` + (rec.known ? "" : " (new: nothing known yet)");
  showRecommendations(rec, before, event);
  showHistory(info, event);
  showMemory(rec, event);
  say(event ? event.message : `Showing ${user}: ${plural(rec.history_length, "event")} in the history.`);
}

function showRecommendations(rec, before, event) {
  const items = rec.items.map((r, n) => {
    const entered = before && !before.includes(r.item);
    const button = el("button", { type: "button", class: "item", "data-item": r.item, onclick: () => send(r.item).catch(fail) },
      el("span", { class: "sr-only", text: `Send as an event, rank ${n + 1}: ` }),
      ...describeItem(r.item),
      el("span", { class: "score" }, el("span", { class: "sr-only", text: "score " }), r.score.toFixed(3)));
    if (entered) button.querySelector(".title").append(el("span", { class: "badge new", text: "new" }));
    return el("li", { class: entered ? "entered" : "" }, button);
  });
  $("recs").replaceChildren(...items);
  $("recs-heading").textContent = `Top ${rec.items.length} recommendations`;
  const now = new Set(rec.items.map((r) => r.item));
  const left = before ? before.filter((item) => !now.has(item) && item !== event.item) : [];
  $("left").hidden = left.length === 0;
  $("left-heading").textContent = `Left the top ${rec.items.length}`;
  $("left-list").replaceChildren(...left.map((item) => el("li", {}, (state.titles.get(item) || {}).title || item)));
}

function showHistory(info, event) {
  const newest = [...info.history].reverse();
  $("history-heading").textContent = `History (${plural(info.history_length, "event")})`;
  $("history-note").textContent = info.history_length === 0
    ? "No events yet: the model answers as for an empty history. Choose a recommendation to start."
    : `Newest first${info.history_length > newest.length ? `; the ${newest.length} most recent` : ""}.`;
  $("history").replaceChildren(...newest.map((e, n) => el("li", { class: event && n === 0 ? "just" : "" },
    ...describeItem(e.item), el("span", { class: "when", text: when(e.timestamp) }))));
}

function showMemory(rec, event) {
  const model = state.model;
  const panel = $("memory-panel");
  panel.hidden = !(rec.memory || rec.routing_weights || (model && model.neighbours));
  $("reset").hidden = !rec.memory;
  const facts = [];
  if (rec.memory) {
    const m = rec.memory;
    const trigger = model.trigger;
    const pending = el("dd", {}, trigger.update_trigger === "interaction_count"
      ? `${m.pending_items} of ${trigger.interaction_threshold}` : `${m.pending_items}`);
    if (trigger.update_trigger === "interaction_count") pending.append(meter(m.pending_items / trigger.interaction_threshold));
    facts.push(["Since the last update", pending], ["Update trigger", triggerText(trigger)],
      ["Updates", m.updates], ["Last update", when(m.last_update_time)], ["Interactions", m.interaction_count],
      ["Last event", when(m.last_event_time)], ["Memory norm", m.norm.toFixed(3)]);
  }
  $("memory").replaceChildren(...facts.flatMap(([name, value]) => [el("dt", { text: name }),
    value instanceof Node ? value : el("dd", { text: String(value) })]));
  const callout = $("memory-event");
  callout.hidden = !(event && rec.memory);
  if (event && rec.memory) {
    callout.className = event.updated ? "callout fired" : "callout";
    callout.textContent = event.updated ? "The trigger fired on this event: the memory was updated."
      : event.reset ? "The memory starts over from the model's initial memory; the history is kept."
      : "Event recorded: it waits in the memory until the trigger fires.";
  }
  const routing = Object.entries(rec.routing_weights || {});
  $("routing").hidden = routing.length === 0;
  $("routing-list").replaceChildren(...routing.map(([expert, weight]) => el("li", {},
    el("span", { text: expert }), meter(weight), el("span", { class: "value", text: `${(weight * 100).toFixed(1)}%` }))));
  const n = model && model.neighbours;
  $("neighbours").hidden = !n;
  if (n) {
    $("neighbours-text").textContent = `Rankings mix in what the ${n.setting.k} most similar moments of other users led to ` +
      `(weight ${n.setting.weight}): ${plural(n.training_entries, "entry")} from training, ` +
      `${plural(n.served_entries, "entry")} from this service's event logs.` +
      (rec.near.length ? " The nearest behind this ranking:" : "");
  }
  $("near-list").replaceChildren(...(rec.near || []).map((n) => el("li", {},
    el("span", { class: "title", text: `user ${n.user}` }),
    el("span", { class: "meta", text: `similarity ${n.similarity.toFixed(3)}; then ` +
      n.next.map((item) => (state.titles.get(item) || {}).title || item).join(", ") }))));
}

// ----------------------------------------------------------------------------- actions
async function send(item) {
  const user = state.shown.user;
  const title = (state.titles.get(item) || {}).title || item;
  say(`Sending ${title}…`);
  const reply = await api("/events", { method: "POST", body: JSON.stringify({ user, item }) });
  const updated = reply.events[0].memory_updated;
  await show(user, { item, updated, message: `Sent “${title}” as ${user}'s event${updated ? "; the memory was updated" : ""}.` });
  const first = $("recs").querySelector("button");
  if (first) first.focus();
  loadSamples().catch(() => {});
}

async function reset() {
  const user = state.shown.user;
  await api(`/users/${encodeURIComponent(user)}/memory`, { method: "DELETE" });
  await show(user, { item: null, reset: true, message: `${user}'s memory was reset; the history is kept.` });
}

function newUser() {
  const user = `guest-${Math.random().toString(36).slice(2, 8)}`;
  $("user").value = user;
  show(user).then(() => $("user-heading").focus()).catch(fail);
}

async function start() {
  $("user-form").addEventListener("submit", (e) => {
    e.preventDefault();
    show($("user").value.trim()).then(() => $("user-heading").focus()).catch(fail);
  });
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("memrec-token", state.token);
    $("token-form").hidden = true;
    say("");
    startLoading().catch(fail);
  });
  $("new-user").addEventListener("click", newUser);
  $("reset").addEventListener("click", () => reset().catch(fail));
  await startLoading();
}

async function startLoading() {
  await loadModel();
  await loadSamples();
  const linked = decodeURIComponent(location.hash.slice(1));
  if (linked && !state.shown) {
    $("user").value = linked;
    await show(linked);
  }
  if (!state.shown) say("Choose a user from the store, type an id, or start a new user.");
}

start().catch(fail);
