//! The SQL edition on a server that has no pg_barrier library, as on a managed service: a copy of
//! this machine's PostgreSQL installation whose extension directory holds only the SQL
//! edition's control file and scripts, and whose library directory has no pg_barrier.so. On
//! scratch clusters of that installation, each of the three ways to install it:
//!
//! - `CREATE EXTENSION pg_barrier` from sql-edition/pg_barrier.control, by a database owner who
//!   is not a superuser (trusted);
//! - the pg_tle registration script, pg_barrier-tle--<version>.sql;
//! - the plain schema script, pg_barrier-schema--<version>.sql;
//!
//! (those two as `scripts/sql-edition.sh --dist` writes them, for every release and update)
//!
//! and the sweep scheduled with pg_cron, as docs/managed.md says.

// Shared with tests/crash.rs; this binary does not crash its clusters.
#[allow(dead_code)]
#[path = "scratch/cluster.rs"]
mod cluster;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

use cluster::{run, Cluster};

#[path = "scratch/versions.rs"]
mod versions;

use versions::sql_edition_version as sql_version;

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A pg_tle or plain script, as `scripts/sql-edition.sh --dist` writes it (once per process).
fn dist(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("pg_barrier-dist-{}", std::process::id()));
        let status = Command::new(repository("scripts/sql-edition.sh"))
            .arg("--dist")
            .arg(&dir)
            .status()
            .expect("run scripts/sql-edition.sh --dist");
        assert!(status.success(), "scripts/sql-edition.sh --dist failed");
        dir
    })
    .join(name)
}

fn pg_config(flag: &str) -> PathBuf {
    let output = Command::new("pg_config")
        .arg(flag)
        .output()
        .expect("pg_config on the PATH (scripts/test.sh puts the tested build's first)");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// `dir` as a directory of links to every entry of `source`, except those `skip` refuses.
fn mirror(source: &Path, dir: &Path, skip: impl Fn(&str) -> bool) {
    fs::create_dir_all(dir).unwrap();
    for entry in fs::read_dir(source).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !skip(&name) {
            symlink(entry.path(), dir.join(&name)).unwrap();
        }
    }
}

/// The copy of the installation, made once per test process.
struct Installation {
    bin: PathBuf,
    extension: PathBuf,
}

