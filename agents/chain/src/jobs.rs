//! The job book: every live job's `Job`, exactly as the market stores its hash, rebuilt from
//! the market's events alone.

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::{aliases::U40, keccak256, Address, B256, U256};
use alloy::sol_types::SolValue;
use lilypad_bindings::{job_hash, Job, JobState, ModuleSpec};
use serde::{Deserialize, Serialize};

use crate::events::{MarketEvent, MarketLog};

/// A live job and what the events said about it beyond the `Job` itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    /// The job's id on chain.
    pub id: U256,
    /// The job as the market stores it (its hash is `jobHash(id)`).
    pub job: Job,
    /// `Key=Value` inputs, from `JobCreated`.
    pub inputs: Vec<String>,
    /// The provider's result (output CID and result hash), once submitted.
    pub data_id: Option<String>,
    /// The result hash the provider committed to, once submitted.
    pub result_hash: Option<B256>,
    /// Block of the last event that changed the job.
    pub updated_block: u64,
}

impl JobRecord {
    /// The job's state, as the market numbers it.
    pub fn state(&self) -> JobState {
        JobState::try_from(self.job.state).unwrap_or(JobState::None)
    }

    /// The hash the market should hold for this job.
    pub fn hash(&self) -> B256 {
        job_hash(&self.job)
    }

    /// Unix time after which the current state's exit opens (match, run, challenge or
    /// mediation deadline), or `None` for no live state.
    pub fn deadline(&self) -> Option<u64> {
        let j = &self.job;
        let at = |t: U40, d: u32| u64::try_from(t).unwrap_or(u64::MAX).saturating_add(u64::from(d));
        match self.state() {
            JobState::Open => Some(at(j.createdAt, j.matchTimeout)),
            JobState::Matched => Some(at(j.matchedAt, j.runTimeout)),
            JobState::Submitted => Some(at(j.submittedAt, j.challengeWindow)),
            JobState::Challenged => Some(at(j.challengedAt, j.mediationTimeout)),
            JobState::None => None,
        }
    }
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Paid out; the result stands (possibly after a rejected challenge).
    Settled {
        /// What went back to the payee (the payment less the price and fees).
        refund: u128,
        /// Whether it was challenged, and why the result stood.
        challenge: Challenge,
    },
    /// Taken back by its payee or client before a match.
    Cancelled,
    /// No match before the match deadline; refunded.
    Expired,
    /// No result before the run deadline; refunded, provider slashed.
    ResultTimedOut,
    /// The mediator found the result wrong; refunded, provider slashed.
    Upheld {
        /// The mediator's result.
        correct_data_id: String,
    },
}

/// How a settled job's challenge ended (the result stood in every case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Challenge {
    /// Nobody challenged it.
    #[default]
    Unchallenged,
    /// The mediator ruled the result right (the provider got the challenger's bond).
    Rejected,
    /// The mediator's own re-runs differed: the module was ruled non-deterministic; nobody
    /// was slashed, the challenger paid the mediator's fee and got its bond back.
    Nondeterministic,
    /// The mediator did not rule in time: the result stands and the challenger got its
    /// deposit back.
    MediationTimedOut,
}

/// What one event did to the book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobChange {
    /// The job was created.
    Created(U256),
    /// A provider was matched to it.
    Matched(U256),
    /// Its provider gave it back (it waits for a match again).
    Released(U256),
    /// A result was submitted.
    Submitted(U256),
    /// Its result was challenged.
    Challenged(U256),
    /// The job reached a final state; its last record is returned.
    Finished {
        /// The job.
        id: U256,
        /// How it ended.
        outcome: Outcome,
        /// Its last record.
        record: Box<JobRecord>,
    },
    /// A module version was published.
    ModulePublished(B256),
}

/// A published module version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Who published it.
    pub publisher: Address,
    /// The spec the market pins.
    pub spec: ModuleSpec,
}

impl ModuleEntry {
    /// `name:version`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.version)
    }
}

/// Live jobs and published modules, kept in step with the market by [`JobBook::apply`].
#[derive(Clone, Debug, Default)]
pub struct JobBook {
    jobs: BTreeMap<U256, JobRecord>,
    modules: HashMap<B256, ModuleEntry>,
    /// Challenged jobs whose result stands wait for their JobSettled (emitted right after).
    stands: HashMap<U256, Challenge>,
}

