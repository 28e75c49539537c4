//! Connections to the server that pgrx's test harness starts for this test binary, and the
//! edition of pg_barrier the binary tests.

use std::sync::{Mutex, OnceLock};

use postgres::{Client, Config, NoTls};

/// The two builds of the same API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(dead_code)] // a binary may name only one of them
pub enum Edition {
    /// The shared library.
    Rust,
    /// PL/pgSQL, no library.
    Sql,
}

/// What a test binary runs against: an edition and, for the Rust build, whether reports may
/// take its fast path (`pg_barrier.fast_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub edition: Edition,
    pub fast_path: bool,
}

#[allow(dead_code)] // each binary names the targets it runs
impl Target {
    pub const RUST: Target = Target {
        edition: Edition::Rust,
        fast_path: true,
    };
    pub const RUST_WITHOUT_FAST_PATH: Target = Target {
        edition: Edition::Rust,
        fast_path: false,
    };
    pub const SQL: Target = Target {
        edition: Edition::Sql,
        fast_path: false,
    };
}

pub fn edition() -> Edition {
    crate::target().edition
}

/// Whether reports may take the Rust build's fast path in this run.
#[allow(dead_code)]
pub fn fast_path() -> bool {
    crate::target().fast_path
}

/// The PostgreSQL major this binary was built for (its `pgNN` feature).
pub fn compiled_major() -> i32 {
    if cfg!(feature = "pg18") {
        18
    } else if cfg!(feature = "pg17") {
        17
    } else if cfg!(feature = "pg16") {
        16
    } else {
        15
    }
}

/// The extension version that installs this binary's edition.
pub fn version() -> String {
    match edition() {
        Edition::Rust => env!("CARGO_PKG_VERSION").to_string(),
        Edition::Sql => sql_edition_version(),
    }
}

#[path = "../scratch/versions.rs"]
mod versions;
pub use versions::sql_edition_version;

/// The statement that installs this binary's edition in a database.
pub fn create_extension() -> String {
    format!("CREATE EXTENSION pg_barrier VERSION '{}'", version())
}

/// The database the tests use: the harness's own for the Rust build (pgrx installs the
/// extension there), one of its own for the SQL edition.
pub fn database() -> &'static str {
    match edition() {
        Edition::Rust => pgrx_tests::get_pg_dbname(),
        Edition::Sql => "barrier_sql",
    }
}

/// Starts (once) the harness server with pg_barrier installed; returns its port.
fn port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        // Running one in-backend test is what makes the harness install the extension, initdb,
        // start the server and create the test database.
        pgrx_tests::run_test(
            "extension_is_installed_and_trusted",
            None,
            server_settings(),
        )
        .expect("the pgrx test server did not start");
        let (mut client, _) = pgrx_tests::client().expect("connect to the test server");
        let port: String = client
            .query_one("SHOW port", &[])
            .expect("SHOW port")
            .get(0);
        install_sql_edition_script(&mut client);
        if edition() == Edition::Sql {
            client
                .batch_execute(&format!("CREATE DATABASE {}", database()))
                .expect("create the SQL edition's database");
            let user = pgrx_tests::get_pg_user();
            let mut sql = Config::new()
                .host("localhost")
                .port(port.parse().expect("numeric port"))
                .user(&user)
                .dbname(database())
                .connect(NoTls)
                .expect("connect to the SQL edition's database");
            sql.batch_execute(&create_extension())
                .expect("install the SQL edition");
        }
        // Kept open for the whole run: see `assert_no_backend_crashed`.
        SENTINEL.get_or_init(|| Mutex::new(client));
        port.parse().expect("numeric port")
    })
}

/// `cargo pgrx install` copies the library, the generated install script and every update
/// script; the SQL edition's own install script is copied here (the tests run as root), so
/// that `CREATE EXTENSION ... VERSION '<v>-sql'` runs it rather than the Rust build's script
/// followed by the switch to the SQL edition.
fn install_sql_edition_script(client: &mut Client) {
    let sharedir: String = client
        .query_one("SELECT setting FROM pg_config WHERE name = 'SHAREDIR'", &[])
        .expect("SHAREDIR")
        .get(0);
    let name = format!("pg_barrier--{}.sql", sql_edition_version());
    let installed = format!("{sharedir}/extension/{name}");
    std::fs::copy(
        format!("{}/sql/{name}", env!("CARGO_MANIFEST_DIR")),
        &installed,
    )
    .unwrap_or_else(|e| panic!("copy {name} to {installed}: {e}"));
    let mut permissions = std::fs::metadata(&installed).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o644);
    std::fs::set_permissions(&installed, permissions).unwrap();
}