/// PostgreSQL finds its share and library directories relative to its own executable, so the
/// programs are copied and the rest linked: everything of the real installation but pg_barrier,
/// plus the SQL edition's files.
fn installation() -> &'static Installation {
    static COPY: OnceLock<Installation> = OnceLock::new();
    COPY.get_or_init(|| {
        let (bin, lib, share) = (
            pg_config("--bindir"),
            pg_config("--pkglibdir"),
            pg_config("--sharedir"),
        );
        // Nothing runs when the test process exits: copies that earlier runs left are removed
        // here instead (each is named for its process, and removed once that one is gone).
        const PREFIX: &str = "pg_barrier-test-managed-install-";
        for entry in fs::read_dir("/var/tmp").unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix(PREFIX) {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = PathBuf::from(format!("/var/tmp/{PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let inside = |path: &Path| root.join(path.strip_prefix("/").unwrap());
        fs::create_dir_all(inside(&bin).parent().unwrap()).unwrap();
        run({
            let mut copy = Command::new("cp");
            copy.arg("-a").arg(&bin).arg(inside(&bin));
            copy
        });
        mirror(&lib, &inside(&lib), |name| name.starts_with("pg_barrier"));
        mirror(&share, &inside(&share), |name| name == "extension");
        let extension = inside(&share).join("extension");
        mirror(&share.join("extension"), &extension, |name| {
            name.starts_with("pg_barrier")
        });
        // The SQL edition's files, as docs/managed.md installs them.
        run({
            let mut install = Command::new(repository("scripts/install-sql-edition.sh"));
            install.arg(&extension);
            install
        });
        run({
            let mut readable = Command::new("chmod");
            readable.args(["-R", "a+rX"]).arg(&root);
            readable
        });
        assert!(
            !inside(&lib).join("pg_barrier.so").exists(),
            "the copy must not have the library"
        );
        Installation {
            bin: inside(&bin),
            extension,
        }
    })
}

fn start(name: &str, settings: &[&str]) -> Cluster {
    Cluster::start(installation().bin.clone(), name, settings)
}

fn connect_as(cluster: &Cluster, user: &str, database: &str) -> Client {
    Config::new()
        .host("localhost")
        .port(cluster.port)
        .user(user)
        .dbname(database)
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect as {user} to {database}: {e}"))
}

fn sqlstate(error: &postgres::Error) -> String {
    error
        .code()
        .map(|code| code.code().to_string())
        .unwrap_or_else(|| panic!("not a server error: {error}"))
}

fn one_text(client: &mut Client, sql: &str) -> String {
    client.query_one(sql, &[]).unwrap().get(0)
}

/// Two roles use the API of an installed SQL edition in `database`: a fan-in completes once
/// with every result and notifies; each role is refused the other's barrier; neither can touch
/// the state tables.
fn assert_api_works_and_isolates(cluster: &Cluster, database: &str, admin: &mut Client) {
    admin
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {database} TO PUBLIC;
             DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'worker') THEN
                     CREATE ROLE worker LOGIN; CREATE ROLE stranger LOGIN;
                 END IF;
             END $$;"
        ))
        .unwrap();
    let mut listener = connect_as(cluster, "worker", database);
    listener.batch_execute("LISTEN managed_done").unwrap();
    let mut worker = connect_as(cluster, "worker", database);
    assert_eq!(
        one_text(
            &mut worker,
            "SELECT barrier_enqueue('managed', 3, '{\"next\": 1}', channel => 'managed_done')"
        ),
        "pending"
    );
    let mut reporters: Vec<Client> = (0..3)
        .map(|_| connect_as(cluster, "worker", database))
        .collect();
    let mut answers = Vec::new();
    for (slot, reporter) in [2, 0, 1].into_iter().zip(reporters.iter_mut()) {
        let row = reporter
            .query_one(
                "SELECT status, results::text FROM barrier_decr('managed', to_jsonb($1::int), $1)",
                &[&slot],
            )
            .unwrap();
        answers.push((row.get::<_, String>(0), row.get::<_, Option<String>>(1)));
    }
    assert_eq!(
        answers,
        vec![
            ("pending".into(), None),
            ("pending".into(), None),
            ("complete".into(), Some("[0, 1, 2]".into()))
        ]
    );
    let mut notifications = listener.notifications();
    let note = postgres::fallible_iterator::FallibleIterator::next(
        &mut notifications.timeout_iter(Duration::from_secs(5)),
    )
    .unwrap()
    .expect("the completion notified");
    assert_eq!(
        note.payload(),
        r#"{"id" : "managed", "status" : "complete", "round" : 1}"#
    );

    let mut stranger = connect_as(cluster, "stranger", database);
    for statement in [
        "SELECT barrier_decr('managed', NULL, 0)",
        "SELECT * FROM barrier_status('managed')",
        "SELECT * FROM barrier_take('managed')",
        "SELECT barrier_abort('managed')",
        "SELECT * FROM barrier_internal.barrier",
        "DELETE FROM barrier_internal.result",
    ] {
        let error = stranger.batch_execute(statement).expect_err(statement);
        assert_eq!(sqlstate(&error), "42501", "{statement}: {error}");
    }
    let seen: i64 = stranger
        .query_one("SELECT complete FROM barrier_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(seen, 0, "another role's barrier is counted");
    let taken = one_text(
        &mut worker,
        "SELECT results::text FROM barrier_take('managed')",
    );
    assert_eq!(taken, "[0, 1, 2]");
}

