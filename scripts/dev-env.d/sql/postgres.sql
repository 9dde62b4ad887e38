-- Deterministic mocked tables, shared by scripts/dev-env and the compose data-seed.
-- {orders} and {customers} are replaced by the seeders.
DROP TABLE IF EXISTS order_items, orders, customers;
CREATE TABLE customers (customer_id integer PRIMARY KEY, name text NOT NULL, email text,
  country char(2) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id integer, status text NOT NULL,
  amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE order_items (order_id bigint NOT NULL, line_no integer NOT NULL, sku text NOT NULL,
  quantity integer NOT NULL, unit_price numeric(10,2) NOT NULL, PRIMARY KEY (order_id, line_no));
INSERT INTO customers SELECT g, 'customer ' || g,
  CASE WHEN g % 50 = 0 THEN NULL ELSE 'c' || g || '@example.com' END,
  (ARRAY['FR','DE','US','GB','ES','IT'])[1 + (g * 7) % 6],
  timestamptz '2024-01-01 00:00:00+00' + (g * interval '37 minutes')
  FROM generate_series(1::bigint, {customers}) g;
INSERT INTO orders SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE 1 + (g * 2654435761) % {customers} END,
  (ARRAY['paid','paid','paid','pending','refunded','cancelled'])[1 + (g * 31) % 6],
  round((((g * 48271) % 100000) / 100.0 + 1)::numeric, 2),
  timestamptz '2025-01-01 00:00:00+00' + (g * interval '13 seconds')
  FROM generate_series(1::bigint, {orders}) g;
INSERT INTO order_items SELECT o, l, 'SKU-' || lpad(((o * 13 + l * 7) % 1000)::text, 4, '0'),
  1 + (o + l) % 5, round((((o * 7 + l) % 5000) / 100.0 + 0.5)::numeric, 2)
  FROM generate_series(1::bigint, {orders}) o, generate_series(1, 2 + (o % 2)::int) l;
ANALYZE customers; ANALYZE orders; ANALYZE order_items;
