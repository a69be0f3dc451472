//! A minimal HTTP/1.1 keep-alive client for the protocol scenarios: one connection per worker,
//! a request written as prepared bytes, the response read by `Content-Length` (or chunks).
//! reqwest costs several times the server's work per request on the small GET and POST
//! scenarios, so on one pinned core it would measure itself; this costs little more than the
//! socket calls, the same for every server measured.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLOSED: &str = "connection closed";

pub struct Conn {
    addr: String,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

/// A prepared request: `GET` or a form `POST`, with optional Basic or Bearer authorization.
pub fn request(
    method: &str,
    url: &str,
    authorization: Option<&str>,
    form: Option<&str>,
) -> Result<(String, Vec<u8>), String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    let host = u.host_str().ok_or("no host")?;
    let port = u.port_or_known_default().ok_or("no port")?;
    let mut path = u.path().to_string();
    if let Some(q) = u.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {host}:{port}\r\naccept: */*\r\n");
    if let Some(auth) = authorization {
        head.push_str(&format!("authorization: {auth}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        head.push_str("content-type: application/x-www-form-urlencoded\r\n");
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    Ok((format!("{host}:{port}"), bytes))
}

pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
    let pair = format!("{}:{}", enc(id), enc(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

impl Conn {
    pub fn new(addr: &str) -> Conn {
        Conn {
            addr: addr.to_string(),
            stream: None,
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    /// Sends `req` and answers the status and body. After any failure the connection is
    /// dropped (a half-read response must not become the next one's); the request is sent
    /// again only when a reused connection had been closed by the server before it answered
    /// anything (an idle keep-alive the server let go), never after a timeout.
    pub async fn send(&mut self, req: &[u8]) -> Result<(u16, Vec<u8>), String> {
        for attempt in 0..2 {
            let reused = self.stream.is_some();
            let outcome = tokio::time::timeout(Duration::from_secs(10), self.try_send(req)).await;
            match outcome {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(e)) => {
                    self.stream = None;
                    let unanswered = self.buf.is_empty() && e == CLOSED;
                    self.buf.clear();
                    if !(attempt == 0 && reused && unanswered) {
                        return Err(e);
                    }
                }
                Err(_) => {
                    self.stream = None;
                    self.buf.clear();
                    return Err("timed out".into());
                }
            }
        }
        Err("the server closed the connection twice".into())
    }

    async fn try_send(&mut self, req: &[u8]) -> Result<(u16, Vec<u8>), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            self.stream = Some(s);
            self.buf.clear();
        }
        let stream = self.stream.as_mut().ok_or("no connection")?;
        stream.write_all(req).await.map_err(|e| e.to_string())?;
        // Head.
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            read_more(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|e| e.to_string())?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        for line in head.split("\r\n").skip(1) {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "content-length" => length = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        self.buf.drain(..head_end);
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    read_more(stream, &mut self.buf).await?;
                };
                let size_text = std::str::from_utf8(&self.buf[..line_end]).unwrap_or("");
                let size =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| "bad chunk size")?;
                while self.buf.len() < line_end + 2 + size + 2 {
                    read_more(stream, &mut self.buf).await?;
                }
                body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else {
            // 304 and 204 have no body, whatever they say.
            let n = if status == 304 || status == 204 {
                0
            } else {
                length.unwrap_or(0)
            };
            while self.buf.len() < n {
                read_more(stream, &mut self.buf).await?;
            }
            self.buf.drain(..n).collect()
        };
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err(CLOSED.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
