//! Waiting for barriers to finish, and consuming completions exactly once.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::Client;

use crate::calls;
use crate::connection::{self, Notifications};
use crate::types::{BarrierStatus, Completion, Notification};
use crate::Error;

/// How a [`Waiter`] learns that something changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaiterOptions {
    /// `LISTEN` on the barrier's channel as a wake-up. Turn it off behind a transaction-pooling
    /// PgBouncer, where a session's `LISTEN` does not survive the transaction; the waiter then
    /// polls.
    pub listen: bool,
    /// How often the state is read again. Even with `listen`, so that a missed notification (one
    /// sent while disconnected, say) costs at most this much latency. Zero re-reads as fast as
    /// the server answers.
    pub poll_interval: Duration,
}

impl Default for WaiterOptions {
    fn default() -> Self {
        WaiterOptions {
            listen: true,
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// `now + duration`, or a moment some decades ahead where the sum would overflow (a timeout of
/// `Duration::MAX` means "no timeout", not a panic).
fn later_by(now: Instant, duration: Duration) -> Instant {
    const DECADES: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    now.checked_add(duration)
        .or_else(|| now.checked_add(DECADES))
        .unwrap_or(now)
}

/// The first pause before reconnecting, doubled after each failed attempt up to the longest.
const FIRST_RECONNECT_PAUSE: Duration = Duration::from_millis(100);
const LONGEST_RECONNECT_PAUSE: Duration = Duration::from_secs(2);

/// One connection and what lives and dies with it.
struct Session {
    client: Client,
    notifications: Notifications,
    backend_pid: i32,
    /// Channels this connection LISTENs on.
    listening: HashSet<String>,
    /// The session's default channel (`pg_barrier.channel`), once read.
    default_channel: Option<String>,
    /// A claim's transaction is open on this connection: a [`Claimed`] is alive, or was dropped
    /// without `ack` or `release`, and is rolled back before the connection is used again.
    claim_open: bool,
}

impl Session {
    async fn open(conninfo: &str) -> Result<Session, Error> {
        let (client, notifications) = connection::connect(conninfo).await?;
        let row = client
            .query_typed_one("SELECT pg_backend_pid() AS pid", &[])
            .await?;
        let backend_pid = row.try_get("pid").map_err(Error::Database)?;
        Ok(Session {
            client,
            notifications,
            backend_pid,
            listening: HashSet::new(),
            default_channel: None,
            claim_open: false,
        })
    }

    /// Whether `error` means this connection is gone (closed, terminated, shut down), so that
    /// reconnecting is the way on. Errors of a working connection are the caller's to see.
    fn is_lost(&self, error: &Error) -> bool {
        if self.client.is_closed() {
            return true;
        }
        let Some(error) = error.postgres() else {
            return false;
        };
        if error.is_closed() {
            return true;
        }
        match error.code() {
            // connection_exception, admin_shutdown, crash_shutdown, cannot_connect_now
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
            }
            None => {
                std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
            }
        }
    }

    /// Rolls back the transaction of a claim that was dropped unacknowledged, so that its
    /// completion is listed again and this connection is out of any transaction.
    async fn end_abandoned_claim(&mut self) -> Result<(), Error> {
        if self.claim_open {
            self.client.batch_execute("ROLLBACK").await?;
            self.claim_open = false;
        }
        Ok(())
    }

    /// LISTENs on `channel` unless it already does. LISTEN takes no bind parameter, so the
    /// channel is quoted as an identifier; pg_barrier only accepts lower-case identifiers as
    /// channels, which quoting leaves as they are.
    async fn listen(&mut self, channel: &str) -> Result<(), Error> {
        if self.listening.contains(channel) {
            return Ok(());
        }
        let quoted = format!("\"{}\"", channel.replace('"', "\"\""));
        self.client
            .batch_execute(&format!("LISTEN {quoted}"))
            .await?;
        self.listening.insert(channel.to_owned());
        Ok(())
    }

    /// The channel barriers enqueued without one notify on: `pg_barrier.channel`, or its default.
    async fn default_channel(&mut self) -> Result<String, Error> {
        if let Some(channel) = &self.default_channel {
            return Ok(channel.clone());
        }
        const SQL: &str = "SELECT coalesce(nullif(current_setting('pg_barrier.channel', true), \
            ''), 'pg_barrier') AS channel";
        let row = self.client.query_typed_one(SQL, &[]).await?;
        let channel: String = row.try_get("channel").map_err(Error::Database)?;
        self.default_channel = Some(channel.clone());
        Ok(channel)
    }

    async fn read_status(&self, id: &str) -> Result<BarrierStatus, Error> {
        calls::status(&self.client, id)
            .await?
            .ok_or_else(|| Error::UnknownBarrier {
                id: id.to_owned(),
                source: None,
            })
    }

    /// Claims one completion in a transaction that stays open if one was claimed (`claim_open`),
    /// and is rolled back if none was.
    async fn claim_one(&mut self, channel: Option<&str>) -> Result<Option<Completion>, Error> {
        self.client.batch_execute("BEGIN").await?;
        self.claim_open = true;
        let claimed = calls::completions(&self.client, channel, 1).await;
        match claimed {
            Ok(mut completions) if !completions.is_empty() => Ok(completions.pop()),
            Ok(_none) => {
                self.end_abandoned_claim().await?;
                Ok(None)
            }
            Err(error) => {
                // The claim failed; the transaction is aborted. Its rollback's own failure (the
                // connection is gone) is the lesser news, and `claim_open` still says to retry.
                let _ = self.end_abandoned_claim().await;
                Err(error)
            }
        }
    }
}

/// Waits for barriers on a connection of its own, and hands out completions exactly once.
///
/// The waiter opens and owns its connection (so that its LISTENs and claim transactions are its
/// own), drives it on a tokio task, and reconnects, with a short backoff, when it is lost: what
/// it waits for is read from the state, never from notifications alone, so nothing is missed
/// across a reconnect. Methods take `&mut self`: one wait or claim at a time per waiter.
pub struct Waiter {
    conninfo: String,
    options: WaiterOptions,
    session: Session,
}

/// Leaves the connection string out: it may hold a password.
impl fmt::Debug for Waiter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Waiter")
            .field("options", &self.options)
            .field("backend_pid", &self.session.backend_pid)
            .field("listening", &self.session.listening)
            .field("claim_open", &self.session.claim_open)
            .finish_non_exhaustive()
    }
}

