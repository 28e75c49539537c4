-- Throughput, PL/pgSQL twin: a random slot of a random barrier out of 1,000.
\set b random(0, 999)
\set s random(0, 9999999)
SELECT status, remaining, results FROM twin_decr('t' || :b, '"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"', :s);
