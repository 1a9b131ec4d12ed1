//! Real storage servers on loopback ports for the backend tests, each installed by
//! scripts/setup.sh, started by a test, waited for and stopped by PID: moto (S3), Azurite
//! (Azure Blob), gcp-storage-emulator (GCS) and wsgidav (WebDAV); and the one cycle every
//! backend must pass ([`repository_cycle`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{cli, digest, json, stderr, Gen};

/// Azurite's well-known development account and key (public, in Azure's documentation).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A server process on a loopback port, stopped (SIGTERM, then waited for) when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Start `cmd` (which must listen on `port`) and wait until the port accepts. The
    /// server's output goes to `server.log` in `dir`, shown when it fails to start. A
    /// connection whose local port is `port` is the kernel connecting the socket to itself
    /// (TCP simultaneous open, possible while nothing listens on an ephemeral port), not the
    /// server, so it does not count.
    pub fn spawn(what: &str, mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Server {
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} is required (scripts/setup.sh installs it): {e}"));
        let mut server = Server { child, port, dir };
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{what} exited ({status}) before it listened: {}", server.log());
            }
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) if s.local_addr().map(|a| a.port()).ok() != Some(port) => break,
                _ => {}
            }
            let waited = t0.elapsed();
            assert!(
                waited < Duration::from_secs(60),
                "{what} did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// What the server printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Panic, with the server's log, if it is no longer running.
    pub fn assert_running(&mut self, what: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{what} exited ({status}): {}", self.log());
        }
    }

    /// A plain HTTP/1.1 request; the response's status code.
    pub fn http(&self, method: &str, path: &str, body: &str) -> u16 {
        let resp = self.request(method, path, body);
        resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }

    /// A plain HTTP/1.1 request; the whole response, headers and body.
    pub fn request(&self, method: &str, path: &str, body: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// moto_server (S3) with bucket `bucket`.
pub fn moto(bucket: &str) -> Server {
    let port = super::pg::free_port();
    let mut cmd = Command::new("moto_server");
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let s = Server::spawn("moto_server", cmd, port, tempfile::tempdir().unwrap());
    assert_eq!(s.http("PUT", &format!("/{bucket}"), ""), 200, "create bucket");
    s
}

/// Azurite's blob service with container `container`, created with Shared Key auth by
/// tests/support/azure_container.py (dbbackup never creates containers).
pub fn azurite(container: &str) -> Server {
    let port = super::pg::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("azurite-blob");
    cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .args(["--loose", "--skipApiVersionCheck", "--disableTelemetry", "--location"])
        .arg(dir.path());
    let mut s = Server::spawn("azurite-blob", cmd, port, dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/azure_container.py");
    let create = || {
        Command::new("python3")
            .arg(&script)
            .args([&azurite_endpoint(&s), AZURITE_ACCOUNT, container])
            .env("AZURE_STORAGE_KEY", AZURITE_KEY)
            .output()
            .unwrap()
    };
    // Once (CI, 2 cores) the port accepted and the next connection was refused; the
    // server's log and state are now kept to say why, and a refused connection from a
    // running server is retried for a while.
    let t0 = Instant::now();
    let mut o = create();
    while !o.status.success() && stderr(&o).contains("Connection refused") && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(250));
        o = create();
    }
    s.assert_running("azurite-blob");
    assert!(
        o.status.success(),
        "create container: {}\nazurite: {}",
        stderr(&o),
        s.log()
    );
    s
}

pub fn azurite_endpoint(s: &Server) -> String {
    format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", s.port)
}

/// gcp-storage-emulator (GCS, in memory) with bucket `bucket`.
pub fn gcs(bucket: &str) -> Server {
    let port = super::pg::free_port();
    let mut cmd = Command::new("gcp-storage-emulator");
    cmd.args([
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--in-memory",
    ]);
    let s = Server::spawn("gcp-storage-emulator", cmd, port, tempfile::tempdir().unwrap());
    let body = format!("{{\"name\":\"{bucket}\"}}");
    assert_eq!(
        s.http("POST", "/storage/v1/b?project=test", &body),
        200,
        "create bucket"
    );
    s
}

