/* Users (organization admins): the organization's people with their roles per sandbox, a form that adds
 * one, a form that changes a person's roles and admin flag, and Disable / Enable. Everything goes through
 * /data/core/identity/users with HW.api, like any other client; refusals are shown in the API's words. */
(function () {
  "use strict";

  const { api, el } = HW;
  const USERS = "/data/core/identity/users";
  const EVERY = "*";
  const root = document.getElementById("users");
  if (!root) return;
  const list = document.getElementById("user-list");
  const peopleErrors = document.getElementById("people-errors");
  const create = document.getElementById("user-new");
  const edit = document.getElementById("user-edit");
  let users = [];
  let editing = null; // the user whose roles the edit form shows

  /* Every user, following _links.next. */
  async function listAll() {
    const found = [];
    let next = USERS + "?orderby=username&limit=1000";
    while (next) {
      const result = await api("GET", next);
      if (!result.ok) return result;
      found.push(...(result.data.items || []));
      next = result.data._links && result.data._links.next ? result.data._links.next.href : null;
    }
    return { ok: true, data: found };
  }

  /* {"prod": "Developer", "*": "Viewer"} in words, the named sandboxes first. */
  function rolesCell(user) {
    if (user.admin) return el("span", {}, "Admin in every sandbox");
    const roles = user.roles || { [EVERY]: "Viewer" };
    const named = Object.keys(roles).filter((k) => k !== EVERY).sort();
    const items = named.map((k) => el("li", {}, el("code", { text: k }), ": " + roles[k]));
    items.push(el("li", {}, named.length ? "elsewhere: " : "every sandbox: ", roles[EVERY] || "Viewer"));
    return el("ul", { class: "plain roles-list" }, items);
  }

  function render() {
    const columns = [
      { label: "Username", value: (u) => el("strong", { text: u.username }) },
      { label: "Email", value: (u) => u.email || "" },
      { label: "Admin", value: (u) => (u.admin ? "Yes" : "No") },
      { label: "Roles", value: rolesCell },
      { label: "Status", value: (u) => el("span", { class: "badge " + (u.enabled ? "enabled" : "disabled"), text: u.enabled ? "Enabled" : "Disabled" }) },
      {
        label: "Actions",
        value: (u) =>
          el(
            "div",
            { class: "row actions" },
            el("button", { type: "button", class: "secondary small", text: "Change roles", "aria-label": `Change roles of ${u.username}`, "data-needs": "manage-users", onclick: () => openEdit(u) }),
            el("button", {
              type: "button",
              class: "secondary small",
              text: u.enabled ? "Disable" : "Enable",
              "aria-label": `${u.enabled ? "Disable" : "Enable"} ${u.username}`,
              "data-needs": "manage-users",
              onclick: (event) => setEnabled(u, !u.enabled, event.currentTarget),
            })
          ),
      },
    ];
    const table = HW.table(columns, users, { caption: `${users.length} user${users.length === 1 ? "" : "s"}`, empty: "No users yet." });
    table.querySelectorAll("tbody tr").forEach((tr, i) => users[i] && (tr.dataset.username = users[i].username));
    list.replaceChildren(table);
  }

  async function load() {
    const result = await listAll();
    list.removeAttribute("aria-busy");
    if (!result.ok) {
      list.replaceChildren();
      HW.showErrors(root.querySelector("section"), result.data);
      return false;
    }
    users = result.data;
    render();
    return true;
  }

  /* A refusal in words: the 409 that keeps the last admin says why, prefixed with what did not happen. */
  function refusal(what, result) {
    if (result.status === 409 && result.data && result.data.detail) return { detail: `${what}: ${result.data.detail}` };
    return result.data;
  }

  async function setEnabled(user, enabled, button) {
    HW.clearErrors(peopleErrors.parentElement);
    button.disabled = true;
    const op = enabled ? "enable" : "disable";
    const result = await api("POST", `${USERS}/${encodeURIComponent(user.id)}/action?op=${op}`);
    button.disabled = false;
    if (!result.ok) {
      HW.showErrors(peopleErrors.parentElement, refusal(`${user.username} was not ${op}d`, result));
      return;
    }
    HW.toast(`${user.username} ${op}d`);
    await load();
    const again = list.querySelector(`tr[data-username="${CSS.escape(user.username)}"] button[aria-label^="${enabled ? "Disable" : "Enable"}"]`);
    if (again) again.focus();
  }

  /* --- the role fields (the same in both forms) --------------------------------------------------- */

  function readRoles(form) {
    const roles = {};
    form.querySelectorAll("select[data-sandbox]").forEach((select) => {
      if (select.value) roles[select.dataset.sandbox] = select.value;
    });
    return roles;
  }

  function fillRoles(form, roles) {
    form.querySelectorAll("select[data-sandbox]").forEach((select) => {
      const sandbox = select.dataset.sandbox;
      select.value = roles[sandbox] || (sandbox === EVERY ? "Viewer" : "");
    });
  }

  /* --- add a user ------------------------------------------------------------------------------ */

  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    HW.clearErrors(create);
    const value = (selector) => create.querySelector(selector).value;
    const body = {
      username: value("#n-username").trim(),
      password: value("#n-password"),
      admin: create.querySelector("#n-admin").checked,
      roles: readRoles(create),
    };
    if (value("#n-email").trim()) body.email = value("#n-email").trim();
    const button = create.querySelector("button[type=submit]");
    button.disabled = true;
    const result = await api("POST", USERS, body);
    button.disabled = false;
    if (!result.ok) {
      HW.showErrors(create, refusal("The user was not created", result));
      return;
    }
    HW.toast(`${result.data.username} added`);
    create.reset();
    fillRoles(create, {});
    await load();
    const row = list.querySelector(`tr[data-username="${CSS.escape(result.data.username)}"]`);
    if (row) {
      row.classList.add("fresh");
      row.querySelector("button").focus();
    }
  });

  /* --- change a user's roles and admin flag ----------------------------------------------------- */

  function openEdit(user) {
    editing = user;
    HW.clearErrors(edit);
    edit.querySelector("#user-edit-heading").textContent = `Change roles of ${user.username}`;
    edit.querySelector("#e-admin").checked = Boolean(user.admin);
    fillRoles(edit, user.roles || {});
    edit.hidden = false;
    edit.querySelector("#user-edit-heading").focus();
  }

  function closeEdit() {
    const was = editing;
    editing = null;
    edit.hidden = true;
    const back = was && list.querySelector(`tr[data-username="${CSS.escape(was.username)}"] button`);
    if (back) back.focus();
  }

  edit.querySelector("#user-edit-cancel").addEventListener("click", closeEdit);

  edit.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!editing) return;
    HW.clearErrors(edit);
    const body = { admin: edit.querySelector("#e-admin").checked, roles: readRoles(edit) };
    const button = edit.querySelector("button[type=submit]");
    button.disabled = true;
    const result = await api("PATCH", `${USERS}/${encodeURIComponent(editing.id)}`, body);
    button.disabled = false;
    if (!result.ok) {
      HW.showErrors(edit, refusal(`${editing.username} was not changed`, result));
      return;
    }
    HW.toast(`${editing.username} changed`);
    await load();
    closeEdit();
  });

  load();
})();
