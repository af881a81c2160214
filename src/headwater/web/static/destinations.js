/* Destinations (document 003): what the pages share (icons, list paging, field errors, Test Request, the
 * facts of a request and of its authentication) and the start of the page. The pages are in their own files:
 * destinations-pages.js (the list and a saved destination's page: facts, Test Request, Delete) and
 * destinations-wizard.js (the four steps: Name & describe, Authenticate, Configure request with Test Request,
 * Review & save). The activations pages use the icons and list paging too (window.HWDestinations).
 * Everything goes through the Flow Service API with HW.api, like any other client. */
(function () {
  "use strict";

  const FS = "/data/foundation/flowservice";
  const SPRITE = "/console/static/destination-icons.svg";
  const AUTH_LABELS = { "OAuth 2 Client Credentials": "OAuth 2", "Basic Authentication": "Basic", None: "None" };
  const STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Entity", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
  };
  const { api, el } = window.HW;

  /* --- shared pieces --------------------------------------------------------------------------- */

  function icon(name, size) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "dest-icon");
    svg.setAttribute("width", String(size || 22));
    svg.setAttribute("height", String(size || 22));
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    const use = document.createElementNS(ns, "use");
    use.setAttribute("href", SPRITE + "#" + (name || "api"));
    svg.append(use);
    return svg;
  }

  function iconBox(name, size) {
    return el("span", { class: "dest-icon-box", title: name || "api" }, icon(name, size));
  }

  const listAll = HW.listAll;


  /* The ${variables} of a request, in order of first use (URL, header names and values, body). */
  function variablesOf(request) {
    const names = [];
    const texts = [request.url || ""];
    for (const [key, value] of Object.entries(request.headers || {})) texts.push(key, value);
    texts.push(request.body || "");
    for (const text of texts) {
      for (const match of String(text).matchAll(/\$\{([^}]*)\}/g)) {
        const name = match[1].trim();
        if (name && !names.includes(name)) names.push(name);
      }
    }
    return names;
  }

  /* A test value as typed: numbers and true/false are sent as JSON values (a bare ${n} in the body is a
   * number), everything else as text. */
  function testValue(text) {
    if (/^-?(0|[1-9]\d{0,14})(\.\d+)?$/.test(text)) return Number(text);
    if (text === "true" || text === "false") return text === "true";
    return text;
  }

  function labelOf(scope, field) {
    if (field.dataset.label) return field.dataset.label;
    if (field.tagName === "FIELDSET") {
      const legend = field.querySelector("legend");
      return legend ? legend.textContent.trim() : "";
    }
    const label = field.id ? scope.querySelector(`label[for="${CSS.escape(field.id)}"]`) : null;
    if (label) return (label.firstChild ? label.firstChild.textContent : label.textContent).trim();
    return field.getAttribute("aria-label") || "";
  }

  function fieldFor(scope, path) {
    let candidate = path;
    while (candidate) {
      const found = scope.querySelector(`[data-path="${CSS.escape(candidate)}"]`);
      if (found) return { field: found, exact: candidate === path };
      const cut = Math.max(candidate.lastIndexOf("."), candidate.lastIndexOf("["));
      candidate = cut > 0 ? candidate.slice(0, cut) : "";
    }
    return null;
  }

  /* The API's messages continue the field's name ("is not valid JSON: ..."): say which field in words. */
  function worded(scope, problem) {
    const errors = (problem && problem.report && problem.report.errors) || [];
    if (!errors.length) return problem;
    const out = errors.map((error) => {
      const found = fieldFor(scope, error.path || "");
      const message = String(error.message || "");
      if (!found || !/^[a-z]/.test(message)) return error;
      const label = found.exact ? labelOf(scope, found.field) : error.path;
      return { path: error.path, message: label ? `${label} ${message}` : message };
    });
    return Object.assign({}, problem, { report: Object.assign({}, problem.report, { errors: out }) });
  }

  /* Open the collapsed panel (or unchecked option) that hides a field, so its error can be seen. */
  function reveal(field) {
    let panel = field.closest(".panel[hidden]");
    while (panel) {
      openPanel(panel, true);
      panel = panel.parentElement ? panel.parentElement.closest(".panel[hidden]") : null;
    }
  }

  function openPanel(panel, open) {
    panel.hidden = !open;
    const control = document.querySelector(`[aria-controls="${CSS.escape(panel.id)}"]`);
    if (!control) return;
    if (control.type === "checkbox") control.checked = open;
    else {
      control.setAttribute("aria-expanded", String(open));
      control.textContent = control.textContent.replace(/^(Show|Hide)/, open ? "Hide" : "Show");
    }
  }

  function showProblem(scope, problem) {
    const errors = (problem && problem.report && problem.report.errors) || [];
    for (const error of errors) {
      const found = fieldFor(scope, error.path || "");
      if (found) reveal(found.field);
    }
    window.HW.showErrors(scope, worded(scope, problem));
  }

  /* Test Request: the ${variables} of the request as a small form of test values, Run test, and what
   * came back (status code, headers, body), the request as sent and, without a response, why. */
  function tester(container, options) {
    const values = {};
    const start = el("button", { type: "button", class: "secondary", text: "Test Request", "data-needs": "manage-destinations" });
    const vars = el("div", { class: "test-vars" });
    const runButton = el("button", { type: "button", class: "primary", text: "Run test" });
    const panel = el(
      "fieldset",
      { class: "test-values", hidden: true },
      el("legend", { text: "Test values" }),
      vars,
      runButton
    );
    const result = el("div", { class: "test-result", "aria-live": "polite" });
    const help = el("p", { class: "help", text: "Sends the request for real, with test values for its variables, and shows the response with its status code." });
    container.replaceChildren(start, help, panel, result);

    function remember() {
      vars.querySelectorAll("input[data-variable]").forEach((input) => (values[input.dataset.variable] = input.value));
    }

    function open() {
      remember();
      const names = variablesOf(options.request());
      vars.replaceChildren();
      if (!names.length) vars.append(el("p", { class: "help", text: "This request has no variables: Run test sends it as it is." }));
      else vars.append(el("p", { class: "help", text: "Values for the variables of the URL, headers and body. Numbers, true and false are sent as JSON values." }));
      names.forEach((name, index) => {
        const id = "tv-" + index;
        const input = el("input", { id, type: "text", autocomplete: "off", value: values[name] || "", dataset: { variable: name, path: "variables." + name, label: "${" + name + "}" } });
        input.addEventListener("keydown", (event) => {
          if (event.key === "Enter") {
            event.preventDefault();
            run();
          }
        });
        vars.append(el("div", { class: "field" }, el("label", { for: id }, el("code", { text: "${" + name + "}" })), input));
      });
      panel.hidden = false;
      (vars.querySelector("input") || runButton).focus();
    }

    async function run() {
      remember();
      const shown = Array.from(vars.querySelectorAll("input[data-variable]")).map((input) => input.dataset.variable);
      if (panel.hidden || variablesOf(options.request()).join("\n") !== shown.join("\n")) {
        open(); // the request changed since the values were asked for: ask again
        vars.prepend(el("p", { class: "field-error", role: "alert", text: "The request's variables changed: check the test values, then Run test." }));
        return;
      }
      const variables = {};
      vars.querySelectorAll("input[data-variable]").forEach((input) => (variables[input.dataset.variable] = testValue(input.value)));
      runButton.disabled = true;
      runButton.textContent = "Running…";
      result.setAttribute("aria-busy", "true");
      const answer = await options.run(variables);
      runButton.disabled = false;
      runButton.textContent = "Run test";
      result.removeAttribute("aria-busy");
      if (!answer.ok) {
        result.replaceChildren(el("p", { class: "test-failed", text: "The test was not sent: see the errors." }));
        options.problem(answer.data);
        return;
      }
      window.HW.clearErrors(options.scope);
      result.replaceChildren(renderResult(answer.data));
    }

    start.addEventListener("click", open);
    runButton.addEventListener("click", run);
    return { open, run };
  }

  function pretty(body) {
    if (body === null || body === undefined || body === "") return "";
    try {
      return JSON.stringify(JSON.parse(body), null, 2);
    } catch (_) {
      return String(body);
    }
  }

  function headerList(headers) {
    const entries = Object.entries(headers || {});
    if (!entries.length) return el("p", { class: "muted", text: "No headers." });
    return el("dl", { class: "facts headers" }, entries.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, el("code", { text: v }))]));
  }

  function renderResult(data) {
    const out = el("div", { class: "result card" });
    const response = data.response;
    if (response) {
      const ok = response.status >= 200 && response.status < 300;
      out.append(
        el(
          "p",
          { class: "test-status", role: "status" },
          "Status ",
          el("span", { class: "badge status " + (ok ? "ok" : "failed"), text: String(response.status) }),
          " " + (STATUS_TEXT[response.status] || ""),
          el("span", { class: "muted", text: ` · ${Math.round(response.elapsedMs ?? data.elapsedMs ?? 0)} ms` })
        ),
        el("h4", { text: "Response" }),
        headerList(response.headers),
        el("pre", { class: "json", "aria-label": "Response body", text: pretty(response.body) || "(empty body)" })
      );
      if (response.truncated) out.append(el("p", { class: "help", text: "The body was cut: only its beginning is shown." }));
    } else {
      const error = data.error || {};
      out.append(
        el(
          "p",
          { class: "test-status", role: "status" },
          el("span", { class: "badge failed", text: "No response" }),
          " ",
          el("strong", { text: error.kind || "error" }),
          error.status ? ` (token endpoint answered ${error.status})` : ""
        ),
        el("p", { class: "test-error", text: error.message || "The request could not be sent." }),
        error.retryable ? el("p", { class: "help", text: "An activation would retry this." }) : null
      );
    }
    const request = data.request;
    if (request) {
      out.append(
        el(
          "details",
          { class: "sent" },
          el("summary", { text: "Request as sent" }),
          el("p", {}, el("code", { class: "method", text: request.method }), " ", el("code", { class: "url", text: request.url })),
          headerList(request.headers),
          request.body !== null && request.body !== undefined ? el("pre", { class: "json", "aria-label": "Request body", text: pretty(request.body) }) : el("p", { class: "muted", text: "No body." })
        )
      );
    }
    return out;
  }

  /* Secrets (auth params, request header values, a secret body) come back as the mask; shown as hidden. */
  const MASKED = "********";
  const HIDDEN = "•••••••• (hidden)";

  function requestFacts(params) {
    const headers = Object.entries(params.headers || {});
    return el(
      "dl",
      { class: "facts" },
      el("dt", { text: "Method & URL" }),
      el("dd", {}, el("code", { text: `${params.method} ${params.url}` })),
      el("dt", { text: "Headers" }),
      el(
        "dd",
        {},
        headers.length
          ? el("ul", { class: "plain" }, headers.map(([k, v]) => el("li", {}, el("code", { text: k + ": " }), v === "" ? el("span", { class: "muted", text: "(not sent)" }) : v === MASKED ? el("span", { class: "muted", text: HIDDEN }) : el("code", { text: v }))))
          : "none"
      ),
      el("dt", { text: "Connection timeout" }),
      el("dd", { text: `${params.connectionTimeoutMs ?? 1000} ms` }),
      el("dt", { text: "Read timeout" }),
      el("dd", { text: `${params.readTimeoutMs ?? 1000} ms` }),
      el("dt", { text: "Request body" }),
      el("dd", {}, params.body === MASKED ? el("span", { class: "muted", text: HIDDEN }) : params.body ? el("pre", { class: "json", text: params.body }) : el("span", { class: "muted", text: "none" }))
    );
  }

  function authFacts(auth) {
    const params = (auth && auth.params) || {};
    const rows = [el("dt", { text: "Type" }), el("dd", { text: AUTH_LABELS[auth && auth.specName] || (auth && auth.specName) || "None" })];
    const shown = {
      accessTokenUrl: "Access Token URL",
      credentialsLocation: "Authentication option",
      clientId: "Client ID",
      clientSecret: "Client Secret",
      scope: "Scope",
      username: "Username",
      password: "Password",
    };
    for (const [key, label] of Object.entries(shown)) {
      if (params[key] === undefined || params[key] === "") continue;
      const value = params[key] === MASKED ? HIDDEN : key === "credentialsLocation" ? (params[key] === "body" ? "Body" : "Header") : params[key];
      rows.push(el("dt", { text: label }), el("dd", { text: value }));
    }
    for (const [key, label] of [["extraHeaders", "Token request headers"], ["formItems", "URL encoded form"]]) {
      const entries = Object.entries(params[key] || {});
      if (entries.length) rows.push(el("dt", { text: label }), el("dd", {}, el("ul", { class: "plain" }, entries.map(([k, v]) => el("li", {}, el("code", { text: `${k}: ${v === MASKED ? HIDDEN : v}` }))))));
    }
    if (params.clientCertificate) rows.push(el("dt", { text: "Mutual TLS" }), el("dd", { text: "Client certificate and key configured" }));
    if (params.caCertificate) {
      const count = (String(params.caCertificate).match(/-----BEGIN CERTIFICATE-----/g) || []).length;
      rows.push(el("dt", { text: "Trusted CA certificates" }), el("dd", { text: `${count} certificate${count === 1 ? "" : "s"} stored with the destination` }));
    }
    return el("dl", { class: "facts" }, rows);
  }

  /* The page files add their pages here; they run (deferred, after this file) before DOMContentLoaded. */
  const pages = {};

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("destinations");
    if (!root) return;
    (pages[root.dataset.page] || (() => {}))(root);
  });

  window.HWDestinations = { FS, AUTH_LABELS, icon, iconBox, listAll, openPanel, showProblem, tester, renderResult, requestFacts, authFacts, pages };
})();
