//! Bad and odd arguments through every function of the SQL surface.
//!
//! The table test sends each input of a fixed table and expects either its documented SQLSTATE,
//! with every row of this test's barriers unchanged, or the documented answer: odd but valid ids,
//! values at their limits, NULLs that mean "the default". The fuzz test sends seeded random
//! arguments to random functions for a while and checks every error and every barrier after each
//! call. Values always travel as query parameters, never in SQL text: jsonb and interval values
//! as text, cast in the SQL, so a value PostgreSQL cannot parse fails in that cast.

use std::collections::BTreeMap;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, GenericClient, Row};

use crate::support::{
    assert_no_backend_crashed, connect, connect_as, decr, edition, seed, sqlstate, Edition, Rng,
};

// SQLSTATEs pg_barrier raises for bad arguments (docs/api.md, "Errors").
const NULL_VALUE: &str = "22004";
const INVALID: &str = "22023";
const TOO_LONG: &str = "22001";
const TOO_LARGE: &str = "54000";
const DUPLICATE: &str = "42710";
const WRONG_STATE: &str = "55000";
const UNDEFINED: &str = "42704";
const NOT_OWNER: &str = "42501";
/// The most slots of a quorum or a delivering expiry (docs/shapes.md).
const MAX_PADDED_SLOTS: i32 = 10_000_000;
/// A barrier enqueued as its own ancestor (docs/shapes.md).
const INVALID_RECURSION: &str = "42P19";

// SQLSTATEs of PostgreSQL's own input functions, raised while an argument's text is converted,
// before pg_barrier is called.
/// Text with a NUL byte (`text` cannot hold one).
const BAD_ENCODING: &str = "22021";
/// A JSON number beyond `numeric`'s range.
const NUMERIC_OVERFLOW: &str = "22003";
/// jsonb nested deeper than `max_stack_depth` lets its parser go.
const TOO_DEEP: &str = "54001";
/// Malformed JSON.
const BAD_JSON: &str = "22P02";
/// `\u0000` in a JSON string (jsonb cannot hold it).
const BAD_JSON_ESCAPE: &str = "22P05";
/// Interval text that does not parse.
const BAD_INTERVAL: &str = "22007";
/// Interval text beyond the interval range.
const INTERVAL_OVERFLOW: &str = "22015";
/// Interval text with a field beyond its range.
const DATETIME_OVERFLOW: &str = "22008";

/// Every SQLSTATE a call may fail with because of its arguments or the barrier's state: the
/// table of errors in docs/api.md (a NULL, a value out of its domain, a text over its limit, a
/// live barrier with other arguments, a jsonb over `max_result_bytes`, a finished or unknown
/// barrier given to `barrier_add`, another role's barrier), and those of docs/shapes.md (a
/// parent that would make the barrier its own ancestor; nesting too deep cannot happen among
/// the fuzz's few ids).
const DOCUMENTED: &[&str] = &[
    NULL_VALUE,
    INVALID,
    TOO_LONG,
    DUPLICATE,
    TOO_LARGE,
    WRONG_STATE,
    UNDEFINED,
    NOT_OWNER,
    INVALID_RECURSION,
];

/// SQLSTATEs of PostgreSQL's input functions, raised before pg_barrier runs. The fuzz accepts
/// one only if casting some argument of the call alone fails the same way.
const INPUT_ERRORS: &[&str] = &[
    BAD_ENCODING,
    NUMERIC_OVERFLOW,
    TOO_DEEP,
    BAD_JSON,
    BAD_JSON_ESCAPE,
    BAD_INTERVAL,
    INTERVAL_OVERFLOW,
    DATETIME_OVERFLOW,
];

/// Never an answer to an argument: an internal error, the unspecific data exception, a system
/// error.
fn is_forbidden(code: &str) -> bool {
    code == "XX000" || code == "22000" || code.starts_with("58")
}

// The calls. Positional parameters with explicit types; a text parameter is cast where the
// function takes jsonb or interval. Each returns its first column as text.
const ENQUEUE: &str = "SELECT barrier_enqueue($1::text, $2::int4, $3::text::jsonb, \
     $4::text::interval, $5::text, $6::bool, $7::text::interval, $8::int4, $9::int4, $10::bool, \
     $11::text, $12::text, $13::int4)";
const ENQUEUE_STORED: &str = "SELECT barrier_enqueue($1::text, $2::int4, \
     (SELECT j FROM inputs_compressed), channel => $3::text)";
const DECR: &str = "SELECT status || ' ' || coalesce(remaining::text, 'null') \
     FROM barrier_decr($1::text, $2::text::jsonb, $3::int4)";
const DECR_FAILED: &str = "SELECT status || ' ' || coalesce(remaining::text, 'null') \
     FROM barrier_decr($1::text, $2::text::jsonb, $3::int4, $4::bool)";
const SEAL: &str = "SELECT status || ' ' || coalesce(remaining::text, 'null') \
     FROM barrier_seal($1::text)";
const PENDING_SLOTS: &str = "SELECT slot::text FROM barrier_pending_slots($1::text)";
const PENDING_SLOTS_PAGE: &str =
    "SELECT slot::text FROM barrier_pending_slots($1::text, $2::int4, $3::int4)";
/// The shape as `barrier_status` shows it: failures held, sealed, quorum.
const STATUS_SHAPE: &str = "SELECT concat_ws(' ', status, failed, sealed, \
     coalesce(need::text, 'no-need')) FROM barrier_status($1::text)";
const DECR_STORED: &str = "SELECT status || ' ' || coalesce(remaining::text, 'null') \
     FROM barrier_decr($1::text, (SELECT j FROM inputs_compressed), $2::int4)";
const ABORT: &str = "SELECT barrier_abort($1::text, $2::text)";
const ADD: &str = "SELECT barrier_add($1::text, $2::int4)::text";
const STATUS: &str =
    "SELECT status || ' ' || expected || ' ' || remaining FROM barrier_status($1::text)";
const STATUS_ID: &str = "SELECT id FROM barrier_status($1::text)";
const STATUS_REASON: &str = "SELECT reason FROM barrier_status($1::text)";
const STATUS_CHANNEL: &str = "SELECT channel FROM barrier_status($1::text)";
const STATUS_CALLBACK_IS: &str =
    "SELECT (callback = $2::text::jsonb)::text FROM barrier_status($1::text)";
const STATUS_SPEC: &str = "SELECT concat_ws(' ', status, expected, remaining, channel, \
     coalesce(callback::text, 'no-callback'), expires_at - created_at) \
     FROM barrier_status($1::text)";
const RESULTS: &str = "SELECT barrier_results($1::text)::text";
const RESULTS_ARE: &str = "SELECT (barrier_results($1::text) = $2::text::jsonb)::text";
const TAKE: &str = "SELECT results::text FROM barrier_take($1::text)";
const COMPLETIONS: &str = "SELECT id FROM barrier_completions($1::text, $2::int4)";
const SWEEP: &str = "SELECT 'swept'::text FROM barrier_sweep($1::int4)";
const STATS: &str = "SELECT 'counted'::text FROM barrier_stats()";
const SET_CHANNEL: &str = "SELECT set_config('pg_barrier.channel', $1::text, false)";

/// A fingerprint of every state row whose id starts with `$1`, and whether one of those barriers
/// is pending and due (or nearly) for the background sweeper, which may then change it at any
/// moment; or one of the fuzz's nested barriers is, whose expiry reports into its parent,
/// whatever the parent's id.
const DIGEST: &str = "
SELECT (SELECT md5(coalesce(string_agg(b::text, '|' ORDER BY b::text), ''))
          FROM barrier_internal.barrier b WHERE starts_with(b.id, $1::text))
    || (SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY s::text), ''))
          FROM barrier_internal.barrier_spec s WHERE starts_with(s.id, $1::text))
    || (SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), ''))
          FROM barrier_internal.result r WHERE starts_with(r.barrier_id, $1::text)),
       EXISTS (SELECT FROM barrier_internal.barrier b
                 JOIN barrier_internal.barrier_spec s ON s.id = b.id
                WHERE (starts_with(b.id, $1::text)
                       OR (s.parent IS NOT NULL AND starts_with(b.id, 'fuzz:')))
                  AND b.status = 'pending'
                  AND (b.expires_at < statement_timestamp() + interval '5 seconds'
                       OR b.progress_at + s.stall_timeout
                          < statement_timestamp() + interval '5 seconds'))";

/// The size of a jsonb value as validate.rs measures it: the uncompressed datum, header
/// included, which is what `pg_column_size` reports for a value that is not stored in a table.
const JSONB_SIZE: &str = "SELECT pg_column_size($1::text::jsonb)";

/// One argument of a call, sent as a parameter of its SQL type. jsonb and interval values go
/// as text; the fuzz keeps them apart to re-check a failed cast on its own.
#[derive(Clone, Debug)]
enum Arg {
    Text(Option<String>),
    Json(Option<String>),
    Interval(Option<String>),
    Int(Option<i32>),
    Bool(Option<bool>),
}

impl Arg {
    /// The value as a query parameter.
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Arg::Text(value) | Arg::Json(value) | Arg::Interval(value) => value,
            Arg::Int(value) => value,
            Arg::Bool(value) => value,
        }
    }

    /// The text of a text, jsonb or interval argument.
    fn text(&self) -> Option<&str> {
        match self {
            Arg::Text(value) | Arg::Json(value) | Arg::Interval(value) => value.as_deref(),
            Arg::Int(_) | Arg::Bool(_) => None,
        }
    }

    /// A query that converts this argument alone as the calls do.
    fn cast_alone(&self) -> Option<&'static str> {
        match self {
            Arg::Text(Some(_)) => Some("SELECT $1::text IS NULL"),
            Arg::Json(Some(_)) => Some("SELECT $1::text::jsonb IS NULL"),
            Arg::Interval(Some(_)) => Some("SELECT $1::text::interval IS NULL"),
            _ => None,
        }
    }
}

const NULL_TEXT: Arg = Arg::Text(None);
const NULL_INT: Arg = Arg::Int(None);
const NULL_BOOL: Arg = Arg::Bool(None);

/// Values that can be passed as an argument.
trait IntoArg {
    /// The value as an argument.
    fn into_arg(self) -> Arg;
}

impl IntoArg for Arg {
    fn into_arg(self) -> Arg {
        self
    }
}

impl IntoArg for &str {
    fn into_arg(self) -> Arg {
        Arg::Text(Some(self.to_string()))
    }
}

impl IntoArg for String {
    fn into_arg(self) -> Arg {
        Arg::Text(Some(self))
    }
}

impl IntoArg for i32 {
    fn into_arg(self) -> Arg {
        Arg::Int(Some(self))
    }
}

impl IntoArg for Option<i32> {
    fn into_arg(self) -> Arg {
        Arg::Int(self)
    }
}

impl IntoArg for bool {
    fn into_arg(self) -> Arg {
        Arg::Bool(Some(self))
    }
}

/// An integer argument.
fn int(value: i32) -> Arg {
    Arg::Int(Some(value))
}

/// The arguments of one call, in order.
macro_rules! args {
    ($($arg:expr),* $(,)?) => {
        vec![$(IntoArg::into_arg($arg)),*]
    };
}

/// Runs `sql` with `args` as its parameters.
fn query(
    client: &mut impl GenericClient,
    sql: &str,
    args: &[Arg],
) -> Result<Vec<Row>, postgres::Error> {
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::param).collect();
    client.query(sql, &params)
}

/// The digest of the rows under `prefix` (see `DIGEST`), and whether one of them is due.
fn digest(client: &mut impl GenericClient, prefix: &str) -> (String, bool) {
    let row = client
        .query_one(DIGEST, &[&prefix])
        .unwrap_or_else(|error| panic!("digest of {prefix:?}: {error}"));
    (row.get(0), row.get(1))
}

