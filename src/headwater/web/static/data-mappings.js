/* Headwater console: mapping sets (the list, and the editor with its preview on sample rows). Shared pieces
 * are in data.js. */
(function () {
  "use strict";

  const CONV = "/data/foundation/conversion";
  const FS = "/data/foundation/flowservice";
  const CONFLICT = " was changed by someone else since you opened it; reload to see the change.";
  const { SR, FULL, el, $, count, fail, setHeading, loadSchemas, schemaIndex, schemaLink, PAGES } = window.HWData;

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

  /* The leaf field paths of a resolved schema, for the destination suggestions. */
  function leafPaths(node, prefix, out) {
    for (const [name, prop] of Object.entries((node && node.properties) || {})) {
      const path = prefix ? prefix + "." + name : name;
      let inner = prop;
      while (inner && inner.type === "array" && inner.items) inner = inner.items;
      if (inner && inner.properties) leafPaths(inner, path, out);
      else out.push(path);
    }
    return out;
  }

  const SOURCE_TYPES = [
    ["ATTRIBUTE", "Attribute", "e.g. email"],
    ["EXPRESSION", "Expression", "e.g. lower(trim(email))"],
    ["STATIC", "Constant", "e.g. web"],
  ];

  async function mappingPage(root) {
    const form = $(root, "[data-mapping-form]");
    const tbody = $(root, "[data-rows]");
    const schemaSelect = $(root, "#m-schema");
    const datalist = $(root, "#destination-fields");
    const state = { id: root.dataset.id || null, etag: null, version: null };

    function renumber() {
      tbody.querySelectorAll("tr").forEach((tr, i) => {
        const n = i + 1;
        const where = "mappings[" + i + "]";
        tr.querySelector("[data-role=number]").textContent = String(n);
        tr.querySelector("[data-role=number]").dataset.path = where;
        for (const [role, key, text] of [
          ["type", "sourceType", "Source type of mapping " + n],
          ["source", "source", "Source of mapping " + n],
          ["destination", "destination", "Destination path of mapping " + n],
        ]) {
          const input = tr.querySelector("[data-role=" + role + "]");
          input.id = "m-" + role + "-" + i;
          input.dataset.path = where + "." + key;
          const label = tr.querySelector("label[data-for=" + role + "]");
          label.htmlFor = input.id;
          label.textContent = text;
        }
        tr.querySelector("[data-role=remove]").setAttribute("aria-label", "Remove mapping " + n);
      });
    }

    function addRow(mapping, focus) {
      const m = mapping || {};
      const type = el("select", { "data-role": "type" }, SOURCE_TYPES.map(([v, t]) => el("option", { value: v, selected: (m.sourceType || "ATTRIBUTE") === v, text: t })));
      const source = el("input", { type: "text", "data-role": "source", autocomplete: "off", spellcheck: "false", value: m.source ?? m.sourceAttribute ?? "" });
      const dest = el("input", { type: "text", "data-role": "destination", list: "destination-fields", autocomplete: "off", spellcheck: "false", value: m.destination ?? m.destinationXdmPath ?? "" });
      const hint = () => (source.placeholder = (SOURCE_TYPES.find(([v]) => v === type.value) || SOURCE_TYPES[0])[2]);
      type.addEventListener("change", hint);
      hint();
      const cell = (role, input) => el("td", {}, el("div", { class: "field" }, el("label", { class: "visually-hidden", "data-for": role }), input));
      const tr = el(
        "tr",
        {},
        el("td", {}, el("span", { "data-role": "number" })),
        cell("type", type),
        cell("source", source),
        cell("destination", dest),
        el("td", {}, el("button", { type: "button", class: "link", "data-role": "remove", text: "Remove", onclick: () => removeRow(tr) }))
      );
      // Identity settings of a loaded mapping are kept as they are (the editor does not change them).
      tr.extra = {};
      for (const key of ["identity", "primaryIdentity", "namespaceCode", "identityGroup"]) if (m[key] !== undefined && m[key] !== null) tr.extra[key] = m[key];
      if (m.identity) $(tr, "td").append(el("span", { class: "badge identity", title: "Identity", text: m.namespaceCode || "identity" }));
      tbody.append(tr);
      renumber();
      if (focus) type.focus();
    }

    function removeRow(tr) {
      const next = tr.nextElementSibling || tr.previousElementSibling;
      tr.remove();
      HW.clearErrors(form);
      renumber();
      const target = next ? next.querySelector("[data-role=remove]") : $(root, "[data-add-row]");
      target.focus();
    }

    function body() {
      const out = { xdmSchema: schemaSelect.value || undefined, mappings: [] };
      const name = $(root, "#m-name").value.trim();
      const description = $(root, "#m-description").value.trim();
      if (name) out.name = name;
      if (description) out.description = description;
      tbody.querySelectorAll("tr").forEach((tr) => {
        out.mappings.push({
          sourceType: tr.querySelector("[data-role=type]").value,
          source: tr.querySelector("[data-role=source]").value.trim(),
          destination: tr.querySelector("[data-role=destination]").value.trim(),
          ...tr.extra,
        });
      });
      return out;
    }

    async function loadFields() {
      datalist.replaceChildren();
      if (!schemaSelect.value) return;
      const resolved = await HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(schemaSelect.value), null, { headers: FULL });
      if (resolved.ok) datalist.replaceChildren(...leafPaths(resolved.data, "", []).map((p) => el("option", { value: p })));
    }

    function showVersion() {
      $(root, "[data-version]").textContent = state.id ? "Version " + state.version + " · id " + state.id : "Not saved yet";
    }

    const [schemas, existing] = await Promise.all([
      loadSchemas(),
      state.id ? HW.api("GET", CONV + "/mappingSets/" + encodeURIComponent(state.id)) : null,
    ]);
    if (existing && !existing.ok) return fail(existing);
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
      (doc.mappings || []).forEach((m) => addRow(m));
    } else {
      addRow();
    }
    showVersion();
    schemaSelect.addEventListener("change", loadFields);
    loadFields();
    $(root, "[data-add-row]").addEventListener("click", () => addRow(null, true));

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      HW.clearErrors(form);
      const saving = state.id
        ? HW.api("PUT", CONV + "/mappingSets/" + encodeURIComponent(state.id), body(), { etag: state.etag })
        : HW.api("POST", CONV + "/mappingSets", body());
      const result = await saving;
      if (result.status === 412) {
        return HW.showErrors(form, { detail: "This mapping set" + CONFLICT });
      }
      if (!result.ok) return HW.showErrors(form, result.data);
      state.id = result.data.id;
      state.etag = result.etag;
      state.version = result.data.version;
      history.replaceState(null, "", "/console/mappings/" + encodeURIComponent(state.id));
      setHeading(result.data.name || "Mapping set " + state.id);
      showVersion();
      HW.toast("Saved version " + state.version);
    });

    setUpPreview(root, form, body);
  }

  function setUpPreview(root, mappingForm, body) {
    const form = $(root, "[data-preview-form]");
    const rowsInput = $(root, "#p-rows");
    const sources = $(root, "#p-source");
    const out = $(root, "[data-preview-result]");

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
      HW.toast("Loaded " + count(Math.min(10, (result.data.data || []).length), "row") + " from " + (source.name || "the source"));
    });

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      HW.clearErrors(form);
      HW.clearErrors(mappingForm);
      let rows;
      try {
        rows = JSON.parse(rowsInput.value);
      } catch (err) {
        return HW.showErrors(form, { report: { errors: [{ path: "data", message: "is not valid JSON: " + err.message }] } });
      }
      if (!Array.isArray(rows)) rows = [rows];
      const result = await HW.api("POST", CONV + "/mappingSets/preview", { mappingSet: body(), data: rows });
      if (!result.ok) {
        // Errors about the mapping set go next to its fields (paths without the "mappingSet." prefix).
        const errors = (result.data && result.data.report && result.data.report.errors) || [];
        const ofSet = errors.filter((e) => (e.path || "").startsWith("mappingSet"));
        const rest = errors.filter((e) => !(e.path || "").startsWith("mappingSet"));
        if (ofSet.length) {
          const fixed = ofSet.map((e) => ({ ...e, path: e.path.replace(/^mappingSet\.?/, "") }));
          HW.showErrors(mappingForm, { report: { errors: fixed } });
          out.replaceChildren(el("p", { class: "field-error", text: "Fix the mappings above to preview them." }));
        }
        if (rest.length || !ofSet.length) HW.showErrors(form, rest.length ? { report: { errors: rest } } : result.data);
        return;
      }
      renderPreview(out, rows, result.data);
    });
  }

  function renderPreview(out, rows, result) {
    const errorsByRow = {};
    for (const e of result.errors || []) (errorsByRow[e.row] = errorsByRow[e.row] || []).push(e);
    const items = rows.map((row, i) => ({ i, row, mapped: (result.data || [])[i], errors: errorsByRow[i] || [] }));
    const failed = items.filter((x) => x.mapped === null).length;
    out.replaceChildren(
      el("p", { class: failed ? "warning" : "muted", text: items.length - failed + " of " + count(items.length, "row") + " mapped" + (failed ? "; " + failed + " failed" : "") }),
      HW.table(
        [
          { label: "Row", value: (x) => String(x.i + 1) },
          { label: "Input", value: (x) => el("pre", { class: "snippet", text: JSON.stringify(x.row, null, 2) }) },
          {
            label: "Output",
            value: (x) =>
              x.mapped === null || x.mapped === undefined
                ? el("div", { class: "row-failed" }, x.errors.map((e) => el("p", { class: "field-error", text: e.message.replace(/^row \d+: /, "") })))
                : el("pre", { class: "snippet", text: JSON.stringify(x.mapped, null, 2) }),
          },
        ],
        items,
        { empty: "No rows to preview." }
      )
    );
  }

  Object.assign(PAGES, { mappings: mappingsPage, mapping: mappingPage });
})();
