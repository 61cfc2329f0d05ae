-- The API key that placed each order (NULL with auth off and for older orders), for
-- audit: admins see it on GET /orders/{order_id}/.
ALTER TABLE orders ADD COLUMN issued_by_key text;
