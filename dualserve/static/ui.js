// The dualserve playground: forms built from this frontend's OpenAPI document, results shown inline.
"use strict";

const state = { doc: null, server: "" };

async function main() {
  const response = await fetch("openapi.json");
  state.doc = await response.json();
  state.server = (state.doc.servers && state.doc.servers[0] ? state.doc.servers[0].url : "").replace(/\/$/, "");
  const nav = document.getElementById("pipelines");
  const names = Object.keys(state.doc.paths).filter((path) => path.endsWith("/run")).map((path) => path.slice(1, -4));
  if (!names.length) nav.textContent = "No pipelines are served.";
  for (const name of names) {
    const button = document.createElement("button");
    button.textContent = name;
    button.dataset.pipeline = name;
    button.addEventListener("click", () => show(name));
    nav.appendChild(button);
  }
  const wanted = new URLSearchParams(location.search).get("pipeline");
  if (wanted && names.includes(wanted)) show(wanted);
}

function resolveRef(schema) {
  while (schema && schema.$ref) schema = state.doc.components.schemas[schema.$ref.split("/").pop()];
  return schema || {};
}

function fieldType(schema) {
  if (schema.anyOf) {
    const concrete = schema.anyOf.map(resolveRef).filter((option) => option.type !== "null");
    if (concrete.length === 1) return fieldType(concrete[0]);
    return { kind: "json" };
  }
  if (schema.enum) return { kind: "enum", values: schema.enum };
  if (schema.format === "binary") return { kind: "file" };
  if (schema.type === "boolean") return { kind: "boolean" };
  if (schema.type === "integer" || schema.type === "number") return { kind: "number", integer: schema.type === "integer" };
  if (schema.type === "string") return { kind: "string" };
  return { kind: "json" };
}

function show(name) {
  document.querySelectorAll("nav button").forEach((button) => button.classList.toggle("active", button.dataset.pipeline === name));
  const operation = state.doc.paths[`/${name}/run`].post;
  const [contentType, media] = Object.entries(operation.requestBody.content)[0];
  const schema = resolveRef(media.schema);
  document.getElementById("pipeline").hidden = false;
  document.getElementById("title").textContent = name;
  document.getElementById("description").textContent = operation.description || "";
  const form = document.getElementById("form");
  form.innerHTML = "";
  const fields = [];
  const required = new Set(schema.required || []);
  for (const [key, property] of Object.entries(schema.properties || {})) {
    const type = fieldType(resolveRef(property));
    const label = document.createElement("label");
    label.htmlFor = `field-${key}`;
    label.textContent = key + (required.has(key) ? " *" : "");
    let input;
    if (type.kind === "enum") {
      input = document.createElement("select");
      for (const value of type.values) input.add(new Option(value, JSON.stringify(value)));
    } else if (type.kind === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = property.default === true;
    } else if (type.kind === "file") {
      input = document.createElement("input");
      input.type = "file";
    } else if (type.kind === "json") {
      input = document.createElement("textarea");
      input.rows = 3;
      input.placeholder = "JSON";
      if (property.default !== undefined) input.value = JSON.stringify(property.default);
    } else {
      input = document.createElement("input");
      input.type = type.kind === "number" ? "number" : "text";
      if (type.kind === "number" && !type.integer) input.step = "any";
      if (property.default !== undefined && property.default !== null) input.value = property.default;
    }
    if (type.kind === "enum" && property.default !== undefined) input.value = JSON.stringify(property.default);
    input.id = `field-${key}`;
    input.name = key;
    form.append(label, input);
    if (property.description) {
      const help = document.createElement("div");
      help.className = "help";
      help.textContent = property.description;
      form.appendChild(help);
    }
    fields.push({ key, type, input, required: required.has(key) });
  }
  const actions = document.createElement("div");
  actions.className = "actions";
  const run = document.createElement("button");
  run.type = "submit";
  run.className = "run";
  run.textContent = "Run";
  actions.appendChild(run);
  form.appendChild(actions);
  form.onsubmit = (event) => {
    event.preventDefault();
    execute(name, contentType, fields);
  };
  document.getElementById("result").innerHTML = "";
}

