// The dualserve playground: forms built from this frontend's OpenAPI document, results shown inline.
"use strict";

// runs counts the runs started, so an answer that comes after a newer run started is dropped;
// source (an AbortController) and timer follow the job of the latest run, asJob is the "Run as a
// job" choice; keyed: the server's pipeline and job routes need an API key.
const state = { doc: null, server: "", urls: [], runs: 0, source: null, timer: null, asJob: false, keyed: false };

async function main() {
  const response = await fetch("openapi.json");
  state.doc = await response.json();
  state.server = (state.doc.servers && state.doc.servers[0] ? state.doc.servers[0].url : "").replace(/\/$/, "");
  const schemes = state.doc.components && state.doc.components.securitySchemes;
  if (schemes && Object.keys(schemes).length) showKeyField();
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

// --- The API key: typed once, kept for this tab (sessionStorage, never localStorage), sent as X-API-Key

const KEY_STORAGE = "dualserve.api-key";
const KEY_HEADER = "X-API-Key";

function showKeyField() {
  state.keyed = true;
  const form = document.getElementById("auth");
  const input = document.getElementById("api-key");
  if (!form.hidden) return;
  form.hidden = false;
  form.addEventListener("submit", (event) => event.preventDefault());
  try { input.value = sessionStorage.getItem(KEY_STORAGE) || ""; } catch { /* no storage: typed each time */ }
  input.addEventListener("input", () => {
    try {
      if (input.value) sessionStorage.setItem(KEY_STORAGE, input.value);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch { /* kept in the field only */ }
  });
}

// headers, with the key typed (if the server takes one and one is typed).
function withKey(headers = {}) {
  const key = state.keyed ? document.getElementById("api-key").value.trim() : "";
  if (key) headers[KEY_HEADER] = key;
  return headers;
}

// A 401: the key is missing or wrong, so the field is where to go next.
function askForKey() {
  showKeyField();
  const input = document.getElementById("api-key");
  input.focus();
  input.select();
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
  if (schema.type === "array" && !schema.prefixItems) {
    const item = fieldType(resolveRef(schema.items));
    if (["string", "number", "boolean", "enum"].includes(item.kind)) return { kind: "list", item };
  }
  return { kind: "json" };
}

// A list is typed one item per line; each line becomes a value of the schema's item type.
function listItems(text, item) {
  const lines = text.split("\n").map((line) => line.replace(/\r$/, "")).filter((line) => line.trim() !== "");
  return lines.map((line, index) => {
    const where = `item ${index + 1} (${JSON.stringify(line)})`;
    if (item.kind === "number") {
      const value = Number(line.trim());
      if (!Number.isFinite(value) || (item.integer && !Number.isInteger(value))) {
        throw new Error(`${where} is not ${item.integer ? "an integer" : "a number"}`);
      }
      return value;
    }
    if (item.kind === "boolean") {
      const word = line.trim().toLowerCase();
      if (word !== "true" && word !== "false") throw new Error(`${where} is not true or false`);
      return word === "true";
    }
    if (item.kind === "enum") {
      const value = item.values.find((option) => String(option) === line.trim());
      if (value === undefined) throw new Error(`${where} is not one of ${item.values.map(String).join(", ")}`);
      return value;
    }
    return line;
  });
}

function show(name) {
  document.querySelectorAll("nav button").forEach((button) => button.classList.toggle("active", button.dataset.pipeline === name));
  const operation = state.doc.paths[`/${name}/run`].post;
  const [contentType, media] = Object.entries(operation.requestBody.content)[0];
  const schema = resolveRef(media.schema);
  document.getElementById("pipeline").hidden = false;
  document.getElementById("title").textContent = name;
  const tag = (state.doc.tags || []).find((entry) => entry.name === name);
  document.getElementById("description").textContent = tag ? tag.description || "" : operation.description || "";
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
    } else if (type.kind === "list") {
      input = document.createElement("textarea");
      input.rows = 4;
      input.placeholder = type.item.kind === "number" ? "one number per line" : "one item per line";
      if (Array.isArray(property.default)) input.value = property.default.map(String).join("\n");
    } else if (type.kind === "json") {
      input = document.createElement("textarea");
      input.rows = 3;
      input.placeholder = "JSON";
      if (property.default !== undefined && property.default !== null) input.value = JSON.stringify(property.default);
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
  let asJob = null;
  if (state.doc.paths[`/${name}/jobs`]) {
    // The same request as a job (POST /{name}/jobs): followed live, cancelable, its result kept.
    const choice = document.createElement("label");
    choice.className = "as-job";
    asJob = document.createElement("input");
    asJob.type = "checkbox";
    asJob.id = "as-job";
    asJob.checked = state.asJob;
    const sync = () => {
      state.asJob = asJob.checked;
      run.textContent = asJob.checked ? "Submit job" : "Run";
    };
    asJob.addEventListener("change", sync);
    sync();
    choice.append(asJob, " Run as a job");
    actions.appendChild(choice);
  }
  form.appendChild(actions);
  form.onsubmit = (event) => {
    event.preventDefault();
    if (asJob && asJob.checked) submitJob(name, contentType, fields);
    else execute(name, contentType, fields);
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
    if (type.kind === "list") {
      // An empty list sends nothing, so the parameter's default applies.
      const items = listItems(input.value, type.item);
      if (items.length) values[key] = items;
      continue;
    }
    if (input.value === "" && !required) continue;
    if (type.kind === "number") values[key] = Number(input.value);
    else if (type.kind === "enum") values[key] = JSON.parse(input.value);
    else if (type.kind === "json") {
      try {
        values[key] = JSON.parse(input.value);
      } catch (error) {
        throw new Error(`${key}: not valid JSON: ${error.message}`);
      }
    } else values[key] = input.value;
  }
  if (contentType === "multipart/form-data") {
    // Form fields are text: a list is its key repeated, one item each (as the server reads forms).
    const body = new FormData();
    for (const [key, value] of formPairs(values)) body.append(key, value);
    return { body, values };
  }
  return { body: JSON.stringify(values), values };
}

function formPairs(values) {
  const pairs = [];
  const text = (value) => (typeof value === "string" ? value : JSON.stringify(value));
  for (const [key, value] of Object.entries(values)) {
    if (value instanceof File) pairs.push([key, value]);
    else if (Array.isArray(value)) for (const item of value) pairs.push([key, text(item)]);
    else pairs.push([key, text(value)]);
  }
  return pairs;
}

// Extensions a media type's subtype does not spell; others are the subtype itself (image/png → png).
const EXTENSIONS = {
  "image/jpeg": "jpg",
  "image/svg+xml": "svg",
  "image/x-icon": "ico",
  "image/vnd.microsoft.icon": "ico",
  "audio/mpeg": "mp3",
  "audio/wave": "wav",
  "audio/x-wav": "wav",
  "audio/vnd.wave": "wav",
  "text/plain": "txt",
  "text/markdown": "md",
  "text/javascript": "js",
  "application/gzip": "gz",
  "application/x-tar": "tar",
  "application/octet-stream": "bin",
};
const IMAGE_EXTENSIONS = {
  png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif", webp: "image/webp",
  avif: "image/avif", bmp: "image/bmp", svg: "image/svg+xml",
};

function extensionOf(type, filename) {
  const named = /\.([A-Za-z0-9]{1,8})$/.exec(filename || "");
  if (named) return named[1].toLowerCase();
  if (EXTENSIONS[type]) return EXTENSIONS[type];
  const subtype = (type.split("/")[1] || "").split("+")[0].replace(/^(x-|vnd\.)/, "");
  return /^[a-z0-9]{1,8}$/.test(subtype) ? subtype : "bin";
}

// What a plain curl of this endpoint saves: the answer's own type and file name when the run
// succeeded, else the first type the endpoint documents (the one a request without Accept gets).
function outputName(name, response, type) {
  const filename = response.ok ? dispositionName(response) : null;
  let mediaType = type;
  if (!response.ok) {
    const documented = Object.keys(state.doc.paths[`/${name}/run`].post.responses["200"].content || {});
    if (documented.length && documented[0] !== "*/*") mediaType = documented[0];
  }
  return `result.${extensionOf(mediaType, filename)}`;
}

function shellQuote(text) {
  return `'${String(text).replace(/'/g, "'\\''")}'`;
}

// The curl of a run (saved to output) or, with endpoint "jobs", of a job's submission (the job
// JSON printed).
// The key is never in it: the shell reads it from $DUALSERVE_API_KEY (double quotes, so it expands).
function curlCommand(name, contentType, values, output, endpoint = "run") {
  const url = new URL(`${state.server}/${name}/${endpoint}`, location.href).href;
  const save = output ? ` -o ${output}` : "";
  const key = state.keyed ? ` -H "${KEY_HEADER}: $DUALSERVE_API_KEY"` : "";
  if (contentType === "multipart/form-data") {
    // -F reads "@x" and "<x" as files: such text goes with --form-string.
    const parts = formPairs(values).map(([key, value]) => {
      if (value instanceof File) return `-F ${shellQuote(`${key}=@${value.name}`)}`;
      return `${/^[@<]/.test(value) ? "--form-string" : "-F"} ${shellQuote(`${key}=${value}`)}`;
    });
    return `curl -X POST ${shellQuote(url)}${key} ${parts.join(" ")}${save}`;
  }
  return `curl -X POST ${shellQuote(url)}${key} -H 'Content-Type: application/json' -d ${shellQuote(JSON.stringify(values))}${save}`;
}

function dispositionName(response) {
  const disposition = response.headers.get("content-disposition") || "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  if (star) {
    try { return decodeURIComponent(star[1]); } catch { /* fall back to the plain name */ }
  }
  const plain = /filename="?([^";]+)"?/i.exec(disposition);
  return plain ? plain[1] : null;
}