/// The control file's install, by a database owner who is not a superuser, and the settings
/// read as placeholders.
#[test]
fn managed_a_database_owner_installs_the_sql_edition_without_the_library() {
    let cluster = start("managed-control", &[]);
    let mut superuser = cluster.connect("postgres");
    superuser
        .batch_execute("CREATE ROLE app_owner LOGIN")
        .unwrap();
    superuser
        .batch_execute("CREATE DATABASE managed OWNER app_owner")
        .unwrap();
    let mut owner = connect_as(&cluster, "app_owner", "managed");
    owner.batch_execute("CREATE EXTENSION pg_barrier").unwrap();
    assert_eq!(
        one_text(
            &mut owner,
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'"
        ),
        sql_version()
    );
    let mut admin = cluster.connect("managed");
    let c_functions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
               JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_barrier'
              WHERE l.lanname NOT IN ('plpgsql', 'sql')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(c_functions, 0);
    // The installer owns nothing of it (a trusted install's objects are the bootstrap
    // superuser's).
    let owned: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_depend d
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_barrier'
               LEFT JOIN pg_proc p ON d.classid = 'pg_proc'::regclass AND p.oid = d.objid
               LEFT JOIN pg_class c ON d.classid = 'pg_class'::regclass AND c.oid = d.objid
              WHERE d.deptype = 'e' AND 'app_owner'::regrole IN (p.proowner, c.relowner)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owned, 0);
    assert_api_works_and_isolates(&cluster, "managed", &mut admin);

    // The settings are placeholders: nothing defines them until someone sets them.
    let mut worker = connect_as(&cluster, "worker", "managed");
    let error = worker
        .batch_execute("SHOW pg_barrier.default_ttl")
        .expect_err("no library defines the setting");
    assert_eq!(sqlstate(&error), "42704", "{error}");
    worker
        .batch_execute("SET pg_barrier.default_ttl = '90s'; SET pg_barrier.channel = 'placeheld'")
        .unwrap();
    worker
        .batch_execute("SELECT barrier_enqueue('placeheld', 1)")
        .unwrap();
    let row = worker
        .query_one(
            "SELECT expires_at - created_at = interval '90 s', channel
               FROM barrier_status('placeheld')",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "placeheld");
    // Checked when used, not when set: with the setting named.
    worker
        .batch_execute("SET pg_barrier.default_ttl = 'soon'")
        .unwrap();
    let error = worker
        .batch_execute("SELECT barrier_enqueue('bad-setting', 1)")
        .expect_err("an unreadable ttl setting");
    assert_eq!(sqlstate(&error), "22023", "{error}");
    assert!(
        error
            .as_db_error()
            .unwrap()
            .message()
            .contains("pg_barrier.default_ttl"),
        "{error}"
    );
    worker
        .batch_execute("RESET pg_barrier.default_ttl")
        .unwrap();

    // Superuser-only settings: a plain role's SET changes nothing; a database setting, which
    // only a superuser may store for a placeholder, applies to everyone.
    worker
        .batch_execute(
            "SET pg_barrier.retention = 0; SET pg_barrier.max_result_bytes = '1GB';
             SELECT barrier_decr('placeheld', '1');",
        )
        .unwrap();
    let deleted: i64 = worker
        .query_one("SELECT deleted FROM barrier_sweep()", &[])
        .unwrap()
        .get(0);
    assert_eq!(deleted, 0, "a plain role shortened the retention");
    let error = owner
        .batch_execute("ALTER DATABASE managed SET pg_barrier.max_result_bytes = '2kB'")
        .expect_err("a placeholder stored by a plain role");
    assert_eq!(sqlstate(&error), "42501", "{error}");
    superuser
        .batch_execute("ALTER DATABASE managed SET pg_barrier.max_result_bytes = '2kB'")
        .unwrap();
    let mut fresh = connect_as(&cluster, "worker", "managed");
    fresh
        .batch_execute("SELECT barrier_enqueue('limited', 2)")
        .unwrap();
    let small = format!("\"{}\"", "x".repeat(1000));
    let large = format!("\"{}\"", "x".repeat(3000));
    fresh
        .query("SELECT barrier_decr('limited', $1::text::jsonb)", &[&small])
        .unwrap();
    let error = fresh
        .query("SELECT barrier_decr('limited', $1::text::jsonb)", &[&large])
        .expect_err("over the database's max_result_bytes");
    assert_eq!(sqlstate(&error), "54000", "{error}");
    drop(worker);
    cluster.assert_log_clean();
}