function collect(fields, contentType) {
  const values = {};
  for (const { key, type, input, required } of fields) {
    if (type.kind === "file") {
      if (input.files.length) values[key] = input.files[0];
      continue;
    }
    if (type.kind === "boolean") { values[key] = input.checked; continue; }
    if (input.value === "" && !required) continue;
    if (type.kind === "number") values[key] = Number(input.value);
    else if (type.kind === "enum") values[key] = JSON.parse(input.value);
    else if (type.kind === "json") values[key] = JSON.parse(input.value);
    else values[key] = input.value;
  }
  if (contentType === "multipart/form-data") {
    const body = new FormData();
    for (const [key, value] of Object.entries(values)) {
      body.append(key, value instanceof File ? value : (typeof value === "string" ? value : JSON.stringify(value)));
    }
    return { body, values };
  }
  return { body: JSON.stringify(values), values };
}

function curlCommand(name, contentType, values) {
  const url = new URL(`${state.server}/${name}/run`, location.href).href;
  if (contentType === "multipart/form-data") {
    const parts = Object.entries(values).map(([key, value]) =>
      value instanceof File ? `-F '${key}=@${value.name}'` : `-F '${key}=${typeof value === "string" ? value : JSON.stringify(value)}'`);
    return `curl -X POST '${url}' ${parts.join(" ")} -o result`;
  }
  return `curl -X POST '${url}' -H 'Content-Type: application/json' -d '${JSON.stringify(values)}' -o result`;
}

function filenameOf(response, fallback) {
  const disposition = response.headers.get("content-disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) return decodeURIComponent(star[1]);
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1] : fallback;
}

async function execute(name, contentType, fields) {
  const result = document.getElementById("result");
  result.innerHTML = "<p class='meta'>Running…</p>";
  let payload;
  try {
    payload = collect(fields, contentType);
  } catch (error) {
    result.innerHTML = "";
    result.appendChild(paragraph(`Not valid JSON: ${error.message}`, "error"));
    return;
  }
  const headers = contentType === "multipart/form-data" ? {} : { "Content-Type": "application/json" };
  const started = performance.now();
  const response = await fetch(`${state.server}/${name}/run`, { method: "POST", headers, body: payload.body });
  const blob = await response.blob();
  const type = (response.headers.get("content-type") || "application/octet-stream").split(";")[0].trim();
  result.innerHTML = "";
  result.appendChild(paragraph(`${response.status} · ${type} · ${blob.size.toLocaleString()} bytes · ${Math.round(performance.now() - started)} ms`, "meta"));
  const url = URL.createObjectURL(blob);
  let view;
  if (type.startsWith("image/")) {
    view = document.createElement("img");
    view.alt = `${name} result`;
    view.id = "result-image";
  } else if (type.startsWith("audio/")) {
    view = document.createElement("audio");
    view.controls = true;
  } else if (type.startsWith("video/")) {
    view = document.createElement("video");
    view.controls = true;
  } else if (type === "application/pdf") {
    view = document.createElement("iframe");
    view.title = `${name} result`;
  }
  if (view) {
    view.src = url;
    result.appendChild(view);
  } else if (type.startsWith("text/") || type === "application/json") {
    const text = await blob.text();
    const pre = document.createElement("pre");
    try { pre.textContent = JSON.stringify(JSON.parse(text), null, 2); } catch { pre.textContent = text; }
    if (!response.ok) pre.className = "error";
    result.appendChild(pre);
  }
  const download = document.createElement("a");
  download.href = url;
  download.download = filenameOf(response, `${name}-result`);
  download.textContent = "Download";
  download.className = "download";
  result.appendChild(download);
  const curl = document.createElement("pre");
  curl.className = "curl";
  curl.textContent = curlCommand(name, contentType, payload.values);
  result.appendChild(curl);
}

function paragraph(text, className) {
  const p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

main();