// The entries of a zip, read from its central directory (a streamed zip's local headers carry no
// sizes): stored entries as they are, deflated ones through the browser's own DecompressionStream.
async function zipEntries(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const view = new DataView(bytes.buffer);
  let end = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--) {
    if (view.getUint32(i, true) === 0x06054b50) { end = i; break; }
  }
  if (end < 0) return [];
  const entries = [];
  let offset = view.getUint32(end + 16, true);
  for (let n = view.getUint16(end + 10, true); n > 0; n--) {
    if (offset + 46 > bytes.length || view.getUint32(offset, true) !== 0x02014b50) break;
    const flags = view.getUint16(offset + 8, true);
    const method = view.getUint16(offset + 10, true);
    const size = view.getUint32(offset + 20, true);
    const nameLength = view.getUint16(offset + 28, true);
    const local = view.getUint32(offset + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(offset + 46, offset + 46 + nameLength));
    offset += 46 + nameLength + view.getUint16(offset + 30, true) + view.getUint16(offset + 32, true);
    if (flags & 1 || name.endsWith("/") || local + 30 > bytes.length || view.getUint32(local, true) !== 0x04034b50) continue;
    const start = local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
    if (start + size > bytes.length) continue;
    const data = new Blob([bytes.subarray(start, start + size)]);
    try {
      if (method === 0) entries.push({ name, blob: data });
      else if (method === 8) {
        const inflated = data.stream().pipeThrough(new DecompressionStream("deflate-raw"));
        entries.push({ name, blob: await new Response(inflated).blob() });
      }
    } catch { /* an entry the browser cannot read is left out of the gallery */ }
  }
  return entries;
}

