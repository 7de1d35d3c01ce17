// Mailgate web UI: dialogs, connection tests, provider presets, account sync and inbox
// tests, sending-domain checks.
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

  async function problemText(response) {
    // A problem+json or UI error body, else the status line.
    try {
      const body = await response.json();
      const fields = (body.errors || []).map((e) => `${e.field}: ${e.message}`);
      return [body.detail || body.title, ...fields].filter(Boolean).join(" — ") ||
        `HTTP ${response.status}`;
    } catch (_) {
      return `HTTP ${response.status} ${response.statusText}`.trim();
    }
  }

  // Dialogs ---------------------------------------------------------------------------

  const formDialog = () => document.getElementById("form-dialog");

  async function openFormDialog(url) {
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

  function showFragment(html) {
    const body = document.getElementById("form-dialog-body");
    body.innerHTML = html;
    const form = body.querySelector("form");
    if (!form) return;
    form.addEventListener("submit", submitDialogForm);
    if (form.id === "server-form") wireServerForm(form);
    if (form.id === "account-form") wireAccountForm(form);
    const invalid = form.querySelector('[aria-invalid="true"]');
    (invalid || form.querySelector("input:not([type=hidden]), select"))?.focus();
  }

  async function submitDialogForm(event) {
    event.preventDefault();
    const form = event.currentTarget;
    const submit = form.querySelector('button[type="submit"]');
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
        showFragment(await response.text());
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
  });

  // The mail server dialog -------------------------------------------------------------

  function wireServerForm(form) {
    const engine = form.elements.namedItem("engine");
    const auth = form.elements.namedItem("auth");
    const apply = () => showEngine(form, engine.value, auth ? auth.value : "none");
    engine.addEventListener("change", apply);
    auth?.addEventListener("change", apply);
    apply();
    const providers = JSON.parse(form.dataset.providers || "[]");
    const preset = form.elements.namedItem("provider");
    preset.addEventListener("change", () => {
      const found = providers.find((p) => p.key === preset.value);
      if (found) fillPreset(form, found);
    });
    form.querySelector("[data-resolve]").addEventListener("click", () => resolve(form));
    form.querySelector("[data-test]").addEventListener("click", () => testConnection(form));
  }

  function showEngine(form, engine, auth) {
    for (const part of form.querySelectorAll("[data-engines]")) {
      part.hidden = !part.dataset.engines.split(" ").includes(engine);
    }
    const oauth = form.querySelector("[data-oauth]");
    if (oauth && engine === "smtp" && auth !== "xoauth2") oauth.hidden = true;
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
    }
  }

  function syncSummary(body) {
    const parts = [];
    for (const [key, value] of Object.entries(body || {})) {
      if (["string", "number", "boolean"].includes(typeof value)) parts.push(`${key}: ${value}`);
    }
    return parts.length ? `Sync done (${parts.join(", ")})` : "Sync done.";
  }
})();
