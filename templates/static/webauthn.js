/* Portcullis passkeys: the browser half of the WebAuthn ceremonies in
 * src/accounts/mfa/webauthn.rs. Served as /static/webauthn.js (CSP script-src 'self'); no
 * dependencies, no inline script. Progressive enhancement only: without this script, or without
 * WebAuthn in the browser, every form still posts normally and the server answers it.
 *
 * Contract with the pages
 * -----------------------
 * Elements marked data-webauthn-only are rendered with the `hidden` attribute; this script shows
 * them once window.PublicKeyCredential exists, so no dead passkey button appears without it. It
 * also sets <html data-webauthn="available"> for stylesheets.
 *
 * 1. Registering a passkey, or a passkey as second factor:
 *
 *    <form method="post" action="..." data-webauthn="register">   (or "authenticate")
 *      <script type="application/json" id="webauthn-options">{"publicKey": {...}}</script>
 *      <input type="hidden" name="ceremony" value="...">            (the page's own fields)
 *      <input type="hidden" name="credential">
 *      <p data-webauthn-error hidden></p>
 *      <button type="submit">Add a passkey</button>                  (or any [data-webauthn-start])
 *    </form>
 *
 *    The options are the JSON of Passkeys::start_registration / start_authentication, as
 *    webauthn-rs serialises them: {"publicKey": {...}} with binary fields in base64url. The
 *    <script> may sit inside the form or anywhere on the page; a page with several forms names
 *    its block with data-webauthn-options="some-id" on the form. Submitting the form (or
 *    clicking a [data-webauthn-start] button) runs navigator.credentials.create() or .get(),
 *    writes the result into `credential` as JSON and submits the form. On failure (cancelled,
 *    no authenticator, timeout) the message goes into [data-webauthn-error] and nothing is sent.
 *
 * 2. Passwordless sign-in (login page):
 *
 *    <form method="post" action="..." data-webauthn="discover" data-options-url="...">
 *      <input type="hidden" name="csrf" value="...">
 *      <input type="hidden" name="ceremony">
 *      <input type="hidden" name="credential">
 *      <p data-webauthn-error hidden></p>
 *      <button type="button" data-webauthn-start data-webauthn-only hidden>Sign in with a passkey</button>
 *    </form>
 *
 *    The options come from fetch(POST data-options-url, same-origin, body csrf=<the form's csrf
 *    field>), answering {"ceremony": "<id>", "publicKey": {...}} (Passkeys::start_discoverable
 *    plus the id of the stored state; a "mediation" member is ignored). The button runs a modal
 *    get(); when PublicKeyCredential.isConditionalMediationAvailable() resolves true, a
 *    mediation: "conditional" get() also starts on load so passkeys are offered in the autofill
 *    of an <input autocomplete="username webauthn"> anywhere on the page; the button aborts it.
 *    Either way the form is submitted with `ceremony` and `credential` filled.
 *
 * Messages: [data-webauthn-error] may override the texts below with data-cancelled,
 * data-duplicate, data-unsupported, data-insecure and data-failed attributes.
 *
 * What goes into `credential` (the shapes webauthn-rs deserialises; base64url, no padding):
 *   create(): {"id", "rawId", "type", "response": {"clientDataJSON", "attestationObject",
 *              "transports"?}, "extensions": {"credProps"?: {"rk"}, "appid"?}}
 *   get():    {"id", "rawId", "type", "response": {"clientDataJSON", "authenticatorData",
 *              "signature", "userHandle": string|null}, "extensions": {"appid"?}}
 */
