// Silent session refresh: the access token lives 15 minutes, the session much longer.
// When the sign-in page is shown to a browser that still holds a session, rotate the
// refresh token (POST /api/auth/refresh with the session's CSRF token) and reload.
(function () {
  "use strict";
  function cookie(name) {
    var match = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : null;
  }
  document.addEventListener("DOMContentLoaded", function () {
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
  });
  // "Copy codes": copy the text of the element named by data-copy.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button || !navigator.clipboard) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var lines = Array.prototype.map.call(source.querySelectorAll("li"), function (li) {
      return li.textContent.trim();
    });
    navigator.clipboard.writeText(lines.join("\n")).then(function () {
      button.textContent = "Copied";
    });
  });
})();
