-- The double-entry ledger (funding on): every balance movement of the journal is one
-- posting that debits one account and credits another by the same amount. Accounts are
-- per asset: a user's "available" and "held", the venue's "external" (money outside the
-- exchange: deposits come from it, withdrawals go to it) and "fees". An account's
-- balance is its credits minus its debits, so per asset all balances sum to zero and the
-- users' plus the fee account's equal deposits minus withdrawals.
CREATE TABLE postings (
    id bigserial PRIMARY KEY,
    symbol text NOT NULL,  -- the journal position: instrument, sequence, leg
    seq bigint NOT NULL,
    leg integer NOT NULL,
    asset text NOT NULL,
    amount numeric NOT NULL CHECK (amount > 0),
    debit text NOT NULL,
    credit text NOT NULL,
    debit_owner text,  -- the user of a user account, NULL for the venue's
    credit_owner text,
    kind text NOT NULL,
    reference text NOT NULL,
    created_at timestamptz NOT NULL,
    CHECK (debit <> credit),
    UNIQUE (symbol, seq, leg)
);
CREATE INDEX postings_debit_owner ON postings (debit_owner, id) WHERE debit_owner IS NOT NULL;
CREATE INDEX postings_credit_owner ON postings (credit_owner, id) WHERE credit_owner IS NOT NULL;

CREATE TABLE accounts (
    asset text NOT NULL,
    account text NOT NULL,  -- "user:<id>:available", "user:<id>:held", "external", "fees"
    owner text,
    balance numeric NOT NULL,
    PRIMARY KEY (asset, account)
);
CREATE INDEX accounts_owner ON accounts (owner) WHERE owner IS NOT NULL;
