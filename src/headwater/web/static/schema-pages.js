/* Headwater console: the pages that create and extend schemas and datasets.
 *   /console/schemas/new     the schema builder (schema-builder.js); after saving, the schema's page
 *   /console/schemas/<id>    adds "Add field" and "Mark an identity" under the field tree (data-catalog.js)
 *   /console/datasets/new    the target dataset step (dataset-target.js) in "new dataset" mode
 * Shared pieces are in data.js. */
(function () {
  "use strict";

  const { SR, XED, FULL, el, $, schemaHref, PAGES } = window.HWData;

  // --- create a schema ---
  function schemaNewPage(root) {
    const form = $(root, "[data-schema-form]");
    const builder = HWSchemaBuilder.mount($(root, "[data-builder]"), {});
    const submit = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const result = await builder.save();
        if (result.ok) location.assign(schemaHref(result.schema));
      } finally {
        submit.disabled = false;
      }
    });
    return builder.ready;
  }

  // --- create a dataset ---
  function datasetNewPage(root) {
    const form = $(root, "[data-dataset-form]");
    const target = HWDatasetTarget.mount($(root, "[data-target]"), { newOnly: true });
    const submit = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const result = await target.save();
        if (result.ok) location.assign("/console/datasets/" + encodeURIComponent(result.datasetId));
      } finally {
        submit.disabled = false;
      }
    });
    return target.ready;
  }

  // --- extend a schema: add a custom field, mark an identity ---
  /* The tenant field group a new field goes to: the first of the schema's own (tenant) field groups, with
   * the definition that holds the _{tenantId} object. */
  async function tenantGroupOf(schema, ns) {
    for (const ref of schema["meta:extends"] || []) {
      if (!/\/mixins\//.test(ref) || !ref.startsWith("https://ns.adobe.com/") || ref.startsWith("https://ns.adobe.com/xdm/")) continue;
      const got = await HW.api("GET", SR + "/tenant/fieldgroups/" + encodeURIComponent(ref), null, { headers: XED });
      if (!got.ok) continue;
      const key = Object.keys(got.data.definitions || {}).find((k) => ((got.data.definitions[k] || {}).properties || {})[ns]);
      if (key) return { group: got.data, etag: got.etag, key };
    }
    return null;
  }

  async function addFieldSection(root, schema) {
    const ns = "_" + (await HWSchemaBuilder.tenantId().catch(() => ""));
    const resolved = await HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(schema.$id), null, { headers: FULL });
    const existing = new Set(Object.keys((((resolved.data || {}).properties || {})[ns] || {}).properties || {}));
    const box = $(root, "[data-extend]");
    const errors = el("div", { class: "general-errors", "data-errors": "", role: "alert", hidden: true });
    const name = el("input", { type: "text", id: "new-field-name", autocomplete: "off", "aria-describedby": "new-field-help" });
    const type = el("select", { id: "new-field-type" }, HWSchemaBuilder.TYPES.map(([v, label]) => el("option", { value: v, text: label })));
    const fieldForm = el(
      "form",
      { novalidate: true, "data-add-field": "" },
      errors,
      el("div", { class: "field" }, el("label", { for: "new-field-name", text: "New field name" }), name, el("p", { class: "help", id: "new-field-help", text: "A custom field under " + ns + ". " + HWSchemaBuilder.NAME_HELP + " Fields can only be added: a schema keeps the fields it has." })),
      el("div", { class: "field" }, el("label", { for: "new-field-type", text: "New field type" }), type),
      el("div", { class: "wizard-buttons" }, el("button", { type: "submit", class: "primary", "data-needs": "manage-schemas", text: "Add field" }))
    );
    fieldForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = fieldForm.querySelector("button[type=submit]");
      const said = (path, message) => HW.showErrors(fieldForm, { detail: message, report: { errors: [{ path, message }] } });
      const field = name.value.trim();
      name.dataset.path = "name";
      type.dataset.path = "type";
      if (!field) return said("name", "Name the field.");
      if (!HWSchemaBuilder.NAME_RULE.test(field)) return said("name", "Use letters, digits and _ only, not starting with a digit.");
      if (existing.has(field)) return said("name", "The schema already has a field " + ns + "." + field + ": fields can be added, not changed.");
      button.disabled = true;
      try {
        const found = await tenantGroupOf(schema, ns);
        let result;
        if (found) {
          const base = "definitions." + found.key + ".properties." + ns + ".properties." + field;
          name.dataset.path = base;
          type.dataset.path = base + ".type";
          result = await HW.api(
            "PATCH",
            SR + "/tenant/fieldgroups/" + encodeURIComponent(found.group.$id),
            [{ op: "add", path: "/definitions/" + found.key.replace(/~/g, "~0").replace(/\//g, "~1") + "/properties/" + ns + "/properties/" + field, value: HWSchemaBuilder.fieldSpec(type.value, field) }],
            { headers: XED, etag: found.etag }
          );
        } else {
          // No field group of its own yet: make one (as the schema builder does) and add it to the schema.
          const base = "definitions.customFields.properties." + ns + ".properties." + field;
          name.dataset.path = base;
          type.dataset.path = base + ".type";
          const made = await HW.api(
            "POST",
            SR + "/tenant/fieldgroups",
            {
              type: "object",
              title: (schema.title || "Schema") + " fields",
              description: "Custom fields of the schema " + (schema.title || ""),
              "meta:intendedToExtend": [schema["meta:class"]],
              definitions: { customFields: { properties: { [ns]: { type: "object", properties: { [field]: HWSchemaBuilder.fieldSpec(type.value, field) } } } } },
              allOf: [{ $ref: "#/definitions/customFields" }],
            },
            { headers: XED }
          );
          result = made;
          if (made.ok) {
            const current = await HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(schema.$id), null, { headers: XED });
            result = await HW.api("PATCH", SR + "/tenant/schemas/" + encodeURIComponent(schema.$id), [{ op: "add", path: "/allOf/-", value: { $ref: made.data.$id } }], { headers: XED, etag: current.etag });
            if (!result.ok) await HW.api("DELETE", SR + "/tenant/fieldgroups/" + encodeURIComponent(made.data.$id));
          }
        }
        if (!result.ok) {
          const problem = HWSchemaBuilder.withErrors(result.data || { detail: "The server answered " + result.status }, "");
          // A refusal naming the field's path in the schema (e.g. _tenant.field) goes next to the name.
          for (const e of (problem.report && problem.report.errors) || []) if (e.path === ns + "." + field) e.path = name.dataset.path;
          HW.showErrors(fieldForm, problem);
          return;
        }
        HW.toast("Field " + ns + "." + field + " added");
        location.reload();
      } finally {
        button.disabled = false;
      }
    });

    // Mark an identity: any text field of the schema that is not one yet.
    const descriptors = await HW.api("GET", SR + "/tenant/descriptors?limit=1000");
    const taken = new Set(
      ((descriptors.ok && descriptors.data.results) || [])
        .filter((d) => d["xdm:sourceSchema"] === schema.$id)
        .map((d) => d["xdm:sourceProperty"])
    );
    const hasPrimary = ((descriptors.ok && descriptors.data.results) || []).some((d) => d["xdm:sourceSchema"] === schema.$id && d["xdm:isPrimary"]);
    const candidates = HWSchemaBuilder.stringFields(resolved.data || {}, "", []).filter((f) => !taken.has(HWSchemaBuilder.pointer(f.path)));
    const namespaces = await HWSchemaBuilder.namespaces();
    const idErrors = el("div", { class: "general-errors", "data-errors": "", role: "alert", hidden: true });
    const idField = el("select", { id: "identity-field", "data-path": "xdm:sourceProperty" }, el("option", { value: "", text: candidates.length ? "Choose a field…" : "No text field left to mark" }), candidates.map((f) => el("option", { value: f.path, text: f.title + " (" + f.path + ")" })));
    const idNs = el("select", { id: "identity-namespace", "data-path": "xdm:namespace" }, el("option", { value: "", text: "Choose a namespace…" }), namespaces.map((n) => el("option", { value: n.code, text: n.name && n.name !== n.code ? n.name + " (" + n.code + ")" : n.code })));
    const idPrimary = el("input", { type: "checkbox", id: "identity-primary", "data-path": "xdm:isPrimary", checked: !hasPrimary });
    const idForm = el(
      "form",
      { novalidate: true, "data-add-identity": "" },
      idErrors,
      el("div", { class: "field" }, el("label", { for: "identity-field", text: "Identity field" }), idField),
      el("div", { class: "field" }, el("label", { for: "identity-namespace", text: "Identity namespace" }), idNs),
      el("div", { class: "field check" }, el("label", { for: "identity-primary", text: "Primary identity" }), idPrimary),
      el("div", { class: "wizard-buttons" }, el("button", { type: "submit", class: "primary", "data-needs": "manage-schemas", text: "Mark as identity" }))
    );
    idForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const said = (path, message) => HW.showErrors(idForm, { detail: message, report: { errors: [{ path, message }] } });
      if (!idField.value) return said("xdm:sourceProperty", "Choose the field that holds the identity.");
      if (!idNs.value) return said("xdm:namespace", "Choose the identity's namespace.");
      const button = idForm.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        const result = await HW.api("POST", SR + "/tenant/descriptors", {
          "@type": "xdm:descriptorIdentity",
          "xdm:sourceSchema": schema.$id,
          "xdm:sourceVersion": 1,
          "xdm:sourceProperty": HWSchemaBuilder.pointer(idField.value),
          "xdm:namespace": idNs.value,
          "xdm:property": "xdm:code",
          "xdm:isPrimary": idPrimary.checked,
        });
        if (!result.ok) return HW.showErrors(idForm, HWSchemaBuilder.withErrors(result.data || { detail: "The server answered " + result.status }, ""));
        location.reload();
      } finally {
        button.disabled = false;
      }
    });
    box.replaceChildren(
      el("div", { class: "extend-grid" }, el("section", { "aria-labelledby": "add-field-heading" }, el("h3", { id: "add-field-heading", text: "Add a field" }), fieldForm), el("section", { "aria-labelledby": "add-identity-heading" }, el("h3", { id: "add-identity-heading", text: "Mark an identity" }), idForm))
    );
  }

  const showSchema = PAGES.schema;
  async function schemaPage(root) {
    await showSchema(root);
    const got = await HW.api("GET", SR + "/tenant/schemas/" + encodeURIComponent(root.dataset.id), null, { headers: XED });
    if (got.ok && $(root, "[data-extend]")) await addFieldSection(root, got.data);
  }

  Object.assign(PAGES, { "schema-new": schemaNewPage, "dataset-new": datasetNewPage, schema: schemaPage });
})();
