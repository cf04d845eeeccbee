// Swagger UI for this frontend's own document; every URL is relative, so mounts just work.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: true,
});
