// Passkeys (WebAuthn) on the Security page and at the sign-in's MFA step. The pages'
// forms work without this; every text shown comes from the page (data-msg-*), translated.
(function () {
  "use strict";
  var API = "/api/security/mfa/webauthn/";

  // ----- base64url <-> bytes, for browsers without the JSON helpers of WebAuthn Level 3
  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    var raw = window.atob(b64);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out.buffer;
  }
  function toText(buffer) {
    if (!buffer) return null;
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return window.btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function withIds(list) {
    return (list || []).map(function (item) {
      var copy = Object.assign({}, item);
      copy.id = toBytes(item.id);
      return copy;
    });
  }
  function creationOptions(json) {
    if (window.PublicKeyCredential.parseCreationOptionsFromJSON) {
      return window.PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = withIds(json.excludeCredentials);
    return options;
  }
  function requestOptions(json) {
    if (window.PublicKeyCredential.parseRequestOptionsFromJSON) {
      return window.PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    var options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = withIds(json.allowCredentials);
    return options;
  }
  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    var r = credential.response;
    var response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      if (typeof r.getTransports === "function") response.transports = r.getTransports();
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      response.userHandle = toText(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults
        ? credential.getClientExtensionResults() : {},
      response: response
    };
  }

  // ----- talking to the API: {"error": code, "message": text} on a refusal
  function Refused(code) { this.code = code; }
  function post(widget, path, body) {
    var headers = { "Accept": "application/json" };
    var csrf = widget.getAttribute("data-csrf");
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(API + path, {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) throw new Refused(data && data.error);
        return data;
      });
    });
  }

  // ----- one widget: messages, busy state, the outcome of a ceremony
  // Errors go to the widget's alert; "waiting for your passkey" to its status line.
  function say(widget, text) {
    progress(widget, "");
    var box = widget.querySelector("[data-passkey-message]");
    if (box) box.textContent = text || "";
  }
  function progress(widget, text) {
    var line = widget.querySelector("[data-passkey-progress]");
    if (line) line.textContent = text || "";
  }
  function busy(button, on) {
    if (!button) return;
    button.disabled = on;
    button.setAttribute("aria-busy", on ? "true" : "false");
  }
  //: The server's reasons the pages translate (?error=<code>); others get the widget's text.
  var KNOWN = /^(passkey_|passkeys_|mfa_|session_expired$|not_authenticated$|csrf_failed$)/;
  function failed(widget, error, page) {
    if (error instanceof Refused && error.code && KNOWN.test(error.code)) {
      window.location.assign(page + "?error=" + encodeURIComponent(error.code));
      return;
    }
    var name = error && error.name;
    if (name === "NotAllowedError" || name === "AbortError") {
      say(widget, widget.getAttribute("data-msg-cancelled"));
    } else if (name === "InvalidStateError" && widget.getAttribute("data-passkey-widget") === "register") {
      window.location.assign(page + "?error=passkey_already_registered");
    } else if (name === "SecurityError") {
      say(widget, "");
      widget.querySelector("[data-passkey-origin]").hidden = false;
    } else {
      say(widget, widget.getAttribute("data-msg-failed"));
    }
  }

  function register(widget, form) {
    var button = form.querySelector("button[type=submit]");
    busy(button, true);
    say(widget, "");
    progress(widget, widget.getAttribute("data-msg-working"));
    post(widget, "register/options").then(function (data) {
      return navigator.credentials.create({ publicKey: creationOptions(data.publicKey) });
    }).then(function (credential) {
      form.querySelector("input[name=credential]").value =
        JSON.stringify(credentialJSON(credential));
      form.submit();
    }).catch(function (error) {
      busy(button, false);
      failed(widget, error, "/security");
    });
  }

  function assert(widget, button) {
    var signin = widget.getAttribute("data-passkey-widget") === "signin";
    var prefix = signin ? "authenticate/" : "reauth/";
    var page = signin ? "/mfa" : "/security";
    busy(button, true);
    say(widget, "");
    progress(widget, widget.getAttribute("data-msg-working"));
    post(widget, prefix + "options").then(function (data) {
      return navigator.credentials.get({ publicKey: requestOptions(data.publicKey) });
    }).then(function (credential) {
      return post(widget, prefix + "verify", { credential: credentialJSON(credential) });
    }).then(function () {
      window.location.assign(signin ? "/" : "/security?notice=mfa_confirmed#mfa");
    }).catch(function (error) {
      busy(button, false);
      failed(widget, error, page);
    });
  }

  function setUp(widget) {
    var origin = widget.getAttribute("data-rp-origin");
    if (origin && origin !== window.location.origin) {
      widget.querySelector("[data-passkey-origin]").hidden = false;
      return;
    }
    if (!window.PublicKeyCredential || !navigator.credentials) {
      widget.querySelector("[data-passkey-unsupported]").hidden = false;
      return;
    }
    widget.querySelector("[data-passkey-controls]").hidden = false;
    // At the MFA step the passkey comes first; "Use another way" shows the code form.
    var fallback = document.querySelector("[data-passkey-fallback]");
    var other = widget.querySelector("[data-passkey-other]");
    if (fallback && other) {
      fallback.hidden = true;
      other.addEventListener("click", function () {
        fallback.hidden = false;
        other.setAttribute("aria-expanded", "true");
        var input = fallback.querySelector("input:not([type=hidden])");
        if (input) input.focus();
      });
    }
    var start = widget.querySelector("[data-passkey-start]");
    if (start) {
      start.addEventListener("click", function () { assert(widget, start); });
    }
    var form = widget.querySelector("form[data-passkey-register]");
    if (form) {
      form.addEventListener("submit", function (event) {
        if (form.querySelector("input[name=credential]").value) return;
        event.preventDefault();
        register(widget, form);
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-passkey-widget]"), setUp);
  });
})();
