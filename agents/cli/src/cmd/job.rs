//! `lilypad job <id>`: a job as the chain's events tell it: state, deadlines, result, ruling and
//! payments, and every event that changed it.

use std::path::Path;

use alloy::primitives::{aliases::U40, U256};
use eyre::eyre;
use lilypad_bindings::JobState;
use lilypad_chain::{Challenge, ChainClient, EventStream, JobBook, JobChange, JobRecord, MarketEvent, Outcome};

use crate::network::NetworkArgs;

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// The job id (the number `lilypad run` prints, the gateway's `onchainJobId`).
    pub id: u64,
    #[command(flatten)]
    pub network: NetworkArgs,
}

impl JobArgs {
    pub async fn run(self, data_dir: &Path) -> eyre::Result<()> {
        let net = self.network.resolve_with(data_dir, |d| d.job_creator_key.clone())?;
        let client = net.connect(false).await?;
        let history = JobHistory::load(&client, U256::from(self.id)).await?;
        let now = client.latest_timestamp().await?;
        print!("{}", history.render(now));
        Ok(())
    }
}

/// A job's story from the market's events.
pub struct JobHistory {
    pub id: U256,
    /// The job's last known record (live, or as it ended).
    pub record: JobRecord,
    /// `name:version` of its module, when its publication is among the events.
    pub module: Option<String>,
    /// How it ended, if it did.
    pub outcome: Option<Outcome>,
    /// One line per event that concerned it, in chain order.
    pub events: Vec<String>,
}

impl JobHistory {
    /// Reads every market event from the deployment block on. An error when no job `id` was
    /// ever created.
    pub async fn load(client: &ChainClient, id: U256) -> eyre::Result<Self> {
        let mut stream = EventStream::new(client.clone(), client.deployment().start_block);
        let mut book = JobBook::new();
        let (mut ended, mut events) = (None, Vec::new());
        while let Some(batch) = stream.poll_once().await? {
            for log in &batch.logs {
                let change = book.apply(log);
                if let Some(line) = describe(&log.event, id) {
                    events.push(format!("block {:>6}  {line}", log.block));
                }
                if let Some(JobChange::Finished { id: done, outcome, record }) = change {
                    if done == id {
                        ended = Some((outcome, *record));
                    }
                }
            }
        }
        let (outcome, record) = match (ended, book.get(id)) {
            (Some((outcome, record)), _) => (Some(outcome), record),
            (None, Some(record)) => (None, record.clone()),
            (None, None) => {
                let count = client.market().jobCount().call().await?;
                return Err(eyre!("job {id} was never created on this market (it has {count} jobs, numbered from 1): check the id and --network"));
            }
        };
        let module = book.module(&record.job.moduleId).map(|m| m.reference());
        Ok(Self { id, record, module, outcome, events })
    }

    /// One word for where the job is: open, matched, submitted, challenged, or how it ended.
    pub fn status(&self) -> String {
        match &self.outcome {
            None => format!("{:?}", self.record.state()).to_lowercase(),
            Some(o) => ending(o),
        }
    }

    /// The whole report, deadlines relative to block time `now`.
    pub fn render(&self, now: u64) -> String {
        let (r, j) = (&self.record, &self.record.job);
        let mut out = format!("job {}: {}\n", self.id, self.status());
        let module = self.module.clone().unwrap_or_else(|| format!("{}", j.moduleId));
        out += &format!("  module      {module}\n");
        if !r.inputs.is_empty() {
            out += &format!("  inputs      {}\n", r.inputs.join(" "));
        }
        out += &format!("  payee       {}\n  payment     {} (escrowed)\n", j.payee, lp(j.payment));
        if j.provider != alloy::primitives::Address::ZERO {
            out += &format!(
                "  provider    {} at {}, solver fee {}, collateral {}, mediator {}\n",
                j.provider,
                lp(j.price),
                lp(j.solverFee),
                lp(j.collateral),
                j.mediator
            );
        }
        if let Some(data_id) = &r.data_id {
            out += &format!("  result      {data_id}\n");
        }
        if self.outcome.is_none() {
            if let Some(deadline) = r.deadline() {
                let what = match r.state() {
                    JobState::Open => "match by",
                    JobState::Matched => "result by",
                    JobState::Submitted => "challengeable until",
                    _ => "ruling by",
                };
                let left = if now > deadline { "passed: anyone may end it (`lilypad keeper` does)".to_string() } else { format!("in {} s", deadline - now) };
                out += &format!("  deadline    {what} {deadline} (unix time; {left})\n");
            }
        }
        if let Some(o) = &self.outcome {
            out += &format!("  payments    {}\n", payments(o, r));
        }
        out += "events:\n";
        for e in &self.events {
            out += &format!("  {e}\n");
        }
        out
    }
}