/// A session opened when the server started. When any server process crashes, PostgreSQL ends
/// every session and reinitializes, so this one answering proves no crash happened so far.
static SENTINEL: OnceLock<Mutex<Client>> = OnceLock::new();

/// Fails if any server process has crashed since this test binary started the server.
pub fn assert_no_backend_crashed() {
    port();
    let mut sentinel = SENTINEL
        .get()
        .expect("the sentinel session")
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    sentinel
        .batch_execute("SELECT 1")
        .expect("the session opened at server start was ended: a server process crashed");
}

/// The Rust build's server preloads pg_barrier so that its background sweeper runs here, every
/// second, in the test database, and in `postgres`, where the extension is not installed (every
/// round there fails, and the worker must live on).
///
/// The SQL edition's server loads no pg_barrier library, as on a managed service: the
/// `pg_barrier.*` settings are placeholders there. (The harness's own database still gets the
/// Rust build, which loads the library in the sessions that use that database only.)
fn server_settings() -> Vec<&'static str> {
    match crate::target() {
        Target::RUST => vec![
            "shared_preload_libraries = 'pg_barrier'",
            "pg_barrier.sweep_databases = 'pgrx_tests, postgres'",
            "pg_barrier.sweep_interval = '1s'",
        ],
        Target::RUST_WITHOUT_FAST_PATH => vec![
            "shared_preload_libraries = 'pg_barrier'",
            "pg_barrier.sweep_databases = 'pgrx_tests, postgres'",
            "pg_barrier.sweep_interval = '1s'",
            "pg_barrier.fast_path = off",
        ],
        _ => vec![],
    }
}

/// The bin directory of the installation the test server runs from: that of the server's own
/// executable where this process may read it (as root, which `scripts/test.sh` runs as), else
/// that of the `pg_config` on the PATH.
pub fn server_bin_dir() -> std::path::PathBuf {
    let mut client = connect();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    if let Ok(server) = std::fs::read_link(format!("/proc/{pid}/exe")) {
        return server.parent().expect("a bin directory").to_path_buf();
    }
    let output = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config on the PATH");
    String::from_utf8(output.stdout).unwrap().trim().into()
}

/// The server's port, for tools such as pg_dump.
pub fn server_port() -> u16 {
    port()
}

/// A new connection as `user` to `database`.
pub fn connect_as(user: &str, database: &str) -> Client {
    let mut client = Config::new()
        .host("localhost")
        .port(port())
        .user(user)
        .dbname(database)
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect as {user} to {database}: {e}"));
    client
        .batch_execute("SET client_min_messages = warning")
        .expect("session setup");
    client
}

/// An empty database `name` (dropped first if it exists), and a superuser connection to it.
pub fn fresh_database(admin: &mut Client, name: &str) -> Client {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    connect_as(&pgrx_tests::get_pg_user(), name)
}

/// A new superuser connection to the test database.
pub fn connect() -> Client {
    connect_as(&pgrx_tests::get_pg_user(), database())
}

/// The SQLSTATE of a failed call.
pub fn sqlstate(error: &postgres::Error) -> String {
    error
        .code()
        .map(|code| code.code().to_string())
        .unwrap_or_else(|| panic!("not a server error: {error}"))
}

/// One answer of `barrier_decr`.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: String,
    pub remaining: Option<i32>,
    pub results: Option<serde_json::Value>,
}

const DECR: &str =
    "SELECT status, remaining, results::text FROM barrier_decr($1, $2::text::jsonb, $3)";

pub fn decr(
    client: &mut impl postgres::GenericClient,
    id: &str,
    result: Option<&serde_json::Value>,
    slot: Option<i32>,
) -> Result<Answer, postgres::Error> {
    let result = result.map(|value| value.to_string());
    let row = client.query_one(DECR, &[&id, &result, &slot])?;
    let results: Option<String> = row.get(2);
    Ok(Answer {
        status: row.get(0),
        remaining: row.get(1),
        results: results.map(|text| serde_json::from_str(&text).expect("results are JSON")),
    })
}

/// A small seeded generator (splitmix64), so every shuffle is reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// The seed for this run: `PG_BARRIER_TEST_SEED` if set, else fixed. Printed so a failure can be
/// replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("PG_BARRIER_TEST_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_261_129);
    eprintln!("PG_BARRIER_TEST_SEED={seed}");
    seed
}

