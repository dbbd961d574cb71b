"""Minimal stand-in views (a grid and a cart that follow issue 12's bridge and data-action contract), written into
a temporary widgets folder: the server's declarations and the playground are tested before, and without, the
real views in service/widgets."""

from __future__ import annotations

from pathlib import Path

from service.widget_views import SCRIPT_TAG, STYLE_TAG, WIDGETS_DIR

REAL_VIEWS = (WIDGETS_DIR / "product-grid.html").is_file()

CSS = "body { font-family: sans-serif; margin: 0.5rem; } [data-theme=dark] body { background: #111; color: #eee; }\n"

# The view side of the MCP Apps bridge, in its smallest form.
BRIDGE = """
window.bridge = (() => {
  let nextId = 0;
  const pending = new Map();
  const handlers = {};
  window.addEventListener("message", (event) => {
    const m = event.data;
    if (!m || m.jsonrpc !== "2.0") return;
    if (m.id != null && pending.has(m.id) && !m.method) {
      const [resolve, reject] = pending.get(m.id);
      pending.delete(m.id);
      if (m.error) reject(new Error(m.error.message)); else resolve(m.result);
    } else if (m.method && handlers[m.method]) {
      handlers[m.method](m.params || {});
    }
  });
  const request = (method, params) => new Promise((resolve, reject) => {
    const id = ++nextId;
    pending.set(id, [resolve, reject]);
    parent.postMessage({ jsonrpc: "2.0", id, method, params }, "*");
  });
  const notify = (method, params) => parent.postMessage({ jsonrpc: "2.0", method, params }, "*");
  const start = async () => {
    const init = await request("ui/initialize", {
      protocolVersion: "2026-01-26", appInfo: { name: "placeholder", version: "0" }, appCapabilities: {},
    });
    document.documentElement.dataset.theme = init.hostContext.theme;
    document.documentElement.lang = init.hostContext.locale;
    const rtl = ["he", "ar", "fa", "ur"].includes(init.hostContext.locale.split("-")[0]);
    document.documentElement.dir = rtl ? "rtl" : "ltr";
    notify("ui/notifications/initialized", {});
  };
  const sized = () => notify("ui/notifications/size-changed", {
    width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
  });
  return { request, notify, start, sized, on: (method, handler) => { handlers[method] = handler; } };
})();
"""

GRID = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{STYLE_TAG}</head>
<body><ul id="products"></ul>
{SCRIPT_TAG}
<script>
let cartId = null;
bridge.on("ui/notifications/tool-result", (result) => {{
  const data = result.structuredContent || {{}};
  cartId = data.cart_id || cartId;
  const list = document.getElementById("products");
  list.replaceChildren();
  for (const product of data.products || []) {{
    const item = document.createElement("li");
    item.textContent = product.name + " ";
    const add = document.createElement("button");
    add.textContent = "Add";
    add.dataset.action = "add";
    add.dataset.productId = product.id;
    add.disabled = !product.is_purchasable;
    add.addEventListener("click", async () => {{
      const answer = await bridge.request("tools/call", {{
        name: "add_to_cart", arguments: {{ product_id: product.id, quantity: 1, cart_id: cartId }},
      }});
      cartId = (answer.structuredContent || {{}}).cart_id || cartId;
      bridge.request("ui/update-model-context", {{ content: [{{ type: "text", text: "Added " + product.name }}] }});
    }});
    item.append(add);
    list.append(item);
  }}
  document.body.dataset.rendered = String((data.products || []).length);
  bridge.sized();
}});
bridge.start();
</script></body></html>
"""

CART = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">{STYLE_TAG}</head>
<body><ul id="lines"></ul><p id="count"></p>
{SCRIPT_TAG}
<script>
let cartId = null;
function render(data) {{
  cartId = data.cart_id || cartId;
  const list = document.getElementById("lines");
  list.replaceChildren();
  for (const line of data.items || []) {{
    const item = document.createElement("li");
    item.textContent = line.name + " x" + line.quantity + " ";
    const remove = document.createElement("button");
    remove.textContent = "Remove";
    remove.dataset.action = "remove";
    remove.dataset.productId = line.id;
    remove.addEventListener("click", async () => {{
      const answer = await bridge.request("tools/call", {{
        name: "remove_from_cart", arguments: {{ product_id: line.id, cart_id: cartId }},
      }});
      render(answer.structuredContent || {{}});
    }});
    item.append(remove);
    list.append(item);
  }}
  document.getElementById("count").textContent = String(data.item_count ?? 0);
  bridge.sized();
}}
bridge.on("ui/notifications/tool-result", (result) => render(result.structuredContent || {{}}));
bridge.start();
</script></body></html>
"""


def write_placeholder_views(directory: Path, *, grid: str = GRID, cart: str = CART) -> Path:
    """The four files of a widgets folder (views, widget.css, bridge.js) in ``directory``; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "product-grid.html").write_text(grid, encoding="utf-8")
    (directory / "cart.html").write_text(cart, encoding="utf-8")
    (directory / "widget.css").write_text(CSS, encoding="utf-8")
    (directory / "bridge.js").write_text(BRIDGE, encoding="utf-8")
    return directory
