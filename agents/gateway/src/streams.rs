//! The REST API's two Server-Sent Events streams: a job's changes (`/api/v1/jobs/{id}/events`,
//! with the caller's key) and the market's events (`/api/v1/events`, no key, at most
//! [`MAX_OPEN_EVENT_STREAMS`] open at once). What each event carries is documented item by item
//! in the OpenAPI document ([`crate::openapi::streams`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use crate::api::{job_json, own_job, AppState};
use crate::db::is_final;
use crate::problem::{Kind, Problem};

type Shared = State<Arc<AppState>>;

/// A slot for one more `/api/v1/events` stream, or the problem to answer with (429 and
/// `Retry-After`) when all [`MAX_OPEN_EVENT_STREAMS`] are taken.
pub(crate) fn event_stream_slot(slots: &Arc<tokio::sync::Semaphore>) -> Result<tokio::sync::OwnedSemaphorePermit, Problem> {
    slots.clone().try_acquire_owned().map_err(|_| {
        let mut p = Problem::new(Kind::RateLimited, format!("{MAX_OPEN_EVENT_STREAMS} event streams are open already: close one or retry shortly"));
        p.retry_after = Some(5);
        p
    })
}

/// Most `/api/v1/events` streams open at once; one more is answered 429 with `Retry-After`.
pub const MAX_OPEN_EVENT_STREAMS: usize = 256;

/// Server-Sent Events: the job (as `GET /jobs/{id}` gives it) each time it changes, until it
/// is final. Event name `job`; the last one is followed by an `end` event (`{"id", "state"}`).
/// Each event's schema is `JobStreamEvent` in the OpenAPI document.
pub async fn job_events(State(state): Shared, headers: HeaderMap, Path(id): Path<String>) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let job = own_job(&state, &headers, &id).await?;
    let mut updates = state.market.job_updates.subscribe();
    let (tx, rx) = mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let mut last = String::new();
        let mut current = job;
        loop {
            let body = match job_json(&state, &current).await {
                Ok(b) => b.to_string(),
                Err(_) => break,
            };
            if body != last {
                if tx.send(Event::default().event("job").data(body.clone())).await.is_err() {
                    return;
                }
                last = body;
            }
            if is_final(&current.state) {
                let end = json!({"id": current.id, "state": current.state});
                let _ = tx.send(Event::default().event("end").data(end.to_string())).await;
                return;
            }
            // wait for a change of this job (or re-read every few seconds)
            let deadline = tokio::time::sleep(Duration::from_secs(3));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    m = updates.recv() => match m {
                        Ok(changed) if changed == current.id => break,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
            match state.db.job(&current.id).await {
                Ok(Some(j)) => current = j,
                _ => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Server-Sent Events: the market's events (event name `market`, JSON data), the recent ones
/// first, then `caught-up` (`{}`), then live. Each event's schema is `MarketStreamEvent` in the
/// OpenAPI document.
pub async fn market_events(State(state): Shared) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    // held by the stream's task: released when the client goes away
    let slot = event_stream_slot(&state.event_streams)?;
    let mut live = state.market.events.subscribe();
    let backlog: Vec<Arc<str>> = {
        let view = state.market.view.read().unwrap_or_else(|p| p.into_inner());
        view.recent.iter().cloned().collect()
    };
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        let _slot = slot;
        for e in backlog {
            if tx.send(Event::default().event("market").data(&*e)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Event::default().event("caught-up").data("{}")).await;
        loop {
            tokio::select! {
                m = live.recv() => match m {
                    Ok(e) => if tx.send(Event::default().event("market").data(&*e)).await.is_err() { return },
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn event_streams_past_the_cap_are_refused_until_one_closes() {
        let slots = Arc::new(tokio::sync::Semaphore::new(2));
        let a = event_stream_slot(&slots).unwrap();
        let _b = event_stream_slot(&slots).unwrap();
        let refused = event_stream_slot(&slots).unwrap_err();
        assert_eq!((refused.status, refused.retry_after), (429, Some(5)));
        drop(a);
        assert!(event_stream_slot(&slots).is_ok(), "a closed stream frees its slot");
    }
}
