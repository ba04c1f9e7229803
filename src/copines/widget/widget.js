/* copines chat widget: one <script src=".../widget.js" defer data-...> tag adds it to a page.
 * data-api (default: where this script comes from), data-title, data-subtitle, data-greeting,
 * data-position ("right" | "left"), data-color, data-text-color, data-open ("true").
 * Everything lives in a Shadow DOM; nothing is loaded from anywhere else. */
(function () {
  "use strict";
  var CSS = "__COPINES_CSS__";
  var EXPERTS = "__COPINES_EXPERTS__";
  if (window.__copinesWidget) return;
  window.__copinesWidget = true;

  var script = document.currentScript || document.querySelector('script[src*="widget.js"]');
  var data = (script && script.dataset) || {};
  var API = (data.api || (script && script.src ? new URL(script.src, location.href).origin : location.origin)).replace(/\/$/, "");
  var TITLE = data.title || "L'Agence des Copines";
  var SUBTITLE = data.subtitle || EXPERTS.map(function (e) { return e.name; }).join(" et ") + " te répondent";
  var GREETING = data.greeting || "Coucou ! Pose ta question : la bonne experte te répond.";
  var POSITION = data.position === "left" ? "left" : "right";
  var STORE_KEY = "copines:conversation:" + API;
  var OPEN_KEY = "copines:open:" + API;
  var TEAM = { name: "L'équipe", initials: "EQ", color: "#6B7280" };
  var THUMB_UP = "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z";
  var THUMB_DOWN = "M15 3H6c-.83 0-1.54.5-1.84 1.22l-3.02 7.05c-.09.23-.14.47-.14.73v2c0 1.1.9 2 2 2h6.31l-.95 4.57-.03.32c0 .41.17.79.44 1.06L9.83 23l6.59-6.59c.36-.36.58-.86.58-1.41V5c0-1.1-.9-2-2-2zm4 0v12h4V3h-4z";
  var POLL_OPEN_MS = 4000, POLL_CLOSED_MS = 20000;
  var T = {
    open: "Ouvrir le chat de " + TITLE,
    close: "Fermer le chat",
    input: "Ton message",
    placeholder: "Écris ta question…",
    send: "Envoyer le message",
    log: "Conversation",
    suggestions: "Pour commencer, tu peux demander :",
    sources: "Sources :",
    up: "Cette réponse m'aide",
    down: "Cette réponse ne m'aide pas",
    thanks: "Merci pour ton retour !",
    handoff: "Ta question est transmise à l'équipe : une personne te répond ici même, dans cette conversation.",
    unreachable: "Impossible de joindre l'assistant pour le moment. Vérifie ta connexion et réessaie dans un instant.",
    limited: "Tu envoies beaucoup de messages : attends un peu avant de réessayer.",
    retryIn: function (s) { return " (tu pourras réessayer dans " + s + " s)"; },
    lost: "Ta conversation précédente est introuvable : on en commence une nouvelle.",
    interrupted: "La réponse s'est interrompue. Réessaie dans quelques secondes.",
    legal: "Assistant de l'agence : ses réponses peuvent contenir des erreurs.",
    unread: function (n) { return n + " nouveau(x) message(s)"; },
    you: "Toi",
  };

  // ---------------------------------------------------------------- state
  var state = {
    conversation: load(STORE_KEY, localStorage),
    open: false, busy: false, lastId: 0, shown: {}, unread: 0, timer: null, restored: false,
  };
  function load(key, storage) {
    try { return JSON.parse(storage.getItem(key) || "null"); } catch (e) { return null; }
  }
  function save(key, value, storage) {
    try { value == null ? storage.removeItem(key) : storage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode */ }
  }

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  function svg(path) {
    var s = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    s.setAttribute("viewBox", "0 0 24 24"); s.setAttribute("aria-hidden", "true"); s.setAttribute("focusable", "false");
    var p = document.createElementNS("http://www.w3.org/2000/svg", "path"); p.setAttribute("d", path); s.appendChild(p);
    return s;
  }
  function expertOf(id) {
    for (var i = 0; i < EXPERTS.length; i++) if (EXPERTS[i].id === id) return EXPERTS[i];
    return null;
  }
  function avatar(who) {
    var a = el("span", { class: "avatar", "aria-hidden": "true", text: who.initials || "?" });
    a.style.background = who.color || TEAM.color;
    return a;
  }

  // Safe markdown: paragraphs, lists, **bold**, *italic*, `code`, http(s) links. Text only, no HTML.
  function inline(parent, text) {
    var re = /(\*\*[^*]+\*\*|`[^`]+`|\[[^\]]+\]\(https?:\/\/[^\s)]+\)|\*[^*\s][^*]*\*)/g, last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      var t = m[0];
      if (t.slice(0, 2) === "**") parent.appendChild(el("strong", { text: t.slice(2, -2) }));
      else if (t[0] === "`") parent.appendChild(el("code", { text: t.slice(1, -1) }));
      else if (t[0] === "[") {
        var close = t.indexOf("](");
        parent.appendChild(el("a", { href: t.slice(close + 2, -1), target: "_blank", rel: "noopener noreferrer nofollow", text: t.slice(1, close) }));
      } else parent.appendChild(el("em", { text: t.slice(1, -1) }));
      last = m.index + t.length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }
  function markdown(target, text) {
    var frag = document.createDocumentFragment();
    var blocks = String(text || "").replace(/\r/g, "").split(/\n{2,}/);
    blocks.forEach(function (block) {
      var lines = block.split("\n").filter(function (l) { return l.trim() !== ""; });
      if (!lines.length) return;
      var bullet = lines.every(function (l) { return /^\s*[-*•]\s+/.test(l); });
      var numbered = lines.every(function (l) { return /^\s*\d+[.)]\s+/.test(l); });
      if (bullet || numbered) {
        var list = el(numbered ? "ol" : "ul");
        lines.forEach(function (l) {
          var li = el("li"); inline(li, l.replace(/^\s*([-*•]|\d+[.)])\s+/, "")); list.appendChild(li);
        });
        frag.appendChild(list);
        return;
      }
      var p = el("p");
      lines.forEach(function (l, i) {
        if (i) p.appendChild(el("br"));
        var heading = /^#{1,6}\s+/.test(l);
        if (heading) { var s = el("strong"); inline(s, l.replace(/^#{1,6}\s+/, "")); p.appendChild(s); }
        else inline(p, l);
      });
      frag.appendChild(p);
    });
    target.replaceChildren(frag);
  }

  // ---------------------------------------------------------------- build
  var host = document.createElement("copines-chat");
  host.setAttribute("data-position", POSITION);
  var shadow = host.attachShadow({ mode: "open" });
  var style = document.createElement("style");
  style.textContent = CSS;
  shadow.appendChild(style);

  var root = el("div", { class: "root " + POSITION });
  if (data.color) root.style.setProperty("--primary", data.color);
  if (data.textColor) root.style.setProperty("--on-primary", data.textColor);
  var badge = el("span", { class: "badge", hidden: true, "aria-hidden": "true" });
  var launcher = el("button", { class: "launcher", type: "button", "aria-label": T.open, "aria-expanded": "false", "aria-controls": "copines-panel" },
    [svg("M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2zm3 6v2h2v-2H7zm4 0v2h2v-2h-2zm4 0v2h2v-2h-2z"), badge]);
  var faces = el("div", { class: "faces", "aria-hidden": "true" });
  EXPERTS.forEach(function (e) { var f = el("span", { text: e.initials }); f.style.background = e.color; faces.appendChild(f); });
  var closeBtn = el("button", { class: "close", type: "button", "aria-label": T.close, text: "×" });
  var titleId = "copines-title";
  var head = el("div", { class: "head" }, [faces, el("div", { class: "titles" }, [el("h2", { id: titleId, text: TITLE }), el("p", { text: SUBTITLE })]), closeBtn]);
  var notice = el("p", { class: "notice", role: "status", "aria-live": "polite", hidden: true });
  var log = el("ol", { class: "log", role: "log", "aria-live": "polite", "aria-label": T.log });
  var suggestions = el("div", { class: "suggestions", hidden: true }, [el("p", { text: T.suggestions })]);
  EXPERTS.forEach(function (e) {
    if (!e.suggestion) return;
    var b = el("button", { class: "suggestion", type: "button", "aria-label": e.name + " : " + e.suggestion }, [avatar(e), el("span", { class: "text", text: e.suggestion })]);
    b.addEventListener("click", function () { send(e.suggestion); });
    suggestions.appendChild(b);
  });
  var input = el("textarea", { id: "copines-input", rows: "1", maxlength: "2000", placeholder: T.placeholder, "aria-label": T.input });
  var sendBtn = el("button", { class: "send", type: "submit", "aria-label": T.send }, [svg("M3 20.5 21 12 3 3.5V10l12 2-12 2z")]);
  var form = el("form", { class: "composer" }, [el("label", { class: "sr", for: "copines-input", text: T.input }), input, sendBtn]);
  var panel = el("section", { class: "panel", id: "copines-panel", role: "dialog", "aria-labelledby": titleId, hidden: true },
    [head, notice, log, suggestions, form, el("p", { class: "legal", text: T.legal })]);
  root.appendChild(panel);
  root.appendChild(launcher);
  shadow.appendChild(root);

  // ---------------------------------------------------------------- rendering
  function showNotice(text, isError) {
    notice.textContent = text || "";
    notice.hidden = !text;
    notice.classList.toggle("error", !!isError);
  }
  function scrollDown() { log.scrollTop = log.scrollHeight; }
  function refreshSuggestions() {
    suggestions.hidden = log.querySelectorAll(".msg.user").length > 0 || state.busy;
  }
  function addUser(text, id) {
    if (id) state.shown[id] = true;
    var li = el("li", { class: "msg user" }, [el("div", { class: "body" }, [el("p", { class: "sr", text: T.you }), el("div", { class: "bubble", text: text })])]);
    log.appendChild(li); refreshSuggestions(); scrollDown();
    return li;
  }
  function speaker(m) {
    if (m.role === "team" || m.agent === "escalate" || m.escalated) return TEAM;
    var e = expertOf(m.agent);
    return { name: m.agent_name || (e && e.name) || TEAM.name, initials: m.initials || (e && e.initials) || "?", color: m.color || (e && e.color) || TEAM.color, title: e && e.title };
  }
  function addAnswer(who) {
    var author = el("p", { class: "author" }, [who.name]);
    author.style.color = who.color;
    var bubble = el("div", { class: "bubble" });
    var body = el("div", { class: "body" }, [author, bubble]);
    var li = el("li", { class: "msg assistant" }, [avatar(who), body]);
    log.appendChild(li); scrollDown();
    return { li: li, body: body, bubble: bubble, author: author };
  }
  function setSpeaker(view, who) {
    view.author.textContent = who.name;
    view.author.style.color = who.color;
    var a = avatar(who);
    view.li.replaceChild(a, view.li.firstChild);
  }
  function typing(bubble) {
    bubble.replaceChildren(el("span", { class: "typing", "aria-label": "En train d'écrire" }, [el("span"), el("span"), el("span")]));
  }
  function addSources(view, sources) {
    var old = view.body.querySelector(".sources");
    if (old) old.remove();
    if (!sources || !sources.length) return;
    var list = el("ul");
    var seen = {};
    sources.forEach(function (s) {
      var label = s.title || s.filename;
      if (!label || seen[label]) return;
      seen[label] = true;
      list.appendChild(el("li", { text: label }));
    });
    view.body.insertBefore(el("div", { class: "sources" }, [el("b", { text: T.sources }), list]), view.body.querySelector(".tools"));
  }
  function addHandoff(view) {
    if (!view.body.querySelector(".handoff")) view.body.appendChild(el("p", { class: "handoff", role: "note", text: T.handoff }));
  }
  function addThumbs(view, messageId) {
    if (!messageId || view.body.querySelector(".tools")) return;
    var thanks = el("span", { class: "thanks", "aria-live": "polite" });
    var up = el("button", { type: "button", class: "up", "aria-label": T.up, "aria-pressed": "false" }, [svg(THUMB_UP)]);
    var down = el("button", { type: "button", class: "down", "aria-label": T.down, "aria-pressed": "false" }, [svg(THUMB_DOWN)]);
    function rate(rating, btn, other) {
      btn.setAttribute("aria-pressed", "true"); other.setAttribute("aria-pressed", "false");
      api("POST", "/api/feedback", { conversation_id: state.conversation.id, message_id: messageId, rating: rating })
        .then(function (r) { thanks.textContent = r.ok ? T.thanks : ""; })
        .catch(function () { thanks.textContent = ""; });
    }
    up.addEventListener("click", function () { rate("up", up, down); });
    down.addEventListener("click", function () { rate("down", down, up); });
    view.body.appendChild(el("div", { class: "tools" }, [up, down, thanks]));
  }
  function renderStored(m) {
    if (!m.id || state.shown[m.id]) return;
    state.shown[m.id] = true;
    state.lastId = Math.max(state.lastId, m.id);
    if (m.role === "user") { addUser(m.content); return; }
    var who = speaker(m);
    var view = addAnswer(who);
    markdown(view.bubble, m.content || (m.status === "failed" ? T.interrupted : ""));
    if (m.status === "failed") view.bubble.classList.add("failed");
    addSources(view, m.sources);
    if (m.role === "assistant") addThumbs(view, m.id);
    if (m.agent === "escalate") { addHandoff(view); markHandoff(); }
    return view;
  }
  function greet() {
    if (log.querySelector(".greeting")) return;
    var initials = TITLE.replace(/[^\s]*'/g, "").split(/\s+/).filter(function (w) { return w.length > 3; })
      .map(function (w) { return w[0].toUpperCase(); }).join("").slice(0, 2) || "?";
    var view = addAnswer({ name: TITLE, initials: initials, color: "var(--primary)" });
    view.li.classList.add("greeting");
    log.insertBefore(view.li, log.firstChild);
    view.li.firstChild.style.background = "var(--primary)";
    view.author.style.color = "var(--primary)";
    markdown(view.bubble, GREETING);
  }

  // ---------------------------------------------------------------- network
  function headers(json) {
    var h = {};
    if (json) h["Content-Type"] = "application/json";
    if (state.conversation && state.conversation.token) h["X-Conversation-Token"] = state.conversation.token;
    return h;
  }
  function api(method, path, body) {
    return fetch(API + path, { method: method, headers: headers(!!body), body: body ? JSON.stringify(body) : undefined, credentials: "omit", mode: "cors" });
  }
  function refusal(response) {
    return response.json().catch(function () { return {}; }).then(function (j) {
      var text = typeof j.detail === "string" ? j.detail : (response.status === 429 ? T.limited : T.unreachable);
      var wait = response.headers.get("Retry-After");
      if (response.status === 429 && wait) text += T.retryIn(wait);
      return text;
    });
  }
  function markHandoff() {
    if (state.conversation && !state.conversation.handoff) {
      state.conversation.handoff = true;
      save(STORE_KEY, state.conversation, localStorage);
    }
  }
  function forget() {
    state.conversation = null; state.lastId = 0;
    save(STORE_KEY, null, localStorage);
  }
  function restore() {
    if (state.restored || !state.conversation) return Promise.resolve();
    state.restored = true;
    return fetchNew(true);
  }
  function fetchNew(initial) {
    if (!state.conversation) return Promise.resolve();
    var c = state.conversation;
    return api("GET", "/api/conversations/" + encodeURIComponent(c.id) + (state.lastId ? "?after=" + state.lastId : ""))
      .then(function (r) {
        if (r.status === 404) { if (state.conversation === c) forget(); return; }
        if (!r.ok) return;
        return r.json().then(function (j) {
          var fresh = 0;
          (j.messages || []).forEach(function (m) {
            if (state.busy && m.role !== "team") return; // the stream in progress will show it
            if (renderStored(m) && m.role !== "user") fresh++;
          });
          if (fresh && !state.open && !initial) { state.unread += fresh; showBadge(); }
          refreshSuggestions();
        });
      })
      .catch(function () { /* offline: the next poll retries */ });
  }
  function schedulePoll() {
    clearTimeout(state.timer);
    // Closed, it only watches for the team's reply after a hand-off (keeps idle pages quiet).
    if (!state.conversation || (!state.open && !state.conversation.handoff)) return;
    state.timer = setTimeout(function () {
      (state.busy ? Promise.resolve() : fetchNew()).then(schedulePoll);
    }, state.open ? POLL_OPEN_MS : POLL_CLOSED_MS);
  }
  function showBadge() {
    badge.hidden = !state.unread;
    badge.textContent = state.unread ? String(state.unread) : "";
    launcher.setAttribute("aria-label", state.unread ? T.open + " (" + T.unread(state.unread) + ")" : T.open);
  }

  // Reads a server-sent events body: calls onEvent(name, data) for each event.
  function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          var name = "message", lines = [];
          block.split("\n").forEach(function (line) {
            if (line.indexOf("event:") === 0) name = line.slice(6).trim();
            else if (line.indexOf("data:") === 0) lines.push(line.slice(5).replace(/^ /, ""));
          });
          if (lines.length) { try { onEvent(name, JSON.parse(lines.join("\n"))); } catch (e) { /* malformed event */ } }
        }
        return pump();
      });
    }
    return pump();
  }

  function send(text) {
    text = String(text || "").trim();
    if (!text || state.busy) return;
    state.busy = true; sendBtn.disabled = true; showNotice("");
    input.value = ""; autosize();
    var userLi = addUser(text);
    var view = addAnswer({ name: "…", initials: "…", color: TEAM.color });
    view.li.setAttribute("aria-busy", "true"); // screen readers read the answer once, complete
    typing(view.bubble);
    var raw = "", painted = false, finished = false, failed = false;
    function paint() { painted = false; markdown(view.bubble, raw); scrollDown(); }
    var body = { message: text };
    if (state.conversation) body.conversation_id = state.conversation.id;
    function done() {
      view.li.removeAttribute("aria-busy");
      state.busy = false; sendBtn.disabled = false; refreshSuggestions(); schedulePoll();
    }
    function undo(message, isError) {
      view.li.remove(); userLi.remove(); input.value = text; autosize();
      showNotice(message, isError); refreshSuggestions();
    }
    return api("POST", "/api/chat/stream", body).then(function (response) {
      if (response.status === 404 && body.conversation_id) {
        forget(); showNotice(T.lost); view.li.remove(); userLi.remove(); state.busy = false;
        return send(text);
      }
      if (!response.ok) return refusal(response).then(function (m) { undo(m, response.status >= 500); done(); });
      return readEvents(response, function (name, d) {
        if (name === "decision") {
          if (d.conversation_id && d.token) {
            state.conversation = { id: d.conversation_id, token: d.token };
            save(STORE_KEY, state.conversation, localStorage);
          }
          setSpeaker(view, speaker(d));
        } else if (name === "token") {
          raw += d.text || "";
          if (!painted) { painted = true; requestAnimationFrame(paint); }
        } else if (name === "sources") {
          addSources(view, d.sources);
        } else if (name === "done") {
          finished = true;
          if (d.user_message_id) { state.shown[d.user_message_id] = true; state.lastId = Math.max(state.lastId, d.user_message_id); }
          if (d.message_id) { state.shown[d.message_id] = true; state.lastId = Math.max(state.lastId, d.message_id); }
          setSpeaker(view, speaker(d));
          raw = d.response || raw;
          markdown(view.bubble, raw);
          if (d.error) view.bubble.classList.add("failed");
          addSources(view, d.sources);
          if (d.escalated) { addHandoff(view); markHandoff(); }
          addThumbs(view, d.message_id);
          scrollDown();
        } else if (name === "error") {
          failed = true;
          view.bubble.classList.add("failed");
          markdown(view.bubble, (raw ? raw + "\n\n" : "") + (d.message || T.interrupted));
        }
      }).then(function () {
        if (!finished && !failed) { view.bubble.classList.add("failed"); markdown(view.bubble, (raw ? raw + "\n\n" : "") + T.interrupted); }
        done();
      });
    }).catch(function () {
      if (!raw) undo(T.unreachable, true);
      else { view.bubble.classList.add("failed"); markdown(view.bubble, raw + "\n\n" + T.interrupted); }
      done();
    });
  }

  // ---------------------------------------------------------------- behaviour
  function autosize() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, 120) + "px";
  }
  function setOpen(open, focus) {
    state.open = open;
    panel.hidden = !open;
    root.classList.toggle("open", open);
    launcher.setAttribute("aria-expanded", String(open));
    save(OPEN_KEY, open ? 1 : null, sessionStorage);
    if (open) {
      state.unread = 0; showBadge();
      greet();
      restore().then(function () { refreshSuggestions(); scrollDown(); });
      refreshSuggestions();
      if (focus !== false) input.focus();
    } else if (focus !== false) {
      launcher.focus();
    }
    schedulePoll();
  }
  launcher.addEventListener("click", function () { setOpen(!state.open); });
  closeBtn.addEventListener("click", function () { setOpen(false); });
  panel.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { e.preventDefault(); setOpen(false); }
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); send(input.value); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(input.value); }
  });
  input.addEventListener("input", autosize);

  function mount() {
    document.body.appendChild(host);
    if (data.open === "true" || load(OPEN_KEY, sessionStorage)) setOpen(true, false);
    else if (state.conversation) { restore(); schedulePoll(); }
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