/// wsgidav (WebDAV) serving a temp directory to user `user` with password `password`
/// (HTTP basic authentication).
pub fn webdav(user: &str, password: &str) -> Server {
    let port = super::pg::free_port();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("share");
    std::fs::create_dir(&root).unwrap();
    let config = dir.path().join("wsgidav.yaml");
    std::fs::write(
        &config,
        format!(
            "host: 127.0.0.1\nport: {port}\nprovider_mapping:\n  \"/\": \"{}\"\n\
             http_authenticator:\n  accept_basic: true\n  accept_digest: false\n  default_to_digest: false\n\
             simple_dc:\n  user_mapping:\n    \"*\":\n      \"{user}\":\n        password: \"{password}\"\n\
             verbose: 1\n",
            root.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new("wsgidav");
    cmd.arg("--config").arg(&config);
    Server::spawn("wsgidav", cmd, port, dir)
}

/// The cycle every backend passes, on the repository location `loc` (which must not exist
/// yet), with the backend's credentials in `env`: init; snapshot; the same data again,
/// deduplicated to nothing new; a second, different snapshot; both restored byte-identical;
/// check --read-data; the first two forgotten and pruned (their pack deleted); the second
/// restored again byte-identical; check --read-data; the forgotten one gone.
pub fn repository_cycle(home: &Path, loc: &str, env: &[(&str, &str)]) {
    let run = |args: &[&str], stdin: Option<&Path>| {
        let mut c = cli(home);
        c.envs(env.iter().copied()).args(["-r", loc]).args(args);
        if let Some(p) = stdin {
            c.pipe_stdin(p).unwrap();
        }
        c.output().unwrap()
    };
    let ok = |args: &[&str], stdin: Option<&Path>| {
        let o = run(args, stdin);
        assert!(o.status.success(), "{args:?} on {loc}: {}", stderr(&o));
        o
    };
    let init = cli(home)
        .envs(env.iter().copied())
        .args(["init", loc, "--kdf-memory-kib", "256", "--kdf-iterations", "1"])
        .output()
        .unwrap();
    assert!(init.status.success(), "init {loc}: {}", stderr(&init));

    let input = |name: &str, g: Gen| {
        let p = home.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        std::io::copy(&mut { g }, &mut f).unwrap();
        f.flush().unwrap();
        p
    };
    let a = input("cycle-a", Gen::dump(21, 6_000_000));
    let b = input("cycle-b", Gen::random(22, 3_000_000));
    let snap = |p: &Path| json(&ok(&["--json", "snapshot", "--name", "db", "--stdin"], Some(p)));
    let first = snap(&a);
    let again = snap(&a);
    assert_eq!(again["snapshot"]["summary"]["bytes_new"], 0, "deduplicated: {again}");
    let other = snap(&b);
    let id = |v: &serde_json::Value| v["id"].as_str().unwrap().to_string();
    let restored = |id: &str| digest(&ok(&["restore", id, "--target", "-"], None).stdout[..]);
    let want = |p: &Path| digest(std::fs::File::open(p).unwrap());
    assert_eq!(restored(&id(&first)), want(&a), "first snapshot restored");
    assert_eq!(restored(&id(&other)), want(&b), "second data restored");
    ok(&["check", "--read-data"], None);

    ok(&["forget", &id(&first), &id(&again)], None);
    let pruned = json(&ok(&["--json", "prune"], None));
    assert!(
        pruned["prune"]["unused_packs"].as_u64().unwrap() >= 1,
        "prune deleted a pack: {pruned}"
    );
    assert_eq!(restored(&id(&other)), want(&b), "restored after prune");
    ok(&["check", "--read-data"], None);
    let gone = run(&["restore", &id(&first), "--target", "-"], None);
    assert_eq!(gone.status.code(), Some(66), "forgotten: {}", stderr(&gone));
}