impl JobBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live job `id`, if any.
    pub fn get(&self, id: U256) -> Option<&JobRecord> {
        self.jobs.get(&id)
    }

    /// Live jobs, oldest first.
    pub fn live(&self) -> impl Iterator<Item = &JobRecord> {
        self.jobs.values()
    }

    /// How many jobs are live.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether no job is live.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The published module `module_id`, if any.
    pub fn module(&self, module_id: &B256) -> Option<&ModuleEntry> {
        self.modules.get(module_id)
    }

    /// Every published module, by id.
    pub fn modules(&self) -> impl Iterator<Item = (&B256, &ModuleEntry)> {
        self.modules.iter()
    }

    /// Applies one event. Events must come in chain order (an [`crate::EventStream`] gives them so).
    pub fn apply(&mut self, log: &MarketLog) -> Option<JobChange> {
        use MarketEvent as E;
        let block = log.block;
        match &log.event {
            E::JobCreated(e) => {
                let job = Job {
                    client: e.client,
                    payee: e.payee,
                    moduleId: e.moduleId,
                    payment: e.payment,
                    mediators: e.mediators,
                    createdAt: e.createdAt,
                    matchTimeout: e.matchTimeout,
                    runTimeout: e.runTimeout,
                    challengeWindow: e.challengeWindow,
                    mediationTimeout: e.mediationTimeout,
                    callbackGas: e.callbackGas,
                    onlySolver: e.onlySolver,
                    state: JobState::Open.into(),
                    ..empty_job()
                };
                let record =
                    JobRecord { id: e.id, job, inputs: e.inputs.clone(), data_id: None, result_hash: None, updated_block: block };
                self.jobs.insert(e.id, record);
                Some(JobChange::Created(e.id))
            }
            E::JobMatched(e) => {
                let r = self.jobs.get_mut(&e.id)?;
                r.job.solver = e.solver;
                r.job.provider = e.provider;
                r.job.price = e.price;
                r.job.solverFee = e.solverFee;
                r.job.collateral = e.collateral;
                r.job.mediator = e.mediator;
                r.job.matchedAt = e.matchedAt;
                r.job.state = JobState::Matched.into();
                r.updated_block = block;
                Some(JobChange::Matched(e.id))
            }
            E::JobReleased(e) => {
                let r = self.jobs.get_mut(&e.id)?;
                let fresh = empty_job();
                r.job.solver = fresh.solver;
                r.job.provider = fresh.provider;
                r.job.price = 0;
                r.job.solverFee = 0;
                r.job.collateral = 0;
                r.job.mediator = 0;
                r.job.matchedAt = fresh.matchedAt;
                r.job.state = JobState::Open.into();
                r.updated_block = block;
                Some(JobChange::Released(e.id))
            }
            E::ResultSubmitted(e) => {
                let r = self.jobs.get_mut(&e.id)?;
                r.job.result = result_commitment(&e.dataId, e.resultHash);
                r.job.submittedAt = e.submittedAt;
                r.job.state = JobState::Submitted.into();
                r.data_id = Some(e.dataId.clone());
                r.result_hash = Some(e.resultHash);
                r.updated_block = block;
                Some(JobChange::Submitted(e.id))
            }
            E::ResultChallenged(e) => {
                let r = self.jobs.get_mut(&e.id)?;
                r.job.challenger = e.challenger;
                r.job.challengedAt = e.challengedAt;
                r.job.state = JobState::Challenged.into();
                r.updated_block = block;
                Some(JobChange::Challenged(e.id))
            }
            E::ChallengeRuled(e) if !e.upheld => {
                self.stands.insert(e.id, Challenge::Rejected);
                None
            }
            E::ModuleRuledNondeterministic(e) => {
                self.stands.insert(e.id, Challenge::Nondeterministic);
                None
            }
            E::MediationTimedOut(e) => {
                self.stands.insert(e.id, Challenge::MediationTimedOut);
                None
            }
            E::ChallengeRuled(e) => self.finish(e.id, Outcome::Upheld { correct_data_id: e.correctDataId.clone() }),
            E::JobSettled(e) => {
                let challenge = self.stands.remove(&e.id).unwrap_or_default();
                self.finish(e.id, Outcome::Settled { refund: e.refund, challenge })
            }
            E::JobCancelled(e) => self.finish(e.id, Outcome::Cancelled),
            E::JobExpired(e) => self.finish(e.id, Outcome::Expired),
            E::ResultTimedOut(e) => self.finish(e.id, Outcome::ResultTimedOut),
            E::ModulePublished(e) => {
                let entry = ModuleEntry {
                    name: e.name.clone(),
                    version: e.version.clone(),
                    publisher: e.publisher,
                    spec: e.spec.clone(),
                };
                self.modules.insert(e.moduleId, entry);
                Some(JobChange::ModulePublished(e.moduleId))
            }
            _ => None,
        }
    }

    fn finish(&mut self, id: U256, outcome: Outcome) -> Option<JobChange> {
        let record = self.jobs.remove(&id)?;
        Some(JobChange::Finished { id, outcome, record: Box::new(record) })
    }

    /// A serialisable copy, for an agent's checkpoint.
    pub fn snapshot(&self) -> BookSnapshot {
        BookSnapshot {
            jobs: self
                .jobs
                .values()
                .map(|r| SavedJob {
                    id: r.id.to_string(),
                    job: format!("0x{}", hex::encode(r.job.abi_encode())),
                    inputs: r.inputs.clone(),
                    data_id: r.data_id.clone(),
                    result_hash: r.result_hash,
                    updated_block: r.updated_block,
                    challenge: self.stands.get(&r.id).copied().unwrap_or_default(),
                })
                .collect(),
            modules: self
                .modules
                .iter()
                .map(|(id, m)| SavedModule {
                    id: *id,
                    name: m.name.clone(),
                    version: m.version.clone(),
                    publisher: m.publisher,
                    spec: format!("0x{}", hex::encode(m.spec.abi_encode())),
                })
                .collect(),
        }
    }

    /// Rebuilds a book from a snapshot; `None` if the snapshot is not one this version wrote.
    pub fn from_snapshot(s: &BookSnapshot) -> Option<Self> {
        let mut book = JobBook::new();
        for j in &s.jobs {
            let id: U256 = j.id.parse().ok()?;
            let bytes = hex::decode(j.job.trim_start_matches("0x")).ok()?;
            let job = Job::abi_decode(&bytes).ok()?;
            if j.challenge != Challenge::Unchallenged {
                book.stands.insert(id, j.challenge);
            }
            book.jobs.insert(
                id,
                JobRecord {
                    id,
                    job,
                    inputs: j.inputs.clone(),
                    data_id: j.data_id.clone(),
                    result_hash: j.result_hash,
                    updated_block: j.updated_block,
                },
            );
        }
        for m in &s.modules {
            let bytes = hex::decode(m.spec.trim_start_matches("0x")).ok()?;
            let spec = ModuleSpec::abi_decode(&bytes).ok()?;
            book.modules.insert(
                m.id,
                ModuleEntry { name: m.name.clone(), version: m.version.clone(), publisher: m.publisher, spec },
            );
        }
        Some(book)
    }
}

