//! Media jobs out of the server's process: each task runs in a `courier media-job` child under
//! OS limits (a file that needs more memory or time than allowed kills only its own process),
//! and `courier serve --role media-worker` runs a server's jobs in a process of its own.

use crate::binary::courier;
use crate::helpers::{spawn_app_with, Db};
use crate::media_jobs::{dims, fetch, jpeg, media_update, send_file};
use courier_client::protocol::http::MediaFile;
use media_worker::image::ImageLimits;
use media_worker::isolate::{Isolator, JobError, JobProcess, ProcessLimits};
use media_worker::{Job, Task};
use reqwest::StatusCode;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn job_process(memory: u64) -> JobProcess {
    JobProcess {
        program: env!("CARGO_BIN_EXE_courier").into(),
        args: vec!["media-job".into()],
        limits: ProcessLimits {
            memory,
            cpu_seconds: 60,
            nice: 10,
            ..Default::default()
        },
    }
}

/// An image job on `input` with every decoder limit lifted: only the process limits bound it.
fn unbounded_image_job(input: &Path, out_dir: &Path) -> Job {
    std::fs::create_dir_all(out_dir).unwrap();
    Job {
        task: Task::Image,
        mime: "image/png".into(),
        input: input.to_owned(),
        out_dir: out_dir.to_owned(),
        image: ImageLimits {
            max_pixels: u64::MAX,
            max_side: u32::MAX,
            max_alloc: u64::MAX,
            max_scans: usize::MAX,
        },
        video: Default::default(),
    }
}

#[tokio::test]
async fn a_job_over_its_memory_limit_dies_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (bomb, photo) = (dir.path().join("bomb.png"), dir.path().join("photo.jpg"));
    // 20 000 × 20 000 pixels in a few hundred kilobytes: 1.2 GB once decoded.
    std::fs::write(&bomb, media_worker::fixtures::png_bomb(20_000)).unwrap();
    std::fs::write(&photo, jpeg(1600, 1200)).unwrap();
    let jobs = Isolator::new(job_process(512 << 20));
    let budget = Duration::from_secs(60);

    let job = unbounded_image_job(&bomb, &dir.path().join("bomb-out"));
    let err = jobs.run(job, budget).await.unwrap_err();
    let JobError::Poisoned(why) = &err else {
        panic!("a file over the memory limit is the file's fault: {err:?}")
    };
    assert!(
        why.contains("memory allocation"),
        "the reason names the failed allocation: {why}"
    );

    // The same limits are plenty for a real photo.
    let out = dir.path().join("photo-out");
    let job = unbounded_image_job(&photo, &out);
    let facts = jobs.run(job, budget).await.unwrap();
    assert_eq!((facts.width, facts.height), (Some(1600), Some(1200)));
    assert_eq!(
        dims(&std::fs::read(out.join("thumb.webp")).unwrap()),
        (320, 240)
    );
    assert_eq!(
        dims(&std::fs::read(out.join("preview.jpg")).unwrap()),
        (1280, 960)
    );
}

#[tokio::test]
async fn a_job_over_its_time_budget_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    media_worker::fixtures::h264_clip("1920x1080", "10", &[], &clip);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let job = Job {
        task: Task::VideoPreview,
        mime: "video/mp4".into(),
        input: clip,
        out_dir: out.clone(),
        image: Default::default(),
        video: Default::default(),
    };
    let started = std::time::Instant::now();
    let jobs = Isolator::new(job_process(2 << 30));
    let err = jobs.run(job, Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(
        err,
        JobError::Poisoned("over the processing time budget".into())
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "killed, not awaited"
    );
    // The host that forked it goes on with the next job.
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, jpeg(64, 48)).unwrap();
    let facts = jobs
        .run(
            unbounded_image_job(&photo, &dir.path().join("photo-out")),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!((facts.width, facts.height), (Some(64), Some(48)));
}

#[tokio::test]
async fn a_program_that_cannot_run_jobs_is_retried_not_blamed_on_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let photo = dir.path().join("photo.jpg");
    std::fs::write(&photo, jpeg(64, 48)).unwrap();
    let mut missing = job_process(2 << 30);
    missing.program = dir.path().join("no-such-program");
    let job = unbounded_image_job(&photo, &dir.path().join("out"));
    let err = Isolator::new(missing)
        .run(job.clone(), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Transient(_)), "{err:?}");
    // A program that does not speak the job protocol (the server, asked for its version).
    let mut wrong = job_process(2 << 30);
    wrong.args = vec!["--version".into()];
    let err = Isolator::new(wrong)
        .run(job, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::Transient(_)), "{err:?}");
}

