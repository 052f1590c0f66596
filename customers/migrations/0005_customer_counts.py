"""Exact customer counts per owner, kept by PostgreSQL triggers in the same transaction.

`X-Total-Count` on the unfiltered customer list was a COUNT(*) over the whole book on every
request (7–10 ms at 100,000 customers, most of the request). Statement-level triggers with
transition tables keep `customer_counts` exact for INSERT (COPY included), DELETE, owner changes
and TRUNCATE; the list reads one or a few rows instead. Other databases count as before.
"""

from django.db import migrations

CREATE = """
CREATE TABLE customer_counts (
    owner_key integer PRIMARY KEY,  -- the owner's user id; 0 for customers without an owner
    n bigint NOT NULL CHECK (n >= 0)
);
INSERT INTO customer_counts (owner_key, n)
    SELECT coalesce(owner_id, 0), count(*) FROM customers GROUP BY 1;

CREATE FUNCTION customer_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_counts AS c (owner_key, n)
        SELECT coalesce(owner_id, 0), count(*) FROM changed_rows GROUP BY 1 ORDER BY 1
    ON CONFLICT (owner_key) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE FUNCTION customer_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customer_counts c SET n = c.n - gone.n
    FROM (SELECT coalesce(owner_id, 0) AS owner_key, count(*) AS n FROM changed_rows GROUP BY 1) gone
    WHERE c.owner_key = gone.owner_key;
    RETURN NULL;
END $$;

-- Row level, and only when owner_id is in the SET list: score write-backs never fire it.
CREATE FUNCTION customer_counts_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE customer_counts SET n = n - 1 WHERE owner_key = coalesce(OLD.owner_id, 0);
    INSERT INTO customer_counts AS c (owner_key, n) VALUES (coalesce(NEW.owner_id, 0), 1)
    ON CONFLICT (owner_key) DO UPDATE SET n = c.n + 1;
    RETURN NULL;
END $$;

CREATE FUNCTION customer_counts_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM customer_counts;
    RETURN NULL;
END $$;

CREATE TRIGGER customer_counts_insert AFTER INSERT ON customers
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION customer_counts_add();
CREATE TRIGGER customer_counts_delete AFTER DELETE ON customers
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION customer_counts_remove();
CREATE TRIGGER customer_counts_owner AFTER UPDATE OF owner_id ON customers
    FOR EACH ROW WHEN (OLD.owner_id IS DISTINCT FROM NEW.owner_id) EXECUTE FUNCTION customer_counts_move();
CREATE TRIGGER customer_counts_truncate AFTER TRUNCATE ON customers
    FOR EACH STATEMENT EXECUTE FUNCTION customer_counts_clear();
"""

DROP = """
DROP TRIGGER IF EXISTS customer_counts_insert ON customers;
DROP TRIGGER IF EXISTS customer_counts_delete ON customers;
DROP TRIGGER IF EXISTS customer_counts_owner ON customers;
DROP TRIGGER IF EXISTS customer_counts_truncate ON customers;
DROP FUNCTION IF EXISTS customer_counts_add, customer_counts_remove, customer_counts_move, customer_counts_clear;
DROP TABLE IF EXISTS customer_counts;
"""


def create_counts(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop_counts(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("customers", "0004_customers_fillfactor_45")]

    operations = [migrations.RunPython(create_counts, drop_counts)]
