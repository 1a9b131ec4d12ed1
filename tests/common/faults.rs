//! A fault-injecting HTTP proxy on loopback, between dbbackup and a storage server (moto):
//! one request per connection (it asks the server for `Connection: close` and closes the
//! client's connection after the answer), and for each request, as the current [`Mode`] and
//! a seeded generator decide, it passes the request through or injects one [`Fault`]:
//! dropped connection, response cut short, 500, 503, or a stall longer than the request
//! timeout.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Read the request, close the connection without an answer.
    Drop,
    /// Forward the request, send back only the first half of the answer, close.
    Truncate,
    /// Answer 500 Internal Server Error without forwarding.
    Status500,
    /// Answer 503 Slow Down without forwarding.
    Status503,
    /// Read the request, answer nothing for the stall time, close.
    Stall,
}

const FAULTS: [Fault; 5] = [
    Fault::Drop,
    Fault::Truncate,
    Fault::Status500,
    Fault::Status503,
    Fault::Stall,
];

/// How requests are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Everything passes.
    Pass,
    /// Each request fails with probability `percent`, but one request (method and target)
    /// at most `per_request` times: retries get it through.
    Flaky { percent: u64, per_request: u32 },
    /// Every request fails.
    Outage,
    /// The first `times` requests whose request line contains `target` meet `fault`.
    Targeted {
        fault: Fault,
        target: &'static str,
        times: u32,
    },
}

struct State {
    mode: Mode,
    rng: u64,
    tried: HashMap<String, u32>,
    injected: HashMap<Fault, u64>,
    passed: u64,
}

/// The proxy; stopped when dropped.
pub struct FaultProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<State>>,
}

fn splitmix(z: &mut u64) -> u64 {
    *z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut x = *z;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl FaultProxy {
    /// A proxy to the server on `upstream` (a loopback port); faults from `seed`; a stalled
    /// request is held for `stall`.
    pub fn start(upstream: u16, seed: u64, stall: Duration) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Pass,
            rng: seed,
            tried: HashMap::new(),
            injected: HashMap::new(),
            passed: 0,
        }));
        let (s2, st2) = (stop.clone(), state.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st2.clone();
                std::thread::spawn(move || serve(conn, upstream, &st, stall));
            }
        });
        FaultProxy { port, stop, state }
    }

    pub fn set_mode(&self, mode: Mode) {
        let mut s = self.state.lock().unwrap();
        s.mode = mode;
        s.tried.clear();
    }

    /// Faults injected so far, by kind, and requests passed through.
    pub fn counts(&self) -> (HashMap<Fault, u64>, u64) {
        let s = self.state.lock().unwrap();
        (s.injected.clone(), s.passed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The fault for a request `key` (`METHOD target`), if any; counts it.
fn decide(state: &Mutex<State>, key: &str) -> Option<Fault> {
    let mut s = state.lock().unwrap();
    let r = splitmix(&mut s.rng);
    let fault = match s.mode {
        Mode::Pass => None,
        Mode::Outage => Some(FAULTS[(r % 5) as usize]),
        Mode::Targeted { fault, target, times } => {
            let n = s.tried.get(target).copied().unwrap_or(0);
            if key.contains(target) && n < times {
                *s.tried.entry(target.to_string()).or_default() += 1;
                *s.injected.entry(fault).or_default() += 1;
                return Some(fault);
            }
            None
        }
        Mode::Flaky { percent, per_request } => {
            let n = s.tried.get(key).copied().unwrap_or(0);
            (r % 100 < percent && n < per_request).then(|| FAULTS[((r >> 32) % 5) as usize])
        }
    };
    match fault {
        Some(f) => {
            *s.tried.entry(key.to_string()).or_default() += 1;
            *s.injected.entry(f).or_default() += 1;
        }
        None => s.passed += 1,
    }
    fault
}

/// One request: headers up to the blank line, then a `Content-Length` body. `None` when
/// the client closed first.
fn read_request(c: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if c.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "the fault proxy reads Content-Length bodies only: {head}"
    );
    let mut body = vec![0u8; len];
    c.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// `head` with its `Connection` header replaced by `Connection: close`.
fn close_after(head: &str) -> String {
    let mut out: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    out.push("Connection: close");
    format!("{}\r\n\r\n", out.join("\r\n"))
}

fn status(c: &mut TcpStream, code: u16, reason: &str, s3code: &str) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{s3code}</Code><Message>injected</Message></Error>"
    );
    let _ = write!(
        c,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn serve(mut c: TcpStream, upstream: u16, state: &Mutex<State>, stall: Duration) {
    let Some((head, body)) = read_request(&mut c) else {
        return;
    };
    let key = head.lines().next().unwrap_or("").to_string();
    let fault = decide(state, &key);
    match fault {
        Some(Fault::Drop) => return,
        Some(Fault::Status500) => return status(&mut c, 500, "Internal Server Error", "InternalError"),
        Some(Fault::Status503) => return status(&mut c, 503, "Slow Down", "SlowDown"),
        Some(Fault::Stall) => {
            std::thread::sleep(stall);
            return;
        }
        Some(Fault::Truncate) | None => {}
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    if up
        .write_all(close_after(&head).as_bytes())
        .and_then(|_| up.write_all(&body))
        .is_err()
    {
        return;
    }
    let mut answer = Vec::new();
    if up.read_to_end(&mut answer).is_err() {
        return;
    }
    let send = if fault == Some(Fault::Truncate) {
        &answer[..answer.len() / 2]
    } else {
        &answer[..]
    };
    let _ = c.write_all(send);
    let _ = c.shutdown(Shutdown::Both);
}