(function () {
  "use strict";

  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }
  var MESSAGES = {
    cancelled: "The passkey request was cancelled or timed out.",
    duplicate: "This passkey is already registered to your account.",
    unsupported: "No passkey on this device can be used here.",
    insecure: "Passkeys cannot be used on this address.",
    failed: "The passkey could not be used. Please try again."
  };
  // Conditional requests are refreshed before the server forgets their ceremony.
  var CONDITIONAL_MARGIN_MS = 15000;
  var CONDITIONAL_ROUNDS = 12;

  function fromBase64url(text) {
    var b64 = String(text).replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var binary = atob(b64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) {
      binary += String.fromCharCode(bytes[i]);
    }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBinaryIds(descriptors) {
    return (descriptors || []).map(function (d) {
      return Object.assign({}, d, { id: fromBase64url(d.id) });
    });
  }

  function creationOptions(publicKey) {
    return Object.assign({}, publicKey, {
      challenge: fromBase64url(publicKey.challenge),
      user: Object.assign({}, publicKey.user, { id: fromBase64url(publicKey.user.id) }),
      excludeCredentials: withBinaryIds(publicKey.excludeCredentials)
    });
  }

  function requestOptions(publicKey) {
    return Object.assign({}, publicKey, {
      challenge: fromBase64url(publicKey.challenge),
      allowCredentials: withBinaryIds(publicKey.allowCredentials)
    });
  }

  // Only the extension outputs webauthn-rs reads, in the types it expects: others (prf,
  // largeBlob) hold ArrayBuffers that JSON cannot carry and the server does not use.
  function extensionResults(credential) {
    var all = credential.getClientExtensionResults ? credential.getClientExtensionResults() : {};
    var out = {};
    if (typeof all.appid === "boolean") {
      out.appid = all.appid;
    }
    if (all.credProps && typeof all.credProps.rk === "boolean") {
      out.credProps = { rk: all.credProps.rk };
    }
    return out;
  }

  function registrationJSON(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        attestationObject: toBase64url(response.attestationObject)
      },
      extensions: extensionResults(credential)
    };
    if (typeof response.getTransports === "function") {
      json.response.transports = response.getTransports();
    }
    return JSON.stringify(json);
  }

  function assertionJSON(credential) {
    var response = credential.response;
    // Some authenticators answer an empty user handle for "none": send null, not "".
    var handle = response.userHandle && response.userHandle.byteLength
      ? toBase64url(response.userHandle)
      : null;
    return JSON.stringify({
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        authenticatorData: toBase64url(response.authenticatorData),
        signature: toBase64url(response.signature),
        userHandle: handle
      },
      extensions: extensionResults(credential)
    });
  }

  function errorBox(form) {
    return form.querySelector("[data-webauthn-error]") ||
      document.querySelector("[data-webauthn-error]");
  }

  function showError(form, error) {
    var key = "failed";
    if (error && error.name === "NotAllowedError") {
      key = "cancelled";
    } else if (error && error.name === "InvalidStateError") {
      key = "duplicate";
    } else if (error && error.name === "NotSupportedError") {
      key = "unsupported";
    } else if (error && error.name === "SecurityError") {
      key = "insecure";
    }
    var box = errorBox(form);
    if (!box) {
      return;
    }
    box.textContent = box.dataset[key] || MESSAGES[key];
    box.hidden = false;
    box.setAttribute("role", "alert");
  }

  function clearError(form) {
    var box = errorBox(form);
    if (box) {
      box.hidden = true;
      box.textContent = "";
    }
  }

  function setBusy(form, busy) {
    form.setAttribute("aria-busy", busy ? "true" : "false");
    form.querySelectorAll("button, [data-webauthn-start]").forEach(function (el) {
      el.disabled = busy;
    });
  }

  function field(form, name) {
    var input = form.elements.namedItem(name);
    if (!input) {
      input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      form.appendChild(input);
    }
    return input;
  }

  // requestSubmit() keeps the submitter's name/value and dispatches "submit" synchronously,
  // which our own handler lets through while the flag is set; the flag is dropped right after,
  // so a submission blocked by validation starts a new ceremony next time.
  function send(form, submitter) {
    if (typeof form.requestSubmit !== "function") {
      form.submit();
      return;
    }
    var own = submitter && submitter.form === form && submitter.type === "submit";
    form.dataset.webauthnReady = "true";
    try {
      if (own) {
        form.requestSubmit(submitter);
      } else {
        form.requestSubmit();
      }
    } finally {
      delete form.dataset.webauthnReady;
    }
  }

  function embeddedOptions(form) {
    var id = form.dataset.webauthnOptions || "webauthn-options";
    var block = document.getElementById(id);
    if (!block) {
      throw new Error("no #" + id + " options on the page");
    }
    return JSON.parse(block.textContent);
  }

  // 1. register / authenticate ---------------------------------------------------------------

  function runEmbedded(form, submitter) {
    clearError(form);
    var options;
    try {
      options = embeddedOptions(form);
    } catch (e) {
      showError(form, e);
      return;
    }
    var register = form.dataset.webauthn === "register";
    setBusy(form, true);
    var ceremony = register
      ? navigator.credentials.create({ publicKey: creationOptions(options.publicKey) })
      : navigator.credentials.get({ publicKey: requestOptions(options.publicKey) });
    ceremony.then(function (credential) {
      if (!credential) {
        throw new Error("no credential");
      }
      field(form, "credential").value = register
        ? registrationJSON(credential)
        : assertionJSON(credential);
      setBusy(form, false);
      send(form, submitter);
    }).catch(function (error) {
      setBusy(form, false);
      showError(form, error);
    });
  }

  function enhanceEmbedded(form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.webauthnReady === "true") {
        return;
      }
      event.preventDefault();
      runEmbedded(form, event.submitter);
    });
    form.querySelectorAll("[data-webauthn-start]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        runEmbedded(form, button);
      });
    });
  }

  // 2. discover ------------------------------------------------------------------------------

  function fetchOptions(form) {
    var body = new URLSearchParams();
    var csrf = form.elements.namedItem("csrf");
    if (csrf) {
      body.set("csrf", csrf.value);
    }
    return fetch(form.dataset.optionsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      body: body
    }).then(function (response) {
      if (!response.ok) {
        throw new Error("passkey options: HTTP " + response.status);
      }
      return response.json();
    }).then(function (options) {
      if (!options || typeof options.ceremony !== "string" || !options.publicKey) {
        throw new Error("passkey options: unexpected answer");
      }
      return options;
    });
  }

  function signIn(form, ceremony, credential) {
    field(form, "ceremony").value = ceremony;
    field(form, "credential").value = assertionJSON(credential);
    send(form, null);
  }

  function isAbort(error) {
    return error && error.name === "AbortError";
  }

  function startConditional(form, round) {
    var controller = new AbortController();
    form._webauthnConditional = controller;
    var refresh = null;
    fetchOptions(form).then(function (options) {
      if (controller.signal.aborted) {
        return null;
      }
      var lifetime = Number(options.publicKey.timeout) || 300000;
      if (round < CONDITIONAL_ROUNDS) {
        refresh = setTimeout(function () {
          if (form._webauthnConditional === controller) {
            controller.abort();
            startConditional(form, round + 1);
          }
        }, Math.max(lifetime - CONDITIONAL_MARGIN_MS, CONDITIONAL_MARGIN_MS));
      }
      return navigator.credentials.get({
        mediation: "conditional",
        publicKey: requestOptions(options.publicKey),
        signal: controller.signal
      }).then(function (credential) {
        if (credential) {
          signIn(form, options.ceremony, credential);
        }
      });
    }).catch(function (error) {
      // Nobody asked for this request: its failures stay quiet, except in the console.
      if (!isAbort(error) && window.console) {
        window.console.warn("passkey autofill:", error);
      }
    }).then(function () {
      if (refresh) {
        clearTimeout(refresh);
      }
    });
  }

  function stopConditional(form) {
    var controller = form._webauthnConditional;
    form._webauthnConditional = null;
    if (controller) {
      controller.abort();
    }
  }

  function maybeConditional(form) {
    var available = PublicKeyCredential.isConditionalMediationAvailable;
    if (typeof available !== "function") {
      return;
    }
    available.call(PublicKeyCredential).then(function (yes) {
      if (yes) {
        startConditional(form, 0);
      }
    }).catch(function () {});
  }

  function runDiscover(form) {
    stopConditional(form);
    clearError(form);
    setBusy(form, true);
    fetchOptions(form).then(function (options) {
      return navigator.credentials.get({ publicKey: requestOptions(options.publicKey) })
        .then(function (credential) {
          if (!credential) {
            throw new Error("no credential");
          }
          setBusy(form, false);
          signIn(form, options.ceremony, credential);
        });
    }).catch(function (error) {
      setBusy(form, false);
      showError(form, error);
      maybeConditional(form);
    });
  }

  function enhanceDiscover(form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.webauthnReady === "true") {
        return;
      }
      event.preventDefault();
      runDiscover(form);
    });
    form.querySelectorAll("[data-webauthn-start]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        runDiscover(form);
      });
    });
    maybeConditional(form);
  }

  function init() {
    document.documentElement.dataset.webauthn = "available";
    document.querySelectorAll("[data-webauthn-only]").forEach(function (el) {
      el.hidden = false;
    });
    document.querySelectorAll("form[data-webauthn]").forEach(function (form) {
      var kind = form.dataset.webauthn;
      if (kind === "register" || kind === "authenticate") {
        enhanceEmbedded(form);
      } else if (kind === "discover") {
        enhanceDiscover(form);
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
