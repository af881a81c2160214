/* Headwater console: schemas, datasets and mapping sets. Each page's root has data-page (and data-id);
 * everything it shows comes from the public API through HW.api. This file holds what the pages share and
 * starts the page; the pages are in data-catalog.js (schemas, datasets) and data-mappings.js (mapping sets
 * and their editor). */
(function () {
  "use strict";

  const SR = "/data/foundation/schemaregistry";
  const XED = { Accept: "application/vnd.adobe.xed+json" };
  const FULL = { Accept: "application/vnd.adobe.xed-full+json; version=1" };

  const el = (...args) => HW.el(...args);
  const $ = (root, selector) => root.querySelector(selector);
  /* "1 row", "3 rows". */
  const count = (n, word, plural) => n + " " + (n === 1 ? word : plural || word + "s");

  function fail(result) {
    HW.showErrors(null, result.data || { detail: "The server answered " + result.status });
  }

  function setHeading(text) {
    const h1 = document.querySelector("#main h1");
    if (h1) h1.textContent = text;
    document.title = text + " · Headwater";
  }

  function schemaHref(schema) {
    return "/console/schemas/" + encodeURIComponent(schema["meta:altId"] || schema.$id);
  }

  /* All tenant schemas as stored (title, class, $id, altId). */
  async function loadSchemas() {
    const result = await HW.api("GET", SR + "/tenant/schemas?limit=1000", null, { headers: XED });
    if (!result.ok) {
      fail(result);
      return null;
    }
    return result.data.results || [];
  }

  function schemaIndex(schemas) {
    const index = {};
    for (const s of schemas || []) index[s.$id] = s;
    return index;
  }

  function schemaLink(index, id) {
    const schema = index[id];
    return schema ? el("a", { href: schemaHref(schema), text: schema.title || id }) : el("code", { text: id || "—" });
  }

  /* The page files add their pages here; they run (deferred, after this file) before DOMContentLoaded. */
  const PAGES = {};

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-page]");
    const show = root && PAGES[root.dataset.page];
    if (show) {
      Promise.resolve(show(root)).finally(() => root.setAttribute("data-ready", "true"));
    }
  });

  window.HWData = { SR, XED, FULL, el, $, count, fail, setHeading, schemaHref, loadSchemas, schemaIndex, schemaLink, PAGES };
})();
