//! Scratch PostgreSQL clusters for tests that need a server of their own: initdb and the server
//! run as the `postgres` user (PostgreSQL refuses to run as root), in a directory under /var/tmp
//! named for the test process, removed when the test passes and kept when it fails.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

/// A scratch cluster, stopped (immediately) when dropped.
pub struct Cluster {
    pub bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
}

/// Runs an installation program as `postgres` (PostgreSQL refuses to run as root).
pub fn as_postgres(program: &Path) -> Command {
    let mut command = Command::new("sudo");
    command.arg("-u").arg("postgres").arg(program);
    command
}

pub fn run(mut command: Command) {
    let output = command.output().expect("run a PostgreSQL program");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// An empty directory for cluster `name` of this process, writable by `postgres`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!(
        "/var/tmp/pg_barrier-test-{name}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    run({
        let mut chown = Command::new("chown");
        chown.arg("postgres").arg(&dir);
        chown
    });
    dir
}

impl Cluster {
    /// A fresh cluster of the installation in `bin`, started with `settings`, with an empty
    /// database `app`.
    pub fn start(bin: PathBuf, name: &str, settings: &[&str]) -> Cluster {
        let dir = scratch_dir(name);
        run({
            let mut initdb = as_postgres(&bin.join("initdb"));
            initdb
                .args(["-A", "trust", "-U", "postgres", "-D"])
                .arg(dir.join("data"));
            initdb
        });
        let cluster = Cluster {
            bin,
            dir,
            port: free_port(),
        };
        let mut conf = format!(
            "port = {}\nunix_socket_directories = '{}'\nfsync = on\n",
            cluster.port,
            cluster.dir.display()
        );
        for setting in settings {
            conf.push_str(setting);
            conf.push('\n');
        }
        fs::write(cluster.dir.join("data/postgresql.auto.conf"), conf).unwrap();
        cluster.pg_ctl_start();
        let mut admin = cluster.connect("postgres");
        admin.batch_execute("CREATE DATABASE app").unwrap();
        cluster
    }

    pub fn pg_ctl_start(&self) {
        run({
            let mut pg_ctl = as_postgres(&self.bin.join("pg_ctl"));
            pg_ctl
                .args(["start", "-w", "-t", "120", "-D"])
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.log_path());
            pg_ctl
        });
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The server log shows no process that died of a signal, and no PANIC, other than what the
    /// test itself caused (a SIGKILL of every process leaves no log line).
    pub fn assert_log_clean(&self) {
        let log = self.log();
        assert!(
            !log.contains("PANIC") && !log.contains("terminated by signal"),
            "the server log of {} shows a crash:\n{log}",
            self.dir.display()
        );
    }

    pub fn connect(&self, database: &str) -> Client {
        Config::new()
            .host("localhost")
            .port(self.port)
            .user("postgres")
            .dbname(database)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("connect to {database} on port {}: {e}", self.port))
    }

    /// Kills the postmaster and every process of the cluster at once with SIGKILL: no
    /// shutdown, no checkpoint, shared buffers lost. WAL already written is all that remains.
    pub fn crash(&self) {
        let pid_file = fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap();
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let mut pids = vec![postmaster];
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": the parent follows the last ')'.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok());
            if parent == Some(postmaster) {
                pids.push(pid);
            }
        }
        // Stopped first, all of them, so that none sees the others die and exits in an orderly
        // way; then killed.
        let list = pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        run({
            let mut kill = Command::new("bash");
            kill.arg("-c")
                .arg(format!("kill -STOP {list}; kill -KILL {list}; true"));
            kill
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while pids.iter().any(|pid| !gone(*pid)) {
            assert!(Instant::now() < deadline, "processes survived SIGKILL");
            thread::sleep(Duration::from_millis(20));
        }
        // Nobody here reaps the dead postmaster, and PostgreSQL would take its zombie for a live
        // server; after a real crash the process would be gone, so its lock files go too.
        fs::remove_file(self.dir.join("data/postmaster.pid")).unwrap();
        let _ = fs::remove_file(self.dir.join(format!(".s.PGSQL.{}.lock", self.port)));
    }
}

/// Whether a process has exited (it may linger as a zombie until its parent reaps it).
pub fn gone(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A failure between stopping and killing the processes in `crash` must not leave a
        // frozen server behind.
        if let Ok(pid_file) = fs::read_to_string(self.dir.join("data/postmaster.pid")) {
            if let Some(postmaster) = pid_file.lines().next() {
                let _ = Command::new("bash")
                    .arg("-c")
                    .arg(format!("kill -CONT {} 2>/dev/null", postmaster.trim()))
                    .output();
            }
        }
        let _ = as_postgres(&self.bin.join("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        if thread::panicking() {
            eprintln!(
                "the failed test's cluster is kept in {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
