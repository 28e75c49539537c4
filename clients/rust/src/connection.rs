//! A connection whose notifications reach the caller.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::Error;

/// How many notifications wait unread before newer ones are dropped. A notification is only a
/// wake-up hint and the waiter re-reads the state at its poll interval anyway, so a dropped one
/// costs latency, never correctness; the bound keeps an unread channel from growing without end.
const NOTIFICATION_BUFFER: usize = 1024;

/// The notifications (`LISTEN`) of a connection opened by [`connect`], in arrival order.
#[derive(Debug)]
pub struct Notifications {
    receiver: mpsc::Receiver<tokio_postgres::Notification>,
}

impl Notifications {
    /// The next notification; `None` once the connection has ended.
    pub async fn recv(&mut self) -> Option<tokio_postgres::Notification> {
        self.receiver.recv().await
    }

    /// Drops the notifications received so far. Called right before the state is read: what that
    /// read sees already covers them.
    pub(crate) fn discard_received(&mut self) {
        while self.receiver.try_recv().is_ok() {}
    }

    /// Waits until a notification that `wakes` accepts arrives, or until `wake_at`.
    pub(crate) async fn wait_until(
        &mut self,
        client: &Client,
        wake_at: Instant,
        wakes: impl Fn(&tokio_postgres::Notification) -> bool,
    ) {
        loop {
            match tokio::time::timeout_at(wake_at, self.receiver.recv()).await {
                Err(_elapsed) => return,
                Ok(Some(notification)) if wakes(&notification) => return,
                Ok(Some(_other)) => {}
                // The connection ended: the caller's next query fails and reconnects. Should the
                // client still look open, sleep instead of spinning on the closed receiver.
                Ok(None) => {
                    if !client.is_closed() {
                        tokio::time::sleep_until(wake_at).await;
                    }
                    return;
                }
            }
        }
    }
}

/// Opens a connection (without TLS) and drives it on a spawned tokio task that forwards its
/// notifications, which tokio-postgres only hands to whoever polls the connection itself.
///
/// Must be called within a tokio runtime. Server notices are dropped. Dropping the client closes
/// the connection and ends the task.
pub async fn connect(conninfo: &str) -> Result<(Client, Notifications), Error> {
    let (client, mut connection) = tokio_postgres::connect(conninfo, NoTls)
        .await
        .map_err(Error::Database)?;
    let (sender, receiver) = mpsc::channel(NOTIFICATION_BUFFER);
    tokio::spawn(async move {
        let mut messages =
            futures_util::stream::poll_fn(move |context| connection.poll_message(context));
        while let Some(message) = messages.next().await {
            match message {
                // Full, or nobody reads any more: the hint is dropped, and the connection must
                // still be driven for the client's queries.
                Ok(AsyncMessage::Notification(notification)) => {
                    let _ = sender.try_send(notification);
                }
                Ok(_notice) => {}
                // Terminal: the client's pending and later queries fail with "connection closed".
                Err(_) => break,
            }
        }
    });
    Ok((client, Notifications { receiver }))
}
