// The exchange page: picks an instrument, keeps one feed connection, and hands each
// message to the part of the page it concerns.

import { Feed } from "/page/feed.js";
import { showBook, Tape } from "/page/market.js";
import { CandleChart, DepthChart } from "/page/charts.js";
import { Account } from "/page/account.js";

const $ = (id) => document.getElementById(id);

async function main() {
  const config = await (await fetch("/page/config.json")).json();
  const picker = $("symbol");
  picker.replaceChildren(...config.symbols.map((symbol) => new Option(symbol, symbol)));
  const wanted = new URLSearchParams(location.search).get("symbol");
  picker.value = config.symbols.includes(wanted) ? wanted : (config.symbols.includes("DEFAULT") ? "DEFAULT" : config.symbols[0]);

  const tape = new Tape();
  const candles = new CandleChart($("candles-chart"), $("candle"));
  const depth = new DepthChart($("depth-chart"));
  let account = null;

  const feed = new Feed({
    onStatus: (status) => {
      $("status").textContent = status;
      $("status").className = status === "live" ? "status live" : "status";
    },
    onOpen: () => account?.connected(),
    onMessage: (message) => {
      if (account?.handle(message)) return;
      if (message.symbol !== undefined && message.symbol !== picker.value) return;
      switch (message.channel) {
        case "orderbook":
          showBook(message);
          depth.update(message);
          break;
        case "trades":
          if (message.type === "snapshot") tape.replace(message.trades);
          else tape.add(message.trades);
          break;
        case "candles":
          if (message.type === "snapshot") candles.replace(message.candles);
          else candles.update(message.candles);
          break;
        default:
          if (message.type === "error") $("status").textContent = message.message;
      }
    },
  });
  if (config.auth) {
    account = new Account(config, feed);
    account.select(picker.value);
  }
  picker.addEventListener("change", () => {
    history.replaceState(null, "", `?symbol=${encodeURIComponent(picker.value)}`);
    feed.select(picker.value);
    account?.select(picker.value);
  });
  feed.start(picker.value);
}

main();
