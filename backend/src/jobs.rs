//! The media jobs runner: claims jobs from the database queue (`store/jobs.rs`), fetches the
//! blob into the spool, makes its derivatives with `media_worker` on a blocking thread under a
//! wall-clock budget, stores them, and publishes the `media` updates.
//!
//! A poisoned file fails its own job, never the runner: decoding errors and limit breaches are
//! permanent failures, a panic inside a decoder is caught and counts as one too, and anything
//! else (storage, I/O) is retried with exponential backoff up to [`JobConfig::attempts`].

use crate::publisher::Publisher;
use crate::store::jobs::{Claimed, Derived};
use crate::store::Store;
use media_worker::image::{process_image, ImageLimits};
use media_worker::video::{make_preview, probe_audio, process_video, VideoLimits};
use media_worker::{BlobStore, MediaError, StoreError};
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
}

impl Default for JobConfig {
    fn default() -> Self {
        Self {
            image: ImageLimits::default(),
            video: VideoLimits::default(),
            attempts: 5,
            budget: Duration::from_secs(120),
            lease: Duration::from_secs(300),
            poll: Duration::from_secs(2),
        }
    }
}

pub struct Runner {
    pub store: Store,
    pub blobs: Arc<dyn BlobStore>,
    pub publisher: Publisher,
    pub spool: PathBuf,
    pub config: JobConfig,
}

enum Outcome {
    Done(Derived),
    /// The file itself is bad: no retry.
    Poisoned(String),
    /// Something around it failed: retry later.
    Retry(String),
}

impl Runner {
    /// Runs jobs until shutdown; `wake` is notified when a job is queued.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
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
                Outcome::Done(d) => self.store.job_done(&job.sha256, d).await,
                Outcome::Poisoned(why) => {
                    tracing::info!(sha256 = %job.sha256, why, "media file refused by processing");
                    self.store.job_failed(&job.sha256, why, true, None).await
                }
                Outcome::Retry(why) => {
                    let last = job.attempts >= self.config.attempts;
                    let wait = Duration::from_secs(1 << job.attempts.clamp(0, 10));
                    tracing::warn!(sha256 = %job.sha256, why, attempt = job.attempts, "media job failed");
                    self.store
                        .job_failed(&job.sha256, why, last, (!last).then_some(wait))
                        .await
                }
            };
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
        let input = self.spool.join(format!("job-{}", job.sha256));
        let outcome = match self.fetch(&job.storage_key, &input).await {
            Err(e) => Outcome::Retry(format!("fetching the blob: {e}")),
            Ok(()) => match job.class.as_str() {
                "image" => self.image(job, &input).await,
                "video" => self.video(job, &input).await,
                "audio" => self.audio(&input).await,
                other => Outcome::Poisoned(format!("no processing for {other} files")),
            },
        };
        let _ = tokio::fs::remove_file(&input).await;
        outcome
    }

    async fn fetch(&self, key: &str, to: &Path) -> Result<(), StoreError> {
        tokio::fs::create_dir_all(&self.spool).await?;
        self.blobs.read(key, None).await?.write_to(to).await
    }

    /// Runs `work` on a blocking thread under the budget; a panic or a bad file is the file's
    /// fault (no retry), anything else is retried.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
    ) -> Result<T, Outcome> {
        let task = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
        });
        match tokio::time::timeout(self.config.budget, task).await {
            Err(_) => Err(Outcome::Poisoned("over the processing time budget".into())),
            Ok(Err(e)) => Err(Outcome::Retry(format!("worker thread: {e}"))),
            Ok(Ok(Err(_panic))) => Err(Outcome::Poisoned("the decoder crashed".into())),
            Ok(Ok(Ok(Err(e)))) => Err(match e {
                MediaError::Corrupt(_) | MediaError::TooLarge(_) => {
                    Outcome::Poisoned(e.to_string())
                }
                MediaError::Io(_) | MediaError::Failed(_) => Outcome::Retry(e.to_string()),
            }),
            Ok(Ok(Ok(Ok(out)))) => Ok(out),
        }
    }

    async fn video(&self, job: &Claimed, input: &Path) -> Outcome {
        let (path, limits) = (input.to_owned(), self.config.video.clone());
        let made = match self.blocking(move || process_video(&path, &limits)).await {
            Ok(m) => m,
            Err(o) => return o,
        };
        let poster = derived_key(&job.sha256, "poster.jpg");
        if let Err(e) = self.put(&poster, &made.poster, "image/jpeg").await {
            return Outcome::Retry(format!("storing {poster}: {e}"));
        }
        // The 480p preview: without one (too long for the budget, an encoder problem) the
        // file is still ready, with its poster and facts.
        let out = self.spool.join(format!("preview-{}.mp4", job.sha256));
        let (src, dst, limits) = (input.to_owned(), out.clone(), self.config.video.clone());
        let preview = match self
            .blocking(move || make_preview(&src, &dst, &limits))
            .await
        {
            Ok(()) => {
                let key = derived_key(&job.sha256, "preview.mp4");
                match self.blobs.put_file(&key, &out, "video/mp4").await {
                    Ok(()) => Some(key),
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&out).await;
                        return Outcome::Retry(format!("storing {key}: {e}"));
                    }
                }
            }
            Err(_) => {
                tracing::info!(sha256 = %job.sha256, "no video preview made");
                None
            }
        };
        let _ = tokio::fs::remove_file(&out).await;
        Outcome::Done(Derived {
            width: Some(made.width),
            height: Some(made.height),
            duration_ms: Some(made.duration_ms),
            poster_key: Some(poster),
            preview_key: preview,
            ..Default::default()
        })
    }

    async fn audio(&self, input: &Path) -> Outcome {
        let (path, limits) = (input.to_owned(), self.config.video.clone());
        match self.blocking(move || probe_audio(&path, &limits)).await {
            Ok(ms) => Outcome::Done(Derived {
                duration_ms: Some(ms),
                ..Default::default()
            }),
            Err(o) => o,
        }
    }

    async fn image(&self, job: &Claimed, input: &Path) -> Outcome {
        let (path, limits) = (input.to_owned(), self.config.image.clone());
        let made = match self.blocking(move || process_image(&path, &limits)).await {
            Ok(m) => m,
            Err(o) => return o,
        };
        let thumb = derived_key(&job.sha256, "thumb.webp");
        let preview = derived_key(&job.sha256, "preview.jpg");
        for (key, bytes, mime) in [
            (&thumb, &made.thumb, "image/webp"),
            (&preview, &made.preview, "image/jpeg"),
        ] {
            if let Err(e) = self.put(key, bytes, mime).await {
                return Outcome::Retry(format!("storing {key}: {e}"));
            }
        }
        Outcome::Done(Derived {
            width: Some(made.width),
            height: Some(made.height),
            thumb_key: Some(thumb),
            preview_key: Some(preview),
            ..Default::default()
        })
    }

    async fn put(&self, key: &str, bytes: &[u8], mime: &str) -> Result<(), String> {
        let tmp = self.spool.join(crate::util::new_id('d'));
        let r = async {
            tokio::fs::write(&tmp, bytes)
                .await
                .map_err(|e| e.to_string())?;
            self.blobs
                .put_file(key, &tmp, mime)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let _ = tokio::fs::remove_file(&tmp).await;
        r
    }
}

/// Where a blob's derivative lives: `derived/ab/<sha256>/<name>`.
pub fn derived_key(sha256: &str, name: &str) -> String {
    format!("derived/{}/{sha256}/{name}", &sha256[..2])
}