/// What the market stores in `Job.result`: `keccak256(abi.encode(dataId, resultHash))`.
pub fn result_commitment(data_id: &str, result_hash: B256) -> B256 {
    keccak256((data_id.to_string(), result_hash).abi_encode_params())
}

fn empty_job() -> Job {
    Job {
        client: Address::ZERO,
        payee: Address::ZERO,
        moduleId: B256::ZERO,
        payment: 0,
        mediators: 0,
        createdAt: U40::ZERO,
        matchTimeout: 0,
        runTimeout: 0,
        challengeWindow: 0,
        mediationTimeout: 0,
        callbackGas: 0,
        onlySolver: Address::ZERO,
        solver: Address::ZERO,
        provider: Address::ZERO,
        price: 0,
        solverFee: 0,
        collateral: 0,
        mediator: 0,
        matchedAt: U40::ZERO,
        result: B256::ZERO,
        submittedAt: U40::ZERO,
        challenger: Address::ZERO,
        challengedAt: U40::ZERO,
        state: 0,
    }
}

/// Serialisable form of a [`JobBook`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookSnapshot {
    /// The live jobs.
    pub jobs: Vec<SavedJob>,
    /// The published modules.
    pub modules: Vec<SavedModule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// A live job in a [`BookSnapshot`].