/// Deletes the state rows under `prefix`, left by an earlier run against the same database.
fn forget(client: &mut Client, prefix: &str) {
    for statement in [
        "DELETE FROM barrier_internal.result WHERE starts_with(barrier_id, $1::text)",
        "DELETE FROM barrier_internal.barrier_spec WHERE starts_with(id, $1::text)",
        "DELETE FROM barrier_internal.barrier WHERE starts_with(id, $1::text)",
    ] {
        client.execute(statement, &[&prefix]).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/// Every id of the table test starts with this.
const PREFIX: &str = "inputs:";
/// The channel of the table's barriers, so no other test hears them.
const CHANNEL: &str = "inputs_channel";
/// The channel of the one barrier `barrier_completions` hands out.
const CLAIM_CHANNEL: &str = "inputs_claim";

// Barriers in known states, made before the table runs.
/// Never created: a refused enqueue of it must leave no row.
const FRESH: &str = "inputs:fresh";
/// Never created.
const UNKNOWN: &str = "inputs:unknown";
/// 3 slots; slot 0 reported.
const SLOTTED: &str = "inputs:slotted";
/// 1000 tasks without slots; one reported.
const UNSLOTTED: &str = "inputs:unslotted";
/// 1 slot, reported: complete and not taken.
const COMPLETE: &str = "inputs:complete";
/// 2 tasks, aborted.
const ABORTED: &str = "inputs:aborted";
/// 2 tasks, past its 1 ms ttl, and stored as expired.
const EXPIRED: &str = "inputs:expired";
/// `i32::MAX` tasks.
const FULL: &str = "inputs:full";
/// 2 tasks, enqueued by `inputs_owner`.
const FOREIGN: &str = "inputs:foreign";
/// Completes on enqueue (0 tasks) on `CLAIM_CHANNEL`.
const CLAIMED: &str = "inputs:claimed";

const ROLES: &str = "
    DO $$ BEGIN CREATE ROLE inputs_owner; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    DO $$ BEGIN CREATE ROLE inputs_stranger; EXCEPTION WHEN duplicate_object THEN NULL; END $$;";
const AS_STRANGER: &str = "SET ROLE inputs_stranger";
/// 1 MB would make every at-the-limit case a megabyte; the setting is the superuser's.
const SMALL_LIMIT: &str = "SET pg_barrier.max_result_bytes = '1kB'";
const RESULT_LIMIT: i32 = 1024;
const RAISE_LIMIT: &str = "SET pg_barrier.max_result_bytes = '1MB'";
/// Undoes any case's setup.
const RESTORE: &str = "RESET ROLE; RESET pg_barrier.channel; \
     SET pg_barrier.max_result_bytes = '1kB'";
/// The longest channel name is 63 bytes.
const SET_CHANNEL_64: &str = concat!(
    "SET pg_barrier.channel = '",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "'"
);
/// Numbers that strain a JSON reader: beyond f64 precision or range, negative zero.
const ODD_NUMBERS: &str = "[1e308, -1e308, -0, 0.0, 1e-400, 123456789012345678901234567890, 1E+2]";

/// Odd but valid id tails: each is accepted and comes back byte for byte.
const ODD_IDS: &[&str] = &[
    "e\u{301}\u{302}\u{303}\u{304}\u{305}",
    "\u{301}starts with a combining mark",
    "\u{202E}fdp.exe",
    "\u{5E9}\u{5DC}\u{5D5}\u{5DD} \u{645}\u{631}\u{62D}\u{628}\u{627}",
    "\u{1F600}",
    "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
    "\u{1F1EB}\u{1F1F7}",
    "\u{FFFD}\u{FFFE}\u{FFFF}",
    "\u{10FFFF}",
    "\u{FEFF}bom and zero\u{200B}width",
    "'",
    "''",
    "\"",
    "\\",
    "\\\\",
    "\\x00",
    "%",
    "_",
    "%_\\%",
    "\n",
    "\r\n",
    "\t",
    "$$",
    "$q$ $$ $q$",
    "'; DROP TABLE barrier_internal.barrier; --",
    "\u{1}\u{1F}\u{7F}",
    "  spaces around  ",
    "{\"json\": [1, 2]}",
    "NULL",
    "%s %d %n",
];

/// What a row of the table must do.
#[derive(Debug)]
enum Expect {
    /// Fail with this SQLSTATE and change nothing.
    Fails(&'static str),
    /// Succeed with these values: the first column of each row, as text.
    Rows(Vec<Option<String>>),
}

fn fails(code: &'static str) -> Expect {
    Expect::Fails(code)
}

fn row(value: impl Into<String>) -> Expect {
    Expect::Rows(vec![Some(value.into())])
}

fn null_row() -> Expect {
    Expect::Rows(vec![None])
}

fn no_row() -> Expect {
    Expect::Rows(Vec::new())
}

/// One row of the table.
struct Case {
    label: String,
    sql: &'static str,
    args: Vec<Arg>,
    /// Statements run first in the same session (a role, a setting); `RESTORE` undoes them.
    setup: Option<&'static str>,
    /// Run in a transaction that is rolled back: for an accepted barrier that the sweeper would
    /// expire at once, changing state under the digests of the rows after it.
    rolled_back: bool,
    expect: Expect,
}

/// A row; its label is prefixed with the function it calls.
fn case(label: &str, sql: &'static str, args: Vec<Arg>, expect: Expect) -> Case {
    Case {
        label: format!("{}: {label}", function_of(sql)),
        sql,
        args,
        setup: None,
        rolled_back: false,
        expect,
    }
}

impl Case {
    fn with_setup(mut self, setup: &'static str) -> Self {
        self.setup = Some(setup);
        self
    }

    fn by_stranger(self) -> Self {
        self.with_setup(AS_STRANGER)
    }

    fn rolled_back(mut self) -> Self {
        self.rolled_back = true;
        self
    }
}

/// The pg_barrier function a statement calls.
fn function_of(sql: &'static str) -> &'static str {
    let start = sql.find("barrier_").expect("a pg_barrier call");
    let end = start + sql[start..].find('(').expect("a call");
    &sql[start..end]
}

/// One `Enqueue` method per named field, each returning the call with that argument replaced.
macro_rules! setters {
    ($($field:ident),*) => {
        $(
            fn $field(self, value: impl IntoArg) -> Self {
                Enqueue {
                    $field: value.into_arg(),
                    ..self
                }
            }
        )*
    };
}

/// `barrier_enqueue`'s thirteen arguments, positionally; `new` makes a valid call.
struct Enqueue {
    id: Arg,
    expected: Arg,
    callback: Arg,
    ttl: Arg,
    channel: Arg,
    replace: Arg,
    stall_timeout: Arg,
    max_failures: Arg,
    need: Arg,
    sealed: Arg,
    on_expiry: Arg,
    parent: Arg,
    parent_slot: Arg,
}

impl Enqueue {
    fn new(id: impl IntoArg, expected: i32) -> Self {
        Enqueue {
            id: id.into_arg(),
            expected: expected.into_arg(),
            callback: NULL_TEXT,
            ttl: NULL_TEXT,
            channel: CHANNEL.into_arg(),
            replace: false.into_arg(),
            stall_timeout: NULL_TEXT,
            max_failures: NULL_INT,
            need: NULL_INT,
            sealed: true.into_arg(),
            on_expiry: "discard".into_arg(),
            parent: NULL_TEXT,
            parent_slot: NULL_INT,
        }
    }

    setters!(
        id,
        expected,
        callback,
        ttl,
        channel,
        replace,
        stall_timeout,
        max_failures,
        need,
        sealed,
        on_expiry,
        parent,
        parent_slot
    );

    /// A child reporting into `slot` of `parent`.
    fn nested(self, parent: impl IntoArg, slot: i32) -> Self {
        self.parent(parent).parent_slot(slot)
    }

    fn args(self) -> Vec<Arg> {
        vec![
            self.id,
            self.expected,
            self.callback,
            self.ttl,
            self.channel,
            self.replace,
            self.stall_timeout,
            self.max_failures,
            self.need,
            self.sealed,
            self.on_expiry,
            self.parent,
            self.parent_slot,
        ]
    }
}

/// A `barrier_enqueue` row.
fn enqueue(label: &str, call: Enqueue, expect: Expect) -> Case {
    case(label, ENQUEUE, call.args(), expect)
}

/// An id of exactly `bytes` bytes: the prefix, as many `unit`s as fit, then `x`s.
fn id_of_bytes(unit: char, bytes: usize) -> String {
    let units = (bytes - PREFIX.len()) / unit.len_utf8();
    let mut id = format!("{PREFIX}{}", unit.to_string().repeat(units));
    id.push_str(&"x".repeat(bytes - id.len()));
    assert_eq!(id.len(), bytes);
    id
}

/// `depth` arrays, each the only element of the one around it.
fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// A JSON string whose jsonb is exactly `bytes` bytes, measured by the server.
fn jsonb_of_size(client: &mut Client, bytes: i32) -> String {
    let empty: i32 = client.query_one(JSONB_SIZE, &[&"\"\""]).unwrap().get(0);
    let length = usize::try_from(bytes - empty).unwrap();
    let text = serde_json::Value::String("x".repeat(length)).to_string();
    let measured: i32 = client.query_one(JSONB_SIZE, &[&text]).unwrap().get(0);
    assert_eq!(measured, bytes, "a string of {length} bytes");
    text
}

/// Results and callbacks at `max_result_bytes` and one byte over it.
struct Sizes {
    at_limit: String,
    over_limit: String,
}

/// The roles, the session settings and the barriers the table works on, each in a known state.
fn prepare(client: &mut Client) -> Sizes {
    forget(client, PREFIX);
    client.batch_execute(ROLES).unwrap();
    client.batch_execute(SMALL_LIMIT).unwrap();
    let limit: String = client
        .query_one("SHOW pg_barrier.max_result_bytes", &[])
        .unwrap()
        .get(0);
    assert_eq!(limit, "1kB");
    // Stored compressed, far below the limit; its uncompressed size is what counts.
    client
        .batch_execute(
            "CREATE TEMP TABLE inputs_compressed AS SELECT to_jsonb(repeat('x', 4000)) AS j",
        )
        .unwrap();
    let compressed: bool = client
        .query_one(
            "SELECT pg_column_size(j) < $1 AND pg_column_size(j::text::jsonb) > $1
               FROM inputs_compressed",
            &[&RESULT_LIMIT],
        )
        .unwrap()
        .get(0);
    assert!(compressed, "the stored value is compressed below the limit");

    for (id, expected) in [
        (SLOTTED, 3),
        (UNSLOTTED, 1000),
        (COMPLETE, 1),
        (ABORTED, 2),
        (FULL, i32::MAX),
    ] {
        enqueue_fixture(client, Enqueue::new(id, expected));
    }
    let expiring = Enqueue::new(EXPIRED, 2).ttl("1 millisecond");
    enqueue_fixture(client, expiring);
    assert_eq!(
        decr(client, SLOTTED, None, Some(0)).unwrap().status,
        "pending"
    );
    assert_eq!(
        decr(client, UNSLOTTED, None, None).unwrap().status,
        "pending"
    );
    assert_eq!(
        decr(client, COMPLETE, None, Some(0)).unwrap().status,
        "complete"
    );
    let aborted = query(client, ABORT, &[ABORTED.into_arg(), NULL_TEXT]).unwrap();
    assert_eq!(aborted[0].get::<_, String>(0), "aborted");
    thread::sleep(Duration::from_millis(20));
    // Touching it stores the expiry now, so the background sweeper has nothing left to change.
    assert_eq!(decr(client, EXPIRED, None, None).unwrap().status, "expired");
    client.batch_execute("SET ROLE inputs_owner").unwrap();
    enqueue_fixture(client, Enqueue::new(FOREIGN, 2));
    client.batch_execute(RESTORE).unwrap();

    Sizes {
        at_limit: jsonb_of_size(client, RESULT_LIMIT),
        over_limit: jsonb_of_size(client, RESULT_LIMIT + 1),
    }
}

/// Enqueues a barrier the table relies on.
fn enqueue_fixture(client: &mut Client, call: Enqueue) {
    let rows = query(client, ENQUEUE, &call.args()).unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "pending");
}

/// The table, in the order it runs: accepted calls change state that later rows expect.
fn table(sizes: &Sizes, server_version: i32) -> Vec<Case> {
    let mut cases = Vec::new();
    null_arguments(&mut cases);
    ids(&mut cases);
    odd_ids(&mut cases);
    enqueue_values(&mut cases, sizes);
    intervals(&mut cases, server_version);
    channels(&mut cases);
    decr_values(&mut cases, sizes);
    abort_values(&mut cases);
    add_values(&mut cases);
    readers(&mut cases, sizes);
    shape_values(&mut cases);
    cases
}

/// NULL in every argument of every function: refused where the argument is required, the
/// documented default or meaning where NULL is allowed.
fn null_arguments(cases: &mut Vec<Case>) {
    for (label, call) in [
        ("id NULL", Enqueue::new(FRESH, 1).id(NULL_TEXT)),
        ("expected NULL", Enqueue::new(FRESH, 1).expected(NULL_INT)),
        ("replace NULL", Enqueue::new(FRESH, 1).replace(NULL_BOOL)),
    ] {
        cases.push(enqueue(label, call, fails(NULL_VALUE)));
    }
    // A NULL callback is none; a NULL ttl, channel or stall_timeout takes the setting.
    let spec = |channel: &str, callback: &str, ttl: &str| {
        row(format!("pending 1 1 {channel} {callback} {ttl}"))
    };
    let defaults = [
        (
            "callback NULL",
            Enqueue::new("inputs:null:callback", 1),
            spec(CHANNEL, "no-callback", "06:00:00"),
        ),
        (
            "ttl NULL: pg_barrier.default_ttl",
            Enqueue::new("inputs:null:ttl", 1).callback("{\"next\": 1}"),
            spec(CHANNEL, "{\"next\": 1}", "06:00:00"),
        ),
        (
            "channel NULL: pg_barrier.channel",
            Enqueue::new("inputs:null:channel", 1).channel(NULL_TEXT),
            spec("pg_barrier", "no-callback", "06:00:00"),
        ),
        (
            "stall_timeout NULL: pg_barrier.stall_timeout",
            Enqueue::new("inputs:null:stall", 1).ttl("1 hour"),
            spec(CHANNEL, "no-callback", "01:00:00"),
        ),
    ];
    for (label, call, stored) in defaults {
        let id = call.id.text().unwrap().to_string();
        cases.push(enqueue(label, call, row("pending")));
        cases.push(case(
            &format!("{label}, as stored"),
            STATUS_SPEC,
            args![id],
            stored,
        ));
    }
    cases.push(case(
        "id NULL",
        DECR,
        args![NULL_TEXT, NULL_TEXT, NULL_INT],
        fails(NULL_VALUE),
    ));
    // A NULL result is JSON null in the results; a NULL slot is an unslotted report: both are
    // in decr_values, against barriers in known states.
    cases.push(case(
        "id NULL",
        ABORT,
        args![NULL_TEXT, NULL_TEXT],
        fails(NULL_VALUE),
    ));
    let id = "inputs:null:reason";
    cases.push(enqueue(
        "for a NULL reason",
        Enqueue::new(id, 1),
        row("pending"),
    ));
    cases.push(case(
        "reason NULL",
        ABORT,
        args![id, NULL_TEXT],
        row("aborted"),
    ));
    cases.push(case(
        "reason NULL, as stored",
        STATUS_REASON,
        args![id],
        null_row(),
    ));
    cases.push(case("id NULL", ADD, args![NULL_TEXT, 1], fails(NULL_VALUE)));
    cases.push(case(
        "extra NULL",
        ADD,
        args![SLOTTED, NULL_INT],
        fails(NULL_VALUE),
    ));
    for sql in [STATUS, RESULTS, TAKE] {
        cases.push(case("id NULL", sql, args![NULL_TEXT], fails(NULL_VALUE)));
    }
    cases.push(
        case(
            "channel NULL: any channel",
            COMPLETIONS,
            args![NULL_TEXT, 1],
            no_row(),
        )
        .by_stranger(),
    );
    cases.push(case(
        "max_rows NULL",
        COMPLETIONS,
        args![CLAIM_CHANNEL, NULL_INT],
        fails(NULL_VALUE),
    ));
    cases.push(case(
        "max_rows NULL",
        SWEEP,
        args![NULL_INT],
        fails(NULL_VALUE),
    ));
    cases.push(case("no arguments", STATS, args![], row("counted")));
}

/// The functions that take an id, with valid arguments after it.
fn id_functions() -> Vec<(&'static str, Vec<Arg>)> {
    vec![
        (
            ENQUEUE,
            args![
                1, NULL_TEXT, NULL_TEXT, CHANNEL, false, NULL_TEXT, NULL_INT, NULL_INT, true,
                "discard", NULL_TEXT, NULL_INT
            ],
        ),
        (DECR, args![NULL_TEXT, NULL_INT]),
        (DECR_FAILED, args![NULL_TEXT, NULL_INT, true]),
        (SEAL, args![]),
        (PENDING_SLOTS, args![]),
        (ABORT, args![NULL_TEXT]),
        (ADD, args![1]),
        (STATUS, args![]),
        (RESULTS, args![]),
        (TAKE, args![]),
    ]
}

/// Empty, too long (counted in bytes, not characters) and NUL-carrying ids through every
/// function that takes an id; ids of exactly 512 bytes, accepted by each.
fn ids(cases: &mut Vec<Case>) {
    let bad_ids = [
        ("empty", String::new(), INVALID),
        ("of 513 bytes", id_of_bytes('x', 513), TOO_LONG),
        (
            "of 513 bytes in 3-byte characters",
            id_of_bytes('\u{20AC}', 513),
            TOO_LONG,
        ),
        ("of 1 MB", id_of_bytes('x', 1 << 20), TOO_LONG),
        (
            "with a NUL: not text",
            format!("{PREFIX}nul\0id"),
            BAD_ENCODING,
        ),
    ];
    for (sql, rest) in id_functions() {
        for &(label, ref id, code) in &bad_ids {
            let mut all = args![id.as_str()];
            all.extend(rest.iter().cloned());
            cases.push(case(&format!("id {label}"), sql, all, fails(code)));
        }
    }
    for (unit, name) in [
        ('x', "ASCII"),
        ('\u{20AC}', "3-byte"),
        ('\u{1F600}', "4-byte"),
    ] {
        let id = id_of_bytes(unit, 512);
        let label = format!("id of 512 bytes, {name} characters");
        cases.push(enqueue(
            &label,
            Enqueue::new(id.as_str(), 2),
            row("pending"),
        ));
        cases.push(case(
            &label,
            STATUS_ID,
            args![id.as_str()],
            row(id.as_str()),
        ));
        cases.push(case(
            &label,
            DECR,
            args![id.as_str(), NULL_TEXT, 0],
            row("pending 1"),
        ));
        cases.push(case(&label, ADD, args![id.as_str(), 1], row("3")));
        cases.push(case(&label, RESULTS, args![id.as_str()], row("[null]")));
        cases.push(case(&label, TAKE, args![id.as_str()], no_row()));
        cases.push(case(
            &label,
            ABORT,
            args![id.as_str(), NULL_TEXT],
            row("aborted"),
        ));
    }
}

/// Ids with characters that break naive quoting, escaping, LIKE patterns or rendering: accepted
/// by every function and returned byte for byte, in ids, results and reasons alike.
fn odd_ids(cases: &mut Vec<Case>) {
    for &odd in ODD_IDS {
        let id = format!("{PREFIX}odd:{odd}");
        let label = format!("odd id {odd:?}");
        let result = serde_json::Value::from(odd).to_string();
        let results = serde_json::json!([odd]).to_string();
        cases.push(enqueue(
            &label,
            Enqueue::new(id.as_str(), 2),
            row("pending"),
        ));
        cases.push(case(
            &label,
            STATUS_ID,
            args![id.as_str()],
            row(id.as_str()),
        ));
        cases.push(case(
            &label,
            DECR,
            args![id.as_str(), result, 1],
            row("pending 1"),
        ));
        cases.push(case(
            &label,
            RESULTS_ARE,
            args![id.as_str(), results],
            row("true"),
        ));
        cases.push(case(&label, ABORT, args![id.as_str(), odd], row("aborted")));
        cases.push(case(&label, STATUS_REASON, args![id.as_str()], row(odd)));
    }
    // Ids compare byte for byte: canonically equivalent, case-different or space-padded ids are
    // different barriers.
    let twins = [
        ("inputs:caf\u{E9}", 2),
        ("inputs:cafe\u{301}", 3),
        ("inputs:Case", 4),
        ("inputs:case", 5),
        ("inputs:pad", 6),
        ("inputs:pad ", 7),
    ];
    for (id, expected) in twins {
        cases.push(enqueue(
            &format!("{id:?}"),
            Enqueue::new(id, expected),
            row("pending"),
        ));
    }
    for (id, expected) in twins {
        let stored = row(format!("pending {expected} {expected}"));
        cases.push(case(
            &format!("{id:?} is its own barrier"),
            STATUS,
            args![id],
            stored,
        ));
    }
}

/// `expected` and `callback` at and past their limits, odd and broken JSON, deep nesting, and
/// re-enqueueing a live barrier with the same or other arguments.
fn enqueue_values(cases: &mut Vec<Case>, sizes: &Sizes) {
    let fresh = || Enqueue::new(FRESH, 1);
    for (label, expected) in [("-1", -1), ("i32::MIN", i32::MIN)] {
        let call = fresh().expected(expected);
        cases.push(enqueue(&format!("expected {label}"), call, fails(INVALID)));
    }
    let id = "inputs:expected:0";
    cases.push(enqueue(
        "expected 0: complete at once",
        Enqueue::new(id, 0),
        row("complete"),
    ));
    cases.push(case("expected 0", STATUS, args![id], row("complete 0 0")));
    let id = "inputs:expected:max";
    cases.push(enqueue(
        "expected i32::MAX",
        Enqueue::new(id, i32::MAX),
        row("pending"),
    ));
    cases.push(case(
        "expected i32::MAX",
        STATUS,
        args![id],
        row("pending 2147483647 2147483647"),
    ));

    let id = "inputs:callback:limit";
    let at_limit = Enqueue::new(id, 1).callback(sizes.at_limit.as_str());
    cases.push(enqueue(
        "callback of max_result_bytes",
        at_limit,
        row("pending"),
    ));
    let stored = args![id, sizes.at_limit.as_str()];
    cases.push(case(
        "callback of max_result_bytes",
        STATUS_CALLBACK_IS,
        stored,
        row("true"),
    ));
    let over = fresh().callback(sizes.over_limit.as_str());
    cases.push(enqueue(
        "callback 1 byte over max_result_bytes",
        over,
        fails(TOO_LARGE),
    ));
    cases.push(case(
        "callback stored compressed below max_result_bytes, over it uncompressed",
        ENQUEUE_STORED,
        args![FRESH, 1, CHANNEL],
        fails(TOO_LARGE),
    ));
    let id = "inputs:callback:numbers";
    let numbers = Enqueue::new(id, 1).callback(ODD_NUMBERS);
    cases.push(enqueue("callback of odd numbers", numbers, row("pending")));
    let stored = args![id, ODD_NUMBERS];
    cases.push(case(
        "callback of odd numbers",
        STATUS_CALLBACK_IS,
        stored,
        row("true"),
    ));
    let too_deep = nested_arrays(100_000);
    for (label, json, code) in [
        (
            "a number past numeric's range",
            "1e131072",
            NUMERIC_OVERFLOW,
        ),
        ("malformed JSON", "{", BAD_JSON),
        ("a \\u0000 escape", "\"\\u0000\"", BAD_JSON_ESCAPE),
        ("100,000 nested arrays", too_deep.as_str(), TOO_DEEP),
    ] {
        let call = fresh().callback(json);
        cases.push(enqueue(&format!("callback: {label}"), call, fails(code)));
    }
    // 10,000 levels parse (the parser's limit is some 14,000 with the default max_stack_depth),
    // are stored, compared and returned whole.
    let id = "inputs:callback:deep";
    let deep = nested_arrays(10_000);
    let deeper = nested_arrays(10_001);
    let call = |callback: &str| Enqueue::new(id, 1).callback(callback);
    cases.push(
        enqueue(
            "callback of 10,000 nested arrays",
            call(deep.as_str()),
            row("pending"),
        )
        .with_setup(RAISE_LIMIT),
    );
    let stored = args![id, deep.as_str()];
    cases.push(case(
        "callback of 10,000 nested arrays",
        STATUS_CALLBACK_IS,
        stored,
        row("true"),
    ));
    cases.push(
        enqueue(
            "the same 10,000 nested arrays again",
            call(deep.as_str()),
            row("pending"),
        )
        .with_setup(RAISE_LIMIT),
    );
    cases.push(
        enqueue(
            "10,001 nested arrays instead",
            call(deeper.as_str()),
            fails(DUPLICATE),
        )
        .with_setup(RAISE_LIMIT),
    );

    // A live barrier: the same arguments change nothing; other ones are refused.
    cases.push(enqueue(
        "the same arguments again",
        Enqueue::new(SLOTTED, 3),
        row("pending"),
    ));
    let same = || Enqueue::new(SLOTTED, 3);
    for (label, call) in [
        ("other expected", same().expected(4)),
        ("other callback", same().callback("{\"other\": 1}")),
        ("other channel", same().channel("inputs_other")),
        ("other ttl", same().ttl("1 hour")),
        ("other stall_timeout", same().stall_timeout("1 hour")),
    ] {
        cases.push(enqueue(
            &format!("live barrier, {label}"),
            call,
            fails(DUPLICATE),
        ));
    }
    let id = "inputs:replace";
    let replace = || Enqueue::new(id, 3).replace(true);
    cases.push(enqueue(
        "to be replaced",
        Enqueue::new(id, 2),
        row("pending"),
    ));
    cases.push(case(
        "to be replaced",
        DECR,
        args![id, NULL_TEXT, 0],
        row("pending 1"),
    ));
    cases.push(enqueue(
        "replace, other arguments",
        replace(),
        row("pending"),
    ));
    cases.push(case("replaced", STATUS, args![id], row("pending 3 3")));
    cases.push(case("replaced", RESULTS, args![id], row("[]")));
    cases.push(enqueue(
        "replace, the same arguments",
        replace(),
        row("pending"),
    ));
    cases.push(case(
        "replaced again",
        STATUS,
        args![id],
        row("pending 3 3"),
    ));
    cases.push(
        enqueue(
            "another role's barrier",
            Enqueue::new(FOREIGN, 2),
            fails(NOT_OWNER),
        )
        .by_stranger(),
    );
    let call = Enqueue::new(FOREIGN, 2).replace(true);
    cases.push(enqueue("another role's barrier, replace", call, fails(NOT_OWNER)).by_stranger());
}

/// ttl and stall_timeout: not positive, with a negative part, over 100 years (a month counts
/// 30 days, as in PostgreSQL's interval ordering), unparsable; and the extremes accepted.
fn intervals(cases: &mut Vec<Case>, server_version: i32) {
    // Infinite intervals exist from PostgreSQL 17 on; before, their text does not parse.
    let infinite = if server_version >= 170_000 {
        INVALID
    } else {
        BAD_INTERVAL
    };
    let refused = [
        ("negative", "-1 second", INVALID),
        ("zero", "0", INVALID),
        ("1 month minus 30 days", "1 mon -30 days", INVALID),
        ("minus 1 month plus 31 days", "-1 mon 31 days", INVALID),
        ("1 day minus 1 second", "1 day -1 second", INVALID),
        ("1 minute ago", "@ 1 minute ago", INVALID),
        ("100 years and 1 day", "100 years 1 day", INVALID),
        (
            "100 years and 1 microsecond",
            "100 years 0.000001 seconds",
            INVALID,
        ),
        ("36001 days", "36001 days", INVALID),
        ("178 million years", "178000000 years", INVALID),
        (
            "the largest interval",
            "178956970 years 7 mons 2147483647 days 2562047788:00:54.775807",
            INVALID,
        ),
        ("infinity", "infinity", infinite),
        ("-infinity", "-infinity", infinite),
        (
            "past the interval range",
            "99999999999 years",
            INTERVAL_OVERFLOW,
        ),
        ("not an interval", "soon", BAD_INTERVAL),
    ];
    for (label, value, code) in refused {
        let ttl = Enqueue::new(FRESH, 1).ttl(value);
        cases.push(enqueue(&format!("ttl {label}"), ttl, fails(code)));
        let stall = Enqueue::new(FRESH, 1).stall_timeout(value);
        cases.push(enqueue(
            &format!("stall_timeout {label}"),
            stall,
            fails(code),
        ));
    }
    let accepted = [
        ("100 years", "100 years", false),
        ("36000 days", "36000 days", false),
        ("1 month", "1 mon", false),
        ("an ISO 8601 duration", "P1Y2M3DT4H5M6S", false),
        ("1 microsecond", "1 microsecond", true),
    ];
    for (n, (label, value, due_at_once)) in accepted.into_iter().enumerate() {
        let ttl = Enqueue::new(format!("inputs:ttl:{n}"), 1).ttl(value);
        let stall = Enqueue::new(format!("inputs:stall:{n}"), 1).stall_timeout(value);
        for (argument, call) in [("ttl", ttl), ("stall_timeout", stall)] {
            let accepting = enqueue(&format!("{argument} {label}"), call, row("pending"));
            cases.push(if due_at_once {
                accepting.rolled_back()
            } else {
                accepting
            });
        }
    }
}

/// Channels that are not lower-case identifiers, or too long, as the argument and as the
/// `pg_barrier.channel` setting; the longest and shortest names accepted.
fn channels(cases: &mut Vec<Case>) {
    let channel = |value: Arg| Enqueue::new(FRESH, 1).channel(value);
    for name in [
        "Foo",
        "1abc",
        "a-b",
        "a b",
        "\"x\"",
        "",
        "\u{E9}t\u{E9}",
        "\u{24D0}",
        " x",
        "x ",
        "a.b",
        "x;drop",
        "a\nb",
        "_Ab",
        "\u{1F600}",
    ] {
        cases.push(enqueue(
            &format!("channel {name:?}"),
            channel(name.into_arg()),
            fails(INVALID),
        ));
    }
    let too_long = [
        ("of 64 bytes", "a".repeat(64)),
        ("of 1 MB", "a".repeat(1 << 20)),
    ];
    for (label, name) in too_long {
        cases.push(enqueue(
            &format!("channel {label}"),
            channel(name.into_arg()),
            fails(TOO_LONG),
        ));
    }
    let nul = channel("a\0b".into_arg());
    cases.push(enqueue(
        "channel with a NUL: not text",
        nul,
        fails(BAD_ENCODING),
    ));
    for (label, setup, code) in [
        ("'Bad'", "SET pg_barrier.channel = 'Bad'", INVALID),
        ("of 64 bytes", SET_CHANNEL_64, TOO_LONG),
    ] {
        let label = format!("channel NULL, pg_barrier.channel {label}");
        cases.push(enqueue(&label, channel(NULL_TEXT), fails(code)).with_setup(setup));
    }
    let label = "channel NULL, pg_barrier.channel empty";
    let empty = "SET pg_barrier.channel = ''";
    match edition() {
        Edition::Rust => {
            cases.push(enqueue(label, channel(NULL_TEXT), fails(INVALID)).with_setup(empty));
        }
        // Without the library the setting is a placeholder, which reads '' after RESET as
        // well as after this SET: the SQL edition takes both for unset (docs/managed.md,
        // "What differs").
        Edition::Sql => {
            let id = "inputs:channel:empty-setting";
            let call = Enqueue::new(id, 1).channel(NULL_TEXT);
            cases.push(enqueue(label, call, row("pending")).with_setup(empty));
            cases.push(case(label, STATUS_CHANNEL, args![id], row("pg_barrier")));
        }
    }
    let longest = "a".repeat(63);
    for (n, name) in [longest.as_str(), "_", "a1_b2", "_9"]
        .into_iter()
        .enumerate()
    {
        let id = format!("inputs:channel:{n}");
        let call = Enqueue::new(id.as_str(), 1).channel(name);
        cases.push(enqueue(&format!("channel {name:?}"), call, row("pending")));
        cases.push(case(
            &format!("channel {name:?}"),
            STATUS_CHANNEL,
            args![id],
            row(name),
        ));
    }
    let id = "inputs:channel:setting";
    let setting = "SET pg_barrier.channel = 'inputs_setting'";
    let call = Enqueue::new(id, 1).channel(NULL_TEXT);
    let label = "channel NULL, pg_barrier.channel 'inputs_setting'";
    cases.push(enqueue(label, call, row("pending")).with_setup(setting));
    cases.push(case(
        label,
        STATUS_CHANNEL,
        args![id],
        row("inputs_setting"),
    ));
}

/// Slots out of range, mixed slotted and unslotted reports, results at and over the limit,
/// broken JSON, and reports to barriers in every state.
fn decr_values(cases: &mut Vec<Case>, sizes: &Sizes) {
    for (label, id, slot, code) in [
        ("slot -1", SLOTTED, int(-1), INVALID),
        ("slot i32::MIN", SLOTTED, i32::MIN.into_arg(), INVALID),
        ("slot = expected", SLOTTED, int(3), INVALID),
        ("slot i32::MAX", SLOTTED, i32::MAX.into_arg(), INVALID),
        (
            "slot i32::MAX, expected i32::MAX",
            FULL,
            i32::MAX.into_arg(),
            INVALID,
        ),
        ("no slot for a slotted barrier", SLOTTED, NULL_INT, INVALID),
        (
            "a slot for an unslotted barrier",
            UNSLOTTED,
            int(0),
            INVALID,
        ),
        ("slot = expected, complete", COMPLETE, int(1), INVALID),
        ("no slot, complete", COMPLETE, NULL_INT, INVALID),
        ("slot = expected, aborted", ABORTED, int(2), INVALID),
        ("slot = expected, expired", EXPIRED, int(2), INVALID),
        ("another role's barrier", FOREIGN, int(0), NOT_OWNER),
        (
            "another role's barrier, no slot",
            FOREIGN,
            NULL_INT,
            NOT_OWNER,
        ),
    ] {
        let refused = case(label, DECR, args![id, NULL_TEXT, slot], fails(code));
        cases.push(if code == NOT_OWNER {
            refused.by_stranger()
        } else {
            refused
        });
    }
    let deep = nested_arrays(100_000);
    for (label, result, code) in [
        (
            "result 1 byte over max_result_bytes",
            sizes.over_limit.as_str(),
            TOO_LARGE,
        ),
        (
            "result: a number past numeric's range",
            "1e131072",
            NUMERIC_OVERFLOW,
        ),
        ("result: malformed JSON", "{", BAD_JSON),
        ("result: a \\u0000 escape", "\"\\u0000\"", BAD_JSON_ESCAPE),
        ("result: 100,000 nested arrays", deep.as_str(), TOO_DEEP),
    ] {
        cases.push(case(label, DECR, args![SLOTTED, result, 2], fails(code)));
    }
    cases.push(case(
        "result stored compressed below max_result_bytes, over it uncompressed",
        DECR_STORED,
        args![SLOTTED, 2],
        fails(TOO_LARGE),
    ));

    let slotted = |slot: i32, result: Arg| args![SLOTTED, result, slot];
    cases.push(case(
        "result NULL, a slot reported",
        DECR,
        slotted(0, NULL_TEXT),
        row("duplicate 2"),
    ));
    let at_limit = sizes.at_limit.as_str().into_arg();
    cases.push(case(
        "result of max_result_bytes",
        DECR,
        slotted(1, at_limit),
        row("pending 1"),
    ));
    let unslotted = args![UNSLOTTED, NULL_TEXT, NULL_INT];
    cases.push(case(
        "result NULL, slot NULL",
        DECR,
        unslotted,
        row("pending 998"),
    ));
    let numbers = args![UNSLOTTED, ODD_NUMBERS, NULL_INT];
    cases.push(case(
        "result of odd numbers",
        DECR,
        numbers,
        row("pending 997"),
    ));
    let results = format!("[null, null, {ODD_NUMBERS}]");
    cases.push(case(
        "NULL results are JSON null",
        RESULTS_ARE,
        args![UNSLOTTED, results],
        row("true"),
    ));
    cases.push(case(
        "unknown barrier",
        DECR,
        args![UNKNOWN, NULL_TEXT, 0],
        row("unknown null"),
    ));
    cases.push(case(
        "aborted barrier",
        DECR,
        args![ABORTED, NULL_TEXT, 1],
        row("aborted 2"),
    ));
    cases.push(case(
        "expired barrier",
        DECR,
        args![EXPIRED, NULL_TEXT, 1],
        row("expired 2"),
    ));
    let last = args![FULL, NULL_TEXT, i32::MAX - 1];
    cases.push(case(
        "slot i32::MAX - 1",
        DECR,
        last,
        row("pending 2147483646"),
    ));
    let again = args![COMPLETE, NULL_TEXT, 0];
    cases.push(case(
        "a reported slot, complete",
        DECR,
        again,
        row("duplicate 0"),
    ));
}

/// Reasons at and over 1024 bytes (bytes, not characters), and aborts in every state.
fn abort_values(cases: &mut Vec<Case>) {
    for (label, reason, code) in [
        ("reason of 1025 bytes", "r".repeat(1025), TOO_LONG),
        (
            "reason of 1025 bytes, 513 characters",
            format!("{}x", "\u{E9}".repeat(512)),
            TOO_LONG,
        ),
        ("reason of 1 MB", "r".repeat(1 << 20), TOO_LONG),
        (
            "reason with a NUL: not text",
            "a\0b".to_string(),
            BAD_ENCODING,
        ),
    ] {
        cases.push(case(label, ABORT, args![SLOTTED, reason], fails(code)));
    }
    let foreign = case(
        "another role's barrier",
        ABORT,
        args![FOREIGN, NULL_TEXT],
        fails(NOT_OWNER),
    );
    cases.push(foreign.by_stranger());
    let id = "inputs:reason:1024";
    let reason = "\u{E9}".repeat(512);
    cases.push(enqueue(
        "for a reason of 1024 bytes",
        Enqueue::new(id, 1),
        row("pending"),
    ));
    let abort = args![id, reason.as_str()];
    cases.push(case(
        "reason of 1024 bytes, 512 characters",
        ABORT,
        abort,
        row("aborted"),
    ));
    cases.push(case(
        "reason of 1024 bytes",
        STATUS_REASON,
        args![id],
        row(reason),
    ));
    for (label, id, answer) in [
        ("aborted barrier", ABORTED, "already_aborted"),
        ("complete barrier", COMPLETE, "already_complete"),
        ("expired barrier", EXPIRED, "expired"),
        ("unknown barrier", UNKNOWN, "unknown"),
    ] {
        cases.push(case(label, ABORT, args![id, NULL_TEXT], row(answer)));
    }
}

/// `extra` below 1 or past `i32::MAX` in all, and barriers that cannot grow.
fn add_values(cases: &mut Vec<Case>) {
    for (label, id, extra, code) in [
        ("extra 0", SLOTTED, 0, INVALID),
        ("extra -1", SLOTTED, -1, INVALID),
        ("extra i32::MIN", SLOTTED, i32::MIN, INVALID),
        (
            "extra i32::MAX, past i32::MAX in all",
            SLOTTED,
            i32::MAX,
            INVALID,
        ),
        ("extra 1, past i32::MAX in all", FULL, 1, INVALID),
        ("unknown barrier", UNKNOWN, 1, UNDEFINED),
        ("complete barrier", COMPLETE, 1, WRONG_STATE),
        ("aborted barrier", ABORTED, 1, WRONG_STATE),
        ("expired barrier", EXPIRED, 1, WRONG_STATE),
    ] {
        cases.push(case(label, ADD, args![id, extra], fails(code)));
    }
    let foreign = case(
        "another role's barrier",
        ADD,
        args![FOREIGN, 1],
        fails(NOT_OWNER),
    );
    cases.push(foreign.by_stranger());
    let id = "inputs:grow";
    cases.push(enqueue("to grow", Enqueue::new(id, 2), row("pending")));
    cases.push(case("extra 1", ADD, args![id, 1], row("3")));
    cases.push(case(
        "up to i32::MAX in all",
        ADD,
        args![id, i32::MAX - 3],
        row("2147483647"),
    ));
    cases.push(case(
        "extra 1, past i32::MAX in all",
        ADD,
        args![id, 1],
        fails(INVALID),
    ));
    let last = args![id, NULL_TEXT, i32::MAX - 1];
    cases.push(case(
        "the last added slot",
        DECR,
        last,
        row("pending 2147483646"),
    ));
    cases.push(case(
        "grown",
        STATUS,
        args![id],
        row("pending 2147483647 2147483646"),
    ));
}

/// The readers and the consumers: another role's barrier, barriers in every state, and
/// `barrier_completions` and `barrier_sweep` at and past their bounds.
fn readers(cases: &mut Vec<Case>, sizes: &Sizes) {
    for sql in [STATUS, RESULTS, TAKE] {
        cases.push(
            case(
                "another role's barrier",
                sql,
                args![FOREIGN],
                fails(NOT_OWNER),
            )
            .by_stranger(),
        );
    }
    for (label, id, status) in [
        ("pending", SLOTTED, "pending 3 1"),
        ("complete", COMPLETE, "complete 1 0"),
        ("aborted", ABORTED, "aborted 2 2"),
        ("expired", EXPIRED, "expired 2 2"),
    ] {
        cases.push(case(label, STATUS, args![id], row(status)));
    }
    cases.push(case("unknown barrier", STATUS, args![UNKNOWN], no_row()));
    for (label, id) in [
        ("unknown", UNKNOWN),
        ("aborted", ABORTED),
        ("expired", EXPIRED),
    ] {
        cases.push(case(
            &format!("{label} barrier"),
            RESULTS,
            args![id],
            null_row(),
        ));
    }
    let recorded = format!("[null, {}]", sizes.at_limit);
    cases.push(case(
        "recorded slots",
        RESULTS_ARE,
        args![SLOTTED, recorded],
        row("true"),
    ));
    cases.push(case("unknown barrier", TAKE, args![UNKNOWN], no_row()));
    cases.push(case("pending barrier", TAKE, args![SLOTTED], no_row()));
    cases.push(case(
        "complete barrier",
        TAKE,
        args![COMPLETE],
        row("[null]"),
    ));
    cases.push(case(
        "complete barrier, taken",
        TAKE,
        args![COMPLETE],
        no_row(),
    ));
    cases.push(case("taken barrier", RESULTS, args![COMPLETE], null_row()));
    let late = args![COMPLETE, NULL_TEXT, 0];
    cases.push(case(
        "a reported slot, taken",
        DECR,
        late,
        row("already_complete 0"),
    ));

    for (label, max_rows, code) in [
        ("max_rows 0", 0, INVALID),
        ("max_rows -1", -1, INVALID),
        ("max_rows i32::MIN", i32::MIN, INVALID),
    ] {
        cases.push(case(
            label,
            COMPLETIONS,
            args![CLAIM_CHANNEL, max_rows],
            fails(code),
        ));
        cases.push(case(label, SWEEP, args![max_rows], fails(code)));
    }
    let claimed = Enqueue::new(CLAIMED, 0).channel(CLAIM_CHANNEL);
    cases.push(enqueue("to be claimed", claimed, row("complete")));
    let all = args![CLAIM_CHANNEL, i32::MAX];
    cases.push(case(
        "max_rows i32::MAX",
        COMPLETIONS,
        all.clone(),
        row(CLAIMED),
    ));
    cases.push(case(
        "max_rows i32::MAX, all taken",
        COMPLETIONS,
        all,
        no_row(),
    ));
    // The channel only filters: a name no barrier can have matches none.
    for (label, channel) in [
        ("channel 'Foo'", "Foo".to_string()),
        ("channel ''", String::new()),
        ("channel of 1 MB", "a".repeat(1 << 20)),
    ] {
        cases.push(case(label, COMPLETIONS, args![channel, 1], no_row()));
    }
    for max_rows in [1, i32::MAX] {
        cases.push(case(
            &format!("max_rows {max_rows}"),
            SWEEP,
            args![max_rows],
            row("swept"),
        ));
    }
}

/// The arguments of docs/shapes.md: `max_failures`, `need`, `sealed`, `on_expiry`, `parent`
/// and `parent_slot` at enqueue, in the order they are checked, then against the parent's
/// state; `failed` at report; `barrier_seal` and `barrier_pending_slots` on barriers in every
/// state.
fn shape_values(cases: &mut Vec<Case>) {
    let fresh = || Enqueue::new(FRESH, 2);
    let parent_513 = id_of_bytes('x', 513);
    let parent_513_wide = id_of_bytes('\u{20AC}', 513);
    for (label, call, code) in [
        ("sealed NULL", fresh().sealed(NULL_BOOL), NULL_VALUE),
        ("on_expiry NULL", fresh().on_expiry(NULL_TEXT), NULL_VALUE),
        ("max_failures -1", fresh().max_failures(-1), INVALID),
        (
            "max_failures i32::MIN",
            fresh().max_failures(i32::MIN),
            INVALID,
        ),
        ("need 0", fresh().need(0), INVALID),
        ("need -1", fresh().need(-1), INVALID),
        ("need i32::MIN", fresh().need(i32::MIN), INVALID),
        ("need over expected, sealed", fresh().need(3), INVALID),
        (
            "need i32::MAX, sealed",
            fresh().need(i32::MAX).sealed(true),
            INVALID,
        ),
        (
            "need 1 of expected 0, sealed",
            Enqueue::new(FRESH, 0).need(1),
            INVALID,
        ),
        (
            "a quorum of 10,000,001 slots",
            Enqueue::new(FRESH, MAX_PADDED_SLOTS + 1).need(1),
            TOO_LARGE,
        ),
        (
            "a delivering expiry of 10,000,001 slots",
            Enqueue::new(FRESH, MAX_PADDED_SLOTS + 1).on_expiry("deliver"),
            TOO_LARGE,
        ),
        ("on_expiry 'Deliver'", fresh().on_expiry("Deliver"), INVALID),
        ("on_expiry ''", fresh().on_expiry(""), INVALID),
        (
            "on_expiry 'deliver '",
            fresh().on_expiry("deliver "),
            INVALID,
        ),
        ("on_expiry 'keep'", fresh().on_expiry("keep"), INVALID),
        (
            "on_expiry with a NUL: not text",
            fresh().on_expiry("deliver\0"),
            BAD_ENCODING,
        ),
        ("parent empty", fresh().nested("", 0), INVALID),
        (
            "parent of 513 bytes",
            fresh().nested(parent_513.as_str(), 0),
            TOO_LONG,
        ),
        (
            "parent of 513 bytes in 3-byte characters",
            fresh().nested(parent_513_wide.as_str(), 0),
            TOO_LONG,
        ),
        (
            "parent with a NUL: not text",
            fresh().nested("inputs:nul\0parent", 0),
            BAD_ENCODING,
        ),
        ("parent_slot -1", fresh().nested(SLOTTED, -1), INVALID),
        (
            "parent_slot i32::MIN",
            fresh().nested(SLOTTED, i32::MIN),
            INVALID,
        ),
        (
            "parent without parent_slot",
            fresh().parent(SLOTTED),
            INVALID,
        ),
        (
            "parent_slot without parent",
            fresh().parent_slot(0),
            INVALID,
        ),
        // The first refused argument, in the documented order, decides.
        (
            "expected NULL, need 0",
            fresh().expected(NULL_INT).need(0),
            NULL_VALUE,
        ),
        (
            "need 0, sealed NULL",
            fresh().need(0).sealed(NULL_BOOL),
            INVALID,
        ),
        (
            "sealed NULL, need over expected",
            fresh().need(3).sealed(NULL_BOOL),
            NULL_VALUE,
        ),
        (
            "on_expiry NULL, parent empty",
            fresh().on_expiry(NULL_TEXT).nested("", 0),
            NULL_VALUE,
        ),
        (
            "parent of 513 bytes, parent_slot -1",
            fresh().nested(parent_513.as_str(), -1),
            TOO_LONG,
        ),
        // Then the parent, under its lock.
        ("parent unknown", fresh().nested(UNKNOWN, 0), UNDEFINED),
        (
            "parent is the id",
            fresh().nested(FRESH, 0),
            INVALID_RECURSION,
        ),
        ("parent complete", fresh().nested(COMPLETE, 0), WRONG_STATE),
        ("parent aborted", fresh().nested(ABORTED, 0), WRONG_STATE),
        ("parent expired", fresh().nested(EXPIRED, 1), WRONG_STATE),
        (
            "parent counted without slots",
            fresh().nested(UNSLOTTED, 0),
            INVALID,
        ),
        (
            "parent_slot = the parent's expected",
            fresh().nested(SLOTTED, 3),
            INVALID,
        ),
        (
            "parent_slot i32::MAX",
            fresh().nested(SLOTTED, i32::MAX),
            INVALID,
        ),
        (
            "a parent slot that reported",
            fresh().nested(SLOTTED, 0),
            DUPLICATE,
        ),
        (
            "another role's parent",
            fresh().nested(FOREIGN, 0),
            NOT_OWNER,
        ),
    ] {
        cases.push(enqueue(label, call, fails(code)));
    }
    cases.push(
        enqueue(
            "another role's parent, as another role",
            fresh().nested(FOREIGN, 0),
            fails(NOT_OWNER),
        )
        .by_stranger(),
    );

    // Accepted shapes, as stored.
    for (label, id, call, shown) in [
        (
            "max_failures 0",
            "inputs:shape:fail-fast",
            Enqueue::new("inputs:shape:fail-fast", 2).max_failures(0),
            "pending 0 t no-need",
        ),
        (
            "max_failures i32::MAX",
            "inputs:shape:tolerant",
            Enqueue::new("inputs:shape:tolerant", 2).max_failures(i32::MAX),
            "pending 0 t no-need",
        ),
        (
            "need = expected",
            "inputs:shape:all",
            Enqueue::new("inputs:shape:all", 2).need(2),
            "pending 0 t 2",
        ),
        (
            "need over expected, open",
            "inputs:shape:open",
            Enqueue::new("inputs:shape:open", 1).need(5).sealed(false),
            "pending 0 f 5",
        ),
        (
            "expected 0, open: pending",
            "inputs:shape:empty",
            Enqueue::new("inputs:shape:empty", 0).sealed(false),
            "pending 0 f no-need",
        ),
        (
            "on_expiry 'deliver'",
            "inputs:shape:deliver",
            Enqueue::new("inputs:shape:deliver", 2).on_expiry("deliver"),
            "pending 0 t no-need",
        ),
        (
            "a parent and its slot",
            "inputs:shape:child",
            Enqueue::new("inputs:shape:child", 2).nested("inputs:shape:all", 1),
            "pending 0 t no-need",
        ),
    ] {
        cases.push(enqueue(label, call, row("pending")));
        cases.push(case(label, STATUS_SHAPE, args![id], row(shown)));
    }
    let child = || Enqueue::new("inputs:shape:child", 2).nested("inputs:shape:all", 1);
    cases.push(enqueue("the same child again", child(), row("pending")));
    cases.push(enqueue(
        "a second child for a claimed slot",
        Enqueue::new("inputs:shape:rival", 1).nested("inputs:shape:all", 1),
        fails(DUPLICATE),
    ));
    cases.push(enqueue(
        "the child, other max_failures",
        child().max_failures(1),
        fails(DUPLICATE),
    ));
    cases.push(enqueue(
        "the child, another parent slot",
        child().nested("inputs:shape:all", 0),
        fails(DUPLICATE),
    ));
    cases.push(enqueue(
        "the child, sealed => false: not compared",
        child().sealed(false),
        row("pending"),
    ));
    cases.push(case(
        "the child is still sealed",
        STATUS_SHAPE,
        args!["inputs:shape:child"],
        row("pending 0 t no-need"),
    ));

    // failed
    let report = |id: &str, slot: i32, failed: Arg| args![id, NULL_TEXT, slot, failed];
    cases.push(case(
        "failed NULL",
        DECR_FAILED,
        report("inputs:shape:tolerant", 0, NULL_BOOL),
        fails(NULL_VALUE),
    ));
    cases.push(case(
        "failed NULL, slot -1",
        DECR_FAILED,
        report("inputs:shape:tolerant", -1, NULL_BOOL),
        fails(INVALID),
    ));
    for (label, slot, failed, answer) in [
        ("a failure", 0, true, "pending 1"),
        ("the same slot failing again", 0, true, "duplicate 1"),
        ("its retry succeeding: re-armed", 0, false, "pending 1"),
        ("the retried slot again", 0, true, "duplicate 1"),
    ] {
        cases.push(case(
            label,
            DECR_FAILED,
            report("inputs:shape:tolerant", slot, failed.into_arg()),
            row(answer),
        ));
    }
    cases.push(case(
        "failures held after a re-arm",
        STATUS_SHAPE,
        args!["inputs:shape:tolerant"],
        row("pending 0 t no-need"),
    ));
    cases.push(case(
        "a failure, max_failures 0: aborted",
        DECR_FAILED,
        report("inputs:shape:fail-fast", 1, true.into_arg()),
        row("aborted 1"),
    ));
    cases.push(case(
        "a failure into a taken barrier",
        DECR_FAILED,
        report(COMPLETE, 0, true.into_arg()),
        row("already_complete 0"),
    ));

    // barrier_seal and barrier_pending_slots in every state.
    for sql in [SEAL, PENDING_SLOTS] {
        cases.push(case("id NULL", sql, args![NULL_TEXT], fails(NULL_VALUE)));
    }
    for (label, max_rows, after, code) in [
        ("max_rows NULL", None, None, NULL_VALUE),
        ("max_rows 0", Some(0), None, INVALID),
        ("max_rows -1", Some(-1), None, INVALID),
        ("after -1", Some(10), Some(-1), INVALID),
        ("after i32::MIN", Some(10), Some(i32::MIN), INVALID),
    ] {
        cases.push(case(
            label,
            PENDING_SLOTS_PAGE,
            args![SLOTTED, max_rows, after],
            fails(code),
        ));
    }
    for (label, id, code) in [
        ("complete barrier", COMPLETE, WRONG_STATE),
        ("aborted barrier", ABORTED, WRONG_STATE),
        ("expired barrier", EXPIRED, WRONG_STATE),
        (
            "aborted by its policy",
            "inputs:shape:fail-fast",
            WRONG_STATE,
        ),
        ("unknown barrier", UNKNOWN, UNDEFINED),
    ] {
        cases.push(case(label, SEAL, args![id], fails(code)));
    }
    cases.push(
        case(
            "another role's barrier",
            SEAL,
            args![FOREIGN],
            fails(NOT_OWNER),
        )
        .by_stranger(),
    );
    cases.push(case(
        "a sealed pending barrier",
        SEAL,
        args![SLOTTED],
        row("pending 1"),
    ));
    cases.push(case(
        "an open barrier that cannot reach its quorum: aborted",
        SEAL,
        args!["inputs:shape:open"],
        row("aborted 1"),
    ));
    cases.push(case(
        "an empty open barrier: complete",
        SEAL,
        args!["inputs:shape:empty"],
        row("complete 0"),
    ));
    cases.push(case(
        "a sealed empty barrier",
        SEAL,
        args!["inputs:shape:empty"],
        fails(WRONG_STATE),
    ));
    let slots = |slots: &[&str]| Expect::Rows(slots.iter().map(|s| Some(s.to_string())).collect());
    for (label, id, expect) in [
        ("pending barrier", SLOTTED, slots(&["2"])),
        ("fresh barrier", "inputs:shape:all", slots(&["0", "1"])),
        ("complete barrier", COMPLETE, no_row()),
        ("aborted barrier", ABORTED, no_row()),
        ("expired barrier", EXPIRED, no_row()),
        ("unknown barrier", UNKNOWN, fails(UNDEFINED)),
    ] {
        cases.push(case(label, PENDING_SLOTS, args![id], expect));
    }
    cases.push(
        case(
            "another role's barrier",
            PENDING_SLOTS,
            args![FOREIGN],
            fails(NOT_OWNER),
        )
        .by_stranger(),
    );
}

/// Runs a case's setup, then its call.
fn setup_and_query(
    client: &mut impl GenericClient,
    case: &Case,
) -> Result<Vec<Row>, postgres::Error> {
    if let Some(setup) = case.setup {
        client.batch_execute(setup)?;
    }
    query(client, case.sql, &case.args)
}

/// Checks a refusal's SQLSTATE.
fn assert_code(label: &str, error: &postgres::Error, expected: &str) {
    let code = sqlstate(error);
    assert!(
        !is_forbidden(&code),
        "{label}: {code} is never right for an argument: {error}"
    );
    assert_eq!(code, expected, "{label}: {error}");
}

/// A refused input: its SQLSTATE, and not a changed row, in autocommit (where a partial write
/// would persist) and under a savepoint in a transaction.
fn run_refused(client: &mut Client, case: &Case, code: &str) {
    let (before, _) = digest(client, PREFIX);
    let outcome = setup_and_query(client, case);
    if case.setup.is_some() {
        client.batch_execute(RESTORE).unwrap();
    }
    match outcome {
        Ok(rows) => panic!(
            "{}: accepted ({} rows), expected {code}",
            case.label,
            rows.len()
        ),
        Err(error) => assert_code(&case.label, &error, code),
    }
    let (after, _) = digest(client, PREFIX);
    assert_eq!(
        after, before,
        "{}: the refused call changed state",
        case.label
    );

    let mut transaction = client.transaction().unwrap();
    let mut savepoint = transaction.savepoint("refused").unwrap();
    let outcome = setup_and_query(&mut savepoint, case);
    savepoint.rollback().unwrap();
    match outcome {
        Ok(rows) => panic!(
            "{}: accepted in a transaction ({} rows)",
            case.label,
            rows.len()
        ),
        Err(error) => assert_code(&format!("{} (in a transaction)", case.label), &error, code),
    }
    let (inside, _) = digest(&mut transaction, PREFIX);
    assert_eq!(
        inside, before,
        "{}: changed state in its transaction",
        case.label
    );
    transaction.rollback().unwrap();
}

/// An accepted input: exactly the documented answer.
fn run_accepted(client: &mut Client, case: &Case, expected: &[Option<String>]) {
    let outcome = if case.rolled_back {
        let mut transaction = client.transaction().unwrap();
        let outcome = setup_and_query(&mut transaction, case);
        transaction.rollback().unwrap();
        outcome
    } else {
        setup_and_query(client, case)
    };
    if case.setup.is_some() {
        client.batch_execute(RESTORE).unwrap();
    }
    let rows = outcome.unwrap_or_else(|error| panic!("{}: refused: {error}", case.label));
    let values: Vec<Option<String>> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(values, expected, "{}", case.label);
}

#[test]
fn every_bad_input_fails_with_its_sqlstate_and_changes_nothing() {
    let mut client = connect();
    let sizes = prepare(&mut client);
    let server_version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .unwrap()
        .get(0);
    let cases = table(&sizes, server_version);

    // Refused and accepted rows per function.
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for case in &cases {
        let count = counts.entry(function_of(case.sql)).or_default();
        match &case.expect {
            Expect::Fails(code) => {
                run_refused(&mut client, case, code);
                count.0 += 1;
            }
            Expect::Rows(expected) => {
                run_accepted(&mut client, case, expected);
                count.1 += 1;
            }
        }
    }

    let refused: usize = counts.values().map(|count| count.0).sum();
    let accepted: usize = counts.values().map(|count| count.1).sum();
    eprintln!("inputs: {refused} bad inputs, {accepted} accepted inputs");
    for (function, (bad, good)) in &counts {
        eprintln!("inputs:   {function}: {bad} bad, {good} accepted");
    }
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1, "the session still works after the table");
    // The digests cover only this test's prefix; a refused id that got stored anyway would lie
    // outside it. No test may ever store one, so look across the whole database.
    let stored: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM barrier_internal.barrier
                      WHERE id = '' OR octet_length(id) > 512)
                  + (SELECT count(*) FROM barrier_internal.barrier_spec
                      WHERE id = '' OR octet_length(id) > 512)
                  + (SELECT count(*) FROM barrier_internal.result
                      WHERE barrier_id = '' OR octet_length(barrier_id) > 512)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "an empty or over-long id was stored");
    assert_no_backend_crashed();
}

