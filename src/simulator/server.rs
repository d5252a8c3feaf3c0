//! Connection handling of the simulator: accepts TCP connections and serves each one itself.
//!
//! Serving every connection by hand (hyper's HTTP/1 connection around the axum router) is what
//! lets a handler end its connection without writing a byte (fault `drop_after_import`) and
//! lets shutdown end calls that hang: each connection task races its HTTP connection against a
//! per-connection drop signal and the simulator-wide stop signal, and simply drops the socket
//! when either fires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Pause after a failed `accept` (for example too many open files), before trying again.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Per-connection signal, given to handlers as a request extension: firing it closes the
/// connection at once, without sending the answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnSignal(Arc<Notify>);

impl ConnSignal {
    /// Asks the connection task to close the connection without answering. The calling
    /// handler must then never complete (its answer would race the close).
    pub(crate) fn drop_connection(&self) {
        self.0.notify_one();
    }
}

/// Returns once `stop` says true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender was dropped, which also means "stop".
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Accepts connections until `stop` fires, then drops the listener and waits for every
/// connection task to end (they end on the same signal).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(serve_connection(stream, peer, router.clone(), stop.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
    tracing::debug!("listener closed");
}

/// Serves one connection until the client closes it, a handler drops it, or the simulator
/// stops.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set nodelay");
    }
    let signal = ConnSignal::default();
    let dropped = Arc::clone(&signal.0);
    let service = service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(signal.clone());
        router.clone().oneshot(request)
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = conn => {
            if let Err(err) = result {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        }
        () = dropped.notified() => tracing::debug!(%peer, "connection dropped without an answer"),
        () = stopped(&mut stop) => tracing::debug!(%peer, "connection closed by shutdown"),
    }
}
