-- Hot barrier, PL/pgSQL twin: client c reports slots c, c + 8, c + 16, ... (pgbench -D n=0).
\set n :n + 1
\set s :client_id + 8 * (:n - 1)
SELECT status, remaining, results FROM twin_decr('hot', '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', :s);
