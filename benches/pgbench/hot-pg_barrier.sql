-- Hot barrier, pg_barrier: client c reports slots c, c + clients, c + 2 * clients, ...
-- (pgbench -D n=0 -D clients=N).
\set n :n + 1
\set s :client_id + :clients * (:n - 1)
SELECT status, remaining, results FROM barrier_decr('hot', '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', :s);
