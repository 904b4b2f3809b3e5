//! The observer's HTTP endpoint (`--metrics`, `--ui`): a small HTTP/1.1
//! server on std's TcpListener, one thread per connection. It serves
//!
//! - `/metrics`: Prometheus text;
//! - `/api/metrics`: the JSON snapshot; `/api/graph`: the graph;
//! - `/api/stream`: the snapshot every 250 ms as server-sent events;
//! - `/api/tap?node=NAME&limit=N`: records out of an output as they flow;
//! - `/`: the dashboard (one HTML file compiled into the binary).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::{Observer, Status};

/// The dashboard page (inline CSS and JS, no external assets).
const INDEX: &str = include_str!("../ui/index.html");

/// How often the stream sends a snapshot.
const TICK: Duration = Duration::from_millis(250);

/// Connections served at once; more get 503 (each has a thread).
const MAX_CONNECTIONS: usize = 64;

/// Bytes of a request (line and headers) read at most.
const MAX_REQUEST: u64 = 16 * 1024;

/// Listens on `addr` and serves the observer from a background thread;
/// returns the address bound (port 0 picks a free port).
///
/// # Errors
/// When the address cannot be bound.
pub fn serve(addr: &str, observer: Arc<Observer>, ui: bool) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen on {addr}: {e}; choose another address or port (host:port)")
    })?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("lockstep-http".into())
        .spawn(move || {
            let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            for conn in listener.incoming() {
                let mut conn = match conn {
                    Ok(c) => c,
                    Err(_) => {
                        // Out of descriptors, say: wait rather than spin.
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                use std::sync::atomic::Ordering;
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
                    let _ = respond(
                        &mut conn,
                        "503 Service Unavailable",
                        "text/plain",
                        b"too many connections\n",
                    );
                    continue;
                }
                let (o, n) = (Arc::clone(&observer), Arc::clone(&active));
                let spawned = std::thread::Builder::new()
                    .name("lockstep-http-conn".into())
                    .spawn(move || {
                        let _ = handle(conn, &o, ui);
                        n.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })
        .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
    Ok(bound)
}

fn respond(s: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    s.flush()
}

/// Decodes `%XX` and `+` in a query value.
fn unescape(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn handle(mut s: TcpStream, o: &Arc<Observer>, ui: bool) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    // A client that stops reading fails the write instead of holding the
    // thread.
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(s.try_clone()?.take(MAX_REQUEST));
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Headers are read and ignored (within MAX_REQUEST bytes in all).
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or("/");
    if method != "GET" {
        return respond(
            &mut s,
            "405 Method Not Allowed",
            "text/plain",
            b"only GET\n",
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |k: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(key, _)| *key == k)
            .map(|(_, v)| unescape(v))
    };
    match path {
        "/metrics" => respond(
            &mut s,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            o.prometheus().as_bytes(),
        ),
        "/api/metrics" => respond(
            &mut s,
            "200 OK",
            "application/json",
            o.snapshot().to_string().as_bytes(),
        ),
        "/api/graph" => respond(
            &mut s,
            "200 OK",
            "application/json",
            o.graph_json().to_string().as_bytes(),
        ),
        "/api/stream" => stream(&mut s, o),
        "/api/tap" => {
            let Some(node) = param("node") else {
                return respond(&mut s, "400 Bad Request", "text/plain", b"give ?node=NAME\n");
            };
            let limit = param("limit").and_then(|l| l.parse::<u64>().ok());
            match o.subscribe(&node) {
                Ok(rx) => tap(&mut s, o, &rx, limit),
                Err(e) => respond(&mut s, "404 Not Found", "text/plain", format!("{e}\n").as_bytes()),
            }
        }
        "/" | "/index.html" if ui => respond(&mut s, "200 OK", "text/html; charset=utf-8", INDEX.as_bytes()),
        _ => respond(
            &mut s,
            "404 Not Found",
            "text/plain",
            b"lockstep serves /metrics, /api/metrics, /api/graph, /api/stream, /api/tap?node=NAME (and / with --ui)\n",
        ),
    }
}

/// Server-sent events: a snapshot every tick; after the job ends, the
/// final one, then a comment now and then so the page stays connected.
fn stream(s: &mut TcpStream, o: &Arc<Observer>) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nretry: 1000\n\n"
    )?;
    loop {
        let done = matches!(o.status(), Status::Finished | Status::Failed);
        write!(s, "event: metrics\ndata: {}\n\n", o.snapshot())?;
        s.flush()?;
        if done {
            loop {
                std::thread::sleep(Duration::from_secs(5));
                s.write_all(b": finished\n\n")?;
                s.flush()?;
            }
        }
        std::thread::sleep(TICK);
    }
}

/// Streams tapped records until `limit`, the end of the job, or the client
/// leaving.
fn tap(
    s: &mut TcpStream,
    o: &Arc<Observer>,
    rx: &std::sync::mpsc::Receiver<String>,
    limit: Option<u64>,
) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()?;
    let mut n = 0u64;
    while limit.is_none_or(|l| n < l) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                s.write_all(line.as_bytes())?;
                s.write_all(b"\n")?;
                n += 1;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                s.flush()?;
                if matches!(o.status(), Status::Finished | Status::Failed) || gone(s) {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    s.flush()
}

/// Whether the client closed the connection (checked without blocking).
fn gone(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let closed = matches!(s.peek(&mut [0u8; 1]), Ok(0));
    let _ = s.set_nonblocking(false);
    closed
}

/// `lockstep tap --attach HOST:PORT`: prints what a running job's
/// `/api/tap` streams.
///
/// # Errors
/// When the job cannot be reached or refuses the tap.
pub fn tap_remote(
    addr: &str,
    node: &str,
    limit: Option<u64>,
    out: &mut dyn Write,
) -> Result<(), String> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = TcpStream::connect(addr).map_err(|e| {
        format!(
            "cannot reach a job at {addr}: {e}; start it with --metrics or --ui at that address"
        )
    })?;
    let mut q = format!("/api/tap?node={}", escape(node));
    if let Some(l) = limit {
        q.push_str(&format!("&limit={l}"));
    }
    write!(
        conn,
        "GET {q} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(conn);
    let mut status = String::new();
    r.read_line(&mut status).map_err(|e| e.to_string())?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).map_err(|e| e.to_string())? == 0 || h == "\r\n" {
            break;
        }
    }
    if !status.contains(" 200 ") {
        let mut body = String::new();
        let _ = r.read_to_string(&mut body);
        return Err(format!("the job refused the tap: {}", body.trim()));
    }
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
            return Ok(());
        }
        out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        let _ = out.flush();
    }
}

fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