impl Waiter {
    /// Connects to `conninfo` (a `key=value` string or a `postgres://` URL, without TLS).
    pub async fn connect(conninfo: &str, options: WaiterOptions) -> Result<Waiter, Error> {
        let session = Session::open(conninfo).await?;
        Ok(Waiter {
            conninfo: conninfo.to_owned(),
            options,
            session,
        })
    }

    /// The server process of the current connection (it changes when the waiter reconnects).
    pub fn backend_pid(&self) -> i32 {
        self.session.backend_pid
    }

    /// Opens a new connection in place of the lost one, pausing first (so a server that keeps
    /// dropping connections is not hammered) and retrying until `deadline`. Fails with the last
    /// connection error once the deadline has passed.
    async fn reconnect(&mut self, deadline: Instant) -> Result<(), Error> {
        let mut pause = FIRST_RECONNECT_PAUSE;
        loop {
            tokio::time::sleep(pause).await;
            match Session::open(&self.conninfo).await {
                Ok(session) => {
                    self.session = session;
                    return Ok(());
                }
                Err(error) if Instant::now() >= deadline => return Err(error),
                Err(_retry) => pause = (pause * 2).min(LONGEST_RECONNECT_PAUSE),
            }
        }
    }

    /// Waits until barrier `id` is complete (with or without failures), aborted or expired, and
    /// returns its status row. An open barrier is not finished before it is sealed, even with
    /// every report in.
    ///
    /// Fails with [`Error::UnknownBarrier`] if no barrier has this id, and with
    /// [`Error::Timeout`] if it is still pending after `timeout`. A lost connection is
    /// reconnected; one that cannot be reopened by then fails with the connection's error.
    pub async fn wait(&mut self, id: &str, timeout: Duration) -> Result<BarrierStatus, Error> {
        let started = Instant::now();
        let deadline = later_by(started, timeout);
        loop {
            match self.wait_on_this_connection(id, started, deadline).await {
                Err(error) if self.session.is_lost(&error) => self.reconnect(deadline).await?,
                outcome => return outcome,
            }
        }
    }