/// The pg_tle script registers exactly the control-file install script. pg_tle itself is not
/// packaged for Debian 12, so its `install_extension` is stood in for by a function that keeps
/// what it is given, and its CREATE EXTENSION (the script run as the calling role, which then
/// owns the objects) by an extension whose control file says just that.
#[test]
fn managed_the_pg_tle_script_registers_the_install_script() {
    let cluster = start("managed-tle", &[]);
    let mut superuser = cluster.connect("app");
    superuser
        .batch_execute(
            "CREATE SCHEMA pgtle;
             CREATE TABLE pgtle.registered (name text, version text, description text,
                                            ext text, requires text[]);
             CREATE FUNCTION pgtle.install_extension(name text, version text, description text,
                                                     ext text, requires text[] DEFAULT NULL)
             RETURNS boolean LANGUAGE sql AS
             $$ INSERT INTO pgtle.registered VALUES ($1, $2, $3, $4, $5) RETURNING true $$;
             CREATE TABLE pgtle.paths (name text, fromvers text, tovers text, ext text);
             CREATE FUNCTION pgtle.install_update_path(name text, fromvers text, tovers text,
                                                       ext text)
             RETURNS boolean LANGUAGE sql AS
             $$ INSERT INTO pgtle.paths VALUES ($1, $2, $3, $4) RETURNING true $$;
             CREATE TABLE pgtle.defaults (name text, version text);
             CREATE FUNCTION pgtle.set_default_version(name text, version text)
             RETURNS boolean LANGUAGE sql AS
             $$ INSERT INTO pgtle.defaults VALUES ($1, $2) RETURNING true $$;",
        )
        .unwrap();
    let script =
        fs::read_to_string(dist(&format!("pg_barrier-tle--{}.sql", sql_version()))).unwrap();
    superuser.batch_execute(&script).unwrap();
    let row = superuser
        .query_one("SELECT name, version, ext FROM pgtle.registered", &[])
        .unwrap();
    let install = fs::read_to_string(repository(&format!(
        "sql/pg_barrier--{}.sql",
        sql_version()
    )))
    .unwrap();
    assert_eq!(row.get::<_, String>(0), "pg_barrier");
    assert_eq!(row.get::<_, String>(1), sql_version());
    let ext: String = row.get(2);
    assert_eq!(ext.trim(), install.trim(), "pg_tle would install other SQL");

    // What pg_tle's CREATE EXTENSION does with it: run as a role that is not a superuser.
    let extension = &installation().extension;
    fs::write(
        extension.join("pg_barrier_tle.control"),
        format!(
            "comment = 'as pg_tle registers it'\ndefault_version = '{}'\nrelocatable = false\nsuperuser = false\n",
            sql_version()
        ),
    )
    .unwrap();
    fs::write(
        extension.join(format!("pg_barrier_tle--{}.sql", sql_version())),
        &ext,
    )
    .unwrap();
    superuser
        .batch_execute("CREATE ROLE tle_owner LOGIN")
        .unwrap();
    superuser
        .batch_execute("CREATE DATABASE tle OWNER tle_owner")
        .unwrap();
    let mut owner = connect_as(&cluster, "tle_owner", "tle");
    owner
        .batch_execute("CREATE EXTENSION pg_barrier_tle")
        .unwrap();
    let mut admin = cluster.connect("tle");
    assert_api_works_and_isolates(&cluster, "tle", &mut admin);

    // A database that registered the first release takes the updates: each release's
    // registration script adds exactly the extension's update script and makes its version the
    // default.
    superuser
        .batch_execute("TRUNCATE pgtle.registered")
        .unwrap();
    superuser
        .batch_execute(&fs::read_to_string(dist(&format!("pg_barrier-tle--{FIRST}.sql"))).unwrap())
        .unwrap();
    let steps = update_steps();
    for (from, to) in &steps {
        superuser
            .batch_execute(
                &fs::read_to_string(dist(&format!("pg_barrier-tle--{from}--{to}.sql"))).unwrap(),
            )
            .unwrap();
    }
    let first = one_text(&mut superuser, "SELECT ext FROM pgtle.registered");
    fs::write(
        extension.join(format!("pg_barrier_tle--{FIRST}.sql")),
        &first,
    )
    .unwrap();
    let paths = superuser
        .query("SELECT fromvers, tovers, ext FROM pgtle.paths", &[])
        .unwrap();
    assert_eq!(
        paths
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
            .collect::<Vec<_>>(),
        steps
    );
    for (row, (from, to)) in paths.iter().zip(&steps) {
        let path: String = row.get(2);
        let expected =
            fs::read_to_string(repository(&format!("sql/pg_barrier--{from}--{to}.sql"))).unwrap();
        assert_eq!(path.trim(), expected.trim(), "{from} to {to}");
        fs::write(
            extension.join(format!("pg_barrier_tle--{from}--{to}.sql")),
            &path,
        )
        .unwrap();
    }
    let defaults: Vec<String> = superuser
        .query("SELECT version FROM pgtle.defaults", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(defaults.last(), Some(&sql_version()));
    superuser
        .batch_execute("CREATE DATABASE tle_update OWNER tle_owner")
        .unwrap();
    let mut owner = connect_as(&cluster, "tle_owner", "tle_update");
    owner
        .batch_execute(&format!(
            "CREATE EXTENSION pg_barrier_tle VERSION '{FIRST}';
             SELECT barrier_enqueue('across', 2);
             SELECT barrier_decr('across', '\"before\"', 0);
             ALTER EXTENSION pg_barrier_tle UPDATE;"
        ))
        .unwrap();
    assert_completes_after_update(&mut owner, "pg_barrier_tle");
    cluster.assert_log_clean();
}

/// The SQL edition's first release.
const FIRST: &str = "0.3.0-sql";

/// The updates from the first release to the current one, in order: each is a script
/// sql/pg_barrier--A--B.sql between two releases of the SQL edition.
fn update_steps() -> Vec<(String, String)> {
    let mut steps = Vec::new();
    let mut from = FIRST.to_string();
    while from != sql_version() {
        let prefix = format!("pg_barrier--{from}--");
        let to = fs::read_dir(repository("sql"))
            .unwrap()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let to = name
                    .strip_prefix(&prefix)?
                    .strip_suffix(".sql")?
                    .to_string();
                to.ends_with("-sql").then_some(to)
            })
            .next()
            .unwrap_or_else(|| panic!("no update of the SQL edition from {from}"));
        steps.push((from, to.clone()));
        from = to;
    }
    steps
}

