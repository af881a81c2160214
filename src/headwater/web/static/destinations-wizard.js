/* The new-destination wizard (document 003): Name & describe, Authenticate, Configure request with Test
 * Request, Review & save. Shared pieces (icons, field errors, Test Request, facts) are in destinations.js. */
(function () {
  "use strict";

  const { api, el } = window.HW;
  const { FS, icon, iconBox, openPanel, showProblem, tester, requestFacts, authFacts, pages } = window.HWDestinations;

  function problemOf(errors) {
    return { title: "Validation failed", report: { errors } };
  }

  function wireReveals(scope) {
    scope.querySelectorAll(".reveal > button[aria-controls]").forEach((button) => {
      const panel = document.getElementById(button.getAttribute("aria-controls"));
      button.addEventListener("click", () => openPanel(panel, panel.hidden));
    });
  }

  /* Key/value rows (headers, form items) with labelled inputs; values' data-path follow their keys so the
   * API's errors (params.headers.X-Email) land next to the row. */
  function pairRows(container) {
    const rows = el("div", { class: "pair-rows" });
    const noun = container.dataset.key || "Key";
    const add = el("button", { type: "button", class: "secondary small", text: container.dataset.add || "Add" });
    container.append(rows, add);
    let count = 0;
    function addRow(key, value) {
      count += 1;
      const keyInput = el("input", { type: "text", class: "pair-key", autocomplete: "off", "aria-label": `${noun} ${count}`, value: key || "" });
      const valueInput = el("input", { type: "text", class: "pair-value", autocomplete: "off", "aria-label": `${container.dataset.value || "Value"} ${count}`, value: value || "" });
      const row = el("div", { class: "pair-row field" }, keyInput, valueInput);
      row.append(
        el("button", {
          type: "button",
          class: "link",
          text: "Remove",
          "aria-label": `Remove ${container.dataset.item || "row"} ${count}`,
          onclick: () => {
            row.remove();
            add.focus();
          },
        })
      );
      rows.append(row);
      return keyInput;
    }
    add.addEventListener("click", () => addRow("", "").focus());
    function entries() {
      return Array.from(rows.querySelectorAll(".pair-row")).map((row) => [row, row.querySelector(".pair-key").value.trim(), row.querySelector(".pair-value").value]);
    }
    return {
      addRow,
      read() {
        const out = {};
        for (const [, key, value] of entries()) if (key) out[key] = value;
        return out;
      },
      refreshPaths() {
        for (const [row, key] of entries()) {
          const value = row.querySelector(".pair-value");
          if (key) {
            value.dataset.path = `${container.dataset.path}.${key}`;
            value.dataset.label = `${container.dataset.item ? container.dataset.item[0].toUpperCase() + container.dataset.item.slice(1) : noun} ${key}`;
          } else {
            delete value.dataset.path;
          }
        }
      },
    };
  }

  function initNew(root) {
    const form = document.getElementById("dest-wizard");
    const $ = (id) => document.getElementById(id);
    form.addEventListener("submit", (event) => event.preventDefault());
    wireReveals(form);

    const iconSelect = $("d-icon");
    const preview = $("d-icon-preview");
    const showIcon = () => preview.replaceChildren(icon(iconSelect.value, 26));
    iconSelect.addEventListener("change", showIcon);
    showIcon();

    const authType = () => form.querySelector('input[name="auth-type"]:checked').value;
    const showAuth = () => form.querySelectorAll("[data-auth]").forEach((panel) => (panel.hidden = panel.dataset.auth !== authType()));
    form.querySelectorAll('input[name="auth-type"]').forEach((radio) => radio.addEventListener("change", showAuth));
    showAuth();
    $("a-mtls").addEventListener("change", () => openPanel($("a-mtls-panel"), $("a-mtls").checked));
    $("a-jwks").addEventListener("click", async () => {
      const view = $("a-jwks-view");
      if (!view.hidden) {
        view.hidden = true;
        $("a-jwks").setAttribute("aria-expanded", "false");
        return;
      }
      const answer = await HW.api("GET", "/data/foundation/flowservice/jwks");
      if (!answer.ok) view.textContent = HW.problemText(answer.data);
      else if (!answer.data.keys.length)
        view.textContent = "No destination of this sandbox presents a client certificate yet: the certificate you save here will be listed.";
      else view.textContent = JSON.stringify(answer.data, null, 2);
      view.hidden = false;
      $("a-jwks").setAttribute("aria-expanded", "true");
    });
    form.querySelectorAll("input[type=file][data-pem]").forEach((input) =>
      input.addEventListener("change", async () => {
        const file = input.files && input.files[0];
        if (file) $(input.dataset.pem).value = await file.text();
      })
    );

    const pairs = {
      extraHeaders: pairRows($("a-headers")),
      formItems: pairRows($("a-form")),
      headers: pairRows($("r-headers")),
    };

    function readAuth() {
      const specName = authType();
      const params = {};
      const text = (id) => $(id).value.trim();
      if (specName === "OAuth 2 Client Credentials") {
        params.accessTokenUrl = text("a-token-url");
        params.credentialsLocation = form.querySelector('input[name="a-location"]:checked').value;
        params.clientId = text("a-client-id");
        params.clientSecret = $("a-client-secret").value;
        if (text("a-scope")) params.scope = text("a-scope");
        const headers = pairs.extraHeaders.read();
        if (Object.keys(headers).length) params.extraHeaders = headers;
        const items = pairs.formItems.read();
        if (Object.keys(items).length) params.formItems = items;
        if ($("a-mtls").checked) {
          params.clientCertificate = $("a-cert").value.trim();
          params.clientKey = $("a-key").value.trim();
        }
      } else if (specName === "Basic Authentication") {
        params.username = text("a-username");
        params.password = $("a-password").value;
      }
      const ca = $("a-ca").value.trim();
      if (ca) params.caCertificate = ca;
      return { specName, params };
    }

    function readRequest() {
      const headers = {};
      form.querySelectorAll("input[data-header]").forEach((input) => (headers[input.dataset.header] = input.value.trim()));
      Object.assign(headers, pairs.headers.read());
      const body = $("r-body").value;
      return {
        method: $("r-method").value,
        url: $("r-url").value.trim(),
        headers,
        connectionTimeoutMs: Number($("r-connect").value),
        readTimeoutMs: Number($("r-read").value),
        body: body.trim() ? body : null,
      };
    }

    function connectionBody() {
      return {
        name: $("d-name").value.trim(),
        description: $("d-description").value.trim(),
        icon: iconSelect.value,
        connectionSpec: { id: root.dataset.spec, version: "1.0" },
        auth: readAuth(),
      };
    }

    /* Early checks of what is obviously missing; everything else is the API's to say. */
    function missing(step) {
      const errors = [];
      const need = (id, path) => {
        if (!$(id).value.trim()) errors.push({ path, message: "is required" });
      };
      if (step === "name") need("d-name", "name");
      if (step === "auth") {
        const type = authType();
        if (type === "OAuth 2 Client Credentials") {
          need("a-token-url", "auth.params.accessTokenUrl");
          const url = $("a-token-url").value.trim();
          if (url && !/^https:\/\//i.test(url)) errors.push({ path: "auth.params.accessTokenUrl", message: "must be an HTTPS URL (https://…): the token travels over a secure connection" });
          need("a-client-id", "auth.params.clientId");
          need("a-client-secret", "auth.params.clientSecret");
          if ($("a-mtls").checked) {
            need("a-cert", "auth.params.clientCertificate");
            need("a-key", "auth.params.clientKey");
          }
        } else if (type === "Basic Authentication") {
          need("a-username", "auth.params.username");
          need("a-password", "auth.params.password");
        }
      }
      if (step === "request") {
        need("r-url", "params.url");
        const url = $("r-url").value.trim();
        if (url && !/^https?:\/\//i.test(url)) errors.push({ path: "params.url", message: "must start with https:// (or http://) followed by the host" });
      }
      return errors;
    }

    function stepOf(path) {
      if (/^(name|description|icon)(\.|$)/.test(path)) return "name";
      if (/^auth(\.|$)/.test(path)) return "auth";
      if (/^(params|variables)(\.|$)/.test(path)) return "request";
      return null;
    }

    const steps = ["name", "auth", "request", "review"];
    let wizard = null;

    function goTo(step) {
      if (!wizard || wizard.current() === step) return;
      wizard.show(step);
      shown(step);
    }

    function problem(data) {
      pairs.headers.refreshPaths();
      pairs.extraHeaders.refreshPaths();
      pairs.formItems.refreshPaths();
      const errors = (data && data.report && data.report.errors) || [];
      const step = errors.map((e) => stepOf(e.path || "")).find(Boolean);
      if (step) goTo(step);
      showProblem(form, data);
    }

    function shown(step) {
      if (step === "review") renderReview();
      const saveButton = $("d-save");
      if (saveButton) saveButton.hidden = step !== "review";
    }

    wizard = window.HW.wizard(form, {
      onStep: (step) => {
        window.HW.clearErrors(form);
        const errors = missing(step);
        if (errors.length) {
          problem(problemOf(errors));
          return false;
        }
        return true;
      },
      onShow: shown,
    });

    tester(form.querySelector("[data-tester]"), {
      scope: form,
      request: readRequest,
      run: (variables) => api("POST", `${FS}/targetConnections/test`, { auth: readAuth(), params: readRequest(), variables }),
      problem,
    });

    function change(step, what) {
      return el("button", { type: "button", class: "link", text: "Change", "aria-label": `Change ${what}`, onclick: () => goTo(step) });
    }

    function renderReview() {
      const body = connectionBody();
      const request = readRequest();
      $("review").replaceChildren(
        el(
          "div",
          { class: "review-part" },
          el("h3", {}, "Name & describe ", change("name", "name and description")),
          el("div", { class: "named" }, iconBox(body.icon, 30), el("div", {}, el("strong", { text: body.name }), el("p", { class: "muted", text: body.description || "No description." })))
        ),
        el("div", { class: "review-part" }, el("h3", {}, "Authenticate ", change("auth", "authentication")), withCa(authFacts({ specName: body.auth.specName, params: maskSecrets(body.auth.params) }), body.auth.params)),
        el("div", { class: "review-part" }, el("h3", {}, "Configure request ", change("request", "request")), requestFacts(request))
      );
    }

    /* The facts of the authentication, and whether the destination brings its own CA certificates. */
    function withCa(facts, params) {
      if (params.caCertificate) {
        const count = (params.caCertificate.match(/-----BEGIN CERTIFICATE-----/g) || []).length;
        facts.append(el("dt", { text: "Trusted CA certificates" }), el("dd", { text: `${count} certificate${count === 1 ? "" : "s"} (PEM)` }));
      }
      return facts;
    }

    function maskSecrets(params) {
      const out = Object.assign({}, params);
      for (const key of ["clientSecret", "password", "clientKey"]) if (out[key]) out[key] = "********";
      return out;
    }

    const save = $("d-save");
    form.querySelector(".wizard-buttons").append(save);
    save.hidden = true;
    save.addEventListener("click", async () => {
      window.HW.clearErrors(form);
      for (const step of steps) {
        const errors = missing(step);
        if (errors.length) return problem(problemOf(errors));
      }
      save.disabled = true;
      save.textContent = "Saving…";
      const done = () => {
        save.disabled = false;
        save.textContent = "Save";
      };
      const body = connectionBody();
      // Saved as a draft first, published once its request is stored: an interrupted Save leaves a draft
      // (listed as such, never activated), not a destination without its request.
      const created = await api("POST", `${FS}/connections?mode=draft`, body);
      if (!created.ok) {
        done();
        if (created.status === 409) return problem(problemOf([{ path: "name", message: "is already used by another destination in this sandbox: choose another name" }]));
        return problem(created.data);
      }
      const id = created.data.id;
      const target = await api("POST", `${FS}/targetConnections`, {
        name: `${body.name} request`,
        baseConnectionId: id,
        connectionSpec: { id: root.dataset.spec, version: "1.0" },
        params: readRequest(),
      });
      if (!target.ok) {
        // The request was refused: take the draft back so that Save can be pressed again.
        await api("DELETE", `${FS}/connections/${encodeURIComponent(id)}`);
        done();
        return problem(target.data);
      }
      const published = await api("POST", `${FS}/connections/${encodeURIComponent(id)}/action?op=publish`);
      if (!published.ok) {
        done();
        return problem(published.data);
      }
      location.assign(`/console/destinations/${encodeURIComponent(id)}?saved=1`);
    });
  }

  pages.new = initNew;
})();
