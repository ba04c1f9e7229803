/* copines chat widget: one <script src=".../widget.js" defer data-...> tag adds it to a page.
 * data-api (default: where this script comes from), data-title, data-subtitle, data-greeting,
 * data-position ("right" | "left"), data-color, data-text-color, data-open ("true"),
 * data-privacy-url (the agency's policy; default: the service's setting),
 * data-chat-url (a JSON endpoint answering as POST /api/chat, e.g. the n8n workflow's webhook:
 * messages go there, unstreamed, while history and feedback still come from data-api).
 * Everything lives in a Shadow DOM; nothing is loaded from anywhere else. */
(function () {
  "use strict";
  var CSS = "__COPINES_CSS__";
  var EXPERTS = "__COPINES_EXPERTS__";
  var CONFIG = "__COPINES_CONFIG__";
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
  var PREVIOUS_KEY = "copines:previous:" + API; // the one a reply link replaced, to go back to
  var TEAM = { name: "L'équipe", initials: "EQ", color: "#6B7280", label: "équipe" };
  var ASSISTANT = { name: CONFIG.assistant.name, initials: CONFIG.assistant.initials, color: CONFIG.assistant.color, label: "assistante", icon: true };
  var PRIVACY_URL = data.privacyUrl || CONFIG.privacyUrl;
  var CHAT_URL = data.chatUrl || "";
  var MAX_CHARS = CONFIG.maxChars;
  var HUMAN_REQUEST = "Je voudrais parler à une personne de l'équipe, s'il te plaît.";
  var SPARKLE = "M12 2l2.1 6.4L20.5 10l-6.4 2.1L12 18.5l-2.1-6.4L3.5 10l6.4-1.6zM19 15l.9 2.6 2.6.9-2.6.9L19 22l-.9-2.6-2.6-.9 2.6-.9z";
  var CHAT_ICON = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2zm3 6v2h2v-2H7zm4 0v2h2v-2h-2zm4 0v2h2v-2h-2z";
  var MAIL_ICON = "M3 5h18a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1zm1 2.2V17h16V7.2l-8 5.3zM5.3 7 12 11.4 18.7 7z";
  var TRASH_ICON = "M9 3h6l1 1h4v2H4V4h4zM6 8h12l-1 12a2 2 0 0 1-2 2H9a2 2 0 0 1-2-2zm3 2v9h2v-9zm4 0v9h2v-9z";
  var CLOSE_ICON = "M7.4 8.6 12 13.2l4.6-4.6L18 10l-6 6-6-6z";
  var THUMB_UP = "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z";
  var THUMB_DOWN = "M15 3H6c-.83 0-1.54.5-1.84 1.22l-3.02 7.05c-.09.23-.14.47-.14.73v2c0 1.1.9 2 2 2h6.31l-.95 4.57-.03.32c0 .41.17.79.44 1.06L9.83 23l6.59-6.59c.36-.36.58-.86.58-1.41V5c0-1.1-.9-2-2-2zm4 0v12h4V3h-4z";
  var POLL_OPEN_MS = 4000, POLL_CLOSED_MS = 4000;
  var PAGE_TITLE = document.title;
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
    retryIn: function (s) { return " Tu pourras réessayer dans " + s + " s."; },
    retryNow: " Tu peux réessayer maintenant.",
    retry: "Réessayer",
    lost: "Ta conversation précédente est introuvable : on en commence une nouvelle.",
    interrupted: "La réponse s'est interrompue. Réessaie dans quelques secondes.",
    legal: "Assistante de l'agence : ses réponses peuvent contenir des erreurs.",
    privacy: "Tes messages sont enregistrés pour te répondre et améliorer nos réponses, puis effacés après " + CONFIG.retentionMonths + " mois. ",
    privacyLink: "Politique de confidentialité",
    unread: function (n) { return n > 1 ? n + " nouveaux messages" : "1 nouveau message"; },
    you: "Toi",
    team: "Parler à l'équipe",
    fresh: "Nouvelle conversation",
    erase: "Supprimer",
    eraseLabel: "Supprimer cette conversation",
    eraseAsk: "Supprimer définitivement cette conversation et tout ce qu'elle contient ?",
    eraseYes: "Oui, supprimer",
    cancel: "Annuler",
    erased: "Ta conversation est supprimée.",
    emailOpen: "Recevoir les réponses par email",
    emailAsk: "Laisse ton email si tu veux recevoir la réponse de l'équipe (facultatif).",
    emailUse: "Il sert seulement à te prévenir de nos réponses, avec un lien pour reprendre cette conversation.",
    emailLabel: "Ton email",
    emailSave: "Enregistrer",
    emailSaved: function (e) { return "C'est noté : on t'écrit à " + e + " quand l'équipe répond."; },
    emailRemove: "Retirer mon email",
    emailRemoved: "Ton email est retiré.",
    counter: function (n) { return n + " / " + MAX_CHARS; },
    tooLong: function (n) { return "Message trop long de " + n + " caractère" + (n > 1 ? "s" : "") + " : raccourcis-le pour l'envoyer."; },
    why: "Dis-nous ce qui n'allait pas (facultatif)",
    whySend: "Envoyer",
    whyThanks: "Merci, c'est transmis à l'équipe.",
    reopened: "Voici ta conversation avec L'Agence des Copines.",
    linkLabel: "Ouvrir la conversation de ce lien ?",
    linkAskOther: "Ce lien ouvre une autre conversation que celle de cet appareil. Vérifie que c'est bien la tienne avant d'écrire :",
    linkAskNew: "Ce lien ouvre une conversation avec L'Agence des Copines. Vérifie que c'est bien la tienne avant d'écrire :",
    linkEmail: function (e) { return "Les réponses de cette conversation partent à " + e + "."; },
    linkEmpty: "Cette conversation ne contient encore aucun message.",
    linkOpen: "Oui, c'est la mienne : l'ouvrir",
    linkKeepMine: "Non, garder la mienne",
    linkDecline: "Non, ne pas l'ouvrir",
    linkDead: "Ce lien a expiré, ou sa conversation a été supprimée : il n'ouvre plus rien.",
    linkKept: "D'accord : on garde ta conversation.",
    visitor: "Visiteuse",
    previous: "Revenir à ma conversation précédente",
    newTitle: function (n) { return "(" + n + ") Nouveau message · " + PAGE_TITLE; },
  };

  // ---------------------------------------------------------------- state
  var state = {
    conversation: load(STORE_KEY, localStorage),
    open: false, busy: false, lastId: 0, shown: {}, unread: 0, timer: null, restored: false, blockedUntil: 0,
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
  var launcherIcon = el("span", { class: "icon" }, [svg(CHAT_ICON)]);
  var launcher = el("button", { class: "launcher", type: "button", "aria-label": T.open, title: T.open, "aria-expanded": "false", "aria-controls": "copines-panel" },
    [launcherIcon, badge]);
  var faces = el("div", { class: "faces", "aria-hidden": "true" });
  EXPERTS.forEach(function (e) { var f = el("span", { text: e.initials }); f.style.background = e.color; faces.appendChild(f); });
  var closeBtn = el("button", { class: "close", type: "button", "aria-label": T.close, title: T.close }, [svg(CLOSE_ICON)]);
  var titleId = "copines-title";
  var head = el("div", { class: "head" }, [faces, el("div", { class: "titles" }, [el("h2", { id: titleId, text: TITLE }), el("p", { text: SUBTITLE })]), closeBtn]);

  var teamBtn = el("button", { type: "button", class: "action team" }, [T.team]);
  var freshBtn = el("button", { type: "button", class: "action fresh" }, [T.fresh]);
  var emailBtn = el("button", { type: "button", class: "action icon email", "aria-label": T.emailOpen, title: T.emailOpen, "aria-expanded": "false", "aria-controls": "copines-email" }, [svg(MAIL_ICON)]);
  var eraseBtn = el("button", { type: "button", class: "action icon erase", "aria-label": T.eraseLabel, title: T.eraseLabel }, [svg(TRASH_ICON)]);
  var actions = el("div", { class: "actions", role: "toolbar", "aria-label": "Actions de la conversation" }, [teamBtn, freshBtn, emailBtn, eraseBtn]);

  var noticeText = el("span", { class: "text" });
  var noticeRetry = el("button", { type: "button", class: "retry", hidden: true }, [T.retry]);
  var notice = el("div", { class: "notice", role: "status", "aria-live": "polite", hidden: true }, [noticeText, noticeRetry]);

  var confirmYes = el("button", { type: "button", class: "danger" }, [T.eraseYes]);
  var confirmNo = el("button", { type: "button", class: "secondary" }, [T.cancel]);
  var confirmBox = el("div", { class: "confirm", role: "alertdialog", "aria-label": T.eraseLabel, hidden: true }, [el("p", { text: T.eraseAsk }), el("div", { class: "row" }, [confirmYes, confirmNo])]);

  var linkText = el("p");
  var linkPreview = el("ul", { class: "preview" });
  var linkYes = el("button", { type: "button", class: "secondary" }, [T.linkOpen]);
  var linkNo = el("button", { type: "button", class: "secondary" }, [T.linkKeepMine]);
  var linkBox = el("div", { class: "confirm linkask", role: "alertdialog", "aria-label": T.linkLabel, hidden: true },
    [linkText, linkPreview, el("div", { class: "row" }, [linkYes, linkNo])]);
  var previousBtn = el("button", { type: "button", class: "link previous", hidden: true }, [T.previous]);

  var log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": T.log, tabindex: "0" });
  var suggestions = el("div", { class: "suggestions", hidden: true }, [el("p", { text: T.suggestions })]);
  EXPERTS.forEach(function (e) {
    if (!e.suggestion) return;
    var b = el("button", { class: "suggestion", type: "button" }, [avatar(e), el("span", { class: "text" }, [el("span", { class: "sr", text: e.name + " : " }), e.suggestion])]);
    b.addEventListener("click", function () { send(e.suggestion); });
    suggestions.appendChild(b);
  });

  var emailInput = el("input", { id: "copines-email-input", type: "email", autocomplete: "email", maxlength: "254", inputmode: "email" });
  var emailSave = el("button", { type: "submit", class: "secondary" }, [T.emailSave]);
  var emailRemove = el("button", { type: "button", class: "link", hidden: true }, [T.emailRemove]);
  var emailStatus = el("p", { class: "status", "aria-live": "polite" });
  var emailForm = el("form", { class: "emailbox", id: "copines-email", hidden: true }, [
    el("p", { class: "ask", text: T.emailAsk }),
    el("p", { class: "use", id: "copines-email-use", text: T.emailUse }),
    el("div", { class: "row" }, [el("label", { class: "sr", for: "copines-email-input", text: T.emailLabel }), emailInput, emailSave]),
    emailRemove, emailStatus,
  ]);
  emailInput.setAttribute("aria-describedby", "copines-email-use");
  emailInput.setAttribute("placeholder", "prenom@exemple.fr");

  var privacy = el("p", { class: "privacy", id: "copines-privacy" }, [T.privacy, el("a", { href: PRIVACY_URL, target: "_blank", rel: "noopener noreferrer", text: T.privacyLink })]);
  var input = el("textarea", { id: "copines-input", rows: "1", placeholder: T.placeholder, "aria-describedby": "copines-counter" });
  var sendBtn = el("button", { class: "send", type: "submit", "aria-label": T.send, title: T.send }, [svg("M3 20.5 21 12 3 3.5V10l12 2-12 2z")]);
  var counter = el("p", { class: "counter", id: "copines-counter", hidden: true, "aria-live": "polite" });
  var form = el("form", { class: "composer" }, [el("label", { class: "sr", for: "copines-input", text: T.input }), input, sendBtn]);
  var legal = el("p", { class: "legal" }, [T.legal + " ", el("a", { href: PRIVACY_URL, target: "_blank", rel: "noopener noreferrer", text: T.privacyLink })]);
  var panel = el("section", { class: "panel", id: "copines-panel", role: "dialog", "aria-labelledby": titleId, hidden: true },
    [head, actions, notice, confirmBox, linkBox, previousBtn, log, suggestions, emailForm, privacy, counter, form, legal]);
  root.appendChild(panel);
  root.appendChild(launcher);
  shadow.appendChild(root);

  // ---------------------------------------------------------------- rendering
  var countdown = null;
  function showNotice(text, isError, onRetry, wait) {
    clearInterval(countdown); countdown = null;
    noticeText.textContent = text || "";
    notice.hidden = !text;
    notice.classList.toggle("error", !!isError);
    scrollDown();
    noticeRetry.hidden = !onRetry;
    noticeRetry.onclick = onRetry || null;
    if (wait > 0) {
      // The rate limit's wait, counted down live; sending waits for it.
      var left = Math.ceil(wait), base = text;
      state.blockedUntil = Date.now() + left * 1000;
      var tick = function () {
        left = Math.max(0, Math.ceil((state.blockedUntil - Date.now()) / 1000));
        noticeText.textContent = base + (left > 0 ? T.retryIn(left) : T.retryNow);
        if (!left) { clearInterval(countdown); countdown = null; state.blockedUntil = 0; refreshComposer(); }
      };
      tick();
      countdown = setInterval(tick, 1000);
      refreshComposer();
    }
  }
  function scrollDown() { log.scrollTop = log.scrollHeight; }
  function hasUserMessages() { return log.querySelectorAll(".msg.user").length > 0; }
  function refreshSuggestions() {
    suggestions.hidden = hasUserMessages() || state.busy;
    privacy.hidden = !!state.conversation || hasUserMessages();
    eraseBtn.hidden = freshBtn.hidden = emailBtn.hidden = !state.conversation;
    emailBtn.hidden = emailBtn.hidden || !CONFIG.email;
  }
  function refreshComposer() {
    var n = input.value.length;
    var over = n - MAX_CHARS;
    counter.hidden = n < MAX_CHARS * 0.8;
    counter.textContent = over > 0 ? T.tooLong(over) : T.counter(n);
    counter.classList.toggle("over", over > 0);
    input.setAttribute("aria-invalid", over > 0 ? "true" : "false");
    sendBtn.disabled = state.busy || over > 0 || !!state.blockedUntil;
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function stamp(when) {
    var d = when ? new Date(when) : new Date();
    if (isNaN(d.getTime())) d = new Date();
    var today = new Date().toDateString() === d.toDateString();
    var text = (today ? "" : pad(d.getDate()) + "/" + pad(d.getMonth() + 1) + " ") + pad(d.getHours()) + ":" + pad(d.getMinutes());
    return el("time", { datetime: d.toISOString(), text: text });
  }
  function addUser(text, id, when) {
    if (id) state.shown[id] = true;
    var row = el("div", { class: "msg user" }, [el("div", { class: "body" }, [
      el("p", { class: "author" }, [el("span", { class: "sr", text: T.you + ", " }), stamp(when)]),
      el("div", { class: "bubble", text: text })])]);
    log.appendChild(row); refreshSuggestions(); scrollDown();
    return row;
  }
  function speaker(m) {
    if (m.role === "team") return { name: m.agent_name || TEAM.name, initials: m.initials || TEAM.initials, color: TEAM.color, label: TEAM.label };
    if (m.agent === "escalate" || (m.escalated && !expertOf(m.agent))) return ASSISTANT;
    var e = expertOf(m.agent);
    return { name: m.agent_name || (e && e.name) || TEAM.name, initials: m.initials || (e && e.initials) || "?", color: m.color || (e && e.color) || TEAM.color, label: e ? "experte" : "" };
  }
  function avatar(who) {
    var a = el("span", { class: "avatar" + (who.icon ? " icon" : ""), "aria-hidden": "true" }, who.icon ? [svg(SPARKLE)] : [who.initials || "?"]);
    a.style.background = who.color || TEAM.color;
    return a;
  }
  function authorLine(view, who, when) {
    var kids = [el("span", { class: "name", text: who.name })];
    if (who.label) kids.push(el("span", { class: "label " + who.label.replace(/[^a-z]/g, ""), text: who.label }));
    kids.push(view && view.time ? view.time : stamp(when));
    return kids;
  }
  function addAnswer(who, when) {
    var author = el("p", { class: "author" });
    var bubble = el("div", { class: "bubble" });
    var body = el("div", { class: "body" }, [author, bubble]);
    var row = el("div", { class: "msg assistant" }, [avatar(who), body]);
    var view = { li: row, body: body, bubble: bubble, author: author, time: stamp(when) };
    author.replaceChildren.apply(author, authorLine(view, who));
    log.appendChild(row); scrollDown();
    return view;
  }
  function setSpeaker(view, who) {
    view.author.replaceChildren.apply(view.author, authorLine(view, who));
    view.li.replaceChild(avatar(who), view.li.firstChild);
    view.li.classList.toggle("team", who === TEAM || who.label === "équipe");
  }
  function typing(bubble) {
    bubble.replaceChildren(el("span", { class: "typing", role: "img", "aria-label": "En train d'écrire" }, [el("span"), el("span"), el("span")]));
  }
  function safeUrl(u) { return typeof u === "string" && /^https?:\/\/[^\s]+$/i.test(u) ? u : null; }
  function addSources(view, sources) {
    var old = view.body.querySelector(".sources");
    if (old) old.remove();
    if (!sources || !sources.length) return;
    var list = el("ul");
    var seen = {};
    sources.forEach(function (s) {
      var label = s.title || s.filename;
      var key = s.filename || label;
      if (!label || seen[key]) return;
      seen[key] = true;
      var url = safeUrl(s.url);
      list.appendChild(el("li", {}, [url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: label }) : label]));
    });
    view.body.insertBefore(el("div", { class: "sources" }, [el("p", { class: "title", text: T.sources }), list]), view.body.querySelector(".tools"));
  }
  function addHandoff(view) {
    if (!view.body.querySelector(".handoff")) view.body.appendChild(el("p", { class: "handoff", role: "note", text: T.handoff }));
    if (CONFIG.email && !(state.conversation && state.conversation.email)) showEmail(true, false);
  }
  function addThumbs(view, messageId) {
    if (!messageId || view.body.querySelector(".tools")) return;
    var thanks = el("span", { class: "thanks", "aria-live": "polite" });
    var up = el("button", { type: "button", class: "up", "aria-label": T.up, title: T.up, "aria-pressed": "false" }, [svg(THUMB_UP)]);
    var down = el("button", { type: "button", class: "down", "aria-label": T.down, title: T.down, "aria-pressed": "false" }, [svg(THUMB_DOWN)]);
    var whyId = "copines-why-" + messageId;
    var why = el("textarea", { id: whyId, rows: "2", maxlength: "1000" });
    var whySend = el("button", { type: "submit", class: "secondary" }, [T.whySend]);
    var whyForm = el("form", { class: "why", hidden: true }, [el("label", { for: whyId, text: T.why }), why, whySend]);
    function rate(rating, btn, other, comment) {
      btn.setAttribute("aria-pressed", "true"); other.setAttribute("aria-pressed", "false");
      var body = { conversation_id: state.conversation.id, message_id: messageId, rating: rating };
      if (comment) body.comment = comment;
      return api("POST", "/api/feedback", body)
        .then(function (r) { thanks.textContent = r.ok ? (comment ? T.whyThanks : T.thanks) : ""; return r.ok; })
        .catch(function () { thanks.textContent = ""; return false; });
    }
    up.addEventListener("click", function () { whyForm.hidden = true; rate("up", up, down); });
    down.addEventListener("click", function () { rate("down", down, up); whyForm.hidden = false; why.focus(); });
    whyForm.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = why.value.trim();
      if (!text) { whyForm.hidden = true; return; }
      rate("down", down, up, text).then(function (ok) { if (ok) whyForm.hidden = true; });
    });
    view.body.appendChild(el("div", { class: "tools" }, [up, down, thanks]));
    view.body.appendChild(whyForm);
  }
  function renderStored(m) {
    if (!m.id || state.shown[m.id]) return;
    state.shown[m.id] = true;
    state.lastId = Math.max(state.lastId, m.id);
    if (m.role === "user") { addUser(m.content, null, m.created_at); return; }
    var who = speaker(m);
    var view = addAnswer(who, m.created_at);
    if (m.role === "team") view.li.classList.add("team");
    markdown(view.bubble, m.content || (m.status === "failed" ? T.interrupted : ""));
    if (m.status === "failed") view.bubble.classList.add("failed");
    addSources(view, m.sources);
    if (m.role === "assistant") addThumbs(view, m.id);
    if (m.agent === "escalate") { addHandoff(view); markHandoff(); }
    scrollDown();
    return view;
  }
  function greet() {
    if (log.querySelector(".greeting")) return;
    var view = addAnswer(ASSISTANT);
    view.li.classList.add("greeting");
    view.time.remove();
    log.insertBefore(view.li, log.firstChild);
    markdown(view.bubble, GREETING);
  }
  function clearLog() {
    log.replaceChildren();
    state.shown = {}; state.lastId = 0;
    greet(); refreshSuggestions();
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
  // A message through data-chat-url: the token travels in the body, so the only header is the
  // content type and the endpoint's CORS needs nothing more.
  function postMessage(body) {
    var payload = { message: body.message };
    if (body.conversation_id) payload.conversation_id = body.conversation_id;
    if (state.conversation && state.conversation.token) payload.token = state.conversation.token;
    return fetch(CHAT_URL, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload), credentials: "omit", mode: "cors" });
  }
  function refusal(response) {
    return response.json().catch(function () { return {}; }).then(function (j) {
      var text = typeof j.detail === "string" ? j.detail : (response.status === 429 ? T.limited : T.unreachable);
      var wait = response.status === 429 ? parseInt(response.headers.get("Retry-After") || "0", 10) : 0;
      return { text: text, wait: wait > 0 ? wait : 0 };
    });
  }
  function remember() { save(STORE_KEY, state.conversation, localStorage); }
  function markHandoff() {
    if (state.conversation && !state.conversation.handoff) {
      state.conversation.handoff = true;
      remember();
    }
  }
  function forget() {
    state.conversation = null; state.lastId = 0;
    save(STORE_KEY, null, localStorage);
    showEmail(false, false);
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
        if (r.status === 404) { if (state.conversation === c) { forget(); refreshSuggestions(); } return; }
        if (!r.ok) return;
        return r.json().then(function (j) {
          if (state.conversation !== c) return;
          if (j.email !== undefined && (j.email || null) !== (c.email || null)) { c.email = j.email || null; remember(); showEmailState(); }
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
    document.title = state.unread ? T.newTitle(state.unread) : PAGE_TITLE;
    var label = state.open ? T.close : (state.unread ? T.open + " (" + T.unread(state.unread) + ")" : T.open);
    launcher.setAttribute("aria-label", label);
    launcher.setAttribute("title", label);
  }

  // ---------------------------------------------------------------- email, deletion
  function showEmail(open, focus) {
    emailForm.hidden = !open;
    emailBtn.setAttribute("aria-expanded", String(open));
    if (open) { showEmailState(); if (focus) emailInput.focus(); }
    scrollDown();
  }
  function showEmailState() {
    var saved = state.conversation && state.conversation.email;
    emailRemove.hidden = !saved;
    if (saved && !emailInput.value) emailInput.value = saved;
  }
  function saveEmail(value) {
    if (!state.conversation) return;
    var c = state.conversation;
    emailStatus.textContent = "";
    emailStatus.classList.remove("error");
    api("POST", "/api/conversations/" + encodeURIComponent(c.id) + "/email", { email: value })
      .then(function (r) {
        if (r.ok) {
          c.email = value || null; remember(); showEmailState();
          if (!value) emailInput.value = "";
          showEmail(false, false);
          showNotice(value ? T.emailSaved(value) : T.emailRemoved);
          return;
        }
        return refusal(r).then(function (m) { emailStatus.textContent = m.text; emailStatus.classList.add("error"); });
      })
      .catch(function () { emailStatus.textContent = T.unreachable; emailStatus.classList.add("error"); });
  }
  function erase() {
    if (!state.conversation) return;
    var c = state.conversation;
    api("DELETE", "/api/conversations/" + encodeURIComponent(c.id))
      .then(function (r) {
        if (!r.ok && r.status !== 404) return refusal(r).then(function (m) { showNotice(m.text, true); });
        confirmBox.hidden = true;
        forget(); clearLog(); showNotice(T.erased); input.focus();
      })
      .catch(function () { showNotice(T.unreachable, true, erase); });
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

  // The one path a message takes to the service: the answer streamed as server-sent events, or,
  // with data-chat-url, one JSON answer read as the stream's decision and done events.
  function send(text) {
    text = String(text || "").trim();
    if (!text || state.busy || state.blockedUntil) return;
    if (text.length > MAX_CHARS) { input.value = text; refreshComposer(); input.focus(); return; }
    state.busy = true; showNotice("");
    input.value = ""; autosize(); refreshComposer();
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
      state.busy = false; refreshComposer(); refreshSuggestions(); schedulePoll();
    }
    function undo(message, isError, wait) {
      view.li.remove(); userLi.remove(); input.value = text; autosize(); refreshComposer();
      showNotice(message, isError, wait ? null : function () { send(input.value); }, wait);
      refreshSuggestions();
    }
    function retryButton() {
      if (view.body.querySelector(".retry")) return;
      var again = el("button", { type: "button", class: "retry" }, [T.retry]);
      again.addEventListener("click", function () { again.remove(); send(text); });
      view.body.appendChild(again);
    }
    var request = CHAT_URL ? postMessage(body) : api("POST", "/api/chat/stream", body);
    return request.then(function (response) {
      if (response.status === 404 && body.conversation_id) {
        forget(); showNotice(T.lost); view.li.remove(); userLi.remove(); state.busy = false;
        return send(text);
      }
      if (!response.ok) return refusal(response).then(function (m) { undo(m.text, response.status !== 429, m.wait); done(); });
      function handle(name, d) {
        if (name === "decision") {
          if (d.conversation_id && d.token) {
            state.conversation = { id: d.conversation_id, token: d.token };
            remember();
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
          if (d.error) { view.bubble.classList.add("failed"); retryButton(); }
          addSources(view, d.sources);
          if (d.escalated) { addHandoff(view); markHandoff(); }
          addThumbs(view, d.message_id);
          scrollDown();
        } else if (name === "error") {
          failed = true;
          view.bubble.classList.add("failed");
          markdown(view.bubble, (raw ? raw + "\n\n" : "") + (d.message || T.interrupted));
          retryButton();
        }
      }
      function finish() {
        if (!finished && !failed) { view.bubble.classList.add("failed"); markdown(view.bubble, (raw ? raw + "\n\n" : "") + T.interrupted); retryButton(); }
        done();
      }
      if (CHAT_URL) {
        return response.json().then(function (turn) { handle("decision", turn); handle("done", turn); }).then(finish);
      }
      return readEvents(response, handle).then(finish);
    }).catch(function () {
      if (!raw) undo(T.unreachable, true);
      else { view.bubble.classList.add("failed"); markdown(view.bubble, raw + "\n\n" + T.interrupted); retryButton(); }
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
    launcherIcon.replaceChildren(svg(open ? CLOSE_ICON : CHAT_ICON));
    save(OPEN_KEY, open ? 1 : null, sessionStorage);
    if (open) {
      state.unread = 0;
      greet();
      restore().then(function () { refreshSuggestions(); scrollDown(); });
      refreshSuggestions();
      if (focus !== false) input.focus();
    } else if (focus !== false) {
      launcher.focus();
    }
    showBadge();
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
  input.addEventListener("input", function () { autosize(); refreshComposer(); });
  teamBtn.addEventListener("click", function () { send(HUMAN_REQUEST); });
  freshBtn.addEventListener("click", function () { forget(); clearLog(); showNotice(""); input.focus(); });
  emailBtn.addEventListener("click", function () { showEmail(emailForm.hidden, true); });
  emailForm.addEventListener("submit", function (e) { e.preventDefault(); saveEmail(emailInput.value.trim()); });
  emailRemove.addEventListener("click", function () { saveEmail(""); });
  eraseBtn.addEventListener("click", function () { confirmBox.hidden = false; confirmNo.focus(); });
  confirmNo.addEventListener("click", function () { confirmBox.hidden = true; eraseBtn.focus(); });
  confirmYes.addEventListener("click", erase);

  // A reply's email links here with "#copines=<signed credential>" (taken out of the address bar
  // at once). For the conversation this browser already holds, its own permanent token is kept.
  // Any other conversation is shown first (its first messages, where its replies go) and opened
  // only if she says it is hers: a link someone else sent must not slip her into his
  // conversation, nor lose hers, which stays one click away.
  function reopenFromLink() {
    var m = /(?:^#|&)copines=([A-Za-z0-9_.-]+)/.exec(location.hash || "");
    if (!m) return false;
    try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* sandboxed page */ }
    var token = m[1], id = token.split(".")[0];
    var mine = state.conversation;
    if (mine && mine.id === id) {
      // A visitor's own token never holds a dot; a link's does, and a newer link lasts longer.
      if (!mine.token || mine.token.indexOf(".") >= 0) { mine.token = token; remember(); }
      showNotice(T.reopened);
      return true;
    }
    fetch(API + "/api/conversations/" + encodeURIComponent(id), { headers: { "X-Conversation-Token": token }, credentials: "omit", mode: "cors" })
      .then(function (r) {
        if (!r.ok) { showNotice(T.linkDead, true); return; }
        return r.json().then(function (j) { askLink({ id: id, token: token, handoff: true, email: j.email || null }, j, mine); });
      })
      .catch(function () { showNotice(T.unreachable, true); });
    return true;
  }
  function askLink(candidate, found, mine) {
    linkText.textContent = mine ? T.linkAskOther : T.linkAskNew;
    linkNo.textContent = mine ? T.linkKeepMine : T.linkDecline;
    var shown = (found.messages || []).filter(function (m) { return m.content; }).slice(0, 3);
    linkPreview.replaceChildren.apply(linkPreview, shown.map(function (m) {
      var who = m.role === "user" ? T.visitor : speaker(m).name;
      var text = m.content.length > 160 ? m.content.slice(0, 159) + "…" : m.content;
      return el("li", {}, [el("strong", { text: who + " : " }), text]);
    }));
    if (!shown.length) linkPreview.appendChild(el("li", { text: T.linkEmpty }));
    if (found.email) linkPreview.appendChild(el("li", { class: "email", text: T.linkEmail(found.email) }));
    linkBox.hidden = false;
    linkNo.focus();
    linkYes.onclick = function () {
      linkBox.hidden = true;
      if (mine) save(PREVIOUS_KEY, mine, localStorage);
      switchTo(candidate);
      showNotice(T.reopened);
    };
    linkNo.onclick = function () {
      linkBox.hidden = true;
      showNotice(mine ? T.linkKept : "");
      input.focus();
    };
  }
  function switchTo(conversation) {
    state.conversation = conversation; state.restored = false;
    remember(); clearLog(); emailInput.value = ""; showEmailState(); showPrevious();
    restore().then(function () { refreshSuggestions(); scrollDown(); });
    schedulePoll();
  }
  function showPrevious() {
    var before = load(PREVIOUS_KEY, localStorage);
    previousBtn.hidden = !(before && before.id && (!state.conversation || before.id !== state.conversation.id));
  }
  previousBtn.addEventListener("click", function () {
    var before = load(PREVIOUS_KEY, localStorage);
    if (!before) return;
    save(PREVIOUS_KEY, state.conversation, localStorage); // the two can be swapped back
    switchTo(before);
    showNotice("");
    input.focus();
  });

  function mount() {
    document.body.appendChild(host);
    refreshComposer();
    showPrevious();
    if (reopenFromLink() || data.open === "true" || load(OPEN_KEY, sessionStorage)) setOpen(true, false);
    else if (state.conversation) { restore(); schedulePoll(); }
  }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
