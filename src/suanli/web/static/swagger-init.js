// /docs: Swagger UI on the API's OpenAPI document, from suanli's own files (see web/docs.py).
"use strict";

window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,  // never ask swagger.io to validate the document
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
