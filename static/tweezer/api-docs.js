// The API docs page: Swagger UI (vendored) started from the settings the server put in a JSON block.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    const config = JSON.parse(document.getElementById("swagger-settings").textContent);
    config.dom_id = "#swagger-ui";
    config.presets = [window.SwaggerUIBundle.presets.apis];
    const csrf = document.body.getAttribute("data-csrf-token");
    if (csrf) {
      config.requestInterceptor = function (request) {
        request.headers["X-CSRFToken"] = csrf;
        return request;
      };
    }
    window.SwaggerUIBundle(config);
  });
})();
