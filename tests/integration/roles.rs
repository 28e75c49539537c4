//! Installing as a database owner who is not a superuser, and what other roles cannot do.

use postgres::Client;

use crate::support::{
    connect, connect_as, create_extension, database, decr, edition, fresh_database, sqlstate,
    stored, Edition,
};

const DATABASE: &str = "barrier_trusted";

/// A database owned by a plain role that installed pg_barrier itself, plus a second plain role.
fn trusted_install() -> (Client, Client) {
    let mut admin = connect();
    admin
        .batch_execute("CREATE ROLE app_owner LOGIN; CREATE ROLE other_app LOGIN")
        .unwrap();
    // CREATE DATABASE must be a statement of its own (no implicit transaction block).
    admin
        .batch_execute("CREATE DATABASE barrier_trusted OWNER app_owner")
        .unwrap();
    let mut owner = connect_as("app_owner", DATABASE);
    let superuser: bool = owner
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(!superuser);
    owner.batch_execute(&create_extension()).unwrap();
    (owner, connect_as("other_app", DATABASE))
}

#[test]
fn a_database_owner_installs_it_and_other_roles_are_refused() {
    let (mut owner, mut other) = trusted_install();
    owner
        .execute("SELECT barrier_enqueue('mine', 2, '{\"fn\": \"x\"}')", &[])
        .unwrap();
    assert_eq!(
        decr(&mut owner, "mine", None, Some(0)).unwrap().status,
        "pending"
    );

    for statement in [
        "SELECT barrier_decr('mine', NULL, 1)",
        "SELECT barrier_abort('mine')",
        "SELECT * FROM barrier_status('mine')",
        "SELECT barrier_results('mine')",
        "SELECT barrier_enqueue('mine', 2, '{\"fn\": \"x\"}')",
        "SELECT barrier_enqueue('mine', 1, replace => true)",
        "SELECT barrier_add('mine', 1)",
        "SELECT * FROM barrier_take('mine')",
        "SELECT * FROM barrier_internal.barrier",
        "SELECT * FROM barrier_internal.barrier_spec",
        "SELECT * FROM barrier_internal.result",
        "DELETE FROM barrier_internal.barrier_spec",
        "TRUNCATE barrier_internal.result",
        "UPDATE barrier_internal.barrier SET remaining = 0",
        "INSERT INTO barrier_internal.result VALUES ('mine', 1, '1')",
    ] {
        let error = other.batch_execute(statement).expect_err(statement);
        assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
    }
    // Not even the database owner can reach the state tables around the API.
    for statement in [
        "SELECT * FROM barrier_internal.barrier",
        "DELETE FROM barrier_internal.result",
        "ALTER TABLE barrier_internal.barrier DISABLE TRIGGER ALL",
        "CREATE TABLE barrier_internal.planted (x int)",
    ] {
        let error = owner.batch_execute(statement).expect_err(statement);
        assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
    }
    // The barrier is untouched and completes for its owner.
    let answer = decr(&mut owner, "mine", None, Some(1)).unwrap();
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.results, Some(serde_json::json!([null, null])));
    // Completed, it is still not the other role's to take, claim or count.
    let error = other
        .batch_execute("SELECT * FROM barrier_take('mine')")
        .expect_err("take of another role's completion");
    assert_eq!(sqlstate(&error), "42501", "{error}");
    let claimed = other
        .query("SELECT id FROM barrier_completions()", &[])
        .unwrap();
    assert!(
        claimed.is_empty(),
        "another role's completion was handed out"
    );
    let seen: i64 = other
        .query_one("SELECT complete FROM barrier_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    let taken = owner
        .query("SELECT results::text FROM barrier_take('mine')", &[])
        .unwrap();
    assert_eq!(taken.len(), 1, "the owner still takes it");
    // A caught error, whether ours (42501) or PostgreSQL's from inside our SQL (25006), leaves
    // the session as the calling role: no privilege of the tables' owner leaks out.
    other
        .execute("SELECT barrier_enqueue('caught', 2)", &[])
        .unwrap();
    other
        .batch_execute(
            "DO $$ BEGIN PERFORM barrier_decr('mine', NULL, 0);
                   EXCEPTION WHEN insufficient_privilege THEN NULL; END $$;
             BEGIN READ ONLY;
             DO $$ BEGIN PERFORM barrier_decr('caught');
                   RAISE EXCEPTION 'a report was accepted in a read-only transaction';
                   EXCEPTION WHEN read_only_sql_transaction THEN NULL; END $$;",
        )
        .unwrap();
    let row = other
        .query_one("SELECT current_user::text, session_user::text", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("other_app".into(), "other_app".into())
    );
    let error = other
        .batch_execute("SAVEPOINT s; SELECT * FROM barrier_internal.barrier")
        .expect_err("tables stay private after a caught error");
    assert_eq!(sqlstate(&error), "42501", "{error}");
    other.batch_execute("ROLLBACK").unwrap();
    let remaining: i32 = other
        .query_one("SELECT remaining FROM barrier_status('caught')", &[])
        .unwrap()
        .get(0);
    assert_eq!(remaining, 2);

    // The other role keeps its own barriers.
    other
        .execute("SELECT barrier_enqueue('theirs', 1)", &[])
        .unwrap();
    assert_eq!(
        decr(&mut other, "theirs", None, None).unwrap().status,
        "complete"
    );
}

