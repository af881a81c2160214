/* Headwater console: the mapping rows editor, a reusable component (the mapping set page and the dataflow
 * wizard's Mapping step). Through the public API only (Schema Registry, Conversion):
 *
 *   const editor = HWMappingEditor.mount(container, {schemaId, columns: [{name, type}], sample: [rows], mappings,
 *                                                   previewBox})   previewBox: where the preview goes (else below)
 *   editor.setSchema(id)     -> Promise: the destination picker offers that schema's leaf fields
 *   editor.setColumns(cols)  the source picker offers these columns (names, or {name, type})
 *   editor.setSample(rows)   the rows validate() and preview() map
 *   editor.mappings()        -> [{sourceType, source, destination, ...identity settings kept}] of the rows
 *   editor.filled()          -> the rows with a source or a destination typed
 *   editor.validate()        -> Promise<null | problem>: POST mappingSets/preview; errors next to the rows
 *   editor.preview(rows?)    -> Promise<{ok, problem?}>: the mapped rows as a table below the editor
 *   editor.showProblem(p)    the API's errors about a mapping set (paths mappings[i].x) next to the rows
 *
 * Each row: Source type (Attribute, Expression, Constant), Source (with the columns as suggestions), and
 * Destination path (with the schema's leaf fields as suggestions). Inputs carry data-path
 * mappings[i].sourceType|source|destination, the paths the API's errors name. The table has fixed
 * column widths: an error note under an input makes its row taller, never the columns narrower.
 */
