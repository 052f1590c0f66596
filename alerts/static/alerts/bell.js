/* The admin's live alert bell: new alerts over ws/alerts (the admin session authenticates it).
 *
 * Resume protocol (README, "Live alert feed"): on every (re)connect send the highest alert id
 * seen; the server replies with what was missed, then "ready", then live alerts. Alerts are
 * de-duplicated by id. State (last id, recent alerts, unseen ids) lives in localStorage so the
 * count survives moving between admin pages. "Unread" here means not yet seen in this menu.
 */
(function () {
  "use strict";
  var root = document.getElementById("cs-alert-bell");
  if (!root || !window.WebSocket) return;
  var KEY = "cs-alert-bell:" + root.dataset.user;
  var KEEP = 30;
  var button = root.querySelector(".cs-bell-button");
  var badge = root.querySelector(".cs-bell-count");
  var menu = root.querySelector(".cs-bell-menu");
  var list = root.querySelector(".cs-bell-list");
  var empty = root.querySelector(".cs-bell-empty");
  var state = load();
  var delay = 1000;

  function load() {
    try {
      var saved = JSON.parse(localStorage.getItem(KEY));
      if (saved && Array.isArray(saved.alerts) && Array.isArray(saved.unseen)) return saved;
    } catch (e) { /* a corrupt entry starts afresh */ }
    return { lastId: null, alerts: [], unseen: [] };
  }

  function save() {
    try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode */ }
  }

  function add(alert) {
    if (state.lastId === null || alert.id > state.lastId) state.lastId = alert.id;
    if (state.alerts.some(function (a) { return a.id === alert.id; })) return; // de-duplicate by id
    state.alerts.push(alert);
    state.alerts.sort(function (a, b) { return b.id - a.id; });
    state.alerts = state.alerts.slice(0, KEEP);
    if (!alert.isRead) state.unseen.push(alert.id);
  }

  function render() {
    var kept = {};
    state.alerts.forEach(function (a) { kept[a.id] = true; });
    state.unseen = state.unseen.filter(function (id) { return kept[id]; });
    badge.textContent = String(state.unseen.length);
    badge.hidden = state.unseen.length === 0;
    list.textContent = "";
    empty.hidden = state.alerts.length > 0;
    state.alerts.forEach(function (a) {
      var link = document.createElement("a");
      link.className = "cs-bell-item" + (state.unseen.indexOf(a.id) >= 0 ? " cs-unread" : "");
      link.href = root.dataset.alertUrl + a.id + "/change/";
      link.dataset.alertId = String(a.id);
      var dot = document.createElement("span");
      dot.className = "cs-sev cs-sev-" + a.severity;
      link.appendChild(dot);
      link.appendChild(document.createTextNode(a.title)); // text, never HTML
      var when = document.createElement("small");
      when.textContent = a.severity + " · " + new Date(a.createdAt).toLocaleString();
      link.appendChild(when);
      list.appendChild(link);
    });
  }

  button.addEventListener("click", function () {
    var open = menu.hidden;
    menu.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (!open) { state.unseen = []; save(); render(); } // closing the menu marks them seen
  });

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + "/ws/alerts");
    socket.onopen = function () {
      socket.send(JSON.stringify({ type: "resume", lastId: state.lastId }));
    };
    socket.onmessage = function (event) {
      var message = JSON.parse(event.data);
      if (message.type === "alert") {
        add(message.alert);
        save();
        render();
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

  render();
  connect();
})();
