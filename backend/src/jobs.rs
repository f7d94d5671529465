//! The media jobs runner: claims jobs from the database queue (`store/jobs.rs`), fetches the
//! blob into the spool, makes its derivatives with `media_worker` in a fresh process per task
//! (`media_worker::isolate`: memory and CPU limits, a wall-clock budget), stores them, and
//! publishes the `media` updates.
//!
//! A poisoned file fails its own job, never the runner: decoding errors, limit breaches and a
//! crashed or killed job process are permanent failures, and anything else (storage, I/O) is
//! retried with exponential backoff up to [`JobConfig::attempts`].

use crate::publisher::Publisher;
use crate::store::jobs::{Claimed, Derived};
use crate::store::Store;
use media_worker::image::ImageLimits;
use media_worker::isolate::{Isolator, JobError, JobProcess};
use media_worker::video::VideoLimits;
use media_worker::{BlobStore, Facts, Job, StoreError, Task};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct JobConfig {
    pub image: ImageLimits,
    pub video: VideoLimits,
    /// Tries per job, the first included.
    pub attempts: i32,
    /// Wall-clock budget of one job.
    pub budget: Duration,
    /// How long a claimed job stays leased to this runner.
    pub lease: Duration,
    /// How often to look for due jobs when nobody wakes the runner.
    pub poll: Duration,
    /// The process each task runs in, and its OS limits.
    pub process: JobProcess,
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            image: ImageLimits::default(),
            video: VideoLimits::default(),
            attempts: 5,
            budget: Duration::from_secs(120),
            lease: Duration::from_secs(300),
            poll: Duration::from_secs(1),
            process: JobProcess::this_executable(),
        }
    }
}

#[derive(Clone)]
pub struct Runner {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    publisher: Publisher,
    spool: PathBuf,
    config: JobConfig,
    /// Job hosts, shared by every clone of the runner.
    isolator: Arc<Isolator>,
    /// Set by the first clone to run: it checks the sandbox once for all of them.
    sandbox_checked: Arc<std::sync::atomic::AtomicBool>,
}

enum Outcome {
    Done(Derived),
    /// The file itself is bad: no retry.
    Poisoned(String),
    /// Something around it failed: retry later.
    Retry(String),
}

impl Runner {
    pub fn new(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        publisher: Publisher,
        spool: PathBuf,
        config: JobConfig,
    ) -> Self {
        let isolator = Arc::new(Isolator::new(config.process.clone()));
        Self {
            store,
            blobs,
            publisher,
            spool,
            config,
            isolator,
            sandbox_checked: Default::default(),
        }
    }

