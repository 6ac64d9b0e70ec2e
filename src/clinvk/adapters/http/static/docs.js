// clinvk API docs: renders every operation of /openapi.json, with a form to try each one.
// Self-contained (served by clinvk, no CDN); every value from the document is inserted as
// text, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "clinvk.apiKey";
  let doc = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function apiHeaders() {
    const key = $("api-key").value.trim();
    return key ? { Authorization: "Bearer " + key } : {};
  }

  function refName(ref) {
    return ref.split("/").pop();
  }

  function resolve(schema, seen = 0) {
    let current = schema || {};
    while (current.$ref && seen++ < 32) {
      current = (doc.components.schemas || {})[refName(current.$ref)] || {};
    }
    return current;
  }

  function typeText(schema) {
    if (!schema) return "any";
    if (schema.$ref) return refName(schema.$ref);
    if (schema.const !== undefined) return JSON.stringify(schema.const);
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    const union = schema.anyOf || schema.oneOf;
    if (union) return union.map(typeText).join(" | ");
    if (schema.type === "array") return typeText(schema.items) + "[]";
    if (schema.type === "object" && schema.additionalProperties) {
      return "{string: " + typeText(schema.additionalProperties) + "}";
    }
    if (Array.isArray(schema.type)) return schema.type.join(" | ");
    return schema.type || "any";
  }

  function constraints(schema) {
    const parts = [];
    for (const key of ["minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"]) {
      if (schema[key] !== undefined) parts.push(key + " " + schema[key]);
    }
    if (schema.default !== undefined) parts.push("default " + JSON.stringify(schema.default));
    return parts.join(", ");
  }

  function fieldsTable(schema) {
    const target = resolve(schema);
    const props = target.properties;
    if (!props) return el("p", {}, el("span", { class: "type" }, typeText(schema)));
    const required = new Set(target.required || []);
    const rows = Object.entries(props).map(([name, prop]) =>
      el("tr", {},
        el("td", {}, el("code", {}, name), required.has(name) ? el("span", { class: "req" }, " required") : null),
        el("td", { class: "type" }, typeText(prop)),
        el("td", {}, [prop.description || resolve(prop).description || "", " ", constraints(prop)].join(" ").trim()),
      ));
    return el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "notes"))),
      el("tbody", {}, rows));
  }

  function example(schema, depth = 0) {
    const s = resolve(schema);
    if (depth > 6) return null;
    if (s.default !== undefined) return s.default;
    if (s.const !== undefined) return s.const;
    if (s.enum) return s.enum[0];
    const union = s.anyOf || s.oneOf;
    if (union) {
      const pick = union.find((u) => resolve(u).type !== "null") || union[0];
      return example(pick, depth + 1);
    }
    switch (Array.isArray(s.type) ? s.type[0] : s.type) {
      case "string": return "string";
      case "integer": return s.minimum !== undefined ? s.minimum : 1;
      case "number": return s.minimum !== undefined ? s.minimum : 1;
      case "boolean": return false;
      case "null": return null;
      case "array": return [example(s.items, depth + 1)];
      case "object": {
        const out = {};
        const tag = s.discriminator;
        for (const name of s.required || []) out[name] = example(s.properties[name], depth + 1);
        if (tag && s.properties && s.properties[tag.propertyName]) {
          out[tag.propertyName] = example(s.properties[tag.propertyName], depth + 1);
        }
        return out;
      }
      default: return {};
    }
  }

  function tryForm(path, method, op) {
    const params = op.parameters || [];
    const inputs = params.map((p) => {
      const input = el("input", { name: p.name, placeholder: typeText(p.schema) });
      return { param: p, input, label: el("label", {}, el("code", {}, p.name), " (" + p.in + (p.required ? ", required" : "") + ") ", input) };
    });
    const json = op.requestBody && op.requestBody.content["application/json"];
    const body = json ? el("textarea", { spellcheck: "false" }, JSON.stringify(example(json.schema), null, 2)) : null;
    const output = el("pre", { class: "response", hidden: true });
    async function send(event) {
      event.preventDefault();
      let url = path;
      const query = new URLSearchParams();
      const headers = apiHeaders();
      for (const { param, input } of inputs) {
        const value = input.value;
        if (!value) continue;
        if (param.in === "path") url = url.replace("{" + param.name + "}", encodeURIComponent(value));
        else if (param.in === "query") query.append(param.name, value);
        else if (param.in === "header") headers[param.name] = value;
      }
      if (query.toString()) url += "?" + query;
      const init = { method: method.toUpperCase(), headers };
      if (body) {
        init.body = body.value;
        headers["Content-Type"] = "application/json";
      }
      output.hidden = false;
      output.textContent = init.method + " " + url + "\n…";
      try {
        const response = await fetch(url, init);
        output.textContent = response.status + " " + response.statusText + "  " + (response.headers.get("content-type") || "") + "\n\n";
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          output.textContent += decoder.decode(value, { stream: true });
        }
      } catch (err) {
        output.textContent += "\n" + String(err);
      }
    }
    return el("form", { class: "try", onsubmit: send },
      el("h4", {}, "Try it"), inputs.map((i) => i.label), body, el("button", { type: "submit" }, "Send"), output);
  }

  function renderOperation(path, method, op) {
    const needsKey = !(Array.isArray(op.security) && op.security.length === 0);
    const content = [];
    if (op.description) content.push(el("p", {}, op.description));
    if (op.parameters && op.parameters.length) {
      content.push(el("h4", {}, "Parameters"), el("table", {}, el("tbody", {}, op.parameters.map((p) =>
        el("tr", {}, el("td", {}, el("code", {}, p.name)), el("td", {}, p.in + (p.required ? ", required" : "")),
          el("td", { class: "type" }, typeText(p.schema)), el("td", {}, p.description || ""))))));
    }
    const json = op.requestBody && op.requestBody.content["application/json"];
    if (json) content.push(el("h4", {}, "Request body ", el("span", { class: "type" }, typeText(json.schema))), fieldsTable(json.schema));
    const rows = Object.entries(op.responses || {}).map(([status, response]) =>
      el("tr", {}, el("td", {}, el("code", {}, status)), el("td", {}, response.description || ""),
        el("td", { class: "type" }, Object.entries(response.content || {}).map(([media, c]) =>
          media + ": " + typeText(c["x-item-schema"] || c.schema)).join("; "))));
    content.push(el("h4", {}, "Responses"), el("table", {}, el("tbody", {}, rows)));
    content.push(tryForm(path, method, op));
    return el("details", { class: "op", id: op.operationId, "data-operation": method.toUpperCase() + " " + path },
      el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()),
        el("span", { class: "path" }, path), el("span", { class: "summary" }, op.summary || ""),
        needsKey ? el("span", { class: "lock", title: "needs the API key when keys are configured" }, "key") : null),
      el("div", { class: "body" }, content));
  }

  function render() {
    $("version").textContent = doc.info.version;
    $("description").textContent = doc.info.description || "";
    const main = $("operations");
    main.replaceChildren();
    const byTag = new Map((doc.tags || []).map((t) => [t.name, []]));
    let count = 0;
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const tag = (op.tags || ["other"])[0];
        if (!byTag.has(tag)) byTag.set(tag, []);
        byTag.get(tag).push(renderOperation(path, method, op));
        count++;
      }
    }
    const tagText = new Map((doc.tags || []).map((t) => [t.name, t.description]));
    for (const [tag, ops] of byTag) {
      if (!ops.length) continue;
      main.append(el("section", { "data-tag": tag }, el("h2", {}, tag, " ", el("small", {}, tagText.get(tag) || "")), ops));
    }
    const schemas = Object.entries(doc.components.schemas || {}).map(([name, schema]) =>
      el("details", { class: "op", id: "schema-" + name }, el("summary", {}, el("span", { class: "path" }, name)),
        el("div", { class: "body" }, fieldsTable({ $ref: "#/components/schemas/" + name }))));
    main.append(el("section", { "data-tag": "schemas" }, el("h2", {}, "Schemas"), schemas));
    $("status").textContent = count + " operations";
    main.dataset.operations = String(count);
    applyFilter();
  }

  function applyFilter() {
    const term = $("filter").value.trim().toLowerCase();
    for (const op of document.querySelectorAll("details.op[data-operation]")) {
      op.hidden = term !== "" && !op.textContent.toLowerCase().includes(term);
    }
  }

  async function load(event) {
    if (event) event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key); else sessionStorage.removeItem(KEY_STORE);
    $("status").textContent = "Loading /openapi.json…";
    try {
      const response = await fetch("/openapi.json", { headers: apiHeaders() });
      if (response.status === 401) {
        $("status").textContent = "This server requires an API key: enter it above and press Load.";
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      doc = await response.json();
      render();
    } catch (err) {
      $("status").textContent = "Could not load /openapi.json: " + err;
    }
  }

  $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("settings").addEventListener("submit", load);
  $("filter").addEventListener("input", applyFilter);
  load();
})();
