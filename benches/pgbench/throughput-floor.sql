-- Throughput, floor: one decrement of a random counter out of 1,000.
\set b random(0, 999)
UPDATE floor_counter SET remaining = remaining - 1 WHERE id = 't' || :b;
