//! What only the Rust build's library has: its fast path for reports and its background
//! sweeper. Run with the `rust` target only (scripts/test.sh passes `--skip library::` to the
//! other runs): against the SQL edition there is no library, and with the fast path off its
//! tests would test the SQL path that every other module already covers.

mod fast_path;
mod sweeper;