/// How an outcome reads in a sentence.
fn ending(o: &Outcome) -> String {
    match o {
        Outcome::Settled { challenge: Challenge::Unchallenged, .. } => "settled".into(),
        Outcome::Settled { challenge: Challenge::Rejected, .. } => "settled (challenged; the mediator ruled the result right)".into(),
        Outcome::Settled { challenge: Challenge::Nondeterministic, .. } => {
            "settled (challenged; the mediator's own re-runs differed, so it ruled the module non-deterministic: the result stands)".into()
        }
        Outcome::Settled { challenge: Challenge::MediationTimedOut, .. } => "settled (challenged; the mediator did not rule in time, so the result stands)".into(),
        Outcome::Cancelled => "cancelled by its creator".into(),
        Outcome::Expired => "expired (nobody matched it before its match deadline)".into(),
        Outcome::ResultTimedOut => "timed out (no result before its run deadline)".into(),
        Outcome::Upheld { .. } => "ruled wrong (challenge upheld: the mediator found the result wrong)".into(),
    }
}

/// Where the money went, as the market's rules for that ending say.
fn payments(o: &Outcome, r: &JobRecord) -> String {
    let j = &r.job;
    match o {
        Outcome::Settled { refund, challenge } => format!(
            "provider {} + collateral back{}, solver {}, payee refunded {}",
            lp(j.price),
            match challenge {
                Challenge::Unchallenged => "",
                Challenge::Rejected => " + the challenger's bond",
                Challenge::Nondeterministic => "; the challenger paid the mediator's fee and got its bond back",
                Challenge::MediationTimedOut => "; the challenger got its deposit back",
            },
            lp(j.solverFee),
            lp(*refund)
        ),
        Outcome::Cancelled | Outcome::Expired => format!("payee refunded {}", lp(j.payment)),
        Outcome::ResultTimedOut => format!("payee refunded {} + the provider's collateral {}", lp(j.payment), lp(j.collateral)),
        Outcome::Upheld { correct_data_id } => format!(
            "payee refunded {} + half the collateral less the mediator's fee; challenger got its deposit back + the other half; correct result {correct_data_id}",
            lp(j.payment)
        ),
    }
}

/// The event's line when it concerns job `id`.
fn describe(event: &MarketEvent, id: U256) -> Option<String> {
    use MarketEvent as E;
    let t = |at: U40| u64::try_from(at).unwrap_or(0);
    Some(match event {
        E::JobCreated(e) if e.id == id => format!("created by {} paying {} (unix time {})", e.payee, lp(e.payment), t(e.createdAt)),
        E::JobMatched(e) if e.id == id => format!("matched to {} at {} by solver {}", e.provider, lp(e.price), e.solver),
        E::JobReleased(e) if e.id == id && e.penalty == 0 => format!("given back by {}", e.provider),
        E::JobReleased(e) if e.id == id => format!("given back late by {}: {} of its collateral to the payee", e.provider, lp(e.penalty)),
        E::ResultSubmitted(e) if e.id == id => format!("result {} posted", e.dataId),
        E::ResultChallenged(e) if e.id == id => format!("challenged by {} (mediator {})", e.challenger, e.mediator),
        E::ChallengeRuled(e) if e.id == id => {
            format!("ruled by {}: {}", e.mediator, if e.upheld { format!("challenge upheld, correct result {}", e.correctDataId) } else { "result stands".into() })
        }
        E::JobSettled(e) if e.id == id => format!("settled: provider paid {}, solver {}, payee refunded {}", lp(e.price), lp(e.solverFee), lp(e.refund)),
        E::JobCancelled(e) if e.id == id => format!("cancelled by {}", e.by),
        E::JobExpired(e) if e.id == id => "expired: payee refunded".into(),
        E::ResultTimedOut(e) if e.id == id => format!("result timed out: provider {} slashed {}", e.provider, lp(e.slashed)),
        E::MediationTimedOut(e) if e.id == id => format!("mediation timed out (mediator {}): the result stands, the challenger got its deposit back", e.mediator),
        E::ModuleRuledNondeterministic(e) if e.id == id => format!("mediator {} ruled module {} non-deterministic: nobody slashed", e.mediator, e.moduleId),
        E::CallbackFailed(e) if e.id == id => format!("callback to {} failed", e.client),
        _ => return None,
    })
}

/// An amount of the market's token (18 decimals) as LP.
pub fn lp(units: u128) -> String {
    const ONE: u128 = 1_000_000_000_000_000_000;
    let (whole, frac) = (units / ONE, units % ONE);
    if frac == 0 {
        return format!("{whole} LP");
    }
    let frac = format!("{frac:018}");
    format!("{whole}.{} LP", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::lp;

    #[test]
    fn amounts_read_as_lp() {
        assert_eq!(lp(0), "0 LP");
        assert_eq!(lp(1_050_000_000_000_000_000), "1.05 LP");
        assert_eq!(lp(3_000_000_000_000_000_000), "3 LP");
        assert_eq!(lp(1), "0.000000000000000001 LP");
    }
}
