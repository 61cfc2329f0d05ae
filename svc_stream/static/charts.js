// Candles (TradingView Lightweight Charts) and the depth chart (uPlot), both vendored.

import { createChart, CandlestickSeries, HistogramSeries }
  from "/page/vendor/lightweight-charts.standalone.production.mjs";
import uPlot from "/page/vendor/uPlot.esm.js";

const UP = "#26a69a";
const DOWN = "#ef5350";
const TEXT = "#d7dde5";
const GRID = "#263040";

const seconds = (start) => Date.parse(start) / 1000;

export class CandleChart {
  constructor(element, legend) {
    this.legend = legend;
    this.chart = createChart(element, {
      autoSize: true,
      layout: { background: { color: "transparent" }, textColor: TEXT, attributionLogo: true },
      grid: { vertLines: { color: GRID }, horzLines: { color: GRID } },
      timeScale: { timeVisible: true, secondsVisible: false, barSpacing: 12, rightOffset: 4 },
    });
    this.candles = this.chart.addSeries(CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
    });
    this.volume = this.chart.addSeries(HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "volume",
      lastValueVisible: false, priceLineVisible: false,
    });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  }

  replace(candles) {
    this.candles.setData(candles.map(bar));
    this.volume.setData(candles.map(volumeBar));
    this.chart.timeScale().scrollToRealTime();
    this.show(candles.at(-1));
  }

  update(candles) {
    for (const candle of candles) {
      this.candles.update(bar(candle));
      this.volume.update(volumeBar(candle));
    }
    this.show(candles.at(-1));
  }

  show(candle) {
    this.legend.textContent = candle === undefined ? "" :
      `${candle.start.slice(11, 16)}  O ${candle.open}  H ${candle.high}  L ${candle.low}` +
      `  C ${candle.close}  V ${candle.volume}`;
  }
}

function bar(c) {
  return { time: seconds(c.start), open: Number(c.open), high: Number(c.high),
           low: Number(c.low), close: Number(c.close) };
}

function volumeBar(c) {
  return { time: seconds(c.start), value: c.volume,
           color: Number(c.close) >= Number(c.open) ? "rgba(38,166,154,.5)" : "rgba(239,83,80,.5)" };
}

// Cumulative size by price: bids falling to the left of the spread, asks rising right.
export class DepthChart {
  constructor(element) {
    this.element = element;
    const stepped = uPlot.paths.stepped({ align: 1 });
    this.plot = new uPlot({
      width: element.clientWidth || 600, height: element.clientHeight || 180,
      legend: { show: false }, cursor: { show: false },
      scales: { x: { time: false } },
      axes: [{ stroke: TEXT, grid: { stroke: GRID } }, { stroke: TEXT, grid: { stroke: GRID } }],
      series: [{}, { stroke: UP, fill: "rgba(38,166,154,.2)", paths: stepped, points: { show: false } },
               { stroke: DOWN, fill: "rgba(239,83,80,.2)", paths: stepped, points: { show: false } }],
    }, [[], [], []], element);
    new ResizeObserver(() => this.plot.setSize({
      width: element.clientWidth, height: element.clientHeight })).observe(element);
  }

  update(book) {
    const prices = [];
    const bids = [];
    const asks = [];
    let total = 0;
    const bidLevels = book.bids.map((l) => [Number(l.price), (total += l.quantity)]).reverse();
    total = 0;
    const askLevels = book.asks.map((l) => [Number(l.price), (total += l.quantity)]);
    for (const [price, size] of bidLevels) { prices.push(price); bids.push(size); asks.push(null); }
    for (const [price, size] of askLevels) { prices.push(price); bids.push(null); asks.push(size); }
    this.plot.setData([prices, bids, asks]);
  }
}
