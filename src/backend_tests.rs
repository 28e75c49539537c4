//! In-backend tests: every status path and every error SQLSTATE, through the SQL surface.
//!
//! Each test runs in one transaction that is rolled back, so anything that needs a commit
//! (notifications, races between sessions) is tested from real client connections in `tests/`.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    extension_sql!(
        r#"
    -- The SQLSTATE a statement raises, or NULL; PL/pgSQL runs it in a subtransaction.
    CREATE FUNCTION tests.sqlstate_of(statement text) RETURNS text LANGUAGE plpgsql AS $$
    BEGIN
        EXECUTE statement;
        RETURN NULL;
    EXCEPTION WHEN OTHERS THEN
        RETURN SQLSTATE;
    END
    $$;
"#,
        name = "test_helpers",
        requires = ["state_tables"]
    );

    /// How many reports this backend counted on the fast path (`src/fast_path.rs`).
    #[pg_extern]
    fn fast_reports() -> i64 {
        crate::fast_path::TAKEN.get()
    }

    /// What the fast path sees of `barrier_internal.<table>` (`src/fast_path.rs`).
    #[pg_extern]
    fn table_fingerprint(table: &str) -> Option<String> {
        crate::fast_path::fingerprint_of(table)
    }

    fn text(sql: &str) -> Option<String> {
        Spi::get_one::<String>(sql).expect("query failed")
    }

    fn int(sql: &str) -> Option<i64> {
        Spi::get_one::<i64>(sql).expect("query failed")
    }

    fn boolean(sql: &str) -> bool {
        Spi::get_one::<bool>(sql)
            .expect("query failed")
            .expect("NULL boolean")
    }

    /// One `barrier_decr` call: (status, remaining, results as text, callback as text).
    fn decr(args: &str) -> (String, Option<i32>, Option<String>, Option<String>) {
        let sql = format!(
            "SELECT status, remaining, results::text, callback::text FROM barrier_decr({args})"
        );
        Spi::connect_mut(|client| {
            let table = client.update(sql.as_str(), None, &[])?;
            let row = table.first();
            Ok::<_, pgrx::spi::SpiError>((
                row.get::<String>(1)?.expect("status is never NULL"),
                row.get::<i32>(2)?,
                row.get::<String>(3)?,
                row.get::<String>(4)?,
            ))
        })
        .expect("barrier_decr failed")
    }

    fn status_of(id: &str) -> Option<String> {
        text(&format!("SELECT status FROM barrier_status('{id}')"))
    }

    /// Asserts that `statement` fails with `sqlstate`. (Whatever it wrote before failing is rolled
    /// back with its subtransaction; the callers check the state they care about afterwards.)
    #[track_caller]
    fn assert_fails(statement: &str, sqlstate: &str) {
        let got =
            Spi::get_one_with_args::<String>("SELECT tests.sqlstate_of($1)", &[statement.into()])
                .expect("sqlstate_of failed");
        assert_eq!(got.as_deref(), Some(sqlstate), "SQLSTATE of {statement}");
    }

    #[pg_test]
    fn extension_is_installed_and_trusted() {
        assert!(boolean(
            "SELECT v.trusted FROM pg_available_extension_versions v \
               JOIN pg_extension e ON e.extname = v.name AND e.extversion = v.version \
              WHERE v.name = 'pg_barrier'"
        ));
        // Ordinary roles get nothing on the state tables.
        assert!(!boolean(
            "SELECT pg_catalog.has_schema_privilege('public', 'barrier_internal', 'USAGE')"
        ));
        for table in ["barrier", "barrier_spec", "result"] {
            assert!(!boolean(&format!(
                "SELECT pg_catalog.has_table_privilege('public', 'barrier_internal.{table}', \
                 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')"
            )));
        }
        // Every function pins its search_path in its definition and carries no other setting.
        // The library fixes its SQL's settings in code (`context::PinnedSettings`;
        // tests/integration/roles.rs calls under a hostile search_path); the definition's
        // setting is for a session still running a 0.2.0 library after an update, which relies
        // on it.
        assert_eq!(
            int(
                "SELECT count(*) FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid \
                  JOIN pg_extension e ON d.refobjid = e.oid AND e.extname = 'pg_barrier' \
                 WHERE p.proname LIKE 'barrier\\_%' \
                   AND p.proconfig IS DISTINCT FROM '{\"search_path=pg_catalog, pg_temp\"}'::text[]"
            ),
            Some(0)
        );
    }

    #[pg_test]
    fn the_fast_path_counts_the_common_reports_and_leaves_the_rest_to_sql() {
        let fast = || int("SELECT tests.fast_reports()").unwrap();
        let before = fast();
        text("SELECT barrier_enqueue('fast', 3)");
        assert_eq!(decr("'fast', '1', 0").0, "pending");
        assert_eq!(fast(), before + 1, "a common report takes the fast path");
        assert_eq!(decr("'fast', '2', 0").0, "duplicate");
        assert_eq!(fast(), before + 1, "a repeated slot takes the SQL path");
        assert_eq!(decr("'other-unknown', '2', 0").0, "unknown");
        assert_eq!(decr("'fast', '3', 1").0, "pending");
        assert_eq!(fast(), before + 2);
        assert_eq!(decr("'fast', '4', 2").0, "complete");
        assert_eq!(
            fast(),
            before + 2,
            "the completing report takes the SQL path"
        );
        text("SELECT barrier_enqueue('fast-plain', 2)");
        assert_eq!(decr("'fast-plain', '1'").0, "pending");
        assert_eq!(fast(), before + 3, "unslotted reports take it too");
    }

    #[pg_test]
    fn the_fast_path_expects_the_tables_as_installed() {
        // The fast path declines on tables other than these (an administrator's changes); a
        // change to src/schema.sql must update the expected fingerprints.
        for (table, expected) in [
            ("barrier", crate::fast_path::EXPECTED_BARRIER),
            ("result", crate::fast_path::EXPECTED_RESULT),
        ] {
            let found = text(&format!("SELECT tests.table_fingerprint('{table}')"));
            assert_eq!(found.as_deref(), Some(expected), "{table}");
        }
    }

    #[pg_test]
    fn unslotted_barrier_completes_once_with_results_in_arrival_order() {
        assert_eq!(
            text("SELECT barrier_enqueue('u', 3, '{\"task\": \"merge\"}')").as_deref(),
            Some("pending")
        );
        assert_eq!(
            decr("'u', '\"a\"'"),
            ("pending".into(), Some(2), None, None)
        );
        assert_eq!(decr("'u'"), ("pending".into(), Some(1), None, None));
        assert_eq!(
            text("SELECT barrier_results('u')::text").as_deref(),
            Some(r#"["a", null]"#)
        );
        assert_eq!(
            decr("'u', '{\"n\": 3}'"),
            (
                "complete".into(),
                Some(0),
                Some(r#"["a", null, {"n": 3}]"#.into()),
                Some(r#"{"task": "merge"}"#.into())
            )
        );
        assert_eq!(
            decr("'u', '4'"),
            ("already_complete".into(), Some(0), None, None)
        );
        assert_eq!(status_of("u").as_deref(), Some("complete"));
        assert!(boolean(
            "SELECT finished_at IS NOT NULL FROM barrier_status('u')"
        ));
        // The completed barrier keeps its results for readers.
        assert_eq!(
            text("SELECT barrier_results('u')::text").as_deref(),
            Some(r#"["a", null, {"n": 3}]"#)
        );
    }

    #[pg_test]
    fn slotted_barrier_orders_by_slot_and_ignores_duplicates() {
        assert_eq!(
            text("SELECT barrier_enqueue('s', 3)").as_deref(),
            Some("pending")
        );
        assert_eq!(
            decr("'s', '\"two\"', 2"),
            ("pending".into(), Some(2), None, None)
        );
        assert_eq!(
            decr("'s', '\"again\"', 2"),
            ("duplicate".into(), Some(2), None, None)
        );
        assert_eq!(
            decr("'s', NULL, 0"),
            ("pending".into(), Some(1), None, None)
        );
        // A duplicate keeps the first result.
        assert_eq!(
            text("SELECT barrier_results('s')::text").as_deref(),
            Some(r#"[null, "two"]"#)
        );
        assert_eq!(
            decr("'s', '1.50', 1"),
            (
                "complete".into(),
                Some(0),
                Some(r#"[null, 1.50, "two"]"#.into()),
                None
            )
        );
        assert_eq!(
            decr("'s', '\"late\"', 1"),
            ("duplicate".into(), Some(0), None, None)
        );
        assert_fails("SELECT barrier_decr('s', '\"late\"')", "22023");
        assert_eq!(
            text("SELECT barrier_results('s')::text").as_deref(),
            Some(r#"[null, 1.50, "two"]"#)
        );
    }

    #[pg_test]
    fn results_are_passed_through_without_loss() {
        // Values a serde round trip would change: huge and very precise numbers, key order, unicode.
        let value = r#"{"b": 1e400, "a": 123456789012345678901234567890.000000000000000000001, "é": "\u00e9 'q' \"q\""}"#;
        Spi::run_with_args("SELECT barrier_enqueue('p', 1, $1::jsonb)", &[value.into()]).unwrap();
        let (status, _, results, callback) =
            decr(&format!("'p', '{}'::jsonb", value.replace('\'', "''")));
        assert_eq!(status, "complete");
        let stored = text(&format!(
            "SELECT '{}'::jsonb::text",
            value.replace('\'', "''")
        ))
        .unwrap();
        assert_eq!(results, Some(format!("[{stored}]")));
        assert_eq!(callback, Some(stored));
    }

    #[pg_test]
    fn empty_fan_in_completes_at_once() {
        assert_eq!(
            text("SELECT barrier_enqueue('e', 0)").as_deref(),
            Some("complete")
        );
        assert_eq!(status_of("e").as_deref(), Some("complete"));
        assert_eq!(
            text("SELECT barrier_results('e')::text").as_deref(),
            Some("[]")
        );
        assert_eq!(
            decr("'e'"),
            ("already_complete".into(), Some(0), None, None)
        );
    }

    #[pg_test]
    fn unknown_barriers() {
        assert_eq!(decr("'nope'"), ("unknown".into(), None, None, None));
        assert_eq!(
            text("SELECT barrier_abort('nope')").as_deref(),
            Some("unknown")
        );
        assert_eq!(int("SELECT count(*) FROM barrier_status('nope')"), Some(0));
        assert_eq!(text("SELECT barrier_results('nope')::text"), None);
    }

    #[pg_test]
    fn abort_frees_results_and_leaves_a_tombstone() {
        Spi::run("SELECT barrier_enqueue('a', 2)").unwrap();
        decr("'a', '\"kept until abort\"', 0");
        assert_eq!(
            text("SELECT barrier_abort('a', 'upstream failed')").as_deref(),
            Some("aborted")
        );
        assert_eq!(
            int("SELECT count(*) FROM barrier_internal.result WHERE barrier_id = 'a'"),
            Some(0)
        );
        assert_eq!(text("SELECT barrier_results('a')::text"), None);
        assert_eq!(
            text("SELECT status || ':' || reason FROM barrier_status('a')").as_deref(),
            Some("aborted:upstream failed")
        );
        assert_eq!(
            decr("'a', NULL, 1"),
            ("aborted".into(), Some(1), None, None)
        );
        assert_eq!(
            text("SELECT barrier_abort('a')").as_deref(),
            Some("already_aborted")
        );

        Spi::run("SELECT barrier_enqueue('done', 1)").unwrap();
        decr("'done'");
        assert_eq!(
            text("SELECT barrier_abort('done')").as_deref(),
            Some("already_complete")
        );
        assert_eq!(status_of("done").as_deref(), Some("complete"));
    }

    #[pg_test]
    fn reenqueue_is_idempotent_conflicting_or_a_new_round() {
        Spi::run("SELECT barrier_enqueue('r', 3, '{\"cb\": 1}', '1 hour', 'jobs')").unwrap();
        decr("'r', '\"first\"'");
        // The same arguments again: a no-op that keeps progress.
        assert_eq!(
            text("SELECT barrier_enqueue('r', 3, '{\"cb\": 1}', '60 minutes', 'jobs')").as_deref(),
            Some("pending")
        );
        assert_eq!(int("SELECT remaining FROM barrier_status('r')"), Some(2));
        // Other arguments: refused, whichever differs.
        assert_fails(
            "SELECT barrier_enqueue('r', 4, '{\"cb\": 1}', '1 hour', 'jobs')",
            "42710",
        );
        assert_fails(
            "SELECT barrier_enqueue('r', 3, '{\"cb\": 2}', '1 hour', 'jobs')",
            "42710",
        );
        assert_fails(
            "SELECT barrier_enqueue('r', 3, NULL, '1 hour', 'jobs')",
            "42710",
        );
        assert_fails(
            "SELECT barrier_enqueue('r', 3, '{\"cb\": 1}', '2 hours', 'jobs')",
            "42710",
        );
        assert_fails(
            "SELECT barrier_enqueue('r', 3, '{\"cb\": 1}', '1 hour', 'other')",
            "42710",
        );
        // replace starts over: progress discarded, a new round.
        assert_eq!(
            text("SELECT barrier_enqueue('r', 2, replace => true)").as_deref(),
            Some("pending")
        );
        assert_eq!(
            text("SELECT status || ' ' || remaining || ' ' || round || ' ' || channel FROM barrier_status('r')")
                .as_deref(),
            Some("pending 2 2 pg_barrier")
        );
        assert_eq!(
            text("SELECT barrier_results('r')::text").as_deref(),
            Some("[]")
        );
        decr("'r', '1', 1");
        assert_eq!(decr("'r', '0', 0").0, "complete");
        // A finished barrier is replaced by a new round, also with the same arguments.
        assert_eq!(
            text("SELECT barrier_enqueue('r', 2)").as_deref(),
            Some("pending")
        );
        assert_eq!(
            text("SELECT status || ' ' || remaining || ' ' || round FROM barrier_status('r')")
                .as_deref(),
            Some("pending 2 3")
        );
        // The new round is unslotted until its first report decides.
        assert_eq!(decr("'r'").0, "pending");
        // An aborted barrier, too, and the new round clears the old reason.
        Spi::run("SELECT barrier_abort('r', 'why')").unwrap();
        assert_eq!(
            text("SELECT barrier_enqueue('r', 0)").as_deref(),
            Some("complete")
        );
        assert_eq!(
            text("SELECT status || ' ' || round || ' ' || coalesce(reason, '-') FROM barrier_status('r')")
                .as_deref(),
            Some("complete 4 -")
        );
    }

    #[pg_test]
    fn expiry_is_observed_by_status_decr_abort_and_enqueue() {
        Spi::run("SELECT barrier_enqueue('x', 2, ttl => '1 hour')").unwrap();
        decr("'x', '\"r\"'");
        // Move the deadline into the past, as time would.
        Spi::run("UPDATE barrier_internal.barrier SET expires_at = now() - interval '1 second' WHERE id = 'x'")
            .unwrap();
        assert_eq!(status_of("x").as_deref(), Some("expired"));
        assert_eq!(text("SELECT barrier_results('x')::text"), None);
        assert_eq!(
            decr("'x', '\"late\"'"),
            ("expired".into(), Some(1), None, None)
        );
        // The decrement stored the expiry and freed the results.
        assert_eq!(
            text("SELECT status FROM barrier_internal.barrier WHERE id = 'x'").as_deref(),
            Some("expired")
        );
        assert_eq!(
            int("SELECT count(*) FROM barrier_internal.result WHERE barrier_id = 'x'"),
            Some(0)
        );
        assert_eq!(
            text("SELECT barrier_abort('x')").as_deref(),
            Some("expired")
        );

        Spi::run("SELECT barrier_enqueue('y', 1)").unwrap();
        Spi::run("UPDATE barrier_internal.barrier SET expires_at = now() - interval '1 second' WHERE id = 'y'")
            .unwrap();
        assert_eq!(
            text("SELECT barrier_abort('y')").as_deref(),
            Some("expired")
        );

        // Enqueue over an expired barrier starts a new round.
        Spi::run("SELECT barrier_enqueue('z', 1)").unwrap();
        Spi::run("UPDATE barrier_internal.barrier SET expires_at = now() - interval '1 second' WHERE id = 'z'")
            .unwrap();
        assert_eq!(
            text("SELECT barrier_enqueue('z', 1)").as_deref(),
            Some("pending")
        );
        assert_eq!(int("SELECT round FROM barrier_status('z')"), Some(2));
    }

    #[pg_test]
    fn settings_supply_defaults() {
        Spi::run("SET LOCAL pg_barrier.channel = 'from_setting'").unwrap();
        Spi::run("SET LOCAL pg_barrier.default_ttl = '90s'").unwrap();
        Spi::run("SELECT barrier_enqueue('g', 1)").unwrap();
        assert!(boolean(
            "SELECT channel = 'from_setting' AND expires_at = created_at + interval '90 seconds' \
               FROM barrier_status('g')"
        ));
        // Without settings: six hours on channel pg_barrier.
        Spi::run("RESET pg_barrier.channel").unwrap();
        Spi::run("RESET pg_barrier.default_ttl").unwrap();
        Spi::run("SELECT barrier_enqueue('h', 1)").unwrap();
        assert!(boolean(
            "SELECT channel = 'pg_barrier' AND expires_at = created_at + interval '6 hours' \
               FROM barrier_status('h')"
        ));
        Spi::run("SET LOCAL pg_barrier.channel = 'Not-An-Identifier'").unwrap();
        assert_fails("SELECT barrier_enqueue('i', 1)", "22023");
    }

    #[pg_test]
    fn bad_arguments_raise_precise_sqlstates() {
        Spi::run("SELECT barrier_enqueue('live', 3)").unwrap();
        Spi::run("SELECT barrier_decr('live', NULL, 0)").unwrap();
        Spi::run("SELECT barrier_enqueue('plain', 3)").unwrap();
        Spi::run("SELECT barrier_decr('plain')").unwrap();
        Spi::run("SELECT barrier_enqueue('done', 2)").unwrap();
        Spi::run("SELECT barrier_decr('done', NULL, 0), barrier_decr('done', NULL, 1)").unwrap();
        Spi::run("SELECT barrier_enqueue('dropped', 2), barrier_abort('dropped')").unwrap();
        let long_id = "x".repeat(513);
        let long_channel = "c".repeat(64);
        let long_reason = "r".repeat(1025);
        let cases: Vec<(String, &str)> = vec![
            // id
            ("SELECT barrier_enqueue(NULL, 1)".into(), "22004"),
            ("SELECT barrier_enqueue('', 1)".into(), "22023"),
            (format!("SELECT barrier_enqueue('{long_id}', 1)"), "22001"),
            ("SELECT barrier_decr(NULL)".into(), "22004"),
            ("SELECT barrier_decr('')".into(), "22023"),
            (format!("SELECT barrier_decr('{long_id}')"), "22001"),
            ("SELECT barrier_abort(NULL)".into(), "22004"),
            ("SELECT barrier_abort('')".into(), "22023"),
            ("SELECT * FROM barrier_status(NULL)".into(), "22004"),
            ("SELECT barrier_results('')".into(), "22023"),
            // expected
            ("SELECT barrier_enqueue('n', NULL)".into(), "22004"),
            ("SELECT barrier_enqueue('n', -1)".into(), "22023"),
            // slot
            ("SELECT barrier_decr('live', NULL, -1)".into(), "22023"),
            ("SELECT barrier_decr('live', NULL, 3)".into(), "22023"),
            (
                "SELECT barrier_decr('live', NULL, 2147483647)".into(),
                "22023",
            ),
            // mixing slotted and unslotted reports
            ("SELECT barrier_decr('live')".into(), "22023"),
            ("SELECT barrier_decr('plain', NULL, 1)".into(), "22023"),
            // ... also once the barrier is finished
            ("SELECT barrier_decr('done', NULL, 2)".into(), "22023"),
            ("SELECT barrier_decr('done')".into(), "22023"),
            ("SELECT barrier_decr('dropped', NULL, 5)".into(), "22023"),
            // channel
            (
                "SELECT barrier_enqueue('n', 1, channel => 'Upper')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, channel => 'has space')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, channel => '')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, channel => '1st')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, channel => 'a\"; NOTIFY x; --')".into(),
                "22023",
            ),
            (
                format!("SELECT barrier_enqueue('n', 1, channel => '{long_channel}')"),
                "22001",
            ),
            // ttl
            (
                "SELECT barrier_enqueue('n', 1, ttl => '0 seconds')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, ttl => '-1 hour')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, ttl => '1 month -31 days')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, ttl => '101 years')".into(),
                "22023",
            ),
            (
                "SELECT barrier_enqueue('n', 1, ttl => '100000000 hours')".into(),
                "22023",
            ),
            // replace
            (
                "SELECT barrier_enqueue('n', 1, replace => NULL)".into(),
                "22004",
            ),
            // conflicting re-enqueue
            ("SELECT barrier_enqueue('live', 4)".into(), "42710"),
            // reason
            (
                format!("SELECT barrier_abort('live', '{long_reason}')"),
                "22001",
            ),
        ];
        for (statement, sqlstate) in &cases {
            assert_fails(statement, sqlstate);
        }
        assert_eq!(int("SELECT count(*) FROM barrier_status('n')"), Some(0));
        assert_eq!(int("SELECT remaining FROM barrier_status('live')"), Some(2));
        assert_eq!(
            int("SELECT remaining FROM barrier_status('plain')"),
            Some(2)
        );
        assert_eq!(status_of("done").as_deref(), Some("complete"));
    }

    #[pg_test]
    fn other_roles_are_refused_with_42501() {
        Spi::run("CREATE ROLE barrier_owner_role").unwrap();
        Spi::run("CREATE ROLE barrier_intruder").unwrap();
        Spi::run("CREATE ROLE barrier_member IN ROLE barrier_owner_role").unwrap();
        Spi::run("GRANT USAGE ON SCHEMA tests TO PUBLIC").unwrap();
        Spi::run("SET LOCAL ROLE barrier_owner_role").unwrap();
        Spi::run("SELECT barrier_enqueue('owned', 2)").unwrap();
        Spi::run("SELECT barrier_enqueue('owned_done', 0)").unwrap();
        // The owner cannot reach the tables directly either.
        assert_fails("SELECT * FROM barrier_internal.barrier", "42501");
        assert_fails("UPDATE barrier_internal.barrier SET remaining = 0", "42501");
        Spi::run("SET LOCAL ROLE barrier_intruder").unwrap();
        for statement in [
            "SELECT barrier_decr('owned')",
            "SELECT barrier_abort('owned')",
            "SELECT * FROM barrier_status('owned')",
            "SELECT barrier_results('owned')",
            "SELECT barrier_enqueue('owned', 2)",
            "SELECT barrier_enqueue('owned', 5, replace => true)",
            "SELECT barrier_enqueue('owned_done', 1)",
            "SELECT * FROM barrier_take('owned_done')",
            "SELECT barrier_add('owned', 1)",
            "DELETE FROM barrier_internal.barrier",
            "SELECT * FROM barrier_internal.result",
        ] {
            assert_fails(statement, "42501");
        }
        // A member of the owning role acts for it.
        Spi::run("SET LOCAL ROLE barrier_member").unwrap();
        assert_eq!(decr("'owned'").0, "pending");
        Spi::run("RESET ROLE").unwrap();
        // And so does a superuser.
        assert_eq!(decr("'owned'").0, "complete");
    }

    /// Moves a barrier's clocks into the past, as time would.
    fn age(id: &str, column: &str) {
        Spi::run(&format!(
            "UPDATE barrier_internal.barrier SET {column} = statement_timestamp() - interval '1 second' \
              WHERE id = '{id}'"
        ))
        .unwrap();
    }

    #[pg_test]
    fn take_hands_out_a_completion_once() {
        Spi::run("SELECT barrier_enqueue('t', 2, '{\"next\": \"merge\"}')").unwrap();
        decr("'t', '\"b\"', 1");
        assert_eq!(
            int("SELECT count(*) FROM barrier_take('t')"),
            Some(0),
            "pending: nothing to take"
        );
        decr("'t', '\"a\"', 0");
        assert_eq!(
            text("SELECT results::text || ' ' || callback::text FROM barrier_take('t')").as_deref(),
            Some(r#"["a", "b"] {"next": "merge"}"#)
        );
        assert_eq!(
            int("SELECT count(*) FROM barrier_take('t')"),
            Some(0),
            "taken once"
        );
        assert_eq!(
            int("SELECT count(*) FROM barrier_internal.result WHERE barrier_id = 't'"),
            Some(0)
        );
        assert_eq!(text("SELECT barrier_results('t')::text"), None);
        assert_eq!(status_of("t").as_deref(), Some("complete"));
        // A late re-report of a counted slot: its result is gone, the barrier is complete.
        assert_eq!(decr("'t', NULL, 0").0, "already_complete");
        assert_eq!(int("SELECT count(*) FROM barrier_take('nope')"), Some(0));
    }

    #[pg_test]
    fn completions_list_untaken_completions_by_channel_oldest_first() {
        Spi::run("SELECT barrier_enqueue('c1', 1, channel => 'a'), barrier_enqueue('c2', 1, channel => 'b')")
            .unwrap();
        Spi::run("SELECT barrier_enqueue('c3', 1, channel => 'a'), barrier_enqueue('c4', 2, channel => 'a')")
            .unwrap();
        for id in ["c3", "c1", "c2", "c4"] {
            decr(&format!("'{id}', '\"{id}\"'"));
        }
        // c3 finished first; order by finished_at then id, which ties here: c1 before c3.
        assert_eq!(
            text(
                "SELECT string_agg(id || '=' || results::text, ',') FROM barrier_completions('a')"
            )
            .as_deref(),
            Some(r#"c1=["c1"],c3=["c3"]"#)
        );
        assert_eq!(
            int("SELECT count(*) FROM barrier_completions('a')"),
            Some(0)
        );
        assert_eq!(
            text("SELECT string_agg(id, ',') FROM barrier_completions(max_rows => 5)").as_deref(),
            Some("c2")
        );
        assert_fails("SELECT * FROM barrier_completions(max_rows => 0)", "22023");
        assert_fails(
            "SELECT * FROM barrier_completions(max_rows => NULL)",
            "22004",
        );
    }

    #[pg_test]
    fn add_grows_a_pending_barrier_only() {
        Spi::run("SELECT barrier_enqueue('g', 2)").unwrap();
        decr("'g', '0', 0");
        assert_eq!(int("SELECT barrier_add('g', 2)::bigint"), Some(4));
        assert_eq!(int("SELECT remaining FROM barrier_status('g')"), Some(3));
        assert_eq!(decr("'g', '3', 3").0, "pending");
        assert_eq!(decr("'g', '1', 1").0, "pending");
        assert_eq!(
            decr("'g', '2', 2"),
            (
                "complete".into(),
                Some(0),
                Some("[0, 1, 2, 3]".into()),
                None
            )
        );
        assert_fails("SELECT barrier_add('g', 1)", "55000");
        assert_fails("SELECT barrier_add('nope', 1)", "42704");
        Spi::run("SELECT barrier_enqueue('h', 1)").unwrap();
        assert_fails("SELECT barrier_add('h', 0)", "22023");
        assert_fails("SELECT barrier_add('h', NULL)", "22004");
        assert_fails("SELECT barrier_add(NULL, 1)", "22004");
        assert_fails("SELECT barrier_add('h', 2147483647)", "22023");
        Spi::run("SELECT barrier_abort('h')").unwrap();
        assert_fails("SELECT barrier_add('h', 1)", "55000");
    }

    #[pg_test]
    fn sweep_expires_stalls_and_deletes_by_retention() {
        Spi::run("SELECT barrier_enqueue('late', 2), barrier_enqueue('quiet', 2, stall_timeout => '1 hour')")
            .unwrap();
        Spi::run("SELECT barrier_enqueue('busy', 2, stall_timeout => '1 hour'), barrier_enqueue('fine', 2)")
            .unwrap();
        decr("'late', '1'");
        age("late", "expires_at");
        age("quiet", "progress_at");
        Spi::run(
            "UPDATE barrier_internal.barrier SET progress_at = progress_at - interval '2 hours' \
                   WHERE id = 'quiet'",
        )
        .unwrap();
        assert_eq!(
            text("SELECT expired || ',' || deleted FROM barrier_sweep()").as_deref(),
            Some("2,0")
        );
        assert_eq!(
            text("SELECT status || ':' || coalesce(reason, '-') FROM barrier_status('late')")
                .as_deref(),
            Some("expired:-")
        );
        assert_eq!(
            text("SELECT status || ':' || reason FROM barrier_status('quiet')").as_deref(),
            Some("expired:no report within stall_timeout")
        );
        assert_eq!(
            int("SELECT count(*) FROM barrier_internal.result WHERE barrier_id = 'late'"),
            Some(0)
        );
        assert_eq!(status_of("busy").as_deref(), Some("pending"));
        assert_eq!(status_of("fine").as_deref(), Some("pending"));
        // Nothing is old enough to delete under the default retention of a day.
        assert_eq!(
            text("SELECT expired || ',' || deleted FROM barrier_sweep()").as_deref(),
            Some("0,0")
        );

        // With no retention: finished barriers go, an aborted one only after its expiry.
        Spi::run("SET LOCAL pg_barrier.retention = 0").unwrap();
        Spi::run("SELECT barrier_enqueue('done', 1), barrier_enqueue('stopped', 1)").unwrap();
        decr("'done'");
        Spi::run("SELECT barrier_abort('stopped')").unwrap();
        assert_eq!(
            text("SELECT expired || ',' || deleted FROM barrier_sweep(1)").as_deref(),
            Some("0,1")
        );
        assert_eq!(
            text("SELECT expired || ',' || deleted FROM barrier_sweep()").as_deref(),
            Some("0,2")
        );
        assert_eq!(status_of("stopped").as_deref(), Some("aborted"));
        age("stopped", "expires_at");
        assert_eq!(
            text("SELECT expired || ',' || deleted FROM barrier_sweep()").as_deref(),
            Some("0,1")
        );
        assert_eq!(
            int("SELECT count(*) FROM barrier_internal.barrier_spec WHERE id IN ('late', 'quiet', 'done', 'stopped')"),
            Some(0)
        );
        assert_eq!(status_of("fine").as_deref(), Some("pending"));
        assert_fails("SELECT * FROM barrier_sweep(0)", "22023");
    }

    #[pg_test]
    fn stall_timeout_comes_from_the_argument_or_the_setting() {
        Spi::run("SELECT barrier_enqueue('s1', 1)").unwrap();
        Spi::run("SET LOCAL pg_barrier.stall_timeout = '30min'").unwrap();
        Spi::run(
            "SELECT barrier_enqueue('s2', 1), barrier_enqueue('s3', 1, stall_timeout => '2 hours')",
        )
        .unwrap();
        assert_eq!(
            text("SELECT string_agg(id || '=' || coalesce(stall_timeout::text, '-'), ' ' ORDER BY id) \
                    FROM barrier_internal.barrier_spec WHERE id IN ('s1', 's2', 's3')")
                .as_deref(),
            Some("s1=- s2=00:30:00 s3=02:00:00")
        );
        assert_eq!(
            text("SELECT barrier_enqueue('s3', 1, stall_timeout => '2 hours')").as_deref(),
            Some("pending")
        );
        assert_fails(
            "SELECT barrier_enqueue('s3', 1, stall_timeout => '3 hours')",
            "42710",
        );
        assert_fails(
            "SELECT barrier_enqueue('s4', 1, stall_timeout => '0 s')",
            "22023",
        );
        assert_fails(
            "SELECT barrier_enqueue('s4', 1, stall_timeout => '-1 s')",
            "22023",
        );
    }

    #[pg_test]
    fn oversized_results_and_callbacks_are_refused_with_54000() {
        let fits = format!("'\"{}\"'", "x".repeat(90));
        let over = format!("'\"{}\"'", "x".repeat(91));
        let limit = int(&format!("SELECT pg_column_size({fits}::jsonb)::bigint")).unwrap();
        Spi::run(&format!("SET LOCAL pg_barrier.max_result_bytes = {limit}")).unwrap();
        Spi::run("SELECT barrier_enqueue('big', 2)").unwrap();
        assert_eq!(decr(&format!("'big', {fits}")).0, "pending");
        assert_fails(&format!("SELECT barrier_decr('big', {over})"), "54000");
        assert_fails(
            &format!("SELECT barrier_enqueue('big2', 1, {over})"),
            "54000",
        );
        assert_eq!(int("SELECT remaining FROM barrier_status('big')"), Some(1));
    }

    #[pg_test]
    fn stats_count_what_the_role_may_see() {
        Spi::run(
            "SELECT barrier_enqueue('p1', 2), barrier_enqueue('p2', 1), barrier_enqueue('d', 1)",
        )
        .unwrap();
        Spi::run("SELECT barrier_enqueue('x', 1), barrier_abort('x')").unwrap();
        decr("'p1', '\"r\"'");
        decr("'d'");
        assert_eq!(
            text(
                "SELECT concat_ws(',', pending, complete, aborted, expired, untaken, result_rows) \
                    FROM barrier_stats()"
            )
            .as_deref(),
            Some("2,1,1,0,1,2")
        );
        assert!(boolean(
            "SELECT oldest_pending_age >= interval '0' AND result_bytes > 0 FROM barrier_stats()"
        ));
        Spi::run("CREATE ROLE barrier_stranger").unwrap();
        Spi::run("SET LOCAL ROLE barrier_stranger").unwrap();
        assert_eq!(
            text(
                "SELECT concat_ws(',', pending, complete, aborted, expired, untaken, result_rows) \
                    FROM barrier_stats()"
            )
            .as_deref(),
            Some("0,0,0,0,0,0")
        );
    }

    #[pg_test]
    fn results_too_large_for_one_completion_are_refused_with_54000() {
        Spi::run("SELECT barrier_enqueue('heavy', 3)").unwrap();
        decr("'heavy', '\"first\"'");
        // As if the results already recorded were just under the cap.
        Spi::run(
            "UPDATE barrier_internal.barrier SET result_bytes = 255 * 1024 * 1024 - 40 \
              WHERE id = 'heavy'",
        )
        .unwrap();
        assert_fails(
            "SELECT barrier_decr('heavy', '\"a result of some size\"')",
            "54000",
        );
        assert_eq!(
            int("SELECT remaining FROM barrier_status('heavy')"),
            Some(2)
        );
        // A small one still fits.
        assert_eq!(decr("'heavy', '1'").0, "pending");
    }
}