// ---------------------------------------------------------------------------------------------
// The fuzz
// ---------------------------------------------------------------------------------------------

/// Every id of the fuzz starts with this.
const FUZZ_PREFIX: &str = "fuzz:";
/// The fuzz calls as a role of its own, so that `barrier_completions` with no channel claims
/// only its barriers. Its `max_result_bytes` is small, so values at the limit are cheap.
const FUZZER: &str = "inputs_fuzzer";
const FUZZER_ROLE: &str = "
    DO $$ BEGIN CREATE ROLE inputs_fuzzer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
    ALTER ROLE inputs_fuzzer SET pg_barrier.max_result_bytes = '4kB';
    ALTER ROLE inputs_fuzzer SET pg_barrier.channel = 'fuzz_default';";
const FUZZ_RESULT_LIMIT: usize = 4096;

/// What `barrier_decr`, `barrier_abort` and `barrier_status` may answer (docs/api.md).
const DECR_ANSWERS: &[&str] = &[
    "pending",
    "complete",
    "duplicate",
    "already_complete",
    "aborted",
    "expired",
    "unknown",
    "complete_with_failures",
];
/// What `barrier_seal` may answer (docs/shapes.md).
const SEAL_ANSWERS: &[&str] = &["pending", "complete", "complete_with_failures", "aborted"];
const ABORT_ANSWERS: &[&str] = &[
    "aborted",
    "already_aborted",
    "already_complete",
    "expired",
    "unknown",
];
const STATUSES: &[&str] = &[
    "pending",
    "complete",
    "complete_with_failures",
    "aborted",
    "expired",
];

