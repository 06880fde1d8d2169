// Postoffice web inbox. Plain JavaScript, no dependencies, no build step.
// Message data is only ever put into the page with textContent; HTML mail
// is shown in a sandboxed iframe served by /api/v1/.../html.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  csrf: "", mailbox: "", page: 1, perPage: 50, q: "", total: 0,
  messages: [], sel: -1, open: null, tab: "html",
};

function status(msg) {
  $("status").textContent = msg || "";
  if (msg) setTimeout(() => { if ($("status").textContent === msg) $("status").textContent = ""; }, 4000);
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) { showLogin(); throw new Error("login required"); }
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

const mbPath = () => "/api/v1/mailboxes/" + encodeURIComponent(state.mailbox);
const msgPath = (id) => mbPath() + "/messages/" + encodeURIComponent(id);

function showLogin() {
  $("app").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
}

async function start() {
  const s = await api("GET", "/api/v1/session");
  state.csrf = s.csrf_token;
  if (s.login_required) { showLogin(); return; }
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !s.user;
  await loadMailboxes();
  connectEvents();
}

async function loadMailboxes() {
  const data = await api("GET", "/api/v1/mailboxes");
  const sel = $("mailbox");
  const keep = state.mailbox;
  sel.textContent = "";
  for (const m of data.mailboxes) {
    const o = document.createElement("option");
    o.value = m.name;
    o.textContent = m.name + " (" + m.messages + (m.unread ? ", " + m.unread + " unread" : "") + ")";
    sel.appendChild(o);
  }
  const names = data.mailboxes.map((m) => m.name);
  state.mailbox = names.includes(keep) ? keep : (names[0] || "");
  sel.value = state.mailbox;
  sel.hidden = names.length === 0;
  await loadList();
}

function fmtDate(s) {
  if (!s) return "";
  const d = new Date(s);
  const now = new Date();
  return d.toDateString() === now.toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString();
}

function fmtSize(n) {
  return n < 1024 ? n + " B" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(1) + " MiB";
}

// The list pane says "Loading…" while a list is on its way and the pane
// has none to show (at the start), then "No messages yet" when the list is
// empty; the view pane says "Select a message" while no
// message is open, and "Loading…" while one is on its way.
function showLoading() {
  if ($("list").children.length) return;
  $("empty").hidden = true;
  $("loading").hidden = false;
}

function showPlaceholder(text) {
  $("placeholder-text").textContent = text;
  $("placeholder").hidden = !$("view").hidden;
}

async function loadList() {
  if (!state.mailbox) { renderList(); return; }
  showLoading();
  const u = mbPath() + "/messages?page=" + state.page + "&per_page=" + state.perPage +
    (state.q ? "&q=" + encodeURIComponent(state.q) : "");
  try {
    const data = await api("GET", u);
    state.total = data.total;
    state.messages = data.messages;
    if (state.messages.length === 0 && state.page > 1) { state.page--; return loadList(); }
  } catch (e) { status(e.message); state.messages = []; state.total = 0; }
  if (state.open) state.sel = state.messages.findIndex((m) => m.id === state.open.id);
  if (state.sel >= state.messages.length) state.sel = state.messages.length - 1;
  renderList();
}

function renderList() {
  const ul = $("list");
  ul.textContent = "";
  state.messages.forEach((m, i) => {
    const li = document.createElement("li");
    li.dataset.id = m.id;
    li.setAttribute("role", "option");
    if (!m.read) li.classList.add("unread");
    if (i === state.sel) li.classList.add("sel");
    const from = document.createElement("span"); from.className = "from"; from.textContent = m.from || "(no sender)";
    const date = document.createElement("span"); date.className = "date"; date.textContent = fmtDate(m.date || m.received);
    const subj = document.createElement("span"); subj.className = "subj"; subj.textContent = m.subject || "(no subject)";
    if (m.attachments) subj.classList.add("clip");
    li.append(from, date, subj);
    li.addEventListener("click", () => { state.sel = i; openMessage(m.id); });
    ul.appendChild(li);
  });
  const first = (state.page - 1) * state.perPage;
  $("count").textContent = state.total ? (first + 1) + "–" + (first + state.messages.length) + " of " + state.total : "";
  $("loading").hidden = true;
  $("empty").textContent = state.q ? "No messages match the search" : "No messages yet";
  $("empty").hidden = state.messages.length > 0;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = first + state.messages.length >= state.total;
}

function select(i) {
  if (i < 0 || i >= state.messages.length) return;
  state.sel = i;
  renderList();
  const li = $("list").children[i];
  if (li) li.scrollIntoView({ block: "nearest" });
}

function setTab(t) {
  state.tab = t;
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === t);
  for (const p of document.querySelectorAll(".tab")) p.classList.toggle("active", p.dataset.pane === t);
  if (t === "source" && state.open && !state.open.sourceLoaded) loadSource();
}

async function loadSource() {
  const m = state.open;
  m.sourceLoaded = true;
  const r = await fetch(msgPath(m.id) + "/raw", { credentials: "same-origin" });
  $("v-source").textContent = r.ok ? await r.text() : "(source unavailable)";
}

