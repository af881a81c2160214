/* Headwater console: loaded before the page is shown (not deferred). Every form of the console without
 * an action is handled by the page's script, which is deferred and may be attached later (after the page
 * is drawn, or after an API call): such a form is never submitted by the browser itself, which would
 * reload the page with its named fields (an identity, an app's settings) in the address. The page's own
 * submit handlers still run. Forms with an action (sign-in, sign-out) are submitted as usual. */
document.addEventListener(
  "submit",
  (event) => {
    if (!event.target.hasAttribute("action")) event.preventDefault();
  },
  true
);