async function gallery(blob, name) {
  const entries = await zipEntries(blob);
  const images = entries.filter((entry) => IMAGE_EXTENSIONS[extensionOf("", entry.name)]);
  if (!images.length) return null;
  const container = document.createElement("div");
  container.className = "gallery";
  for (const entry of images) {
    const url = objectURL(new Blob([entry.blob], { type: IMAGE_EXTENSIONS[extensionOf("", entry.name)] }));
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = url;
    image.alt = `${name}: ${entry.name}`;
    const caption = document.createElement("figcaption");
    const link = document.createElement("a");
    link.href = url;
    link.download = entry.name;
    link.textContent = entry.name;
    caption.appendChild(link);
    figure.append(image, caption);
    container.appendChild(figure);
  }
  return container;
}

function objectURL(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

// A new run: what the previous one showed and followed is let go.
function begin() {
  const run = ++state.runs;
  for (const url of state.urls.splice(0)) URL.revokeObjectURL(url);
  if (state.source) state.source.abort();
  clearTimeout(state.timer);
  state.source = null;
  return run;
}

// The request body from the form, or null once the form's error is shown.
function prepare(fields, contentType, result) {
  try {
    return collect(fields, contentType);
  } catch (error) {
    result.replaceChildren(paragraph(error.message, "error"));
    return null;
  }
}

function mediaTypeOf(response) {
  return (response.headers.get("content-type") || "application/octet-stream").split(";")[0].trim().toLowerCase();
}

async function execute(name, contentType, fields) {
  const result = document.getElementById("result");
  const run = begin();
  result.replaceChildren(paragraph("Running…", "meta"));
  const payload = prepare(fields, contentType, result);
  if (!payload) return;
  const headers = withKey(contentType === "multipart/form-data" ? {} : { "Content-Type": "application/json" });
  const started = performance.now();
  let response;
  let blob;
  try {
    response = await fetch(`${state.server}/${name}/run`, { method: "POST", headers, body: payload.body });
    blob = await response.blob();
  } catch (error) {
    if (run === state.runs) result.replaceChildren(paragraph(`The request failed: ${error.message}`, "error"));
    return;
  }
  if (run !== state.runs) return;
  const output = outputName(name, response, mediaTypeOf(response));
  await showAnswer(name, response, blob, { run, started, curl: curlCommand(name, contentType, payload.values, output) });
  if (response.status === 401 && run === state.runs) askForKey();
}

// An answer shown as it is: an image, audio, video or PDF inline, a zip of images as a gallery,
// text and JSON as text, anything else to download; after the nodes in lead, before the curl.
async function showAnswer(name, response, blob, { run, started, curl }, lead = []) {
  const result = document.getElementById("result");
  const type = mediaTypeOf(response);
  const elapsed = Math.round(performance.now() - started);
  const nodes = [paragraph(`${response.status} · ${type} · ${blob.size.toLocaleString()} bytes · ${elapsed} ms`, "meta")];
  const url = objectURL(blob);
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
    nodes.push(view);
  } else if (response.ok && (type === "application/zip" || type === "application/x-zip-compressed")) {
    const images = await gallery(blob, name);
    if (images) nodes.push(images);
  } else if (type.startsWith("text/") || type === "application/json" || type.endsWith("+json")) {
    const text = await blob.text();
    const pre = document.createElement("pre");
    try { pre.textContent = JSON.stringify(JSON.parse(text), null, 2); } catch { pre.textContent = text; }
    if (!response.ok) pre.className = "error";
    nodes.push(pre);
  }
  const download = document.createElement("a");
  download.href = url;
  download.download = dispositionName(response) || `${name}-result.${extensionOf(type)}`;
  download.textContent = nodes.some((node) => node.className === "gallery") ? `Download all (${download.download})` : "Download";
  download.className = "download";
  if (run !== state.runs) return;
  result.replaceChildren(...lead, ...nodes, download, ...curlBlock(curl));
}

