/* Starts the vendored Swagger UI on /v1/docs with the settings the page carries as JSON
   (grok2api/apidocs.py); a file instead of an inline script for the Content-Security-Policy. */
(function () {
  "use strict";
  var settings = JSON.parse(document.getElementById("swagger-settings").textContent);
  window.ui = SwaggerUIBundle(Object.assign({
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,  // never send the schema to a public validator
    presets: [SwaggerUIBundle.presets.apis],
  }, settings));
})();
