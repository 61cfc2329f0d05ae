// The order-book ladder, the trade tape and the header figures, drawn from the feed's
// messages. Prices stay the decimal strings the services send; numbers are used only to
// size bars and compute the spread's display.

const LADDER_LEVELS = 15;
const TAPE_LENGTH = 60;

const $ = (id) => document.getElementById(id);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function row(...cells) {
  const tr = document.createElement("tr");
  tr.append(...cells);
  return tr;
}

// Levels, best first, with their running totals.
function cumulative(levels) {
  let total = 0;
  return levels.map((level) => ({ ...level, total: (total += level.quantity) }));
}

function decimals(price) {
  const dot = price.indexOf(".");
  return dot < 0 ? 0 : price.length - dot - 1;
}

export function showBook(book) {
  const bids = cumulative(book.bids.slice(0, LADDER_LEVELS));
  const asks = cumulative(book.asks.slice(0, LADDER_LEVELS));
  const widest = Math.max(1, bids.at(-1)?.total ?? 0, asks.at(-1)?.total ?? 0);
  const line = (level, colour) => {
    const tr = row(cell(level.price), cell(String(level.quantity)), cell(String(level.total)));
    const share = (100 * level.total / widest).toFixed(1);
    tr.style.backgroundImage = `linear-gradient(to left, ${colour} ${share}%, transparent ${share}%)`;
    return tr;
  };
  $("asks").replaceChildren(...asks.map((l) => line(l, "rgba(239,83,80,.15)")).reverse());
  $("bids").replaceChildren(...bids.map((l) => line(l, "rgba(38,166,154,.15)")));
  const [bid, ask] = [book.bids[0]?.price, book.asks[0]?.price];
  let spread = "–";
  if (bid !== undefined && ask !== undefined) {
    spread = (Number(ask) - Number(bid)).toFixed(Math.max(decimals(ask), decimals(bid)));
  }
  $("spread").textContent = spread;
  $("mid").textContent = bid !== undefined && ask !== undefined ? `${bid} / ${ask}` : "–";
}

export class Tape {
  constructor() {
    this.trades = [];  // newest first
  }

  replace(trades) {
    this.trades = trades.slice().reverse().slice(0, TAPE_LENGTH);
    this.draw();
  }

  add(trades) {
    this.trades = trades.slice().reverse().concat(this.trades).slice(0, TAPE_LENGTH);
    this.draw();
  }

  draw() {
    $("tape").replaceChildren(...this.trades.map((t) => row(
      cell(t.execution_timestamp.slice(11, 19)), cell(t.price, t.aggressor_side),
      cell(String(t.quantity)))));
    $("last-price").textContent = this.trades[0]?.price ?? "–";
    $("last-price").className = this.trades[0]?.aggressor_side ?? "";
  }
}
