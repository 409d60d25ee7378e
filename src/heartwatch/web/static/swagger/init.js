// The page's one script of its own (a file, not inline: the daemon's Content-Security-Policy
// runs no inline code). The OpenAPI document comes from the daemon itself; nothing is fetched
// from elsewhere, so /docs works on a machine without internet.
"use strict";

// With a token configured the page is opened as /docs?token=...: taken out of the address
// (not left in the history), then sent as a bearer token with every request from the page.
const address = new URL(window.location.href);
const token = address.searchParams.get("token");
if (token !== null) {
  address.searchParams.delete("token");
  window.history.replaceState(null, "", address.pathname + address.search + address.hash);
}

window.addEventListener("DOMContentLoaded", () => {
  window.ui = window.SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    // No validator badge: it would send the document to a public validation service.
    validatorUrl: null,
    requestInterceptor: (request) => {
      if (token && !request.headers.Authorization) {
        request.headers.Authorization = `Bearer ${token}`;
      }
      return request;
    },
  });
});
