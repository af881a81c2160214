/* Data 360 external client apps, through the same API as every client (shared pieces in data360.js).
 *
 *   apps        GET  /data/core/identity/externalClientApps
 *   app-new     POST /data/core/identity/externalClientApps (the consumer key, and once the secret)
 *   app         GET/PATCH /data/core/identity/externalClientApps/{id} (settings; policies with If-Match)
 */
(function () {
  "use strict";

  const { api, el } = window.HW;
  const { CONSOLE, problemOf, showErrors, fieldError, busy, setHeading, copyable, facts, yes, link, VIEWS } = window.HWData360;
  const APPS = "/data/core/identity/externalClientApps";
  const USERS = "/data/core/identity/users";

  async function appsView() {
    const box = document.getElementById("app-list");
    const result = await api("GET", APPS + "?orderby=-createdAt");
    busy(box, false);
    if (!result.ok) {
      box.replaceChildren();
      return HW.showErrors(document, problemOf(result));
    }
    const rows = result.data.items || [];
    box.replaceChildren(
      HW.table(
        [
          { label: "Name", value: (a) => link(`${CONSOLE}/apps/${encodeURIComponent(a.id)}`, a.name) },
          { label: "Consumer key", value: (a) => el("code", { class: "ellipsis", title: a.consumerKey, text: a.consumerKey }) },
          { label: "OAuth scopes", value: (a) => (a.scopes || []).join(", ") },
          { label: "JWT bearer flow", value: (a) => (a.jwtBearerFlowEnabled ? "Enabled" : "Off") },
          { label: "Permitted users", value: (a) => a.permittedUsers },
          { label: "Created", value: (a) => HW.when(a.createdAt) },
        ],
        rows,
        { caption: "External client apps", empty: "No external client apps yet. Create one with New external client app." }
      )
    );
  }

  /** The approved-users checkboxes (shown only with the admin-approved policy). */
  async function approvedUsers(root, chosen) {
    const fieldset = document.getElementById("app-approved");
    const list = document.getElementById("app-approved-users");
    const permitted = document.getElementById("app-permitted");
    const sync = () => (fieldset.hidden = permitted.value !== root.dataset.adminApproved);
    if (!permitted.dataset.synced) permitted.addEventListener("change", sync);
    permitted.dataset.synced = "yes";
    sync();
    const result = await api("GET", USERS);
    const users = result.ok ? result.data.items || [] : [];
    list.replaceChildren(
      ...users.map((u, i) =>
        el(
          "div",
          { class: "check-row" },
          el("input", { type: "checkbox", id: "approved-" + i, value: u.username, checked: (chosen || []).includes(u.username) }),
          el("label", { for: "approved-" + i, text: u.username + (u.enabled === false ? " (disabled)" : "") })
        )
      )
    );
    if (!users.length) list.replaceChildren(el("p", { class: "muted", text: "No users yet (headwater users create)." }));
    return () => Array.from(list.querySelectorAll("input:checked")).map((i) => i.value);
  }

  /** The policy fields of _policies.html beyond the selects: trusted IP ranges as rows, the session timeout,
   * and the refresh token validity (shown only with a timed policy). set(app) fills them in; read() gives
   * the app's fields. Rows are numbered as sent (blank rows are left out), so the API's ipRanges[1].end
   * lands next to the second range's end. */
  function policyFields(form) {
    const rows = document.getElementById("app-ip-range-rows");
    const refresh = form.elements.refreshTokenPolicy;
    const validity = document.getElementById("app-refresh-validity");
    const session = form.elements.sessionTimeoutSeconds;
    const syncValidity = () => (validity.hidden = !(refresh.selectedOptions[0] && refresh.selectedOptions[0].dataset.timed));
    const input = (cls, label, value, placeholder) =>
      el("input", { type: "text", class: cls, "aria-label": label, value: value || "", placeholder, spellcheck: "false", autocomplete: "off" });

    function numbered() {
      const all = Array.from(rows.querySelectorAll(":scope > .ip-range")); // errors sit between the rows
      const filled = all.filter((row) => Array.from(row.querySelectorAll("input")).some((i) => i.value.trim()));
      all.forEach((row, n) => {
        const index = filled.indexOf(row);
        for (const [cls, what] of [["ip-start", "Start IP address"], ["ip-end", "End IP address"], ["ip-description", "Description"]]) {
          const field = row.querySelector("." + cls);
          field.setAttribute("aria-label", `${what} of range ${n + 1}`);
          field.dataset.says = `${what} of range ${n + 1}`;
          if (index >= 0) field.dataset.path = `ipRanges[${index}].${cls.slice(3)}`;
          else delete field.dataset.path;
        }
      });
      return filled;
    }

    function addRange(range, focus) {
      const r = range || {};
      // a .field of its own, so that an error of this range is shown right under it
      const row = el(
        "div",
        { class: "field ip-range" },
        el(
          "div",
          { class: "ip-range-row" },
          input("ip-start", "Start IP address", r.start, "203.0.113.0"),
          input("ip-end", "End IP address", r.end, "203.0.113.255"),
          input("ip-description", "Description", r.description, "Description (optional)"),
          el("button", { type: "button", class: "link", text: "Remove", onclick: () => { row.remove(); numbered(); } })
        )
      );
      rows.append(row);
      numbered();
      if (focus) row.querySelector(".ip-start").focus();
    }

    if (!form.dataset.policiesReady) {
      document.getElementById("app-ip-range-add").addEventListener("click", () => addRange(null, true));
      refresh.addEventListener("change", syncValidity);
      form.dataset.policiesReady = "yes";
    }
    syncValidity();

    function set(app) {
      rows.replaceChildren();
      (app.ipRanges || []).forEach((range) => addRange(range));
      const seconds = String(app.sessionTimeoutSeconds);
      if (!Array.from(session.options).some((o) => o.value === seconds)) session.append(el("option", { value: seconds, text: sessionText(app.sessionTimeoutSeconds) }));
      session.value = seconds;
      refresh.value = app.refreshTokenPolicy;
      if (app.refreshTokenValidity) {
        form.elements.refreshTokenValidityValue.value = app.refreshTokenValidity.value;
        form.elements.refreshTokenValidityUnit.value = app.refreshTokenValidity.unit;
      }
      syncValidity();
    }

    function read() {
      const ipRanges = numbered().map((row) => {
        const range = { start: row.querySelector(".ip-start").value.trim(), end: row.querySelector(".ip-end").value.trim() };
        const description = row.querySelector(".ip-description").value.trim();
        if (description) range.description = description;
        return range;
      });
      const amount = form.elements.refreshTokenValidityValue.value;
      return {
        ipRanges,
        sessionTimeoutSeconds: Number(session.value),
        refreshTokenPolicy: refresh.value,
        refreshTokenValidity: validity.hidden ? null : { value: amount === "" ? null : Number(amount), unit: form.elements.refreshTokenValidityUnit.value },
      };
    }
    return { set, read };
  }

  function sessionText(seconds) {
    const option = document.querySelector(`#app-session option[value="${seconds}"]`);
    if (option) return option.textContent;
    if (seconds % 3600 === 0) return seconds === 3600 ? "1 hour" : `${seconds / 3600} hours`;
    if (seconds % 60 === 0) return `${seconds / 60} minutes`;
    return `${seconds} seconds`;
  }

  function rangesText(ranges) {
    if (!ranges || !ranges.length) return "None (no IP restriction)";
    return el("ul", { class: "ranges" }, ranges.map((r) => el("li", {}, el("code", { text: r.start === r.end ? r.start : `${r.start} – ${r.end}` }), r.description ? " " + r.description : "")));
  }

  function refreshText(app) {
    const v = app.refreshTokenValidity;
    return v ? `${app.refreshTokenPolicy} ${v.value} ${v.unit}` : app.refreshTokenPolicy;
  }

  async function appNewView(root) {
    const form = document.getElementById("app-form");
    const fileInput = document.getElementById("app-cert-file");
    const pem = document.getElementById("app-cert");
    // The form is on the page while the users load: its handlers come first (a Create without them
    // submits the form natively, the typed fields in the address; a certificate file chosen is not read).
    const approved = approvedUsers(root, []);
    const policies = policyFields(form);

    fileInput.addEventListener("change", async () => {
      HW.clearErrors(form);
      const file = fileInput.files[0];
      if (!file) return;
      if (file.size > 64 * 1024) return fieldError(form, "certificate", `${file.name} is ${file.size} bytes: a certificate file is a few KB of PEM text.`);
      const text = await file.text();
      if (!text.includes("-----BEGIN CERTIFICATE-----")) {
        return fieldError(form, "certificate", `${file.name} is not a PEM certificate: choose the .crt file whose text starts with -----BEGIN CERTIFICATE-----.`);
      }
      pem.value = text;
      HW.toast(`Certificate read from ${file.name}`);
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {
        name: form.elements.name.value.trim(),
        callbackUrl: form.elements.callbackUrl.value.trim(),
        scopes: Array.from(form.querySelectorAll('input[name="scopes"]:checked')).flatMap((c) => c.value.split(" ")),
        jwtBearerFlowEnabled: form.elements.jwtBearerFlowEnabled.checked,
        pkceRequired: form.elements.pkceRequired.checked,
        clientCredentialsFlowEnabled: form.elements.clientCredentialsFlowEnabled.checked,
        usernamePasswordFlowEnabled: form.elements.usernamePasswordFlowEnabled.checked,
        permittedUsers: form.elements.permittedUsers.value,
        ipRelaxation: form.elements.ipRelaxation.value,
        ...policies.read(),
      };
      const description = form.elements.description.value.trim();
      const email = form.elements.contactEmail.value.trim();
      if (description) body.description = description;
      if (email) body.contactEmail = email;
      if (pem.value.trim()) body.certificate = pem.value;
      const runAs = form.elements.clientCredentialsUser.value.trim();
      if (runAs) body.clientCredentialsUser = runAs;
      const submit = form.querySelector('button[type="submit"]');
      submit.disabled = true;
      if (body.permittedUsers === root.dataset.adminApproved) body.approvedUsers = (await approved)();
      const result = await api("POST", APPS, body);
      submit.disabled = false;
      if (!result.ok) return showErrors(form, problemOf(result));
      showCreated(result.data);
      form.hidden = true;
      // The address is the saved app's (a reload shows its settings; the secret is not shown again).
      history.replaceState(null, "", `${CONSOLE}/apps/${encodeURIComponent(result.data.id)}`);
    });
    await approved;
  }

  function showCreated(app) {
    const section = document.getElementById("app-created");
    document.getElementById("app-created-body").replaceChildren(
      el("p", { text: "Note the consumer key and the callback URL: the JWT bearer flow signs in with the consumer key as issuer." }),
      facts([
        ["Name", app.name],
        ["Consumer key", copyable(app.consumerKey, "consumer key")],
        ["Consumer secret", el("span", {}, copyable(app.consumerSecret, "consumer secret"), el("span", { class: "warning inline-warning", text: "Shown only now: it is masked from here on." }))],
        ["Callback URL", el("code", { text: app.callbackUrl })],
        ["OAuth scopes", (app.scopes || []).join(", ")],
        ["JWT bearer flow", app.jwtBearerFlowEnabled ? "Enabled" : "Off"],
        app.certificateInfo ? ["Certificate", app.certificateInfo.subject] : null,
      ]),
      el("p", {}, link(`${CONSOLE}/apps/${encodeURIComponent(app.id)}`, "Open the app's settings"), " · ", link(`${CONSOLE}/apps`, "All external client apps"))
    );
    section.hidden = false;
    section.focus();
  }

  async function appView(root) {
    const id = root.dataset.appId;
    const settings = document.getElementById("app-settings");
    const policiesView = document.getElementById("app-policies-view");
    const editButton = document.getElementById("app-policies-edit");
    const form = document.getElementById("app-policies");
    let current = null;
    let etag = null;
    let readApproved = () => [];
    const policies = policyFields(form);

    async function load() {
      const result = await api("GET", `${APPS}/${encodeURIComponent(id)}`);
      busy(settings, false);
      if (!result.ok) {
        settings.replaceChildren();
        return HW.showErrors(document, problemOf(result));
      }
      current = result.data.items[0];
      etag = result.etag;
      render();
    }

    function render() {
      const a = current;
      setHeading(a.name);
      const cert = a.certificateInfo;
      settings.replaceChildren(
        facts([
          ["Name", a.name],
          a.description ? ["Description", a.description] : null,
          ["Contact email", a.contactEmail || "—"],
          ["Callback URL", el("code", { text: a.callbackUrl })],
          ["Consumer key", copyable(a.consumerKey, "consumer key")],
          ["Consumer secret", el("span", { class: "muted", text: "Masked: it was shown once, when the app was created." })],
          ["OAuth scopes", (a.scopes || []).join(", ")],
          ["JWT bearer flow", a.jwtBearerFlowEnabled ? "Enabled" : "Off"],
          ["PKCE required", yes(a.pkceRequired)],
          ["Client credentials flow", a.clientCredentialsFlowEnabled ? `Enabled, running as ${a.clientCredentialsUser}` : "Off"],
          ["Username-password flow", a.usernamePasswordFlowEnabled ? "Enabled" : "Off"],
          ["Certificate", cert ? el("span", {}, cert.subject, el("br"), el("span", { class: "muted", text: "Valid until " + HW.when(cert.notValidAfter) })) : "None"],
          cert ? ["SHA-256 fingerprint", el("code", { class: "wrap", text: cert.sha256Fingerprint })] : null,
          ["Created", `${HW.when(a.createdAt)}${a.createdBy ? " by " + a.createdBy : ""}`],
          ["Last modified", `${HW.when(a.updatedAt)}${a.updatedBy ? " by " + a.updatedBy : ""}`],
        ])
      );
      policiesView.replaceChildren(
        facts([
          ["Permitted users", a.permittedUsers],
          a.permittedUsers === root.dataset.adminApproved ? ["Approved users", (a.approvedUsers || []).join(", ") || "None"] : null,
          ["IP relaxation", a.ipRelaxation],
          ["Trusted IP ranges", rangesText(a.ipRanges)],
          ["Session timeout", sessionText(a.sessionTimeoutSeconds)],
          ["Refresh token policy", refreshText(a)],
        ])
      );
      policiesView.hidden = false;
      editButton.hidden = false;
      form.hidden = true;
    }

    editButton.addEventListener("click", async () => {
      form.elements.permittedUsers.value = current.permittedUsers;
      form.elements.ipRelaxation.value = current.ipRelaxation;
      policies.set(current);
      readApproved = await approvedUsers(root, current.approvedUsers);
      HW.clearErrors(form);
      policiesView.hidden = true;
      editButton.hidden = true;
      form.hidden = false;
      form.elements.permittedUsers.focus();
    });
    document.getElementById("app-policies-cancel").addEventListener("click", () => {
      render();
      editButton.focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const permitted = form.elements.permittedUsers.value;
      const ops = [
        { op: "replace", path: "/permittedUsers", value: permitted },
        { op: "replace", path: "/ipRelaxation", value: form.elements.ipRelaxation.value },
        ...Object.entries(policies.read()).map(([name, value]) => ({ op: "replace", path: "/" + name, value })),
      ];
      if (permitted === root.dataset.adminApproved) ops.push({ op: "replace", path: "/approvedUsers", value: readApproved() });
      const result = await api("PATCH", `${APPS}/${encodeURIComponent(id)}`, ops, { etag });
      if (!result.ok) {
        const problem = problemOf(result);
        if (result.status === 412) problem.detail = "Someone changed this app since you opened it. Reload the page to see the change, then edit again.";
        return showErrors(form, problem);
      }
      HW.toast("Policies saved");
      await load();
      editButton.focus();
    });
    await load();
  }

  Object.assign(VIEWS, { apps: appsView, "app-new": appNewView, app: appView });
})();
