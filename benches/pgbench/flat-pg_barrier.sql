-- Flatness, pg_barrier: slot n reports 1 KB; the completer receives every result.
\set n :n + 1
SELECT status, remaining, results
  FROM barrier_decr('flat', (SELECT body FROM bench_payload WHERE n = :n - 1), :n - 1);