/// Barrier `across` (2 slots, slot 0 reported before the update) completes after it, at the
/// current version of `extension`.
fn assert_completes_after_update(client: &mut Client, extension: &str) {
    let installed: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = $1",
            &[&extension],
        )
        .unwrap()
        .get(0);
    assert_eq!(installed, sql_version());
    assert_across_completes(client);
}

fn assert_across_completes(client: &mut Client) {
    let row = client
        .query_one(
            "SELECT status, results::text FROM barrier_decr('across', '\"after\"', 1)",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1)),
        ("complete".into(), Some(r#"["before", "after"]"#.into()))
    );
}

/// Each way of installing updates from the first release with a barrier in flight: the
/// extension with ALTER EXTENSION UPDATE (by the database owner who installed it), the plain
/// script with each release's update script in turn. (pg_tle's updates: the test above.)
#[test]
fn managed_updates_from_the_first_release() {
    let cluster = start("managed-update", &[]);
    let mut superuser = cluster.connect("postgres");
    superuser
        .batch_execute("CREATE ROLE app_owner LOGIN")
        .unwrap();
    for database in ["updated", "updated_plain", "fresh_plain"] {
        superuser
            .batch_execute(&format!("CREATE DATABASE {database} OWNER app_owner"))
            .unwrap();
    }
    let mut owner = connect_as(&cluster, "app_owner", "updated");
    owner
        .batch_execute(&format!(
            "CREATE EXTENSION pg_barrier VERSION '{FIRST}';
             SELECT barrier_enqueue('across', 2);
             SELECT barrier_decr('across', '\"before\"', 0);
             ALTER EXTENSION pg_barrier UPDATE;"
        ))
        .unwrap();
    assert_completes_after_update(&mut owner, "pg_barrier");

    let script = |name: String| fs::read_to_string(dist(&name)).unwrap();
    let mut plain = connect_as(&cluster, "app_owner", "updated_plain");
    plain
        .batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            script(format!("pg_barrier-schema--{FIRST}.sql"))
        ))
        .unwrap();
    plain
        .batch_execute(
            "SELECT barrier_enqueue('across', 2);
             SELECT barrier_decr('across', '\"before\"', 0);",
        )
        .unwrap();
    for (from, to) in update_steps() {
        plain
            .batch_execute(&format!(
                "BEGIN;\n{}\nCOMMIT;",
                script(format!("pg_barrier-schema--{from}--{to}.sql"))
            ))
            .unwrap();
    }
    assert_across_completes(&mut plain);
    // The updated functions are those of a fresh plain install.
    let mut fresh = connect_as(&cluster, "app_owner", "fresh_plain");
    fresh
        .batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            script(format!("pg_barrier-schema--{}.sql", sql_version()))
        ))
        .unwrap();
    let definitions = "SELECT string_agg(pg_get_functiondef(p.oid) || coalesce(p.proacl::text, ''),
                                         E'\n' ORDER BY p.oid::regprocedure::text)
                         FROM pg_proc p
                        WHERE p.pronamespace IN ('public'::regnamespace,
                                                 'barrier_internal'::regnamespace)";
    assert_eq!(
        one_text(&mut plain, definitions),
        one_text(&mut fresh, definitions)
    );
    cluster.assert_log_clean();
}