/// Characters that break quoting, escaping, LIKE patterns or rendering.
const ODD_CHARS: &[char] = &[
    '\'',
    '"',
    '\\',
    '%',
    '_',
    '$',
    '\n',
    '\r',
    '\t',
    ';',
    ' ',
    '\u{1}',
    '\u{7F}',
    '\u{301}',
    '\u{202E}',
    '\u{5D0}',
    '\u{1F600}',
    '\u{200D}',
    '\u{FEFF}',
    '\u{FFFD}',
    '\u{FFFF}',
    '\u{10FFFF}',
    '\u{E9}',
    'A',
    'z',
    '0',
];
/// Valid jsonb with odd numbers and escapes.
const ODD_JSON: &[&str] = &[
    "1e308",
    "-1e308",
    "-0",
    "-0.0",
    "1e-400",
    "0e10",
    "1E+2",
    "123456789012345678901234567890",
    "[1e308, -0, 1e-400, {}, [], \"\"]",
    "{\"\": null, \"\\u00e9\": \"\\ud83d\\ude00\"}",
    "\"\\u0001\\u001f\\\"\\\\/\"",
];
/// Text that jsonb's input refuses: a number past numeric's range, a `\u0000`, bad syntax.
const BROKEN_JSON: &[&str] = &["1e131072", "\"\\u0000\"", "{", "[1,]", "\"\\ud800\""];
/// Interval texts, each with whether pg_barrier accepts it as a ttl or stall_timeout.
const INTERVALS: &[(&str, bool)] = &[
    ("1 hour", true),
    ("1 microsecond", true),
    ("2 seconds", true),
    ("6 hours", true),
    ("21600 seconds", true),
    ("100 years", true),
    ("36000 days", true),
    ("1.5 mons", true),
    ("P1Y2M3DT4H5M6S", true),
    ("0", false),
    ("-1 second", false),
    ("1 mon -30 days", false),
    ("-1 mon 31 days", false),
    ("100 years 1 day", false),
    ("36001 days", false),
    ("178000000 years", false),
    ("infinity", false),
    ("-infinity", false),
    ("99999999999 years", false),
    ("@ 1 minute ago", false),
];
/// Units of random intervals, with their length in days (a month counted as 30, as the
/// 100-year limit counts it).
const INTERVAL_UNITS: &[(&str, f64)] = &[
    ("microseconds", 1.0 / 86_400_000_000.0),
    ("seconds", 1.0 / 86_400.0),
    ("minutes", 1.0 / 1_440.0),
    ("hours", 1.0 / 24.0),
    ("days", 1.0),
    ("months", 30.0),
    ("years", 360.0),
];
const CHANNEL_CHARS: &[u8] = b"abcxyz0189_";

