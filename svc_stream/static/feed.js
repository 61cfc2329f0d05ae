// The market-data connection: one WebSocket on /ws/, subscribed to the page's channels
// for one instrument. After any disconnect it reconnects by itself and subscribes again,
// and the snapshots that follow replace what the page showed: nothing is patched across
// a gap.

const CHANNELS = ["orderbook", "trades", "candles"];
const RETRY_FIRST = 500;  // ms before the first reconnection, doubled up to RETRY_LAST
const RETRY_LAST = 5000;

export class Feed {
  constructor({ onMessage, onStatus, onOpen }) {
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.onOpen = onOpen;  // called with the socket after each (re)connection
    this.symbol = null;
    this.retry = RETRY_FIRST;
    this.socket = null;
  }

  start(symbol) {
    this.symbol = symbol;
    this.connect();
  }

  select(symbol) {
    const previous = this.symbol;
    this.symbol = symbol;
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.send({ type: "unsubscribe", channels: CHANNELS, symbols: [previous] });
      this.subscribe();
    }
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  subscribe() {
    this.send({ type: "subscribe", channels: CHANNELS, symbols: [this.symbol], depth: 50 });
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/`);
    this.socket = socket;
    this.onStatus("connecting");
    socket.addEventListener("open", () => {
      this.retry = RETRY_FIRST;
      this.onStatus("live");
      this.subscribe();
      this.onOpen(socket);
    });
    socket.addEventListener("message", (event) => this.onMessage(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      this.onStatus(`reconnecting in ${(this.retry / 1000).toFixed(1)} s`);
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, RETRY_LAST);
    });
  }
}
