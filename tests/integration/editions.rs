//! The two editions side by side on one server: the same public signatures, and a database
//! moving from one to the other, in place or through a dump, with barriers in flight.

use postgres::Client;
use serde_json::json;

use crate::support::{connect, connect_as, decr, dump_into, fast_reports, fresh_database, stored};

const RUST: &str = env!("CARGO_PKG_VERSION");

fn sql() -> String {
    crate::support::sql_edition_version()
}

/// Every public function as a caller sees it: name, argument names, types and defaults, result
/// columns, volatility, parallel safety, strictness. Not the language, owner, security or
/// settings, which differ by design.
const SIGNATURES: &str = r#"
SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> '
       || pg_get_function_result(p.oid) || ' ' || p.prokind::text || ' ' || p.provolatile::text
       || ' ' || p.proparallel::text || ' strict=' || p.proisstrict || ' set=' || p.proretset
       || ' acl=' || coalesce(p.proacl::text, 'default')
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_barrier'
 WHERE p.pronamespace::regnamespace::text NOT IN ('barrier_internal', 'tests')
 ORDER BY 1
"#;

fn signatures(client: &mut Client) -> Vec<String> {
    client
        .query(SIGNATURES, &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn installed(client: &mut Client) -> String {
    client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Fails when the two editions' public API differ in any way a caller can see. CI runs it
/// with every test run, so the SQL edition cannot drift from the Rust build unnoticed.
#[test]
fn both_editions_have_the_same_public_signatures() {
    let mut admin = connect();
    let mut rust = fresh_database(&mut admin, "barrier_signatures_rust");
    rust.batch_execute(&format!("CREATE EXTENSION pg_barrier VERSION '{RUST}'"))
        .unwrap();
    let mut sql_edition = fresh_database(&mut admin, "barrier_signatures_sql");
    sql_edition
        .batch_execute(&format!("CREATE EXTENSION pg_barrier VERSION '{}'", sql()))
        .unwrap();
    let (rust, sql_edition) = (signatures(&mut rust), signatures(&mut sql_edition));
    assert_eq!(rust.len(), 13, "{rust:#?}");
    let only_rust: Vec<_> = rust.iter().filter(|s| !sql_edition.contains(s)).collect();
    let only_sql: Vec<_> = sql_edition.iter().filter(|s| !rust.contains(s)).collect();
    assert!(
        only_rust.is_empty() && only_sql.is_empty(),
        "the editions' public signatures differ:\nRust build only: {only_rust:#?}\nSQL edition only: {only_sql:#?}"
    );
}

/// `ALTER EXTENSION pg_barrier UPDATE TO` switches editions in one transaction: the tables stay,
/// the functions change. Barriers started under one edition finish under the other with every
/// result, also when a report is open in another session while the switch commits.
#[test]
fn switching_editions_in_place_keeps_barriers_in_flight() {
    let mut admin = connect();
    let mut app = fresh_database(&mut admin, "barrier_switch");
    app.batch_execute(&format!(
        "CREATE EXTENSION pg_barrier VERSION '{RUST}';
         SELECT barrier_enqueue('switch-slotted', 4, '{{\"next\": \"publish\"}}');
         SELECT barrier_enqueue('switch-plain', 3);
         SELECT barrier_enqueue('switch-done', 1);
         SELECT barrier_enqueue('switch-aborted', 2);
         SELECT barrier_decr('switch-done', '\"d\"');
         SELECT barrier_abort('switch-aborted', 'before the switch');"
    ))
    .unwrap();
    let language = |client: &mut Client| -> String {
        client
            .query_one(
                "SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                  WHERE p.oid = 'barrier_decr(text, jsonb, integer, boolean)'::regprocedure",
                &[],
            )
            .unwrap()
            .get(0)
    };
    assert_eq!(language(&mut app), "c");
    assert_eq!(
        decr(&mut app, "switch-slotted", Some(&json!("s0")), Some(0))
            .unwrap()
            .status,
        "pending"
    );
    decr(&mut app, "switch-plain", Some(&json!("p0")), None).unwrap();

    // To the SQL edition, while another session holds an uncommitted report: the switch, which
    // puts triggers on the state tables, waits for it, and the report counts.
    let mut open = connect_as(&pgrx_tests::get_pg_user(), "barrier_switch");
    let mut report = open.transaction().unwrap();
    assert_eq!(
        decr(&mut report, "switch-slotted", Some(&json!("s3")), Some(3))
            .unwrap()
            .status,
        "pending"
    );
    let app_pid = crate::support::backend_pid(&mut app);
    let switch = std::thread::spawn(move || {
        app.batch_execute(&format!("ALTER EXTENSION pg_barrier UPDATE TO '{}'", sql()))
            .unwrap();
        app
    });
    crate::support::wait_until_blocked(&mut admin, app_pid);
    report.commit().unwrap();
    let mut app = switch.join().unwrap();
    assert_eq!(installed(&mut app), sql());
    assert_eq!(language(&mut app), "plpgsql");
    // The same session, whose earlier calls went to the library, now reaches PL/pgSQL.
    let answer = decr(&mut app, "switch-slotted", Some(&json!("s1")), Some(1)).unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.remaining),
        ("pending", Some(1))
    );
    assert_eq!(
        decr(&mut app, "switch-slotted", Some(&json!("s0")), Some(0))
            .unwrap()
            .status,
        "duplicate"
    );
    decr(&mut app, "switch-plain", Some(&json!("p1")), None).unwrap();
    let taken: String = app
        .query_one("SELECT results::text FROM barrier_take('switch-done')", &[])
        .unwrap()
        .get(0);
    assert_eq!(taken, r#"["d"]"#);
    assert_eq!(
        decr(&mut app, "switch-aborted", None, None).unwrap().status,
        "aborted"
    );

    // And back to the Rust build, which completes what the SQL edition carried.
    app.batch_execute(&format!("ALTER EXTENSION pg_barrier UPDATE TO '{RUST}'"))
        .unwrap();
    assert_eq!(installed(&mut app), RUST);
    assert_eq!(language(&mut app), "c");
    let done = decr(&mut app, "switch-slotted", Some(&json!("s2")), Some(2)).unwrap();
    assert_eq!(done.status, "complete");
    assert_eq!(done.results, Some(json!(["s0", "s1", "s2", "s3"])));
    let done = decr(&mut app, "switch-plain", Some(&json!("p2")), None).unwrap();
    assert_eq!(done.results, Some(json!(["p0", "p1", "p2"])));
    let reason: Option<String> = app
        .query_one("SELECT reason FROM barrier_status('switch-aborted')", &[])
        .unwrap()
        .get(0);
    assert_eq!(reason.as_deref(), Some("before the switch"));
    // The SQL edition's helpers and views went with it, and the schema is closed again. (The
    // Citus layout's helpers, src/distribute.sql, belong to both editions.)
    let row = app
        .query_one(
            "SELECT (SELECT count(*) FROM pg_proc
                      WHERE pronamespace = 'barrier_internal'::regnamespace
                        AND proname NOT IN ('distributed', 'write_tables_directly', 'hold_shard')),
                    (SELECT count(*) FROM pg_class
                      WHERE relnamespace = 'barrier_internal'::regnamespace AND relkind = 'v'),
                    has_schema_privilege('public', 'barrier_internal', 'USAGE')",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, bool>(2)
        ),
        (0, 0, false),
        "helpers, views, PUBLIC's USAGE on barrier_internal"
    );
}

