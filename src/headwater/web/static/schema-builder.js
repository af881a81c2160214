/* Headwater console: the schema builder, a reusable component (the Create schema page, the Create dataset
 * page, and dataflow wizards mount it in one of their steps). It builds a schema the way AEP's editor
 * does, through the public Schema Registry API only:
 *
 *   const builder = HWSchemaBuilder.mount(container, {columns: [{name, type}]})   columns: optional
 *   builder.ready                 a promise: the classes, field groups and namespaces are loaded
 *   builder.validate()            -> a message when the schema is incomplete (shown next to the field), or null
 *   builder.save()                -> Promise<{ok: true, schema} | {ok: false, problem}>
 *   builder.title()               -> the title typed
 *   builder.profileEnabled()      -> whether "Enable for Profile" is ticked
 *   builder.describe()            -> one line for a review step
 *
 * save() creates, in this order: a tenant field group holding the custom fields (under _{tenantId}, the
 * tenant id from GET /stats), the schema (class + chosen field groups + that field group), and one
 * identity descriptor per identity row. When a step is refused, what was created before it is deleted
 * again (nothing half-made is left behind) and the API's errors are shown next to the fields they name.
 * Once saved, save() answers the same schema again (a wizard may call it twice).
 *
 * Shared helpers for the schema pages: HWSchemaBuilder.tenantId(), .namespaces(), .stringFields(resolved),
 * .fieldSpec(type), .TYPES, .NAME_RULE.
 */
