/* Headwater console: dataflows. The list (state, schedule, last run) and a flow's page: a chart of
 * records in, out and failed per run, the runs with their errors and row samples, enable/disable, run
 * now, and the schedule form saved with PATCH + If-Match (a concurrent change is told, not overwritten). */
(function () {
  "use strict";

  /* A flow spec in words (its name is an internal one, e.g. FilesToAEP). */
  const FLOW_TYPES = {
    FilesToAEP: "Files",
    CRMToAEP: "CRM",
    CloudStorageToAEP: "Batch (files or CRM)",
    DatabaseToAEP: "Database",
    HttpStreamingNoTransformation: "Streaming (XDM messages)",
    HttpStreamingWithTransformation: "Streaming (mapped messages)",
    CustomerIOStreaming: "Streaming (Customer.io webhooks)",
    Activation: "Activation",
  };
  const flowType = (spec) => (spec ? FLOW_TYPES[spec.name] || spec.name : "—");

  const FS = "/data/foundation/flowservice";
  const CAT = "/data/foundation/catalog";
  const SVG = "http://www.w3.org/2000/svg";
  const FINAL = ["success", "partialSuccess", "failed", "cancelled"];
  const SERIES = [
    ["in", "inputRecordCount", "Records in", "#0b5cad"],
    ["out", "outputRecordCount", "Records out", "#147a3d"],
    ["failed", "failedRecordCount", "Failed", "#b42318"],
  ];
  const CONFLICT = "This dataflow was changed by someone else since you opened it; reload to see the change.";
  const UNITS = { minute: "minute", hour: "hour", day: "day", week: "week" };

  const el = (...args) => HW.el(...args);
  const $ = (root, selector) => root.querySelector(selector);
  /* "1 row", "3 rows". */
  const count = (n, word, plural) => n + " " + (n === 1 ? word : plural || word + "s");

  function fail(result) {
    HW.showErrors(null, result.data || { detail: "The server answered " + result.status });
  }

  function badge(state) {
    const cls = { partialSuccess: "partial", queued: "inProgress", receiving: "inProgress" }[state] || state;
    return el("span", { class: "badge " + cls, text: state || "—" });
  }

  function records(run) {
    return ((run && run.metrics) || {}).recordSummary || {};
  }

  function runTime(run) {
    const d = ((run.metrics || {}).durationSummary || {}).startedAtUTC;
    return d || run.createdAt;
  }

  function isStreaming(spec) {
    return ((spec && spec.attributes) || {}).frequency === "streaming";
  }

  function scheduleText(flow, spec) {
    if (isStreaming(spec)) return "Continuous (streaming)";
    const s = flow.scheduleParams;
    if (!s || !s.frequency) return spec && !spec.scheduleSpec ? "On demand" : "On demand (no schedule)";
    const start = s.startTime ? HW.when(Number(s.startTime) * 1000) : "";
    if (s.frequency === "once") return "Once" + (start ? ", at " + start : "");
    const n = Number(s.interval || 1);
    const unit = UNITS[s.frequency] || s.frequency;
    return "Every " + (n === 1 ? unit : n + " " + unit + "s") + (start ? ", from " + start : "");
  }

  async function flowSpecs() {
    const result = await HW.api("GET", FS + "/flowSpecs?limit=1000");
    const index = {};
    for (const s of (result.ok && result.data.items) || []) index[s.id] = s;
    return index;
  }

  /* The latest run of each flow, with one query per 40 flows (runs ordered newest first). */
  async function latestRuns(ids) {
    const latest = {};
    for (let i = 0; i < ids.length; i += 40) {
      const chunk = ids.slice(i, i + 40);
      const query = "?orderby=-createdAt&limit=1000&property=" + encodeURIComponent("flowId==" + chunk.join(","));
      const result = await HW.api("GET", FS + "/runs" + query);
      for (const run of (result.ok && result.data.items) || []) if (!latest[run.flowId]) latest[run.flowId] = run;
    }
    return latest;
  }

  // --- the list ---
  async function flowsPage(root) {
    const list = $(root, "[data-list]");
    // The search is attached before the list loads: what is typed meanwhile filters it once shown.
    const search = $(root, "#flow-search");
    const filter = () => {
      const q = search.value.trim().toLowerCase();
      list.querySelectorAll("tbody tr").forEach((tr) => (tr.hidden = q !== "" && !tr.textContent.toLowerCase().includes(q)));
    };
    search.addEventListener("input", filter);
    const [result, specs] = await Promise.all([HW.api("GET", FS + "/flows?limit=1000&orderby=name"), flowSpecs()]);
    if (!result.ok) return fail(result);
    const flows = result.data.items || [];
    const latest = await latestRuns(flows.map((f) => f.id));
    list.replaceChildren(
      HW.table(
        [
          { label: "Name", value: (f) => el("a", { href: "/console/flows/" + encodeURIComponent(f.id), text: f.name || f.id }) },
          { label: "Type", value: (f) => flowType(specs[f.flowSpec.id]) },
          { label: "State", value: (f) => badge(f.state) },
          { label: "Schedule", value: (f) => scheduleText(f, specs[f.flowSpec.id]) },
          {
            label: "Last run",
            value: (f) => (latest[f.id] ? [badge(HW.runState(latest[f.id])), " ", HW.when(runTime(latest[f.id]))] : el("span", { class: "muted", text: "Never run" })),
          },
          {
            label: "Records (in / out / failed)",
            value: (f) => {
              const r = records(latest[f.id]);
              return latest[f.id] ? [r.inputRecordCount, r.outputRecordCount, r.failedRecordCount].map((n) => n ?? 0).join(" / ") : "";
            },
          },
        ],
        flows,
        { empty: "No dataflows in this sandbox yet.", caption: count(flows.length, "dataflow") }
      )
    );
    filter();
  }

  // --- the chart ---
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function niceMax(value) {
    if (value <= 4) return 4;
    const step = Math.pow(10, Math.floor(Math.log10(value)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
    return 10 * step;
  }

  function drawChart(box, allRuns) {
    const runs = allRuns.filter((r) => FINAL.includes(r.state)).slice(0, 30).reverse(); // oldest first
    if (!runs.length) {
      box.replaceChildren(el("p", { class: "muted", text: "No finished runs yet: the chart appears after the first run." }));
      return;
    }
    const W = 760, H = 260, left = 48, right = 12, top = 14, bottom = 40;
    const plotW = W - left - right, plotH = H - top - bottom;
    const max = niceMax(Math.max(1, ...runs.flatMap((r) => SERIES.map(([, key]) => records(r)[key] || 0))));
    const y = (v) => top + plotH - (v / max) * plotH;
    const latest = records(runs[runs.length - 1]);
    const summary =
      runs.length + " runs. Latest: " + (latest.inputRecordCount || 0) + " in, " + (latest.outputRecordCount || 0) + " out, " + (latest.failedRecordCount || 0) + " failed.";
    const chart = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-title chart-desc" },
      svg("title", { id: "chart-title" }, "Records in, out and failed per run"),
      svg("desc", { id: "chart-desc" }, summary));
    for (let i = 0; i <= 4; i += 1) {
      const v = (max / 4) * i;
      chart.append(
        svg("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), stroke: i ? "#e3e7ec" : "#9aa4b1", "stroke-width": 1 }),
        svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6574" }, String(Math.round(v * 100) / 100))
      );
    }
    const slot = plotW / runs.length;
    const barW = Math.max(2, Math.min(22, (slot * 0.8) / SERIES.length));
    const every = Math.ceil(runs.length / 8);
    const axis = HW.axisLabels(runs.map(runTime));
    runs.forEach((run, i) => {
      const r = records(run);
      const x0 = left + i * slot + (slot - barW * SERIES.length) / 2;
      const group = svg("g", { "data-run": run.id });
      SERIES.forEach(([name, key, label, color], j) => {
        const v = r[key] || 0;
        const h = Math.max(v ? 1 : 0, y(0) - y(v));
        group.append(
          svg("rect", { x: x0 + j * barW, y: y(0) - h, width: barW - 1, height: h, fill: color, "data-series": name, "data-value": v },
            svg("title", {}, HW.when(runTime(run), { seconds: true }) + " — " + label + ": " + v))
        );
      });
      chart.append(group);
      if (i % every === 0 && axis[i]) {
        chart.append(svg("text", { x: left + i * slot + slot / 2, y: H - bottom + 16, "text-anchor": "middle", "font-size": 11, fill: "#5b6574" }, axis[i]));
      }
    });
    chart.append(svg("text", { x: left + plotW / 2, y: H - 6, "text-anchor": "middle", "font-size": 11, fill: "#5b6574" }, "Run start time (oldest to newest)"));
    box.replaceChildren(chart);
  }

  // --- runs and their row errors ---
  function ndjson(data) {
    if (data === null || data === undefined) return [];
    if (typeof data !== "string") return [data];
    return data.split("\n").filter((l) => l.trim()).map((l) => {
      try {
        return JSON.parse(l);
      } catch (_) {
        return { _errors: [{ message: l }] };
      }
    });
  }

  async function rowSamples(batchId) {
    const base = "/data/foundation/export/batches/" + encodeURIComponent(batchId) + "/meta";
    const listing = await HW.api("GET", base + "?path=row_errors");
    if (!listing.ok) return { error: (listing.data && listing.data.detail) || "Row errors could not be read." };
    const rows = [];
    for (const file of listing.data.data || []) {
      const content = await HW.api("GET", file._links.self.href, null, { headers: { Accept: "application/x-ndjson, application/json" } });
      if (content.ok) rows.push(...ndjson(content.data));
    }
    return { rows };
  }

  function samplesTable(rows) {
    const shown = rows.slice(0, 20);
    return el(
      "div",
      { class: "samples" },
      el("p", { class: "muted", text: rows.length > shown.length ? "The first " + shown.length + " of " + rows.length + " failed rows" : count(rows.length, "failed row") }),
      HW.table(
        [
          { label: "Row", value: (e) => (e._row === undefined ? "" : String(e._row + 1)) },
          { label: "Why it failed", value: (e) => (e._errors || []).map((x) => el("p", { class: "field-error", text: (x.message || x.code || "").replace(/^row \d+: /, "") })) },
          { label: "Row as read", value: (e) => el("pre", { class: "snippet", text: JSON.stringify(e._corrupt_record ?? e, null, 2) }) },
        ],
        shown,
        { empty: "No row samples were kept for this run." }
      )
    );
  }

  function batchOf(run) {
    if (run.batchId) return run.batchId;
    for (const a of run.activities || []) for (const t of a.targetInfo || []) if (t.reference && t.reference.type === "Batch") return (t.reference.ids || [])[0];
    return null;
  }

  function toggleSamples(button, run) {
    const tr = button.closest("tr");
    const open = button.getAttribute("aria-expanded") === "true";
    const existing = document.getElementById(button.getAttribute("aria-controls"));
    if (open) {
      if (existing) existing.hidden = true;
      button.setAttribute("aria-expanded", "false");
      button.textContent = "Show failed rows";
      return;
    }
    button.setAttribute("aria-expanded", "true");
    button.textContent = "Hide failed rows";
    if (existing) {
      existing.hidden = false;
      return;
    }
    const cell = el("td", { colspan: tr.children.length }, el("p", { class: "muted", text: "Loading row samples…" }));
    const detail = el("tr", { id: button.getAttribute("aria-controls"), class: "run-samples" }, cell);
    tr.after(detail);
    rowSamples(batchOf(run)).then((result) => {
      cell.replaceChildren(result.error ? el("p", { class: "field-error", text: result.error }) : samplesTable(result.rows));
    });
  }

  function runsTable(box, runs, open) {
    const cols = [
      { label: "Started", value: (r) => HW.when(runTime(r)) },
      { label: "State", value: (r) => badge(HW.runState(r)) },
      { label: "In", value: (r) => String(records(r).inputRecordCount ?? 0) },
      { label: "Out", value: (r) => String(records(r).outputRecordCount ?? 0) },
      { label: "Failed", value: (r) => String(records(r).failedRecordCount ?? 0) },
      {
        label: "Duration",
        value: (r) => {
          const d = (r.metrics || {}).durationSummary || {};
          return d.startedAtUTC && d.completedAtUTC ? ((d.completedAtUTC - d.startedAtUTC) / 1000).toFixed(1) + " s" : "";
        },
      },
      {
        label: "Errors",
        value: (r) =>
          ((r.metrics || {}).statusSummary || {}).errors && r.metrics.statusSummary.errors.length
            ? r.metrics.statusSummary.errors.map((e) => el("p", { class: "run-error" }, el("code", { text: e.code || "" }), " ", e.message || "", e.recordCount ? " (" + count(e.recordCount, "row") + ")" : ""))
            : el("span", { class: "muted", text: FINAL.includes(r.state) ? "None" : "" }),
      },
      {
        label: "Row samples",
        value: (r) => {
          if (!records(r).failedRecordCount || !batchOf(r)) return "";
          const button = el("button", { type: "button", class: "secondary small", "aria-expanded": "false", "aria-controls": "samples-" + r.id, text: "Show failed rows" });
          button.addEventListener("click", () => toggleSamples(button, r));
          return button;
        },
      },
    ];
    const table = HW.table(cols, runs, { empty: "No runs yet. Run it now, or wait for its schedule." });
    table.querySelectorAll("tbody tr").forEach((tr, i) => runs[i] && tr.setAttribute("data-run", runs[i].id));
    box.replaceChildren(table);
    for (const id of open) {
      const button = table.querySelector('[aria-controls="samples-' + CSS.escape(id) + '"]');
      if (button) button.click();
    }
  }

  // --- a flow's page ---
  function toLocalInput(seconds) {
    if (!seconds) return "";
    const d = new Date(Number(seconds) * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function same(a, b) {
    return JSON.stringify(a || null) === JSON.stringify(b || null);
  }

  async function flowPage(root) {
    const ident = root.dataset.id;
    const url = FS + "/flows/" + encodeURIComponent(ident);
    const form = $(root, "[data-schedule-form]");
    const activity = $(root, "[data-activity]");
    const state = { flow: null, etag: null, spec: null, runs: [], polling: false };

    const [loaded, specs] = await Promise.all([HW.api("GET", url), flowSpecs()]);
    if (!loaded.ok) return fail(loaded);
    state.flow = loaded.data.items[0];
    state.etag = loaded.etag; // the version the schedule form edits: saved with If-Match
    state.spec = specs[state.flow.flowSpec.id] || null;
    const related = await relatedLinks(state.flow);

    function renderFacts() {
      const f = state.flow;
      const h1 = document.querySelector("#main h1");
      h1.textContent = f.name || f.id;
      document.title = (f.name || f.id) + " · Headwater";
      $(root, "[data-facts]").replaceChildren(
        ...fact("State", badge(f.state)),
        ...fact("Type", flowType(state.spec)),
        ...fact("Schedule", scheduleText(f, state.spec)),
        ...related,
        ...fact("Id", el("code", { text: f.id }), " ", HW.copyButton(f.id, "Copy id"))
      );
      root.querySelectorAll("[data-op]").forEach((b) => (b.disabled = b.dataset.op + "d" === f.state));
      $(root, "[data-run-now]").disabled = isStreaming(state.spec);
    }

    async function refreshRuns() {
      const result = await HW.api("GET", FS + "/runs?orderby=-createdAt&limit=100&property=" + encodeURIComponent("flowId==" + ident));
      if (!result.ok) return fail(result);
      state.runs = result.data.items || [];
      const open = Array.from(root.querySelectorAll('[data-runs] button[aria-expanded="true"]')).map((b) => b.getAttribute("aria-controls").slice(8));
      drawChart($(root, "[data-chart]"), state.runs);
      runsTable($(root, "[data-runs]"), state.runs, open);
      const pending = state.runs.some((r) => !FINAL.includes(r.state));
      activity.textContent = pending ? "A run is in progress…" : "";
      if (pending && !state.polling) {
        state.polling = true;
        setTimeout(() => {
          state.polling = false;
          refreshRuns();
        }, 1000);
      }
    }

    function fillSchedule() {
      const note = $(root, "[data-schedule-note]");
      const scheduled = state.spec && state.spec.scheduleSpec && !isStreaming(state.spec);
      form.hidden = !scheduled;
      note.hidden = scheduled && !!state.flow.scheduleParams;
      if (isStreaming(state.spec)) note.textContent = "This dataflow runs continuously; it has no schedule.";
      else if (!scheduled) note.textContent = "This kind of dataflow runs only on demand.";
      else note.textContent = "No schedule yet: the dataflow runs only when started. Save a schedule to run it on one.";
      const s = state.flow.scheduleParams || {};
      $(form, "#s-frequency").value = s.frequency || "hour";
      $(form, "#s-interval").value = s.interval ?? 1;
      $(form, "#s-start").value = toLocalInput(s.startTime || Math.floor(Date.now() / 1000));
      intervalEnabled();
    }

    function intervalEnabled() {
      const once = $(form, "#s-frequency").value === "once";
      $(form, "#s-interval").disabled = once;
    }

    $(form, "#s-frequency").addEventListener("change", intervalEnabled);

    root.querySelectorAll("[data-op]").forEach((button) =>
      button.addEventListener("click", async () => {
        const op = button.dataset.op;
        button.disabled = true;
        const result = await HW.api("POST", url + "/action?op=" + op);
        if (!result.ok) {
          button.disabled = false;
          return fail(result);
        }
        const fresh = await HW.api("GET", url);
        if (fresh.ok) {
          const flow = fresh.data.items[0];
          // Our own state change moves the etag on; keep the form's etag stale if the schedule was
          // changed by someone else meanwhile, so that saving the form still reports the conflict.
          if (same(flow.scheduleParams, state.flow.scheduleParams)) state.etag = fresh.etag;
          state.flow = { ...flow, scheduleParams: state.flow.scheduleParams };
        } else {
          state.flow = { ...state.flow, state: op + "d" };
        }
        renderFacts();
        HW.toast("Dataflow " + op + "d");
        const next = root.querySelector("[data-op]:not(:disabled)");
        if (next) next.focus();
      })
    );

    $(root, "[data-run-now]").addEventListener("click", async () => {
      const result = await HW.api("POST", FS + "/runs", { flowId: ident });
      if (!result.ok) return fail(result);
      HW.toast("Run queued");
      await refreshRuns();
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      HW.clearErrors(form);
      const frequency = $(form, "#s-frequency").value;
      const startValue = $(form, "#s-start").value;
      const start = startValue ? Math.floor(new Date(startValue).getTime() / 1000) : undefined;
      const value = { ...(state.flow.scheduleParams || {}), frequency, startTime: start };
      if (frequency === "once") {
        delete value.interval;
        delete value.backfill;
      } else {
        const interval = $(form, "#s-interval").value;
        value.interval = interval === "" ? undefined : Number(interval);
      }
      const result = await HW.api("PATCH", url, [{ op: "add", path: "/scheduleParams", value }], { etag: state.etag });
      if (result.status === 412) {
        const box = $(form, "[data-errors]");
        box.hidden = false;
        box.replaceChildren(
          el("p", { text: CONFLICT }),
          el("button", { type: "button", class: "secondary small", text: "Reload", onclick: () => location.reload() })
        );
        box.querySelector("button").focus();
        return;
      }
      if (!result.ok) return HW.showErrors(form, result.data);
      state.etag = result.etag || result.data.etag;
      state.flow = { ...state.flow, scheduleParams: JSON.parse(JSON.stringify(value)) };
      $(root, "[data-schedule-note]").hidden = true;
      renderFacts();
      HW.toast("Schedule saved");
    });

    // Enabled buttons only once every handler is attached: a click in between would do nothing.
    renderFacts();
    fillSchedule();
    await refreshRuns();
  }

  function fact(term, ...value) {
    return [el("dt", { text: term }), el("dd", {}, ...value)];
  }

  /* Source and target of the flow, the dataset it writes to and its mapping set, as links. */
  async function relatedLinks(flow) {
    const out = [];
    const sourceId = (flow.sourceConnectionIds || [])[0];
    const targetId = (flow.targetConnectionIds || [])[0];
    const [source, target] = await Promise.all([
      sourceId ? HW.api("GET", FS + "/sourceConnections/" + encodeURIComponent(sourceId)) : null,
      targetId ? HW.api("GET", FS + "/targetConnections/" + encodeURIComponent(targetId)) : null,
    ]);
    const src = source && source.ok ? source.data.items[0] : null;
    if (src) out.push(...fact("Source", src.name || sourceId));
    if (src && src.baseConnectionId) {
      const base = await HW.api("GET", FS + "/connections/" + encodeURIComponent(src.baseConnectionId));
      const account = base.ok ? base.data.items[0] : null;
      out.push(...fact("Account", el("a", { href: "/console/sources/" + encodeURIComponent(src.baseConnectionId), text: (account && account.name) || src.baseConnectionId })));
      // A streaming flow receives what is POSTed to its account's inlet (with the flowId in the header),
      // or, for an account without one (Customer.io), to the flow's own.
      const inlet = (((account || {}).auth || {}).params || {}).inletUrl || (flow.options || {}).inletUrl;
      if (inlet) out.push(...fact("Inlet URL", el("span", {}, el("code", { text: inlet }), " ", HW.copyButton(inlet, "Copy", "Copy the inlet URL"))));
    }
    const datasetId = target && target.ok ? ((target.data.items[0] || {}).params || {}).dataSetId : null;
    if (datasetId) {
      const ds = await HW.api("GET", CAT + "/dataSets/" + encodeURIComponent(datasetId));
      const name = ds.ok ? (Object.values(ds.data)[0] || {}).name : null;
      out.push(...fact("Dataset", el("a", { href: "/console/datasets/" + encodeURIComponent(datasetId), text: name || datasetId })));
    }
    const mapping = (flow.transformations || []).find((t) => t.name === "Mapping");
    const mappingId = mapping && (mapping.params || {}).mappingId;
    if (mappingId) out.push(...fact("Mapping set", el("a", { href: "/console/mappings/" + encodeURIComponent(mappingId), text: "Open mapping set" })));
    return out;
  }

  const PAGES = { flows: flowsPage, flow: flowPage };

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-page]");
    const show = root && PAGES[root.dataset.page];
    if (show) Promise.resolve(show(root)).finally(() => root.setAttribute("data-ready", "true"));
  });
})();
