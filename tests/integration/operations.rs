//! What an operator does: upgrade from a released version, dump and restore, run for months.
//! Upgrades end at this binary's edition: for the SQL edition, the update path runs through the
//! released Rust builds and then switches editions, with barriers in flight.

use postgres::Client;
use serde_json::json;

use crate::support::{
    connect, connect_as, create_extension, decr, dump_into, fresh_database, version,
};

fn server_setting(client: &mut Client, name: &str) -> String {
    client
        .query_one("SELECT setting FROM pg_config WHERE name = $1", &[&name])
        .unwrap()
        .get(0)
}

/// Everything the extension defines, one line per object, for comparing installations.
const CATALOG: &str = r#"
SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'pg_barrier'
   -- the test build's own functions, absent from released scripts
   AND pg_describe_object(d.classid, d.objid, d.objsubid) NOT LIKE 'function tests.%'
   AND pg_describe_object(d.classid, d.objid, d.objsubid) <> 'schema tests'
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' -> ' || pg_get_function_result(p.oid)
       || ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict::text || p.prosecdef::text
       || ' ' || coalesce(array_to_string(p.proconfig, ','), '') || ' ' || p.prosrc
       || ' ' || pg_get_function_arguments(p.oid) || ' ' || coalesce(p.proacl::text, '')
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_barrier' AND d.deptype = 'e'
 WHERE p.pronamespace::regnamespace::text <> 'tests'
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' ' || coalesce(a.attcollation::regcollation::text, '') || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'barrier_internal'
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relkind = 'r'
UNION ALL
SELECT 'constraint ' || c.relname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'barrier_internal'
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'barrier_internal'
UNION ALL
SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || coalesce(c.reloptions::text, '')
       || ' ' || coalesce(c.relacl::text, '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'barrier_internal'
UNION ALL
SELECT 'schema ' || nspname || ' ' || coalesce(nspacl::text, '')
  FROM pg_namespace WHERE nspname = 'barrier_internal'
UNION ALL
SELECT 'dumped ' || t::regclass FROM pg_extension, unnest(extconfig) t WHERE extname = 'pg_barrier'
ORDER BY 1
"#;

fn catalog(client: &mut Client) -> Vec<String> {
    client
        .query(CATALOG, &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn upgrading_from_0_1_0_keeps_live_barriers_and_matches_a_fresh_install() {
    let mut admin = connect();
    install_released_script(&mut admin, "0.1.0");
    let mut old = fresh_database(&mut admin, "barrier_upgrade");
    old.batch_execute("CREATE EXTENSION pg_barrier VERSION '0.1.0'")
        .unwrap();
    // This library refuses to work on 0.1.0 tables, clearly, until the update.
    let error = old
        .batch_execute("SELECT barrier_enqueue('x', 1)")
        .expect_err("outdated");
    assert_eq!(crate::support::sqlstate(&error), "55000", "{error}");
    let hint = error
        .as_db_error()
        .and_then(|e| e.hint())
        .unwrap_or_default()
        .to_string();
    assert!(hint.contains("ALTER EXTENSION pg_barrier UPDATE"), "{hint}");
    // State as the 0.1.0 library left it: a slotted and an unslotted barrier in flight, a
    // completed one, an aborted tombstone.
    old.batch_execute(
        r#"
        INSERT INTO barrier_internal.barrier
               (id, round, owner, status, expected, remaining, slotted, created_at, expires_at,
                finished_at)
        VALUES ('up-slotted', 1, 'postgres'::regrole, 'pending', 3, 2, true, now(),
                now() + interval '1 hour', NULL),
               ('up-plain', 1, 'postgres'::regrole, 'pending', 2, 1, false, now(),
                now() + interval '1 hour', NULL),
               ('up-nulls', 1, 'postgres'::regrole, 'pending', 2, 1, true, now(),
                now() + interval '1 hour', NULL),
               ('up-done', 1, 'postgres'::regrole, 'complete', 1, 0, false, now(),
                now() + interval '1 hour', now()),
               ('up-aborted', 1, 'postgres'::regrole, 'aborted', 2, 2, NULL, now(),
                now() + interval '1 hour', now());
        INSERT INTO barrier_internal.barrier_spec (id, callback, channel, ttl, reason)
        VALUES ('up-slotted', '{"next": 1}', 'pg_barrier', '1 hour', NULL),
               ('up-plain', NULL, 'pg_barrier', '1 hour', NULL),
               ('up-nulls', NULL, 'pg_barrier', '1 hour', NULL),
               ('up-done', NULL, 'pg_barrier', '1 hour', NULL),
               ('up-aborted', NULL, 'pg_barrier', '1 hour', 'before the upgrade');
        INSERT INTO barrier_internal.result
        VALUES ('up-slotted', 1, '"s1"'), ('up-plain', 0, '"p0"'), ('up-done', 0, '"d0"'),
               ('up-nulls', 0, NULL);
        "#,
    )
    .unwrap();
    old.batch_execute(&format!(
        "ALTER EXTENSION pg_barrier UPDATE TO '{}'",
        version()
    ))
    .unwrap();
    let installed: String = old
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(installed, version());

    // In-flight barriers finish with every result, before and after the upgrade.
    decr(&mut old, "up-slotted", Some(&json!("s0")), Some(0)).unwrap();
    let done = decr(&mut old, "up-slotted", Some(&json!("s2")), Some(2)).unwrap();
    assert_eq!(
        (done.status.as_str(), done.results),
        ("complete", Some(json!(["s0", "s1", "s2"])))
    );
    let done = decr(&mut old, "up-nulls", None, Some(1)).unwrap();
    assert_eq!(done.results, Some(json!([null, null])));
    let done = decr(&mut old, "up-plain", Some(&json!("p1")), None).unwrap();
    assert_eq!(done.results, Some(json!(["p0", "p1"])));
    let taken: String = old
        .query_one("SELECT results::text FROM barrier_take('up-done')", &[])
        .unwrap()
        .get(0);
    assert_eq!(taken, r#"["d0"]"#);
    assert_eq!(
        decr(&mut old, "up-aborted", None, None).unwrap().status,
        "aborted"
    );
    // New features work on upgraded state.
    old.batch_execute(
        "SELECT barrier_enqueue('up-new', 1, stall_timeout => '1 hour');
         SELECT barrier_add('up-new', 1);
         SELECT barrier_sweep();",
    )
    .unwrap();

    assert_same_catalog(&mut admin, &mut old, "barrier_fresh");
}

/// Puts a released install script where the server finds it; the library serves every
/// version's SQL (and refuses to work until the update).
fn install_released_script(admin: &mut Client, version: &str) {
    let extension_dir = format!("{}/extension", server_setting(admin, "SHAREDIR"));
    let released = format!(
        "{}/sql/pg_barrier--{version}.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    let installed = format!("{extension_dir}/pg_barrier--{version}.sql");
    std::fs::copy(released, &installed)
        .expect("copy a released install script (tests run as root)");
    // Readable by the server, whatever the checkout's permissions.
    let mut permissions = std::fs::metadata(&installed).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o644);
    std::fs::set_permissions(&installed, permissions).unwrap();
}

/// An upgraded database defines exactly what a fresh install (in database `fresh`) does.
fn assert_same_catalog(admin: &mut Client, upgraded: &mut Client, fresh: &str) {
    let mut fresh = fresh_database(admin, fresh);
    fresh.batch_execute(&create_extension()).unwrap();
    let (upgraded, installed) = (catalog(upgraded), catalog(&mut fresh));
    assert!(installed.len() > 20, "{installed:?}");
    let only_upgraded: Vec<_> = upgraded.iter().filter(|l| !installed.contains(l)).collect();
    let only_fresh: Vec<_> = installed.iter().filter(|l| !upgraded.contains(l)).collect();
    assert!(
        only_upgraded.is_empty() && only_fresh.is_empty(),
        "the upgrade script and the install script disagree:\nonly after upgrade: {only_upgraded:#?}\nonly in a fresh install: {only_fresh:#?}"
    );
}

#[test]
fn upgrading_from_0_2_0_keeps_live_barriers_and_matches_a_fresh_install() {
    let mut admin = connect();
    install_released_script(&mut admin, "0.2.0");
    let mut old = fresh_database(&mut admin, "barrier_upgrade_020");
    old.batch_execute("CREATE EXTENSION pg_barrier VERSION '0.2.0'")
        .unwrap();
    // Two barriers in flight as the 0.2.0 library left them, with ids that sort differently
    // under a linguistic collation and byte order (the update makes ids byte-compared).
    old.batch_execute(
        r#"
        INSERT INTO barrier_internal.barrier
               (id, round, owner, status, expected, remaining, slotted, created_at, expires_at,
                finished_at, progress_at, result_bytes)
        VALUES ('Zeta', 1, 'postgres'::regrole, 'pending', 3, 2, true, now(),
                now() + interval '1 hour', NULL, now(), 12),
               ('alpha', 1, 'postgres'::regrole, 'pending', 2, 1, false, now(),
                now() + interval '1 hour', NULL, now(), 12);
        INSERT INTO barrier_internal.barrier_spec (id, callback, channel, ttl)
        VALUES ('Zeta', NULL, 'pg_barrier', '1 hour'), ('alpha', NULL, 'pg_barrier', '1 hour');
        INSERT INTO barrier_internal.result VALUES ('Zeta', 1, '"z1"'), ('alpha', 0, '"a0"');
        "#,
    )
    .unwrap();
    old.batch_execute(&format!(
        "ALTER EXTENSION pg_barrier UPDATE TO '{}'",
        version()
    ))
    .unwrap();
    // The first report after the update takes the fast path, the last one the SQL path.
    let pending = decr(&mut old, "Zeta", Some(&json!("z0")), Some(0)).unwrap();
    assert_eq!(
        (pending.status.as_str(), pending.remaining),
        ("pending", Some(1))
    );
    let done = decr(&mut old, "Zeta", Some(&json!("z2")), Some(2)).unwrap();
    assert_eq!(done.results, Some(json!(["z0", "z1", "z2"])));
    let done = decr(&mut old, "alpha", Some(&json!("a1")), None).unwrap();
    assert_eq!(done.results, Some(json!(["a0", "a1"])));
    assert_same_catalog(&mut admin, &mut old, "barrier_fresh_020");
}

/// The SQL edition's first release, 0.3.0-sql, with barriers in flight, updated to this
/// binary's edition: for the SQL edition, its update script; for the Rust build, the switch
/// that release shipped.
#[test]
fn upgrading_from_the_first_sql_edition_keeps_live_barriers_and_matches_a_fresh_install() {
    let mut admin = connect();
    install_released_script(&mut admin, "0.3.0-sql");
    let mut old = fresh_database(&mut admin, "barrier_upgrade_030_sql");
    old.batch_execute(
        "CREATE EXTENSION pg_barrier VERSION '0.3.0-sql';
         SELECT barrier_enqueue('sql-slotted', 3, '{\"next\": 3}');
         SELECT barrier_decr('sql-slotted', '\"s1\"', 1);
         SELECT barrier_enqueue('sql-plain', 2);
         SELECT barrier_decr('sql-plain', '\"p0\"');
         SELECT barrier_enqueue('sql-done', 1);
         SELECT barrier_decr('sql-done', '\"d0\"');
         SELECT barrier_enqueue('sql-aborted', 2);
         SELECT barrier_abort('sql-aborted', 'before the update');",
    )
    .unwrap();
    old.batch_execute(&format!(
        "ALTER EXTENSION pg_barrier UPDATE TO '{}'",
        version()
    ))
    .unwrap();
    decr(&mut old, "sql-slotted", Some(&json!("s0")), Some(0)).unwrap();
    let done = decr(&mut old, "sql-slotted", Some(&json!("s2")), Some(2)).unwrap();
    assert_eq!(
        (done.status.as_str(), done.results),
        ("complete", Some(json!(["s0", "s1", "s2"])))
    );
    let done = decr(&mut old, "sql-plain", Some(&json!("p1")), None).unwrap();
    assert_eq!(done.results, Some(json!(["p0", "p1"])));
    let taken: String = old
        .query_one("SELECT results::text FROM barrier_take('sql-done')", &[])
        .unwrap()
        .get(0);
    assert_eq!(taken, r#"["d0"]"#);
    assert_eq!(
        decr(&mut old, "sql-aborted", None, None).unwrap().status,
        "aborted"
    );
    assert_same_catalog(&mut admin, &mut old, "barrier_fresh_030_sql");
}

#[test]
fn a_dump_restored_into_a_new_database_resumes_its_barriers() {
    let mut admin = connect();
    let mut source = fresh_database(&mut admin, "barrier_dump_source");
    source.batch_execute(&create_extension()).unwrap();
    source
        .batch_execute(
            "SELECT barrier_enqueue('dump-live', 3, '{\"next\": \"publish\"}', channel => 'dumped');
             SELECT barrier_decr('dump-live', '{\"part\": 0}', 0);
             SELECT barrier_decr('dump-live', '{\"part\": 2}', 2);
             SELECT barrier_enqueue('dump-done', 1);
             SELECT barrier_decr('dump-done', '\"kept\"');",
        )
        .unwrap();
    let mut target = fresh_database(&mut admin, "barrier_dump_target");
    // A dump names the extension, not its version, and a restore creates the default version
    // (here, the Rust build's). The SQL edition is installed first, as pg_tle or a managed
    // service would have it; the restore then finds it and loads the state into its tables.
    if crate::support::edition() == crate::support::Edition::Sql {
        target.batch_execute(&create_extension()).unwrap();
    }
    drop(target);
    dump_into("barrier_dump_source", "barrier_dump_target");

    let user = pgrx_tests::get_pg_user();
    let mut target = connect_as(&user, "barrier_dump_target");
    let restored: String = target
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(restored, version());
    let row = target
        .query_one(
            "SELECT status, remaining, channel FROM barrier_status('dump-live')",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2)
        ),
        ("pending".into(), 1, "dumped".into())
    );
    assert_eq!(
        decr(&mut target, "dump-live", None, Some(2))
            .unwrap()
            .status,
        "duplicate"
    );
    let done = decr(&mut target, "dump-live", Some(&json!({"part": 1})), Some(1)).unwrap();
    assert_eq!(done.status, "complete");
    assert_eq!(
        done.results,
        Some(json!([{"part": 0}, {"part": 1}, {"part": 2}]))
    );
    let kept: String = target
        .query_one("SELECT results::text FROM barrier_take('dump-done')", &[])
        .unwrap()
        .get(0);
    assert_eq!(kept, r#"["kept"]"#);
}