/// The plain script, in one transaction, by a database owner: the same API, no extension. Run
/// a second time it fails as a whole and changes nothing.
#[test]
fn managed_the_plain_schema_script_installs_the_api_without_create_extension() {
    let cluster = start("managed-plain", &[]);
    let mut superuser = cluster.connect("postgres");
    superuser
        .batch_execute("CREATE ROLE plain_owner LOGIN")
        .unwrap();
    superuser
        .batch_execute("CREATE DATABASE plain OWNER plain_owner")
        .unwrap();
    let script =
        fs::read_to_string(dist(&format!("pg_barrier-schema--{}.sql", sql_version()))).unwrap();
    let mut owner = connect_as(&cluster, "plain_owner", "plain");
    owner
        .batch_execute(&format!("BEGIN;\n{script}\nCOMMIT;"))
        .unwrap();
    let mut admin = cluster.connect("plain");
    let extensions: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_barrier'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(extensions, 0);
    assert_api_works_and_isolates(&cluster, "plain", &mut admin);
    let before = one_text(
        &mut admin,
        "SELECT count(*)::text FROM pg_proc WHERE proname LIKE 'barrier%'",
    );
    owner.batch_execute("ROLLBACK").ok();
    let error = owner
        .batch_execute(&format!("BEGIN;\n{script}\nCOMMIT;"))
        .expect_err("a second install");
    assert_eq!(sqlstate(&error), "42P06", "{error}");
    owner.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        one_text(
            &mut admin,
            "SELECT count(*)::text FROM pg_proc WHERE proname LIKE 'barrier%'"
        ),
        before
    );
    cluster.assert_log_clean();
}