/// A channel name as docs/api.md defines it: `[a-z_][a-z0-9_]*`, at most 63 bytes.
fn is_channel(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// One generated call.
struct Call {
    function: &'static str,
    sql: &'static str,
    args: Vec<Arg>,
    /// The barrier the call names, if it is a valid id: checked after the call.
    id: Option<String>,
    /// Whether an enqueue names a parent, whose state may refuse it.
    nested: bool,
    /// Why docs/api.md says this call must be refused, with the SQLSTATE each reason gives.
    refusals: Vec<Refusal>,
    /// SQLSTATEs the call may get without the draw knowing it must: an argument of random text
    /// that may happen to parse as a refused value.
    maybe: Vec<&'static str>,
}

/// An argument docs/api.md says is refused: why, and the SQLSTATE pg_barrier answers with.
type Refusal = (String, &'static str);

impl fmt::Display for Call {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let args: Vec<String> = self.args.iter().map(shown).collect();
        write!(formatter, "{}({})", self.function, args.join(", "))
    }
}

/// An argument as a failure message shows it: long texts shortened, with their length.
fn shown(arg: &Arg) -> String {
    match (arg, arg.text()) {
        (Arg::Int(value), _) => format!("{value:?}"),
        (Arg::Bool(value), _) => format!("{value:?}"),
        (_, None) => "NULL".to_string(),
        (_, Some(text)) if text.len() > 80 => {
            let head: String = text.chars().take(40).collect();
            format!("{head:?}... ({} bytes)", text.len())
        }
        (_, Some(text)) => format!("{text:?}"),
    }
}

/// Draws the arguments of one call, and notes every one docs/api.md says is refused.
struct Draw<'r> {
    rng: &'r mut Rng,
    refusals: Vec<Refusal>,
    maybe: Vec<&'static str>,
}

