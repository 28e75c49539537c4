//! The SQL edition on a server that has no pg_barrier library, as on a managed service: a copy of
//! this machine's PostgreSQL installation whose extension directory holds only the SQL
//! edition's control file and scripts, and whose library directory has no pg_barrier.so. On
//! scratch clusters of that installation, each of the three ways to install it:
//!
//! - `CREATE EXTENSION pg_barrier` from sql-edition/pg_barrier.control, by a database owner who
//!   is not a superuser (trusted);
//! - the pg_tle registration script, sql-edition/pg_barrier-tle--<version>.sql;
//! - the plain schema script, sql-edition/pg_barrier-schema--<version>.sql;
//!
//! and the sweep scheduled with pg_cron, as the README says.

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

fn pg_config(flag: &str) -> PathBuf {
    let output = Command::new("pg_config")
        .arg(flag)
        .output()
        .expect("pg_config on the PATH (scripts/test.sh installs PostgreSQL 15)");
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
        // The SQL edition's files, as the README installs them.
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
    let script = fs::read_to_string(repository(&format!(
        "sql-edition/pg_barrier-tle--{}.sql",
        sql_version()
    )))
    .unwrap();
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

    // A database that registered the first release takes the update: its registration script
    // adds exactly the extension's update script and makes the new version the default.
    superuser
        .batch_execute("TRUNCATE pgtle.registered")
        .unwrap();
    for script in [
        format!("sql-edition/pg_barrier-tle--{FIRST}.sql"),
        format!("sql-edition/pg_barrier-tle--{FIRST}--{}.sql", sql_version()),
    ] {
        superuser
            .batch_execute(&fs::read_to_string(repository(&script)).unwrap())
            .unwrap();
    }
    let first = one_text(&mut superuser, "SELECT ext FROM pgtle.registered");
    let update = superuser
        .query_one("SELECT fromvers, tovers, ext FROM pgtle.paths", &[])
        .unwrap();
    assert_eq!(
        (update.get::<_, String>(0), update.get::<_, String>(1)),
        (FIRST.to_string(), sql_version())
    );
    let path: String = update.get(2);
    let expected = fs::read_to_string(repository(&format!(
        "sql/pg_barrier--{FIRST}--{}.sql",
        sql_version()
    )))
    .unwrap();
    assert_eq!(path.trim(), expected.trim());
    assert_eq!(
        one_text(&mut superuser, "SELECT version FROM pgtle.defaults"),
        sql_version()
    );
    fs::write(
        extension.join(format!("pg_barrier_tle--{FIRST}.sql")),
        &first,
    )
    .unwrap();
    fs::write(
        extension.join(format!("pg_barrier_tle--{FIRST}--{}.sql", sql_version())),
        &path,
    )
    .unwrap();
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
/// script with its update script. (pg_tle's update: the test above.)
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

    let script = |name: String| fs::read_to_string(repository(&name)).unwrap();
    let mut plain = connect_as(&cluster, "app_owner", "updated_plain");
    plain
        .batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            script(format!("sql-edition/pg_barrier-schema--{FIRST}.sql"))
        ))
        .unwrap();
    plain
        .batch_execute(
            "SELECT barrier_enqueue('across', 2);
             SELECT barrier_decr('across', '\"before\"', 0);",
        )
        .unwrap();
    plain
        .batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            script(format!(
                "sql-edition/pg_barrier-schema--{FIRST}--{}.sql",
                sql_version()
            ))
        ))
        .unwrap();
    assert_across_completes(&mut plain);
    // The updated functions are those of a fresh plain install.
    let mut fresh = connect_as(&cluster, "app_owner", "fresh_plain");
    fresh
        .batch_execute(&format!(
            "BEGIN;\n{}\nCOMMIT;",
            script(format!(
                "sql-edition/pg_barrier-schema--{}.sql",
                sql_version()
            ))
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
    let script = fs::read_to_string(repository(&format!(
        "sql-edition/pg_barrier-schema--{}.sql",
        sql_version()
    )))
    .unwrap();
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

/// Code a table's owner runs inside autovacuum (an index expression ANALYZE evaluates) sees the
/// bootstrap superuser as the session's user: there the SQL edition must not lend it that
/// superuser's reach over other roles' barriers. The same probe run by a superuser's own ANALYZE
/// in a client session does reach them (the README's table of differences says so), which shows
/// that the probe works.
#[test]
fn managed_code_run_by_autovacuum_reaches_no_other_role_s_barrier() {
    let cluster = start(
        "managed-autovacuum",
        &["autovacuum_naptime = 1", "log_line_prefix = '[%b] '"],
    );
    let mut superuser = cluster.connect("app");
    superuser
        .batch_execute(
            "CREATE EXTENSION pg_barrier;
             CREATE ROLE victim; CREATE ROLE prober;
             GRANT CREATE ON SCHEMA public TO prober;
             SET ROLE victim; SELECT barrier_enqueue('victims', 2); RESET ROLE;
             SET ROLE prober;
             CREATE FUNCTION public.probe(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
             BEGIN
                 BEGIN
                     PERFORM public.barrier_status('victims');
                     RAISE LOG 'pg_barrier probe %: read the victim''s barrier', x;
                 EXCEPTION WHEN insufficient_privilege THEN
                     RAISE LOG 'pg_barrier probe %: refused', x;
                 END;
                 RETURN x;
             END $$;
             CREATE TABLE public.probed (x int)
                 WITH (autovacuum_analyze_threshold = 1, autovacuum_analyze_scale_factor = 0);
             CREATE INDEX ON public.probed (public.probe(x));
             RESET ROLE;",
        )
        .unwrap();
    // Autovacuum analyzes the table (evaluating the index expression) within a few naptimes.
    // (The insert evaluates it too, in this client session.)
    superuser
        .batch_execute("INSERT INTO public.probed SELECT g FROM generate_series(1000, 1009) g")
        .unwrap();
    let by_autovacuum = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|line| {
                line.starts_with("[autovacuum worker]") && line.contains("pg_barrier probe")
            })
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while by_autovacuum(&cluster.log()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "autovacuum did not analyze within 60 s"
        );
        thread::sleep(Duration::from_millis(200));
    }
    let autovacuum = by_autovacuum(&cluster.log());
    assert!(
        autovacuum.iter().all(|line| line.contains("refused")),
        "code run by autovacuum reached another role's barrier:\n{}",
        autovacuum.join("\n")
    );
    // The superuser's own ANALYZE, in a client session: the documented limit.
    superuser
        .batch_execute(
            "TRUNCATE public.probed;
             INSERT INTO public.probed SELECT g FROM generate_series(2000, 2009) g;
             ANALYZE public.probed;",
        )
        .unwrap();
    let log = cluster.log();
    assert!(
        log.lines().any(|line| line.starts_with("[client backend]")
            && line.contains("pg_barrier probe 200")
            && line.contains("read the victim")),
        "the probe never reached the barrier, so the autovacuum check proves nothing"
    );
    cluster.assert_log_clean();
}

/// The README's pg_cron job sweeps the SQL edition: a barrier past its ttl is expired, and its
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