/// Kills the worker process when the test ends, however it ends.
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_media_worker_process_runs_the_servers_jobs() {
    let secret = "media-worker-test-secret";
    // The server runs no jobs itself.
    let app = spawn_app_with(Db::Postgres, |s| {
        s.media_jobs = 0;
        s.service_secret = Some(secret.into());
    })
    .await;
    app.users(&["alice", "bob"]).await;
    let alice = app.tcp_device("alice", "phone").await;
    let mut bob = app.tcp_device("bob", "phone").await;
    let conv = app.direct(&alice, &bob).await;
    let photo: MediaFile = app
        .api
        .upload(alice.token(), jpeg(1600, 1200), Some("photo.jpg"))
        .await
        .unwrap();
    let a = send_file(&alice, &mut bob, &conv, "image", &photo.id).await;
    assert_eq!(a.status.as_deref(), Some("pending"));

    let s = &app.settings;
    let _worker = Worker(
        courier()
            .arg("serve")
            .args(["--role", "media-worker"])
            .args(["--database-url", &s.database_url()])
            .arg("--data-dir")
            .arg(&s.data_dir)
            .args(["--service-secret", secret])
            .args(["--broker", &format!("127.0.0.1:{}", app.addrs.mqtt.port())])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The worker's update reaches bob live, through the broker.
    let (status, w, h, thumb) = media_update(&mut bob, &photo.id).await;
    assert_eq!(
        (status.as_str(), w, h, thumb),
        ("ready", Some(1600), Some(1200), true)
    );
    let (s, _, bytes) = fetch(&app, bob.token(), &format!("/media/{}/thumb", photo.id)).await;
    assert_eq!((s, dims(&bytes)), (StatusCode::OK, (320, 240)));
}

#[test]
fn a_media_worker_needs_a_shared_database_and_the_service_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = courier()
        .args(["serve", "--role", "media-worker", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL"), "{err}");
    let out = courier()
        .args(["serve", "--role", "media-worker"])
        .args(["--database-url", "postgres://127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--service-secret"), "{err}");
}

/// The job sandbox (`media_worker::sandbox`): a job's process reads its input and writes its
/// output directory, and can do nothing else a hostile file's code would want.
#[tokio::test]
async fn a_job_can_reach_nothing_but_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    // Outside the job's directory: a secret, and a server listening on loopback.
    let secret = dir.path().join("database.sqlite");
    std::fs::write(&secret, "every message").unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let job_dir = dir.path().join("jobs").join("job-1");
    let out_dir = job_dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let input = job_dir.join("input");
    std::fs::write(
        &input,
        format!(
            "{}\n{}\ntcp:{}\n",
            secret.display(),
            dir.path().display(),
            server.local_addr().unwrap()
        ),
    )
    .unwrap();
    let job = Job {
        task: Task::SandboxCheck,
        mime: "text/plain".into(),
        input: input.clone(),
        out_dir: out_dir.clone(),
        image: Default::default(),
        video: Default::default(),
    };

    // The same probe run here, unconfined, finds every way out open: it is no straw man.
    let unconfined = media_worker::sandbox::probe(&input, &out_dir);
    let found = unconfined.escapes.join("\n");
    for escape in [
        "read /etc/passwd",
        &format!("read {}", secret.display()),
        "opened an AF_INET socket",
        "connected to tcp",
        "inherited environment",
        "wrote in",
    ] {
        assert!(found.contains(escape), "{escape} not found in:\n{found}");
    }
    while server.accept().is_ok() {}
    std::fs::remove_file(job_dir.join("escape-check")).unwrap();
    let _ = std::fs::remove_dir(dir.path().join("jobs").join("escape-check"));

    Isolator::new(job_process(2 << 30))
        .run(job, Duration::from_secs(30))
        .await
        .unwrap();
    let report: media_worker::sandbox::Report =
        serde_json::from_slice(&std::fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert!(
        report.works,
        "the job can read its input and write its output"
    );
    assert_eq!(report.escapes, Vec::<String>::new());
    assert!(report.applied.landlock_abi >= 1 && report.applied.seccomp);
    assert!(server.accept().is_err(), "nothing connected");
    assert!(!job_dir.join("escape-check").exists());
}