impl Draw<'_> {
    fn percent(&mut self, percent: usize) -> bool {
        self.rng.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len())]
    }

    fn refuse(&mut self, why: impl Into<String>, code: &'static str) {
        self.refusals.push((why.into(), code));
    }

    /// A character: printable ASCII, an odd one, any scalar value; NUL rarely, if allowed.
    fn char(&mut self, nul: bool) -> char {
        match self.rng.below(200) {
            0 if nul => '\0',
            0..=100 => char::from(b' ' + self.rng.below(95) as u8),
            101..=160 => self.pick(ODD_CHARS),
            _ => loop {
                let candidate = char::from_u32((self.rng.next() % 0x11_0000) as u32);
                if let Some(character) = candidate.filter(|&character| character != '\0') {
                    break character;
                }
            },
        }
    }

    /// Text of up to `max_chars` characters, often short or empty.
    fn text(&mut self, max_chars: usize, nul: bool) -> String {
        let length = match self.rng.below(4) {
            0 => self.rng.below(3),
            1 | 2 => self.rng.below(max_chars + 1),
            _ => max_chars,
        };
        (0..length).map(|_| self.char(nul)).collect()
    }

    /// An id: mostly from the pool, else NULL, empty, around the 512-byte limit, or random.
    /// Also returns it if it is a valid id, to check that barrier after the call.
    fn id(&mut self, pool: &[String]) -> (Arg, Option<String>) {
        let id = match self.rng.below(20) {
            0..=13 => Some(pool[self.rng.below(pool.len())].clone()),
            14 => None,
            15 => Some(String::new()),
            16 => {
                let bytes = self.pick(&[511, 512, 513, 600, 4096, 1 << 20]);
                Some(format!(
                    "{FUZZ_PREFIX}{}",
                    "y".repeat(bytes - FUZZ_PREFIX.len())
                ))
            }
            _ => {
                let tail = self.text(40, true);
                Some(format!("{FUZZ_PREFIX}{tail}"))
            }
        };
        let valid = match &id {
            None => {
                self.refuse("id is NULL", NULL_VALUE);
                None
            }
            Some(id) if id.is_empty() => {
                self.refuse("id is empty", INVALID);
                None
            }
            Some(id) if id.len() > 512 => {
                self.refuse("id is over 512 bytes", TOO_LONG);
                None
            }
            Some(id) if id.contains('\0') => {
                self.refuse("id contains NUL", BAD_ENCODING);
                None
            }
            Some(id) => Some(id.clone()),
        };
        (Arg::Text(id), valid)
    }

    /// An integer: NULL, a boundary, any, or (mostly) a small one, so that calls interact.
    fn int(&mut self) -> Option<i32> {
        match self.rng.below(20) {
            0 => None,
            1..=4 => {
                Some(self.pick(&[0, 1, -1, 2, i32::MAX, i32::MAX - 1, i32::MIN, i32::MIN + 1]))
            }
            5 => Some(self.rng.next() as i32),
            _ => Some(self.rng.below(5) as i32),
        }
    }

    /// A required count with a lower bound: `expected` (0), `extra` and `max_rows` (1).
    fn count(&mut self, argument: &str, minimum: i32) -> Arg {
        let value = self.int();
        match value {
            None => self.refuse(format!("{argument} is NULL"), NULL_VALUE),
            Some(count) if count < minimum => {
                self.refuse(format!("{argument} is below {minimum}"), INVALID)
            }
            Some(_) => {}
        }
        Arg::Int(value)
    }

    /// A slot, or NULL for an unslotted report.
    fn slot(&mut self) -> Arg {
        let slot = if self.percent(30) { None } else { self.int() };
        if slot.is_some_and(|slot| slot < 0) {
            self.refuse("slot is negative", INVALID);
        }
        Arg::Int(slot)
    }

    /// A jsonb value as text: NULL, JSON null, odd numbers and escapes, broken JSON, strings of
    /// odd characters, deep nesting, sizes around `max_result_bytes`, or a random document.
    fn json(&mut self, string_overhead: usize) -> Arg {
        let json = match self.rng.below(20) {
            0..=2 => None,
            3 => Some("null".to_string()),
            4..=6 => Some(self.pick(ODD_JSON).to_string()),
            7 => {
                self.refuse("the JSON does not parse as jsonb", BAD_JSON);
                Some(self.pick(BROKEN_JSON).to_string())
            }
            8 | 9 => Some(serde_json::Value::String(self.text(40, false)).to_string()),
            10 => {
                let depth = self.pick(&[2, 10, 100, 1000, 10_000, 100_000]);
                if depth >= 100_000 {
                    self.refuse("the JSON nests deeper than jsonb's parser goes", TOO_DEEP);
                }
                // Each level of arrays takes 8 bytes of jsonb: from 1,000 levels on, the value
                // is over the fuzz's max_result_bytes.
                if depth >= 1000 {
                    self.refuse("the nested jsonb is over max_result_bytes", TOO_LARGE);
                }
                Some(nested_arrays(depth))
            }
            11 | 12 => {
                // A string whose jsonb is the limit give or take a byte.
                let bytes = FUZZ_RESULT_LIMIT + self.rng.below(3) - 1;
                if bytes > FUZZ_RESULT_LIMIT {
                    self.refuse("the jsonb is over max_result_bytes", TOO_LARGE);
                }
                let string = "z".repeat(bytes - string_overhead);
                Some(serde_json::Value::String(string).to_string())
            }
            13 => {
                self.refuse("the jsonb is far over max_result_bytes", TOO_LARGE);
                let bytes = self.pick(&[1 << 16, 1 << 20]);
                Some(serde_json::Value::String("z".repeat(bytes)).to_string())
            }
            _ => Some(self.document(3).to_string()),
        };
        Arg::Json(json)
    }

    /// A random JSON document at most `depth` levels deep.
    fn document(&mut self, depth: usize) -> serde_json::Value {
        let kinds = if depth == 0 { 5 } else { 7 };
        match self.rng.below(kinds) {
            0 => serde_json::Value::Null,
            1 => serde_json::Value::Bool(self.percent(50)),
            2 => serde_json::Value::from(self.rng.next() as i64),
            3 => serde_json::Value::from(f64::from_bits(self.rng.next())),
            4 => serde_json::Value::String(self.text(10, false)),
            5 => {
                let length = self.rng.below(4);
                serde_json::Value::Array((0..length).map(|_| self.document(depth - 1)).collect())
            }
            _ => {
                let length = self.rng.below(4);
                let members = (0..length).map(|_| (self.text(8, false), self.document(depth - 1)));
                serde_json::Value::Object(members.collect())
            }
        }
    }

    /// An interval as text: mostly NULL (the default), else a value known to be accepted or
    /// refused, a random magnitude of a random unit, or random text.
    fn interval(&mut self, argument: &str) -> Arg {
        let interval = match self.rng.below(10) {
            0..=4 => None,
            5..=7 => {
                let (text, accepted) = self.pick(INTERVALS);
                if !accepted {
                    self.refuse(format!("{argument} {text:?} is refused"), INVALID);
                }
                Some(text.to_string())
            }
            8 => {
                let shift = self.rng.below(64);
                let magnitude = (self.rng.next() as i64) >> shift;
                let (unit, days_per_unit) = self.pick(INTERVAL_UNITS);
                // Positive, and at most 100 years counting a month as 30 days (PostgreSQL's
                // own input may refuse a huge one first, with its own SQLSTATE).
                let days = magnitude as f64 * days_per_unit;
                if magnitude <= 0 || days > 36_000.0 {
                    self.refuse(format!("{argument} {magnitude} {unit} is refused"), INVALID);
                }
                Some(format!("{magnitude} {unit}"))
            }
            _ => {
                self.maybe.push(INVALID);
                Some(self.text(12, true))
            }
        };
        if interval.as_deref().is_some_and(|text| text.contains('\0')) {
            self.refuse(format!("{argument} contains NUL"), BAD_ENCODING);
        }
        Arg::Interval(interval)
    }

    /// A channel name: NULL, `fuzz_` and up to 61 more valid characters (so up to 66 bytes),
    /// or random text.
    fn channel_name(&mut self) -> Option<String> {
        match self.rng.below(10) {
            0..=3 => None,
            4..=7 => {
                let length = self.rng.below(62);
                let tail: String = (0..length)
                    .map(|_| char::from(self.pick(CHANNEL_CHARS)))
                    .collect();
                Some(format!("fuzz_{tail}"))
            }
            _ => Some(self.text(70, true)),
        }
    }

    /// `barrier_enqueue`'s channel: refused unless NULL or a channel name.
    fn channel(&mut self) -> Arg {
        let channel = self.channel_name();
        if let Some(name) = channel.as_deref().filter(|name| !is_channel(name)) {
            if name.len() > 63 {
                self.refuse("channel is over 63 bytes", TOO_LONG);
            }
            self.refuse("channel is not a lower-case identifier", INVALID);
        }
        Arg::Text(channel)
    }

    /// Text that is only a filter or a setting: refused only with a NUL.
    fn filter(&mut self) -> Arg {
        let channel = self.channel_name();
        if channel.as_deref().is_some_and(|name| name.contains('\0')) {
            self.refuse("the text contains NUL", BAD_ENCODING);
        }
        Arg::Text(channel)
    }

    /// An abort reason: NULL, random text, or around 1024 bytes.
    fn reason(&mut self) -> Arg {
        let reason = match self.rng.below(8) {
            0..=2 => None,
            3..=5 => Some(self.text(60, true)),
            _ => {
                let unit = self.pick(&["r", "\u{E9}"]);
                Some(unit.repeat(self.pick(&[511, 512, 513, 1024, 1025])))
            }
        };
        if let Some(reason) = &reason {
            if reason.len() > 1024 {
                self.refuse("reason is over 1024 bytes", TOO_LONG);
            } else if reason.contains('\0') {
                self.refuse("reason contains NUL", BAD_ENCODING);
            }
        }
        Arg::Text(reason)
    }

    /// An optional count (`max_failures`, `need`): mostly NULL (the default), else an integer,
    /// refused below `minimum`.
    fn optional_count(&mut self, argument: &str, minimum: i32) -> Option<i32> {
        let value = if self.percent(70) { None } else { self.int() };
        if value.is_some_and(|count| count < minimum) {
            self.refuse(format!("{argument} is below {minimum}"), INVALID);
        }
        value
    }

    /// `sealed`: mostly true, sometimes false; NULL is refused.
    fn sealed(&mut self) -> Option<bool> {
        let sealed = match self.rng.below(10) {
            0 => None,
            1 | 2 => Some(false),
            _ => Some(true),
        };
        if sealed.is_none() {
            self.refuse("sealed is NULL", NULL_VALUE);
        }
        sealed
    }

    /// `on_expiry`: 'discard' or 'deliver', else NULL or random text, refused.
    fn on_expiry(&mut self) -> Arg {
        let policy = match self.rng.below(20) {
            0 => None,
            1 => Some(self.text(8, true)),
            2..=6 => Some("deliver".to_string()),
            _ => Some("discard".to_string()),
        };
        match policy.as_deref() {
            None => self.refuse("on_expiry is NULL", NULL_VALUE),
            Some(text) if text.contains('\0') => {
                self.refuse("on_expiry contains NUL", BAD_ENCODING)
            }
            Some("discard" | "deliver") => {}
            Some(_) => self.refuse("on_expiry is neither 'discard' nor 'deliver'", INVALID),
        }
        Arg::Text(policy)
    }

    /// `parent` and `parent_slot`: mostly neither; else an id (mostly from the pool, so that
    /// barriers nest) and a slot; sometimes only one of the two. Also returns whether the pair
    /// names a parent.
    fn parent(&mut self, pool: &[String]) -> (Arg, Arg, bool) {
        if self.percent(70) {
            return (NULL_TEXT, NULL_INT, false);
        }
        let parent = match self.rng.below(20) {
            0 => None,
            1 => Some(String::new()),
            2 => Some(format!("{FUZZ_PREFIX}{}", "y".repeat(600))),
            3 => Some(format!("{FUZZ_PREFIX}{}", self.text(12, true))),
            _ => Some(pool[self.rng.below(pool.len())].clone()),
        };
        let slot = if self.percent(5) {
            None
        } else {
            Some(self.rng.below(4) as i32 - i32::from(self.percent(5)))
        };
        match parent.as_deref() {
            Some("") => self.refuse("parent is empty", INVALID),
            Some(parent) if parent.len() > 512 => self.refuse("parent is over 512 bytes", TOO_LONG),
            Some(parent) if parent.contains('\0') => {
                self.refuse("parent contains NUL", BAD_ENCODING)
            }
            _ => {}
        }
        if slot.is_some_and(|slot| slot < 0) {
            self.refuse("parent_slot is negative", INVALID);
        }
        if parent.is_some() != slot.is_some() {
            self.refuse("parent and parent_slot go together", INVALID);
        }
        let named = parent.is_some();
        (Arg::Text(parent), Arg::Int(slot), named)
    }

    /// `failed`: mostly false, sometimes true; NULL is refused.
    fn failed(&mut self) -> Arg {
        let failed = match self.rng.below(20) {
            0 => None,
            1..=4 => Some(true),
            _ => Some(false),
        };
        if failed.is_none() {
            self.refuse("failed is NULL", NULL_VALUE);
        }
        Arg::Bool(failed)
    }

    /// `replace`: mostly false; NULL is refused.
    fn replace(&mut self) -> Arg {
        let replace = match self.rng.below(10) {
            0 => None,
            1 | 2 => Some(true),
            _ => Some(false),
        };
        if replace.is_none() {
            self.refuse("replace is NULL", NULL_VALUE);
        }
        Arg::Bool(replace)
    }
}

