/* Headwater console: the mapping rows editor, a reusable component (the dataflow wizard's Mapping step and
 * the mapping set page).
 * Through the public API only (Schema Registry for the destination fields, Conversion's preview):
 *
 *   const editor = HWMappingEditor.mount(container, {schemaId, columns: [{name, type}], sample: [rows],
 *                                                    mappings: [{sourceType, source, destination}]})
 *   editor.ready          a promise: the schema's fields are loaded
 *   editor.mappings()     -> [{sourceType, source, destination}] (rows without a destination are left out)
 *   editor.showErrors(p)  a problem of the API, its mappings[i].* errors next to their rows
 *   editor.preview(rows?) -> Promise<boolean>: maps the sample rows (or rows) with the API, shows a table
 *   editor.setSchema(id)  -> Promise: the destination suggestions become that schema's leaf fields
 *   editor.setColumns(c)  the source suggestions become these columns ([{name}] or names)
 *
 * Options also: previewBox, where the preview goes (else under the rows). A loaded mapping's identity
 * settings (identity, primaryIdentity, namespaceCode, identityGroup) are kept as they are.
 *
 * Each row: the source type (column, expression, constant), the source (a picker of the source's columns
 * for a column, free text otherwise) and the destination path (suggested from the schema's leaf fields).
 * Columns with a destination field of the same name are mapped when the editor opens. The table has fixed
 * column widths, so an error under a row does not move the others.
 */
