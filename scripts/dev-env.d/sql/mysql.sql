-- Deterministic mocked tables for MySQL 8 (compose) and MariaDB (native), shared by
-- scripts/dev-env and the compose data-seed. {orders} and {customers} are replaced by the
-- seeders; portable SQL (no sequence engine, no recursive CTE), up to 1,000,000 rows.
DROP TABLE IF EXISTS order_items, orders, customers, seed_numbers;
CREATE TEMPORARY TABLE seed_digits (d INT NOT NULL);
INSERT INTO seed_digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9);
CREATE TABLE seed_numbers (n INT PRIMARY KEY);
INSERT INTO seed_numbers
  SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d + 100000 * g.d
  FROM seed_digits a, seed_digits b, seed_digits c, seed_digits e, seed_digits f, seed_digits g;
CREATE TABLE customers (customer_id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200),
  country CHAR(2) NOT NULL, created_at DATETIME(6) NOT NULL);
CREATE TABLE orders (order_id BIGINT PRIMARY KEY, customer_id INT, status VARCHAR(20) NOT NULL,
  amount DECIMAL(12,2) NOT NULL, created_at DATETIME(6) NOT NULL);
CREATE TABLE order_items (order_id BIGINT NOT NULL, line_no INT NOT NULL, sku VARCHAR(20) NOT NULL,
  quantity INT NOT NULL, unit_price DECIMAL(10,2) NOT NULL, PRIMARY KEY (order_id, line_no));
INSERT INTO customers SELECT n, CONCAT('customer ', n),
  IF(n % 50 = 0, NULL, CONCAT('c', n, '@example.com')),
  ELT(1 + (n * 7) % 6, 'FR', 'DE', 'US', 'GB', 'ES', 'IT'),
  TIMESTAMP('2024-01-01') + INTERVAL (n * 37) MINUTE
  FROM seed_numbers WHERE n <= {customers};
INSERT INTO orders SELECT n, IF(n % 97 = 0, NULL, 1 + (n * 2654435761) % {customers}),
  ELT(1 + (n * 31) % 6, 'paid', 'paid', 'paid', 'pending', 'refunded', 'cancelled'),
  ROUND(((n * 48271) % 100000) / 100.0 + 1, 2),
  TIMESTAMP('2025-01-01') + INTERVAL (n * 13) SECOND
  FROM seed_numbers WHERE n <= {orders};
INSERT INTO order_items SELECT o.n, l.n, CONCAT('SKU-', LPAD((o.n * 13 + l.n * 7) % 1000, 4, '0')),
  1 + (o.n + l.n) % 5, ROUND(((o.n * 7 + l.n) % 5000) / 100.0 + 0.5, 2)
  FROM seed_numbers o JOIN seed_numbers l ON l.n <= 2 + o.n % 2
  WHERE o.n <= {orders} AND l.n <= 3;
DROP TABLE seed_numbers;