// The curl, and with a key, where the key it sends comes from.
function curlBlock(command) {
  const curl = document.createElement("pre");
  curl.className = "curl";
  curl.textContent = command;
  if (!state.keyed) return [curl];
  return [curl, paragraph("$DUALSERVE_API_KEY holds your API key: export DUALSERVE_API_KEY=… first.", "curl-note")];
}

// --- Jobs: POST /{name}/jobs, followed with its server-sent events ----------------------------------

// The server-sent events of a fetched stream, each given to handle({ type, data, id }); read with
// fetch, not EventSource, which cannot send the API key. Parsed as the HTML standard says: lines
// end with CRLF, LF or CR; a blank line dispatches; an event without data is not dispatched.
async function readEvents(body, handle) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  let id = null;
  let retry = null;
  const read = (lines) => {
    for (const line of lines) {
      if (line === "") {
        if (data.length) handle({ type: type || "message", data: data.join("\n"), id, retry });
        else if (id !== null || retry !== null) handle({ type: null, data: "", id, retry });
        type = "";
        data = [];
        id = null;
        retry = null;
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "event") type = text;
      else if (field === "data") data.push(text);
      else if (field === "id" && !text.includes("\0")) id = text;
      else if (field === "retry" && /^\d+$/.test(text)) retry = Number(text);
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      if (buffer.endsWith("\r")) read([buffer.slice(0, -1)]); // the stream's last line ended with a CR
      return; // an event without its blank line is not dispatched
    }
    buffer += value;
    // A CR at the end may be the first half of a CRLF: it waits for the next chunk.
    const lines = buffer.split(/\r\n|\n|\r(?!$)/);
    buffer = lines.pop();
    read(lines);
  }
}

