/* The admin's alert bell: the count and list of open alerts nobody has read, with acknowledge,
 * snooze and mark read on each one.
 *
 * The server is the truth: the count and the list come from the admin's bell view (session and
 * CSRF token, like any admin form) and every action answers with the bell as it now is. The live
 * feed (ws/alerts) only says "something new": on every alert it brings, the bell asks again.
 *
 * Resume protocol (README, "Live alert feed"): on every (re)connect send the highest alert id
 * seen (kept in localStorage, so a page change does not replay the backlog); the server replies
 * with what was missed, then "ready", then live alerts.
 */
(function () {
  "use strict";
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* old browser */ }
  // The alert page's snooze forms: "tomorrow 9:00" and a typed time mean this browser's time.
  Array.prototype.forEach.call(document.querySelectorAll("input.cs-tz"), function (input) { input.value = zone; });

  var root = document.getElementById("cs-alert-bell");
  if (!root || !window.fetch) return;
  var KEY = "cs-alert-bell:" + root.dataset.user;
  var button = root.querySelector(".cs-bell-button");
  var badge = root.querySelector(".cs-bell-count");
  var menu = root.querySelector(".cs-bell-menu");
  var list = root.querySelector(".cs-bell-list");
  var empty = root.querySelector(".cs-bell-empty");
  var failure = root.querySelector(".cs-bell-error");
  var csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  var presets = [];
  var lastId = loadLastId();
  var delay = 1000;
  var pending = null;

  function loadLastId() {
    try {
      var saved = JSON.parse(localStorage.getItem(KEY));
      if (saved && typeof saved.lastId === "number") return saved.lastId;
    } catch (e) { /* a corrupt entry starts afresh */ }
    return null;
  }

  function saveLastId() {
    try { localStorage.setItem(KEY, JSON.stringify({ lastId: lastId })); } catch (e) { /* private mode */ }
  }

  function showError(text) {
    failure.textContent = text || "";
    failure.hidden = !text;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text; // text, never HTML
    return node;
  }

  function actionButton(label, act, extra) {
    var b = el("button", "cs-bell-act", label);
    b.type = "button";
    b.dataset.act = act;
    if (extra) b.dataset.preset = extra;
    return b;
  }

  function render(bell) {
    if (bell.snoozePresets) presets = bell.snoozePresets;
    root.dataset.count = String(bell.count);
    badge.textContent = String(bell.count);
    badge.hidden = bell.count === 0;
    button.setAttribute("aria-label", bell.count + " open alerts unread");
    // A live refresh must not close a snooze panel the user opened or lose a date they typed.
    var opened = {};
    Array.prototype.forEach.call(list.querySelectorAll(".cs-bell-item"), function (item) {
      var panel = item.querySelector(".cs-bell-snooze");
      if (!panel.hidden) opened[item.dataset.alertId] = item.querySelector(".cs-bell-until").value;
    });
    list.textContent = "";
    empty.hidden = bell.alerts.length > 0;
    bell.alerts.forEach(function (a) {
      var item = el("div", "cs-bell-item cs-unread");
      item.dataset.alertId = String(a.id);
      var link = el("a", "cs-bell-link");
      link.href = root.dataset.alertUrl + a.id + "/change/";
      link.appendChild(el("span", "cs-sev cs-sev-" + a.severity));
      link.appendChild(document.createTextNode(a.title));
      var when = a.severity + (a.customer ? " · " + a.customer : "") + " · " + new Date(a.createdAt).toLocaleString();
      link.appendChild(el("small", "", when));
      item.appendChild(link);
      var actions = el("div", "cs-bell-actions");
      actions.appendChild(actionButton("Acknowledge", "acknowledge"));
      actions.appendChild(actionButton("Snooze…", "snooze-menu"));
      actions.appendChild(actionButton("Mark read", "read"));
      item.appendChild(actions);
      var snooze = el("div", "cs-bell-snooze");
      snooze.hidden = true;
      presets.forEach(function (p) { snooze.appendChild(actionButton(p.label, "snooze", p.value)); });
      var until = el("input", "cs-bell-until");
      until.type = "datetime-local";
      until.setAttribute("aria-label", "Snooze until");
      var now = new Date();
      until.min = localInput(new Date(now.getTime() + 60000));
      until.max = localInput(new Date(now.getTime() + 30 * 24 * 3600000 - 60000));
      snooze.appendChild(until);
      snooze.appendChild(actionButton("Snooze until", "snooze-until"));
      if (Object.prototype.hasOwnProperty.call(opened, String(a.id))) {
        snooze.hidden = false;
        until.value = opened[String(a.id)];
      }
      item.appendChild(snooze);
      list.appendChild(item);
    });
  }

  function localInput(date) { // "YYYY-MM-DDTHH:MM" in this browser's time, what datetime-local shows
    var shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
    return shifted.toISOString().slice(0, 16);
  }

  function refresh() {
    return fetch(root.dataset.bellUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("The alerts could not be loaded (" + response.status + ").");
        return response.json();
      })
      .then(function (bell) { showError(""); render(bell); })
      .catch(function (error) { showError(error.message); });
  }

  function refreshSoon() { // a burst of live alerts (a resume backlog) asks once
    if (pending) return;
    pending = setTimeout(function () { pending = null; refresh(); }, 150);
  }

  function post(alertId, act, fields) {
    var body = new URLSearchParams(fields || {});
    body.set("tz", zone);
    return fetch(root.dataset.alertUrl + alertId + "/" + act + "/", {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrf },
      body: body,
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) throw new Error(data.message || "That did not work (" + response.status + ").");
        showError("");
        render(data.bell);
      });
    }).catch(function (error) { showError(error.message); });
  }

  list.addEventListener("click", function (event) {
    var target = event.target.closest("button[data-act]");
    if (!target) return;
    var item = target.closest(".cs-bell-item");
    var id = item.dataset.alertId;
    var act = target.dataset.act;
    if (act === "snooze-menu") {
      var panel = item.querySelector(".cs-bell-snooze");
      panel.hidden = !panel.hidden;
      return;
    }
    target.disabled = true;
    if (act === "acknowledge") post(id, "acknowledge");
    else if (act === "read") post(id, "read", { read: "1" });
    else if (act === "snooze") post(id, "snooze", { preset: target.dataset.preset });
    else if (act === "snooze-until") {
      var value = item.querySelector(".cs-bell-until").value;
      if (!value) { showError("Pick a date and time to snooze until."); target.disabled = false; return; }
      post(id, "snooze", { until: new Date(value).toISOString() }); // the browser's local time, as an instant
    }
  });

  function setOpen(open) {
    menu.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open) refresh();
  }

  button.addEventListener("click", function () { setOpen(menu.hidden); });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !menu.hidden) { setOpen(false); button.focus(); }
  });
  document.addEventListener("click", function (event) {
    if (!menu.hidden && !root.contains(event.target)) setOpen(false);
  });

  function connect() {
    if (!window.WebSocket) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/alerts");
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "resume", lastId: lastId }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "alert") {
        if (lastId === null || message.alert.id > lastId) { lastId = message.alert.id; saveLastId(); }
        refreshSoon();
      } else if (message.type === "ready") {
        delay = 1000;
        if (message.truncated) socket.send(JSON.stringify({ type: "resume", lastId: message.lastId }));
        else root.classList.add("cs-bell-live");
      }
    };
    socket.onclose = function (event) {
      root.classList.remove("cs-bell-live");
      if (event.code === 4001 || event.code === 4002) { // session over: reload to sign in again
        root.classList.add("cs-bell-off");
        button.title = "Alerts stopped: your session ended.";
        return;
      }
      setTimeout(connect, delay + Math.random() * 500);
      delay = Math.min(delay * 2, 30000);
    };
  }

  refresh();
  connect();
})();
