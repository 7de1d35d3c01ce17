// Mailgate web UI: dialogs, connection tests, provider presets, account sync and inbox
// tests, sending-domain checks, server tests and the Email Logs' refresh.
// Progressive enhancement only: every link and form also works without this script.
// Text from the server is always inserted with textContent, never as HTML, except the
// dialog fragments, which are Mailgate's own server-rendered (autoescaped) templates.
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function problemOf(response) {
    // A problem+json or UI error body: {text, errors}; each problem is said once.
    try {
      const body = await response.json();
      const errors = body.errors || [];
      if (errors.length) {
        const text = errors.map((e) => `${fieldLabel(e.field)}: ${e.message}`).join("; ");
        return { text, errors };
      }
      return { text: body.detail || body.title || `HTTP ${response.status}`, errors };
    } catch (_) {
      return { text: `HTTP ${response.status} ${response.statusText}`.trim(), errors: [] };
    }
  }

  async function problemText(response) {
    return (await problemOf(response)).text;
  }

  function fieldLabel(field, form) {
    // The words of a field's label ("SMTP Password"), else the field name in words.
    const name = String(field).split("[", 1)[0];
    const id = `f-${name.replaceAll(".", "-")}`;
    const label = (form || document).querySelector(`label[for="${CSS.escape(id)}"]`);
    if (label) return label.textContent.replace("*", "").trim();
    return name.replaceAll("_", " ").replaceAll(".", " ");
  }

  function showFieldErrors(form, errors) {
    // Marks each field named in ``errors`` with its own message; false when none is shown.
    for (const old of form.querySelectorAll(".field-error.from-script")) old.remove();
    let first = null;
    for (const error of errors) {
      const name = String(error.field).split("[", 1)[0];
      const wrap = form.querySelector(`[data-field="${CSS.escape(name)}"]`);
      const control = wrap?.querySelector("input, select, textarea");
      if (!wrap || !control || control.disabled) continue;
      const id = `${control.id}-error`;
      if (!wrap.querySelector(`#${CSS.escape(id)}`)) {
        wrap.append(el("p", { class: "field-error from-script", id }, error.message));
      }
      wrap.classList.add("invalid");
      control.setAttribute("aria-invalid", "true");
      // The error is said first, then the field's hint, if it has one.
      const hint = wrap.querySelector(".hint[id]");
      control.setAttribute("aria-describedby", hint ? `${id} ${hint.id}` : id);
      first = first || control;
    }
    if (first) revealAndFocus(first);
    return Boolean(first);
  }

  function revealAndFocus(control) {
    // Opens every closed section around ``control`` and moves the focus to it.
    for (let node = control.parentElement; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") node.open = true;
    }
    control.focus();
  }

  function focusFirstInvalid(root) {
    const invalid = root.querySelector('[aria-invalid="true"]');
    if (invalid) revealAndFocus(invalid);
    return Boolean(invalid);
  }

  // Dialogs ---------------------------------------------------------------------------

  const formDialog = () => document.getElementById("form-dialog");
  let opener = null; // what had the focus before a dialog opened; it gets it back

  async function openFormDialog(url) {
    opener = document.activeElement;
    const response = await fetch(url, {
      headers: { "X-Mailgate-Fragment": "1" },
      credentials: "same-origin",
    });
    if (!response.ok) {
      window.location.href = url;
      return;
    }
    showFragment(await response.text());
    formDialog().showModal();
  }

  function showFragment(html, typedSecrets) {
    const body = document.getElementById("form-dialog-body");
    body.innerHTML = html;
    // The dialog is named by the heading of what it shows.
    const heading = body.querySelector("h2[id]");
    if (heading) formDialog().setAttribute("aria-labelledby", heading.id);
    const form = body.querySelector("form");
    if (!form) return;
    form.addEventListener("submit", submitDialogForm);
    restoreSecrets(form, typedSecrets || {});
    if (form.id === "server-form") wireServerForm(form);
    if (form.id === "account-form") wireAccountForm(form);
    if (!focusFirstInvalid(form)) {
      form.querySelector("input:not([type=hidden]):not([disabled]), select")?.focus();
    }
  }

  function typedSecretsOf(form) {
    // Secrets typed into the dialog: kept in this page only, put back after a refused save.
    const out = {};
    for (const input of form.querySelectorAll('input[type="password"]')) {
      if (input.value) out[input.name] = input.value;
    }
    return out;
  }

  function restoreSecrets(form, secrets) {
    for (const [name, value] of Object.entries(secrets)) {
      const input = form.elements.namedItem(name);
      if (!input || input.type !== "password") continue;
      input.value = value;
      const hint = input.parentElement.querySelector(".hint");
      if (hint && hint.textContent.includes("not kept")) hint.textContent = "Kept as you typed it.";
    }
  }

  formDialogReady(() => {
    for (const dialog of document.querySelectorAll("dialog")) {
      dialog.addEventListener("close", () => {
        if (opener && document.contains(opener)) opener.focus();
        opener = null;
      });
    }
  });

  function formDialogReady(callback) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", callback);
    else callback();
  }

  async function submitDialogForm(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const submit = form.querySelector('button[type="submit"]');
    const secrets = typedSecretsOf(form);
    if (submit) submit.disabled = true;
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-Mailgate-Fragment": "1", "X-CSRF-Token": csrf() },
        credentials: "same-origin",
        // Saved: the 303 (and its one-time message cookie) is left to the reload below.
        redirect: "manual",
      });
      if (response.type === "opaqueredirect") {
        window.location.reload();
        return;
      }
      const type = response.headers.get("content-type") || "";
      if (type.startsWith("text/html") && [409, 422].includes(response.status)) {
        showFragment(await response.text(), secrets);
        return;
      }
      if (type.startsWith("text/html") && response.ok) {
        showFragment(await response.text());
        return;
      }
      formError(form, await problemText(response));
    } catch (error) {
      formError(form, `The request failed: ${error.message}`);
    } finally {
      if (submit) submit.disabled = false;
    }
  }

  function formError(form, text) {
    let box = form.querySelector(".form-error");
    if (!box) {
      box = el("p", { class: "form-error", role: "alert" });
      form.querySelector("h2").after(box);
    }
    box.textContent = text;
  }

  function confirmDelete(link) {
    opener = link;
    const dialog = document.getElementById("confirm-dialog");
    dialog.querySelector("#confirm-text").textContent = link.dataset.confirm;
    dialog.querySelector("form").action = link.href;
    dialog.showModal();
    dialog.querySelector("button[data-close]").focus();
  }

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const opener = target.closest("a[data-dialog]");
    if (opener) {
      event.preventDefault();
      openFormDialog(opener.href);
      return;
    }
    const deleter = target.closest("a[data-confirm]");
    if (deleter) {
      event.preventDefault();
      confirmDelete(deleter);
      return;
    }
    const closer = target.closest("[data-close]");
    const dialog = closer?.closest("dialog");
    if (closer && dialog) {
      event.preventDefault();
      dialog.close();
      return;
    }
    const sync = target.closest("button[data-sync-url]");
    if (sync) syncAccount(sync);
    const domain = target.closest("button[data-domain-check]");
    if (domain) checkDomain(domain);
    const test = target.closest("button[data-test-server-url]");
    if (test) testSavedServer(test);
    const copy = target.closest("button[data-copy]");
    if (copy) copyText(copy);
  });

  async function copyText(button) {
    const source = document.getElementById(button.dataset.copy);
    source.select();
    try {
      await navigator.clipboard.writeText(source.value);
      button.textContent = "Copied";
    } catch (_) {
      button.textContent = "Selected: press Ctrl+C";
    }
    button.focus();
  }

  // The mail server dialog -------------------------------------------------------------

  function wireServerForm(form) {
    const engine = form.elements.namedItem("engine");
    const auth = form.elements.namedItem("auth");
    const oauthProvider = form.elements.namedItem("oauth.provider");
    const apply = () => showEngine(form, engine.value, auth ? auth.value : "none");
    engine.addEventListener("change", apply);
    auth?.addEventListener("change", apply);
    oauthProvider?.addEventListener("change", apply);
    apply();
    const providers = JSON.parse(form.dataset.providers || "[]");
    const preset = form.elements.namedItem("provider");
    preset.addEventListener("change", () => {
      const found = providers.find((p) => p.key === preset.value);
      if (found) fillPreset(form, found);
    });
    form.querySelector("[data-resolve]").addEventListener("click", () => resolve(form));
    // Enter in the address runs the look-up; it never submits the whole form.
    form.querySelector("#resolve-email").addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      resolve(form);
    });
    form.querySelector("[data-test]").addEventListener("click", () => testConnection(form));
  }

  function showEngine(form, engine, auth) {
    for (const part of form.querySelectorAll("[data-engines]")) {
      part.hidden = !part.dataset.engines.split(" ").includes(engine);
    }
    const oauth = form.querySelector("[data-oauth]");
    if (oauth && engine === "smtp" && auth !== "xoauth2") oauth.hidden = true;
    // Only what the chosen authentication uses is shown.
    const provider = engine === "msgraph" ? "microsoft" :
      (form.elements.namedItem("oauth.provider")?.value || "google");
    for (const part of form.querySelectorAll("[data-auth]")) {
      part.hidden = !part.dataset.auth.split(" ").includes(auth);
    }
    for (const part of form.querySelectorAll("[data-oauth-providers]")) {
      part.hidden = !part.dataset.oauthProviders.split(" ").includes(provider);
    }
    for (const control of form.querySelectorAll("input, select, textarea")) {
      const hiddenPart = control.closest("[hidden]");
      control.disabled = Boolean(hiddenPart) && control.type !== "hidden";
    }
  }

  function setValue(form, name, value) {
    const control = form.elements.namedItem(name);
    if (control && value !== undefined && value !== null) control.value = String(value);
  }

  function fillPreset(form, preset) {
    setValue(form, "engine", preset.engine);
    setValue(form, "provider", preset.key);
    if (preset.engine === "smtp") {
      setValue(form, "host", preset.host);
      setValue(form, "port", preset.port);
      setValue(form, "security", preset.security);
      setValue(form, "auth", preset.auth);
      if (preset.oauth_provider) setValue(form, "oauth.provider", preset.oauth_provider);
      if (preset.oauth_scope) setValue(form, "oauth.scope", preset.oauth_scope);
    }
    form.elements.namedItem("engine").dispatchEvent(new Event("change"));
  }

  async function resolve(form) {
    const input = form.querySelector("#resolve-email");
    const out = form.querySelector("#resolve-result");
    const url = `${form.dataset.resolveUrl}?email=${encodeURIComponent(input.value.trim())}`;
    const response = await fetch(url, {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) {
      out.textContent = await problemText(response);
      input.focus();
      return;
    }
    const preset = await response.json();
    fillPreset(form, preset);
    const username = form.elements.namedItem("username");
    if (username && !username.value) username.value = input.value.trim();
    out.textContent = `${preset.name}: ${preset.host}:${preset.port} (${preset.security})`;
  }

  async function testConnection(form) {
    const button = form.querySelector("[data-test]");
    const spinner = form.querySelector(".spinner");
    const report = form.querySelector("#test-report");
    button.disabled = true;
    spinner.hidden = false;
    report.hidden = true;
    report.replaceChildren();
    try {
      const response = await fetch(form.dataset.testUrl, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
        credentials: "same-origin",
      });
      if (response.ok) {
        report.append(renderReport(await response.json()));
      } else {
        const problem = await problemOf(response);
        const marked = showFieldErrors(form, problem.errors);
        report.append(el("p", { class: "report-head fail", role: "alert" },
          marked ? "Not tested: fix the marked fields first." : problem.text));
      }
    } catch (error) {
      report.append(el("p", { class: "report-head fail" }, `The test failed: ${error.message}`));
    } finally {
      spinner.hidden = true;
      button.disabled = false;
      report.hidden = false;
      if (!form.contains(document.activeElement) || document.activeElement === document.body) {
        button.focus();
      }
    }
  }

  function renderReport(r) {
    const box = el("div", { class: "report-body", "data-ok": String(r.ok) });
    box.append(el("p", { class: `report-head ${r.ok ? "ok" : "fail"}` },
      r.ok ? "✓ Connection works" : "✗ Connection failed"));
    const facts = el("dl", { class: "facts" });
    const fact = (name, value) => {
      if (value === null || value === undefined || value === "") return;
      facts.append(el("dt", {}, name), el("dd", {}, value));
    };
    fact("Security", r.security);
    if (r.tls) {
      fact("TLS version", r.tls.version);
      fact("Cipher", r.tls.cipher);
      const cert = r.tls.certificate;
      if (cert) {
        fact("Certificate subject", cert.subject);
        fact("Certificate issuer", cert.issuer);
        fact("Certificate expires", cert.not_after);
        fact("Certificate verified", cert.verified ? "yes" : "no");
      }
    }
    if (r.server) {
      fact("Banner", r.server.banner);
      fact("Extensions", (r.server.extensions || []).join(", "));
      fact("AUTH mechanisms", (r.server.auth_mechanisms || []).join(", ") || "none offered");
    }
    fact("Authenticated", r.authenticated ? "yes" : "no");
    box.append(facts);
    if (r.error) {
      box.append(el("div", { class: "report-error", role: "alert" },
        el("p", {}, el("strong", {}, r.error.code), " ", r.error.message),
        r.error.hint ? el("p", { class: "hint" }, r.error.hint) : null));
    }
    if (r.steps && r.steps.length) {
      const steps = el("ol", { class: "steps", "aria-label": "Steps" });
      for (const step of r.steps) {
        steps.append(el("li", { class: step.ok ? "ok" : "fail" },
          `${step.ok ? "✓" : "✗"} ${step.name} — ${Number(step.ms).toFixed(1)} ms`));
      }
      box.append(steps);
    }
    for (const warning of r.warnings || []) {
      box.append(el("p", { class: "warning" }, warning));
    }
    return box;
  }

  // The email account dialog: sign-in method and the inbox test ----------------------------

  function wireAccountForm(form) {
    const auth = form.elements.namedItem("imap.auth");
    const apply = () => {
      for (const part of form.querySelectorAll("[data-imap-auth]")) {
        part.hidden = part.dataset.imapAuth !== auth.value;
        for (const control of part.querySelectorAll("input, select, textarea")) {
          control.disabled = part.hidden;
        }
      }
    };
    auth?.addEventListener("change", apply);
    if (auth) apply();
    const test = form.querySelector("[data-test-inbox]");
    test?.addEventListener("click", () => testInbox(form, test));
  }

  async function testInbox(form, button) {
    const spinner = button.parentElement.querySelector(".spinner");
    const report = form.querySelector("#inbox-report");
    button.disabled = true;
    spinner.hidden = false;
    report.hidden = true;
    report.replaceChildren();
    try {
      const response = await fetch(button.dataset.testInbox, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
        credentials: "same-origin",
      });
      if (response.ok) {
        report.append(renderInboxReport(await response.json()));
      } else {
        report.append(el("p", { class: "report-head fail", role: "alert" },
          await problemText(response)));
      }
    } catch (error) {
      report.append(el("p", { class: "report-head fail" }, `The test failed: ${error.message}`));
    } finally {
      spinner.hidden = true;
      button.disabled = false;
      report.hidden = false;
    }
  }

  function renderInboxReport(r) {
    const box = el("div", { class: "report-body", "data-ok": String(r.ok) });
    box.append(el("p", { class: `report-head ${r.ok ? "ok" : "fail"}` },
      r.ok ? "✓ Inbox works" : "✗ Inbox test failed"));
    const facts = el("dl", { class: "facts" });
    facts.append(el("dt", {}, "Sign-in"), el("dd", {}, r.auth));
    facts.append(el("dt", {}, "Folder"), el("dd", {}, r.folder));
    if (r.messages !== null && r.messages !== undefined) {
      facts.append(el("dt", {}, "Messages"), el("dd", {}, r.messages));
    }
    box.append(facts);
    if (r.error) {
      box.append(el("div", { class: "report-error", role: "alert" },
        el("p", {}, el("strong", {}, r.error.code), " ", r.error.message),
        el("p", { class: "hint" }, `${r.error.field}: ${r.error.hint}`)));
    }
    const steps = el("ol", { class: "steps", "aria-label": "Steps" });
    for (const step of r.steps || []) {
      steps.append(el("li", { class: step.ok ? "ok" : "fail" },
        `${step.ok ? "✓" : "✗"} ${step.name} — ${Number(step.ms).toFixed(1)} ms`));
    }
    box.append(steps);
    return box;
  }

  // Sending-domain checks -----------------------------------------------------------------

  async function checkDomain(button) {
    const panel = button.closest("[data-domain-panel]");
    const input = panel.querySelector("input[name=domain]");
    const domain = (button.dataset.domainCheck || input.value).trim();
    const out = panel.querySelector(".domain-report");
    if (!domain) return;
    input.value = domain;
    button.disabled = true;
    out.replaceChildren(el("p", { role: "status" }, `Checking ${domain}…`));
    try {
      const url = `${panel.dataset.checkUrl}/${encodeURIComponent(domain)}/check`;
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      out.replaceChildren(response.ok ? renderDomainReport(await response.json())
        : el("p", { class: "report-head fail", role: "alert" }, await problemText(response)));
    } catch (error) {
      out.replaceChildren(el("p", { class: "report-head fail" }, `The check failed: ${error.message}`));
    } finally {
      button.disabled = false;
    }
  }

  function renderDomainReport(r) {
    const box = el("div", { class: "report-body", "data-ok": String(r.ok) });
    box.append(el("p", { class: `report-head ${r.ok ? "ok" : "fail"}` },
      r.ok ? `✓ ${r.domain} is ready to send` : `✗ ${r.domain} needs DNS changes`));
    const table = el("table", { class: "domain-checks" });
    table.append(el("thead", {}, el("tr", {}, el("th", {}, "Check"), el("th", {}, "Name"),
      el("th", {}, "Result"), el("th", {}, "Publish"))));
    const body = el("tbody");
    for (const c of r.checks) {
      const publish = c.publish
        ? el("code", {}, `${c.publish.name} ${c.publish.type} ${c.publish.value}`) : "—";
      body.append(el("tr", { class: c.ok ? "ok" : "fail", "data-kind": c.kind },
        el("td", {}, c.kind), el("td", {}, c.name),
        el("td", {}, `${c.status}: ${c.detail}`), el("td", {}, publish)));
    }
    table.append(body);
    box.append(table);
    return box;
  }

  // Account sync ------------------------------------------------------------------------

  async function syncAccount(button) {
    const card = button.closest(".card");
    const out = card.querySelector(".sync-result");
    button.disabled = true;
    button.classList.add("spinning");
    button.setAttribute("aria-busy", "true");
    out.textContent = "Syncing…";
    try {
      const response = await fetch(button.dataset.syncUrl, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
        credentials: "same-origin",
      });
      if (response.ok) {
        const body = await response.json().catch(() => ({}));
        out.textContent = syncSummary(body);
      } else {
        out.textContent = `Sync failed: ${await problemText(response)}`;
      }
    } catch (error) {
      out.textContent = `Sync failed: ${error.message}`;
    } finally {
      button.disabled = false;
      button.classList.remove("spinning");
      button.removeAttribute("aria-busy");
      button.focus();
    }
  }

  function count(n, one, many) {
    return `${n} ${n === 1 ? one : many}`;
  }

  function syncSummary(body) {
    // The sync's counts in words.
    const b = body || {};
    const parts = [`${count(b.fetched || 0, "new message", "new messages")} fetched`];
    if (b.bounces) {
      parts.push(`${count(b.bounces, "bounce", "bounces")} ` +
        `(${count(b.bounced_recipients || 0, "recipient", "recipients")} marked bounced)`);
    }
    if (b.complaints) parts.push(count(b.complaints, "complaint", "complaints"));
    if (b.duplicates) parts.push(`${b.duplicates} already seen`);
    if (b.uidvalidity_changed) parts.push("the folder was reset on the server");
    const folder = b.mailbox ? ` of ${b.mailbox}` : "";
    return `Sync${folder} done: ${parts.join(", ")}.`;
  }

  // Testing a saved server from its card -------------------------------------------------

  const STATUS_WORDS = { ok: "ok", auth_failed: "auth failed", unreachable: "unreachable" };

  async function testSavedServer(button) {
    const card = button.closest(".card");
    const out = card.querySelector(".test-result");
    const badge = card.querySelector(".server-status");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    out.textContent = "Testing…";
    try {
      const response = await fetch(button.dataset.testServerUrl, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf() },
        credentials: "same-origin",
      });
      if (!response.ok) {
        out.textContent = `Test failed: ${await problemText(response)}`;
        return;
      }
      const r = await response.json();
      const status = r.ok ? "ok" : (r.error && ["auth_failed", "auth_not_offered",
        "insecure_auth_refused", "permission_missing"].includes(r.error.code) ?
        "auth_failed" : "unreachable");
      badge.className = `badge server-status status-${status}`;
      badge.textContent = STATUS_WORDS[status];
      out.textContent = r.ok ? "Connection works." :
        `Connection failed: ${r.error.message}${r.error.hint ? ` — ${r.error.hint}` : ""}`;
    } catch (error) {
      out.textContent = `Test failed: ${error.message}`;
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      button.focus();
    }
  }

  // Email Logs: refresh while messages are in flight --------------------------------------

  formDialogReady(() => {
    const results = document.getElementById("log-results");
    if (!results) return;
    const every = Number(results.dataset.refreshSeconds || 5) * 1000;
    async function refresh() {
      if (!document.getElementById("log-results")?.dataset.inFlight) return;
      try {
        const response = await fetch(window.location.href, { credentials: "same-origin" });
        if (response.ok) {
          const doc = new DOMParser().parseFromString(await response.text(), "text/html");
          const fresh = doc.getElementById("log-results");
          const current = document.getElementById("log-results");
          if (fresh && current && !current.contains(document.activeElement)) {
            current.replaceWith(document.importNode(fresh, true));
          }
        }
      } catch (_) {
        // The next round tries again.
      }
      window.setTimeout(refresh, every);
    }
    if (results.dataset.inFlight) window.setTimeout(refresh, every);
  });
})();
