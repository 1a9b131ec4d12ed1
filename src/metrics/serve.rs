//! The metrics endpoint, served with hyper on a listener the caller bound: `/metrics` (the
//! page last rendered), `/health` (the repository answered the last probe), `/ready` (the last
//! reading found nothing stale or broken, as `status` judges). The caller refreshes what is
//! served; requests only read it, so a scrape never waits on storage.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// What the endpoint answers with.
#[derive(Debug, Default)]
pub struct Served {
    /// The metrics page; `None` until the repository was first read.
    pub metrics: Option<String>,
    /// The last probe of the repository: `Err` says why it failed; `None` before the first.
    pub health: Option<Result<(), String>>,
    /// What `status` found at the last reading, one line each; `None` before the first.
    pub problems: Option<Vec<String>>,
}

/// Shared between the refresher and the server.
pub type Shared = Arc<Mutex<Served>>;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// Prometheus's text format, for a scraper that does not ask for OpenMetrics.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serve `shared` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Shared) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(error = %e, "metrics endpoint: cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let r = answer(&req, &shared);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "metrics endpoint: connection ended");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Does the scraper accept OpenMetrics (Prometheus asks for it first)?
fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

/// The answer to one request.
fn answer<B>(req: &Request<B>, shared: &Shared) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/health" | "/ready") {
        return reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /health or /ready\n".into(),
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET and HEAD\n".into());
    }
    let s = crate::util::lock_anyway(shared);
    let unavailable = |why: String| reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, why);
    let not_read = || unavailable("the repository has not been read yet\n".into());
    let health = match &s.health {
        None => Err("the repository has not been probed yet".to_string()),
        Some(h) => h.clone(),
    };
    match path {
        "/metrics" => match &s.metrics {
            Some(m) if wants_openmetrics(req) => reply(StatusCode::OK, OPENMETRICS, m.clone()),
            Some(m) => reply(StatusCode::OK, TEXT_FORMAT, super::text_format(m)),
            None => not_read(),
        },
        "/health" => match health {
            Ok(()) => reply(StatusCode::OK, TEXT, "ok\n".into()),
            Err(e) => unavailable(format!("{e}\n")),
        },
        _ => match (&s.problems, health) {
            (_, Err(e)) => unavailable(format!("{e}\n")),
            (None, _) => not_read(),
            (Some(p), Ok(())) if p.is_empty() => reply(StatusCode::OK, TEXT, "ok\n".into()),
            (Some(p), Ok(())) => unavailable(p.iter().map(|l| format!("{l}\n")).collect()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, shared: &Shared) -> (u16, String) {
        let req = Request::builder().uri(path).body(()).unwrap();
        let r = answer(&req, shared);
        let status = r.status().as_u16();
        let body = futures::executor::block_on(http_body_util::BodyExt::collect(r.into_body())).unwrap();
        (status, String::from_utf8(body.to_bytes().to_vec()).unwrap())
    }

    #[test]
    fn answers_follow_what_was_read() {
        let shared: Shared = Default::default();
        assert_eq!(get("/metrics", &shared).0, 503);
        assert_eq!(get("/ready", &shared).0, 503);
        assert_eq!(get("/nope", &shared).0, 404);
        {
            let mut s = shared.lock().unwrap();
            s.metrics = Some("dbbackup_up 1\n".into());
            s.health = Some(Ok(()));
            s.problems = Some(vec!["snapshot_stale h/postgresql/shop: 30h old".into()]);
        }
        assert_eq!(get("/metrics", &shared), (200, "dbbackup_up 1\n".into()));
        assert_eq!(get("/health", &shared), (200, "ok\n".into()));
        let (code, body) = get("/ready", &shared);
        assert_eq!((code, body.lines().count()), (503, 1), "{body}");
        shared.lock().unwrap().problems = Some(vec![]);
        assert_eq!(get("/ready", &shared), (200, "ok\n".into()));
        shared.lock().unwrap().health = Some(Err("cannot read config: timed out".into()));
        assert_eq!(get("/health", &shared).0, 503);
        assert_eq!(get("/ready", &shared).0, 503);
    }
}