(function () {
  "use strict";

  const SR = "/data/foundation/schemaregistry";
  const CONV = "/data/foundation/conversion";
  const FULL = { Accept: "application/vnd.adobe.xed-full+json; version=1" };
  const el = (...args) => HW.el(...args);
  const count = (n, word) => n + " " + word + (n === 1 ? "" : "s");

  const SOURCE_TYPES = [
    ["ATTRIBUTE", "Attribute", "a column, e.g. email"],
    ["EXPRESSION", "Expression", "e.g. lower(trim(email))"],
    ["STATIC", "Constant", "e.g. web"],
  ];
  const KEPT = ["identity", "primaryIdentity", "namespaceCode", "identityGroup"];

  let mounts = 0;

  function ensureStyles() {
    if (document.querySelector('link[href$="/mapping-editor.css"]')) return;
    document.head.append(el("link", { rel: "stylesheet", href: "/console/static/mapping-editor.css" }));
  }

  /* The leaf field paths of a resolved schema (arrays of objects give their items' fields). */
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

  /* A mapped row as dotted paths -> values. */
  function flatten(value, prefix, out) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
    } else if (prefix) {
      out[prefix] = value;
    }
    return out;
  }

  function cell(value) {
    if (value === null || value === undefined) return el("span", { class: "muted", text: "—" });
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  /* The preview's answer as a table: one row per input row, one column per destination field. */
  function previewTable(rows, result, destinations) {
    const errorsByRow = {};
    for (const e of result.errors || []) (errorsByRow[e.row] = errorsByRow[e.row] || []).push(e);
    const mapped = result.data || [];
    const flat = mapped.map((m) => (m ? flatten(m, "", {}) : null));
    const columns = [];
    for (const d of destinations) if (d && !columns.includes(d)) columns.push(d);
    for (const f of flat) for (const k of Object.keys(f || {})) if (!columns.includes(k)) columns.push(k);
    const failed = mapped.filter((m) => m === null).length;
    const head = el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Row" }), columns.map((c) => el("th", { scope: "col", text: c }))));
    const body = el("tbody", {});
    rows.forEach((_, i) => {
      const tr = el("tr", { dataset: { row: i } }, el("td", { text: String(i + 1) }));
      if (flat[i] === null || flat[i] === undefined) {
        tr.classList.add("row-failed");
        tr.append(
          el(
            "td",
            { colspan: Math.max(1, columns.length) },
            (errorsByRow[i] || [{ message: "not mapped" }]).map((e) => el("p", { class: "field-error", text: String(e.message).replace(/^row \d+: /, "") }))
          )
        );
      } else {
        for (const c of columns) tr.append(el("td", {}, cell(flat[i][c])));
      }
      body.append(tr);
    });
    if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length + 1, class: "empty", text: "No rows to preview." })));
    return [
      el("p", { class: failed ? "warning" : "muted", "data-preview-summary": "", text: rows.length - failed + " of " + count(rows.length, "row") + " mapped" + (failed ? "; " + failed + " failed" : "") }),
      el("div", { class: "scroll" }, el("table", { class: "grid preview-table" }, el("caption", { class: "visually-hidden", text: "Mapped rows" }), head, body)),
    ];
  }

  function mount(container, options) {
    const opts = options || {};
    ensureStyles();
    mounts += 1;
    const uid = "me" + mounts;
    let schemaId = opts.schemaId || "";
    let sample = opts.sample || [];
    let fieldsLoad = Promise.resolve();

    const columnList = el("datalist", { id: uid + "-columns" });
    const fieldList = el("datalist", { id: uid + "-fields" });
    const tbody = el("tbody", { "data-rows": "" });
    const help = el(
      "p",
      { class: "help", id: uid + "-help" },
      "Attribute takes a column of the source row (dotted for nested values); Expression computes a value, e.g. ",
      el("code", { text: "lower(trim(email))" }),
      "; Constant writes the text as is. The destination is a field of the target schema."
    );
    const table = el(
      "table",
      { class: "grid mapping-rows", "data-path": "mappings", "aria-describedby": help.id },
      el("colgroup", {}, el("col", { class: "c-number" }), el("col", { class: "c-type" }), el("col", { class: "c-source" }), el("col", { class: "c-dest" }), el("col", { class: "c-remove" })),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col", text: "#" }),
          el("th", { scope: "col", text: "Source type" }),
          el("th", { scope: "col", text: "Source" }),
          el("th", { scope: "col", text: "Destination path" }),
          el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Remove" }))
        )
      ),
      tbody
    );
    const addButton = el("button", { type: "button", class: "secondary small", "data-add-row": "", text: "Add mapping", onclick: () => addRow(null, true) });
    const allButton = el("button", { type: "button", class: "secondary small", "data-add-columns": "", text: "Add a row per column", hidden: true, onclick: () => addColumns() });
    const previewBox = opts.previewBox || el("div", { class: "preview-result", "data-preview-result": "", "aria-live": "polite" });
    const root = el(
      "div",
      { class: "mapping-editor", "data-mapping-editor": "" },
      help,
      el("div", { class: "scroll" }, table),
      el("p", { class: "row" }, addButton, " ", allButton),
      columnList,
      fieldList,
      opts.previewBox ? null : previewBox
    );
    container.append(root);
    // An input changed after an error: its note goes (the others stay until the next check).
    root.addEventListener("input", (event) => {
      const input = event.target;
      if (!input.getAttribute || input.getAttribute("aria-invalid") !== "true") return;
      (input.hwErrors || []).forEach((n) => n.remove());
      input.hwErrors = [];
      input.removeAttribute("aria-invalid");
    });

    function renumber() {
      tbody.querySelectorAll("tr").forEach((tr, i) => {
        const n = i + 1;
        const where = "mappings[" + i + "]";
        const number = tr.querySelector("[data-role=number]");
        number.textContent = String(n);
        number.dataset.path = where;
        for (const [role, key, text] of [
          ["type", "sourceType", "Source type of mapping " + n],
          ["source", "source", "Source of mapping " + n],
          ["destination", "destination", "Destination path of mapping " + n],
        ]) {
          const input = tr.querySelector("[data-role=" + role + "]");
          input.id = uid + "-" + role + "-" + i;
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
      const source = el("input", { type: "text", "data-role": "source", list: columnList.id, autocomplete: "off", spellcheck: "false", value: m.source ?? m.sourceAttribute ?? "" });
      const dest = el("input", { type: "text", "data-role": "destination", list: fieldList.id, autocomplete: "off", spellcheck: "false", value: m.destination ?? m.destinationXdmPath ?? "" });
      const hint = () => {
        source.placeholder = (SOURCE_TYPES.find(([v]) => v === type.value) || SOURCE_TYPES[0])[2];
        // Column suggestions only where a column is what goes in.
        if (type.value === "ATTRIBUTE") source.setAttribute("list", columnList.id);
        else source.removeAttribute("list");
      };
      type.addEventListener("change", hint);
      hint();
      dest.placeholder = "e.g. person.name.firstName";
      const field = (role, input) => el("td", {}, el("div", { class: "field" }, el("label", { class: "visually-hidden", "data-for": role }), input));
      const tr = el(
        "tr",
        {},
        el("td", {}, el("span", { "data-role": "number" })),
        field("type", type),
        field("source", source),
        field("destination", dest),
        el("td", {}, el("button", { type: "button", class: "link", "data-role": "remove", text: "Remove", onclick: () => removeRow(tr) }))
      );
      // Identity settings of a loaded mapping are kept as they are (the editor does not change them).
      tr.extra = {};
      for (const key of KEPT) if (m[key] !== undefined && m[key] !== null) tr.extra[key] = m[key];
      if (m.identity) tr.querySelector("td").append(el("span", { class: "badge identity", title: "Identity", text: m.namespaceCode || "identity" }));
      tbody.append(tr);
      renumber();
      if (focus) type.focus();
      return tr;
    }

    function removeRow(tr) {
      const next = tr.nextElementSibling || tr.previousElementSibling;
      tr.remove();
      HW.clearErrors(root);
      renumber();
      (next ? next.querySelector("[data-role=remove]") : addButton).focus();
    }

    /* One row per column not yet used as a source (the destinations are left to pick). */
    function addColumns() {
      const used = new Set(mappings().filter((m) => m.sourceType === "ATTRIBUTE").map((m) => m.source));
      tbody.querySelectorAll("tr").forEach((tr) => {
        if (!tr.querySelector("[data-role=source]").value.trim() && !tr.querySelector("[data-role=destination]").value.trim()) tr.remove();
      });
      let first = null;
      for (const o of columnList.querySelectorAll("option")) {
        if (used.has(o.value)) continue;
        const tr = addRow({ source: o.value });
        first = first || tr;
      }
      renumber();
      if (first) first.querySelector("[data-role=destination]").focus();
    }

    function mappings() {
      return Array.from(tbody.querySelectorAll("tr")).map((tr) => ({
        sourceType: tr.querySelector("[data-role=type]").value,
        source: tr.querySelector("[data-role=source]").value.trim(),
        destination: tr.querySelector("[data-role=destination]").value.trim(),
        ...tr.extra,
      }));
    }

    function filled() {
      return mappings().filter((m) => m.source || m.destination);
    }

    function setColumns(cols) {
      const names = (cols || []).map((c) => (typeof c === "string" ? c : c.name)).filter(Boolean);
      columnList.replaceChildren(...names.map((n) => el("option", { value: n })));
      allButton.hidden = !names.length;
    }

    function setSchema(id) {
      schemaId = id || "";
      fieldList.replaceChildren();
      if (!schemaId) return (fieldsLoad = Promise.resolve());
      fieldsLoad = HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(schemaId), null, { headers: FULL }).then((resolved) => {
        if (resolved.ok) fieldList.replaceChildren(...leafPaths(resolved.data, "", []).map((p) => el("option", { value: p })));
      });
      return fieldsLoad;
    }

    function setSample(rows) {
      sample = Array.isArray(rows) ? rows : [];
    }

    /* Errors of a mapping set (paths mappings[i].x, xdmSchema; a preview's are under mappingSet.) go
     * next to the rows; the rest to the editor's own box, or the caller's. Answers the errors not shown. */
    function showProblem(problem) {
      const errors = (problem && problem.report && problem.report.errors) || [];
      const fixed = errors.map((e) => ({ ...e, path: String(e.path || "").replace(/^mappingSet\.?/, "") }));
      const mine = fixed.filter((e) => /^mappings(\[|$)/.test(e.path));
      const rest = fixed.filter((e) => !/^mappings(\[|$)/.test(e.path));
      if (mine.length) HW.showErrors(root, { report: { errors: mine } });
      return rest;
    }

    async function run(rows) {
      HW.clearErrors(root);
      await fieldsLoad;
      const result = await HW.api("POST", CONV + "/mappingSets/preview", { mappingSet: { xdmSchema: schemaId || undefined, mappings: mappings() }, data: rows });
      return result;
    }

    async function validate() {
      const result = await run([]);
      if (result.ok) return null;
      showProblem(result.data);
      return result.data || { detail: "The server answered " + result.status };
    }

    async function preview(rows) {
      const data = rows || sample;
      const result = await run(data);
      if (!result.ok) {
        const rest = showProblem(result.data);
        previewBox.replaceChildren(el("p", { class: "field-error", text: rest.length || !((result.data || {}).report || {}).errors ? "The preview failed." : "Fix the mappings above to preview them." }));
        return { ok: false, problem: result.data || { detail: "The server answered " + result.status } };
      }
      previewBox.replaceChildren(el("h3", { class: "preview-heading", text: "Preview of the mapped rows" }), ...previewTable(data, result.data, mappings().map((m) => m.destination)));
      return { ok: true, result: result.data };
    }

    for (const m of opts.mappings || []) addRow(m);
    if (!tbody.children.length) addRow();
    setColumns(opts.columns || []);
    if (schemaId) setSchema(schemaId);

    return { element: root, mappings, filled, setSchema, setColumns, setSample, validate, preview, showProblem, addRow, ready: () => fieldsLoad };
  }

  window.HWMappingEditor = { mount, leafPaths, previewTable };
})();