(function () {
  "use strict";

  const SR = "/data/foundation/schemaregistry";
  const XED = { Accept: "application/vnd.adobe.xed+json" };
  const FULL = { Accept: "application/vnd.adobe.xed-full+json; version=1" };
  const el = (...args) => HW.el(...args);

  /* The custom field types offered, in XDM's words (value = what fieldSpec takes). */
  const TYPES = [
    ["string", "String"],
    ["integer", "Integer"],
    ["number", "Number"],
    ["boolean", "Boolean"],
    ["date", "Date"],
    ["date-time", "Date-time"],
  ];
  const NAME_RULE = /^[A-Za-z_][A-Za-z0-9_]*$/;
  const NAME_HELP = "Letters, digits and _; not starting with a digit.";
  const IDENTITY_MAP = "https://ns.adobe.com/xdm/context/identitymap";

  function fieldSpec(type, title) {
    const spec = type === "date" || type === "date-time" ? { type: "string", format: type } : { type };
    if (title) spec.title = title;
    return spec;
  }

  /* A source column's type (from a file, a database, a CRM) as one of TYPES. */
  function columnType(type) {
    const t = String(type || "").toLowerCase();
    if (/^(int|integer|long|bigint|smallint|tinyint|int\d+|uint\d+|short)$/.test(t)) return "integer";
    if (/^(number|double|float|decimal|numeric|real|currency|percent|float\d+)/.test(t)) return "number";
    if (/^(bool|boolean)$/.test(t)) return "boolean";
    if (/^(date|date32|date64)$/.test(t)) return "date";
    if (/(date-?time|timestamp)/.test(t)) return "date-time";
    return "string";
  }

  /* A column name as an XDM field name: other characters become _, a leading digit gets a _. */
  function fieldName(name) {
    let n = String(name || "").trim().replace(/[^A-Za-z0-9_]+/g, "_");
    if (/^[0-9]/.test(n)) n = "_" + n;
    return n || "field";
  }

  let tenantPromise = null;
  function tenantId() {
    if (!tenantPromise) {
      tenantPromise = HW.api("GET", SR + "/stats").then((r) => {
        if (!r.ok || !r.data || !r.data.tenantId) {
          tenantPromise = null;
          throw r.data || { detail: "The Schema Registry did not say the tenant id." };
        }
        return r.data.tenantId;
      });
    }
    return tenantPromise;
  }

  let namespacePromise = null;
  function namespaces() {
    if (!namespacePromise) {
      namespacePromise = HW.api("GET", "/data/core/idnamespace/identities").then((r) => {
        if (!r.ok) {
          namespacePromise = null;
          return [];
        }
        return (Array.isArray(r.data) ? r.data : []).slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
      });
    }
    return namespacePromise;
  }

  /* The string leaves (not dates) of a resolved JSON Schema: [{path, title}], arrays skipped. */
  function stringFields(node, prefix, titles, out) {
    const found = out || [];
    for (const [name, prop] of Object.entries((node && node.properties) || {})) {
      const path = prefix ? prefix + "." + name : name;
      const chain = (titles || []).concat(prop.title || name);
      if (prop.type === "object" && prop.properties) stringFields(prop, path, chain, found);
      else if (prop.type === "string" && prop.format !== "date" && prop.format !== "date-time") found.push({ path, title: chain.join(" › ") });
    }
    return found;
  }

  function pointer(path) {
    return "/" + path.split(".").map((p) => p.replace(/~/g, "~0").replace(/\//g, "~1")).join("/");
  }

  /* A problem whose refusal names no field but says which one (report.path, e.g. a 409 on
   * xdm:isPrimary) as one with report.errors, so that showErrors puts it next to that field. */
  function withErrors(problem, prefix) {
    const p = problem && typeof problem === "object" ? problem : { detail: String(problem || "Request failed") };
    const report = p.report || {};
    let errors = report.errors;
    if ((!errors || !errors.length) && report.path) errors = [{ path: report.path, message: p.detail || p.title }];
    if (!errors || !errors.length) return p;
    return Object.assign({}, p, {
      report: Object.assign({}, report, { errors: errors.map((e) => ({ path: prefix + (e.path || ""), message: e.message })) }),
    });
  }

  let mounts = 0;

  function ensureStyles() {
    if (document.querySelector('link[href$="/schema-builder.css"]')) return;
    document.head.append(el("link", { rel: "stylesheet", href: "/console/static/schema-builder.css" }));
  }

  function mount(container, options) {
    const opts = options || {};
    ensureStyles();
    mounts += 1;
    const id = (name) => "sb" + mounts + "-" + name;
    const cache = {}; // resolved parts by $id (class and field groups)
    let classes = [];
    let groups = []; // global and tenant field groups, as stored
    let saved = null;
    let fieldCount = 0;
    let identityCount = 0;

    const errorsBox = el("div", { class: "general-errors", "data-errors": "", role: "alert", hidden: true });
    const title = el("input", { type: "text", id: id("title"), "data-path": "title", autocomplete: "off", "aria-required": "true" });
    const description = el("input", { type: "text", id: id("description"), "data-path": "description", autocomplete: "off" });
    const classSelect = el("select", { id: id("class"), "data-path": "allOf", "aria-required": "true", "aria-describedby": id("class-help") });
    const profile = el("input", { type: "checkbox", id: id("profile"), "data-path": "meta:immutableTags", "aria-describedby": id("profile-help") });
    const groupList = el("div", { class: "sb-groups", role: "group", "aria-labelledby": id("groups-legend") });
    const fieldRows = el("tbody", {});
    const identityRows = el("tbody", {});
    const columnBox = el("div", { class: "sb-columns" });
    const fieldsTable = el(
      "table",
      { class: "grid sb-rows", "data-path": "definitions" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Name" }), el("th", { scope: "col", text: "Type" }), el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Remove" })))),
      fieldRows
    );
    const identityTable = el(
      "table",
      { class: "grid sb-rows" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "Field" }), el("th", { scope: "col", text: "Namespace" }), el("th", { scope: "col", text: "Primary" }), el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Remove" })))),
      identityRows
    );
    const root = el(
      "div",
      { class: "schema-builder", "data-schema-builder": "" },
      errorsBox,
      el("div", { class: "field" }, el("label", { for: id("title") }, "Schema title", el("span", { class: "req", "aria-hidden": "true", text: " *" })), title),
      el("div", { class: "field" }, el("label", { for: id("description"), text: "Schema description" }), description),
      el(
        "div",
        { class: "field" },
        el("label", { for: id("class") }, "Class", el("span", { class: "req", "aria-hidden": "true", text: " *" })),
        classSelect,
        el("p", { class: "help", id: id("class-help"), text: "What a row is: Individual Profile for people's attributes, ExperienceEvent for things that happen at a time." })
      ),
      el(
        "div",
        { class: "field check" },
        el("label", { for: id("profile"), text: "Enable for Profile" }),
        profile
      ),
      el("p", { class: "help sb-profile-help", id: id("profile-help"), text: "Datasets of the schema can then feed Real-Time Customer Profile; it needs a primary identity." }),
      el("fieldset", { class: "sb-fieldset" }, el("legend", { id: id("groups-legend"), text: "Field groups" }), el("p", { class: "help", text: "Standard sets of fields that fit the chosen class." }), groupList),
      el(
        "fieldset",
        { class: "sb-fieldset" },
        el("legend", { text: "Custom fields" }),
        el("p", { class: "help", id: id("fields-help"), text: "Fields of your own, kept under your organization's namespace in a field group made for this schema. " + NAME_HELP }),
        columnBox,
        fieldsTable,
        el("p", {}, el("button", { type: "button", class: "secondary small", text: "Add field", onclick: () => addField("", "string", true) }))
      ),
      el(
        "fieldset",
        { class: "sb-fieldset" },
        el("legend", { text: "Identities" }),
        el("p", { class: "help", text: "Text fields that identify a person, each in an identity namespace; one may be the primary identity." }),
        identityTable,
        el("p", {}, el("button", { type: "button", class: "secondary small", text: "Add identity", onclick: () => addIdentity(true) }))
      )
    );
    container.append(root);
    // An error note goes once the person changes what it was about.
    const fixed = (event) => event.target.getAttribute && event.target.getAttribute("aria-invalid") && HW.clearErrors(root);
    root.addEventListener("input", fixed);
    root.addEventListener("change", fixed);

    // --- custom fields ---
    function addField(name, type, focus) {
      fieldCount += 1;
      const n = fieldCount;
      const nameInput = el("input", { type: "text", id: id("field-name-" + n), "aria-label": "Field name " + n, autocomplete: "off", value: name || "", class: "sb-field-name", "aria-describedby": id("fields-help") });
      const typeSelect = el(
        "select",
        { id: id("field-type-" + n), "aria-label": "Field type " + n, class: "sb-field-type" },
        TYPES.map(([value, label]) => el("option", { value, text: label, selected: value === type }))
      );
      const row = el(
        "tr",
        { dataset: { fieldRow: String(n) } },
        el("td", {}, el("div", { class: "field" }, nameInput)),
        el("td", {}, el("div", { class: "field" }, typeSelect)),
        el("td", {}, el("button", { type: "button", class: "link", "aria-label": "Remove field " + n, text: "Remove", onclick: () => { row.remove(); refreshColumns(); refreshIdentityFields(); } }))
      );
      nameInput.addEventListener("input", refreshIdentityFields);
      typeSelect.addEventListener("change", refreshIdentityFields);
      fieldRows.append(row);
      refreshColumns();
      refreshIdentityFields();
      if (focus) nameInput.focus();
      return row;
    }

    function customFields() {
      return Array.from(fieldRows.querySelectorAll("tr")).map((row) => ({
        row,
        name: row.querySelector(".sb-field-name").value.trim(),
        type: row.querySelector(".sb-field-type").value,
      }));
    }

    function refreshColumns() {
      const columns = opts.columns || [];
      if (!columns.length) return;
      const taken = new Set(customFields().map((f) => f.name));
      columnBox.replaceChildren(
        el("p", { class: "help", text: "Columns of the source: add one as a custom field in one click." }),
        el(
          "div",
          { class: "sb-chips" },
          columns.map((c) => {
            const name = fieldName(c.name);
            return el("button", {
              type: "button",
              class: "secondary small",
              text: "+ " + c.name,
              "aria-label": "Add column " + c.name + " as a field",
              disabled: taken.has(name),
              onclick: () => addField(name, columnType(c.type), false),
            });
          }),
          el("button", {
            type: "button",
            class: "secondary small",
            text: "Add all columns",
            onclick: () => {
              const have = new Set(customFields().map((f) => f.name));
              for (const c of columns) if (!have.has(fieldName(c.name))) addField(fieldName(c.name), columnType(c.type), false);
            },
          })
        )
      );
    }

    // --- identities ---
    let tenant = null;
    let identityFields = [];
    let namespaceList = [];

    function addIdentity(focus) {
      identityCount += 1;
      const n = identityCount;
      const i = () => Array.from(identityRows.children).indexOf(row);
      const fieldSelect = el("select", { id: id("identity-field-" + n), "aria-label": "Identity field " + n, class: "sb-identity-field" });
      const nsSelect = el("select", { id: id("identity-namespace-" + n), "aria-label": "Identity namespace " + n, class: "sb-identity-namespace" });
      const primary = el("input", { type: "checkbox", id: id("identity-primary-" + n), "aria-label": "Primary identity " + n, class: "sb-identity-primary" });
      primary.addEventListener("change", () => {
        if (!primary.checked) return;
        identityRows.querySelectorAll(".sb-identity-primary").forEach((box) => box !== primary && (box.checked = false));
      });
      const row = el(
        "tr",
        {},
        el("td", {}, el("div", { class: "field" }, fieldSelect)),
        el("td", {}, el("div", { class: "field" }, nsSelect)),
        el("td", {}, el("div", { class: "field" }, primary)),
        el("td", {}, el("button", { type: "button", class: "link", "aria-label": "Remove identity " + n, text: "Remove", onclick: () => row.remove() }))
      );
      row.index = i;
      fillNamespaces(nsSelect);
      fillIdentityField(fieldSelect);
      if (!identityRows.querySelector(".sb-identity-primary:checked")) primary.checked = true;
      identityRows.append(row);
      if (focus) fieldSelect.focus();
      return row;
    }

    function fillNamespaces(select) {
      const current = select.value;
      select.replaceChildren(
        el("option", { value: "", text: "Choose a namespace…" }),
        ...namespaceList.map((ns) => el("option", { value: ns.code, text: ns.name && ns.name !== ns.code ? ns.name + " (" + ns.code + ")" : ns.code, selected: ns.code === current }))
      );
    }

    function fillIdentityField(select) {
      const current = select.value;
      select.replaceChildren(
        el("option", { value: "", text: identityFields.length ? "Choose a field…" : "No text fields yet" }),
        ...identityFields.map((f) => el("option", { value: f.path, text: f.title + " (" + f.path + ")", selected: f.path === current }))
      );
    }

    async function resolvedPart(ref, tenantGroup) {
      if (!cache[ref]) {
        const where = tenantGroup ? "/tenant/fieldgroups/" : classes.some((c) => c.$id === ref) ? "/global/classes/" : "/global/fieldgroups/";
        cache[ref] = HW.api("GET", SR + where + encodeURIComponent(ref), null, { headers: FULL }).then((r) => (r.ok ? r.data : {}));
      }
      return cache[ref];
    }

    let refreshing = Promise.resolve();
    function refreshIdentityFields() {
      refreshing = (async () => {
        const parts = [];
        if (classSelect.value) parts.push(resolvedPart(classSelect.value, false));
        for (const g of chosenGroups()) parts.push(resolvedPart(g.$id, g["meta:containerId"] === "tenant"));
        const seen = new Set();
        const list = [];
        for (const part of await Promise.all(parts)) {
          for (const f of stringFields(part, "", [])) {
            if (!seen.has(f.path)) list.push(f), seen.add(f.path);
          }
        }
        if (tenant) {
          for (const f of customFields()) {
            const path = "_" + tenant + "." + f.name;
            if (f.name && f.type === "string" && !seen.has(path)) list.push({ path, title: f.name }), seen.add(path);
          }
        }
        identityFields = list;
        identityRows.querySelectorAll(".sb-identity-field").forEach(fillIdentityField);
      })();
      return refreshing;
    }

    function identities() {
      return Array.from(identityRows.children).map((row) => ({
        row,
        field: row.querySelector(".sb-identity-field").value,
        namespace: row.querySelector(".sb-identity-namespace").value,
        primary: row.querySelector(".sb-identity-primary").checked,
      }));
    }

    // --- class and field groups ---
    function chosenGroups() {
      return Array.from(groupList.querySelectorAll("input[type=checkbox]:checked")).map((box) => box.group);
    }

    function showGroups() {
      const cls = classSelect.value;
      const chosen = new Set(chosenGroups().map((g) => g.$id));
      const fits = groups.filter((g) => cls && (g["meta:intendedToExtend"] || []).includes(cls));
      if (!cls) {
        groupList.replaceChildren(el("p", { class: "muted", text: "Choose a class first." }));
        return;
      }
      groupList.replaceChildren(
        ...fits.map((g, i) => {
          const box = el("input", { type: "checkbox", id: id("group-" + i), checked: chosen.has(g.$id), "aria-describedby": g.description ? id("group-help-" + i) : null });
          box.group = g;
          box.addEventListener("change", refreshIdentityFields);
          return el(
            "div",
            { class: "sb-group" },
            el("div", { class: "field check" }, el("label", { for: id("group-" + i), text: g.title + (g["meta:containerId"] === "tenant" ? " (this sandbox)" : "") }), box),
            g.description ? el("p", { class: "help", id: id("group-help-" + i), text: g.description }) : null
          );
        }),
        ...(fits.length ? [] : [el("p", { class: "muted", text: "No field groups fit this class." })])
      );
    }

    classSelect.addEventListener("change", () => {
      showGroups();
      refreshIdentityFields();
    });

    const ready = (async () => {
      const [cls, global, own, ns, tid] = await Promise.all([
        HW.api("GET", SR + "/global/classes?limit=1000", null, { headers: XED }),
        HW.api("GET", SR + "/global/fieldgroups?limit=1000", null, { headers: XED }),
        HW.api("GET", SR + "/tenant/fieldgroups?limit=1000", null, { headers: XED }),
        namespaces(),
        tenantId().catch(() => null),
      ]);
      if (!cls.ok) HW.showErrors(root, cls.data || { detail: "The classes could not be read." });
      classes = (cls.ok && cls.data.results) || [];
      groups = [...((global.ok && global.data.results) || []), ...((own.ok && own.data.results) || [])];
      namespaceList = ns;
      tenant = tid;
      classSelect.replaceChildren(
        el("option", { value: "", text: "Choose a class…" }),
        ...classes.map((c) => el("option", { value: c.$id, text: c.title || c.$id }))
      );
      identityRows.querySelectorAll(".sb-identity-namespace").forEach(fillNamespaces);
      showGroups();
      refreshColumns();
      await refreshIdentityFields();
      root.setAttribute("data-ready", "true");
    })();

    // --- validation and saving ---
    function invalid(path, message) {
      HW.showErrors(root, { title: message, detail: message, report: { errors: [{ path, message }] } });
      return message;
    }

    function mark(node, path) {
      node.setAttribute("data-path", path);
    }

    function validate() {
      HW.clearErrors(root);
      if (!title.value.trim()) return invalid("title", "Give the schema a title.");
      if (!classSelect.value) return invalid("allOf", "Choose the schema's class.");
      const names = new Set();
      for (const [i, f] of customFields().entries()) {
        const input = f.row.querySelector(".sb-field-name");
        mark(input, "customFields[" + i + "].name");
        if (!f.name) return invalid("customFields[" + i + "].name", "Name the field, or remove it.");
        if (!NAME_RULE.test(f.name)) return invalid("customFields[" + i + "].name", "Use letters, digits and _ only, not starting with a digit.");
        if (names.has(f.name)) return invalid("customFields[" + i + "].name", "Two custom fields are named " + f.name + ".");
        names.add(f.name);
      }
      const rows = identities();
      const used = new Set();
      for (const [i, idn] of rows.entries()) {
        mark(idn.row.querySelector(".sb-identity-field"), "identities[" + i + "].xdm:sourceProperty");
        mark(idn.row.querySelector(".sb-identity-namespace"), "identities[" + i + "].xdm:namespace");
        mark(idn.row.querySelector(".sb-identity-primary"), "identities[" + i + "].xdm:isPrimary");
        if (!idn.field) return invalid("identities[" + i + "].xdm:sourceProperty", "Choose the field that holds the identity, or remove the row.");
        if (used.has(idn.field)) return invalid("identities[" + i + "].xdm:sourceProperty", "This field is already an identity above.");
        used.add(idn.field);
        if (!idn.namespace) return invalid("identities[" + i + "].xdm:namespace", "Choose the identity's namespace.");
      }
      const hasIdentityMap = chosenGroups().some((g) => g.$id === IDENTITY_MAP);
      if (profile.checked && !rows.some((r) => r.primary) && !hasIdentityMap) {
        return invalid("meta:immutableTags", "A schema enabled for Profile needs a primary identity: add an identity and mark it primary.");
      }
      return null;
    }

    async function remove(path) {
      await HW.api("DELETE", SR + path);
    }

    async function save() {
      if (saved) return { ok: true, schema: saved };
      await ready;
      await refreshing;
      const message = validate();
      if (message) return { ok: false, problem: { title: message, detail: message } };
      const fields = customFields();
      let tid = tenant;
      if (fields.length && !tid) {
        try {
          tid = tenant = await tenantId();
        } catch (problem) {
          HW.showErrors(root, problem);
          return { ok: false, problem };
        }
      }
      const schemaTitle = title.value.trim();
      const classId = classSelect.value;
      let group = null;
      if (fields.length) {
        const ns = "_" + tid;
        const props = {};
        fields.forEach((f) => {
          props[f.name] = fieldSpec(f.type, f.name);
          mark(f.row.querySelector(".sb-field-name"), "definitions.customFields.properties." + ns + ".properties." + f.name);
          mark(f.row.querySelector(".sb-field-type"), "definitions.customFields.properties." + ns + ".properties." + f.name + ".type");
        });
        const body = {
          type: "object",
          title: schemaTitle + " fields",
          description: "Custom fields of the schema " + schemaTitle,
          "meta:intendedToExtend": [classId],
          definitions: { customFields: { properties: { [ns]: { type: "object", properties: props } } } },
          allOf: [{ $ref: "#/definitions/customFields" }],
        };
        const made = await HW.api("POST", SR + "/tenant/fieldgroups", body, { headers: XED });
        if (!made.ok) {
          const problem = made.data || { detail: "The server answered " + made.status };
          HW.showErrors(root, withErrors(problem, ""));
          return { ok: false, problem };
        }
        group = made.data;
      }
      const chosen = chosenGroups();
      chosen.forEach((g, i) => {
        const box = Array.from(groupList.querySelectorAll("input[type=checkbox]")).find((b) => b.group === g);
        if (box) mark(box, "allOf[" + (i + 1) + "]");
      });
      const schemaBody = {
        type: "object",
        title: schemaTitle,
        description: description.value.trim(),
        allOf: [{ $ref: classId }, ...chosen.map((g) => ({ $ref: g.$id })), ...(group ? [{ $ref: group.$id }] : [])],
        "meta:class": classId,
      };
      if (profile.checked) schemaBody["meta:immutableTags"] = ["union"];
      const made = await HW.api("POST", SR + "/tenant/schemas", schemaBody, { headers: XED });
      if (!made.ok) {
        if (group) await remove("/tenant/fieldgroups/" + encodeURIComponent(group.$id));
        const problem = made.data || { detail: "The server answered " + made.status };
        // A clash the schema's composition names by the field's path (_tenant.name, e.g. one name with
        // two types in two field groups) goes next to that custom field.
        const shown = withErrors(problem, "");
        for (const e of (shown.report && shown.report.errors) || []) {
          const f = fields.find((x) => e.path === "_" + tid + "." + x.name);
          if (f) e.path = f.row.querySelector(".sb-field-name").dataset.path;
        }
        HW.showErrors(root, shown);
        return { ok: false, problem };
      }
      const schema = made.data;
      const descriptors = [];
      for (const [i, idn] of identities().entries()) {
        const body = {
          "@type": "xdm:descriptorIdentity",
          "xdm:sourceSchema": schema.$id,
          "xdm:sourceVersion": 1,
          "xdm:sourceProperty": pointer(idn.field),
          "xdm:namespace": idn.namespace,
          "xdm:property": "xdm:code",
          "xdm:isPrimary": idn.primary,
        };
        const result = await HW.api("POST", SR + "/tenant/descriptors", body);
        if (!result.ok) {
          for (const d of descriptors) await remove("/tenant/descriptors/" + encodeURIComponent(d["@id"]));
          await remove("/tenant/schemas/" + encodeURIComponent(schema.$id));
          if (group) await remove("/tenant/fieldgroups/" + encodeURIComponent(group.$id));
          const problem = result.data || { detail: "The server answered " + result.status };
          HW.showErrors(root, withErrors(problem, "identities[" + i + "]."));
          return { ok: false, problem };
        }
        descriptors.push(result.data);
      }
      saved = schema;
      root.setAttribute("data-saved", schema.$id);
      return { ok: true, schema };
    }

    function describe() {
      const cls = classes.find((c) => c.$id === classSelect.value);
      const parts = [(cls && cls.title) || "no class yet"];
      const g = chosenGroups().length;
      if (g) parts.push(g + (g === 1 ? " field group" : " field groups"));
      const f = customFields().length;
      if (f) parts.push(f + (f === 1 ? " custom field" : " custom fields"));
      const primary = identities().find((r) => r.primary && r.field);
      if (primary) parts.push("primary identity " + primary.field + " (" + primary.namespace + ")");
      return "New schema “" + (title.value.trim() || "untitled") + "”: " + parts.join(", ");
    }

    return {
      ready,
      validate,
      save,
      title: () => title.value.trim(),
      profileEnabled: () => profile.checked,
      describe,
      element: root,
      saved: () => saved,
    };
  }

  window.HWSchemaBuilder = { mount, tenantId, namespaces, stringFields, fieldSpec, columnType, fieldName, pointer, withErrors, TYPES, NAME_RULE, NAME_HELP };
})();
