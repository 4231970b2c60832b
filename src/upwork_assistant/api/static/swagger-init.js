// Starts Swagger UI on /docs (served from 'self', so the page needs no inline script).
// The OpenAPI document's address comes from the page: data-openapi-url on #swagger-ui.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // No badge from validator.swagger.io: the page loads nothing from other hosts.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
  });
})();