/// pg_dump of one edition restored into a database where the other one is installed (as when
/// moving to or from a managed service): the state loads into the same tables and completes.
#[test]
fn dumps_move_between_editions() {
    let mut admin = connect();
    for (from, to) in [(RUST.to_string(), sql()), (sql(), RUST.to_string())] {
        let mut source = fresh_database(&mut admin, "barrier_edition_source");
        source
            .batch_execute(&format!(
                "CREATE EXTENSION pg_barrier VERSION '{from}';
                 SELECT barrier_enqueue('moved', 3, '{{\"then\": 1}}', channel => 'moved');
                 SELECT barrier_decr('moved', '\"m0\"', 0);
                 SELECT barrier_decr('moved', '\"m2\"', 2);
                 SELECT barrier_enqueue('moved-done', 1);
                 SELECT barrier_decr('moved-done', '\"kept\"');"
            ))
            .unwrap();
        drop(source);
        let mut target = fresh_database(&mut admin, "barrier_edition_target");
        target
            .batch_execute(&format!("CREATE EXTENSION pg_barrier VERSION '{to}'"))
            .unwrap();
        drop(target);
        dump_into("barrier_edition_source", "barrier_edition_target");

        let mut target = connect_as(&pgrx_tests::get_pg_user(), "barrier_edition_target");
        assert_eq!(installed(&mut target), to, "{from} -> {to}");
        assert_eq!(stored(&mut target, "moved").0, "pending", "{from} -> {to}");
        let done = decr(&mut target, "moved", Some(&json!("m1")), Some(1)).unwrap();
        assert_eq!(
            done.results,
            Some(json!(["m0", "m1", "m2"])),
            "{from} -> {to}"
        );
        let kept: String = target
            .query_one("SELECT results::text FROM barrier_take('moved-done')", &[])
            .unwrap()
            .get(0);
        assert_eq!(kept, r#"["kept"]"#, "{from} -> {to}");
    }
}

/// The library reached in a database that runs the SQL edition (as the background sweeper
/// configured for it would) says so, rather than ask for an update that would switch editions.
#[test]
fn the_library_in_a_sql_edition_database_names_the_edition() {
    let mut admin = connect();
    let mut db = fresh_database(&mut admin, "barrier_library_in_sql");
    db.batch_execute(&format!(
        "CREATE EXTENSION pg_barrier VERSION '{}';
         CREATE FUNCTION library_stats()
         RETURNS TABLE (pending bigint, complete bigint, aborted bigint, expired bigint,
                        untaken bigint, oldest_pending_age interval, result_rows bigint,
                        result_bytes bigint)
         LANGUAGE c AS 'pg_barrier', 'barrier_stats_wrapper';",
        sql()
    ))
    .unwrap();
    let error = db
        .batch_execute("SELECT * FROM library_stats()")
        .expect_err("the library on the SQL edition's objects");
    assert_eq!(crate::support::sqlstate(&error), "55000", "{error}");
    let error = error.as_db_error().unwrap();
    assert!(
        error.message().contains("SQL edition"),
        "{}",
        error.message()
    );
    assert!(
        error
            .hint()
            .unwrap_or_default()
            .contains(&format!("UPDATE TO '{RUST}'")),
        "{:?}",
        error.hint()
    );
}

/// The same bad calls get the same error from both editions: SQLSTATE, message, detail and hint,
/// word for word (the SQL edition adds only PL/pgSQL's CONTEXT lines).
#[test]
fn both_editions_raise_the_same_errors() {
    let mut admin = connect();
    let setup = "SELECT barrier_enqueue('errors-live', 2, '{\"a\": 1}', channel => 'errs');
                 SELECT barrier_decr('errors-live', NULL, 0);
                 SELECT barrier_enqueue('errors-done', 1);
                 SELECT barrier_decr('errors-done', NULL);
                 CREATE ROLE errors_stranger;";
    let calls = [
        "SELECT barrier_enqueue(NULL, 1)",
        "SELECT barrier_enqueue('', 1)",
        "SELECT barrier_enqueue(repeat('x', 513), 1)",
        "SELECT barrier_enqueue('e', -1)",
        "SELECT barrier_enqueue('e', NULL)",
        "SELECT barrier_enqueue('e', 1, channel => 'Bad')",
        "SELECT barrier_enqueue('e', 1, channel => repeat('a', 64))",
        "SELECT barrier_enqueue('e', 1, ttl => '-1 day')",
        "SELECT barrier_enqueue('e', 1, ttl => '1 mon -1 day')",
        "SELECT barrier_enqueue('e', 1, ttl => '0')",
        "SELECT barrier_enqueue('e', 1, ttl => '101 years')",
        "SELECT barrier_enqueue('e', 1, stall_timeout => '-1 s')",
        "SELECT barrier_enqueue('e', 1, replace => NULL)",
        "SELECT barrier_enqueue('errors-live', 3)",
        "SELECT barrier_enqueue('errors-live', 2, '{\"a\": 2}', channel => 'other')",
        "SELECT barrier_decr('errors-live', NULL, -1)",
        "SELECT barrier_decr('errors-live', NULL, 2)",
        "SELECT barrier_decr('errors-live', NULL)",
        "SELECT barrier_decr('errors-done', NULL, 0)",
        "SELECT barrier_abort(NULL)",
        "SELECT barrier_abort('e', repeat('r', 1025))",
        "SELECT barrier_add('nope', 1)",
        "SELECT barrier_add('errors-done', 1)",
        "SELECT barrier_add('errors-live', 0)",
        "SELECT barrier_add('errors-live', NULL)",
        "SELECT barrier_add('errors-live', 2147483647)",
        "SELECT barrier_sweep(0)",
        "SELECT barrier_completions(max_rows => 0)",
        "SELECT barrier_take(NULL)",
        "SELECT barrier_status(repeat('é', 300))",
        "SELECT barrier_results('')",
        "SET pg_barrier.max_result_bytes = 10; SELECT barrier_decr('errors-live', '[1, 2, 3, 4]', 1)",
        "SET ROLE errors_stranger; SELECT barrier_decr('errors-live', NULL, 1)",
        "BEGIN READ ONLY; SELECT barrier_decr('errors-live', NULL, 1)",
    ];
    let mut answers = Vec::new();
    for (database, version) in [
        ("barrier_errors_rust", RUST.to_string()),
        ("barrier_errors_sql", sql()),
    ] {
        let mut db = fresh_database(&mut admin, database);
        db.batch_execute(&format!("CREATE EXTENSION pg_barrier VERSION '{version}'"))
            .unwrap();
        db.batch_execute(
            setup
                .replace(
                    "CREATE ROLE errors_stranger;",
                    if version == RUST {
                        "CREATE ROLE errors_stranger;"
                    } else {
                        ""
                    },
                )
                .as_str(),
        )
        .unwrap();
        let errors: Vec<String> = calls
            .iter()
            .map(|call| {
                let mut session = connect_as(&pgrx_tests::get_pg_user(), database);
                let error = session.batch_execute(call).expect_err(call);
                let error = error
                    .as_db_error()
                    .unwrap_or_else(|| panic!("{call}: {error}"));
                format!(
                    "{call}\n  {} {}\n  detail: {:?}\n  hint: {:?}",
                    error.code().code(),
                    error.message(),
                    error.detail(),
                    error.hint()
                )
            })
            .collect();
        answers.push(errors);
    }
    for (rust, sql_edition) in answers[0].iter().zip(&answers[1]) {
        assert_eq!(rust, sql_edition, "the editions answer differently");
    }
    admin.batch_execute("DROP ROLE errors_stranger").ok();
}

/// Each run of this binary tests what scripts/test.sh names: the PostgreSQL build of the matrix
/// (the major this binary was compiled for, with assertions exactly for `15-cassert`), the
/// functions of its edition, and in the Rust build reports that take the fast path exactly when
/// the run has it on.
#[test]
fn each_run_tests_the_target_it_names() {
    let mut client = connect();
    let show = |client: &mut postgres::Client, setting: &str| -> String {
        client
            .query_one(&format!("SHOW {setting}"), &[])
            .unwrap()
            .get(0)
    };
    let version: i32 = show(&mut client, "server_version_num").parse().unwrap();
    assert_eq!(version / 10_000, crate::support::compiled_major());
    let build = std::env::var("PG_BARRIER_BUILD").unwrap_or_default();
    assert_eq!(
        show(&mut client, "debug_assertions") == "on",
        build.ends_with("-cassert"),
        "the server's assertions, for build {build:?}"
    );
    let language: String = client
        .query_one(
            "SELECT l.lanname::text FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
              WHERE p.oid = 'barrier_decr(text, jsonb, integer, boolean)'::regprocedure",
            &[],
        )
        .unwrap()
        .get(0);
    match crate::support::edition() {
        crate::support::Edition::Sql => assert_eq!(language, "plpgsql"),
        crate::support::Edition::Rust => {
            assert_eq!(language, "c");
            let on = crate::support::fast_path();
            assert_eq!(
                show(&mut client, "pg_barrier.fast_path"),
                if on { "on" } else { "off" }
            );
            client
                .batch_execute("SELECT barrier_enqueue('target-check', 3)")
                .unwrap();
            let before = fast_reports(&mut client);
            assert_eq!(
                decr(&mut client, "target-check", None, Some(0))
                    .unwrap()
                    .status,
                "pending"
            );
            assert_eq!(fast_reports(&mut client), before + i64::from(on));
        }
    }
}