/// Code a table's owner runs inside maintenance (an index expression that ANALYZE evaluates)
/// acts for that owner, whoever runs the maintenance: autovacuum, whose session user is the
/// bootstrap superuser, or a superuser's own ANALYZE in a client session. Either way it is
/// refused another role's barrier and reaches its owner's own, which shows that the probe works.
#[test]
fn managed_code_run_by_autovacuum_or_a_superusers_analyze_acts_for_the_table_owner() {
    let cluster = start(
        "managed-autovacuum",
        &["autovacuum_naptime = 1", "log_line_prefix = '[%b] '"],
    );
    let mut superuser = cluster.connect("app");
    superuser
        .batch_execute(
            "CREATE EXTENSION pg_barrier;
             CREATE ROLE victim; CREATE ROLE prober LOGIN;
             GRANT CREATE ON SCHEMA public TO prober;
             SET ROLE victim; SELECT barrier_enqueue('victims', 2); RESET ROLE;",
        )
        .unwrap();
    // The prober works in a session of its own, so that only the superuser's ANALYZE runs its
    // code in a session of the superuser.
    let mut prober = connect_as(&cluster, "prober", "app");
    prober
        .batch_execute(
            "SELECT barrier_enqueue('probers', 2);
             CREATE FUNCTION public.probe(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
             DECLARE
                 own integer;
                 victims text;
             BEGIN
                 SELECT s.remaining INTO own FROM public.barrier_status('probers') AS s;
                 BEGIN
                     PERFORM public.barrier_status('victims');
                     victims := 'read';
                 EXCEPTION WHEN insufficient_privilege THEN
                     victims := 'refused';
                 END;
                 RAISE LOG 'pg_barrier probe % as % in a session of %: the victim''s barrier %, its own % remaining',
                           x, current_user, session_user, victims, own;
                 RETURN x;
             END $$;
             CREATE TABLE public.probed (x int)
                 WITH (autovacuum_analyze_threshold = 1, autovacuum_analyze_scale_factor = 0);
             CREATE INDEX ON public.probed (public.probe(x));
             INSERT INTO public.probed SELECT g FROM generate_series(1000, 1009) g;",
        )
        .unwrap();
    let probes = |backend: &str| -> Vec<String> {
        cluster
            .log()
            .lines()
            .filter(|line| line.starts_with(backend) && line.contains("pg_barrier probe"))
            .map(str::to_string)
            .collect()
    };
    // Autovacuum analyzes the table (evaluating the index expression) within a few naptimes.
    let deadline = Instant::now() + Duration::from_secs(60);
    while probes("[autovacuum worker]").is_empty() {
        assert!(
            Instant::now() < deadline,
            "autovacuum did not analyze within 60 s"
        );
        thread::sleep(Duration::from_millis(200));
    }
    // And a superuser's ANALYZE, in a client session.
    let me = one_text(&mut superuser, "SELECT session_user::text");
    superuser.batch_execute("ANALYZE public.probed").unwrap();
    let by_analyze: Vec<String> = probes("[client backend]")
        .into_iter()
        .filter(|line| line.contains(&format!("in a session of {me}:")))
        .collect();
    assert!(
        !by_analyze.is_empty(),
        "the superuser's ANALYZE never ran the probe"
    );
    // Every evaluation (the prober's own INSERT too) acted for the prober.
    for line in probes("[autovacuum worker]")
        .iter()
        .chain(&probes("[client backend]"))
    {
        assert!(
            line.contains(" as prober in a session of ")
                && line.contains("the victim's barrier refused, its own 2 remaining"),
            "code run for the prober acted for someone else:\n{line}"
        );
    }
    cluster.assert_log_clean();
}

/// docs/managed.md's pg_cron job sweeps the SQL edition: a barrier past its ttl is expired, and its
/// listeners told, without any call touching it.
#[test]
fn managed_pg_cron_runs_the_sweep() {
    let cluster = start(
        "managed-cron",
        &[
            "shared_preload_libraries = 'pg_cron'",
            "cron.database_name = 'postgres'",
        ],
    );
    let mut app = cluster.connect("app");
    app.batch_execute(
        "CREATE EXTENSION pg_barrier;
         SELECT barrier_enqueue('swept-by-cron', 2, ttl => '1 ms', channel => 'cron_swept');
         LISTEN cron_swept;",
    )
    .unwrap();
    let mut cron = cluster.connect("postgres");
    cron.batch_execute(
        "CREATE EXTENSION pg_cron;
         SELECT cron.schedule_in_database('pg_barrier sweep', '* * * * *',
                                          'SELECT * FROM barrier_sweep()', 'app');",
    )
    .unwrap();
    // pg_cron schedules by the minute: the first run comes within about a minute.
    let deadline = Instant::now() + Duration::from_secs(90);
    let stored = loop {
        let status: String = app
            .query_one(
                "SELECT status FROM barrier_internal.barrier WHERE id = 'swept-by-cron'",
                &[],
            )
            .unwrap()
            .get(0);
        if status != "pending" || Instant::now() > deadline {
            break status;
        }
        thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(stored, "expired", "pg_cron did not sweep within 90 s");
    let mut notifications = app.notifications();
    let note = postgres::fallible_iterator::FallibleIterator::next(
        &mut notifications.timeout_iter(Duration::from_secs(5)),
    )
    .unwrap()
    .expect("the expiry notified");
    assert!(note.payload().contains("\"expired\""), "{}", note.payload());
    let runs = one_text(
        &mut cron,
        "SELECT string_agg(status, ',') FROM cron.job_run_details",
    );
    assert!(runs.contains("succeeded"), "{runs}");
    cluster.assert_log_clean();
}
