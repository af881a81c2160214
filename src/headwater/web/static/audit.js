/* Audit (organization admins): the events of GET /data/foundation/audit/events, newest first, filtered by
 * action, status, user, asset type and time (property= filters), a page at a time (start and limit). The
 * filters and the page live in the address, so a reload or a shared link shows the same events. */
(function () {
  "use strict";

  const { api, el } = HW;
  const EVENTS = "/data/foundation/audit/events";
  const root = document.getElementById("audit");
  if (!root) return;
  const form = document.getElementById("audit-filters");
  const box = document.getElementById("audit-events");
  const previous = document.getElementById("audit-previous");
  const next = document.getElementById("audit-next");
  const range = document.getElementById("audit-range");
  const limitSelect = form.querySelector("#f-limit");
  const FIELDS = ["action", "status", "user", "assetType", "from", "to"];
  const BADGES = { Allow: "ok", Deny: "failed", Failure: "partial" };
  let start = 0;

  const input = (name) => form.elements.namedItem(name);

  /* The filters and page from the address into the form. */
  function fromAddress() {
    const params = new URLSearchParams(location.search);
    for (const name of FIELDS) input(name).value = params.get(name) || "";
    const limit = params.get("limit");
    if (limit && /^\d+$/.test(limit)) {
      if (!Array.from(limitSelect.options).some((o) => o.value === limit)) limitSelect.append(el("option", { value: limit, text: limit }));
      limitSelect.value = limit;
    }
    start = Math.max(0, Number(params.get("start")) || 0);
  }

  function toAddress() {
    const params = new URLSearchParams();
    for (const name of FIELDS) if (input(name).value.trim()) params.set(name, input(name).value.trim());
    if (limitSelect.value !== "50") params.set("limit", limitSelect.value);
    if (start) params.set("start", String(start));
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
  }

  /* A datetime-local value (the browser's time zone) as an ISO instant; "to" without seconds means the
   * end of that minute. */
  function instant(value, end) {
    const moment = new Date(value);
    if (isNaN(moment)) return null;
    if (end && value.length <= 16) moment.setSeconds(59, 999);
    return moment.toISOString();
  }

  function query() {
    const params = new URLSearchParams({ limit: limitSelect.value, start: String(start) });
    const value = (name) => input(name).value.trim();
    if (value("action")) params.append("property", "action==" + value("action"));
    if (value("status")) params.append("property", "status==" + value("status"));
    if (value("user")) params.append("property", "user==" + value("user"));
    if (value("assetType")) params.append("property", "assetType==" + value("assetType"));
    const from = value("from") && instant(value("from"), false);
    const to = value("to") && instant(value("to"), true);
    if (from) params.append("property", "timestamp>=" + from);
    if (to) params.append("property", "timestamp<=" + to);
    return EVENTS + "?" + params.toString();
  }

  /* "2026-11-23T10:00:00.000+0000" (AEP's form) as a <time> in the browser's time zone. */
  function timeCell(timestamp) {
    const moment = new Date(Date.parse(String(timestamp || "").replace(/([+-]\d\d)(\d\d)$/, "$1:$2")));
    if (isNaN(moment)) return String(timestamp || "");
    return el("time", { datetime: moment.toISOString(), text: HW.when(moment.getTime(), { seconds: true }) });
  }

  const columns = [
    { label: "Time", value: (e) => timeCell(e.timestamp) },
    { label: "User", value: (e) => e.userEmail || el("span", { class: "muted", text: e.clientId || "" }) },
    { label: "Role", value: (e) => e.role || "" },
    { label: "Action", value: (e) => e.action },
    { label: "Asset type", value: (e) => e.assetType || "" },
    { label: "Asset ID", value: (e) => (e.assetId ? el("code", { class: "asset-id", title: `${e.assetId}: ${e.method} ${e.path}`, text: e.assetId }) : el("span", { class: "muted", title: `${e.method} ${e.path}`, text: "—" })) },
    { label: "Permission", value: (e) => el("code", { text: e.permission || "" }) },
    { label: "Status", value: (e) => el("span", { class: "badge " + (BADGES[e.status] || ""), title: `HTTP ${e.statusCode}`, text: e.status }) },
    { label: "Sandbox", value: (e) => e.sandboxName || el("span", { class: "muted", text: "organization" }) },
  ];

  async function load(focus) {
    HW.clearErrors(form);
    box.setAttribute("aria-busy", "true");
    toAddress();
    const result = await api("GET", query());
    box.removeAttribute("aria-busy");
    if (!result.ok) {
      const report = (result.data && result.data.report) || {};
      const path = report.property && ["action", "status", "user", "assetType", "timestamp"].includes(report.property) ? report.property : null;
      HW.showErrors(form, path ? { report: { errors: [{ path, message: result.data.detail }] } } : result.data);
      box.replaceChildren();
      range.textContent = "";
      previous.disabled = next.disabled = true;
      return;
    }
    const events = (result.data._embedded && result.data._embedded.events) || [];
    const page = result.data._page || {};
    const total = page.totalElements ?? events.length;
    const limit = Number(limitSelect.value);
    box.replaceChildren(HW.table(columns, events, { caption: "Audit events", empty: "No events match these filters." }));
    range.textContent = events.length ? `Events ${start + 1}–${start + events.length} of ${total}` : total ? `No events here: ${total} in all` : "No events";
    previous.disabled = start === 0;
    next.disabled = start + events.length >= total || events.length < limit;
    if (focus) (focus.disabled ? (focus === next ? previous : next) : focus).focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start = 0;
    load();
  });
  limitSelect.addEventListener("change", () => {
    start = 0;
    load();
  });
  document.getElementById("audit-clear").addEventListener("click", () => {
    for (const name of FIELDS) input(name).value = "";
    start = 0;
    load();
  });
  previous.addEventListener("click", () => {
    start = Math.max(0, start - Number(limitSelect.value));
    load(previous);
  });
  next.addEventListener("click", () => {
    start += Number(limitSelect.value);
    load(next);
  });

  fromAddress();
  load();
})();
