/* Data 360 server-to-server connectors, through the same API as every client (shared pieces in data360.js).
 *
 *   connectors  GET/POST /services/data/v62.0/ssot/connections
 *   connector   GET/PATCH .../connections/{id}; .../schema (GET View Full Schema, PUT upload/update) and
 *               .../schema/actions/preview (the events before saving; an update's additive check);
 *               GET .../ssot/data-streams?connectorId= (the connector's data streams)
 */
(function () {
  "use strict";

  const { api, el } = window.HW;
  const { SSOT, CONSOLE, problemOf, showErrors, fieldError, busy, setHeading, copyable, facts, yes, categoryBadge, link, currentSpace, streamTable, VIEWS } =
    window.HWData360;
  const MAX_UPLOAD = 1024 * 1024; // the API takes JSON bodies of at most 1 MB

  async function connectorsView() {
    const form = document.getElementById("connector-form");
    const toggle = document.getElementById("connector-new");
    const open = (shown) => {
      form.hidden = !shown;
      toggle.setAttribute("aria-expanded", String(shown));
      if (shown) form.elements.label.focus();
      else toggle.focus();
    };
    toggle.addEventListener("click", () => open(form.hidden));
    document.getElementById("connector-cancel").addEventListener("click", () => open(false));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const label = form.elements.label.value.trim();
      if (!label) return fieldError(form, "label", "Enter the app name.");
      const result = await api("POST", `${SSOT}/connections`, {
        label,
        connectorType: "StreamingApp",
        streamingAppType: form.elements.streamingAppType.value,
      });
      if (!result.ok) return showErrors(form, problemOf(result));
      location.href = `${CONSOLE}/connectors/${encodeURIComponent(result.data.id)}`;
    });

    const box = document.getElementById("connector-list");
    const result = await api("GET", `${SSOT}/connections?connectorType=StreamingApp`);
    busy(box, false);
    if (!result.ok) {
      box.replaceChildren();
      return HW.showErrors(document, problemOf(result));
    }
    const rows = (result.data.connections || []).slice().sort((a, b) => String(b.createdDate).localeCompare(String(a.createdDate)));
    box.replaceChildren(
      HW.table(
        [
          { label: "App name", value: (c) => link(`${CONSOLE}/connectors/${encodeURIComponent(c.id)}`, c.label) },
          { label: "Developer name", value: (c) => el("code", { text: c.name }) },
          { label: "Source ID", value: (c) => copyable(c.sourceId, "the Source ID of " + c.label) },
          {
            label: "Events",
            value: (c) =>
              c.events.length
                ? el("span", {}, c.events.map((e) => el("span", { class: "event-chip" }, e.developerName, " ", categoryBadge(e.category))))
                : el("span", { class: "muted", text: "No schema yet" }),
          },
          { label: "Schema version", value: (c) => (c.schemaVersion ? String(c.schemaVersion) : "—") },
          { label: "Created", value: (c) => HW.when(c.createdDate) },
        ],
        rows,
        { caption: "Server-to-server connectors", empty: "No connectors in this sandbox yet. Create one with New connector." }
      )
    );
  }

  /** The events of a schema as the API previews them: category, primary key, fields with types. */
  function eventsPreview(events, changes) {
    const addedEvents = new Set((changes && changes.addedEvents) || []);
    const addedFields = new Set(((changes && changes.addedFields) || []).map((f) => f.event + "." + f.field));
    return events.map((e) => {
      const isNew = changes && addedEvents.has(e.developerName);
      const id = "event-" + e.developerName + "-" + Math.random().toString(36).slice(2, 7);
      return el(
        "section",
        { class: "event-preview", "aria-labelledby": id },
        el(
          "h3",
          { id },
          e.masterLabel,
          " ",
          el("code", { text: e.developerName }),
          " ",
          categoryBadge(e.category),
          isNew ? el("span", { class: "badge added", text: "New event" }) : null
        ),
        el("p", { class: "muted" }, "Event category ", el("strong", { text: e.category }), " · primary key ", el("code", { text: e.primaryKey }), ` · ${e.fieldCount} fields`),
        HW.table(
          [
            {
              label: "Field",
              value: (f) =>
                el("span", {}, f.masterLabel, !isNew && addedFields.has(e.developerName + "." + f.developerName) ? el("span", { class: "badge added", text: "New" }) : null),
            },
            { label: "Developer name", value: (f) => el("code", { text: f.developerName }) },
            { label: "Data type", value: (f) => f.dataType },
            { label: "Primary key", value: (f) => (f.isPrimaryKey ? "Primary key" : "") },
            { label: "Required", value: (f) => yes(f.isDataRequired) },
          ],
          e.fields,
          { caption: `Fields of ${e.developerName}` }
        )
      );
    });
  }

  /** A refused schema: the API's detail and each error in words, next to the file input. */
  function schemaProblems(box, input, problem) {
    const errors = (problem.report && problem.report.errors) || [];
    box.replaceChildren(
      el("p", {}, el("strong", { text: "The schema was not accepted. " }), (problem.detail || problem.title || "").replace("(listed in report.errors)", "(listed below)")),
      errors.length
        ? el(
            "ul",
            {},
            errors.map((e) => el("li", {}, e.message, e.path ? el("span", { class: "muted", text: ` (at ${e.path})` }) : null))
          )
        : null
    );
    box.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", box.id + " schema-file-help");
    input.focus();
  }

  function clearSchemaProblems(box, input) {
    box.hidden = true;
    box.replaceChildren();
    input.removeAttribute("aria-invalid");
    input.setAttribute("aria-describedby", "schema-file-help");
  }

  async function connectorView(root) {
    const id = root.dataset.connectorId;
    const base = `${SSOT}/connections/${encodeURIComponent(id)}`;
    const factsBox = document.getElementById("connector-facts");
    const rename = document.getElementById("connector-rename");
    const status = document.getElementById("schema-status");
    const tools = document.getElementById("schema-tools");
    const updateButton = document.getElementById("schema-update");
    const viewButton = document.getElementById("schema-view");
    const upload = document.getElementById("schema-upload");
    const fileInput = document.getElementById("schema-file");
    const fileLabel = document.getElementById("schema-file-label");
    const problems = document.getElementById("schema-problems");
    const candidateBox = document.getElementById("schema-candidate");
    const saveButton = document.getElementById("schema-save");
    const cancelButton = document.getElementById("schema-cancel");
    const full = document.getElementById("schema-full");
    const eventsBox = document.getElementById("schema-events");
    let connector = null;
    let etag = null;
    let candidate = null; // {text, name}

    async function load() {
      const result = await api("GET", base);
      busy(factsBox, false);
      if (!result.ok) {
        factsBox.replaceChildren();
        status.textContent = "";
        return HW.showErrors(document, problemOf(result));
      }
      connector = result.data;
      etag = result.etag;
      setHeading(connector.label);
      const renameButton = el("button", { type: "button", class: "secondary small", text: "Edit", "aria-label": "Edit the app name", "data-needs": "manage-sources" });
      renameButton.addEventListener("click", () => {
        rename.hidden = false;
        rename.elements[0].value = connector.label;
        rename.elements[0].focus();
      });
      factsBox.replaceChildren(
        facts([
          ["App name", el("span", {}, connector.label, " ", renameButton)],
          ["Developer name", el("code", { text: connector.name })],
          ["Connector type", "Server to Server"],
          ["Source ID", el("span", { id: "source-id" }, copyable(connector.sourceId, "Source ID"))],
          ["", el("span", { class: "help", text: "Your server sends events to POST /server/events/{Source ID} with an ingestion token." })],
          ["Sandbox", connector.sandboxName || HW.sandbox()],
          ["Created", HW.when(connector.createdDate)],
        ])
      );
      await loadSchema();
    }

    async function loadSchema() {
      eventsBox.replaceChildren();
      full.hidden = true;
      viewButton.setAttribute("aria-expanded", "false");
      if (!connector.schemaVersion) {
        status.textContent = "No schema yet. Upload the JSON event-type schema file of your events; you will see a preview before it is saved.";
        tools.hidden = true;
        openUpload(true);
        return;
      }
      const result = await api("GET", base + "/schema");
      if (!result.ok) return HW.showErrors(document, problemOf(result));
      full.textContent = JSON.stringify(result.data, null, 2);
      // The saved schema's events, as the API normalizes them (previewing the schema against itself).
      const shown = await api("POST", base + "/schema/actions/preview", result.data);
      const count = connector.events.length;
      status.textContent = `Schema version ${connector.schemaVersion}: ${count} event${count === 1 ? "" : "s"}.`;
      tools.hidden = false;
      if (shown.ok) eventsBox.replaceChildren(...eventsPreview(shown.data.events, null));
    }

    function openUpload(first) {
      upload.hidden = false;
      updateButton.setAttribute("aria-expanded", "true");
      fileLabel.textContent = first ? "Schema file (JSON)" : "New version of the schema file (JSON)";
      saveButton.textContent = first ? "Save schema" : "Yes, Update";
      resetUpload();
    }

    function closeUpload() {
      upload.hidden = true;
      updateButton.setAttribute("aria-expanded", "false");
      resetUpload();
    }

    function resetUpload() {
      candidate = null;
      fileInput.value = "";
      candidateBox.replaceChildren();
      saveButton.hidden = true;
      cancelButton.hidden = !connector || !connector.schemaVersion;
      clearSchemaProblems(problems, fileInput);
    }

    fileInput.addEventListener("change", async () => {
      const file = fileInput.files[0];
      candidate = null;
      candidateBox.replaceChildren();
      saveButton.hidden = true;
      clearSchemaProblems(problems, fileInput);
      if (!file) return;
      if (file.size > MAX_UPLOAD) {
        return schemaProblems(problems, fileInput, { detail: `${file.name} is ${file.size} bytes; a schema file is at most 1 MB.` });
      }
      const text = await file.text();
      try {
        JSON.parse(text);
      } catch (err) {
        return schemaProblems(problems, fileInput, { detail: `${file.name} is not JSON: ${err.message}` });
      }
      const result = await api("POST", base + "/schema/actions/preview", text, { headers: { "Content-Type": "application/json" } });
      if (!result.ok) return schemaProblems(problems, fileInput, problemOf(result));
      candidate = { text, name: file.name };
      const view = result.data;
      const changes = view.changes || {};
      const updating = Boolean(connector.schemaVersion);
      const added = [];
      if (updating) {
        if ((changes.addedEvents || []).length) added.push("adds event(s) " + changes.addedEvents.join(", "));
        if ((changes.addedFields || []).length) added.push("adds field(s) " + changes.addedFields.map((f) => `${f.event}.${f.field}`).join(", "));
      }
      candidateBox.replaceChildren(
        el("h3", { text: `Preview of ${file.name}` }),
        el(
          "p",
          { class: updating ? "warning" : "muted" },
          `${view.eventCount} events, ${view.fieldCount} fields. `,
          updating ? (added.length ? `This update ${added.join("; ")}. ` : "This update changes nothing. ") : "Verify each event's category, the fields' data types, the primary key and which fields are required, then save.",
          updating ? "Updates can only add events and fields. Update the schema?" : ""
        ),
        ...eventsPreview(view.events, updating ? changes : null)
      );
      saveButton.hidden = false;
      cancelButton.hidden = false;
    });

    saveButton.addEventListener("click", async () => {
      if (!candidate) return;
      saveButton.disabled = true;
      const result = await api("PUT", base + "/schema", candidate.text, { headers: { "Content-Type": "application/json" }, etag });
      saveButton.disabled = false;
      if (!result.ok) {
        const problem = problemOf(result);
        if (result.status === 412) problem.detail = "The connector changed since this page loaded (someone else saved a schema?). Reload the page, then upload again.";
        return schemaProblems(problems, fileInput, problem);
      }
      const streams = (result.data.dataStreamsUpdated || []).length;
      HW.toast(`Schema version ${result.data.schemaVersion} saved` + (streams ? `; ${streams} data stream(s) updated` : ""));
      closeUpload();
      await load();
      status.focus();
    });
    cancelButton.addEventListener("click", () => {
      if (!connector.schemaVersion) {
        resetUpload(); // the first upload stays open
        fileInput.focus();
        return;
      }
      closeUpload();
      updateButton.focus();
    });
    updateButton.addEventListener("click", () => {
      if (upload.hidden) {
        openUpload(false);
        fileInput.focus();
      } else closeUpload();
    });
    viewButton.addEventListener("click", () => {
      full.hidden = !full.hidden;
      viewButton.setAttribute("aria-expanded", String(!full.hidden));
      if (!full.hidden) full.focus();
    });

    document.getElementById("connector-rename-cancel").addEventListener("click", () => (rename.hidden = true));
    rename.addEventListener("submit", async (event) => {
      event.preventDefault();
      const label = rename.elements[0].value.trim();
      if (!label) return fieldError(rename, "label", "Enter the app name.");
      const result = await api("PATCH", base, { label }, { etag });
      if (!result.ok) return showErrors(rename, problemOf(result));
      rename.hidden = true;
      HW.toast("App name saved");
      await load();
    });
    status.setAttribute("tabindex", "-1");
    await load();
    await connectorStreams(id);
  }

  async function connectorStreams(id) {
    const box = document.getElementById("connector-streams");
    const space = currentSpace();
    const result = await api("GET", `${SSOT}/data-streams?dataspace=${encodeURIComponent(space)}&connectorId=${encodeURIComponent(id)}`);
    if (!result.ok) return box.replaceChildren(el("p", { class: "muted", text: problemOf(result).detail || "" }));
    box.replaceChildren(streamTable(result.data.dataStreams, `No data streams from this connector in data space ${space} yet.`));
  }

  Object.assign(VIEWS, { connectors: connectorsView, connector: connectorView });
})();