/// Look-alikes of the functions and operators the API's SQL uses, in schema `shadow`. Each one
/// records that it ran (and as whom) in `shadow.calls`, then returns something plausible, so a
/// hijack shows up even where it would not break the answer.
const SHADOWS: &str = r#"
    CREATE TABLE shadow.calls (what text, by_role text);
    GRANT INSERT ON shadow.calls TO PUBLIC;
    CREATE FUNCTION shadow.record(what text) RETURNS void LANGUAGE sql
        AS 'INSERT INTO shadow.calls VALUES (what, current_user)';
    CREATE FUNCTION shadow.text_eq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('text ='); RETURN a OPERATOR(pg_catalog.=) b; END $$;
    CREATE OPERATOR shadow.= (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow.text_eq);
    CREATE FUNCTION shadow.int_eq(a int, b int) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('int ='); RETURN a OPERATOR(pg_catalog.=) b; END $$;
    CREATE OPERATOR shadow.= (LEFTARG = int, RIGHTARG = int, FUNCTION = shadow.int_eq);
    CREATE FUNCTION shadow.int_minus(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('int -'); RETURN a OPERATOR(pg_catalog.-) b; END $$;
    CREATE OPERATOR shadow.- (LEFTARG = int, RIGHTARG = int, FUNCTION = shadow.int_minus);
    CREATE FUNCTION shadow.int_plus(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('int +'); RETURN a OPERATOR(pg_catalog.+) b; END $$;
    CREATE OPERATOR shadow.+ (LEFTARG = int, RIGHTARG = int, FUNCTION = shadow.int_plus);
    CREATE FUNCTION shadow.ts_le(a timestamptz, b timestamptz) RETURNS boolean
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('timestamptz <='); RETURN a OPERATOR(pg_catalog.<=) b; END $$;
    CREATE OPERATOR shadow.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz,
                               FUNCTION = shadow.ts_le);
    CREATE FUNCTION shadow.ts_plus(a timestamptz, b interval) RETURNS timestamptz
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('timestamptz +'); RETURN a OPERATOR(pg_catalog.+) b; END $$;
    CREATE OPERATOR shadow.+ (LEFTARG = timestamptz, RIGHTARG = interval,
                              FUNCTION = shadow.ts_plus);
    CREATE FUNCTION shadow.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('now'); RETURN pg_catalog.now(); END $$;
    CREATE FUNCTION shadow.statement_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('statement_timestamp');
              RETURN pg_catalog.statement_timestamp(); END $$;
    CREATE FUNCTION shadow.pg_notify(channel text, payload text) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('pg_notify'); PERFORM pg_catalog.pg_notify(channel, payload);
        END $$;
    CREATE FUNCTION shadow.json_build_object(VARIADIC parts text[]) RETURNS json
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('json_build_object'); RETURN '{}'; END $$;
    CREATE FUNCTION shadow.jsonb_build_array(VARIADIC parts text[]) RETURNS jsonb
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('jsonb_build_array'); RETURN '[]'; END $$;
    CREATE FUNCTION shadow.agg_step(state jsonb, value jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('jsonb_agg'); RETURN '[]'; END $$;
    CREATE AGGREGATE shadow.jsonb_agg(jsonb) (SFUNC = shadow.agg_step, STYPE = jsonb);
    CREATE FUNCTION shadow.array_step(state jsonb, value jsonb) RETURNS jsonb
        LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('array_agg'); RETURN '[]'; END $$;
    CREATE AGGREGATE shadow.array_agg(jsonb) (SFUNC = shadow.array_step, STYPE = jsonb);
    CREATE FUNCTION shadow.count_step(state bigint) RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('count'); RETURN 0; END $$;
    CREATE AGGREGATE shadow.count(*) (SFUNC = shadow.count_step, STYPE = bigint);
    CREATE FUNCTION shadow.octet_length(value text) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('octet_length'); RETURN 0; END $$;
    CREATE FUNCTION shadow.pg_column_size(value jsonb) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN PERFORM shadow.record('pg_column_size'); RETURN 0; END $$;
    CREATE TABLE shadow.barrier (id text);
    CREATE TABLE shadow.result (barrier_id text);
"#;

/// One unqualified use of each shadow, with the name it records: run with the shadows first on
/// the path, each must reach its shadow, or the shadow proves nothing.
const SHADOWED: [(&str, &str); 16] = [
    ("text =", "SELECT 'a'::text = 'b'::text"),
    ("int =", "SELECT 1 = 2"),
    ("int -", "SELECT 1 - 2"),
    ("int +", "SELECT 1 + 2"),
    (
        "timestamptz <=",
        "SELECT pg_catalog.now() <= pg_catalog.now()",
    ),
    ("timestamptz +", "SELECT pg_catalog.now() + '1 s'::interval"),
    ("now", "SELECT now()"),
    ("statement_timestamp", "SELECT statement_timestamp()"),
    (
        "pg_notify",
        "SELECT pg_notify('shadow_probe'::text, 'x'::text)",
    ),
    (
        "json_build_object",
        "SELECT json_build_object('a'::text, 'b'::text)",
    ),
    ("jsonb_build_array", "SELECT jsonb_build_array('a'::text)"),
    (
        "jsonb_agg",
        "SELECT jsonb_agg(x) FROM (VALUES ('1'::jsonb)) v(x)",
    ),
    (
        "array_agg",
        "SELECT array_agg(x) FROM (VALUES ('1'::jsonb)) v(x)",
    ),
    ("count", "SELECT count(*) FROM (VALUES (1)) v(x)"),
    ("octet_length", "SELECT octet_length('a'::text)"),
    ("pg_column_size", "SELECT pg_column_size('1'::jsonb)"),
];

/// Each shadow in `schema` (first on `client`'s path) is reached by its unqualified use; the
/// record of these calls is then cleared.
fn assert_shadows_in_the_way(client: &mut Client, schema: &str) {
    for (what, probe) in SHADOWED {
        client.batch_execute(probe).unwrap();
        let recorded: bool = client
            .query_one(
                &format!(
                    "SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>) 0 FROM {schema}.calls
                      WHERE what OPERATOR(pg_catalog.=) $1"
                ),
                &[&what],
            )
            .unwrap()
            .get(0);
        assert!(recorded, "the shadow {what} is not in the way of: {probe}");
    }
    client
        .batch_execute(&format!("TRUNCATE {schema}.calls"))
        .unwrap();
}

/// What the shadows in `schema` recorded.
fn shadow_calls(client: &mut Client, schema: &str) -> Vec<String> {
    client
        .query(
            &format!("SELECT what || ' as ' || by_role FROM {schema}.calls"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn shadowing_objects_on_the_search_path_are_never_called() {
    let mut admin = connect();
    admin
        .batch_execute(
            "CREATE ROLE shadow_role LOGIN;
             CREATE SCHEMA shadow AUTHORIZATION shadow_role;",
        )
        .unwrap();
    let mut hostile = connect_as("shadow_role", database());
    hostile.batch_execute(SHADOWS).unwrap();
    hostile
        .batch_execute("SET search_path = shadow, pg_catalog, public")
        .unwrap();
    assert_shadows_in_the_way(&mut hostile, "shadow");

    // Every function of the API, with the shadows first on the path.
    let mut listener = connect();
    listener.batch_execute("LISTEN shadow_done").unwrap();
    hostile
        .execute(
            "SELECT barrier_enqueue('shadowed', 2, '{\"next\": 1}', '1 hour', 'shadow_done')",
            &[],
        )
        .unwrap();
    assert_eq!(
        decr(&mut hostile, "shadowed", Some(&"a".into()), Some(1))
            .unwrap()
            .status,
        "pending"
    );
    let added: i32 = hostile
        .query_one("SELECT barrier_add('shadowed', 1)", &[])
        .unwrap()
        .get(0);
    assert_eq!(added, 3);
    assert_eq!(
        decr(&mut hostile, "shadowed", Some(&"c".into()), Some(2))
            .unwrap()
            .status,
        "pending"
    );
    let answer = decr(&mut hostile, "shadowed", Some(&"b".into()), Some(0)).unwrap();
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.results, Some(serde_json::json!(["b", "a", "c"])));
    assert_eq!(
        stored(&mut hostile, "shadowed"),
        ("complete".into(), 0, Some("[\"b\", \"a\", \"c\"]".into()))
    );
    let completed: i64 = hostile
        .query_one("SELECT complete FROM barrier_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(completed, 1);
    let claimed = hostile
        .query(
            "SELECT id, results::text FROM barrier_completions('shadow_done')",
            &[],
        )
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].get::<_, String>(1), "[\"b\", \"a\", \"c\"]");
    hostile
        .batch_execute(
            "SELECT barrier_enqueue('shadowed-unslotted', 2);
             SELECT barrier_decr('shadowed-unslotted', '1');
             SELECT barrier_decr('shadowed-unslotted', '2');
             SELECT barrier_enqueue('shadowed-take', 1);
             SELECT barrier_decr('shadowed-take', '1', 0);
             SELECT barrier_take('shadowed-take');
             SELECT barrier_enqueue('shadowed-abort', 1);
             SELECT * FROM barrier_sweep();",
        )
        .unwrap();
    let aborted: String = hostile
        .query_one("SELECT barrier_abort('shadowed-abort')", &[])
        .unwrap()
        .get(0);
    assert_eq!(aborted, "aborted");
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(std::time::Duration::from_secs(2));
    let note = postgres::fallible_iterator::FallibleIterator::next(&mut iter)
        .unwrap()
        .expect("the completion notified through the real pg_notify");
    assert!(
        note.payload().contains("\"shadowed\""),
        "{}",
        note.payload()
    );

    let called = shadow_calls(&mut admin, "shadow");
    assert!(called.is_empty(), "hostile objects ran: {called:?}");
}

/// A database owner who is not a superuser installs pg_barrier (trusted) and gains nothing but
/// the API: the objects belong to the bootstrap superuser, none runs with its rights, and none
/// can be changed, granted or replaced by the installer.
#[test]
fn a_trusted_install_grants_its_installer_nothing_beyond_the_api() {
    let mut admin = connect();
    admin
        .batch_execute("CREATE ROLE plain_owner LOGIN")
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE barrier_plain_owner OWNER plain_owner")
        .unwrap();
    let mut owner = connect_as("plain_owner", "barrier_plain_owner");
    owner.batch_execute(&create_extension()).unwrap();
    let mut superuser = connect_as(&pgrx_tests::get_pg_user(), "barrier_plain_owner");
    // Who owns what the extension created, and whether anything runs as its owner.
    let owned_by_installer: i64 = superuser
        .query_one(
            "SELECT count(*) FROM pg_depend d
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_barrier'
               LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
               LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
               LEFT JOIN pg_namespace n
                      ON d.classid = 'pg_namespace'::regclass AND n.oid = d.objid
              WHERE d.deptype = 'e'
                AND 'plain_owner'::regrole IN (p.proowner, c.relowner, n.nspowner)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        owned_by_installer, 0,
        "the installer owns extension objects"
    );
    // Which functions run with their owner's rights (the bootstrap superuser's), and under
    // which settings.
    let functions = superuser
        .query(
            "SELECT p.oid::regprocedure::text, p.prosecdef,
                    coalesce(p.proconfig, '{}') = '{\"search_path=pg_catalog, pg_temp\"}',
                    p.pronamespace = 'barrier_internal'::regnamespace,
                    p.proconfig IS NULL,
                    has_function_privilege('public', p.oid, 'EXECUTE')
               FROM pg_proc p JOIN pg_depend d
                 ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_barrier'
              WHERE p.pronamespace::regnamespace::text <> 'tests' -- the test build's own",
            &[],
        )
        .unwrap();
    let mut definers: Vec<String> = functions
        .iter()
        .filter(|row| row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect();
    definers.sort();
    for row in &functions {
        let name: String = row.get(0);
        let (definer, pinned, helper, unset, public): (bool, bool, bool, bool, bool) =
            (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        if helper && !definer {
            // The SQL edition's helpers run inside the API's calls, under the path those pin,
            // as the API's caller, who must therefore be allowed to run them.
            assert!(unset, "{name}: a SET clause");
            assert!(public, "{name}: PUBLIC may not run it");
        } else {
            assert!(pinned, "{name} does not pin search_path alone");
        }
    }
    match edition() {
        Edition::Rust => assert_eq!(
            definers,
            Vec::<String>::new(),
            "a SECURITY DEFINER function would run as its owner"
        ),
        // The API is SECURITY INVOKER in both editions: a call acts as its caller. Only two
        // helpers of the SQL edition run as the tables' owner, each for one thing the caller's
        // privileges cannot do (checked above: they pin search_path).
        Edition::Sql => assert_eq!(
            definers,
            vec![
                "barrier_internal.barrier_exists(text)".to_string(),
                "barrier_internal.sweep_as_owner(integer)".to_string(),
            ],
            "exactly these run as the owner"
        ),
    }
    // Grants to anyone but the owner on the state (PUBLIC shows as `-`): none on the tables;
    // in the SQL edition, USAGE on the schema and its views, through which a role reaches the
    // rows it may act on (see a_role_reaches_only_its_own_rows_through_the_state_views).
    let granted: Vec<String> = superuser
        .query(
            "SELECT g.item FROM (
                 SELECT c.relname || ' ' || a.grantee::regrole::text || ' ' || a.privilege_type
                   FROM pg_class c,
                        aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                  WHERE c.relnamespace = 'barrier_internal'::regnamespace
                    AND a.grantee <> c.relowner
                 UNION ALL
                 SELECT n.nspname || ' ' || a.grantee::regrole::text || ' ' || a.privilege_type
                   FROM pg_namespace n, aclexplode(n.nspacl) a
                  WHERE n.nspname = 'barrier_internal' AND a.grantee <> n.nspowner
             ) AS g(item) ORDER BY g.item COLLATE \"C\"",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<String> = match edition() {
        Edition::Rust => vec![],
        Edition::Sql => {
            let mut expected = vec!["barrier_internal - USAGE".to_string()];
            for view in ["my_barrier", "my_barrier_spec", "my_result"] {
                for privilege in ["DELETE", "INSERT", "SELECT", "UPDATE"] {
                    expected.push(format!("{view} - {privilege}"));
                }
            }
            expected.sort();
            expected
        }
    };
    assert_eq!(
        granted, expected,
        "someone besides the owner has other rights on the state"
    );

    for statement in [
        "ALTER FUNCTION barrier_decr(text, jsonb, integer, boolean) SECURITY DEFINER",
        "ALTER FUNCTION barrier_decr(text, jsonb, integer, boolean) OWNER TO plain_owner",
        "ALTER FUNCTION barrier_status(text) SET search_path = public",
        "CREATE OR REPLACE FUNCTION barrier_results(id text) RETURNS jsonb
             LANGUAGE sql AS 'SELECT NULL::jsonb'",
        "GRANT SELECT ON barrier_internal.barrier TO plain_owner",
        "ALTER SCHEMA barrier_internal OWNER TO plain_owner",
        "CREATE FUNCTION barrier_internal.planted() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TRIGGER planted AFTER INSERT ON barrier_internal.result
             FOR EACH ROW EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()",
        "ALTER TABLE barrier_internal.result ADD COLUMN planted int",
        "TRUNCATE barrier_internal.result",
        "ALTER DATABASE barrier_plain_owner SET pg_barrier.retention = 0",
        "ALTER ROLE plain_owner SET pg_barrier.max_result_bytes = '1GB'",
        "SET ROLE postgres",
    ] {
        let error = owner.batch_execute(statement).expect_err(statement);
        assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
    }
    assert_superuser_settings_hold(&mut owner);
    // An extension's member cannot be dropped on its own, by anyone (2BP01, before privileges).
    let error = owner
        .batch_execute("DROP FUNCTION barrier_stats()")
        .expect_err("dropping a member");
    assert_eq!(sqlstate(&error), "2BP01", "{error}");
    // The API works for the installer, as for anyone.
    owner
        .execute("SELECT barrier_enqueue('owned', 1)", &[])
        .unwrap();
    assert_eq!(
        decr(&mut owner, "owned", None, Some(0)).unwrap().status,
        "complete"
    );
}

/// The settings only a superuser may change: `pg_barrier.retention` (a shorter one deletes other
/// roles' completions at the next sweep) and `pg_barrier.max_result_bytes` (it guards the
/// server). The Rust build defines them superuser-only, so a plain role's SET is refused. The
/// SQL edition cannot define settings: a plain role's SET succeeds, and must change nothing.
fn assert_superuser_settings_hold(plain: &mut Client) {
    let statements = [
        "SET pg_barrier.retention = 0",
        "SET pg_barrier.max_result_bytes = '1GB'",
    ];
    match edition() {
        Edition::Rust => {
            for statement in statements {
                let error = plain.batch_execute(statement).expect_err(statement);
                assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
            }
        }
        Edition::Sql => {
            plain
                .batch_execute(
                    "SELECT barrier_enqueue('kept-by-retention', 1);
                     SELECT barrier_decr('kept-by-retention', '1');",
                )
                .unwrap();
            for statement in statements {
                plain.batch_execute(statement).unwrap();
            }
            let (_, deleted): (i64, i64) = plain
                .query_one("SELECT * FROM barrier_sweep()", &[])
                .map(|row| (row.get(0), row.get(1)))
                .unwrap();
            assert_eq!(deleted, 0, "a plain role's retention deleted a completion");
            assert_eq!(stored(plain, "kept-by-retention").0, "complete");
            plain
                .batch_execute("SELECT barrier_enqueue('limited', 1)")
                .unwrap();
            let big = format!("\"{}\"", "x".repeat(2 << 20));
            let error = plain
                .query("SELECT barrier_decr('limited', $1::text::jsonb)", &[&big])
                .expect_err("a plain role's max_result_bytes let 2 MB through");
            assert_eq!(sqlstate(&error), "54000", "{error}");
            plain
                .batch_execute(
                    "RESET pg_barrier.retention; RESET pg_barrier.max_result_bytes;
                     SELECT barrier_abort('limited');",
                )
                .unwrap();
        }
    }
}

/// The classic way into a trusted extension: a database owner plants look-alikes in the schema
/// the extension installs into, where its install and update scripts run as the bootstrap
/// superuser with that schema on their path. None of them may run, at install, at update or in
/// use.
#[test]
fn objects_planted_before_install_and_update_never_run() {
    let mut admin = connect();
    admin.batch_execute("CREATE ROLE planter LOGIN").unwrap();
    admin
        .batch_execute("CREATE DATABASE barrier_planted OWNER planter")
        .unwrap();
    let mut planter = connect_as("planter", "barrier_planted");
    planter
        .batch_execute(&SHADOWS.replace("shadow.", "public."))
        .unwrap();
    // The shadows sit on the planter's default path, ahead of pg_catalog where it is explicit.
    planter
        .batch_execute("SET search_path = public, pg_catalog")
        .unwrap();
    assert_shadows_in_the_way(&mut planter, "public");
    planter.batch_execute("RESET search_path").unwrap();

    planter.batch_execute(&create_extension()).unwrap();
    let mut superuser = connect_as(&pgrx_tests::get_pg_user(), "barrier_planted");
    assert_eq!(shadow_calls(&mut superuser, "public"), Vec::<String>::new());
    // From the first release, through every update script (for the SQL edition, on to the
    // script that switches the Rust build to it).
    planter
        .batch_execute(&format!(
            "DROP EXTENSION pg_barrier;
             CREATE EXTENSION pg_barrier VERSION '0.1.0';
             ALTER EXTENSION pg_barrier UPDATE TO '{}';",
            crate::support::version()
        ))
        .unwrap();
    assert_eq!(shadow_calls(&mut superuser, "public"), Vec::<String>::new());

    // And in use, with the planted objects first on the path.
    planter
        .batch_execute(
            "SET search_path = public, pg_catalog;
             SELECT barrier_enqueue('planted', 2, '{\"next\": 1}');
             SELECT barrier_decr('planted', '\"a\"', 0);
             SELECT barrier_add('planted', 1);
             SELECT barrier_decr('planted', '\"b\"', 1);
             SELECT * FROM barrier_status('planted');
             SELECT barrier_results('planted');
             SELECT * FROM barrier_stats();",
        )
        .unwrap();
    let answer = decr(&mut planter, "planted", Some(&"c".into()), Some(2)).unwrap();
    assert_eq!(answer.results, Some(serde_json::json!(["a", "b", "c"])));
    planter
        .batch_execute(
            "SELECT * FROM barrier_take('planted');
             SELECT barrier_enqueue('planted-abort', 1);
             SELECT barrier_abort('planted-abort');
             SELECT * FROM barrier_completions();
             SELECT * FROM barrier_sweep();",
        )
        .unwrap();
    assert_eq!(shadow_calls(&mut superuser, "public"), Vec::<String>::new());
}

/// A session that SET ROLE to a role someone then renames keeps that role's identity: both
/// editions know the caller by its oid (the Rust build's current user, the SQL edition's
/// current_user and its views' pg_has_role). It gains no access to another role's barrier and
/// keeps its own.
#[test]
fn a_role_renamed_under_a_session_keeps_its_barriers_and_reaches_no_other() {
    let mut admin = connect();
    admin
        .batch_execute(
            "CREATE ROLE renamed_victim; CREATE ROLE renamed_attacker;
             GRANT renamed_attacker TO CURRENT_USER;",
        )
        .unwrap();
    admin
        .batch_execute(
            "SET ROLE renamed_victim; SELECT barrier_enqueue('victims', 2); RESET ROLE;
             SET ROLE renamed_attacker; SELECT barrier_enqueue('attackers', 2); RESET ROLE;",
        )
        .unwrap();
    let mut session = connect();
    session.batch_execute("SET ROLE renamed_attacker").unwrap();
    admin
        .batch_execute("ALTER ROLE renamed_attacker RENAME TO renamed_attacker_2")
        .unwrap();
    for statement in [
        "SELECT barrier_decr('victims', NULL)",
        "SELECT * FROM barrier_status('victims')",
        "SELECT barrier_abort('victims')",
        "SELECT barrier_enqueue('victims', 1, replace => true)",
    ] {
        let error = session.batch_execute(statement).expect_err(statement);
        assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
    }
    session
        .batch_execute("SELECT barrier_decr('attackers', NULL)")
        .unwrap();
    assert_eq!(
        stored(&mut admin, "attackers").1,
        1,
        "its own report counted"
    );
    let listed: i64 = session
        .query_one(
            "SELECT count(*) FROM barrier_completions() WHERE id = 'victims'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(listed, 0);
    assert_eq!(
        stored(&mut admin, "victims"),
        ("pending".into(), 2, Some("[]".into()))
    );
}

/// The attacker's objects for the test below: an index expression of its own table that calls
/// the API, behind a function it declares IMMUTABLE, and records in `deputy.loot` what each call
/// got (errors caught, so that the maintenance that evaluates it goes through). It tries the
/// victim's completion with barrier_take, then barrier_completions, then barrier_sweep after
/// setting the retention to 0 (which would delete every finished barrier).
const DEPUTY: &str = r#"
    CREATE TABLE deputy.loot (what text, got text);
    CREATE FUNCTION deputy.record(what text, got text) RETURNS void LANGUAGE sql VOLATILE
        AS $$ INSERT INTO deputy.loot VALUES (what, got) $$;
    CREATE FUNCTION deputy.steal(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
    DECLARE
        r record;
    BEGIN
        PERFORM deputy.record('ran', current_user || ' in a session of ' || session_user);
        BEGIN
            FOR r IN SELECT * FROM public.barrier_take('deputy-victim') LOOP
                PERFORM deputy.record('take', r.results::text);
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            PERFORM deputy.record('take refused', SQLSTATE);
        END;
        BEGIN
            FOR r IN SELECT * FROM public.barrier_completions() LOOP
                PERFORM deputy.record('completions', r.id || ' ' || r.results::text);
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            PERFORM deputy.record('completions refused', SQLSTATE);
        END;
        BEGIN
            PERFORM pg_catalog.set_config('pg_barrier.retention', '0', true);
            FOR r IN SELECT * FROM public.barrier_sweep() LOOP
                PERFORM deputy.record('sweep', r.deleted::text);
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            PERFORM deputy.record('sweep refused', SQLSTATE);
        END;
        RETURN x;
    END $$;
    CREATE TABLE deputy.bait (x int);
    INSERT INTO deputy.bait VALUES (1), (2);
    CREATE INDEX ON deputy.bait (deputy.steal(x));
"#;

/// A plain role hides calls of the API in an index expression of its own table. A superuser's
/// ANALYZE and REINDEX of that table evaluate it in the superuser's session, as the table's
/// owner (a security-restricted operation): the calls act for that owner, as everywhere, and
/// reach nothing of another role. (The SQL edition once took the caller from the session: the
/// attacker got the victim's completion, and its retention of 0 deleted it.)
#[test]
fn an_index_expression_run_by_a_superusers_analyze_acts_for_its_table_owner() {
    let mut admin = connect();
    let mut db = fresh_database(&mut admin, "barrier_deputy");
    db.batch_execute(&create_extension()).unwrap();
    db.batch_execute(
        "CREATE ROLE deputy_victim LOGIN; CREATE ROLE deputy_attacker LOGIN;
         CREATE SCHEMA deputy AUTHORIZATION deputy_attacker;",
    )
    .unwrap();
    let mut victim = connect_as("deputy_victim", "barrier_deputy");
    victim
        .batch_execute(
            "SELECT barrier_enqueue('deputy-victim', 1);
             SELECT barrier_decr('deputy-victim', '\"secret\"');",
        )
        .unwrap();
    let mut attacker = connect_as("deputy_attacker", "barrier_deputy");
    attacker.batch_execute(DEPUTY).unwrap();
    // CREATE INDEX evaluated the expression in the attacker's own session: start afresh.
    attacker.batch_execute("TRUNCATE deputy.loot").unwrap();

    db.batch_execute("ANALYZE deputy.bait; REINDEX TABLE deputy.bait;")
        .unwrap();
    let loot: Vec<(String, String)> = attacker
        .query("SELECT what, got FROM deputy.loot ORDER BY what, got", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    // The expression ran in the superuser's session, as its owner.
    let ran = (
        "ran".to_string(),
        format!(
            "deputy_attacker in a session of {}",
            pgrx_tests::get_pg_user()
        ),
    );
    assert!(
        loot.contains(&ran),
        "the maintenance never ran the expression: {loot:?}"
    );
    assert!(
        loot.contains(&("take refused".into(), "42501".into())),
        "{loot:?}"
    );
    for (what, got) in &loot {
        assert!(
            what != "take" && what != "completions" && !got.contains("secret"),
            "the attacker got hold of the victim's completion: {loot:?}"
        );
    }
    // The victim's completion is as it was, and still the victim's to take.
    assert_eq!(
        stored(&mut victim, "deputy-victim"),
        ("complete".into(), 0, Some("[\"secret\"]".into()))
    );
    let taken: String = victim
        .query_one(
            "SELECT results::text FROM barrier_take('deputy-victim')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(taken, "[\"secret\"]");
}

/// The SQL edition's views show a role the rows of its own barriers only. Another role's rows
/// it neither reads nor changes (zero rows), and it cannot create a barrier for another role
/// (44000, the views' check option), nor move a row into another role's barrier or add a result
/// or spec to it (42501, the tables' triggers). Its own rows it may change by hand: then the API's guarantees for that barrier
/// are its own business. The tables stay closed in both editions; the Rust build has no views
/// and keeps the schema closed.
#[test]
fn a_role_reaches_only_its_own_rows_through_the_state_views() {
    let mut admin = connect();
    let mut db = fresh_database(&mut admin, "barrier_views");
    db.batch_execute(&create_extension()).unwrap();
    db.batch_execute("CREATE ROLE views_mine LOGIN; CREATE ROLE views_theirs LOGIN")
        .unwrap();
    let mut theirs = connect_as("views_theirs", "barrier_views");
    theirs
        .batch_execute(
            "SELECT barrier_enqueue('views-theirs', 2, '{\"theirs\": 1}');
             SELECT barrier_decr('views-theirs', '\"t0\"', 0);",
        )
        .unwrap();
    let mut mine = connect_as("views_mine", "barrier_views");
    mine.batch_execute(
        "SELECT barrier_enqueue('views-mine', 2);
         SELECT barrier_decr('views-mine', '\"m0\"', 0);",
    )
    .unwrap();
    for statement in [
        "SELECT * FROM barrier_internal.barrier",
        "SELECT * FROM barrier_internal.result",
        "UPDATE barrier_internal.barrier_spec SET callback = NULL",
        "DELETE FROM barrier_internal.barrier",
        "TRUNCATE barrier_internal.result",
        "CREATE TABLE barrier_internal.planted (x int)",
    ] {
        let error = mine.batch_execute(statement).expect_err(statement);
        assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
    }
    match edition() {
        Edition::Rust => {
            let row = mine
                .query_one(
                    "SELECT has_schema_privilege('barrier_internal', 'USAGE'),
                            (SELECT count(*) FROM pg_class
                              WHERE relnamespace = 'barrier_internal'::regnamespace
                                AND relkind = 'v')",
                    &[],
                )
                .unwrap();
            assert!(!row.get::<_, bool>(0), "the schema is open");
            assert_eq!(row.get::<_, i64>(1), 0, "the Rust build has views");
        }
        Edition::Sql => {
            let rows = |client: &mut Client, sql: &str| -> Vec<String> {
                client
                    .query(sql, &[])
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect()
            };
            assert_eq!(
                rows(&mut mine, "SELECT id FROM barrier_internal.my_barrier"),
                ["views-mine"]
            );
            assert_eq!(
                rows(&mut mine, "SELECT id FROM barrier_internal.my_barrier_spec"),
                ["views-mine"]
            );
            assert_eq!(
                rows(
                    &mut mine,
                    "SELECT barrier_id || '/' || slot || '=' || result FROM barrier_internal.my_result"
                ),
                ["views-mine/0=\"m0\""]
            );
            // A superuser may act on every barrier, so it sees both.
            assert_eq!(
                rows(
                    &mut db,
                    "SELECT id FROM barrier_internal.my_barrier ORDER BY id"
                ),
                ["views-mine", "views-theirs"]
            );
            for statement in [
                "UPDATE barrier_internal.my_barrier SET remaining = 0 WHERE id = 'views-theirs'",
                "DELETE FROM barrier_internal.my_barrier WHERE id = 'views-theirs'",
                "UPDATE barrier_internal.my_barrier_spec SET callback = '1' WHERE id = 'views-theirs'",
                "DELETE FROM barrier_internal.my_barrier_spec WHERE id = 'views-theirs'",
                "UPDATE barrier_internal.my_result SET result = '1' WHERE barrier_id = 'views-theirs'",
                "DELETE FROM barrier_internal.my_result WHERE barrier_id = 'views-theirs'",
            ] {
                let changed = mine.execute(statement, &[]).unwrap();
                assert_eq!(changed, 0, "{statement}");
            }
            for statement in [
                "INSERT INTO barrier_internal.my_barrier
                     (id, round, owner, status, expected, remaining, created_at, expires_at)
                 VALUES ('views-forged', 1, 'views_theirs', 'pending', 1, 1, now(),
                         now() + interval '1 hour')",
                "UPDATE barrier_internal.my_barrier SET owner = 'views_theirs'
                  WHERE id = 'views-mine'",
            ] {
                let error = mine.batch_execute(statement).expect_err(statement);
                assert_eq!(sqlstate(&error), "44000", "{statement}: {error}");
            }
            // Results and specs are checked before they are written, against the barrier's
            // newest row: refused alike whether the slot has reported (no unique violation
            // tells) or not, or the barrier exists at all.
            for statement in [
                "INSERT INTO barrier_internal.my_result VALUES ('views-theirs', 1, '\"forged\"')",
                "INSERT INTO barrier_internal.my_result VALUES ('views-theirs', 0, '\"forged\"')",
                "INSERT INTO barrier_internal.my_result VALUES ('views-theirs', 0, '\"forged\"')
                     ON CONFLICT DO NOTHING",
                "UPDATE barrier_internal.my_result SET barrier_id = 'views-theirs', slot = 1
                  WHERE barrier_id = 'views-mine'",
                "INSERT INTO barrier_internal.my_barrier_spec (id, channel, ttl)
                 VALUES ('views-nobody', 'x', '1 hour')",
                "INSERT INTO barrier_internal.my_barrier_spec (id, channel, ttl)
                 VALUES ('views-theirs', 'x', '1 hour')",
            ] {
                let error = mine.batch_execute(statement).expect_err(statement);
                assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
            }
            // Its own rows are its own to change.
            let changed = mine
                .execute(
                    "UPDATE barrier_internal.my_barrier_spec SET callback = '{\"by\": \"hand\"}'
                      WHERE id = 'views-mine'",
                    &[],
                )
                .unwrap();
            assert_eq!(changed, 1);
        }
    }
    // The other role's barrier is as it left it, and completes for it.
    let callback: String = theirs
        .query_one(
            "SELECT callback::text FROM barrier_status('views-theirs')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(callback, "{\"theirs\": 1}");
    let answer = decr(&mut theirs, "views-theirs", Some(&"t1".into()), Some(1)).unwrap();
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.results, Some(serde_json::json!(["t0", "t1"])));
}

/// Rows a role writes by hand through the SQL edition's views, with any content the tables'
/// constraints allow, break none of the calls that reach every role's barriers: a superuser's
/// barrier_stats, barrier_completions and barrier_sweep (with a retention of 0), and any role's
/// barrier_sweep. Rows it leaves under an id it gave up do not pass to the next role that
/// enqueues that id. (The Rust build's tables admit no such rows: see the test above.)
#[test]
fn a_role_s_hand_written_rows_break_no_superuser_maintenance() {
    let mut admin = connect();
    let mut db = fresh_database(&mut admin, "barrier_hand_written");
    db.batch_execute(&create_extension()).unwrap();
    db.batch_execute("CREATE ROLE hand_writer LOGIN; CREATE ROLE hand_heir LOGIN")
        .unwrap();
    let mut writer = connect_as("hand_writer", "barrier_hand_written");
    if edition() == Edition::Rust {
        // The Rust build has no views: a role cannot write a row by hand at all.
        let error = writer
            .batch_execute(
                "INSERT INTO barrier_internal.barrier
                        (id, round, owner, status, expected, remaining, created_at, expires_at)
                 VALUES ('hand', 1, 'hand_writer', 'pending', 1, 1, now(), now())",
            )
            .unwrap_err();
        assert_eq!(sqlstate(&error), "42501");
        drop(writer);
        drop(db);
        admin
            .batch_execute("DROP DATABASE barrier_hand_written WITH (FORCE)")
            .unwrap();
        admin
            .batch_execute("DROP ROLE hand_writer; DROP ROLE hand_heir;")
            .unwrap();
        return;
    }
    writer
        .batch_execute(
            r#"
            -- Due for expiry: without a spec; with channels pg_notify refuses; with a long id.
            INSERT INTO barrier_internal.my_barrier
                   (id, round, owner, status, expected, remaining, created_at, expires_at)
            VALUES ('hand-no-spec', 1, 'hand_writer', 'pending', 1, 1, '-infinity',
                    now() - interval '1 s'),
                   ('hand-empty-channel', 1, 'hand_writer', 'pending', 1, 1, now(),
                    now() - interval '1 s'),
                   ('hand-long-channel', 1, 'hand_writer', 'pending', 1, 1, now(),
                    now() - interval '1 s'),
                   (repeat('i', 10000), 1, 'hand_writer', 'pending', 1, 1, now(),
                    now() - interval '1 s');
            INSERT INTO barrier_internal.my_barrier_spec (id, channel, ttl)
            VALUES ('hand-empty-channel', '', '1 hour'),
                   ('hand-long-channel', repeat('c', 100), '1 hour'),
                   (repeat('i', 10000), 'hand', '1 hour');
            -- Stall windows whose end lies outside the timestamp range, and one stalled.
            INSERT INTO barrier_internal.my_barrier
                   (id, round, owner, status, expected, remaining, created_at, expires_at,
                    progress_at)
            VALUES ('hand-stall-late', 1, 'hand_writer', 'pending', 1, 1, 'infinity', 'infinity',
                    '294000-01-01'),
                   ('hand-stall-huge', 1, 'hand_writer', 'pending', 1, 1, now(), 'infinity',
                    '4000-01-01 BC'),
                   ('hand-stall-negative', 1, 'hand_writer', 'pending', 1, 1, now(), 'infinity',
                    '4700-01-01 BC'),
                   ('hand-stalled', 1, 'hand_writer', 'pending', 1, 1, now(), 'infinity',
                    now() - interval '2 hours');
            INSERT INTO barrier_internal.my_barrier_spec (id, channel, ttl, stall_timeout)
            VALUES ('hand-stall-late', 'hand', '1 hour', '1 day'),
                   ('hand-stall-huge', 'hand', '1 hour', '170000000 years'),
                   ('hand-stall-negative', 'hand', '1 hour', '-100000 years 36500000 days'),
                   ('hand-stalled', 'hand', '1 hour', '1 hour');
            -- Completed and untaken: without a spec; with one, a result and byte counts that
            -- overflow a sum.
            INSERT INTO barrier_internal.my_barrier
                   (id, round, owner, status, expected, remaining, created_at, expires_at,
                    finished_at, result_bytes)
            VALUES ('hand-done-no-spec', 1, 'hand_writer', 'complete', 0, 0, now(), now(),
                    now(), 9000000000000000000),
                   ('hand-done', 1, 'hand_writer', 'complete', 1, 0, now(), now(), now(),
                    9000000000000000000);
            INSERT INTO barrier_internal.my_barrier_spec (id, channel, ttl)
            VALUES ('hand-done', 'hand', '1 hour');
            INSERT INTO barrier_internal.my_result VALUES ('hand-done', 0, '"by hand"');
            -- A spec and results left under an id whose barrier is gone.
            INSERT INTO barrier_internal.my_barrier
                   (id, round, owner, status, expected, remaining, created_at, expires_at)
            VALUES ('hand-given-up', 1, 'hand_writer', 'pending', 2, 2, now(),
                    now() + interval '1 hour');
            INSERT INTO barrier_internal.my_barrier_spec (id, channel, ttl, callback)
            VALUES ('hand-given-up', 'hand', '1 hour', '"planted"');
            INSERT INTO barrier_internal.my_result
            VALUES ('hand-given-up', 0, '"planted"'), ('hand-given-up', 1, '"planted"');
            DELETE FROM barrier_internal.my_barrier WHERE id = 'hand-given-up';
            "#,
        )
        .unwrap();

    // Any role's sweep (here the writer's own, which reaches every barrier as the tables'
    // owner would) goes through.
    writer
        .batch_execute("SELECT * FROM barrier_sweep()")
        .unwrap();
    // A superuser's calls reach them all and go through.
    let bytes: i64 = db
        .query_one("SELECT result_bytes FROM barrier_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(bytes, i64::MAX);
    let claimed: Vec<String> = db
        .query(
            "SELECT id || ' ' || results::text FROM barrier_completions()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(claimed, ["hand-done [\"by hand\"]"]);
    db.batch_execute("SET pg_barrier.retention = 0; SELECT * FROM barrier_sweep();")
        .unwrap();
    let left: Vec<String> = db
        .query(
            "SELECT id || ' ' || status FROM barrier_internal.barrier ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        left,
        [
            "hand-stall-huge pending",
            "hand-stall-late pending",
            "hand-stall-negative pending"
        ],
        "the due barriers expired, and the finished ones were deleted"
    );
    db.batch_execute("SELECT * FROM barrier_stats(); SELECT * FROM barrier_completions();")
        .unwrap();

    // The next role to enqueue the given-up id starts with nothing of what was left there.
    let mut heir = connect_as("hand_heir", "barrier_hand_written");
    heir.batch_execute("SELECT barrier_enqueue('hand-given-up', 2)")
        .unwrap();
    let row = heir
        .query_one(
            "SELECT barrier_results('hand-given-up')::text,
                    (SELECT callback::text FROM barrier_status('hand-given-up'))",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1)),
        ("[]".into(), None)
    );
    decr(&mut heir, "hand-given-up", Some(&"h0".into()), Some(0)).unwrap();
    let answer = decr(&mut heir, "hand-given-up", Some(&"h1".into()), Some(1)).unwrap();
    assert_eq!(answer.results, Some(serde_json::json!(["h0", "h1"])));

    // Rows the Rust build's calls would fail on, written just before a switch to it: due at
    // once, without a spec, with a channel LISTEN cannot name, with an id the API refuses.
    writer
        .batch_execute(
            "INSERT INTO barrier_internal.my_barrier
                    (id, round, owner, status, expected, remaining, created_at, expires_at)
             VALUES ('switch-no-spec', 1, 'hand_writer', 'pending', 1, 1, '-infinity',
                     '-infinity'),
                    ('switch-bad-channel', 1, 'hand_writer', 'pending', 1, 1, now(),
                     '-infinity'),
                    (repeat('j', 600), 1, 'hand_writer', 'pending', 1, 1, now(), '-infinity');
             INSERT INTO barrier_internal.my_barrier_spec (id, channel, ttl)
             VALUES ('switch-bad-channel', 'Not A Channel', '1 hour'),
                    (repeat('j', 600), 'hand', '1 hour');",
        )
        .unwrap();
    db.batch_execute(&format!(
        "ALTER EXTENSION pg_barrier UPDATE TO '{}'",
        env!("CARGO_PKG_VERSION")
    ))
    .unwrap();
    // Switched to the Rust build, every role's calls go through.
    let expired: i64 = db
        .query_one("SELECT expired FROM barrier_sweep()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        expired, 2,
        "the two due barriers with acceptable ids expire"
    );
    db.batch_execute("SELECT * FROM barrier_stats(); SELECT * FROM barrier_completions();")
        .unwrap();
    let long_ids: i64 = db
        .query_one(
            "SELECT count(*) FROM barrier_internal.barrier WHERE octet_length(id) > 512",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(long_ids, 0);
}

/// A role that holds an old snapshot (REPEATABLE READ), in which an id is still its own, cannot
/// add a result to the barrier another role has since enqueued under that id: the write is
/// checked against the barrier's newest row, not the snapshot (40001 there; 42501 for a fresh
/// snapshot). The other role's barrier counts its own reports only. In the Rust build no role
/// writes the tables at all.
#[test]
fn an_old_snapshot_cannot_write_into_a_barrier_now_another_role_s() {
    let mut admin = connect();
    let mut db = fresh_database(&mut admin, "barrier_stale");
    db.batch_execute(&create_extension()).unwrap();
    db.batch_execute("CREATE ROLE stale_first LOGIN; CREATE ROLE stale_next LOGIN")
        .unwrap();
    let mut first = connect_as("stale_first", "barrier_stale");
    first
        .batch_execute("SELECT barrier_enqueue('reused', 2)")
        .unwrap();
    let mut holder_session = connect_as("stale_first", "barrier_stale");
    let mut holder = holder_session
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    holder
        .query_one("SELECT count(*) FROM barrier_status('reused')", &[])
        .unwrap();
    let poison = "INSERT INTO barrier_internal.my_result VALUES ('reused', 0, '\"poison\"')";
    match edition() {
        Edition::Rust => {
            let error = holder
                .batch_execute("INSERT INTO barrier_internal.result VALUES ('reused', 0, '1')")
                .unwrap_err();
            assert_eq!(sqlstate(&error), "42501");
        }
        Edition::Sql => {
            // The first role gives the id up by hand; the next one enqueues it.
            first
                .batch_execute("DELETE FROM barrier_internal.my_barrier WHERE id = 'reused'")
                .unwrap();
            let mut next = connect_as("stale_next", "barrier_stale");
            next.batch_execute("SELECT barrier_enqueue('reused', 2)")
                .unwrap();
            let error = holder.batch_execute(poison).unwrap_err();
            assert_eq!(sqlstate(&error), "40001", "{error}");
            let error = first.batch_execute(poison).unwrap_err();
            assert_eq!(sqlstate(&error), "42501", "{error}");
            let answer = decr(&mut next, "reused", Some(&"n0".into()), Some(0)).unwrap();
            assert_eq!(
                (answer.status.as_str(), answer.remaining),
                ("pending", Some(1))
            );
            let answer = decr(&mut next, "reused", Some(&"n1".into()), Some(1)).unwrap();
            assert_eq!(answer.results, Some(serde_json::json!(["n0", "n1"])));
        }
    }
    drop(holder);
    drop(holder_session);
    drop(first);
    drop(db);
    admin
        .batch_execute("DROP DATABASE barrier_stale WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute("DROP ROLE stale_first; DROP ROLE stale_next")
        .unwrap();
}
