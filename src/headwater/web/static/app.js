/* Headwater console: the shared client. Every page calls the same HTTP API as any other client, with
 * the session cookie, the CSRF header from the page's <meta>, and the sandbox picked in the header.
 *
 *   HW.api(method, path, body?, {headers, etag}) -> {ok, status, data, etag}
 *   HW.listAll(path) -> {ok, items}  every page of a Flow Service list (follows _links.next)
 *   HW.showErrors(scope, problem)   API errors in words next to the fields they name (data-path)
 *   HW.el(tag, attrs, ...children)  DOM builder (text is never parsed as HTML)
 *   HW.schemaForm(container, schema, prefix, values) -> {read(), fields}  inputs from a JSON Schema
 *   HW.wizard(root, {onStep})       steps: <section data-step="name" data-title="..."> with Next/Back
 *   HW.table(columns, rows)         a <table>; columns: [{label, value(row) -> node|text}]
 *   HW.toast(text | problem), HW.copyButton(text), HW.formValues(form)
 *   HW.role(), HW.can(permission), HW.missing(permission)  the signed-in person's role in the sandbox
 *   HW.when(moment), HW.time(moment), HW.axisLabels(moments)  dates in one format (the browser's locale)
 *   HW.runState(run)                "receiving" for an open hourly streaming run, else run.state
 *
 * Roles: <body data-access> holds the person's role and permissions in each sandbox (web/app.py). The
 * header shows the role in the picked sandbox; an element with data-needs="permission" (a button, a link
 * that starts a write) is marked aria-disabled, with a tooltip naming the missing permission, when the
 * role lacks it, and clicks on it do nothing but say why. An element with data-needs-note="permission"
 * is shown with those words (a wizard reached by its URL). The API checks every call regardless: a 403
 * names the permission, and showErrors shows it.
 */