async function openMessage(id) {
  let m;
  showPlaceholder("Loading…");
  try { m = await api("GET", msgPath(id)); } catch (e) { status(e.message); showPlaceholder("Select a message"); return; }
  state.open = m;
  renderList();
  $("app").classList.add("viewing");
  $("view").hidden = false;
  showPlaceholder("Select a message");
  $("v-subject").textContent = m.subject || "(no subject)";
  const meta = $("v-meta");
  meta.textContent = "";
  const rows = [["From", m.from], ["To", m.to.join(", ")], ["Cc", m.cc.join(", ")],
    ["Date", m.date ? new Date(m.date).toLocaleString() : ""], ["Received", new Date(m.received).toLocaleString()],
    ["Return-Path", m.envelope.return_path], ["Size", fmtSize(m.size)]];
  for (const [k, v] of rows) {
    if (!v) continue;
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    meta.append(dt, dd);
  }
  $("problems").hidden = m.problems.length === 0;
  $("problems").textContent = m.problems.length ? "This message is malformed: " + m.problems.join("; ") : "";
  const hasHTML = m.html !== "";
  document.querySelector('[data-tab="html"]').disabled = !hasHTML;
  $("remote-note").hidden = !m.remote_content;
  $("html-frame").src = hasHTML ? msgPath(m.id) + "/html" : "about:blank";
  $("v-text").textContent = m.text || "(no text part)";
  const hb = $("v-headers");
  hb.textContent = "";
  for (const h of m.headers) {
    const tr = document.createElement("tr");
    const k = document.createElement("td"); k.textContent = h.name;
    const v = document.createElement("td"); v.textContent = h.value;
    tr.append(k, v);
    hb.appendChild(tr);
  }
  $("raw-link").href = msgPath(m.id) + "/raw";
  $("v-source").textContent = "";
  const al = $("v-attachments");
  al.textContent = "";
  for (const a of m.attachments) {
    const li = document.createElement("li");
    const link = document.createElement("a");
    link.href = msgPath(m.id) + "/parts/" + a.part + "?download=1";
    link.textContent = a.filename || "part " + a.part;
    link.setAttribute("download", a.filename || "");
    li.append(link, " " + a.content_type + ", " + fmtSize(a.size));
    al.appendChild(li);
  }
  document.querySelector('[data-tab="attachments"]').textContent = "Attachments (" + m.attachments.length + ")";
  setTab(hasHTML ? "html" : "text");
  if (!m.read) {
    api("PATCH", msgPath(m.id), { read: true }).then(() => {
      const x = state.messages.find((s) => s.id === m.id);
      if (x) { x.read = true; renderList(); }
    }).catch(() => {});
  }
}

function closeView() {
  state.open = null;
  $("view").hidden = true;
  $("app").classList.remove("viewing");
  $("html-frame").src = "about:blank";
  showPlaceholder("Select a message");
}

async function deleteOpen() {
  const m = state.open || state.messages[state.sel];
  if (!m) return;
  try {
    await api("DELETE", msgPath(m.id));
  } catch (e) { status(e.message); return; }
  status("Deleted.");
  const idx = state.messages.findIndex((x) => x.id === m.id);
  closeView();
  await loadList();
  if (state.messages.length) select(Math.min(Math.max(idx, 0), state.messages.length - 1));
}

let es = null;
let reloadTimer = null;
function scheduleReload() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => { loadMailboxes(); }, 150);
}

function connectEvents() {
  if (es) es.close();
  es = new EventSource("/api/v1/events");
  es.addEventListener("hello", () => $("live").classList.add("on"));
  for (const kind of ["arrived", "deleted", "updated", "resync"]) es.addEventListener(kind, scheduleReload);
  es.onerror = () => $("live").classList.remove("on");
}

function bind() {
  $("mailbox").addEventListener("change", (e) => { state.mailbox = e.target.value; state.page = 1; state.sel = -1; closeView(); loadList(); });
  let t = null;
  $("search").addEventListener("input", (e) => {
    clearTimeout(t);
    t = setTimeout(() => { state.q = e.target.value.trim(); state.page = 1; state.sel = -1; loadList(); }, 250);
  });
  $("prev").addEventListener("click", () => { if (state.page > 1) { state.page--; state.sel = -1; loadList(); } });
  $("next").addEventListener("click", () => { state.page++; state.sel = -1; loadList(); });
  $("back").addEventListener("click", closeView);
  $("delete").addEventListener("click", deleteOpen);
  $("load-remote").addEventListener("click", () => {
    if (!state.open) return;
    $("html-frame").src = msgPath(state.open.id) + "/html?remote=1";
    $("remote-note").hidden = true;
  });
  for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => setTab(b.dataset.tab));
  $("login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      const s = await api("POST", "/api/v1/login", { user: f.get("user"), password: f.get("password") });
      state.csrf = s.csrf_token;
      $("login-error").textContent = "";
      e.target.reset();
      await start();
    } catch (err) { $("login-error").textContent = err.message; }
  });
  $("logout").addEventListener("click", async () => {
    try { const s = await api("POST", "/api/v1/logout"); state.csrf = s.csrf_token; } catch (e) { /* shown by start */ }
    if (es) es.close();
    closeView();
    start();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    switch (e.key) {
      case "j": case "ArrowDown": select(state.sel + 1); break;
      case "k": case "ArrowUp": select(Math.max(state.sel - 1, 0)); break;
      case "Enter": case "o": if (state.messages[state.sel]) openMessage(state.messages[state.sel].id); break;
      case "Delete": case "#": deleteOpen(); break;
      case "Escape": closeView(); break;
      case "/": $("search").focus(); break;
      default: return;
    }
    e.preventDefault();
  });
}

bind();
start().catch((e) => status(e.message));
