/* Headwater console: mapping sets (the list, and the editor with its preview on sample rows). Shared pieces
 * are in data.js; the mapping rows editor is static/mapping-editor.js. */
(function () {
  "use strict";

  const CONV = "/data/foundation/conversion";
  const FS = "/data/foundation/flowservice";
  const CONFLICT = " was changed by someone else since you opened it; reload to see the change.";
  const { el, $, count, fail, setHeading, loadSchemas, schemaIndex, schemaLink, PAGES } = window.HWData;

  // --- mapping sets ---
  async function mappingsPage(root) {
    const list = $(root, "[data-list]");
    const [result, schemas] = await Promise.all([HW.api("GET", CONV + "/mappingSets?limit=1000&orderby=-updatedDate"), loadSchemas()]);
    if (!result.ok) return fail(result);
    const index = schemaIndex(schemas);
    const sets = result.data.data || [];
    list.replaceChildren(
      HW.table(
        [
          { label: "Name", value: (m) => el("a", { href: "/console/mappings/" + encodeURIComponent(m.id), text: m.name || "Mapping set " + m.id }) },
          { label: "Output schema", value: (m) => schemaLink(index, (m.outputSchemaRef || {}).id) },
          { label: "Mappings", value: (m) => String((m.mappings || []).length) },
          { label: "Version", value: (m) => String(m.version) },
          { label: "Modified", value: (m) => HW.when(m.modifiedDate) },
        ],
        sets,
        { empty: "No mapping sets yet.", caption: count(sets.length, "mapping set") }
      )
    );
  }

  /* The mapping set editor: name, description, output schema, and the mapping rows (HWMappingEditor,
   * static/mapping-editor.js) with a preview on sample rows. Both forms are on the page before the
   * mapping set and its schema's fields are read: their handlers are attached first (a submit without
   * them reloads the page, and what was typed is lost) and wait for the editor. */
  async function mappingPage(root) {
    const form = $(root, "[data-mapping-form]");
    const schemaSelect = $(root, "#m-schema");
    const state = { id: root.dataset.id || null, etag: null, version: null };

    function showVersion() {
      $(root, "[data-version]").textContent = state.id ? "Version " + state.version + " · id " + state.id : "Not saved yet";
    }

    /* The editor once the mapping set is shown; null when it could not be read. */
    async function load() {
      const [schemas, existing] = await Promise.all([
        loadSchemas(),
        state.id ? HW.api("GET", CONV + "/mappingSets/" + encodeURIComponent(state.id)) : null,
      ]);
      if (existing && !existing.ok) {
        fail(existing);
        return null;
      }
      const doc = existing ? existing.data : null;
      schemaSelect.replaceChildren(
        el("option", { value: "", text: "Choose a schema…" }),
        ...(schemas || []).map((s) => el("option", { value: s.$id, text: s.title || s.$id }))
      );
      if (doc) {
        state.etag = existing.etag;
        state.version = doc.version;
        setHeading(doc.name || "Mapping set " + doc.id);
        $(root, "#m-name").value = doc.name || "";
        $(root, "#m-description").value = doc.description || "";
        schemaSelect.value = (doc.outputSchemaRef || {}).id || "";
      }
      const editor = HWMappingEditor.mount($(root, "[data-editor]"), {
        schemaId: schemaSelect.value,
        mappings: doc ? doc.mappings || [] : [],
        previewBox: $(root, "[data-preview-result]"),
      });
      // The schemas are offered already: a pick while the first one's fields load comes after them.
      schemaSelect.addEventListener("change", () => editor.ready.then(() => editor.setSchema(schemaSelect.value)));
      await editor.ready;
      showVersion();
      return editor;
    }
    const loaded = load();

    function body(editor) {
      const out = { xdmSchema: schemaSelect.value || undefined, mappings: editor.mappings() };
      const name = $(root, "#m-name").value.trim();
      const description = $(root, "#m-description").value.trim();
      if (name) out.name = name;
      if (description) out.description = description;
      return out;
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const editor = await loaded;
      if (!editor) return;
      HW.clearErrors(form);
      const saving = state.id
        ? HW.api("PUT", CONV + "/mappingSets/" + encodeURIComponent(state.id), body(editor), { etag: state.etag })
        : HW.api("POST", CONV + "/mappingSets", body(editor));
      const result = await saving;
      if (result.status === 412) {
        return HW.showErrors(form, { detail: "This mapping set" + CONFLICT });
      }
      if (!result.ok) return showProblem(editor, result.data);
      state.id = result.data.id;
      state.etag = result.etag;
      state.version = result.data.version;
      // The page of the saved mapping set: a reload (or a shared link) opens it, not a new one.
      history.replaceState(null, "", "/console/mappings/" + encodeURIComponent(state.id));
      setHeading(result.data.name || "Mapping set " + state.id);
      showVersion();
      HW.toast("Saved version " + state.version);
    });

    /* The rows' errors next to the rows (the editor knows which row each index names), the others next
     * to the name, description or schema. */
    function showProblem(editor, problem) {
      const errors = (problem && problem.report && problem.report.errors) || [];
      const ofRows = errors.filter((e) => /^mappings\[/.test(e.path || ""));
      const rest = errors.filter((e) => !/^mappings\[/.test(e.path || ""));
      HW.clearErrors(form);
      if (rest.length || !ofRows.length) HW.showErrors(form, { ...problem, report: { ...(problem || {}).report, errors: rest } });
      if (ofRows.length) editor.showErrors({ ...problem, report: { ...problem.report, errors: ofRows } });
    }

    setUpPreview(root, form, loaded);
    await loaded;
  }

  /* The keys of sample rows, in first-seen order: the source picker's columns. */
  function columnsOf(rows) {
    const names = [];
    for (const row of rows) for (const k of Object.keys(row || {})) if (!names.includes(k)) names.push(k);
    return names;
  }

  /* The preview form; loaded: a promise of the editor (null when the mapping set could not be read). */
  function setUpPreview(root, mappingForm, loaded) {
    const form = $(root, "[data-preview-form]");
    const rowsInput = $(root, "#p-rows");
    const sources = $(root, "#p-source");

    function parsedRows() {
      try {
        const rows = JSON.parse(rowsInput.value);
        return Array.isArray(rows) ? rows : [rows];
      } catch (_) {
        return null;
      }
    }
    const offerColumns = async () => {
      const editor = await loaded;
      const rows = parsedRows();
      if (editor && rows) editor.setColumns(columnsOf(rows.filter((r) => r && typeof r === "object")));
    };
    rowsInput.addEventListener("change", offerColumns);
    offerColumns();

    HW.api("GET", FS + "/sourceConnections?limit=1000").then((result) => {
      const items = (result.ok && result.data.items) || [];
      for (const s of items) if (s.baseConnectionId) sources.append(el("option", { value: s.id, text: s.name || s.id }));
      sources.sourceItems = items;
    });

    $(root, "[data-load-rows]").addEventListener("click", async () => {
      HW.clearErrors(form);
      const source = (sources.sourceItems || []).find((s) => s.id === sources.value);
      if (!source) return HW.showErrors(form, { detail: "Choose a source to take rows from." });
      const params = source.params || {};
      const object = params.path || params.tableName || params.table || params.object || params.entityName;
      if (!object) return HW.showErrors(form, { detail: "This source does not name a table or file to read rows from." });
      const query = "?objectType=table&object=" + encodeURIComponent(object);
      const result = await HW.api("GET", FS + "/connections/" + encodeURIComponent(source.baseConnectionId) + "/explore" + query);
      if (!result.ok) return HW.showErrors(form, result.data);
      rowsInput.value = JSON.stringify((result.data.data || []).slice(0, 10), null, 2);
      const editor = await loaded;
      if (editor) editor.setColumns(((result.data.schema || {}).columns || []).map((c) => c.name));
      HW.toast("Loaded " + count(Math.min(10, (result.data.data || []).length), "row") + " from " + (source.name || "the source"));
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const editor = await loaded;
      if (!editor) return;
      HW.clearErrors(form);
      HW.clearErrors(mappingForm);
      let rows;
      try {
        rows = JSON.parse(rowsInput.value);
      } catch (err) {
        return HW.showErrors(form, { report: { errors: [{ path: "data", message: "is not valid JSON: " + err.message }] } });
      }
      if (!Array.isArray(rows)) rows = [rows];
      offerColumns();
      // The editor maps the rows with the API and shows its errors next to the rows.
      await editor.preview(rows);
    });
  }

  Object.assign(PAGES, { mappings: mappingsPage, mapping: mappingPage });
})();