const pause = (milliseconds) => new Promise((resolve) => setTimeout(resolve, milliseconds));

const FINAL = ["succeeded", "failed", "canceled"];
const STATUSES = ["queued", "running", ...FINAL];

async function submitJob(name, contentType, fields) {
  const result = document.getElementById("result");
  const run = begin();
  result.replaceChildren(paragraph("Submitting…", "meta"));
  const payload = prepare(fields, contentType, result);
  if (!payload) return;
  const headers = withKey(contentType === "multipart/form-data" ? {} : { "Content-Type": "application/json" });
  const context = { run, started: performance.now(), curl: curlCommand(name, contentType, payload.values, null, "jobs") };
  let response;
  let job;
  try {
    response = await fetch(`${state.server}/${name}/jobs`, { method: "POST", headers, body: payload.body });
    if (response.status !== 201 && response.status !== 202) {
      // Refused (422, 404 ...): shown as a run's error is.
      const blob = await response.blob();
      if (run === state.runs) await showAnswer(name, response, blob, context);
      if (response.status === 401 && run === state.runs) askForKey();
      return;
    }
    job = await response.json();
  } catch (error) {
    if (run === state.runs) result.replaceChildren(paragraph(`The request failed: ${error.message}`, "error"));
    return;
  }
  if (run !== state.runs) return;
  // Location is the job's URL under this frontend's prefix.
  follow(name, job, response.headers.get("location") || `${state.server}/jobs/${job.id}`, context);
}

