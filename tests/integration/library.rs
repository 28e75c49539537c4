//! What only the Rust build's library has: its fast path for reports and its background
//! sweeper. Run with the `rust` target only (scripts/test.sh passes `--skip library::` to the
//! other runs): against the SQL edition there is no library, and with the fast path off its
//! tests would test the SQL path that every other module already covers.

// The fast path is built for PostgreSQL 15 only (src/fast_path.rs); on the other majors
// `editions::each_run_tests_the_target_it_names` checks that it declines every report, and
// scripts/test.sh says that these tests run on 15.
#[cfg(feature = "pg15")]
mod fast_path;
mod sweeper;
