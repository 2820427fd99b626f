//! Fetching a job's outputs: from the endpoints its provider announced on chain (checked by
//! [`crate::endpoints`]), then the operator's `--outputs-gateway`, every block verified, into
//! the gateway's outputs folder, where the API serves them.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use tracing::{info, warn};

use crate::db::JobRow;
use crate::endpoints::EndpointPolicy;
use crate::market::Market;

/// Where jobs' outputs are fetched from: the endpoints each job's provider announced on chain
/// (checked under `policy`), then `configured`.
#[derive(Clone, Debug, Default)]
pub struct OutputSources {
    /// The operator's outputs gateway (`--outputs-gateway`), trusted as configured.
    pub configured: Option<String>,
    /// Which announced endpoints may be used.
    pub policy: EndpointPolicy,
}

/// The longest one fetch of a job's outputs from one source may take.
const OUTPUTS_FETCH_DEADLINE: Duration = Duration::from_secs(600);

impl Market {
    /// Where job `job`'s outputs may be fetched from, in order: the endpoints its provider
    /// announced on chain that pass the endpoint checks ([`crate::endpoints`]; others are
    /// logged and skipped, multiaddrs silently), then the configured gateway. Each with the
    /// client to fetch it with.
    pub(crate) async fn output_sources(&self, job: &JobRow) -> Vec<(String, Option<reqwest::Client>)> {
        let mut sources = Vec::new();
        let provider = job.provider.as_deref().and_then(|p| p.parse::<Address>().ok());
        if let (Some(provider), Some(client)) = (provider, &self.endpoint_client) {
            let announced = {
                let view = self.view.read().unwrap_or_else(|p| p.into_inner());
                view.market.providers.get(&provider).map(|p| p.endpoints.clone()).unwrap_or_default()
            };
            for endpoint in announced {
                match crate::endpoints::check_endpoint(&endpoint, self.outputs.policy).await {
                    Ok(url) => sources.push((url, Some(client.clone()))),
                    Err(crate::endpoints::Refused::NotHttp(_)) => {}
                    Err(refused) => warn!(job = %job.id, %provider, %refused, "not fetching outputs from this announced endpoint"),
                }
            }
        }
        if let Some(configured) = &self.outputs.configured {
            if !sources.iter().any(|(s, _)| s.trim_end_matches('/') == configured.trim_end_matches('/')) {
                sources.push((configured.clone(), None));
            }
        }
        sources
    }

    pub(crate) fn spawn_fetch(self: &Arc<Self>, job: JobRow) {
        let Some(data_id) = job.data_id.clone() else { return };
        if !self.fetching.lock().unwrap_or_else(|p| p.into_inner()).insert(job.id.clone()) {
            return;
        }
        let dest = self.outputs_dir(&job.id);
        let market = self.clone();
        tokio::spawn(async move {
            let db = &market.db;
            let sources = market.output_sources(&job).await;
            if sources.is_empty() {
                // retried by the reconciler every few seconds: said once at debug level
                tracing::debug!(job = %job.id, provider = job.provider.as_deref().unwrap_or("(unknown)"),
                    "no source for the outputs: the provider announced no usable endpoint and no --outputs-gateway is configured");
                market.fetching.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.id);
                return;
            }
            let result = async {
                let cid = lilypad_store::parse_cid(&data_id).map_err(|e| format!("malformed CID {data_id:?}: {e}"))?;
                let source = fetch_from_any(&sources, &cid, &dest).await?;
                db.set_outputs_fetched(&job.id).await.map_err(|e| e.to_string())?;
                db.add_job_event(&format!("{}:outputs", job.id), &job.id, "submitted", &format!("outputs fetched from {source} and verified ({cid})"), None)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(source)
            }
            .await;
            match result {
                Ok(source) => info!(job = %job.id, %source, "outputs fetched"),
                Err(e) => warn!(job = %job.id, error = %e, "fetching outputs failed; will retry"),
            }
            market.fetching.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.id);
            market.notify(&job.id);
        });
    }
}

/// Fetches `cid` into `dest` (cleared first) from each source in turn until one serves it
/// whole, every block verified, within the store's default limits and
/// [`OUTPUTS_FETCH_DEADLINE`] per source; returns the source that did. A source with a client
/// (an announced endpoint) is fetched through it; the configured gateway with the store's own.
async fn fetch_from_any(sources: &[(String, Option<reqwest::Client>)], cid: &lilypad_store::Cid, dest: &std::path::Path) -> Result<String, String> {
    let limits = lilypad_store::FetchLimits { deadline: OUTPUTS_FETCH_DEADLINE, ..Default::default() };
    let mut errors = Vec::new();
    for (source, client) in sources {
        if dest.exists() {
            std::fs::remove_dir_all(dest).map_err(|e| format!("clearing {}: {e}", dest.display()))?;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        let fetched = match client {
            Some(c) => lilypad_store::fetch_with_client(c, source, cid, dest, &limits).await,
            None => lilypad_store::fetch_with(source, cid, dest, &limits).await,
        };
        match fetched {
            Ok(_) => return Ok(source.clone()),
            Err(e) => {
                warn!(%cid, %source, error = %e, "could not fetch outputs from this source; trying the next");
                errors.push(format!("{source}: {e}"));
            }
        }
    }
    Err(format!("fetching {cid}: {}", errors.join("; ")))
}
