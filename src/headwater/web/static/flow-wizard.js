/* Headwater console: the Create dataflow wizard (/console/flows/new), as AEP's sources workflow has it.
 * Through the public API only:
 *
 *   Account      an account (base connection) of the sandbox, or a link to add one (the sources wizard
 *                comes back here with ?connection=<id>)
 *   Select data  a table/object from the account's explore API, or a file path; a preview of its rows
 *                (their columns feed the later steps)
 *   Dataset      HWDatasetTarget (static/dataset-target.js): an existing dataset, or a new one with an
 *                existing or a new schema; saved when the step is left (the mapping needs its schema)
 *   Mapping      HWMappingEditor (static/mapping-editor.js), the columns as sources, a preview of the
 *                mapped sample rows
 *   Scheduling   once, or every N minutes/hours/days/weeks from a start time; a delta column
 *   Review       the dataflow's name and a summary; Save creates the source connection, the target
 *                connection, the mapping set and the flow, then opens the flow's page
 *
 * Streaming accounts (HTTP API, Customer.io) skip Select data and Scheduling, the mapping is optional, and
 * after saving the page shows the inlet URL to send to. An API error goes next to the field of the step
 * that owns it (that step is shown); what a failed save had created is deleted again.
 */
(function () {
  "use strict";

  const FS = "/data/foundation/flowservice";
  const DATA_LAKE = "c604ff05-7f1a-43c0-8e18-33bf874cb11c";
  const SCHEMA_VERSION = "application/vnd.adobe.xed-full+json;version=1.0";
  const STEPS = ["connection", "data", "target", "mapping", "schedule", "review"];
  const STREAMING_STEPS = ["connection", "target", "mapping", "review"];
  const DELTA_GUESSES = ["LastModifiedDate", "SystemModstamp", "modifiedon"];

  const el = (...args) => HW.el(...args);
  const $ = (root, selector) => root.querySelector(selector);
  const ui = (spec) => ((spec && spec.attributes) || {}).uiAttributes || {};
  const specLabel = (spec) => ui(spec).label || spec.name;
  const count = (n, word) => n + " " + word + (n === 1 ? "" : "s");

  function ensureStyles() {
    if (document.querySelector('link[href$="/flow-wizard.css"]')) return;
    document.head.append(el("link", { rel: "stylesheet", href: "/console/static/flow-wizard.css" }));
  }

  /* Every page of a Flow Service list (follows _links.next). */
  async function listAll(path) {
    const items = [];
    let next = path;
    for (let i = 0; next && i < 20; i++) {
      const r = await HW.api("GET", next);
      if (!r.ok) return r;
      items.push(...(r.data.items || []));
      next = r.data._links && r.data._links.next ? r.data._links.next.href : null;
    }
    return { ok: true, data: items };
  }

  /* A column's type from the explore API (the reader's type names) in the words of XDM: what the
   * console shows, and the type a table source connection's columns param takes. */
  function columnType(raw) {
    const t = String(raw || "").toLowerCase();
    if (/^u?int\d*$|^integer$|^long$|^short$/.test(t)) return ["integer", "Integer"];
    if (/^(double|float\d*|halffloat|decimal|number)/.test(t)) return ["double", "Number"];
    if (/^bool/.test(t)) return ["boolean", "Boolean"];
    if (/^timestamp|^date-?time/.test(t)) return ["date-time", "Date-time"];
    if (/^date/.test(t)) return ["date", "Date"];
    if (/^(list|large_list|struct|map)/.test(t)) return ["object", "Object"];
    return ["string", "String"];
  }

  function cell(value) {
    if (value === null || value === undefined) return el("span", { class: "muted", text: "—" });
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  function toEpoch(local) {
    return local ? Math.floor(new Date(local).getTime() / 1000) : undefined;
  }

  function localNow() {
    const d = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function formatOf(path) {
    const p = String(path || "").toLowerCase().replace(/\.(gz|zst)$/, "");
    if (/\.(json|jsonl|ndjson)$/.test(p)) return "json";
    if (/\.parquet$/.test(p)) return "parquet";
    return "delimited";
  }

  function problemOf(result) {
    return result.data || { detail: "The server answered " + result.status };
  }

  async function start(root) {
    ensureStyles();
    const form = $(root, "#flow-wizard");
    const sections = Object.fromEntries(STEPS.map((s) => [s, $(form, `section[data-step="${s}"]`)]));
    const general = $(form, "[data-errors]");
    const connectionSelect = $(form, "#fw-connection");
    const state = {
      specs: {}, // connection spec id -> spec (sources only)
      flowSpecs: [],
      connections: [],
      conn: null,
      spec: null,
      columns: [], // [{name, type, label}]
      sample: [],
      object: null, // what the preview read: {kind: "table"|"file", name, format}
      target: null, // HWDatasetTarget
      targetColumns: null,
      saved: null, // the target's save() answer
      editor: null,
      busy: false,
      index: 0,
    };

    // --- the step machine (own, so that streaming accounts can skip steps) ---
    const list = el("ol", { class: "steps" });
    form.prepend(list);
    const back = el("button", { type: "button", class: "secondary", text: "Back", onclick: () => go(-1) });
    const next = el("button", { type: "button", class: "primary", text: "Next", onclick: () => go(1) });
    const save = el("button", { type: "button", class: "primary", text: "Save", "data-needs": "manage-dataflows", hidden: true, onclick: () => finish() });
    const cancel = el("a", { class: "button secondary", href: "/console/flows", text: "Cancel" });
    form.append(el("div", { class: "wizard-buttons" }, back, next, save, cancel));
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" || !event.target.matches("input:not([type=checkbox]):not([type=radio])")) return;
      event.preventDefault();
      (save.hidden ? next : save).click();
    });

    const streaming = () => Boolean(state.spec && (state.spec.attributes || {}).isStreaming);
    const steps = () => (streaming() ? STREAMING_STEPS : STEPS);
    const current = () => steps()[state.index];

    function renderSteps() {
      const names = steps();
      list.replaceChildren(
        ...names.map((name, i) => {
          const item = el("li", { text: sections[name].dataset.title, dataset: { step: name } });
          item.classList.toggle("current", i === state.index);
          item.classList.toggle("done", i < state.index);
          if (i === state.index) item.setAttribute("aria-current", "step");
          if (i < state.index) {
            item.setAttribute("role", "button");
            item.setAttribute("tabindex", "0");
            const reopen = () => show(i);
            item.addEventListener("click", reopen);
            item.addEventListener("keydown", (event) => {
              if (event.key === "Enter" || event.key === " ") {
                event.preventDefault();
                reopen();
              }
            });
          }
          return item;
        })
      );
    }

    function show(i) {
      state.index = i;
      const name = current();
      for (const [s, section] of Object.entries(sections)) section.hidden = s !== name;
      renderSteps();
      back.hidden = i === 0;
      next.hidden = i === steps().length - 1;
      save.hidden = !next.hidden;
      entered(name);
      const heading = $(sections[name], "h2");
      if (heading) heading.focus();
    }

    function showStep(name) {
      const i = steps().indexOf(name);
      if (i >= 0 && i !== state.index) show(i);
    }

    async function go(delta) {
      if (state.busy) return;
      if (delta > 0) {
        state.busy = true;
        next.disabled = true;
        form.setAttribute("aria-busy", "true");
        try {
          HW.clearErrors(sections[current()]);
          general.hidden = true;
          if ((await leave(current())) === false) return;
        } finally {
          state.busy = false;
          next.disabled = false;
          form.removeAttribute("aria-busy");
        }
      }
      show(Math.max(0, Math.min(steps().length - 1, state.index + delta)));
    }

    /* A message next to one field of the current step. */
    function invalid(path, message) {
      HW.showErrors(sections[current()], { report: { errors: [{ path, message }] } });
      return false;
    }

    // --- Account ---
    async function loadConnections() {
      const [specs, flowSpecs] = await Promise.all([listAll(FS + "/connectionSpecs?limit=1000"), listAll(FS + "/flowSpecs?limit=1000")]);
      if (!specs.ok || !flowSpecs.ok) return HW.showErrors(form, problemOf(!specs.ok ? specs : flowSpecs));
      state.flowSpecs = flowSpecs.data.filter((f) => (f.targetConnectionSpecIds || []).includes(DATA_LAKE) && ((f.attributes || {}).isSourceFlow !== false));
      const ingestible = new Set(state.flowSpecs.flatMap((f) => f.sourceConnectionSpecIds || []));
      for (const s of specs.data) if (ingestible.has(s.id) && s.id !== DATA_LAKE) state.specs[s.id] = s;
      const ids = Object.keys(state.specs);
      const conns = ids.length ? await listAll(FS + "/connections?limit=1000&orderby=-createdAt&property=" + encodeURIComponent("connectionSpec.id==" + ids.join(","))) : { ok: true, data: [] };
      if (!conns.ok) return HW.showErrors(form, problemOf(conns));
      state.connections = conns.data;
      connectionSelect.replaceChildren(
        el("option", { value: "", text: state.connections.length ? "Choose an account…" : "No accounts in this sandbox yet: add one below" }),
        ...state.connections.map((c) => el("option", { value: c.id, text: c.name + " — " + specLabel(state.specs[c.connectionSpec.id]) }))
      );
      const newSpec = $(form, "#fw-new-spec");
      const sorted = Object.values(state.specs).sort((a, b) => specLabel(a).localeCompare(specLabel(b)));
      newSpec.replaceChildren(...sorted.map((s) => el("option", { value: s.id, text: specLabel(s) })));
      const link = $(form, "#fw-new-account");
      const point = () => (link.href = "/console/sources/new?spec=" + encodeURIComponent(newSpec.value) + "&next=" + encodeURIComponent("/console/flows/new"));
      newSpec.addEventListener("change", point);
      point();
      const wanted = root.dataset.connection;
      if (wanted && state.connections.some((c) => c.id === wanted)) connectionSelect.value = wanted;
      pickConnection();
    }

    function pickConnection() {
      const conn = state.connections.find((c) => c.id === connectionSelect.value) || null;
      const changed = (conn && conn.id) !== (state.conn && state.conn.id);
      state.conn = conn;
      state.spec = conn ? state.specs[conn.connectionSpec.id] : null;
      const help = $(form, "#fw-connection-help");
      if (!conn) help.textContent = "";
      else if (streaming()) help.textContent = specLabel(state.spec) + ": a streaming source. Its messages arrive at an inlet URL, shown once the dataflow is saved.";
      else help.textContent = specLabel(state.spec) + (ui(state.spec).description ? ": " + ui(state.spec).description : "");
      if (changed) {
        state.columns = [];
        state.sample = [];
        state.object = null;
        state.explored = null;
        $(form, "#fw-data-preview").replaceChildren();
      }
      renderSteps();
    }
    connectionSelect.addEventListener("change", pickConnection);

    // --- Select data ---
    const sourceProps = () => ((((state.spec || {}).sourceSpec || {}).spec || {}).properties || {});
    const isFiles = () => "path" in sourceProps();

    async function enterData() {
      const files = isFiles();
      $(form, "[data-path-pick]").hidden = !files;
      $(form, "[data-format-pick]").hidden = !files;
      const objectLabel = $(form, 'label[for="fw-object"]');
      objectLabel.replaceChildren(files ? "File" : "Object", files ? "" : el("span", { class: "req", "aria-hidden": "true", text: " *" }));
      const select = $(form, "#fw-object");
      if (state.explored === state.conn.id) return;
      state.explored = state.conn.id;
      select.replaceChildren(el("option", { value: "", text: "Loading…" }));
      const r = await HW.api("GET", FS + "/connections/" + encodeURIComponent(state.conn.id) + "/explore?objectType=root");
      if (!r.ok) {
        state.explored = null;
        select.replaceChildren(el("option", { value: "", text: "—" }));
        return HW.showErrors(sections.data, { report: { errors: [{ path: "source.params.tableName", message: HW.problemText(r.data) }] } });
      }
      const items = (Array.isArray(r.data) ? r.data : []).filter((i) => i.type !== "folder");
      select.replaceChildren(
        el("option", { value: "", text: items.length ? (files ? "Choose a file, or type a path…" : "Choose an object…") : "Nothing to read here" }),
        ...items.map((i) => el("option", { value: i.path || i.name, text: (i.label && i.label !== i.name ? i.name + " (" + i.label + ")" : i.name) }))
      );
    }

    $(form, "#fw-object").addEventListener("change", () => {
      const value = $(form, "#fw-object").value;
      if (isFiles() && value) {
        $(form, "#fw-path").value = value;
        $(form, "#fw-format").value = formatOf(value);
      }
      if (value) preview();
    });
    $(form, "#fw-path").addEventListener("change", () => ($(form, "#fw-format").value = formatOf($(form, "#fw-path").value)));
    $(form, "#fw-preview").addEventListener("click", () => preview());

    function wanted() {
      if (isFiles()) return { kind: "file", name: $(form, "#fw-path").value.trim(), format: $(form, "#fw-format").value, path: "source.params.path" };
      return { kind: "table", name: $(form, "#fw-object").value, path: "source.params.tableName" };
    }

    async function preview() {
      const want = wanted();
      HW.clearErrors(sections.data);
      const box = $(form, "#fw-data-preview");
      if (!want.name) return invalid(want.path, want.kind === "file" ? "Type the path of a file, or choose one." : "Choose the object to read.");
      box.replaceChildren(el("p", { class: "muted", text: "Loading the preview…" }));
      const r = await HW.api("GET", FS + "/connections/" + encodeURIComponent(state.conn.id) + "/explore?objectType=table&object=" + encodeURIComponent(want.name));
      if (!r.ok) {
        box.replaceChildren();
        state.object = null;
        return invalid(want.path, HW.problemText(r.data));
      }
      const cols = ((r.data.schema || {}).columns || []).map((c) => {
        const [type, label] = columnType(c.type);
        return { name: c.name, type, label, original: c.type };
      });
      state.columns = cols;
      state.sample = r.data.data || [];
      state.object = want;
      box.replaceChildren(
        el("h3", { text: want.name }),
        el("p", { class: "muted", text: count(cols.length, "column") + " · the first " + count(state.sample.length, "row") }),
        el("div", { class: "scroll" },
          HW.table(
            cols.map((c) => ({ label: c.name, value: (row) => cell(row[c.name]) })),
            state.sample,
            { caption: "Preview of " + want.name, empty: "No rows." }
          )
        )
      );
      // The column types, in words, under their names.
      box.querySelectorAll("thead th").forEach((th, i) => th.append(el("span", { class: "col-type", text: cols[i].label })));
      return true;
    }

    // --- Dataset ---
    function enterTarget() {
      const box = $(form, "#fw-target");
      const names = JSON.stringify(state.columns.map((c) => c.name));
      if (state.saved) return; // created already: save() answers the same
      if (state.target && state.targetColumns === names) return;
      box.replaceChildren();
      state.targetColumns = names;
      state.target = window.HWDatasetTarget.mount(box, { columns: state.columns.map((c) => ({ name: c.name, type: c.type })) });
    }

    async function leaveTarget() {
      if (state.target.validate()) return false;
      const saved = await state.target.save();
      if (!saved.ok) {
        if (!(((saved.problem || {}).report || {}).errors || []).length) HW.showErrors(sections.target, saved.problem);
        return false;
      }
      state.saved = saved;
      // Made (or picked) for good: the component stays as a record of it, no longer editable.
      const note = el("p", { class: "outcome ok", "data-target-saved": "" }, state.target.describe() + " — ready. This dataflow writes to it.");
      $(form, "#fw-target").before(note);
      state.target.element.inert = true;
      state.target.element.classList.add("saved");
      return true;
    }

    // --- Mapping ---
    function enterMapping() {
      const box = $(form, "#fw-mapping");
      if (!state.editor) state.editor = HWMappingEditor.mount(box, { schemaId: state.saved.schemaId, previewBox: $(form, "#fw-mapping-result") });
      else state.editor.setSchema(state.saved.schemaId);
      state.editor.setColumns(state.columns.map((c) => c.name));
      state.editor.setSample(state.sample);
      $(form, "#fw-mapping-preview").hidden = streaming();
      $(form, "#fw-mapping-result").hidden = streaming();
      $(form, "#fw-mapping-note").textContent = streaming()
        ? "Optional. Messages sent as XDM need no mapping; raw JSON messages are mapped by these rows (sources are the messages' attributes)."
        : "Map the source's columns to fields of the dataset's schema “" + state.saved.schemaTitle + "”. The preview maps the sample rows of the previous step.";
    }
    $(form, "#fw-mapping-preview").addEventListener("click", () => state.editor.preview(state.sample));

    async function leaveMapping() {
      const rows = state.editor.filled();
      if (!rows.length) {
        if (streaming()) return true;
        return invalid("mappings", "Map at least one column.");
      }
      const outcome = streaming() ? { ok: !(await state.editor.validate()) } : await state.editor.preview(state.sample);
      return outcome.ok;
    }

    // --- Scheduling ---
    function enterSchedule() {
      const delta = $(form, "#fw-delta");
      const before = delta.value;
      delta.replaceChildren(el("option", { value: "", text: "None (read everything each run)" }), ...state.columns.map((c) => el("option", { value: c.name, text: c.name + " (" + c.label + ")" })));
      const guess = DELTA_GUESSES.find((g) => state.columns.some((c) => c.name === g));
      delta.value = state.columns.some((c) => c.name === before) ? before : guess || "";
      if (!$(form, "#fw-start").value) $(form, "#fw-start").value = localNow();
      intervalShown();
    }

    function intervalShown() {
      const once = $(form, "#fw-frequency").value === "once";
      $(form, "#fw-interval").disabled = once;
      $(form, "#fw-interval").closest(".field").classList.toggle("muted", once);
    }
    $(form, "#fw-frequency").addEventListener("change", intervalShown);

    function schedule() {
      const frequency = $(form, "#fw-frequency").value;
      const out = { frequency, startTime: toEpoch($(form, "#fw-start").value) };
      if (frequency !== "once") {
        const interval = $(form, "#fw-interval").value;
        out.interval = interval === "" ? undefined : Number(interval);
      }
      return out;
    }

    /* The schedule's rules (an interval of at least 15 for minutes, a start time) are the API's: a refusal
     * at Save brings the person back here, the words next to the field. */
    function leaveSchedule() {
      return true;
    }

    // --- Review ---
    function enterReview() {
      const name = $(form, "#fw-name");
      if (!name.value) {
        const what = state.object ? state.object.name : specLabel(state.spec);
        name.value = what + " to " + (state.saved.schemaTitle || "the lake");
      }
      const rows = [
        ["Account", state.conn.name + " (" + specLabel(state.spec) + ")"],
      ];
      if (!streaming()) rows.push([state.object.kind === "file" ? "File" : "Object", state.object.name + " · " + count(state.columns.length, "column")]);
      rows.push(["Dataset", state.target.describe()]);
      const maps = state.editor.filled();
      rows.push(["Mapping", maps.length ? maps.map((m) => (m.sourceType === "STATIC" ? "“" + m.source + "”" : m.source) + " → " + m.destination) : ["None"]]);
      if (!streaming()) {
        const s = schedule();
        const when = s.startTime ? new Date(s.startTime * 1000).toLocaleString() : "now";
        rows.push(["Schedule", s.frequency === "once" ? "Once, at " + when : "Every " + (s.interval === 1 ? s.frequency : s.interval + " " + s.frequency + "s") + ", from " + when]);
        rows.push(["Delta column", $(form, "#fw-delta").value || "None: every run reads everything"]);
      } else {
        rows.push(["Schedule", "Continuous (streaming)"]);
      }
      $(form, "#fw-review").replaceChildren(
        ...rows.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", {}, Array.isArray(value) ? el("ul", { class: "plain" }, value.map((v) => el("li", { text: v }))) : value)])
      );
    }

    function entered(name) {
      if (name === "data") enterData();
      if (name === "target") enterTarget();
      if (name === "mapping") enterMapping();
      if (name === "schedule") enterSchedule();
      if (name === "review") enterReview();
    }

    async function leave(name) {
      if (name === "connection") {
        if (!state.conn) return invalid("source.baseConnectionId", "Choose an account, or add a new one.");
        return true;
      }
      if (name === "data") {
        const want = wanted();
        if (state.object && state.object.name === want.name && state.object.kind === want.kind) {
          state.object.format = want.format;
          return true;
        }
        return preview();
      }
      if (name === "target") return leaveTarget();
      if (name === "mapping") return leaveMapping();
      if (name === "schedule") return leaveSchedule();
      return true;
    }

    // --- Save ---
    /* The flow spec for this account into the lake: with a Mapping transformation when there is a
     * mapping (streaming accounts have one spec with and one without); a spec that says it is the
     * "Same as" another one (kept for a tutorial's request) comes last. */
    function flowSpec(withMapping) {
      const specId = state.spec.id;
      const fitting = state.flowSpecs.filter((f) => (f.sourceConnectionSpecIds || []).includes(specId));
      const maps = (f) => (f.transformationSpecs || []).some((t) => t.name === "Mapping");
      const alias = (f) => /^Same as /.test(f.description || "");
      fitting.sort((a, b) => (maps(b) === withMapping) - (maps(a) === withMapping) || alias(a) - alias(b));
      return fitting[0] || null;
    }

    /* An API error of one call: the paths it names are prefixed (the fields of the wizard say whose they
     * are: source., flow.); the step holding the first field named is shown, errors next to the fields. */
    function report(problem, prefix) {
      const errors = (problem && problem.report && problem.report.errors) || [];
      const placed = [];
      const rest = [];
      for (const e of errors) {
        const path = prefix + (e.path || "");
        const field = e.path ? HW.fieldFor(form, path) : null;
        (field ? placed : rest).push(field ? { ...e, path } : e);
      }
      const first = placed.length ? HW.fieldFor(form, placed[0].path) : null;
      const section = first && first.closest("section[data-step]");
      if (section) showStep(section.dataset.step);
      const shown = { ...problem, report: { ...(problem.report || {}), errors: [...placed, ...rest] } };
      if (!errors.length) {
        showStep("review");
        return HW.showErrors(form, problem);
      }
      HW.showErrors(form, shown);
    }

    async function finish() {
      if (state.busy) return;
      HW.clearErrors(form);
      const name = $(form, "#fw-name").value.trim();
      if (!name) return invalid("flow.name", "Name the dataflow.");
      state.busy = true;
      save.disabled = true;
      form.setAttribute("aria-busy", "true");
      const made = []; // [path] of what this attempt created, deleted again when a later call fails
      const undo = async () => {
        for (const path of made.reverse()) await HW.api("DELETE", path);
      };
      try {
        const description = $(form, "#fw-description").value.trim();
        const stream = streaming();
        const maps = state.editor.filled();
        const mapped = maps.length > 0;
        const spec = flowSpec(mapped);
        if (!spec) return HW.showErrors(form, { detail: "No kind of dataflow reads " + specLabel(state.spec) + " accounts into a dataset." });

        const sourceBody = { name: name + " source", baseConnectionId: state.conn.id, connectionSpec: { id: state.spec.id, version: state.spec.version || "1.0" } };
        if (stream) sourceBody.data = { format: "json" };
        else if (state.object.kind === "file") Object.assign(sourceBody, { data: { format: state.object.format }, params: { path: state.object.name } });
        else
          Object.assign(sourceBody, {
            data: { format: "tabular" },
            params: { tableName: state.object.name, columns: state.columns.map((c) => ({ name: c.name, type: c.type, meta: { originalType: c.original } })) },
          });
        const source = await HW.api("POST", FS + "/sourceConnections", sourceBody);
        if (!source.ok) return report(problemOf(source), "source.");
        made.push(FS + "/sourceConnections/" + encodeURIComponent(source.data.id));

        const target = await HW.api("POST", FS + "/targetConnections", {
          name: name + " target",
          data: { schema: { id: state.saved.schemaId, version: SCHEMA_VERSION } },
          params: { dataSetId: state.saved.datasetId },
          connectionSpec: { id: DATA_LAKE, version: "1.0" },
        });
        if (!target.ok) {
          await undo();
          return report(problemOf(target), "target.");
        }
        made.push(FS + "/targetConnections/" + encodeURIComponent(target.data.id));

        let mappingId = null;
        if (mapped) {
          const mapping = await HW.api("POST", "/data/foundation/conversion/mappingSets", { name: name + " mapping", xdmSchema: state.saved.schemaId, mappings: state.editor.mappings() });
          if (!mapping.ok) {
            await undo();
            showStep("mapping");
            const rest = state.editor.showProblem(problemOf(mapping));
            if (rest.length || !((problemOf(mapping).report || {}).errors || []).length) HW.showErrors(sections.mapping, rest.length ? { report: { errors: rest } } : problemOf(mapping));
            return;
          }
          mappingId = mapping.data.id;
          made.push("/data/foundation/conversion/mappingSets/" + encodeURIComponent(mappingId));
        }

        const transformations = [];
        const delta = stream ? "" : $(form, "#fw-delta").value;
        if (delta) transformations.push({ name: "Copy", params: { deltaColumn: { name: delta } } });
        if (mappingId) transformations.push({ name: "Mapping", params: { mappingId } });
        const flowBody = {
          name,
          description,
          flowSpec: { id: spec.id, version: spec.version || "1.0" },
          sourceConnectionIds: [source.data.id],
          targetConnectionIds: [target.data.id],
          transformations,
        };
        if (!stream && spec.scheduleSpec) flowBody.scheduleParams = schedule();
        const flow = await HW.api("POST", FS + "/flows", flowBody);
        if (!flow.ok) {
          await undo();
          return report(problemOf(flow), "flow.");
        }
        const flowId = flow.data.id;
        if (!stream) {
          location.href = "/console/flows/" + encodeURIComponent(flowId);
          return;
        }
        await done(flowId);
      } finally {
        state.busy = false;
        save.disabled = false;
        form.removeAttribute("aria-busy");
      }
    }

    /* A streaming dataflow: where to send its messages. */
    async function done(flowId) {
      const [flow, conn] = await Promise.all([
        HW.api("GET", FS + "/flows/" + encodeURIComponent(flowId)),
        HW.api("GET", FS + "/connections/" + encodeURIComponent(state.conn.id)),
      ]);
      const options = (flow.ok && flow.data.items[0].options) || {};
      const auth = (conn.ok && conn.data.items[0].auth) || {};
      // The account's inlet (HTTP API) takes messages for any of its dataflows; Customer.io's is the flow's.
      const inlet = (auth.params || {}).inletUrl || options.inletUrl || "";
      const href = "/console/flows/" + encodeURIComponent(flowId);
      const body = $(root, "#fw-done-body");
      body.replaceChildren(
        el("p", { text: "Messages POSTed to this inlet land in " + state.target.describe().replace(/^Existing dataset /, "the dataset ") + "." }),
        el(
          "div",
          { class: "field wide" },
          el("label", { for: "fw-inlet", text: "Inlet URL" }),
          el("div", { class: "row" }, el("input", { type: "text", id: "fw-inlet", readonly: true, value: inlet, class: "inlet" }), HW.copyButton(inlet, "Copy", "Copy the inlet URL"))
        ),
        el(
          "div",
          { class: "field wide" },
          el("label", { for: "fw-flow-id", text: "Dataflow ID" }),
          el("div", { class: "row" }, el("input", { type: "text", id: "fw-flow-id", readonly: true, value: flowId, class: "inlet" }), HW.copyButton(flowId, "Copy", "Copy the dataflow ID"))
        ),
        el("p", { class: "help", text: "An XDM message names the dataflow in header.flowId; raw JSON is sent with the header x-adobe-flow-id." }),
        el("p", {}, el("a", { href, text: "Open the dataflow" }))
      );
      form.hidden = true;
      const panel = $(root, "#fw-done");
      panel.hidden = false;
      $(panel, "h2").focus();
    }

    show(0);
    await loadConnections();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector('[data-page="flow-new"]');
    if (root) Promise.resolve(start(root)).finally(() => root.setAttribute("data-ready", "true"));
  });
})();