function follow(name, job, url, context) {
  const result = document.getElementById("result");
  const panel = document.createElement("div");
  panel.className = "job";
  const status = paragraph("", "job-status");
  const line = document.createElement("div");
  line.className = "job-progress";
  const bar = document.createElement("progress");
  bar.id = "job-progress";
  bar.max = 1;
  const percent = document.createElement("span");
  percent.className = "job-percent";
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "cancel";
  cancel.textContent = "Cancel";
  line.append(bar, percent, cancel);
  const message = paragraph("", "job-message");
  panel.append(status, line, message);
  result.replaceChildren(panel, ...curlBlock(context.curl));
  let done = false;
  const current = () => context.run === state.runs;
  // Ends the job's event stream: at the job's end, or when a new run begins.
  const events = new AbortController();
  state.source = events;

  const update = (data) => {
    status.textContent = `Job ${job.id} · ${data.status}`;
    if (typeof data.progress === "number") {
      bar.value = data.progress;
      percent.textContent = `${Math.round(data.progress * 100)}%`;
    } else {
      bar.removeAttribute("value"); // no fraction reported: an indeterminate bar
      percent.textContent = "";
    }
    message.textContent = data.message || "";
  };

  // The end, once: the result shown as a run's would be, the error's detail, or what became of it.
  const end = async (final) => {
    if (done || !current()) return;
    done = true;
    events.abort();
    clearTimeout(state.timer);
    status.textContent = `Job ${job.id} · ${final}`;
    line.remove();
    message.remove();
    if (final === "canceled") {
      panel.append(paragraph("The job was canceled.", "meta"));
      return;
    }
    if (final === "gone") {
      panel.append(paragraph("The job is gone: deleted, or expired.", "meta"));
      return;
    }
    try {
      const answer = await fetch(url, { headers: withKey() });
      const ended = answer.ok ? await answer.json() : null;
      if (!ended) {
        if (current()) panel.append(paragraph(`The job could not be read: ${answer.status}.`, "error"));
        return;
      }
      if (final === "failed") {
        const error = ended.error || { status: 500, detail: "The pipeline failed." };
        const detail = document.createElement("pre");
        detail.className = "error";
        detail.textContent = typeof error.detail === "string" ? error.detail : JSON.stringify(error.detail, null, 2);
        if (current()) panel.append(paragraph(`${error.status} · the job failed`, "meta"), detail);
        return;
      }
      const response = await fetch(ended.result_url || `${url}/result`, { headers: withKey() });
      const blob = await response.blob();
      if (current()) await showAnswer(name, response, blob, context, [panel]);
    } catch (error) {
      if (current()) panel.append(paragraph(`The request failed: ${error.message}`, "error"));
    }
  };

  // Without its events (a proxy that buffers them, say), the job is asked for each second.
  const poll = async () => {
    if (done || !current()) return;
    try {
      const answer = await fetch(url, { headers: withKey() });
      if (answer.status === 404) return end("gone");
      if (answer.ok) {
        const data = await answer.json();
        update(data);
        if (FINAL.includes(data.status)) return end(data.status);
      }
    } catch { /* asked again below */ }
    if (!done && current()) state.timer = setTimeout(poll, 1000);
  };

  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      const answer = await fetch(url, { method: "DELETE", headers: withKey() });
      if (answer.ok) {
        const data = await answer.json();
        // A job that had ended is deleted all the same, its result too.
        return end(data.status === "canceled" ? "canceled" : "gone");
      }
      if (answer.status === 404) return end("gone");
    } catch { /* the button comes back */ }
    cancel.disabled = false;
  });

  update(job);
  if (FINAL.includes(job.status)) {
    end(job.status);
    return;
  }
  // The events, as EventSource would follow them (with the key, which it cannot send): a dropped
  // or ended stream is asked again from the Last-Event-ID seen, so no event is lost or seen twice;
  // a refusal (an answer that is not an event stream) falls back to polling.
  const listen = async () => {
    let last = null;
    let retry = 1000;
    const handle = (event) => {
      if (event.id !== null) last = event.id;
      if (event.retry !== null) retry = event.retry;
      if (done || !current() || !STATUSES.includes(event.type)) return;
      const data = JSON.parse(event.data);
      update(data);
      if (FINAL.includes(data.status)) end(data.status);
    };
    while (!done && current()) {
      const headers = withKey({ Accept: "text/event-stream" });
      if (last) headers["Last-Event-ID"] = last;
      try {
        const answer = await fetch(`${url}/events`, { headers, cache: "no-store", signal: events.signal });
        if (!answer.ok || mediaTypeOf(answer) !== "text/event-stream" || !answer.body) {
          if (!events.signal.aborted) poll(); // refused, not a dropped connection
          return;
        }
        await readEvents(answer.body, handle);
      } catch { /* dropped (or aborted: the loop ends) */ }
      if (events.signal.aborted) return;
      await pause(retry);
    }
  };
  listen();
}

function paragraph(text, className) {
  const p = document.createElement("p");
  p.className = className;
  p.textContent = text;
  return p;
}

main();
