/* Profiles: look a profile up by an identity (GET /data/core/ups/access/entities), then show its merged
 * attributes as a table of paths and values, the identities of its cluster
 * (GET /data/core/identity/cluster/members) and the datasets it came from. */
(function () {
  "use strict";
  const { api, el, table, showErrors, clearErrors } = window.HW;

  function leaves(value, prefix, out) {
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [key, child] of Object.entries(value)) leaves(child, prefix ? `${prefix}.${key}` : key, out);
    } else {
      out.push({ path: prefix, value: typeof value === "string" ? value : JSON.stringify(value) });
    }
    return out;
  }

  async function namespaces(select) {
    const listed = await api("GET", "/data/core/idnamespace/identities");
    const items = listed.ok && Array.isArray(listed.data) ? listed.data : [];
    for (const ns of items) select.append(el("option", { value: ns.code, text: `${ns.name} (${ns.code})` }));
    select.value = items.some((ns) => ns.code === "Email") ? "Email" : select.value;
  }

  async function lookUp(form, result) {
    clearErrors(form);
    result.replaceChildren(el("p", { class: "muted", text: "Looking up…" }));
    const namespace = form.namespace.value;
    const identity = form.identity.value.trim();
    const query = new URLSearchParams({ "schema.name": "_xdm.context.profile", entityIdNS: namespace, entityId: identity });
    const found = await api("GET", `/data/core/ups/access/entities?${query}`);
    if (!found.ok) {
      result.replaceChildren(el("p", { class: "error", role: "alert", text: found.status === 404 ? "No profile has this identity." : "" }));
      if (found.status !== 404) showErrors(form, found.data);
      return;
    }
    const [profile] = Object.values(found.data);
    const members = await api("GET", `/data/core/identity/cluster/members?${new URLSearchParams({ namespace, id: identity })}`);
    const identities = members.ok ? members.data.members : [];
    const { identityMap, ...attributes } = profile.entity;
    result.replaceChildren(
      el("h2", { text: `Profile ${profile.entityId}` }),
      el("p", { class: "muted", text: `Last modified ${HW.when(profile.lastModifiedAt)}; merge policy ${profile.mergePolicy.id}` }),
      el("h3", { text: "Identities" }),
      table(
        [
          { label: "Namespace", value: (m) => m.namespace.code },
          { label: "Identity", value: (m) => m.id },
        ],
        identities
      ),
      el("h3", { text: "Attributes" }),
      table(
        [
          { label: "Field", value: (row) => el("code", { text: row.path }) },
          { label: "Value", value: (row) => row.value },
        ],
        leaves(attributes, "", [])
      ),
      el("h3", { text: "Datasets" }),
      el("ul", {}, profile.sources.map((id) => el("li", {}, el("a", { href: `/console/datasets/${id}`, text: id })))),
    );
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("profile-lookup");
    const result = document.getElementById("profile-result");
    if (!form) return;
    namespaces(form.namespace);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      lookUp(form, result);
    });
  });
})();
