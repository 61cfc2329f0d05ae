-- The projection of the journal: orders (the fold of their events), trades, and the
-- position the projection has reached, all written in one transaction per batch.
-- Prices and notionals are NUMERIC on the instrument's grid, never float.
-- `id` is the projection's insertion order (journal order): the sort and keyset-cursor
-- key of every listing ("newest first" = id descending).
--
-- Indexes serve the filters and the sort, but each one costs the projection on every
-- write. Filters on columns with a few values (an order's side and status) scan the id
-- index newest first instead: an order's status changes on every fill, and without an
-- index on it those updates stay in place (HOT) and touch no index at all, which halves
-- their cost. The timestamp range uses a BRIN (timestamps follow insertion order);
-- partial indexes cover only the rare rows (settled trades, orders with a client id).

CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    order_id text PRIMARY KEY,
    symbol text NOT NULL,
    side text NOT NULL,
    type text NOT NULL,
    time_in_force text NOT NULL,
    post_only boolean NOT NULL,
    stp text NOT NULL,
    user_id text,
    client_order_id text,
    price numeric,
    quantity bigint NOT NULL,
    remaining_quantity bigint NOT NULL,
    traded_quantity bigint NOT NULL,
    cancelled_quantity bigint NOT NULL,
    notional numeric NOT NULL,
    status text NOT NULL,
    cancel_reason text,
    reject_reason text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    seq bigint NOT NULL
) WITH (fillfactor = 85);  -- room on each page for those in-place updates

CREATE INDEX orders_by_symbol ON orders (symbol, id);
CREATE INDEX orders_by_user ON orders (user_id, id);
CREATE INDEX orders_by_client_order_id ON orders (client_order_id, id)
    WHERE client_order_id IS NOT NULL;

CREATE TABLE trades (
    id bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    trade_id uuid PRIMARY KEY,
    symbol text NOT NULL,
    trade_no bigint NOT NULL,
    seq bigint NOT NULL,
    price numeric NOT NULL,
    quantity bigint NOT NULL,
    buy_order_id text NOT NULL,
    sell_order_id text NOT NULL,
    buyer_user_id text,
    seller_user_id text,
    aggressor_side text NOT NULL,
    execution_timestamp timestamptz NOT NULL,
    is_settled boolean NOT NULL DEFAULT false,
    settlement_timestamp timestamptz
);

CREATE INDEX trades_by_symbol ON trades (symbol, id);
CREATE INDEX trades_by_buy_order ON trades (buy_order_id, id);
CREATE INDEX trades_by_sell_order ON trades (sell_order_id, id);
CREATE INDEX trades_by_buyer ON trades (buyer_user_id, id);
CREATE INDEX trades_by_seller ON trades (seller_user_id, id);
CREATE INDEX trades_by_time ON trades USING brin (execution_timestamp);
CREATE INDEX trades_settled ON trades (id) WHERE is_settled;

-- Where the durable consumer stands (stream sequence), checked and advanced by every
-- batch: a second projector that lost its lock cannot commit over the first.
CREATE TABLE projection_consumers (
    consumer text PRIMARY KEY,
    stream_seq bigint NOT NULL
);

-- The last projected command of each instrument: the de-duplication key of the journal
-- (gap-free from 1) and the `as_of_seq` of every answer read from the projection.
CREATE TABLE projection_symbols (
    symbol text PRIMARY KEY,
    seq bigint NOT NULL
);

-- Journal messages that could not be projected (undecodable, unknown instrument),
-- kept for an operator instead of being retried forever.
CREATE TABLE parked_messages (
    stream_seq bigint PRIMARY KEY,
    subject text NOT NULL,
    reason text NOT NULL,
    data bytea NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
);