/// The state tables' storage is sound: amcheck's `verify_heapam` finds no corrupt tuple in any
/// table (nor its TOAST), and `bt_index_check` with `heapallindexed` finds every index holding
/// exactly its table's rows in a well-formed tree.
pub fn assert_storage_whole(client: &mut Client) {
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        .unwrap();
    let corrupt = client
        .query(
            "SELECT format('%s block %s offset %s: %s', c.relname, v.blkno, v.offnum, v.msg)
               FROM pg_class c, verify_heapam(c.oid, check_toast => true) v
              WHERE c.relnamespace = 'barrier_internal'::regnamespace AND c.relkind = 'r'",
            &[],
        )
        .unwrap();
    let corrupt: Vec<String> = corrupt.iter().map(|row| row.get(0)).collect();
    assert!(corrupt.is_empty(), "corrupt heap tuples: {corrupt:#?}");
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class
              WHERE relnamespace = 'barrier_internal'::regnamespace AND relkind = 'r'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(tables >= 2, "checked {tables} tables");
    let checked = client
        .query(
            "SELECT bt_index_check(i.indexrelid, true)::text
               FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
              WHERE t.relnamespace = 'barrier_internal'::regnamespace",
            &[],
        )
        .unwrap_or_else(|error| panic!("an index of the state tables is damaged: {error}"));
    assert!(checked.len() >= 7, "checked {} indexes", checked.len());
}

/// A barrier as stored: its status, remaining count and recorded results (as jsonb text, or
/// `None` when freed); panics if there is no such barrier.
pub fn stored(client: &mut Client, id: &str) -> (String, i32, Option<String>) {
    let row = client
        .query_one(
            "SELECT status, remaining, barrier_results($1)::text FROM barrier_status($1)",
            &[&id],
        )
        .unwrap_or_else(|e| panic!("barrier {id}: {e}"));
    (row.get(0), row.get(1), row.get(2))
}

