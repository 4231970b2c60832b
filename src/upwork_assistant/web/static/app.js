// The pages: small progressive enhancements. Every form works without this.
(function () {
  "use strict";
  var YEAR = 365 * 24 * 3600;

  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : null;
  }
  function setCookie(name, value) {
    var secure = window.location.protocol === "https:" ? "; secure" : "";
    document.cookie = name + "=" + encodeURIComponent(value) + "; path=/; max-age=" + YEAR +
      "; samesite=lax" + secure;
  }
  var root = document.documentElement;

  // Theme: follows the system until the person picks one; the choice is remembered.
  function effectiveTheme() {
    var chosen = root.getAttribute("data-theme");
    if (chosen) return chosen;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches
      ? "dark" : "light";
  }
  function showTheme() {
    var button = document.querySelector("[data-theme-toggle]");
    if (!button) return;
    var dark = effectiveTheme() === "dark";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
  }
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-theme-toggle]");
    if (!toggle) return;
    event.preventDefault();
    var next = effectiveTheme() === "dark" ? "light" : "dark";
    root.setAttribute("data-theme", next);
    setCookie("theme", next);
    showTheme();
  });

  // Time zone: tell the server (for the next pages) and show this page's times locally.
  function localTimes() {
    var zone;
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
    if (!zone || zone === root.getAttribute("data-tz")) return;
    setCookie("tz", zone);
    var lang = root.getAttribute("lang") || "en";
    var formats = {
      datetime: new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short", timeZone: zone }),
      date: new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeZone: zone })
    };
    Array.prototype.forEach.call(document.querySelectorAll("time[data-format]"), function (el) {
      var when = new Date(el.getAttribute("datetime"));
      var format = formats[el.getAttribute("data-format")];
      if (!isNaN(when.getTime()) && format) el.textContent = format.format(when);
    });
  }

  // Silent session refresh: the access token lives 15 minutes, the session much longer.
  function trySessionRefresh() {
    var card = document.querySelector("[data-try-refresh]");
    var csrf = cookie("__Host-csrf_token") || cookie("csrf_token");
    if (!card || !csrf) return;
    fetch("/api/auth/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    }).then(function (response) {
      if (response.ok) window.location.reload();
    }).catch(function () { /* stay on the sign-in page */ });
  }

  // A form that takes a while (Sync now): show its progress and prevent double submits.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-busy")) return;
    var button = form.querySelector("button[type=submit]");
    if (!button) return;
    if (button.getAttribute("aria-busy") === "true") { event.preventDefault(); return; }
    button.setAttribute("aria-busy", "true");
    var label = button.querySelector(".label");
    if (label && button.getAttribute("data-busy-label")) {
      label.textContent = button.getAttribute("data-busy-label");
    }
    window.setTimeout(function () { button.disabled = true; }, 0);
  });

  // "Copy codes": copy the items of the list named by data-copy.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button || !navigator.clipboard) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var lines = Array.prototype.map.call(source.querySelectorAll("li"), function (li) {
      return li.textContent.trim();
    });
    navigator.clipboard.writeText(lines.join("\n")).then(function () {
      button.textContent = button.getAttribute("data-copied-label") || button.textContent;
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    showTheme();
    localTimes();
    trySessionRefresh();
  });
})();