/// A random call of a random function.
fn random_call(rng: &mut Rng, pool: &[String], string_overhead: usize) -> Call {
    let mut draw = Draw {
        rng,
        refusals: Vec::new(),
        maybe: Vec::new(),
    };
    let mut nested = false;
    let (function, sql, args, id) = match draw.rng.below(18) {
        0..=2 => {
            let (id_arg, id) = draw.id(pool);
            let mut args = vec![
                id_arg,
                draw.count("expected", 0),
                draw.json(string_overhead),
                draw.interval("ttl"),
                draw.channel(),
                draw.replace(),
                draw.interval("stall_timeout"),
            ];
            let max_failures = draw.optional_count("max_failures", 0);
            let need = draw.optional_count("need", 1);
            let sealed = draw.sealed();
            if let (Arg::Int(Some(expected)), Some(need), Some(true)) = (&args[1], need, sealed) {
                if need > *expected {
                    draw.refuse("need is over expected on a sealed barrier", INVALID);
                }
            }
            let on_expiry = draw.on_expiry();
            let delivers = matches!(&on_expiry, Arg::Text(Some(policy)) if policy == "deliver");
            if let Arg::Int(Some(expected)) = &args[1] {
                if *expected > MAX_PADDED_SLOTS && (need.is_some() || delivers) {
                    draw.refuse(
                        "a quorum or a delivering expiry over 10,000,000 slots",
                        TOO_LARGE,
                    );
                }
            }
            let (parent, parent_slot, named) = draw.parent(pool);
            nested = named;
            args.extend([
                Arg::Int(max_failures),
                Arg::Int(need),
                Arg::Bool(sealed),
                on_expiry,
                parent,
                parent_slot,
            ]);
            ("barrier_enqueue", ENQUEUE, args, id)
        }
        3..=6 => {
            let (id_arg, id) = draw.id(pool);
            let args = vec![
                id_arg,
                draw.json(string_overhead),
                draw.slot(),
                draw.failed(),
            ];
            ("barrier_decr", DECR_FAILED, args, id)
        }
        7 => {
            let (id_arg, id) = draw.id(pool);
            ("barrier_abort", ABORT, vec![id_arg, draw.reason()], id)
        }
        8 => {
            let (id_arg, id) = draw.id(pool);
            ("barrier_add", ADD, vec![id_arg, draw.count("extra", 1)], id)
        }
        9 => {
            let (id_arg, id) = draw.id(pool);
            ("barrier_status", STATUS, vec![id_arg], id)
        }
        10 => {
            let (id_arg, id) = draw.id(pool);
            ("barrier_results", RESULTS, vec![id_arg], id)
        }
        11 => {
            let (id_arg, id) = draw.id(pool);
            ("barrier_take", TAKE, vec![id_arg], id)
        }
        12 => {
            let args = vec![draw.filter(), draw.count("max_rows", 1)];
            ("barrier_completions", COMPLETIONS, args, None)
        }
        13 => (
            "barrier_sweep",
            SWEEP,
            vec![draw.count("max_rows", 1)],
            None,
        ),
        14 => ("barrier_stats", STATS, Vec::new(), None),
        15 => ("set_config", SET_CHANNEL, vec![draw.filter()], None),
        16 => {
            let (id_arg, id) = draw.id(pool);
            ("barrier_seal", SEAL, vec![id_arg], id)
        }
        _ => {
            let (id_arg, id) = draw.id(pool);
            ("barrier_pending_slots", PENDING_SLOTS, vec![id_arg], id)
        }
    };
    Call {
        function,
        sql,
        args,
        id,
        nested,
        refusals: draw.refusals,
        maybe: draw.maybe,
    }
}

/// The ids the fuzz mostly uses, so that its calls meet the same barriers: a few random ones,
/// one of odd characters and one of exactly 512 bytes.
fn id_pool(rng: &mut Rng) -> Vec<String> {
    let mut draw = Draw {
        rng,
        refusals: Vec::new(),
        maybe: Vec::new(),
    };
    let mut pool: Vec<String> = (0..3)
        .map(|_| format!("{FUZZ_PREFIX}{}", draw.text(12, false)))
        .collect();
    pool.push(format!("{FUZZ_PREFIX}\u{202E}\u{1F600}'\"\\%_\n$$"));
    pool.push(format!(
        "{FUZZ_PREFIX}{}",
        "x".repeat(512 - FUZZ_PREFIX.len())
    ));
    pool
}