    /// Runs the sandbox check ([`Task::SandboxCheck`]) in a job process as the runner runs
    /// jobs, and says in the log whether each job is confined to its own files, cut off from
    /// the network and other processes, and given no secrets.
    pub async fn check_sandbox(&self) -> Result<media_worker::sandbox::Report, String> {
        let work = self
            .spool
            .join(format!("sandbox-check-{}", std::process::id()));
        let out_dir = work.join("out");
        let input = work.join("input");
        let result = async {
            tokio::fs::create_dir_all(&out_dir)
                .await
                .map_err(|e| format!("spool: {e}"))?;
            // Besides its own list, the check tries the spool's other jobs.
            let listed = format!("{}\n", self.spool.display());
            tokio::fs::write(&input, listed)
                .await
                .map_err(|e| format!("spool: {e}"))?;
            let job = Job {
                task: Task::SandboxCheck,
                mime: "text/plain".into(),
                input: input.clone(),
                out_dir: out_dir.clone(),
                image: self.config.image.clone(),
                video: self.config.video.clone(),
            };
            self.isolator
                .run(job, Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())?;
            let report = tokio::fs::read(out_dir.join("report.json"))
                .await
                .map_err(|e| format!("no report: {e}"))?;
            serde_json::from_slice(&report).map_err(|e| format!("a bad report: {e}"))
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        result
    }

    async fn log_sandbox(&self) {
        match self.check_sandbox().await {
            Ok(r) if r.works && r.escapes.is_empty() => tracing::info!(
                landlock_abi = r.applied.landlock_abi,
                seccomp = r.applied.seccomp,
                "media jobs are sandboxed: their own files only, no network, no secrets"
            ),
            Ok(r) if r.works => tracing::error!(
                escapes = %r.escapes.join("; "),
                landlock_abi = r.applied.landlock_abi,
                "the media job sandbox leaks"
            ),
            Ok(_) => tracing::error!("media jobs cannot read their input in the sandbox"),
            Err(why) => tracing::error!(%why, "media jobs cannot run sandboxed; none will run"),
        }
    }

    /// Runs jobs until shutdown; `wake` is notified when a job is queued.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        use std::sync::atomic::Ordering;
        if !self.sandbox_checked.swap(true, Ordering::Relaxed) {
            self.log_sandbox().await;
        }
        loop {
            let claimed = match self.store.claim_job(self.config.lease).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a media job; will retry");
                    None
                }
            };
            let Some(job) = claimed else {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(self.config.poll) => {}
                }
                continue;
            };
            let started = std::time::Instant::now();
            let outcome = self.process(&job).await;
            let result = match &outcome {
                Outcome::Done(d) => self.store.job_done(&job, d).await,
                Outcome::Poisoned(why) => {
                    tracing::info!(sha256 = %job.sha256, why, "media file refused by processing");
                    self.store.job_failed(&job.sha256, why, true, None).await
                }
                Outcome::Retry(why) => {
                    let last = job.attempts >= self.config.attempts;
                    let wait = Duration::from_secs(1 << job.attempts.clamp(0, 10));
                    tracing::warn!(sha256 = %job.sha256, why, attempt = job.attempts, "media job failed");
                    self.store
                        .job_failed(&job.sha256, why, false, (!last).then_some(wait))
                        .await
                }
            };
            let label = match &outcome {
                Outcome::Done(_) => "done",
                Outcome::Poisoned(_) => "refused",
                Outcome::Retry(_) => "retry",
            };
            crate::metrics::media_job(&job.class, label, started.elapsed());
            tracing::debug!(sha256 = %job.sha256, took_ms = started.elapsed().as_millis() as u64, "media job");
            match result {
                Ok(updates) => {
                    for u in &updates {
                        self.publisher.deliver(u).await;
                    }
                }
                // The lease runs out and the job runs again.
                Err(e) => tracing::warn!(error = %e, "media job result not recorded"),
            }
        }
    }

    async fn process(&self, job: &Claimed) -> Outcome {
        let work = self.spool.join(format!("job-{}", job.sha256));
        let outcome = self.process_in(job, &work).await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        outcome
    }

    /// Processes `job` in its own directory `work`: the input, and one output directory per
    /// task.
    async fn process_in(&self, job: &Claimed, work: &Path) -> Outcome {
        let input = work.join("input");
        if let Err(e) = self.fetch(&job.storage_key, work, &input).await {
            return Outcome::Retry(format!("fetching the blob: {e}"));
        }
        let main = match job.class.as_str() {
            "image" => Task::Image,
            "video" => Task::Video,
            "audio" => Task::Audio,
            other => return Outcome::Poisoned(format!("no processing for {other} files")),
        };
        let facts = match self.task(job, main, &input, work).await {
            Ok(f) => f,
            Err(o) => return o,
        };
        let mut derived = Derived {
            width: facts.width,
            height: facts.height,
            duration_ms: facts.duration_ms,
            ..Default::default()
        };
        if main == Task::Image {
            derived.thumb_key = Some(derived_key(&job.storage_key, "thumb.webp"));
            derived.preview_key = Some(derived_key(&job.storage_key, "preview.jpg"));
            derived.avatar_key = Some(derived_key(&job.storage_key, "avatar.webp"));
        }
        if main == Task::Video {
            derived.poster_key = Some(derived_key(&job.storage_key, "poster.jpg"));
            // The 480p preview: without one (too long for the budget, an encoder problem)
            // the file is still ready, with its poster and facts.
            derived.preview_key = match self.task(job, Task::VideoPreview, &input, work).await {
                Ok(_) => Some(derived_key(&job.storage_key, "preview.mp4")),
                Err(Outcome::Retry(why)) => return Outcome::Retry(why),
                Err(_) => {
                    tracing::info!(sha256 = %job.sha256, "no video preview made");
                    None
                }
            };
        }
        Outcome::Done(derived)
    }

    async fn fetch(&self, key: &str, work: &Path, to: &Path) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(work).await?;
        self.blobs.read(key, None).await?.write_to(to).await
    }

    /// Runs one task in a confined process under the budget and stores what it made.
    async fn task(
        &self,
        job: &Claimed,
        task: Task,
        input: &Path,
        work: &Path,
    ) -> Result<Facts, Outcome> {
        let out_dir = work.join(format!("{task:?}").to_lowercase());
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(|e| Outcome::Retry(format!("spool: {e}")))?;
        let spec = Job {
            task,
            mime: job.mime.clone(),
            input: input.to_owned(),
            out_dir: out_dir.clone(),
            image: self.config.image.clone(),
            video: self.config.video.clone(),
        };
        let facts = self
            .isolator
            .run(spec, self.config.budget)
            .await
            .map_err(|e| match e {
                JobError::Poisoned(why) => Outcome::Poisoned(why),
                JobError::Transient(why) => Outcome::Retry(why),
            })?;
        for (name, mime) in task.outputs() {
            let key = derived_key(&job.storage_key, name);
            self.blobs
                .put_file(&key, &out_dir.join(name), mime)
                .await
                .map_err(|e| Outcome::Retry(format!("storing {key}: {e}")))?;
        }
        Ok(facts)
    }
}

/// Where the derivative `name` of the blob stored at `storage_key` lives: beside it under
/// `derived/` (`blobs/ab/cd/<sha256>.<unique>` → `derived/ab/cd/<sha256>.<unique>/<name>`),
/// so each stored copy's derivatives are its own.
pub fn derived_key(storage_key: &str, name: &str) -> String {
    let blob = storage_key.strip_prefix("blobs/").unwrap_or(storage_key);
    format!("derived/{blob}/{name}")
}
