//! A minimal HTTP/1.1 client for the tests: one request per connection (`Connection: close`),
//! written by hand over a `TcpStream`, so the tests see exactly the bytes the simulator sends
//! (or that it sends none).

use std::io;
use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A parsed HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The first header with this name (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics (failing the test) when it is not.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("answer is not JSON ({err}): {}", self.text()))
    }
}

/// Sends requests to one simulator with a fixed `Authorization` header (or none).
#[derive(Debug, Clone)]
pub(crate) struct Client {
    addr: SocketAddr,
    authorization: Option<String>,
}

impl Client {
    /// A client sending `Authorization: Bearer <token>`.
    pub(crate) fn new(addr: SocketAddr, token: &str) -> Client {
        Client {
            addr,
            authorization: Some(format!("Bearer {token}")),
        }
    }

    /// A client sending this raw `Authorization` value (or no header at all).
    pub(crate) fn with_authorization(addr: SocketAddr, value: Option<&str>) -> Client {
        Client {
            addr,
            authorization: value.map(str::to_string),
        }
    }

    /// POSTs a body and parses the answer; panics when there is none.
    pub(crate) async fn post(&self, path: &str, body: &str) -> Reply {
        self.send("POST", path, Some(body)).await
    }

    /// GETs a target (path and query) and parses the answer; panics when there is none.
    pub(crate) async fn get(&self, target: &str) -> Reply {
        self.send("GET", target, None).await
    }

    /// PUTs a body and parses the answer; panics when there is none.
    pub(crate) async fn put(&self, path: &str, body: &str) -> Reply {
        self.send("PUT", path, Some(body)).await
    }

    /// Sends a request and parses the answer; panics when there is none.
    pub(crate) async fn send(&self, method: &str, target: &str, body: Option<&str>) -> Reply {
        let raw = self
            .raw(method, target, body)
            .await
            .expect("request failed");
        parse_reply(&raw).unwrap_or_else(|| {
            panic!(
                "no HTTP answer to {method} {target}: {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }

    /// Sends a request and returns every byte received until the server closed the connection.
    pub(crate) async fn raw(
        &self,
        method: &str,
        target: &str,
        body: Option<&str>,
    ) -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect(self.addr).await?;
        stream
            .write_all(&self.request_bytes(method, target, body))
            .await?;
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await?;
        Ok(received)
    }

    fn request_bytes(&self, method: &str, target: &str, body: Option<&str>) -> Vec<u8> {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        head.push_str("Connection: close\r\n");
        if let Some(value) = &self.authorization {
            head.push_str(&format!("Authorization: {value}\r\n"));
        }
        if let Some(body) = body {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or("").as_bytes());
        bytes
    }
}

/// Parses a complete HTTP/1.1 answer (body delimited by Content-Length or by the close).
pub(crate) fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if let Some(length) = length {
        body.truncate(length);
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}
