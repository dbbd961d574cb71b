/* Weft widget bridge: the view side of MCP Apps (JSON-RPC 2.0 over postMessage to the host), with
   ChatGPT's window.openai as the fallback. Shared by product-grid.html and cart.html; the server inlines it.
   Why one small file and no SDK: the views must be self-contained (no CDN, no build step). */
(function () {
  "use strict";

  var PROTOCOL = "2026-01-26";
  var RTL = { he: 1, iw: 1, ar: 1, fa: 1, ur: 1 };
  var INIT_WAIT_MS = 1000;

  var pending = {};
  var nextId = 1;
  var mode = null; // "mcp" once the host answered ui/initialize, "openai" on the fallback
  var app = null; // {name, version, onInput, onResult, onContext}
  var locale = "en";
  var gotResult = false;

  function post(message) {
    window.parent.postMessage(message, "*");
  }

  function request(method, params) {
    var id = nextId++;
    return new Promise(function (resolve, reject) {
      pending[id] = { resolve: resolve, reject: reject };
      post({ jsonrpc: "2.0", id: id, method: method, params: params || {} });
    });
  }

  function notify(method, params) {
    post({ jsonrpc: "2.0", method: method, params: params || {} });
  }

  function answer(id, result) {
    post({ jsonrpc: "2.0", id: id, result: result });
  }

  /* Host context: theme ("light"|"dark"), locale (dir=rtl for he/ar/fa/ur), styles.variables (CSS custom
     properties on :root; only names starting "--" with string values, so nothing else is written). */
  function applyContext(context) {
    if (!context || typeof context !== "object") return;
    var root = document.documentElement;
    if (context.theme === "light" || context.theme === "dark") {
      root.setAttribute("data-theme", context.theme);
      root.style.colorScheme = context.theme;
    }
    if (typeof context.locale === "string" && context.locale) {
      locale = context.locale;
      var primary = locale.toLowerCase().split(/[-_]/)[0];
      root.setAttribute("lang", locale);
      root.setAttribute("dir", RTL[primary] ? "rtl" : "ltr");
    }
    var variables = context.styles && context.styles.variables;
    if (variables && typeof variables === "object") {
      Object.keys(variables).forEach(function (name) {
        var value = variables[name];
        if (name.indexOf("--") === 0 && typeof value === "string") root.style.setProperty(name, value);
      });
    }
    if (app && app.onContext) app.onContext();
  }

  function deliverResult(result) {
    gotResult = true;
    if (app && app.onResult) app.onResult(result || {});
  }

  function onMessage(event) {
    if (event.source !== window.parent) return;
    var message = event.data;
    if (!message || typeof message !== "object" || message.jsonrpc !== "2.0") return;
    if (message.method === undefined && message.id !== undefined) {
      var waiter = pending[message.id];
      if (!waiter) return;
      delete pending[message.id];
      if (message.error) waiter.reject(new Error(String(message.error.message || "host error")));
      else waiter.resolve(message.result);
      return;
    }
    var params = message.params || {};
    switch (message.method) {
      case "ui/notifications/tool-input":
        if (app && app.onInput) app.onInput(params.arguments || {});
        break;
      case "ui/notifications/tool-result":
        deliverResult(params);
        break;
      case "ui/notifications/host-context-changed":
        applyContext(params);
        break;
      case "ui/resource-teardown":
        if (message.id !== undefined) answer(message.id, {});
        break;
      case "ping":
        if (message.id !== undefined) answer(message.id, {});
        break;
      default:
        break;
    }
  }

  /* ChatGPT: toolOutput is structuredContent; theme and locale are globals; "openai:set_globals" says they
     changed (the first widget of a chat may get its toolOutput only then). */
  function openaiContext() {
    var o = window.openai;
    applyContext({ theme: o.theme, locale: o.locale });
  }

  function readOpenaiOutput() {
    var output = window.openai && window.openai.toolOutput;
    if (output && typeof output === "object") deliverResult({ structuredContent: output });
  }

  function startOpenai() {
    mode = "openai";
    openaiContext();
    if (app && app.onInput && window.openai.toolInput) app.onInput(window.openai.toolInput);
    readOpenaiOutput();
  }

  function onSetGlobals(event) {
    var globals = (event && event.detail && event.detail.globals) || {};
    if (mode === "openai" && (globals.theme || globals.locale)) openaiContext();
    if ("toolOutput" in globals && (mode === "openai" || !gotResult)) readOpenaiOutput();
  }

  function start(options) {
    app = options;
    window.addEventListener("message", onMessage);
    window.addEventListener("openai:set_globals", onSetGlobals);
    watchSize();
    if (window.parent === window) {
      if (window.openai) startOpenai();
      return;
    }
    request("ui/initialize", {
      protocolVersion: PROTOCOL,
      appInfo: { name: options.name, version: options.version || "1" },
      appCapabilities: {},
    }).then(
      function (result) {
        if (mode === "openai") return;
        mode = "mcp";
        applyContext((result && result.hostContext) || {});
        notify("ui/notifications/initialized", {});
        // ChatGPT's first widget may miss the bridge's tool-result: its toolOutput is the same data.
        if (window.openai && !gotResult) readOpenaiOutput();
      },
      function () {
        if (window.openai && mode === null) startOpenai();
      }
    );
    setTimeout(function () {
      if (mode === null && window.openai) startOpenai();
    }, INIT_WAIT_MS);
  }

  function normalize(result) {
    result = result || {};
    if (result.result && result.result.content) result = result.result;
    return result;
  }

  /* tools/call through the host; resolves to a CallToolResult ({content, structuredContent, isError}). */
  function callTool(name, args) {
    if (mode === "openai") {
      return Promise.resolve(window.openai.callTool(name, args)).then(normalize);
    }
    return request("tools/call", { name: name, arguments: args }).then(normalize);
  }

  function safeUrl(value) {
    if (typeof value !== "string" || !value) return null;
    try {
      var url = new URL(value);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  /* Only http(s) links are ever opened, and only through the host. */
  function openLink(value) {
    var url = safeUrl(value);
    if (!url) return Promise.resolve(false);
    if (mode === "openai") {
      if (window.openai.openExternal) window.openai.openExternal({ href: url });
      return Promise.resolve(true);
    }
    return request("ui/open-link", { url: url }).then(function () {
      return true;
    });
  }

  /* What the model should know after a change, without a chat turn. */
  function updateModelContext(text, structured) {
    if (mode === "openai") {
      if (window.openai.setWidgetState) window.openai.setWidgetState({ modelContext: text, data: structured });
      return Promise.resolve();
    }
    if (mode !== "mcp") return Promise.resolve();
    return request("ui/update-model-context", {
      content: [{ type: "text", text: text }],
      structuredContent: structured,
    }).catch(function () {});
  }

  /* A chat message: only for a real next step the shopper chose. */
  function sendMessage(text) {
    if (mode === "openai") {
      if (window.openai.sendFollowUpMessage) window.openai.sendFollowUpMessage({ prompt: text });
      return Promise.resolve();
    }
    return request("ui/message", { role: "user", content: [{ type: "text", text: text }] });
  }

  function watchSize() {
    var timer = null;
    var last = "";
    function report() {
      timer = null;
      var root = document.documentElement;
      var width = Math.ceil(root.scrollWidth);
      var height = Math.ceil(root.getBoundingClientRect().height);
      var key = width + "x" + height;
      if (key === last) return;
      last = key;
      if (mode === "openai" && window.openai.notifyIntrinsicHeight) window.openai.notifyIntrinsicHeight(height);
      else if (mode === "mcp") notify("ui/notifications/size-changed", { width: width, height: height });
    }
    function schedule() {
      if (timer === null) timer = setTimeout(report, 60);
    }
    if (window.ResizeObserver) new ResizeObserver(schedule).observe(document.documentElement);
    window.addEventListener("weft:rendered", schedule);
  }

  function lang() {
    return locale.toLowerCase().split(/[-_]/)[0];
  }

  /* Money from the service's decimal strings, in the host's locale; the string itself when it is no number. */
  function money(amount, currency) {
    if (amount === null || amount === undefined || amount === "") return "";
    var value = String(amount);
    try {
      if (currency) return new Intl.NumberFormat(locale, { style: "currency", currency: currency }).format(value);
      return new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(value);
    } catch (error) {
      return currency ? value + " " + currency : value;
    }
  }

  /* Picks the string table for the host's language (English unless a table for it exists). */
  function strings(tables) {
    var table = tables[lang()] || tables.en;
    return function (key) {
      var text = table[key] !== undefined ? table[key] : tables.en[key];
      var args = Array.prototype.slice.call(arguments, 1);
      return String(text).replace(/\{(\d)\}/g, function (_, index) {
        return args[Number(index)] !== undefined ? String(args[Number(index)]) : "";
      });
    };
  }

  /* Builds an element; text goes in as text only, never as markup. */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = String(value);
      else if (name === "className") node.className = value;
      else if (name === "disabled") node.disabled = Boolean(value);
      else node.setAttribute(name, String(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  /* An <img> only for an http(s) source; a placeholder otherwise, and when the image fails to load. */
  function picture(src, label) {
    var box = el("div", { className: "pic", "aria-hidden": "true" });
    var placeholder = el("span", { className: "pic-placeholder", text: (label || "?").trim().charAt(0) || "?" });
    var url = safeUrl(src);
    if (!url) {
      box.appendChild(placeholder);
      return box;
    }
    var image = el("img", { alt: "", loading: "lazy", decoding: "async", referrerpolicy: "no-referrer" });
    image.addEventListener("error", function () {
      if (image.parentNode === box) box.replaceChild(placeholder, image);
    });
    image.setAttribute("src", url);
    box.appendChild(image);
    return box;
  }

  /* A product name that opens its page through the host (http(s) only); plain text otherwise. */
  function productLink(name, href, className) {
    var url = safeUrl(href);
    if (!url) return el("span", { className: className, text: name });
    var link = el("a", { className: className, href: url, target: "_blank", rel: "noopener noreferrer", text: name });
    link.addEventListener("click", function (event) {
      event.preventDefault();
      openLink(url);
    });
    return link;
  }

  function resultText(result) {
    var content = (result && result.content) || [];
    for (var i = 0; i < content.length; i++) {
      if (content[i] && content[i].type === "text" && typeof content[i].text === "string") return content[i].text;
    }
    return "";
  }

  function rendered() {
    window.dispatchEvent(new Event("weft:rendered"));
  }

  window.WeftBridge = {
    start: start,
    callTool: callTool,
    openLink: openLink,
    updateModelContext: updateModelContext,
    sendMessage: sendMessage,
    safeUrl: safeUrl,
    money: money,
    strings: strings,
    el: el,
    picture: picture,
    productLink: productLink,
    resultText: resultText,
    rendered: rendered,
    mode: function () {
      return mode;
    },
    locale: function () {
      return locale;
    },
  };
})();
