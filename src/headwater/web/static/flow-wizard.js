/* Headwater console: the Create dataflow wizard (AEP's sources workflow), through the public API only.
 *
 * Account (a source connection of the sandbox) → Select data (an object or file, with a preview of its
 * rows; the columns come from it) → Dataset (HWDatasetTarget: existing, or new with a new schema) →
 * Mapping (HWMappingEditor, previewed on the sample rows) → Scheduling (on demand, once or repeatedly;
 * the delta column) → Review → Save. A streaming account skips Select data and Scheduling, its mapping is
 * optional (XDM messages need none), and the saved page shows the inlet URL to send to.
 *
 * Save creates the source connection, the target connection to the dataset, the mapping set and the
 * flow; when one is refused, what this Save created is deleted again and the errors are shown next to
 * the fields of the step they belong to. The dataset (and a new schema) are created on leaving the
 * Dataset step, because the mapping needs the schema's fields.
 */
(function () {
  "use strict";

  const FS = "/data/foundation/flowservice";
  const CONV = "/data/foundation/conversion";
  const { api, el } = HW;
  /* Flow specs kept only so a tutorial's request works (the same as another spec): never offered. */
  const LEGACY_FLOW_SPECS = new Set(["9753525b-82c7-4dce-8a9b-5ccfce2b9876"]);
  const FILE_FORMATS = [
    [/\.(csv|tsv|txt)(\.gz)?$/i, "delimited"],
    [/\.(json|jsonl|ndjson)(\.gz)?$/i, "json"],
    [/\.parquet$/i, "parquet"],
  ];
  const problemText = (p) => (p && (p.detail || p.title)) || (typeof p === "string" ? p : "The request failed.");


  const ui = (spec) => (spec.attributes && spec.attributes.uiAttributes) || {};
  const specLabel = (spec) => (spec ? ui(spec).label || spec.name : "");

  function dateTimeLocal(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
  }

  class Wizard {
    constructor(root) {
      this.root = root;
      this.q = (selector) => root.querySelector(selector);
      this.lake = root.dataset.lake;
      this.connections = [];
      this.specs = {};
      this.flowSpecs = [];
      this.connection = null;
      this.spec = null;
      this.columns = [];
      this.sample = [];
      this.object = "";
      this.target = null;
      this.targetColumns = null;
      this.saved = null; // {datasetId, schemaId, schemaTitle} once the Dataset step saved it
      this.editor = null;
      this.editorKey = null;
    }

    async start() {
      const select = this.q("#fw-connection");
      const next = this.q("[data-start]");
      // Next is disabled in the page until the accounts are listed (a click meanwhile did nothing).
      next.addEventListener("click", () => this.choose(select.value));
      const [connections, specs, flowSpecs] = await Promise.all([
        HW.listAll(FS + "/connections?limit=100"),
        HW.listAll(FS + "/connectionSpecs?limit=1000"),
        HW.listAll(FS + "/flowSpecs?limit=100"),
      ]);
      const pick = this.q("[data-pick]");
      if (!connections.ok || !specs.ok || !flowSpecs.ok) {
        return HW.showErrors(pick, (connections.ok ? (specs.ok ? flowSpecs : specs) : connections).data);
      }
      for (const s of specs.items) this.specs[s.id] = s;
      this.flowSpecs = flowSpecs.items.filter((f) => !LEGACY_FLOW_SPECS.has(f.id) && (f.attributes || {}).isSourceFlow);
      // Accounts whose spec feeds the data lake through some flow spec.
      const feeds = new Set(this.flowSpecs.filter((f) => (f.targetConnectionSpecIds || []).includes(this.lake)).flatMap((f) => f.sourceConnectionSpecIds || []));
      this.connections = connections.items.filter((c) => feeds.has((c.connectionSpec || {}).id));
      select.replaceChildren(
        el("option", { value: "", text: this.connections.length ? "Choose an account…" : "No source account in this sandbox yet" }),
        ...this.connections.map((c) => el("option", { value: c.id, text: `${c.name} (${specLabel(this.specs[c.connectionSpec.id])})` }))
      );
      next.disabled = false;
      const wanted = this.root.dataset.connection;
      if (wanted && this.connections.some((c) => c.id === wanted)) {
        select.value = wanted;
        this.choose(wanted);
      }
    }

    choose(id) {
      const pick = this.q("[data-pick]");
      HW.clearErrors(pick);
      const connection = this.connections.find((c) => c.id === id);
      if (!connection) {
        return HW.showErrors(pick, { report: { errors: [{ path: "baseConnectionId", message: "Choose the account to read from." }] } });
      }
      this.connection = connection;
      this.spec = this.specs[connection.connectionSpec.id];
      const candidates = this.flowSpecs.filter(
        (f) => (f.sourceConnectionSpecIds || []).includes(this.spec.id) && (f.targetConnectionSpecIds || []).includes(this.lake)
      );
      this.streaming = candidates.some((f) => (f.attributes || {}).frequency === "streaming");
      this.candidates = candidates;
      pick.hidden = true;
      const box = this.q("[data-wizard]");
      if (this.streaming) {
        box.querySelector('[data-step="data"]').remove();
        box.querySelector('[data-step="schedule"]').remove();
      }
      box.hidden = false;
      this.q("[data-account]").replaceChildren(
        "Account: ",
        el("strong", { text: connection.name }),
        ` (${specLabel(this.spec)}) · `,
        el("a", { href: location.pathname, text: "Choose another" })
      );
      this.wizard = HW.wizard(box, { onStep: (name) => this.leave(name), onShow: (name) => this.enter(name) });
      this.q("#fw-name").value = `${connection.name} to the data lake`;
      this.wireSteps();
      this.enter(this.wizard.current());
    }

    wireSteps() {
      const load = this.q("[data-load]");
      if (load) {
        load.addEventListener("click", () => this.loadObject());
        this.q("#fw-object").addEventListener("change", () => this.loadObject());
        this.exploreRoot();
      }
      for (const radio of this.root.querySelectorAll('input[name="fw-when"]')) radio.addEventListener("change", () => this.syncSchedule());
      const start = this.q("#fw-start");
      if (start) start.value = dateTimeLocal(new Date());
      this.q("[data-preview-mapping]").addEventListener("click", () => this.editor && this.editor.preview());
      this.q("#fw-no-mapping").addEventListener("change", () => this.syncNoMapping());
      this.q("[data-save]").addEventListener("click", () => this.save());
      this.syncSchedule();
    }

    /* --- Select data --- */
    isFiles() {
      const properties = ((this.spec.sourceSpec || {}).spec || {}).properties || {};
      return "path" in properties && !("tableName" in properties);
    }

    async exploreRoot() {
      const help = this.q("#fw-object-help");
      help.textContent = "Reading the account's objects…";
      const r = await api("GET", `${FS}/connections/${encodeURIComponent(this.connection.id)}/explore?objectType=root`);
      if (!r.ok) {
        help.textContent = "The account could not be explored: " + problemText(r.data) + " Type the name instead.";
        return;
      }
      const items = (Array.isArray(r.data) ? r.data : []).filter((i) => i.type !== "folder");
      this.q("#fw-objects").replaceChildren(...items.map((i) => el("option", { value: i.path || i.name, text: i.label && i.label !== i.name ? i.label : undefined })));
      help.textContent = this.isFiles()
        ? `${items.length} file${items.length === 1 ? "" : "s"} at the top of the folder; type a path (or a pattern such as exports/*.csv) for others.`
        : `${items.length} object${items.length === 1 ? "" : "s"}; pick one or type its name.`;
    }

    async loadObject() {
      const section = this.q('[data-step="data"]');
      const name = this.q("#fw-object").value.trim();
      HW.clearErrors(section);
      if (!name) {
        HW.showErrors(section, { report: { errors: [{ path: "params", message: "Choose an object or file to read." }] } });
        return false;
      }
      if (name === this.object && this.columns.length) return true;
      const out = this.q("[data-preview]");
      out.replaceChildren(el("p", { class: "muted", text: "Reading " + name + "…" }));
      const r = await api("GET", `${FS}/connections/${encodeURIComponent(this.connection.id)}/explore?objectType=table&object=${encodeURIComponent(name)}`);
      if (!r.ok) {
        out.replaceChildren();
        HW.showErrors(section, { report: { errors: [{ path: "params", message: problemText(r.data) }] } });
        return false;
      }
      this.object = name;
      this.columns = ((r.data.schema && r.data.schema.columns) || []).map((c) => ({ name: c.name, type: c.type }));
      this.sample = (r.data.data || []).slice(0, 10);
      const shown = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
      out.replaceChildren(
        el("h3", { text: "Preview of " + name }),
        el("p", { class: "muted", text: `${this.columns.length} columns; the first ${this.sample.length} rows.` }),
        el(
          "table",
          { class: "grid preview-table", "aria-label": "Preview of " + name },
          el("thead", {}, el("tr", {}, this.columns.map((c) => el("th", { scope: "col" }, c.name, el("span", { class: "type", text: " " + HWSchemaBuilder.columnType(c.type) }))))),
          el("tbody", {}, this.sample.map((row) => el("tr", {}, this.columns.map((c) => el("td", { text: shown(row[c.name]) })))))
        )
      );
      const delta = this.q("#fw-delta");
      // A modification time is the likely delta column (LastModifiedDate, updatedAt, modified_at …).
      const timed = this.columns.filter((c) => /time|date/i.test(String(c.type)) || /date|time/i.test(c.name));
      const likely = timed.find((c) => /modified|updated|modstamp/i.test(c.name));
      delta.replaceChildren(el("option", { value: "", text: "None: read every row each run" }), ...this.columns.map((c) => el("option", { value: c.name, text: c.name })));
      if (likely) delta.value = likely.name;
      return true;
    }

    /* --- steps --- */
    async leave(step) {
      const section = this.q(`[data-step="${step}"]`);
      if (step === "data") return this.loadObject();
      if (step === "target") {
        const problem = this.target.validate();
        if (problem) return false;
        const result = await this.target.save();
        if (!result.ok) return false; // the component shows the errors next to its fields
        this.saved = result;
        return true;
      }
      if (step === "mapping") {
        if (this.skipMapping()) return true;
        HW.clearErrors(section);
        if (!this.editor.mappings().length) {
          HW.showErrors(section, { detail: "Map at least one column to a field of the schema." });
          return false;
        }
        return this.editor.preview();
      }
      if (step === "schedule") {
        HW.clearErrors(section);
        return true;
      }
      return true;
    }

    enter(step) {
      if (step === "target" && (!this.target || this.targetColumns !== this.object) && !(this.saved && this.target)) {
        this.targetColumns = this.object;
        this.target = HWDatasetTarget.mount(this.q("[data-target]"), { columns: this.columns });
      }
      if (step === "mapping") this.mountEditor();
      if (step === "review") this.summarize();
    }

    mountEditor() {
      const key = (this.saved && this.saved.schemaId) + "|" + this.object;
      const note = this.q("[data-mapping-note]");
      this.q("[data-no-mapping-field]").hidden = !this.streaming;
      note.textContent = this.streaming
        ? "Messages in the schema's shape (XDM) need no mapping. Raw JSON messages are mapped: a row per field to fill."
        : `Columns of ${this.object} on the left, fields of “${this.saved.schemaTitle}” on the right; a column with a field of the same name is mapped already.`;
      if (this.editorKey === key) return;
      this.editorKey = key;
      this.editor = HWMappingEditor.mount(this.q("[data-mapping]"), { schemaId: this.saved.schemaId, columns: this.columns, sample: this.sample });
      if (this.streaming) this.q("#fw-no-mapping").checked = true;
      this.syncNoMapping();
    }

    skipMapping() {
      return this.streaming && this.q("#fw-no-mapping").checked;
    }

    syncNoMapping() {
      const skip = this.skipMapping();
      this.q("[data-mapping]").hidden = skip;
      this.q("[data-preview-mapping]").hidden = skip || !this.sample.length;
    }

    syncSchedule() {
      const when = this.when();
      const repeat = this.q("[data-repeat]");
      if (!repeat) return;
      repeat.hidden = when !== "repeat";
      this.q("[data-start-field]").hidden = when === "none";
    }

    when() {
      const checked = this.root.querySelector('input[name="fw-when"]:checked');
      return checked ? checked.value : "none";
    }

    scheduleParams() {
      const when = this.when();
      if (this.streaming || when === "none") return null;
      const start = Date.parse(this.q("#fw-start").value);
      const params = { startTime: Math.floor((isNaN(start) ? Date.now() : start) / 1000), frequency: "once" };
      if (when === "repeat") {
        params.frequency = this.q("#fw-frequency").value;
        params.interval = Number(this.q("#fw-interval").value);
      }
      return params;
    }

    flowSpec() {
      const mapped = !this.skipMapping();
      const fits = (f) => !this.streaming || (f.transformationSpecs || []).some((t) => t.name === "Mapping") === mapped;
      return this.candidates.find(fits) || this.candidates[0];
    }

    summarize() {
      const schedule = this.scheduleParams();
      const every = schedule && schedule.frequency !== "once" ? `every ${schedule.interval} ${schedule.frequency}${schedule.interval === 1 ? "" : "s"}, from ` : "once, at ";
      const facts = [
        ["Account", `${this.connection.name} (${specLabel(this.spec)})`],
        this.streaming ? ["Data", "Messages sent to the account's inlet"] : ["Data", this.object],
        ["Dataset", this.target.describe()],
        ["Mapping", this.skipMapping() ? "None: messages are in the schema's shape" : `${this.editor.mappings().length} mapped fields`],
      ];
      if (!this.streaming) {
        facts.push(["Runs", schedule ? every + HW.when(schedule.startTime * 1000) : "On demand"]);
        facts.push(["Delta column", this.q("#fw-delta").value || "None: each run reads every row"]);
      }
      this.q("[data-summary]").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
    }

    /* --- save --- */
    sourceBody() {
      const body = { name: this.q("#fw-name").value.trim() || this.connection.name, baseConnectionId: this.connection.id, connectionSpec: { id: this.spec.id, version: "1.0" } };
      if (this.streaming) return { ...body, data: { format: "json" }, params: {} };
      if (this.isFiles()) {
        const format = (FILE_FORMATS.find(([re]) => re.test(this.object)) || [null, "delimited"])[1];
        return { ...body, data: { format }, params: { path: this.object } };
      }
      return { ...body, data: { format: "tabular" }, params: { tableName: this.object, columns: this.columns.map((c) => ({ name: c.name })) } };
    }

    async save() {
      const review = this.q('[data-step="review"]');
      HW.clearErrors(review);
      const name = this.q("#fw-name").value.trim();
      if (!name) return HW.showErrors(review, { report: { errors: [{ path: "name", message: "Give the dataflow a name." }] } });
      const button = this.q("[data-save]");
      button.disabled = true;
      const made = [];
      const undo = async () => {
        for (const path of made.reverse()) await api("DELETE", path);
      };
      try {
        const source = await api("POST", FS + "/sourceConnections", this.sourceBody());
        if (!source.ok) return this.refused(source.data, this.streaming ? "review" : "data");
        made.push(FS + "/sourceConnections/" + source.data.id);
        const target = await api("POST", FS + "/targetConnections", {
          name: name + " (dataset)",
          data: { schema: { id: this.saved.schemaId, version: "application/vnd.adobe.xed-full+json;version=1.0" } },
          params: { dataSetId: this.saved.datasetId },
          connectionSpec: { id: this.lake, version: "1.0" },
        });
        if (!target.ok) return (await undo(), this.refused(target.data, "target"));
        made.push(FS + "/targetConnections/" + target.data.id);
        const transformations = [];
        if (!this.streaming) {
          const delta = this.q("#fw-delta").value;
          transformations.push({ name: "Copy", params: delta ? { deltaColumn: { name: delta } } : {} });
        }
        if (!this.skipMapping()) {
          const mapping = await api("POST", CONV + "/mappingSets", { name: name + " mapping", xdmSchema: this.saved.schemaId, mappings: this.editor.mappings() });
          if (!mapping.ok) {
            await undo();
            this.wizard.show("mapping");
            this.editor.showErrors(mapping.data);
            return;
          }
          made.push(CONV + "/mappingSets/" + mapping.data.id);
          transformations.push({ name: "Mapping", params: { mappingId: mapping.data.id } });
        }
        const spec = this.flowSpec();
        const flow = { name, flowSpec: { id: spec.id, version: "1.0" }, sourceConnectionIds: [source.data.id], targetConnectionIds: [target.data.id], transformations };
        const description = this.q("#fw-description").value.trim();
        if (description) flow.description = description;
        const schedule = this.scheduleParams();
        if (schedule) flow.scheduleParams = schedule;
        const saved = await api("POST", FS + "/flows", flow);
        if (!saved.ok) return (await undo(), this.refused(saved.data, "review"));
        this.done(saved.data.id);
      } finally {
        button.disabled = false;
      }
    }

    /* Errors go to the step holding the field they name (else to ``fallback``). */
    refused(problem, fallback) {
      const errors = (problem && problem.report && problem.report.errors) || [];
      let step = fallback;
      for (const e of errors) {
        const path = e.path || "";
        if (path.startsWith("scheduleParams") || path.startsWith("transformations[0]")) step = this.streaming ? "review" : "schedule";
        else if (path.startsWith("params") && !this.streaming) step = "data";
        else continue;
        break;
      }
      this.wizard.show(step);
      HW.showErrors(this.q(`[data-step="${step}"]`), problem);
    }

    async done(flowId) {
      const href = "/console/flows/" + encodeURIComponent(flowId);
      if (!this.streaming) {
        location.href = href;
        return;
      }
      // A streaming flow: the inlet to send to, then the flow's page is where this URL now points.
      const connection = await api("GET", FS + "/connections/" + encodeURIComponent(this.connection.id));
      const inlet = connection.ok ? ((connection.data.items[0].auth || {}).params || {}).inletUrl : "";
      this.q("[data-wizard]").hidden = true;
      const panel = this.q("[data-done]");
      panel.hidden = false;
      this.q("[data-done-text]").textContent = "Messages sent to the inlet now land in the dataset, about a second after they are accepted.";
      if (inlet) {
        this.q("[data-inlet]").replaceChildren(
          el("div", { class: "field" }, el("label", { for: "fw-inlet", text: "Inlet URL" }), el("input", { type: "text", id: "fw-inlet", value: inlet, readonly: true })),
          HW.copyButton(inlet, "Copy", "Copy the inlet URL"),
          el("p", { class: "help", text: `POST messages to it with "flowId": "${flowId}" in their header.` })
        );
      }
      const link = this.q("[data-flow-link]");
      link.href = href;
      history.replaceState(null, "", href);
      panel.querySelector("h2").focus();
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("flow-wizard");
    if (root) new Wizard(root).start();
  });
})();
