/* Headwater console: Data 360 setup (seed document 000), through the same API as every client. This file holds
 * what the pages share (helpers, the data-stream table) and starts the page's view; each area's views are in
 * their own file, loaded by the pages that need them:
 *
 *   data360-apps.js        apps, app-new, app
 *   data360-connectors.js  connectors, connector
 *   data360-streams.js     streams, stream-new, stream
 *
 * The page's root element names the view: <div data-d360="connector" data-connector-id="...">.
 */
(function () {
  "use strict";

  const { api, el } = window.HW;
  const SSOT = "/services/data/v62.0/ssot";
  const SANDBOXES = "/data/foundation/sandbox-management/sandboxes";
  const CONSOLE = "/console/data360";

  // --- small helpers ---
  function problemOf(result) {
    if (result.data && typeof result.data === "object") return result.data;
    return { detail: (typeof result.data === "string" && result.data) || "The request failed (HTTP " + result.status + ")." };
  }

  /** API errors next to their fields, each message starting with the field's name when the API's starts
   * with a verb ("is required ...") and the field says what it is (data-says="The certificate"). */
  function showErrors(scope, problem) {
    const errors = (problem && problem.report && problem.report.errors) || [];
    for (const error of errors) {
      const field = scope.querySelector(`[data-path="${CSS.escape(error.path || "")}"][data-says]`);
      if (field && /^[a-z]/.test(error.message || "")) error.message = field.dataset.says + " " + error.message;
    }
    HW.showErrors(scope, problem);
  }

  /** One error in words next to the element whose data-path is `path` (HW.showErrors places it). */
  function fieldError(scope, path, message) {
    HW.showErrors(scope, { report: { errors: [{ path, message }] } });
  }

  function busy(node, on) {
    if (on) node.setAttribute("aria-busy", "true");
    else node.removeAttribute("aria-busy");
  }

  function setHeading(text) {
    const h1 = document.querySelector("main h1");
    if (h1 && text) h1.textContent = text;
    if (text) document.title = text + " · Headwater";
  }

  function copyable(text, what) {
    const button = HW.copyButton(text);
    button.setAttribute("aria-label", "Copy " + what);
    return el("span", { class: "copyable" }, el("code", { text }), button);
  }

  function facts(rows) {
    return el("dl", { class: "facts" }, rows.filter(Boolean).flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, value)]));
  }

  function yes(flag) {
    return flag ? "Yes" : "No";
  }

  function categoryBadge(category) {
    return el("span", { class: "badge cat-" + String(category).toLowerCase(), text: category });
  }

  function cadenceText(seconds) {
    if (seconds === 0) return "Continuous";
    if (seconds % 3600 === 0) return seconds === 3600 ? "Every hour" : `Every ${seconds / 3600} hours`;
    if (seconds % 60 === 0) return seconds === 60 ? "Every minute" : `Every ${seconds / 60} minutes`;
    return `Every ${seconds} seconds`;
  }

  function statusBadge(status) {
    const kind = { ACTIVE: "ok", FAILED: "failed", PROCESSING: "inProgress" }[status] || "";
    return el("span", { class: "badge " + kind, text: status || "unknown" });
  }

  function scrolling(table) {
    return el("div", { class: "scroll-x" }, table);
  }

  function link(href, text) {
    return el("a", { href, text });
  }

  /** The data spaces: one per sandbox; prod is "default". */
  async function dataSpaces() {
    const result = await api("GET", SANDBOXES);
    const names = result.ok ? result.data.sandboxes.map((s) => s.name) : ["prod"];
    return names.map((name) => (name === "prod" ? { value: "default", text: "default (prod)" } : { value: name, text: name }));
  }

  function currentSpace() {
    const sandbox = HW.sandbox();
    return sandbox === "prod" ? "default" : sandbox;
  }

  function fillSelect(select, options, wanted) {
    select.replaceChildren(...options.map((o) => el("option", { value: o.value, text: o.text, selected: o.value === wanted })));
  }

  function streamHref(stream) {
    return `${CONSOLE}/streams/${encodeURIComponent(stream.id)}?dataspace=${encodeURIComponent(stream.dataspace || "")}`;
  }

  /** The data streams as a table: the streams pages and a connector's page show them alike. */
  function streamTable(streams, empty) {
    return scrolling(
      HW.table(
        [
          { label: "Data stream", value: (s) => el("span", {}, link(streamHref(s), s.label), el("br"), el("code", { class: "muted", text: s.name })) },
          { label: "Category", value: (s) => categoryBadge(s.category) },
          { label: "Status", value: (s) => statusBadge(s.status) },
          { label: "Events", value: (s) => s.connectorInfo.connectorDetails.events.join(", ") },
          { label: "Connector", value: (s) => link(`${CONSOLE}/connectors/${encodeURIComponent(s.connectorInfo.connectorDetails.id)}`, s.connectorInfo.connectorDetails.name) },
          { label: "Refresh", value: (s) => cadenceText(s.refreshCadenceSeconds) },
          { label: "Created", value: (s) => HW.when(s.createdDate) },
        ],
        streams,
        { caption: "Data streams", empty }
      )
    );
  }

  /* The view files add their views here; they run (deferred, after this file) before DOMContentLoaded. */
  const VIEWS = {};

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-d360]");
    const view = root && VIEWS[root.dataset.d360];
    if (view) view(root);
  });

  window.HWData360 = {
    SSOT,
    CONSOLE,
    problemOf,
    showErrors,
    fieldError,
    busy,
    setHeading,
    copyable,
    facts,
    yes,
    categoryBadge,
    cadenceText,
    statusBadge,
    scrolling,
    link,
    dataSpaces,
    currentSpace,
    fillSelect,
    streamTable,
    streamHref,
    VIEWS,
  };
})();
