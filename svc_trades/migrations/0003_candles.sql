-- One-minute candles (OHLCV) of the projected trades, rolled up by the projection in the
-- transaction that writes the trades, so a day of candles is at most 1,440 rows read by
-- primary key, whatever the number of trades. Longer intervals (5m to 1d) are grouped
-- from these rows when asked for. Open and close belong to the first and last trade by
-- trade number (journal order), kept as `first_trade_no`/`last_trade_no`: a batch that
-- is written again finds its trade numbers in the row already and changes nothing.

CREATE TABLE candles (
    symbol text NOT NULL,
    start timestamptz NOT NULL,
    open numeric NOT NULL,
    high numeric NOT NULL,
    low numeric NOT NULL,
    close numeric NOT NULL,
    volume bigint NOT NULL,
    trades bigint NOT NULL,
    first_trade_no bigint NOT NULL,
    last_trade_no bigint NOT NULL,
    PRIMARY KEY (symbol, start)
);

-- The trades projected before this migration.
INSERT INTO candles
SELECT symbol, date_trunc('minute', execution_timestamp) AS start,
       (array_agg(price ORDER BY trade_no))[1], max(price), min(price),
       (array_agg(price ORDER BY trade_no DESC))[1], sum(quantity), count(*),
       min(trade_no), max(trade_no)
FROM trades GROUP BY symbol, start;
