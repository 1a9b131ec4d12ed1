//! `[notify]` webhooks: which ones a finished run goes to (by its status and operation), their
//! URL and token read from the config file, a file or the environment at send time, and all
//! sent at once. A notification that cannot be delivered is a warning naming the webhook,
//! never its URL.

use std::time::Duration;

use dbbackup::notify::{Event, Webhook};
use zeroize::Zeroizing;

use super::config::{NotifyConfig, WebhookConfig};

/// Statuses notified when a webhook does not list its own.
const DEFAULT_ON: &[&str] = &["partial", "problems", "failed"];

fn wants(w: &WebhookConfig, ev: &Event) -> bool {
    let on = match &w.on {
        Some(on) => on.contains(&ev.status),
        None => DEFAULT_ON.contains(&ev.status.as_str()),
    };
    let op = w.operations.as_ref().is_none_or(|ops| ops.contains(&ev.operation));
    on && op
}

/// A secret given inline, in a file (first line), or in an environment variable.
fn secret(
    what: &str,
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
    env: &Option<String>,
) -> Result<Option<Zeroizing<String>>, String> {
    if let Some(v) = inline {
        return Ok(Some(Zeroizing::new(v.clone())));
    }
    if let Some(p) = file {
        let text = Zeroizing::new(
            std::fs::read_to_string(p).map_err(|e| format!("cannot read its {what} file {}: {e}", p.display()))?,
        );
        return Ok(Some(Zeroizing::new(
            text.lines().next().unwrap_or("").trim().to_string(),
        )));
    }
    if let Some(k) = env {
        let v = std::env::var(k).map_err(|_| format!("its {what} variable {k} is not set"))?;
        return Ok(Some(Zeroizing::new(v)));
    }
    Ok(None)
}

fn webhook(i: usize, w: &WebhookConfig) -> Result<Webhook, (String, String)> {
    let name = w.name.clone().unwrap_or_else(|| format!("webhook {}", i + 1));
    let fail = |why: String| (name.clone(), why);
    let url = secret("url", &w.url, &w.url_file, &w.url_env)
        .map_err(fail)?
        .ok_or_else(|| fail("it has no url, url_file or url_env".into()))?;
    let token = secret("token", &None, &w.token_file, &w.token_env).map_err(fail)?;
    Ok(Webhook {
        name: name.clone(),
        url,
        token,
        format: w.format,
        timeout: w
            .timeout
            .and_then(|t| Duration::try_from(t).ok())
            .unwrap_or(Duration::from_secs(10)),
        retries: w.retries.unwrap_or(3),
    })
}

/// Send `ev` to every webhook that wants it.
pub fn send_all(rt: &tokio::runtime::Runtime, cfg: &NotifyConfig, ev: &Event) {
    let hooks: Vec<Webhook> = cfg
        .webhook
        .iter()
        .enumerate()
        .filter(|(_, w)| wants(w, ev))
        .filter_map(|(i, w)| match webhook(i, w) {
            Ok(h) => Some(h),
            Err((name, why)) => {
                tracing::warn!("notification to {name} not sent: {why}");
                None
            }
        })
        .collect();
    if hooks.is_empty() {
        return;
    }
    let client = match reqwest::Client::builder().build() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(
                "notifications not sent: cannot set up an HTTP client: {}",
                e.without_url()
            );
            return;
        }
    };
    let results = rt.block_on(futures::future::join_all(
        hooks.iter().map(|h| dbbackup::notify::send(&client, h, ev)),
    ));
    for r in results {
        if let Err(e) = r {
            tracing::warn!("{}", dbbackup::error::one_line(&e));
        }
    }
}