(function () {
  "use strict";

  const SR = "/data/foundation/schemaregistry";
  const CONV = "/data/foundation/conversion";
  const FULL = { Accept: "application/vnd.adobe.xed-full+json; version=1" };
  const el = (...args) => HW.el(...args);
  const TYPES = [
    ["ATTRIBUTE", "Column", "a column of the source"],
    ["EXPRESSION", "Expression", "e.g. lower(trim(email))"],
    ["STATIC", "Constant", "e.g. web"],
  ];
  const KEPT = ["identity", "primaryIdentity", "namespaceCode", "identityGroup"];
  let mounts = 0;

  /* The leaf field paths of a resolved schema (arrays of objects are walked into). */
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

  /* {a: {b: 1}} -> {"a.b": 1}; arrays and scalars are leaves. */
  function flatten(value, prefix, out) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
    } else if (prefix) {
      out[prefix] = value;
    }
    return out;
  }

  const shown = (v) => (v === undefined ? "" : v === null ? "null" : typeof v === "object" ? JSON.stringify(v) : String(v));

  function mount(container, options) {
    const opts = options || {};
    mounts += 1;
    const id = (name) => "me" + mounts + "-" + name;
    const columns = opts.columns || [];
    let fields = [];
    let schemaId = opts.schemaId || "";

    const columnList = el("datalist", { id: id("columns") }, columns.map((c) => el("option", { value: c.name })));
    const fieldList = el("datalist", { id: id("fields") });
    const errorsBox = el("div", { class: "general-errors", "data-errors": "", role: "alert", hidden: true });
    const tbody = el("tbody", { "data-rows": "" });
    const table = el(
      "table",
      { class: "grid mapping-rows fixed", "data-path": "mappings" },
      el("colgroup", {}, el("col", { class: "c-n" }), el("col", { class: "c-type" }), el("col", { class: "c-source" }), el("col", { class: "c-dest" }), el("col", { class: "c-rm" })),
      el(
        "thead",
        {},
        el("tr", {}, ["#", "Source type", "Source", "Destination field", ""].map((t) => el("th", { scope: "col", text: t })))
      ),
      tbody
    );
    const previewOut = opts.previewBox || el("div", { class: "scroll-x mapping-preview", "aria-live": "polite" });
    const root = el(
      "div",
      { class: "mapping-editor" },
      errorsBox,
      table,
      el("p", { class: "help", text: "A row without a destination field is left out: its column is not mapped." }),
      el("p", {}, el("button", { type: "button", class: "secondary small", text: "Add mapping", onclick: () => addRow(null, true) })),
      columnList,
      fieldList,
      opts.previewBox ? null : previewOut
    );
    container.replaceChildren(root);

    function renumber() {
      tbody.querySelectorAll("tr").forEach((tr, i) => {
        const n = i + 1;
        const where = "mappings[" + i + "]";
        tr.querySelector("[data-role=number]").textContent = String(n);
        for (const [role, key, text] of [
          ["type", "sourceType", "Source type of mapping " + n],
          ["source", "source", "Source of mapping " + n],
          ["destination", "destination", "Destination field of mapping " + n],
        ]) {
          const input = tr.querySelector("[data-role=" + role + "]");
          input.id = id(role + "-" + i);
          input.dataset.path = where + "." + key;
          input.setAttribute("aria-label", text);
        }
        tr.querySelector("[data-role=remove]").setAttribute("aria-label", "Remove mapping " + n);
      });
    }

    function addRow(mapping, focus) {
      const m = mapping || {};
      // Answers spell an attribute mapping "text/x.schema-path" (document 002), expressions maybe "text/x.aep-xl".
      const kind = ({ "text/x.schema-path": "ATTRIBUTE", "text/x.aep-xl": "EXPRESSION" })[m.sourceType] || m.sourceType || "ATTRIBUTE";
      const type = el("select", { "data-role": "type" }, TYPES.map(([v, t]) => el("option", { value: v, selected: kind === v, text: t })));
      const source = el("input", { type: "text", "data-role": "source", autocomplete: "off", spellcheck: "false", value: m.source ?? m.sourceAttribute ?? "" });
      const dest = el("input", { type: "text", "data-role": "destination", list: id("fields"), autocomplete: "off", spellcheck: "false", value: m.destination ?? m.destinationXdmPath ?? "" });
      const sync = () => {
        const t = TYPES.find(([v]) => v === type.value) || TYPES[0];
        source.placeholder = t[2];
        if (type.value === "ATTRIBUTE") source.setAttribute("list", id("columns"));
        else source.removeAttribute("list");
      };
      type.addEventListener("change", sync);
      sync();
      const cell = (input) => el("td", {}, el("div", { class: "field" }, input));
      const tr = el(
        "tr",
        {},
        el("td", {}, el("span", { "data-role": "number" })),
        cell(type),
        cell(source),
        cell(dest),
        el("td", {}, el("button", { type: "button", class: "link", "data-role": "remove", text: "Remove", onclick: () => removeRow(tr) }))
      );
      // Identity settings of a loaded mapping are kept as they are (the editor does not change them).
      tr.extra = {};
      for (const key of KEPT) if (m[key] !== undefined && m[key] !== null) tr.extra[key] = m[key];
      if (m.identity) tr.querySelector("td").append(el("span", { class: "badge identity", title: "Identity", text: m.namespaceCode || "identity" }));
      tbody.append(tr);
      renumber();
      if (focus) source.focus();
    }

    function removeRow(tr) {
      tr.remove();
      HW.clearErrors(root);
      renumber();
    }

    function mappings() {
      const out = [];
      tbody.querySelectorAll("tr").forEach((tr) => {
        const destination = tr.querySelector("[data-role=destination]").value.trim();
        const source = tr.querySelector("[data-role=source]").value.trim();
        if (!destination) return; // a column left without a destination is not mapped
        out.push({ sourceType: tr.querySelector("[data-role=type]").value, source, destination, ...tr.extra });
      });
      return out;
    }

    /* The API's errors name mappings[i] of what was sent; rows left out (empty) shift the numbers. */
    function showErrors(problem) {
      const kept = [];
      tbody.querySelectorAll("tr").forEach((tr, i) => {
        if (tr.querySelector("[data-role=destination]").value.trim()) kept.push(i);
      });
      const errors = ((problem && problem.report && problem.report.errors) || []).map((e) => {
        const match = /^(?:mappingSet\.)?mappings\[(\d+)\](.*)$/.exec(e.path || "");
        if (!match) return e;
        const row = kept[Number(match[1])];
        return { ...e, path: "mappings[" + (row === undefined ? match[1] : row) + "]" + match[2] };
      });
      HW.showErrors(root, errors.length ? { ...problem, report: { ...problem.report, errors } } : problem);
    }

    async function preview(given) {
      HW.clearErrors(root);
      const rows = Array.isArray(given) ? given : opts.sample || [];
      if (!rows.length) {
        previewOut.replaceChildren(el("p", { class: "muted", text: "No sample rows to preview." }));
        return true;
      }
      const body = { mappingSet: { xdmSchema: schemaId || undefined, mappings: mappings() }, data: rows.slice(0, 10) };
      const result = await HW.api("POST", CONV + "/mappingSets/preview", body);
      if (!result.ok) {
        showErrors(result.data);
        previewOut.replaceChildren(el("p", { class: "field-error", text: "Fix the mappings above to preview them." }));
        return false;
      }
      renderPreview(body.data, result.data || {});
      return true;
    }

    function renderPreview(rows, result) {
      const errorsByRow = {};
      for (const e of result.errors || []) (errorsByRow[e.row] = errorsByRow[e.row] || []).push(e.message.replace(/^row \d+: /, ""));
      const mapped = (result.data || []).map((d) => (d ? flatten(d, "", {}) : null));
      const paths = [];
      for (const m of mapped) for (const k of Object.keys(m || {})) if (!paths.includes(k)) paths.push(k);
      const failed = mapped.filter((m) => m === null).length;
      const head = el("tr", {}, el("th", { scope: "col", text: "Row" }), paths.map((p) => el("th", { scope: "col", text: p })));
      const body = el(
        "tbody",
        {},
        rows.map((_, i) =>
          mapped[i]
            ? el("tr", {}, el("td", { text: String(i + 1) }), paths.map((p) => el("td", { text: shown(mapped[i][p]) })))
            : el("tr", { class: "row-failed" }, el("td", { text: String(i + 1) }), el("td", { colspan: Math.max(1, paths.length) }, (errorsByRow[i] || ["not mapped"]).map((t) => el("p", { class: "field-error", text: t }))))
        )
      );
      previewOut.replaceChildren(
        el("h3", { text: "Preview of the mapped rows" }),
        el("p", { class: failed ? "warning" : "muted", text: rows.length - failed + " of " + rows.length + " rows mapped" + (failed ? "; " + failed + " failed" : "") }),
        el("table", { class: "grid preview-table", "aria-label": "Preview of the mapped rows" }, el("thead", {}, head), body)
      );
    }

    async function loadFields() {
      fields = [];
      if (schemaId) {
        const resolved = await HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(schemaId), null, { headers: FULL });
        if (resolved.ok) fields = leafPaths(resolved.data, "", []);
      }
      fieldList.replaceChildren(...fields.map((p) => el("option", { value: p })));
    }

    function setSchema(ident) {
      schemaId = ident || "";
      return loadFields();
    }

    function setColumns(names) {
      columnList.replaceChildren(...(names || []).map((c) => el("option", { value: typeof c === "string" ? c : c.name })));
    }

    const ready = (async () => {
      await loadFields();
      if (opts.mappings && opts.mappings.length) {
        opts.mappings.forEach((m) => addRow(m));
      } else {
        // A column whose name is the last part of a field's path is mapped to that field.
        const byLeaf = {};
        for (const f of fields) {
          const leaf = f.split(".").pop().toLowerCase();
          if (!(leaf in byLeaf)) byLeaf[leaf] = f;
        }
        for (const c of columns) addRow({ sourceType: "ATTRIBUTE", source: c.name, destination: byLeaf[c.name.toLowerCase()] || "" });
        if (!columns.length) addRow();
      }
      root.setAttribute("data-ready", "true");
    })();

    return { ready, mappings, showErrors, preview, setSchema, setColumns, element: root, fields: () => fields.slice() };
  }

  window.HWMappingEditor = { mount, leafPaths, flatten };
})();
