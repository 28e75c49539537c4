//! Installing as a database owner who is not a superuser, and what other roles cannot do.

use postgres::Client;

use crate::support::{
    connect, connect_as, create_extension, database, decr, edition, sqlstate, stored, Edition,
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
                    p.proconfig IS NULL AND NOT has_function_privilege('public', p.oid, 'EXECUTE')
               FROM pg_proc p JOIN pg_depend d
                 ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_barrier'
              WHERE p.pronamespace::regnamespace::text <> 'tests' -- the test build's own",
            &[],
        )
        .unwrap();
    let definers: Vec<String> = functions
        .iter()
        .filter(|row| row.get::<_, bool>(1))
        .map(|row| row.get(0))
        .collect();
    for row in &functions {
        let name: String = row.get(0);
        if row.get::<_, bool>(3) {
            // The SQL edition's helpers run only inside the API's calls, under the path those
            // pin; nobody else may run them.
            assert!(
                row.get::<_, bool>(4),
                "{name}: a SET clause, or PUBLIC may run it"
            );
        } else {
            assert!(
                row.get::<_, bool>(2),
                "{name} does not pin search_path alone"
            );
        }
    }
    match edition() {
        Edition::Rust => assert_eq!(
            definers,
            Vec::<String>::new(),
            "a SECURITY DEFINER function would run as its owner"
        ),
        // PL/pgSQL cannot switch roles inside a function: the API is SECURITY DEFINER (and
        // pins search_path, checked above), its helpers are not, and the installer owns none
        // of them (checked above).
        Edition::Sql => {
            let api: Vec<String> = functions
                .iter()
                .map(|row| row.get::<_, String>(0))
                .filter(|name| {
                    name.starts_with("barrier_") && !name.starts_with("barrier_internal")
                })
                .collect();
            assert_eq!(api.len(), 10, "{api:?}");
            let mut definers = definers;
            definers.sort();
            let mut api = api;
            api.sort();
            assert_eq!(definers, api, "exactly the API runs as the owner");
        }
    }
    let public_grants: i64 = superuser
        .query_one(
            "SELECT count(*) FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
              WHERE c.relnamespace = 'barrier_internal'::regnamespace
                AND a.grantee <> c.relowner",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        public_grants, 0,
        "someone besides the owner has rights on the state"
    );

    for statement in [
        "ALTER FUNCTION barrier_decr(text, jsonb, integer) SECURITY DEFINER",
        "ALTER FUNCTION barrier_decr(text, jsonb, integer) OWNER TO plain_owner",
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

/// A session that SET ROLE to a role someone then renames or drops keeps that role's identity
/// (the Rust build sees its oid) or, in the SQL edition, which knows the role only by the name
/// it was set with, none at all. Either way it gains no access to another role's barrier, and
/// the SQL edition refuses even its own.
#[test]
fn a_role_renamed_or_dropped_under_a_session_reaches_no_other_barrier() {
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
    let own = session.batch_execute("SELECT barrier_decr('attackers', NULL)");
    match edition() {
        Edition::Rust => own.unwrap(),
        Edition::Sql => {
            let error = own.expect_err("an unknown role acting");
            assert_eq!(sqlstate(&error), "42501", "{error}");
        }
    }
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