/// Checks a successful call's answer against the documented ones.
fn check_answer(what: &str, call: &Call, rows: &[Row]) {
    let values: Vec<Option<String>> = rows.iter().map(|row| row.get(0)).collect();
    let only = || {
        assert_eq!(values.len(), 1, "{what}: answered {values:?}");
        values[0].clone().unwrap_or_default()
    };
    match call.function {
        "barrier_enqueue" => {
            let status = only();
            assert!(
                status == "pending" || status == "complete",
                "{what}: answered {status}"
            );
        }
        "barrier_decr" => {
            let answer = only();
            let (status, remaining) = answer
                .split_once(' ')
                .unwrap_or_else(|| panic!("{what}: answered {answer}"));
            assert!(DECR_ANSWERS.contains(&status), "{what}: answered {answer}");
            let count = remaining.parse::<i32>();
            // A quorum completes with reports still to come, and an open barrier waits with
            // none (check_barrier holds each to its shape).
            let consistent = match status {
                "unknown" => remaining == "null",
                _ => count.is_ok_and(|count| count >= 0),
            };
            assert!(consistent, "{what}: answered {answer}");
        }
        "barrier_seal" => {
            let answer = only();
            let (status, remaining) = answer
                .split_once(' ')
                .unwrap_or_else(|| panic!("{what}: answered {answer}"));
            assert!(SEAL_ANSWERS.contains(&status), "{what}: answered {answer}");
            let count = remaining.parse::<i32>();
            assert!(
                count.is_ok_and(|count| count >= 0),
                "{what}: answered {answer}"
            );
        }
        "barrier_pending_slots" => {
            let slots: Vec<i32> = values
                .iter()
                .map(|slot| {
                    slot.as_deref()
                        .and_then(|slot| slot.parse().ok())
                        .unwrap_or_else(|| panic!("{what}: answered {values:?}"))
                })
                .collect();
            let ascending = slots.windows(2).all(|pair| pair[0] < pair[1]);
            assert!(
                ascending && slots.iter().all(|slot| *slot >= 0),
                "{what}: answered {slots:?}"
            );
        }
        "barrier_abort" => {
            let answer = only();
            assert!(
                ABORT_ANSWERS.contains(&answer.as_str()),
                "{what}: answered {answer}"
            );
        }
        "barrier_add" => {
            let expected = only();
            let grown = expected.parse::<i32>().is_ok_and(|expected| expected >= 1);
            assert!(grown, "{what}: answered {expected}");
        }
        "barrier_status" | "barrier_take" => {
            assert!(values.len() <= 1, "{what}: answered {values:?}");
        }
        "barrier_completions" => {
            if let Arg::Int(Some(max_rows)) = call.args[1] {
                let at_most = usize::try_from(max_rows).unwrap_or(0);
                assert!(values.len() <= at_most, "{what}: {} rows", values.len());
            }
            let ours = values
                .iter()
                .all(|id| id.as_deref().is_some_and(|id| id.starts_with(FUZZ_PREFIX)));
            assert!(ours, "{what}: handed out {values:?}");
        }
        _ => {
            only();
        }
    }
}

/// The barrier's invariants, as `barrier_status` reports it and as it is stored.
fn check_barrier(admin: &mut Client, id: &str, what: &str) {
    let reported = admin
        .query_opt(
            "SELECT status, expected, remaining, failed, sealed, need
               FROM barrier_status($1::text)",
            &[&id],
        )
        .unwrap_or_else(|error| panic!("{what}: barrier_status: {error}"));
    if let Some(row) = reported {
        let (status, expected, remaining): (String, i32, i32) =
            (row.get(0), row.get(1), row.get(2));
        let (failed, sealed, need): (i32, bool, Option<i32>) = (row.get(3), row.get(4), row.get(5));
        let shown = format!(
            "{what}: barrier {id:?} is {status}, {remaining} of {expected} left, {failed} \
             failed, sealed: {sealed}, need: {need:?}"
        );
        assert!(STATUSES.contains(&status.as_str()), "{shown}");
        assert!((0..=expected).contains(&remaining), "{shown}");
        assert!(failed >= 0 && failed <= expected - remaining, "{shown}");
        let successes = expected - remaining - failed;
        match status.as_str() {
            // A completion: every report in, or the quorum met; with failures or without.
            "complete" | "complete_with_failures" => {
                assert_eq!(status == "complete_with_failures", failed > 0, "{shown}");
                assert!(sealed, "{shown}");
                match need {
                    None => assert_eq!(remaining, 0, "{shown}"),
                    Some(need) => assert!(successes >= need, "{shown}"),
                }
            }
            // Pending and sealed: reports still to come, and the quorum still in reach and
            // not met.
            "pending" if sealed => match need {
                None => assert!(remaining > 0, "{shown}"),
                Some(need) => assert!(successes < need && successes + remaining >= need, "{shown}"),
            },
            _ => {}
        }
    }
    // One result row per counted task while pending, all of them until handed out, none once
    // the results are freed (taken, aborted, expired without delivery); the failed ones are
    // the failures held.
    let stored = admin
        .query_opt(
            "SELECT b.status, b.expected, b.remaining, b.taken_at IS NOT NULL, b.deliver,
                    b.failed,
                    (SELECT count(*) FROM barrier_internal.result r WHERE r.barrier_id = b.id),
                    (SELECT count(*) FROM barrier_internal.result r
                      WHERE r.barrier_id = b.id AND r.failed)
               FROM barrier_internal.barrier b WHERE b.id = $1::text",
            &[&id],
        )
        .unwrap_or_else(|error| panic!("{what}: stored row: {error}"));
    if let Some(row) = stored {
        let status: String = row.get(0);
        let (expected, remaining): (i32, i32) = (row.get(1), row.get(2));
        let (taken, deliver): (bool, bool) = (row.get(3), row.get(4));
        let failed: i32 = row.get(5);
        let (results, failures): (i64, i64) = (row.get(6), row.get(7));
        let counted = i64::from(expected) - i64::from(remaining);
        let held = match status.as_str() {
            "pending" => counted,
            "complete" if !taken => counted,
            "expired" if deliver && !taken => counted,
            _ => 0,
        };
        let shown = format!(
            "{what}: barrier {id:?} is stored {status}, {remaining} of {expected} left, \
             {failed} failed, taken: {taken}, deliver: {deliver}; {results} rows, {failures} \
             failed"
        );
        assert_eq!(results, held, "{shown}");
        if held > 0 {
            assert_eq!(failures, i64::from(failed), "{shown}");
        }
    }
}

/// The SQLSTATEs a call with valid arguments may still get, from the state of the barrier it
/// names: another role's barrier; a live one enqueued with other arguments; a slot out of range
/// or a slotted and an unslotted report mixed; `barrier_add` on a finished or unknown barrier,
/// or past 2147483647 tasks; `barrier_seal` on a finished or unknown barrier,
/// `barrier_pending_slots` on an unknown one; and, for an enqueue that names a parent, the
/// parent's state: unknown, finished, counted without slots or with fewer slots, an ancestor of
/// the barrier, its slot taken.
fn state_codes(call: &Call) -> Vec<&'static str> {
    let codes: &[&str] = match call.function {
        "barrier_enqueue" if call.nested => &[
            NOT_OWNER,
            DUPLICATE,
            UNDEFINED,
            WRONG_STATE,
            INVALID,
            INVALID_RECURSION,
        ],
        "barrier_enqueue" => &[NOT_OWNER, DUPLICATE],
        "barrier_decr" => &[NOT_OWNER, INVALID],
        // TOO_LARGE: a quorum or a delivering expiry grown over 10,000,000 slots.
        "barrier_add" => &[NOT_OWNER, WRONG_STATE, UNDEFINED, INVALID, TOO_LARGE],
        "barrier_seal" => &[NOT_OWNER, WRONG_STATE, UNDEFINED],
        "barrier_pending_slots" => &[NOT_OWNER, UNDEFINED],
        "barrier_abort" | "barrier_status" | "barrier_results" | "barrier_take" => &[NOT_OWNER],
        _ => &[],
    };
    codes.to_vec()
}

/// Whether converting some argument of the call alone fails with `code`.
fn cast_fails_alone(admin: &mut Client, call: &Call, code: &str) -> bool {
    call.args.iter().any(|arg| {
        let (Some(sql), Some(text)) = (arg.cast_alone(), arg.text()) else {
            return false;
        };
        match admin.query_one(sql, &[&text]) {
            Ok(_) => false,
            Err(error) => error.code().is_some_and(|state| state.code() == code),
        }
    })
}

/// What the fuzz saw.
#[derive(Default)]
struct Tally {
    calls: usize,
    outcomes: BTreeMap<String, usize>,
    /// Refused calls whose barrier's digest was compared before and after.
    compared: usize,
    /// Refused calls whose barrier was due for the sweeper, which may change it meanwhile.
    skipped: usize,
}

/// Makes one call and checks everything about it.
fn fuzz_one(admin: &mut Client, fuzz: &mut Client, call: &Call, tally: &mut Tally) {
    let what = format!("call {} {call}", tally.calls);
    let scope = call.id.as_deref().unwrap_or(FUZZ_PREFIX);
    let (before, due_before) = digest(admin, scope);
    let outcome = query(fuzz, call.sql, &call.args);
    let key = match outcome {
        Ok(rows) => {
            if let Some((why, _)) = call.refusals.first() {
                panic!("{what}: accepted, but {why}");
            }
            check_answer(&what, call, &rows);
            "ok".to_string()
        }
        Err(error) => {
            let Some(code) = error.code().map(|state| state.code().to_string()) else {
                panic!("{what}: not an error from the server (a dropped connection?): {error}");
            };
            assert!(!is_forbidden(&code), "{what}: {code}: {error}");
            if INPUT_ERRORS.contains(&code.as_str()) {
                assert!(
                    cast_fails_alone(admin, call, &code),
                    "{what}: {code}, but no argument fails that way alone: {error}"
                );
            } else {
                assert!(
                    DOCUMENTED.contains(&code.as_str()),
                    "{what}: undocumented {code}: {error}"
                );
                // The reason must be one the draw knows of: a refused argument, or, for a call
                // drawn valid, the state of the barrier it names.
                let mut allowed: Vec<&str> = if call.refusals.is_empty() {
                    state_codes(call)
                } else {
                    call.refusals.iter().map(|(_, code)| *code).collect()
                };
                allowed.extend(&call.maybe);
                // An enqueue without a channel takes the session's pg_barrier.channel, which
                // an earlier call of the fuzz may have set to a refused value.
                if call.function == "barrier_enqueue" && call.args[4].text().is_none() {
                    let setting: String = fuzz
                        .query_one("SELECT current_setting('pg_barrier.channel')", &[])
                        .unwrap()
                        .get(0);
                    if !is_channel(&setting) {
                        allowed.push(if setting.len() > 63 {
                            TOO_LONG
                        } else {
                            INVALID
                        });
                    }
                }
                assert!(
                    allowed.contains(&code.as_str()),
                    "{what}: {code}, but the draw expected one of {allowed:?} ({:?}): {error}",
                    call.refusals
                );
            }
            let (after, due_after) = digest(admin, scope);
            if due_before || due_after {
                tally.skipped += 1;
            } else {
                assert_eq!(
                    after, before,
                    "{what}: the refused call ({code}) changed state"
                );
                tally.compared += 1;
            }
            code
        }
    };
    *tally.outcomes.entry(key).or_default() += 1;
    assert!(!fuzz.is_closed(), "{what}: the fuzz session was closed");
    if let Some(id) = &call.id {
        check_barrier(admin, id, &what);
    }
}

/// How long the fuzz runs: `PG_BARRIER_FUZZ_SECONDS`, else 10 seconds.
fn fuzz_seconds() -> u64 {
    std::env::var("PG_BARRIER_FUZZ_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10)
}

#[test]
fn random_arguments_never_crash_or_raise_internal_errors() {
    let seed = seed();
    let seconds = fuzz_seconds();
    let mut admin = connect();
    forget(&mut admin, FUZZ_PREFIX);
    admin.batch_execute(FUZZER_ROLE).unwrap();
    let database: String = admin
        .query_one("SELECT current_database()::text", &[])
        .unwrap()
        .get(0);
    let mut fuzz = connect_as(FUZZER, &database);
    let limit: String = fuzz
        .query_one("SHOW pg_barrier.max_result_bytes", &[])
        .unwrap()
        .get(0);
    assert_eq!(limit, "4kB", "the role's setting applies");
    let empty: i32 = admin.query_one(JSONB_SIZE, &[&"\"\""]).unwrap().get(0);
    let string_overhead = usize::try_from(empty).unwrap();

    let mut rng = Rng::new(seed);
    let pool = id_pool(&mut rng);
    let mut tally = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let call = random_call(&mut rng, &pool, string_overhead);
        fuzz_one(&mut admin, &mut fuzz, &call, &mut tally);
        tally.calls += 1;
    }

    let outcomes: Vec<String> = tally
        .outcomes
        .iter()
        .map(|(outcome, count)| format!("{outcome} {count}"))
        .collect();
    eprintln!(
        "fuzz: seed {seed}, {} calls in {seconds} s: {}",
        tally.calls,
        outcomes.join(", ")
    );
    eprintln!(
        "fuzz: {} refused calls left their barriers unchanged; {} not compared (due for the \
         sweeper)",
        tally.compared, tally.skipped
    );
    let one: i32 = fuzz.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1, "the fuzz session still works");
    assert_no_backend_crashed();
}