/// pg_dump of `source`, restored into `target`, with the installation's own tools.
pub fn dump_into(source: &str, target: &str) {
    let mut admin = connect();
    let bindir: String = admin
        .query_one("SELECT setting FROM pg_config WHERE name = 'BINDIR'", &[])
        .unwrap()
        .get(0);
    let port = server_port().to_string();
    let user = pgrx_tests::get_pg_user();
    let archive = std::env::temp_dir().join(format!("pg_barrier_{source}.dump"));
    for (tool, args) in [
        (
            "pg_dump",
            vec!["-Fc", "-f", archive.to_str().unwrap(), source],
        ),
        (
            "pg_restore",
            vec!["--exit-on-error", "-d", target, archive.to_str().unwrap()],
        ),
    ] {
        let output = std::process::Command::new(format!("{bindir}/{tool}"))
            .args(["-h", "localhost", "-p", &port, "-U", &user])
            .args(&args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::remove_file(&archive).ok();
}

/// Blocks until session `pid` waits on a lock; fails after 30 s.
pub fn wait_until_blocked(admin: &mut postgres::Client, pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: bool = admin
            .query_one(
                "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get(0);
        if waiting {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "session {pid} never waited on a lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The server process of a session.
pub fn backend_pid(client: &mut postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

/// How many reports this session's backend counted on the Rust build's fast path (a function of
/// the test build: `tests.fast_reports()`).
#[allow(dead_code)]
pub fn fast_reports(client: &mut postgres::Client) -> i64 {
    client
        .query_one("SELECT tests.fast_reports()", &[])
        .unwrap()
        .get(0)
}

/// Every column of a `barrier_decr` or `barrier_seal` answer (docs/shapes.md). The columns of
/// the completion (`results` to `missing_slots`) are NULL unless the call completed the barrier.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: String,
    pub remaining: Option<i32>,
    pub results: Option<serde_json::Value>,
    pub callback: Option<serde_json::Value>,
    pub failed_slots: Option<Vec<i32>>,
    pub errors: Option<serde_json::Value>,
    pub missing_slots: Option<Vec<i32>>,
}

impl Reply {
    /// An answer that hands out no completion: a status and `remaining`, nothing else.
    pub fn only(status: &str, remaining: i32) -> Reply {
        Reply {
            status: status.into(),
            remaining: Some(remaining),
            results: None,
            callback: None,
            failed_slots: None,
            errors: None,
            missing_slots: None,
        }
    }

    /// The answer that completes a barrier.
    pub fn completion(
        status: &str,
        remaining: i32,
        results: serde_json::Value,
        callback: Option<serde_json::Value>,
        failed_slots: &[i32],
        errors: serde_json::Value,
        missing_slots: &[i32],
    ) -> Reply {
        Reply {
            status: status.into(),
            remaining: Some(remaining),
            results: Some(results),
            callback,
            failed_slots: Some(failed_slots.to_vec()),
            errors: Some(errors),
            missing_slots: Some(missing_slots.to_vec()),
        }
    }

    /// Whether this answer completed the barrier (with or without failures).
    pub fn completed(&self) -> bool {
        self.status == "complete" || self.status == "complete_with_failures"
    }
}

const REPLY_COLUMNS: &str =
    "status, remaining, results::text, callback::text, failed_slots, errors::text, missing_slots";

fn json_column(row: &postgres::Row, index: usize) -> Option<serde_json::Value> {
    row.get::<_, Option<String>>(index)
        .map(|text| serde_json::from_str(&text).expect("jsonb text is JSON"))
}

fn reply(row: &postgres::Row) -> Reply {
    Reply {
        status: row.get(0),
        remaining: row.get(1),
        results: json_column(row, 2),
        callback: json_column(row, 3),
        failed_slots: row.get(4),
        errors: json_column(row, 5),
        missing_slots: row.get(6),
    }
}

/// `barrier_decr(id, result, slot, failed)`, every column of its answer.
pub fn report(
    client: &mut impl postgres::GenericClient,
    id: &str,
    result: Option<&serde_json::Value>,
    slot: Option<i32>,
    failed: bool,
) -> Result<Reply, postgres::Error> {
    let result = result.map(|value| value.to_string());
    let sql = format!("SELECT {REPLY_COLUMNS} FROM barrier_decr($1, $2::text::jsonb, $3, $4)");
    let row = client.query_one(&sql, &[&id, &result, &slot, &failed])?;
    Ok(reply(&row))
}

/// `barrier_seal(id)`, every column of its answer.
pub fn seal(client: &mut impl postgres::GenericClient, id: &str) -> Result<Reply, postgres::Error> {
    let sql = format!("SELECT {REPLY_COLUMNS} FROM barrier_seal($1)");
    let row = client.query_one(&sql, &[&id])?;
    Ok(reply(&row))
}

/// A completion as `barrier_take` and `barrier_completions` hand it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Handed {
    pub status: String,
    pub results: serde_json::Value,
    pub callback: Option<serde_json::Value>,
    pub failed_slots: Vec<i32>,
    pub errors: serde_json::Value,
    pub missing_slots: Vec<i32>,
}

impl Handed {
    pub fn new(
        status: &str,
        results: serde_json::Value,
        callback: Option<serde_json::Value>,
        failed_slots: &[i32],
        errors: serde_json::Value,
        missing_slots: &[i32],
    ) -> Handed {
        Handed {
            status: status.into(),
            results,
            callback,
            failed_slots: failed_slots.to_vec(),
            errors,
            missing_slots: missing_slots.to_vec(),
        }
    }
}

/// `barrier_take(id)`: the completion, if this call got it.
pub fn take(
    client: &mut impl postgres::GenericClient,
    id: &str,
) -> Result<Option<Handed>, postgres::Error> {
    let row = client.query_opt(
        "SELECT status, results::text, callback::text, failed_slots, errors::text, missing_slots
           FROM barrier_take($1)",
        &[&id],
    )?;
    Ok(row.map(|row| Handed {
        status: row.get(0),
        results: json_column(&row, 1).expect("a completion has results"),
        callback: json_column(&row, 2),
        failed_slots: row.get(3),
        errors: json_column(&row, 4).expect("a completion has errors"),
        missing_slots: row.get(5),
    }))
}

/// `barrier_completions(channel, max_rows)`: the completions claimed, by id.
pub fn claim(
    client: &mut impl postgres::GenericClient,
    channel: &str,
    max_rows: i32,
) -> Result<Vec<(String, Handed)>, postgres::Error> {
    let rows = client.query(
        "SELECT id, status, results::text, callback::text, failed_slots, errors::text,
                missing_slots
           FROM barrier_completions($1, $2)",
        &[&channel, &max_rows],
    )?;
    Ok(rows
        .iter()
        .map(|row| {
            let handed = Handed {
                status: row.get(1),
                results: json_column(row, 2).expect("a completion has results"),
                callback: json_column(row, 3),
                failed_slots: row.get(4),
                errors: json_column(row, 5).expect("a completion has errors"),
                missing_slots: row.get(6),
            };
            (row.get(0), handed)
        })
        .collect())
}

/// What a nested barrier reports into its parent's slot when its round completes or its expiry
/// delivers (docs/shapes.md, "Nested barriers").
pub fn handed_up(
    id: &str,
    round: i64,
    status: &str,
    results: serde_json::Value,
    failed_slots: &[i32],
    errors: serde_json::Value,
    missing_slots: &[i32],
) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "round": round,
        "status": status,
        "results": results,
        "failed_slots": failed_slots,
        "errors": errors,
        "missing_slots": missing_slots,
    })
}

/// What a nested barrier reports into its parent's slot when its round is aborted or its
/// expiry discards its results.
pub fn ended_up(id: &str, round: i64, status: &str, reason: Option<&str>) -> serde_json::Value {
    serde_json::json!({"id": id, "round": round, "status": status, "reason": reason})
}
