//! Installing as a database owner who is not a superuser, and what other roles cannot do.

use postgres::Client;

use crate::support::{connect, connect_as, decr, sqlstate};

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
    owner.batch_execute("CREATE EXTENSION pg_barrier").unwrap();
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
        "SELECT * FROM barrier_internal.barrier",
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

#[test]
fn shadowing_objects_on_the_search_path_are_never_called() {
    let mut admin = connect();
    admin
        .batch_execute(
            "CREATE ROLE shadow_role LOGIN;
             CREATE SCHEMA shadow AUTHORIZATION shadow_role;",
        )
        .unwrap();
    let mut hostile = connect_as("shadow_role", pgrx_tests::get_pg_dbname());
    // Look-alikes of what the API's SQL uses; any call to one of them fails loudly.
    hostile
        .batch_execute(
            r#"
            CREATE FUNCTION shadow.hijacked() RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'shadowing object called'; END $$;
            CREATE FUNCTION shadow.text_eq(text, text) RETURNS boolean LANGUAGE sql
                AS 'SELECT shadow.hijacked()';
            CREATE OPERATOR shadow.= (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow.text_eq);
            CREATE FUNCTION shadow.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
            BEGIN PERFORM shadow.hijacked(); RETURN NULL; END $$;
            CREATE FUNCTION shadow.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$
            BEGIN PERFORM shadow.hijacked(); END $$;
            CREATE FUNCTION shadow.coalesce(jsonb, jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
            BEGIN PERFORM shadow.hijacked(); RETURN NULL; END $$;
            CREATE TABLE shadow.barrier (id text);
            SET search_path = shadow, pg_catalog, public;
            "#,
        )
        .unwrap();
    hostile
        .execute("SELECT barrier_enqueue('shadowed', 2)", &[])
        .unwrap();
    assert_eq!(
        decr(&mut hostile, "shadowed", Some(&"a".into()), Some(1))
            .unwrap()
            .status,
        "pending"
    );
    let answer = decr(&mut hostile, "shadowed", Some(&"b".into()), Some(0)).unwrap();
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.results, Some(serde_json::json!(["b", "a"])));
    let status: String = hostile
        .query_one("SELECT status FROM public.barrier_status('shadowed')", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "complete");
    hostile
        .execute("SELECT barrier_enqueue('shadowed-abort', 1)", &[])
        .unwrap();
    let aborted: String = hostile
        .query_one("SELECT barrier_abort('shadowed-abort')", &[])
        .unwrap()
        .get(0);
    assert_eq!(aborted, "aborted");
}
