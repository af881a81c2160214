/* Headwater console: schemas (the list, one schema's resolved field tree) and datasets (the list, one
 * dataset's batches and rows). Shared pieces are in data.js. */
(function () {
  "use strict";

  const CAT = "/data/foundation/catalog";
  const { SR, XED, FULL, el, $, count, fail, setHeading, schemaHref, loadSchemas, schemaIndex, schemaLink, PAGES } = window.HWData;

  function shortClass(id) {
    return id ? id.split("/").pop() : "";
  }

  function fact(term, ...value) {
    return [el("dt", { text: term }), el("dd", {}, ...value)];
  }

  function statusBadge(status) {
    const cls = { partialSuccess: "partial", loading: "inProgress", queued: "inProgress", receiving: "inProgress" }[status] || status;
    return el("span", { class: "badge " + cls, text: status });
  }

  /* The batch of an hourly streaming run is "loading" in the catalog until its hour is over (its counts
   * are written then); meanwhile its rows are already in the dataset. Such a batch shows as receiving,
   * with the counts of its run so far. Other batches show as the catalog has them. */
  async function withStreamingRuns(batches) {
    const related = (b, type) => ((b.relatedObjects || []).find((o) => o.type === type) || {}).id;
    const open = batches.filter((b) => b.status === "loading" && related(b, "flowRun"));
    const runs = await Promise.all(open.map((b) => HW.api("GET", "/data/foundation/flowservice/runs/" + encodeURIComponent(related(b, "flowRun")))));
    open.forEach((b, i) => {
      const run = runs[i].ok && runs[i].data.items && runs[i].data.items[0];
      if (!run || HW.runState(run) !== "receiving") return;
      b.shown = { status: "receiving", metrics: (run.metrics || {}).recordSummary || {} };
    });
    return batches;
  }

  /* Each column's XDM type, by its dotted path (as the sample rows flatten it). */
  function columnTypes(node, prefix, out) {
    for (const [name, prop] of Object.entries((node && node.properties) || {})) {
      const path = prefix ? prefix + "." + name : name;
      if (prop.type === "object" && prop.properties) columnTypes(prop, path, out);
      else out[path] = typeOf(prop);
    }
    return out;
  }

  /* The search box's filter of the container's rows, attached before the list loads: what is typed
   * meanwhile is applied once the rows are there (run the answer after each render). */
  function filterRows(input, container) {
    const apply = () => {
      const q = input.value.trim().toLowerCase();
      container.querySelectorAll("tbody tr").forEach((tr) => {
        tr.hidden = q !== "" && !tr.textContent.toLowerCase().includes(q);
      });
    };
    input.addEventListener("input", apply);
    return apply;
  }

  // --- schemas ---
  async function schemasPage(root) {
    const list = $(root, "[data-list]");
    const filter = filterRows($(root, "#schema-search"), list);
    const schemas = await loadSchemas();
    if (!schemas) return;
    schemas.sort((a, b) => (a.title || "").localeCompare(b.title || ""));
    list.replaceChildren(
      HW.table(
        [
          { label: "Title", value: (s) => el("a", { href: schemaHref(s), text: s.title || s.$id }) },
          { label: "Class", value: (s) => shortClass(s["meta:class"]) },
          { label: "Field groups", value: (s) => String(Math.max(0, (s.allOf || []).length - 1)) },
          { label: "Version", value: (s) => s.version || "" },
          { label: "Id", value: (s) => el("code", { text: s.$id }) },
        ],
        schemas,
        { empty: "No schemas in this sandbox yet.", caption: count(schemas.length, "schema") }
      )
    );
    filter();
  }

  function typeOf(prop) {
    if (!prop) return "";
    if (prop.type === "array") return "array of " + typeOf(prop.items || {});
    if (prop.type === "object" && prop.additionalProperties && !prop.properties) return "map of " + typeOf(prop.additionalProperties);
    const xdm = prop["meta:xdmType"];
    const base = xdm && xdm !== prop.type ? xdm : prop.type || "any";
    return prop.format && prop.format !== xdm ? base + " (" + prop.format + ")" : base;
  }

  function pointerToPath(pointer) {
    return (pointer || "").replace(/^\//, "").split("/").map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~")).join(".");
  }

  function fieldTree(node, prefix, identities, counter) {
    const ul = el("ul", { "aria-label": prefix ? null : "Fields" });
    const required = new Set(node.required || []);
    for (const [name, prop] of Object.entries(node.properties || {})) {
      const path = prefix ? prefix + "." + name : name;
      counter.n += 1;
      let inner = prop;
      while (inner && inner.type === "array" && inner.items) inner = inner.items;
      const identity = identities[path];
      const label = el(
        "span",
        { class: "field-label" },
        el("code", { class: "name", text: name }),
        el("span", { class: "type", text: typeOf(prop) }),
        required.has(name) ? el("span", { class: "badge required", text: "required" }) : null,
        identity
          ? el("span", { class: "badge identity", text: "Identity: " + identity.namespace + (identity.primary ? " · primary" : "") })
          : null,
        prop.title && prop.title !== name ? el("span", { class: "muted title", text: prop.title }) : null
      );
      const li = el("li", { dataset: { field: path } });
      if (inner && inner.properties && Object.keys(inner.properties).length) {
        const details = el("details", { open: true }, el("summary", {}, label), fieldTree(inner, path, identities, counter));
        li.append(details);
      } else {
        li.append(label);
      }
      ul.append(li);
    }
    return ul;
  }

  async function schemaPage(root) {
    const ident = root.dataset.id;
    const tree = $(root, "[data-tree]");
    const countBox = $(root, "[data-count]");
    const filter = $(root, "#field-filter");
    let counter = null; // the number of fields, once the tree is shown
    // Attached before the schema loads: what is typed meanwhile filters the tree once it is shown.
    function applyFilter() {
      if (!counter) return;
      const q = filter.value.trim().toLowerCase();
      const items = tree.querySelectorAll("li[data-field]");
      if (!q) {
        items.forEach((li) => (li.hidden = false));
        countBox.textContent = count(counter.n, "field");
        return;
      }
      items.forEach((li) => (li.hidden = true));
      let shown = 0;
      items.forEach((li) => {
        if (!li.dataset.field.toLowerCase().includes(q)) return;
        shown += 1;
        for (let node = li; node && node !== tree; node = node.parentElement) {
          if (node.tagName === "LI") node.hidden = false;
          if (node.tagName === "DETAILS") node.open = true;
        }
      });
      countBox.textContent = shown + " of " + count(counter.n, "field") + " match";
    }
    filter.addEventListener("input", applyFilter);
    const [result, descriptors] = await Promise.all([
      HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(ident), null, { headers: FULL }),
      HW.api("GET", SR + "/tenant/descriptors?limit=1000"),
    ]);
    if (!result.ok) return fail(result);
    const schema = result.data;
    setHeading(schema.title || schema.$id);
    const identities = {};
    for (const d of (descriptors.ok && descriptors.data.results) || []) {
      if (d["@type"] === "xdm:descriptorIdentity" && d["xdm:sourceSchema"] === schema.$id) {
        identities[pointerToPath(d["xdm:sourceProperty"])] = { namespace: d["xdm:namespace"], primary: d["xdm:isPrimary"] === true };
      }
    }
    $(root, "[data-facts]").replaceChildren(
      ...fact("Title", schema.title || ""),
      ...fact("Class", el("code", { text: schema["meta:class"] || "" })),
      ...fact("Field groups", (schema["meta:extends"] || []).filter((x) => x !== schema["meta:class"]).map((x) => el("code", { class: "chip", text: shortClass(x) }))),
      ...fact("Id", el("code", { text: schema.$id }), " ", HW.copyButton(schema.$id, "Copy id")),
      ...(schema.description ? fact("Description", schema.description) : [])
    );
    const shown = { n: 0 };
    tree.replaceChildren(fieldTree(schema, "", identities, shown));
    counter = shown;
    applyFilter();
  }

  // --- datasets ---
  async function datasetsPage(root) {
    const list = $(root, "[data-list]");
    const filter = filterRows($(root, "#dataset-search"), list);
    const [result, schemas] = await Promise.all([HW.api("GET", CAT + "/dataSets?limit=100"), loadSchemas()]);
    if (!result.ok) return fail(result);
    const index = schemaIndex(schemas);
    const datasets = Object.values(result.data || {}).sort((a, b) => (b.created || 0) - (a.created || 0));
    list.replaceChildren(
      HW.table(
        [
          { label: "Name", value: (d) => el("a", { href: "/console/datasets/" + encodeURIComponent(d.id), text: d.name || d.id }) },
          { label: "Schema", value: (d) => schemaLink(index, (d.schemaRef || {}).id) },
          { label: "Created", value: (d) => HW.when(d.created) },
          { label: "Id", value: (d) => el("code", { text: d.id }) },
        ],
        datasets,
        { empty: "No datasets in this sandbox yet.", caption: count(datasets.length, "dataset") }
      )
    );
    filter();
  }

  /* A row as dotted columns: nested objects are flattened, arrays shown as JSON. */
  function flatten(value, prefix, out) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
    } else if (value !== null && value !== undefined) {
      out[prefix] = Array.isArray(value) ? JSON.stringify(value) : String(value);
    }
    return out;
  }

  function rowsTable(rows, empty, types) {
    const flat = rows.map((r) => flatten(r, "", {}));
    const columns = [];
    for (const row of flat) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
    const table = HW.table(
      columns.map((c) => ({ label: c, value: (row) => row[c] ?? "" })),
      flat,
      { empty }
    );
    table.querySelectorAll("thead th").forEach((th, i) => {
      const type = (types || {})[columns[i]];
      if (type) th.append(el("span", { class: "type", text: type }));
    });
    return table;
  }

  async function datasetPage(root) {
    const ident = root.dataset.id;
    const result = await HW.api("GET", CAT + "/dataSets/" + encodeURIComponent(ident));
    if (!result.ok) return fail(result);
    const dataset = Object.values(result.data)[0];
    setHeading(dataset.name || dataset.id);
    const schemaId = (dataset.schemaRef || {}).id;
    const [schema, batches] = await Promise.all([
      schemaId ? HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(schemaId), null, { headers: FULL }) : null,
      HW.api("GET", CAT + "/batches?limit=100&dataSet=" + encodeURIComponent(dataset.id)),
    ]);
    const schemaCell = schema && schema.ok ? el("a", { href: schemaHref(schema.data), text: schema.data.title || schemaId }) : el("code", { text: schemaId || "—" });
    $(root, "[data-facts]").replaceChildren(
      ...fact("Name", dataset.name || ""),
      ...fact("Schema", schemaCell),
      ...fact("Id", el("code", { text: dataset.id }), " ", HW.copyButton(dataset.id, "Copy id")),
      ...fact("Created", HW.when(dataset.created)),
      ...(dataset.description ? fact("Description", dataset.description) : [])
    );
    const batchBox = $(root, "[data-batches]");
    if (!batches.ok) {
      batchBox.replaceChildren(el("p", { class: "field-error", text: (batches.data && batches.data.detail) || "Batches could not be read." }));
    } else {
      const list = await withStreamingRuns(Object.values(batches.data || {}).sort((a, b) => (b.created || 0) - (a.created || 0)));
      const shown = (b) => b.shown || b;
      const related = (b, type) => ((b.relatedObjects || []).find((o) => o.type === type) || {}).id;
      batchBox.replaceChildren(
        HW.table(
          [
            { label: "Batch", value: (b) => el("code", { text: b.id }) },
            { label: "Status", value: (b) => statusBadge(shown(b).status) },
            { label: "Created", value: (b) => HW.when(b.created) },
            { label: "Records in", value: (b) => String((shown(b).metrics || {}).inputRecordCount ?? "") },
            { label: "Records out", value: (b) => String((shown(b).metrics || {}).outputRecordCount ?? "") },
            { label: "Failed", value: (b) => String((shown(b).metrics || {}).failedRecordCount ?? "") },
            {
              label: "Errors",
              value: (b) => (b.errors || []).map((e) => el("div", { text: (e.description || e.message || e.code) + (e.recordCount ? " (" + count(e.recordCount, "row") + ")" : "") })),
            },
            {
              label: "Dataflow",
              value: (b) => (related(b, "flow") ? el("a", { href: "/console/flows/" + encodeURIComponent(related(b, "flow")), text: "Open dataflow" }) : ""),
            },
          ],
          list,
          { empty: "No batches yet: nothing has been written to this dataset.", caption: count(list.length, "batch", "batches") }
        )
      );
    }
    const types = schema && schema.ok ? columnTypes(schema.data, "", {}) : {};
    const rowBox = $(root, "[data-rows]");
    const limit = $(root, "#row-limit");
    async function loadRows() {
      const rows = await HW.api("GET", CAT + "/dataSets/" + encodeURIComponent(dataset.id) + "/preview?limit=" + limit.value);
      if (!rows.ok) {
        rowBox.replaceChildren(el("p", { class: "field-error", text: (rows.data && rows.data.detail) || "Rows could not be read." }));
        return;
      }
      const data = rows.data.data || [];
      rowBox.replaceChildren(el("p", { class: "muted", text: count(data.length, "row") + " shown" }), rowsTable(data, "The dataset has no rows yet.", types));
    }
    limit.addEventListener("change", loadRows);
    await loadRows();
  }

  Object.assign(PAGES, { schemas: schemasPage, schema: schemaPage, datasets: datasetsPage, dataset: datasetPage });
})();
