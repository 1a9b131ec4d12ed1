//! Notifications: one JSON POST per finished run to each webhook that asked for its outcome,
//! as a plain document, a Slack-compatible message or Alertmanager alerts (a success resolves
//! the alert a failure raised). Retried with back-off; the URL and token are secrets: never
//! logged, never in an error message.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// The body a webhook wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The run as one JSON object ([`Event`]).
    #[default]
    Json,
    /// `{"text": "..."}`, which Slack, Mattermost and Rocket.Chat incoming webhooks take.
    Slack,
    /// A list of one alert for Alertmanager's `/api/v2/alerts`.
    Alertmanager,
}

/// One webhook.
pub struct Webhook {
    /// What messages call it (never its URL).
    pub name: String,
    /// Where to POST.
    pub url: Zeroizing<String>,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<Zeroizing<String>>,
    /// The body.
    pub format: Format,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
}

/// A finished run, as notifications tell it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// The command.
    pub operation: String,
    /// `ok`, `partial`, `problems`, `failed`.
    pub status: String,
    /// The exit status.
    pub exit_code: u8,
    /// Host.
    pub host: String,
    /// Source name (empty for a command without one).
    pub source: String,
    /// The snapshot saved or restored, if any.
    pub snapshot_id: Option<String>,
    /// Why it failed or was partly done.
    pub message: Option<String>,
    /// How long it ran.
    pub duration_seconds: f64,
    /// When it ended.
    pub time: Timestamp,
    /// The result's figures (`bytes_read`, `bytes_new`, `bytes_stored`, ...).
    pub figures: BTreeMap<String, u64>,
}

impl Event {
    /// One line for people.
    pub fn summary(&self) -> String {
        let what = if self.source.is_empty() {
            format!("dbbackup {} on {}", self.operation, self.host)
        } else {
            format!("dbbackup {} of {} on {}", self.operation, self.source, self.host)
        };
        let mut s = format!("{what}: {} (exit {})", self.status, self.exit_code);
        if let Some(id) = &self.snapshot_id {
            s.push_str(&format!(", snapshot {id}"));
        }
        if let Some(m) = &self.message {
            s.push_str(&format!(": {m}"));
        }
        s
    }
}

/// The body of `ev` in `format`.
pub fn body(format: Format, ev: &Event) -> serde_json::Value {
    match format {
        Format::Json => serde_json::to_value(ev).unwrap_or_else(|_| serde_json::json!({ "text": ev.summary() })),
        Format::Slack => serde_json::json!({ "text": ev.summary() }),
        Format::Alertmanager => {
            // A failure holds for a day unless a success (the same labels) resolves it first.
            let ok = ev.status == "ok";
            let ends = if ok {
                ev.time
            } else {
                ev.time
                    .checked_add(jiff::SignedDuration::from_hours(26))
                    .unwrap_or(ev.time)
            };
            serde_json::json!([{
                "labels": {
                    "alertname": "DbbackupRunFailed",
                    "operation": ev.operation,
                    "host": ev.host,
                    "name": ev.source,
                },
                "annotations": { "summary": ev.summary(), "status": ev.status },
                "startsAt": ev.time,
                "endsAt": ends,
            }])
        }
    }
}

/// POST `ev` to `hook`, retrying (1 s, 2 s, 4 s, ... apart) on a connection error, a timeout,
/// 408, 429 or a 5xx answer; another 4xx is final.
pub async fn send(client: &reqwest::Client, hook: &Webhook, ev: &Event) -> Result<()> {
    let body = serde_json::to_vec(&body(hook.format, ev))
        .map_err(|e| Error::general(format!("cannot encode the notification: {e}")))?;
    let mut why = String::new();
    for attempt in 0..=hook.retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1).min(5))).await;
        }
        let mut req = client
            .post(hook.url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(hook.timeout)
            .body(body.clone());
        if let Some(t) = &hook.token {
            req = req.bearer_auth(t.as_str());
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let st = r.status();
                why = format!("it answered {st}");
                if st.is_client_error() && st.as_u16() != 408 && st.as_u16() != 429 {
                    break;
                }
            }
            Err(e) => why = e.without_url().to_string(),
        }
        tracing::debug!(webhook = %hook.name, attempt, "{why}");
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("notification to {} not delivered: {why}", hook.name),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(status: &str) -> Event {
        Event {
            operation: "snapshot".into(),
            status: status.into(),
            exit_code: if status == "ok" { 0 } else { 69 },
            host: "db1".into(),
            source: "shop".into(),
            snapshot_id: None,
            message: (status != "ok").then(|| "storage unreachable".into()),
            duration_seconds: 1.5,
            time: Timestamp::from_second(1_700_000_000).unwrap(),
            figures: BTreeMap::new(),
        }
    }

    #[test]
    fn bodies_say_what_happened() {
        let s = body(Format::Slack, &ev("failed"));
        assert_eq!(
            s["text"],
            "dbbackup snapshot of shop on db1: failed (exit 69): storage unreachable"
        );
        let j = body(Format::Json, &ev("failed"));
        assert_eq!(
            (j["operation"].as_str(), j["exit_code"].as_u64()),
            (Some("snapshot"), Some(69))
        );
        let fail = body(Format::Alertmanager, &ev("failed"));
        let ok = body(Format::Alertmanager, &ev("ok"));
        assert_eq!(
            fail[0]["labels"], ok[0]["labels"],
            "a success resolves the failure's alert"
        );
        assert_eq!(ok[0]["endsAt"], ok[0]["startsAt"]);
        assert_ne!(fail[0]["endsAt"], fail[0]["startsAt"]);
    }
}
