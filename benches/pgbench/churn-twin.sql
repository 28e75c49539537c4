-- Churn, PL/pgSQL twin: one 10-slot barrier from creation to completion, each step its own
-- transaction (pgbench -D n=0); twin_sweep() removes finished ones every second.
\set n :n + 1
SELECT twin_enqueue('c' || :client_id || '-' || :n, 10);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 0);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 1);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 2);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 3);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 4);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 5);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 6);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 7);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 8);
SELECT status, remaining, results FROM twin_decr('c' || :client_id || '-' || :n, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', 9);
