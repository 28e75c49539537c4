//! PostgreSQL's isolation tester, run over the specs in `tests/isolation` against this binary's
//! server: each spec interleaves the steps of several sessions in a fixed order, and its output
//! (answers, waits, errors) must match the expected file exactly.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{connect, create_extension, fresh_database, server_bin_dir, server_port};

/// The installation's `pg_isolation_regress`: next to the PGXS makefiles of the `pg_config`
/// that sits beside the running server's executable.
fn isolation_regress() -> PathBuf {
    let pg_config = server_bin_dir().join("pg_config");
    let output = Command::new(&pg_config)
        .arg("--pgxs")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", pg_config.display()));
    let pgxs = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    // .../lib/pgxs/src/makefiles/pgxs.mk -> .../lib/pgxs/src/test/isolation/
    let tool = pgxs
        .parent()
        .and_then(Path::parent)
        .expect("a PGXS path")
        .join("test/isolation/pg_isolation_regress");
    assert!(
        tool.exists(),
        "{} is missing: install postgresql-server-dev",
        tool.display()
    );
    tool
}

#[test]
fn isolation_specs_give_their_expected_interleavings() {
    let tool = isolation_regress();
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/isolation");
    let output = Path::new(env!("CARGO_TARGET_TMPDIR")).join("isolation");
    std::fs::create_dir_all(&output).unwrap();
    // The database is made here, with this binary's edition installed; the tool uses it as is.
    fresh_database(&mut connect(), "barrier_isolation")
        .batch_execute(&create_extension())
        .unwrap();
    let status = Command::new(&tool)
        .arg("--host=localhost")
        .arg(format!("--port={}", server_port()))
        .arg(format!("--user={}", pgrx_tests::get_pg_user()))
        .arg("--dbname=barrier_isolation")
        .arg("--use-existing")
        .arg(format!("--inputdir={}", specs.display()))
        .arg(format!("--outputdir={}", output.display()))
        .arg(format!(
            "--schedule={}",
            specs.join("isolation_schedule").display()
        ))
        .status()
        .unwrap_or_else(|e| panic!("{}: {e}", tool.display()));
    if !status.success() {
        let diffs = std::fs::read_to_string(output.join("regression.diffs")).unwrap_or_default();
        panic!("isolation specs failed ({status}):\n{diffs}");
    }
}
