// The chat log viewer of chat-api. Plain JavaScript, no dependencies, no build step.
//
// It reads only the public routes of the same origin:
//   GET /v1.0/streamers?limit&after[&live]                  the channel list
//   GET /v1.0/{id}/chat?start&end&limit&after[&hide_deleted] a page of chat (JSON)
//   GET /v1.0/{id}/users/{user}/chat?...                     a page of one user's chat
// Every string from the API is put into the page as text (textContent / text nodes), never as
// markup; the page's Content-Security-Policy refuses inline script anyway.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };

  // Pages of chat kept in the DOM; further ones are dropped and fetched again (with their
  // cursor) when scrolled back to.
  const MAX_PAGES_IN_DOM = 8;
  // Downloads follow the cursor at most this many pages (of 100 messages).
  const MAX_DOWNLOAD_PAGES = 2000;
  // A channel search reads at most this many further pages of streamers looking for a match.
  const MAX_SEARCH_PAGES = 20;
  const EDGE_PX = 150;

  // ---------------------------------------------------------------- API
  class ApiError extends Error {}

  async function api(path, params) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") qs.set(k, String(v));
    }
    const url = qs.toString() ? `${path}?${qs}` : path;
    let r;
    try {
      r = await fetch(url, { headers: { Accept: "application/json" } });
    } catch (e) {
      throw new ApiError(`network error: ${e.message}`);
    }
    if (!r.ok) {
      let msg = `HTTP ${r.status}`;
      try {
        const body = await r.json();
        if (body && body.error) msg = `${body.error.code}: ${body.error.message}`;
      } catch (_) { /* not JSON */ }
      throw new ApiError(msg);
    }
    return r;
  }

  const chatPath = (q) =>
    q.user
      ? `/v1.0/${encodeURIComponent(q.channel)}/users/${encodeURIComponent(q.user)}/chat`
      : `/v1.0/${encodeURIComponent(q.channel)}/chat`;

  // ---------------------------------------------------------------- status line
  let busy = 0;
  function setBusy(delta) {
    busy += delta;
    document.body.dataset.busy = String(busy);
  }
  function status(text, isError) {
    const s = $("status");
    s.textContent = text || "";
    s.classList.toggle("error", Boolean(isError));
  }

  // ---------------------------------------------------------------- channels
  const channels = { rows: new Map(), cursor: "", done: false, loading: null, selected: null };

  async function loadChannelPage() {
    if (channels.done) return 0;
    if (channels.loading) return channels.loading;
    channels.loading = (async () => {
      setBusy(1);
      try {
        const live = $("live-only").checked ? "true" : undefined;
        const r = await api("/v1.0/streamers", { limit: 100, after: channels.cursor, live });
        const body = await r.json();
        for (const s of body.streamers || []) channels.rows.set(String(s.broadcaster_id), s);
        channels.cursor = body.cursor || "";
        channels.done = !body.cursor;
        return (body.streamers || []).length;
      } finally {
        setBusy(-1);
        channels.loading = null;
      }
    })();
    return channels.loading;
  }

  function channelMatches(s, term) {
    if (!term) return true;
    const t = term.toLowerCase();
    return (
      String(s.broadcaster_id) === term ||
      (s.login || "").toLowerCase().includes(t) ||
      (s.display_name || "").toLowerCase().includes(t)
    );
  }

  function renderChannels() {
    const term = $("channel-search").value.trim();
    const list = $("channels");
    const rows = [...channels.rows.values()].filter((s) => channelMatches(s, term));
    // Live first, then by login.
    rows.sort((a, b) => (b.live - a.live) || String(a.login || "").localeCompare(String(b.login || "")));
    const items = rows.map((s) => channelItem(s));
    if (/^[0-9]{1,19}$/.test(term) && !channels.rows.has(term)) {
      items.unshift(channelItem({ broadcaster_id: term, login: null, display_name: `channel id ${term}` }));
    }
    if (items.length === 0) {
      const li = el("li", "hint", channels.done ? "no channel matches" : "searching…");
      items.push(li);
    }
    list.replaceChildren(...items);
    $("more-channels").hidden = channels.done;
  }

  function channelItem(s) {
    const li = el("li");
    const b = el("button", "channel");
    b.type = "button";
    b.dataset.id = String(s.broadcaster_id);
    b.setAttribute("aria-pressed", String(channels.selected && channels.selected.id === b.dataset.id));
    b.append(el("span", "login", s.display_name || s.login || s.broadcaster_id));
    if (s.live) b.append(el("span", "live", "● live"));
    if (s.game_name) b.title = `${s.login || s.broadcaster_id} · ${s.game_name}${s.title ? " · " + s.title : ""}`;
    b.addEventListener("click", () => {
      selectChannel({ id: String(s.broadcaster_id), login: s.login || null, name: s.display_name || s.login || null });
      runQuery();
    });
    li.append(b);
    return li;
  }

  function selectChannel(c) {
    channels.selected = c;
    $("channel-name").textContent = c.login ? `#${c.login}` : c.name || `channel ${c.id}`;
    for (const b of $("channels").querySelectorAll("button.channel")) {
      b.setAttribute("aria-pressed", String(b.dataset.id === c.id));
    }
  }

  let searchSeq = 0;
  async function searchChannels() {
    const seq = ++searchSeq;
    renderChannels();
    const term = $("channel-search").value.trim();
    let pages = 0;
    // Keep reading pages until something matches (or the bound), so a login can be found
    // among many channels without a server-side search.
    try {
      while (
        seq === searchSeq && !channels.done && pages < MAX_SEARCH_PAGES &&
        (pages === 0 && channels.rows.size === 0 ||
          term && ![...channels.rows.values()].some((s) => channelMatches(s, term)))
      ) {
        await loadChannelPage();
        pages++;
        renderChannels();
      }
    } catch (e) {
      status(`channels: ${e.message}`, true);
    }
    if (seq === searchSeq) renderChannels();
  }

  function resetChannels() {
    channels.rows.clear();
    channels.cursor = "";
    channels.done = false;
    searchChannels();
  }

  // ---------------------------------------------------------------- time range
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const toLocalInput = (d) =>
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  function lastHour() {
    const end = new Date();
    end.setMilliseconds(0);
    const start = new Date(end.getTime() - 3600 * 1000);
    $("start").value = toLocalInput(start);
    $("end").value = toLocalInput(end);
  }
  function inputIso(id) {
    const d = new Date($(id).value); // datetime-local: local time
    if (Number.isNaN(d.getTime())) throw new ApiError(`"${$(id).labels[0].textContent.trim()}" is not a time`);
    return d.toISOString();
  }

  // ---------------------------------------------------------------- rendering a message
  const DEFAULT_COLORS = ["#FF0000", "#0000FF", "#008000", "#B22222", "#FF7F50", "#9ACD32", "#FF4500",
    "#2E8B57", "#DAA520", "#D2691E", "#5F9EA0", "#1E90FF", "#FF69B4", "#8A2BE2", "#00FF7F"];

  function nameColor(user) {
    let c = typeof user.color === "string" && /^#[0-9a-fA-F]{6}$/.test(user.color) ? user.color : null;
    if (!c) {
      let h = 0;
      for (const ch of String(user.name || "")) h = (h * 31 + ch.codePointAt(0)) >>> 0;
      c = DEFAULT_COLORS[h % DEFAULT_COLORS.length];
    }
    // Lighten colours too dark to read on the dark background.
    let [r, g, b] = [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
    const lum = (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    if (lum < 0.35) {
      const k = 0.45;
      [r, g, b] = [r, g, b].map((v) => Math.round(v + (255 - v) * k));
    }
    return `rgb(${r}, ${g}, ${b})`;
  }

  // Emote ranges of a message: [{start, end, id}] in code points, sorted, not overlapping.
  function emoteRanges(emotes, length) {
    const out = [];
    if (!emotes || typeof emotes !== "object") return out;
    for (const [id, positions] of Object.entries(emotes)) {
      if (!Array.isArray(positions)) continue;
      for (const p of positions) {
        const start = Number.parseInt(p && p.start_position, 10);
        const end = Number.parseInt(p && p.end_position, 10);
        if (Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end >= start && end < length) {
          out.push({ start, end, id });
        }
      }
    }
    out.sort((a, b) => a.start - b.start);
    return out.filter((r, i, all) => i === 0 || r.start > all[i - 1].end);
  }

  // The text with emote names marked; positions count code points, as Twitch's do.
  function messageText(text, emotes) {
    const span = el("span", "text");
    const chars = Array.from(text);
    let at = 0;
    for (const r of emoteRanges(emotes, chars.length)) {
      if (r.start > at) span.append(document.createTextNode(chars.slice(at, r.start).join("")));
      const name = chars.slice(r.start, r.end + 1).join("");
      const e = el("span", "emote", name);
      e.title = `${name} (emote ${r.id})`;
      e.dataset.emote = r.id;
      span.append(e);
      at = r.end + 1;
    }
    if (at < chars.length) span.append(document.createTextNode(chars.slice(at).join("")));
    return span;
  }

  function badges(user) {
    const out = el("span", "badges");
    const list = user.badges && typeof user.badges === "object" ? Object.entries(user.badges) : [];
    for (const [name, version] of list) {
      const months = name === "subscriber" && user.badge_info && user.badge_info.subscriber;
      const label = months ? `${name} ${months}` : version && version !== "1" ? `${name} ${version}` : name;
      const b = el("span", "badge", label);
      if (/^[a-z0-9_-]+$/.test(name)) b.classList.add(name);
      out.append(b);
    }
    return out;
  }

  const fmtTime = (ms) => {
    const d = new Date(ms);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  const fmtDay = (ms) => {
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  };

  function renderMessage(item, deleted) {
    let m;
    try {
      m = JSON.parse(item.message);
    } catch (_) {
      m = { text: String(item.message), user: {} };
    }
    const user = m.user && typeof m.user === "object" ? m.user : {};
    const row = el("div", "msg");
    row.dataset.id = String(item.message_id);
    row.dataset.ts = String(item.timestamp);
    if (m.is_me) row.classList.add("me");
    if (deleted) {
      row.classList.add("deleted");
      row.title = "deleted by a moderator";
    }
    if (m.reply_parent_msg_id) {
      const who = m.reply_parent_display_name || m.reply_parent_user_login || "";
      row.append(el("div", "reply", `↪ replying to @${who}: ${m.reply_parent_msg_body || ""}`));
    }
    const t = el("time", null, fmtTime(item.timestamp));
    const iso = new Date(item.timestamp).toISOString();
    t.dateTime = iso;
    t.title = iso;
    row.append(t, badges(user));
    const name = el("span", "name", user.display_name || user.name || "?");
    name.style.color = nameColor(user);
    name.title = user.id ? `${user.name} (user id ${user.id}): click to show only this user` : String(user.name || "");
    if (user.id && /^[0-9]+$/.test(String(user.id))) {
      name.addEventListener("click", () => {
        $("user").value = String(user.id);
        runQuery();
      });
    }
    row.append(name);
    if (user.name && user.display_name && user.display_name.toLowerCase() !== String(user.name).toLowerCase()) {
      row.append(el("span", "login-alt", ` (${user.name})`));
    }
    row.append(document.createTextNode(m.is_me ? " " : ": "));
    row.append(messageText(String(m.text ?? ""), m.emotes));
    if (Number(m.bits) > 0) row.append(el("span", "bits", `${Number(m.bits)} bits`));
    return row;
  }

  // ---------------------------------------------------------------- the log and its paging
  // One query at a time: `gen` changes when a new query starts, so late answers of the old one
  // are dropped.
  const view = { q: null, gen: 0, pages: [], above: [], loading: false };

  function currentQuery() {
    if (!channels.selected) throw new ApiError("pick a channel first");
    const user = $("user").value.trim();
    if (user && !/^[0-9]{1,19}$/.test(user)) throw new ApiError("the user id is a number");
    const q = {
      channel: channels.selected.id,
      start: inputIso("start"),
      end: inputIso("end"),
      user,
      limit: Number($("limit").value) || 50,
      hideDeleted: $("hide-deleted").checked,
    };
    if (q.end < q.start) throw new ApiError("the end is before the start");
    return q;
  }

  // Ids of the messages of `items` that moderators deleted: those absent from the same
  // stretch read with hide_deleted=true. The API keeps deleted messages and flags none, so this
  // is the one way to tell them from the outside.
  async function deletedIds(q, items, gen) {
    const ids = new Set(items.map((m) => m.message_id));
    if (items.length === 0) return new Set();
    const start = new Date(items[0].timestamp).toISOString();
    const end = new Date(items[items.length - 1].timestamp).toISOString();
    const kept = new Set();
    let after = "";
    for (let i = 0; i < 10 && gen === view.gen; i++) {
      const r = await api(chatPath(q), { start, end, limit: 100, after, hide_deleted: "true" });
      const body = await r.json();
      for (const m of body.messages || []) kept.add(m.message_id);
      if (!body.cursor) break;
      after = body.cursor;
    }
    return new Set([...ids].filter((id) => !kept.has(id)));
  }

  async function fetchPage(after) {
    const q = view.q;
    const gen = view.gen;
    const r = await api(chatPath(q), {
      start: q.start,
      end: q.end,
      limit: q.limit,
      after,
      hide_deleted: q.hideDeleted ? "true" : undefined,
    });
    const body = await r.json();
    const items = body.messages || [];
    let deleted = new Set();
    if (!q.hideDeleted) {
      try {
        deleted = await deletedIds(q, items, gen);
      } catch (e) {
        status(`could not tell deleted messages: ${e.message}`, true);
      }
    }
    return { gen, after, next: body.cursor || null, items, deleted };
  }

  function pageElement(p) {
    const sec = el("section", "page");
    sec.dataset.after = p.after;
    let day = null;
    for (const item of p.items) {
      const d = fmtDay(item.timestamp);
      if (d !== day) {
        sec.append(el("div", "day", d));
        day = d;
      }
      sec.append(renderMessage(item, p.deleted.has(item.message_id)));
    }
    return sec;
  }

  // Each page starts with its day; show a day line only where the day changes.
  function fixDays() {
    let prev = null;
    for (const d of $("log").querySelectorAll(".day")) {
      d.hidden = d.textContent === prev;
      prev = d.textContent;
    }
  }

  function renderEdges() {
    fixDays();
    const log = $("log");
    for (const e of log.querySelectorAll(":scope > .edge")) e.remove();
    const first = view.pages[0];
    const last = view.pages[view.pages.length - 1];
    if (!first) return;
    const top = el("p", "edge", view.above.length ? "scroll up for earlier messages" : "start of the range");
    const bottom = el("p", "edge", last.next ? "scroll down for more" : "end of the range");
    log.prepend(top);
    log.append(bottom);
    const total = view.pages.reduce((n, p) => n + p.items.length, 0);
    if (total === 0 && !last.next && view.above.length === 0) bottom.textContent = "no messages in this range";
  }

  async function loadMore(direction) {
    if (view.loading || !view.q) return;
    let after;
    if (direction === "down") {
      const last = view.pages[view.pages.length - 1];
      if (!last || !last.next) return;
      after = last.next;
    } else {
      if (view.above.length === 0) return;
      after = view.above[view.above.length - 1];
    }
    view.loading = true;
    setBusy(1);
    const gen = view.gen;
    try {
      const p = await fetchPage(after);
      if (gen !== view.gen) return;
      p.el = pageElement(p);
      const log = $("log");
      if (direction === "down") {
        const lastEl = view.pages.length ? view.pages[view.pages.length - 1].el : null;
        if (lastEl) lastEl.after(p.el);
        else log.append(p.el);
        view.pages.push(p);
        if (view.pages.length > MAX_PAGES_IN_DOM) {
          const gone = view.pages.shift();
          const h = gone.el.offsetHeight;
          gone.el.remove();
          view.above.push(gone.after);
          log.scrollTop -= h;
        }
      } else {
        view.above.pop();
        view.pages[0].el.before(p.el);
        view.pages.unshift(p);
        log.scrollTop += p.el.offsetHeight;
        if (view.pages.length > MAX_PAGES_IN_DOM) {
          view.pages.pop().el.remove();
        }
      }
      renderEdges();
      const shown = view.pages.reduce((n, pg) => n + pg.items.length, 0);
      status(`${shown} messages shown`);
    } catch (e) {
      if (gen === view.gen) status(e.message, true);
    } finally {
      setBusy(-1);
      if (gen === view.gen) view.loading = false;
    }
    if (gen === view.gen) fillOrFollow();
  }

  // Load further pages while the log does not fill its box (or the reader is at an edge).
  function fillOrFollow() {
    const log = $("log");
    if (view.loading || !view.q) return;
    if (log.scrollHeight - log.scrollTop - log.clientHeight < EDGE_PX) {
      const last = view.pages[view.pages.length - 1];
      if (last && last.next) return void loadMore("down");
    }
    if (log.scrollTop < EDGE_PX && view.above.length) loadMore("up");
  }

  async function runQuery(ev) {
    if (ev) ev.preventDefault();
    let q;
    try {
      q = currentQuery();
    } catch (e) {
      status(e.message, true);
      return;
    }
    saveToHash(q);
    view.gen++;
    view.q = q;
    view.pages = [];
    view.above = [];
    view.loading = false;
    const log = $("log");
    log.replaceChildren(el("p", "hint", "loading…"));
    status("");
    view.loading = true;
    setBusy(1);
    const gen = view.gen;
    try {
      const p = await fetchPage("");
      if (gen !== view.gen) return;
      p.el = pageElement(p);
      log.replaceChildren(p.el);
      view.pages.push(p);
      log.scrollTop = 0;
      renderEdges();
      status(`${p.items.length} messages shown`);
    } catch (e) {
      if (gen === view.gen) {
        log.replaceChildren(el("p", "hint", "nothing to show"));
        status(e.message, true);
      }
    } finally {
      setBusy(-1);
      if (gen === view.gen) view.loading = false;
    }
    if (gen === view.gen) fillOrFollow();
  }

  // ---------------------------------------------------------------- downloads
  const EXT = { json: "json", ndjson: "ndjson", text: "txt", raw: "irc.txt" };

  async function download(format) {
    let q;
    try {
      q = currentQuery();
    } catch (e) {
      status(e.message, true);
      return;
    }
    const buttons = [...$("downloads").querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    setBusy(1);
    try {
      const parts = [];
      const messages = [];
      let after = "";
      let pages = 0;
      for (;;) {
        const r = await api(chatPath(q), {
          start: q.start, end: q.end, limit: 100, after, format,
          hide_deleted: q.hideDeleted ? "true" : undefined,
        });
        let next;
        if (format === "json") {
          const body = await r.json();
          messages.push(...(body.messages || []));
          next = body.cursor;
        } else {
          parts.push(await r.text());
          next = r.headers.get("X-Cursor");
        }
        pages++;
        status(`downloading… ${pages} page(s)`);
        if (!next) break;
        if (pages >= MAX_DOWNLOAD_PAGES) throw new ApiError(`the range is longer than ${MAX_DOWNLOAD_PAGES} pages; pick a shorter one`);
        after = next;
      }
      const type = { json: "application/json", ndjson: "application/x-ndjson" }[format] || "text/plain";
      const data = format === "json" ? JSON.stringify({ messages }, null, 2) + "\n" : parts.join("");
      const blob = new Blob([data], { type });
      const a = el("a");
      a.href = URL.createObjectURL(blob);
      const who = channels.selected.login || q.channel;
      const stamp = (iso) => iso.replace(/[:]/g, "").replace(/\.\d+Z$/, "Z");
      a.download = `chat-${who}${q.user ? "-user" + q.user : ""}-${stamp(q.start)}-${stamp(q.end)}.${EXT[format]}`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      status(`downloaded ${a.download}`);
    } catch (e) {
      status(`download: ${e.message}`, true);
    } finally {
      setBusy(-1);
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // ---------------------------------------------------------------- shareable state (#hash)
  function saveToHash(q) {
    const h = new URLSearchParams();
    h.set("channel", q.channel);
    if (channels.selected.login) h.set("login", channels.selected.login);
    h.set("start", q.start);
    h.set("end", q.end);
    if (q.user) h.set("user", q.user);
    if (q.hideDeleted) h.set("hide_deleted", "1");
    h.set("limit", String(q.limit));
    history.replaceState(null, "", `#${h}`);
  }

  function loadFromHash() {
    const h = new URLSearchParams(location.hash.slice(1));
    const id = h.get("channel");
    const setTime = (name) => {
      const d = new Date(h.get(name) || "");
      if (!Number.isNaN(d.getTime())) $(name).value = toLocalInput(d);
    };
    setTime("start");
    setTime("end");
    if (h.get("user")) $("user").value = h.get("user");
    $("hide-deleted").checked = h.get("hide_deleted") === "1";
    if (["20", "50", "100"].includes(h.get("limit"))) $("limit").value = h.get("limit");
    if (id && /^[0-9]{1,19}$/.test(id)) {
      const login = h.get("login");
      selectChannel({ id, login: login && /^[A-Za-z0-9_]{1,25}$/.test(login) ? login : null, name: null });
      return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- start
  function init() {
    lastHour();
    setBusy(0);
    $("query").addEventListener("submit", runQuery);
    $("last-hour").addEventListener("click", () => { lastHour(); runQuery(); });
    $("more-channels").addEventListener("click", async () => {
      try {
        await loadChannelPage();
      } catch (e) {
        status(`channels: ${e.message}`, true);
      }
      renderChannels();
    });
    $("live-only").addEventListener("change", resetChannels);
    let t = null;
    $("channel-search").addEventListener("input", () => {
      clearTimeout(t);
      t = setTimeout(searchChannels, 200);
    });
    for (const b of $("downloads").querySelectorAll("button[data-format]")) {
      b.addEventListener("click", () => download(b.dataset.format));
    }
    $("log").addEventListener("scroll", fillOrFollow, { passive: true });
    window.addEventListener("resize", fillOrFollow);
    const fromHash = loadFromHash();
    searchChannels();
    if (fromHash) runQuery();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
