// With auth on: the user's key (kept in this tab's session storage only), requests signed
// in the browser with Web Crypto (HMAC-SHA256 of timestamp + METHOD + path + body, the
// services' scheme), the order ticket, and the user's open orders with cancel buttons.
// Open orders are listed once (REST) and then kept from what the private `orders` channel
// and the ticket's own answers say; each order's `seq` decides which news is newer, so a
// listing that lags behind cannot bring back an order already cancelled.

const STORE = "exchange-core.key";
const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();

async function hmac(secret, message) {
  const key = await crypto.subtle.importKey(
    "raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(message));
  return Array.from(new Uint8Array(mac), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Account {
  constructor(config, feed) {
    this.feed = feed;
    this.symbol = null;
    this.ordersBase = `${location.protocol}//${location.hostname}:${config.orders_port}`;
    this.key = JSON.parse(sessionStorage.getItem(STORE) ?? "null");
    this.user = null;
    this.orders = new Map();  // order_id -> the newest view of it
    $("account").hidden = false;
    $("sign-in").addEventListener("submit", (event) => this.useKey(event));
    $("sign-out").addEventListener("click", () => this.forget());
    $("ticket").addEventListener("submit", (event) => this.place(event));
    $("type").addEventListener("change", () => { $("price").disabled = $("type").value === "market"; });
  }

  select(symbol) {
    const previous = this.symbol;
    this.symbol = symbol;
    if (this.user !== null && previous !== null) {
      this.feed.send({ type: "unsubscribe", channels: ["orders"], symbols: [previous] });
      this.feed.send({ type: "subscribe", channels: ["orders"], symbols: [symbol] });
      this.refresh();
    }
  }

  // A (re)connected socket: sign it in again, the private channel is per connection.
  async connected() {
    if (this.key === null) return;
    if (!window.isSecureContext) {
      $("ticket-result").textContent = "signing needs https or localhost (Web Crypto)";
      return;
    }
    const timestamp = String(Date.now());
    const signature = await hmac(this.key.secret, `${timestamp}GET/ws/`);
    this.feed.send({ type: "auth", key: this.key.id, timestamp, signature });
  }

  // Messages of the feed that concern the account; true if it was one.
  handle(message) {
    if (message.type === "authenticated") {
      this.user = message.user_id;
      $("who").textContent = `${message.user_id} (${message.role})`;
      $("sign-in").hidden = true;
      $("signed-in").hidden = false;
      this.feed.send({ type: "subscribe", channels: ["orders"], symbols: [this.symbol] });
      this.refresh();
      return true;
    }
    if (message.channel === "orders") {
      this.merge(message.orders);
      return true;
    }
    if (message.type === "error" && this.key !== null && this.user === null) {
      $("ticket-result").textContent = `key refused: ${message.message}`;
      this.forget();
      return true;
    }
    return false;
  }

  useKey(event) {
    event.preventDefault();
    this.key = { id: $("key-id").value.trim(), secret: $("key-secret").value.trim() };
    sessionStorage.setItem(STORE, JSON.stringify(this.key));
    $("key-secret").value = "";
    this.connected();
  }

  forget() {
    sessionStorage.removeItem(STORE);
    this.key = null;
    this.user = null;
    $("sign-in").hidden = false;
    $("signed-in").hidden = true;
    this.orders.clear();
    this.draw();
  }

  async request(method, path, body) {
    const text = body === undefined ? "" : JSON.stringify(body);
    const timestamp = String(Date.now());
    const headers = {
      "EX-ACCESS-KEY": this.key.id, "EX-ACCESS-TIMESTAMP": timestamp,
      "EX-ACCESS-SIGN": await hmac(this.key.secret, `${timestamp}${method}${path}${text}`),
    };
    if (text) headers["Content-Type"] = "application/json";
    const response = await fetch(this.ordersBase + path, { method, headers, body: text || undefined });
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.error?.message ?? response.statusText);
    return answer;
  }

  async place(event) {
    event.preventDefault();
    const order = {
      symbol: this.symbol, side: $("side").value, type: $("type").value,
      quantity: $("quantity").value.trim(), time_in_force: $("tif").value,
    };
    if (order.type === "limit") order.price = $("price").value.trim();
    try {
      const placed = await this.request("POST", "/orders/", order);
      this.merge([placed]);
      $("ticket-result").className = "hint";
      $("ticket-result").textContent =
        `${placed.side} ${placed.quantity} @ ${placed.price ?? "market"}: ${placed.status}`;
    } catch (error) {
      $("ticket-result").className = "error";
      $("ticket-result").textContent = error.message;
    }
  }

  async cancel(orderId) {
    try {
      this.merge([await this.request("DELETE", `/orders/${orderId}/`)]);
    } catch (error) {
      $("ticket-result").className = "error";
      $("ticket-result").textContent = error.message;
    }
  }

  // The open orders of the instrument, listed anew (after signing in, or a new instrument).
  refresh() {
    this.load().catch((error) => { $("ticket-result").textContent = error.message; });
  }

  async load() {
    if (this.key === null || this.symbol === null) return;
    for (const status of ["ACTIVE", "PARTIALLY_FILLED"]) {
      const path = `/orders/?symbol=${encodeURIComponent(this.symbol)}&status=${status}&page_size=100`;
      this.merge((await this.request("GET", path)).orders);
    }
  }

  merge(orders) {
    for (const order of orders) {
      const known = this.orders.get(order.order_id);
      if (known === undefined || known.seq <= order.seq) this.orders.set(order.order_id, order);
    }
    this.draw();
  }

  draw() {
    const open = [...this.orders.values()]
      .filter((order) => order.is_active && order.symbol === this.symbol)
      .sort((a, b) => b.created_at.localeCompare(a.created_at));
    $("open-orders").replaceChildren(...open.map((order) => {
      const tr = document.createElement("tr");
      tr.dataset.orderId = order.order_id;
      for (const [text, className] of [[order.side, order.side], [order.price ?? "market"],
                                       [order.quantity], [order.remaining_quantity], [order.status]]) {
        const td = document.createElement("td");
        td.textContent = String(text);
        if (className) td.className = className;
        tr.append(td);
      }
      const button = document.createElement("button");
      button.textContent = "Cancel";
      button.addEventListener("click", () => this.cancel(order.order_id));
      const td = document.createElement("td");
      td.append(button);
      tr.append(td);
      return tr;
    }));
  }
}