    async fn wait_on_this_connection(
        &mut self,
        id: &str,
        started: Instant,
        deadline: Instant,
    ) -> Result<BarrierStatus, Error> {
        self.session.end_abandoned_claim().await?;
        self.session.notifications.discard_received();
        let mut current = self.session.read_status(id).await?;
        if self.options.listen && !current.status.is_finished() {
            // LISTEN first, then read again: a notification sent between the first read and the
            // LISTEN would be missed, one sent after it is queued for us.
            self.session.listen(&current.channel).await?;
            current = self.session.read_status(id).await?;
        }
        loop {
            if current.status.is_finished() {
                return Ok(current);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    id: id.to_owned(),
                    waited: now - started,
                });
            }
            let wake_at = later_by(now, self.options.poll_interval).min(deadline);
            let session = &mut self.session;
            session
                .notifications
                .wait_until(&session.client, wake_at, |notification| {
                    // Another barrier's end on a shared channel is no reason to read; a payload
                    // that does not parse is read as a reason, to be safe.
                    Notification::from_payload(notification.payload())
                        .map_or(true, |payload| payload.id == id)
                })
                .await;
            current = self.session.read_status(id).await?;
        }
    }

    /// Claims the next completion of the calling role on `channel` (any channel when `None`),
    /// waiting up to `timeout` for one; `Ok(None)` if none came. A zero timeout looks once.
    ///
    /// The claim is a `barrier_completions(channel, 1)` call in a transaction that stays open on
    /// this waiter's connection while the caller handles the completion: [`Claimed::ack`]
    /// commits it, and only then is the completion gone for good; [`Claimed::release`], dropping
    /// the `Claimed`, a failed handler or a lost connection roll it back, and the completion is
    /// listed again. Consumers racing on other connections skip claimed completions
    /// (`SKIP LOCKED`), so none is handed to two of them and none is lost.
    ///
    /// With `listen`, it wakes on notifications on `channel`; for `None`, on the session's default
    /// channel (`pg_barrier.channel`) only, and completions on other channels are found at the
    /// next poll.
    pub async fn next_completion(
        &mut self,
        channel: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<Claimed<'_>>, Error> {
        let deadline = later_by(Instant::now(), timeout);
        let completion = loop {
            match self.claim_on_this_connection(channel, deadline).await {
                Ok(Some(completion)) => break completion,
                Ok(None) => return Ok(None),
                Err(error) if self.session.is_lost(&error) => self.reconnect(deadline).await?,
                Err(error) => return Err(error),
            }
        };
        Ok(Some(Claimed {
            waiter: self,
            completion,
        }))
    }

    async fn claim_on_this_connection(
        &mut self,
        channel: Option<&str>,
        deadline: Instant,
    ) -> Result<Option<Completion>, Error> {
        self.session.end_abandoned_claim().await?;
        if self.options.listen {
            let wake_channel = match channel {
                Some(channel) => channel.to_owned(),
                None => self.session.default_channel().await?,
            };
            self.session.listen(&wake_channel).await?;
        }
        loop {
            // Listening already: a completion committed after this claim finds nothing is
            // announced to us, and wakes us below.
            self.session.notifications.discard_received();
            if let Some(completion) = self.session.claim_one(channel).await? {
                return Ok(Some(completion));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let wake_at = later_by(now, self.options.poll_interval).min(deadline);
            let session = &mut self.session;
            session
                .notifications
                .wait_until(&session.client, wake_at, |notification| {
                    channel.is_none_or(|channel| notification.channel() == channel)
                })
                .await;
        }
    }
}

/// A completion claimed by [`Waiter::next_completion`], whose transaction is still open.
///
/// [`ack`](Claimed::ack) once the completion is handled; [`release`](Claimed::release) (or drop)
/// to hand it back. Dropped without either, the transaction is rolled back when the waiter is next
/// used (or its connection closes), so the completion's row stays locked until then: prefer
/// `release`.
pub struct Claimed<'a> {
    waiter: &'a mut Waiter,
    /// What was claimed.
    pub completion: Completion,
}

impl fmt::Debug for Claimed<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Claimed")
            .field("completion", &self.completion)
            .field("backend_pid", &self.waiter.session.backend_pid)
            .finish_non_exhaustive()
    }
}

impl Claimed<'_> {
    /// The connection whose transaction holds the claim. Writes made through it commit with
    /// [`ack`](Claimed::ack) or roll back with the claim: the handling and the hand-out are one
    /// transaction.
    pub fn client(&self) -> &Client {
        &self.waiter.session.client
    }

    /// Commits the claim: the completion is handled, and no one will be handed it again.
    ///
    /// Fails if the transaction cannot commit, including when a statement in it failed (a plain
    /// `COMMIT` of such a transaction silently rolls back; the `SELECT 1` in front of it fails
    /// instead). The completion is then listed again.
    pub async fn ack(self) -> Result<Completion, Error> {
        let session = &mut self.waiter.session;
        session.client.batch_execute("SELECT 1; COMMIT").await?;
        session.claim_open = false;
        Ok(self.completion)
    }

    /// Rolls the claim back: the completion is listed again, for this or another consumer.
    pub async fn release(self) -> Result<(), Error> {
        self.waiter.session.end_abandoned_claim().await
    }
}