pub struct SavedJob {
    /// Its id, decimal.
    pub id: String,
    /// The ABI encoding of the `Job`, hex.
    pub job: String,
    /// Its `Key=Value` inputs.
    pub inputs: Vec<String>,
    /// Its result's CID, once submitted.
    pub data_id: Option<String>,
    /// Its result hash, once submitted.
    pub result_hash: Option<B256>,
    /// Block of the last event that changed it.
    pub updated_block: u64,
    #[serde(default)]
    /// How its challenge ended when the result stood and its JobSettled is still to come.
    pub challenge: Challenge,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
/// A published module in a [`BookSnapshot`].
pub struct SavedModule {
    /// Its id.
    pub id: B256,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Who published it.
    pub publisher: Address,
    /// The ABI encoding of the `ModuleSpec`, hex.
    pub spec: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::Address;
    use lilypad_bindings::LilypadMarket as M;

    fn log(event: MarketEvent) -> MarketLog {
        MarketLog { block: 1, tx: B256::ZERO, log_index: 0, event }
    }

    fn created(book: &mut JobBook, id: u64) {
        book.apply(&log(MarketEvent::JobCreated(M::JobCreated {
            id: U256::from(id),
            client: Address::repeat_byte(1),
            payee: Address::repeat_byte(1),
            moduleId: B256::repeat_byte(7),
            inputs: vec![],
            payment: 10,
            mediators: 1,
            createdAt: U40::from(100u64),
            matchTimeout: 60,
            runTimeout: 60,
            challengeWindow: 60,
            mediationTimeout: 60,
            callbackGas: 0,
            onlySolver: Address::ZERO,
        })));
    }

    fn settled(id: u64) -> MarketLog {
        log(MarketEvent::JobSettled(M::JobSettled { id: U256::from(id), provider: Address::repeat_byte(2), price: 1, solverFee: 0, refund: 9 }))
    }

    fn challenge_of(change: Option<JobChange>) -> Challenge {
        match change {
            Some(JobChange::Finished { outcome: Outcome::Settled { challenge, .. }, .. }) => challenge,
            other => panic!("not a settlement: {other:?}"),
        }
    }

    #[test]
    fn a_settlement_says_how_its_challenge_ended_and_a_timed_out_mediation_means_the_result_stands() {
        let mut book = JobBook::default();
        for id in 1..=4 {
            created(&mut book, id);
        }
        assert_eq!(challenge_of(book.apply(&settled(1))), Challenge::Unchallenged);

        let ruled = |id: u64| log(MarketEvent::ChallengeRuled(M::ChallengeRuled { id: U256::from(id), mediator: Address::ZERO, upheld: false, correctDataId: "cid".into() }));
        assert_eq!(book.apply(&ruled(2)), None);
        assert_eq!(challenge_of(book.apply(&settled(2))), Challenge::Rejected);

        assert_eq!(book.apply(&ruled(3)), None);
        let nondeterministic = M::ModuleRuledNondeterministic { id: U256::from(3), moduleId: B256::repeat_byte(7), mediator: Address::ZERO };
        assert_eq!(book.apply(&log(MarketEvent::ModuleRuledNondeterministic(nondeterministic))), None);
        // a checkpoint taken between the ruling and the settlement keeps how it ended
        let mut restored = JobBook::from_snapshot(&book.snapshot()).unwrap();
        assert_eq!(challenge_of(restored.apply(&settled(3))), Challenge::Nondeterministic);
        assert_eq!(challenge_of(book.apply(&settled(3))), Challenge::Nondeterministic);

        let timed_out = M::MediationTimedOut { id: U256::from(4), mediator: 0 };
        assert_eq!(book.apply(&log(MarketEvent::MediationTimedOut(timed_out))), None, "the job is not over: a JobSettled follows");
        assert!(book.get(U256::from(4)).is_some());
        assert_eq!(challenge_of(book.apply(&settled(4))), Challenge::MediationTimedOut);
        assert!(book.get(U256::from(4)).is_none());
    }
}
