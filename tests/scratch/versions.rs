//! Versions the tests install.

/// The SQL edition's current version: the default of its control file.
pub fn sql_edition_version() -> String {
    let control = include_str!("../../sql-edition/pg_barrier.control");
    control
        .lines()
        .find_map(|line| line.strip_prefix("default_version = '"))
        .and_then(|rest| rest.strip_suffix('\''))
        .expect("default_version in sql-edition/pg_barrier.control")
        .to_string()
}