(function () {
  "use strict";

  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const SANDBOX_KEY = "hw.sandbox";

  function sandbox() {
    return localStorage.getItem(SANDBOX_KEY) || "prod";
  }

  async function api(method, path, body, options) {
    const opts = options || {};
    const headers = Object.assign(
      {
        "X-CSRF-Token": meta("csrf-token"),
        "x-sandbox-name": sandbox(),
        Accept: "application/json",
      },
      opts.headers || {}
    );
    if (opts.etag) headers["If-Match"] = opts.etag;
    let payload;
    if (body !== undefined && body !== null) {
      if (body instanceof FormData || typeof body === "string") {
        payload = body;
      } else {
        headers["Content-Type"] = "application/json";
        payload = JSON.stringify(body);
      }
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    } catch (err) {
      return { ok: false, status: 0, data: { title: "Network error", detail: "The server did not answer: " + err } };
    }
    if (response.status === 401 && !opts.noRedirect) {
      location.href = "/console/login?next=" + encodeURIComponent(location.pathname + location.search);
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = text;
    }
    return { ok: response.ok, status: response.status, data, etag: response.headers.get("ETag") };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function problemText(problem) {
    if (typeof problem === "string") return problem;
    return (problem && (problem.detail || problem.title)) || "Request failed";
  }

  /* The permission a 403 of the role check names (report.code HW-1403-403), else null. */
  function refusedPermission(problem) {
    const report = (problem && problem.report) || {};
    return problem && problem.status === 403 && report.permission ? report.permission : null;
  }

  /* Errors: report.errors[{path, message}] go next to the element whose data-path is that path (or the
   * longest prefix of it); anything unmatched goes to the scope's [data-errors] box (or the page's). */
  function clearErrors(scope) {
    const root = scope || document;
    root.querySelectorAll(".field-error.generated").forEach((n) => n.remove());
    root.querySelectorAll("[aria-invalid]").forEach((n) => {
      n.removeAttribute("aria-invalid");
      n.hwErrors = [];
      const kept = (n.getAttribute("aria-describedby") || "").split(" ").filter((d) => d && !d.startsWith("err-"));
      if (kept.length) n.setAttribute("aria-describedby", kept.join(" "));
      else n.removeAttribute("aria-describedby");
    });
    root.querySelectorAll("[data-errors]").forEach((n) => {
      n.hidden = true;
      n.textContent = "";
    });
  }

  function fieldFor(root, path) {
    let candidate = path;
    while (candidate) {
      const found = root.querySelector(`[data-path="${CSS.escape(candidate)}"]`);
      if (found) return found;
      const cut = Math.max(candidate.lastIndexOf("."), candidate.lastIndexOf("["));
      candidate = cut > 0 ? candidate.slice(0, cut) : "";
    }
    return null;
  }

  function showErrors(scope, problem) {
    const root = scope || document;
    clearErrors(root);
    const errors = (problem && problem.report && problem.report.errors) || [];
    const general = [];
    let first = null;
    for (const error of errors) {
      const field = fieldFor(root, error.path || "");
      if (!field) {
        general.push((error.path ? error.path + ": " : "") + error.message);
        continue;
      }
      const id = "err-" + Math.random().toString(36).slice(2);
      const note = el("p", { class: "field-error generated", role: "alert", id, text: error.message });
      field.setAttribute("aria-invalid", "true");
      const described = (field.getAttribute("aria-describedby") || "").split(" ").filter((d) => d && !d.startsWith("err-"));
      if (!field.hwErrors) field.hwErrors = [];
      field.setAttribute("aria-describedby", [...described, ...field.hwErrors.map((n) => n.id), id].join(" "));
      const anchor = field.hwErrors.length ? field.hwErrors[field.hwErrors.length - 1] : field.closest(".field") || field;
      anchor.after(note); // several errors of one field keep the API's order
      field.hwErrors.push(note);
      first = first || field;
    }
    if (!errors.length && problem) {
      general.push(problemText(problem));
      if (refusedPermission(problem)) general.push("Ask an organization admin for a role that has it.");
    }
    if (general.length) {
      const box = root.querySelector("[data-errors]") || document.querySelector("[data-errors]");
      if (box) {
        box.hidden = false;
        box.replaceChildren(...general.map((g) => el("p", { text: g })));
        first = first || box;
      }
    }
    if (first && first.focus) first.focus();
  }

  /* Inputs from a JSON Schema's properties. Secrets (format password) are password inputs; enums are
   * selects; booleans checkboxes; integers numbers; objects of strings key/value rows; PEM text areas. */
  function schemaForm(container, schema, prefix, values) {
    const props = (schema && schema.properties) || {};
    const required = new Set((schema && schema.required) || []);
    const current = values || {};
    const fields = {};
    container.replaceChildren();
    for (const [name, prop] of Object.entries(props)) {
      const path = (prefix ? prefix + "." : "") + name;
      const id = "f-" + path.replace(/[^A-Za-z0-9_-]/g, "-");
      const label = el("label", { for: id }, prop.title || name, required.has(name) ? el("span", { class: "req", "aria-hidden": "true", text: " *" }) : null);
      const help = prop.description ? el("p", { class: "help", id: id + "-help", text: prop.description }) : null;
      let input;
      const value = current[name] !== undefined ? current[name] : prop.default;
      if (prop.enum) {
        input = el("select", { id, name: path }, prop.enum.map((v) => el("option", { value: v, selected: v === value, text: v })));
      } else if (prop.type === "boolean") {
        input = el("input", { id, name: path, type: "checkbox", checked: value === true });
      } else if (prop.type === "integer" || prop.type === "number") {
        input = el("input", { id, name: path, type: "number", value: value ?? "" });
      } else if (prop.type === "object") {
        input = keyValue(id, path, value || {});
      } else if (prop.contentMediaType === "application/x-pem-file") {
        input = el("textarea", { id, name: path, rows: 4, spellcheck: "false" });
        input.value = value || "";
      } else {
        const secret = prop.format === "password";
        input = el("input", { id, name: path, type: secret ? "password" : "text", autocomplete: secret ? "new-password" : "off", value: value ?? "" });
      }
      input.dataset.path = path;
      if (help) input.setAttribute("aria-describedby", help.id);
      if (required.has(name)) input.setAttribute("aria-required", "true");
      fields[name] = { input, prop };
      container.append(el("div", { class: "field" + (prop.type === "boolean" ? " check" : "") }, label, input, help));
    }
    function read() {
      const out = {};
      for (const [name, { input, prop }] of Object.entries(fields)) {
        if (prop.type === "boolean") out[name] = input.checked;
        else if (prop.type === "object") {
          const obj = input.readPairs();
          if (Object.keys(obj).length) out[name] = obj;
        } else if (prop.type === "integer" || prop.type === "number") {
          if (input.value !== "") out[name] = Number(input.value);
        } else if (input.value !== "") out[name] = input.value;
      }
      return out;
    }
    return { read, fields };
  }

  function keyValue(id, path, value) {
    const rows = el("div", { class: "kv-rows" });
    const wrap = el("div", { class: "kv", id, role: "group" }, rows);
    function addRow(k, v) {
      const row = el(
        "div",
        { class: "kv-row" },
        el("input", { type: "text", "aria-label": "Key", value: k || "", class: "kv-key" }),
        el("input", { type: "text", "aria-label": "Value", value: v || "", class: "kv-value" }),
        el("button", { type: "button", class: "link", "aria-label": "Remove", text: "Remove", onclick: () => row.remove() })
      );
      rows.append(row);
    }
    for (const [k, v] of Object.entries(value)) addRow(k, v);
    wrap.append(el("button", { type: "button", class: "secondary small", text: "Add", onclick: () => addRow("", "") }));
    wrap.readPairs = () => {
      const out = {};
      rows.querySelectorAll(".kv-row").forEach((row) => {
        const k = row.querySelector(".kv-key").value.trim();
        if (k) out[k] = row.querySelector(".kv-value").value;
      });
      return out;
    };
    wrap.addRow = addRow;
    return wrap;
  }

  /* A wizard over <section data-step> children of root, with a step list and Next/Back buttons.
   * onStep(name, direction) may return false (or a promise of false) to stay on the current step; Next is
   * disabled while it runs. onShow(name) runs after a step is shown. Steps already passed can be reopened
   * from the step list (document 003: "click the relevant tab at the top of the page"). */
  function wizard(root, options) {
    const opts = options || {};
    const steps = Array.from(root.querySelectorAll(":scope > section[data-step]"));
    const list = el("ol", { class: "steps" });
    steps.forEach((s, i) => {
      const item = el("li", { dataset: { index: i }, text: s.dataset.title || s.dataset.step });
      const reopen = () => {
        if (i < index) display(i);
      };
      item.addEventListener("click", reopen);
      item.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          reopen();
        }
      });
      list.append(item);
    });
    root.prepend(list);
    let index = 0;
    const back = el("button", { type: "button", class: "secondary", text: "Back" });
    const next = el("button", { type: "button", class: "primary", text: "Next" });
    root.append(el("div", { class: "wizard-buttons" }, back, next));
    function show(i) {
      index = i;
      steps.forEach((s, j) => (s.hidden = j !== i));
      list.querySelectorAll("li").forEach((li, j) => {
        li.classList.toggle("current", j === i);
        li.classList.toggle("done", j < i);
        if (j === i) li.setAttribute("aria-current", "step");
        else li.removeAttribute("aria-current");
        if (j < i) {
          li.setAttribute("role", "button");
          li.setAttribute("tabindex", "0");
        } else {
          li.removeAttribute("role");
          li.removeAttribute("tabindex");
        }
      });
      back.hidden = i === 0;
      next.hidden = i === steps.length - 1;
      const first = Array.from(steps[i].querySelectorAll("input, select, textarea, button")).find(
        (n) => n.offsetParent !== null && !n.disabled
      );
      if (first) first.focus();
    }
    function display(i) {
      show(i);
      if (opts.onShow) opts.onShow(steps[index].dataset.step);
    }
    async function go(delta) {
      const leaving = steps[index].dataset.step;
      if (opts.onStep && delta > 0) {
        next.disabled = true;
        try {
          const okay = await opts.onStep(leaving, delta);
          if (okay === false) return;
        } finally {
          next.disabled = false;
        }
      }
      display(Math.max(0, Math.min(steps.length - 1, index + delta)));
    }
    back.addEventListener("click", () => go(-1));
    next.addEventListener("click", () => go(1));
    show(0);
    return {
      go,
      show: (name) => display(steps.findIndex((s) => s.dataset.step === name)),
      current: () => steps[index].dataset.step,
      buttons: root.querySelector(".wizard-buttons"),
    };
  }

  /* Every item of a Flow Service list, following _links.next: {ok, items} (or {ok: false, data, items}). */
  async function listAll(path) {
    const items = [];
    let next = path;
    while (next) {
      const result = await api("GET", next);
      if (!result.ok) return { ok: false, data: result.data, items };
      items.push(...(result.data.items || []));
      next = result.data._links && result.data._links.next ? result.data._links.next.href : null;
    }
    return { ok: true, items };
  }

  function table(columns, rows, options) {
    const opts = options || {};
    const head = el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c.label }))));
    const body = el("tbody", {});
    for (const row of rows) {
      body.append(el("tr", {}, columns.map((c) => el("td", {}, c.value(row)))));
    }
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length, class: "empty", text: opts.empty || "Nothing yet." })));
    return el("table", { class: "grid" }, opts.caption ? el("caption", { text: opts.caption }) : null, head, body);
  }

  function toast(text) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = typeof text === "string" ? text : problemText(text);
    box.classList.add("shown");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => box.classList.remove("shown"), 4000);
  }

  function copyButton(text, label, accessibleName) {
    return el("button", {
      type: "button",
      class: "secondary small",
      text: label || "Copy",
      "aria-label": accessibleName,
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(text);
          toast("Copied");
        } catch (_) {
          toast("Copy it from the field: " + text);
        }
      },
    });
  }

  function formValues(form) {
    const out = {};
    new FormData(form).forEach((v, k) => (out[k] = v));
    return out;
  }

  /* --- dates and times: one format everywhere, the browser's locale (24 h where the locale is) --- */

  const FORMATS = {
    when: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }),
    seconds: new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" }),
    time: new Intl.DateTimeFormat(undefined, { timeStyle: "short" }),
    timeSeconds: new Intl.DateTimeFormat(undefined, { timeStyle: "medium" }),
    dayTime: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit" }),
    dayTimeSeconds: new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "numeric", minute: "2-digit", second: "2-digit" }),
  };

  /* A moment as a Date: epoch ms, or an ISO string (AEP's "+0000" offsets too); null if it is none. */
  function moment(value) {
    if (value === null || value === undefined || value === "") return null;
    const d = new Date(typeof value === "number" ? value : Date.parse(String(value).replace(/([+-]\d\d)(\d\d)$/, "$1:$2")));
    return isNaN(d) ? null : d;
  }

  /* A date and time (epoch ms or ISO 8601) in the browser's locale; {seconds: true} adds the seconds. */
  function when(value, options) {
    if (!value) return "";
    const d = moment(value);
    if (!d) return String(value);
    return (options && options.seconds ? FORMATS.seconds : FORMATS.when).format(d);
  }

  /* A time of day alone (the end of a window whose start HW.when shows). */
  function time(value, options) {
    const d = moment(value);
    if (!d) return value ? String(value) : "";
    return (options && options.seconds ? FORMATS.timeSeconds : FORMATS.time).format(d);
  }

  /* Labels for a chart's time axis, one per moment (epoch ms, oldest first), each different from its
   * neighbours: the time of day when every moment is in one day, else day and time; with seconds when
   * minutes alone would repeat a label. A moment that still repeats its predecessor's label gets "". */
  function axisLabels(moments) {
    const dates = moments.map((m) => moment(m));
    const days = new Set(dates.filter(Boolean).map((d) => d.toDateString()));
    const choices = days.size > 1 ? [FORMATS.dayTime, FORMATS.dayTimeSeconds] : [FORMATS.time, FORMATS.timeSeconds];
    const render = (format) => dates.map((d) => (d ? format.format(d) : ""));
    const repeats = (labels) => labels.some((label, i) => i > 0 && label && label === labels[i - 1]);
    let labels = render(choices[0]);
    if (repeats(labels)) labels = render(choices[1]);
    return labels.map((label, i) => (i > 0 && label === labels[i - 1] ? "" : label));
  }

  /* --- runs ------------------------------------------------------------------------------------ */

  /* A run's state as the console shows it: an hourly streaming run whose hour is still being counted is
   * "receiving" (the API says inProgress, as AEP's does, for the whole hour). */
  function runState(run) {
    if (!run) return "";
    const completed = ((run.metrics || {}).durationSummary || {}).completedAtUTC;
    if (run.streaming && run.state === "inProgress" && !completed) return "receiving";
    return run.state;
  }

  /* --- roles ----------------------------------------------------------------------------------- */

  const ACCESS = (() => {
    try {
      return JSON.parse(document.body.dataset.access || "null");
    } catch (_) {
      return null;
    }
  })();

  function here() {
    return ACCESS && ACCESS.sandboxes ? ACCESS.sandboxes[sandbox()] || null : null;
  }

  function role() {
    const found = here();
    return found ? found.role : "";
  }

  /* True when the role in the picked sandbox has the permission (and when the page does not say: the
   * API decides). */
  function can(permission) {
    const found = here();
    return !found || found.permissions.includes(permission);
  }

  /* Why a write cannot be done, in words: the tooltip of a disabled button. */
  function missing(permission) {
    if (ACCESS && (ACCESS.orgPermissions || []).includes(permission)) {
      return `Needs the permission '${permission}', which only organization admins have.`;
    }
    return `Needs the permission '${permission}', which the ${role()} role does not have in sandbox '${sandbox()}'.`;
  }

  function guard(node) {
    const permission = node.dataset.needs;
    if (!permission) return;
    if (can(permission)) {
      if (node.dataset.forbidden !== undefined) {
        node.removeAttribute("aria-disabled");
        node.removeAttribute("title");
        delete node.dataset.forbidden;
      }
      return;
    }
    node.setAttribute("aria-disabled", "true");
    node.title = missing(permission);
    node.dataset.forbidden = "";
  }

  function note(node) {
    const permission = node.dataset.needsNote;
    node.hidden = can(permission);
    if (!node.hidden) {
      node.textContent = `Your role in sandbox '${sandbox()}' is ${role()}, which does not have the permission '${permission}': saving here will be refused.`;
    }
  }

  function applyAccess(root) {
    if (root.matches && root.matches("[data-needs]")) guard(root);
    if (root.matches && root.matches("[data-needs-note]")) note(root);
    if (!root.querySelectorAll) return;
    root.querySelectorAll("[data-needs]").forEach(guard);
    root.querySelectorAll("[data-needs-note]").forEach(note);
  }

  function initAccess() {
    if (!ACCESS || !ACCESS.sandboxes) return;
    const names = Object.keys(ACCESS.sandboxes);
    if (names.length && !names.includes(sandbox())) localStorage.setItem(SANDBOX_KEY, names[0]);
    const badge = document.getElementById("role-badge");
    if (badge && role()) {
      badge.replaceChildren(el("span", { class: "visually-hidden", text: `Your role in ${sandbox()}: ` }), role());
      badge.title = `Your role in sandbox '${sandbox()}'` + (ACCESS.admin ? " (you are an organization admin)" : "");
      badge.hidden = false;
    }
    applyAccess(document.body);
    // Pages build most of their buttons after API calls: mark those as they appear.
    new MutationObserver((changes) => {
      for (const change of changes) {
        if (change.type === "attributes") applyAccess(change.target);
        else change.addedNodes.forEach((n) => n.nodeType === 1 && applyAccess(n));
      }
    }).observe(document.body, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-needs"] });
    // A click on a refused control (or Enter in its form) does nothing but say why. Capturing on the
    // document runs before the page's own listeners and before a link is followed or a form submitted.
    document.addEventListener(
      "click",
      (event) => {
        const refused = event.target.closest && event.target.closest('[data-needs][aria-disabled="true"]');
        if (!refused) return;
        event.preventDefault();
        event.stopImmediatePropagation();
        toast(refused.title);
      },
      true
    );
  }

  async function initSandboxPicker() {
    const picker = document.getElementById("sandbox-picker");
    if (!picker) return;
    const result = await api("GET", "/data/foundation/sandbox-management/sandboxes");
    const names = result.ok ? result.data.sandboxes.map((s) => s.name) : ["prod"];
    if (!names.includes(sandbox())) localStorage.setItem(SANDBOX_KEY, names[0] || "prod");
    picker.replaceChildren(...names.map((n) => el("option", { value: n, selected: n === sandbox(), text: n })));
    picker.addEventListener("change", () => {
      localStorage.setItem(SANDBOX_KEY, picker.value);
      location.reload();
    });
  }

  window.HW = { api, listAll, el, showErrors, clearErrors, fieldFor, schemaForm, keyValue, wizard, table, toast, copyButton, formValues, when, time, axisLabels, runState, sandbox, meta, role, can, missing, problemText, refusedPermission };
  initAccess(); // deferred: the document is parsed, and the pages' scripts have not run yet
  document.addEventListener("DOMContentLoaded", initSandboxPicker);
})();
