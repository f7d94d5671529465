//! `courier-media-bench`: Courier's media worker against the usual tools, on the same files,
//! in one run.
//!
//! 1. A 12 MP JPEG (4000 × 3000, FFmpeg's `testsrc2` pattern at JPEG quality ~90) → a 320 px
//!    WebP thumbnail: Courier's `thumbnail_of` (decode, orientation, resize, lossy WebP q75)
//!    against `vipsthumbnail photo.jpg -s 320 -o thumb.webp[Q=75]` (libvips-tools), run once
//!    per photo and over 20 copies in one process (libvips's work per photo, its start spread
//!    out). Also the whole image job (thumbnail, 1280 px preview and 256 px avatar), in this process and as the
//!    server runs it, in a process forked by a `courier media-job` host.
//! 2. A 1080p 10 s H.264 clip → the 480p H.264 preview: Courier's `make_preview` against
//!    `ffmpeg -vf scale=-2:480 -c:v libx264 -preset veryfast -crf 28 -an -movflags +faststart`,
//!    and against real time (10 s).
//!
//! 3. The same 12 MP JPEG as a phone uploads it (EXIF with GPS, XMP, a comment, a trailer) →
//!    its original without that metadata (`media_worker::strip`, which the server runs on
//!    every image upload): its time, and the upload's throughput through it.
//!
//! Each is run `--runs` times; the median wall time is reported. The external tools' times
//! include starting their process (a few ms); Courier's run in this process.

use clap::Parser;
use media_worker::image::{process_image, thumbnail_of, ImageLimits};
use media_worker::isolate::{Isolator, JobProcess};
use media_worker::video::{make_preview, process_video, Container, VideoLimits};
use media_worker::{Job, Task};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
struct Args {
    /// Runs of each measurement
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// One frame of the lavfi source `filter` as a JPEG at quality ~90 (`-q:v 2`).
fn jpeg_of(filter: &str, out: &Path) {
    let args = ["-f", "lavfi", "-i", filter, "-frames:v", "1", "-q:v", "2"];
    media_worker::fixtures::ffmpeg(&args, out);
}

fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    println!(
        "courier-media-bench: {} runs each, {} cores",
        args.runs,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // 1. Photo → thumbnail.
    let photo = d.join("photo.jpg");
    jpeg_of("testsrc2=size=4000x3000", &photo);
    let limits = ImageLimits::default();
    let mut ours = Vec::new();
    let t_ours = time(args.runs, || ours = thumbnail_of(&photo, &limits).unwrap());
    let t_job = time(args.runs, || {
        process_image(&photo, &limits).unwrap();
    });
    let vips_out = d.join("vips.webp");
    let target = format!("{}[Q=75]", vips_out.display());
    let t_vips = time(args.runs, || {
        run(Command::new("vipsthumbnail")
            .arg(&photo)
            .args(["-s", "320", "-o"])
            .arg(&target))
    });
    // libvips's own work per photo: one vipsthumbnail over BATCH copies, its process start
    // spread over all of them.
    const BATCH: usize = 20;
    let copies: Vec<_> = (0..BATCH)
        .map(|i| {
            let p = d.join(format!("copy{i}.jpg"));
            std::fs::copy(&photo, &p).unwrap();
            p
        })
        .collect();
    let t_vips_each = time(args.runs, || {
        run(Command::new("vipsthumbnail").args(&copies).args([
            "-s",
            "320",
            "-o",
            "tn_%s.webp[Q=75]",
        ]))
    }) / BATCH as u32;
    // The image job as the server runs it: in a process forked by a `courier media-job` host
    // (thumbnail and preview), when the release `courier` binary sits next to this one.
    let courier_bin = std::env::current_exe().unwrap().with_file_name("courier");
    let t_child = courier_bin.exists().then(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let jobs = Isolator::new(JobProcess {
            program: courier_bin.clone(),
            ..JobProcess::this_executable()
        });
        let out = d.join("job-out");
        std::fs::create_dir_all(&out).unwrap();
        time(args.runs, || {
            let job = Job {
                task: Task::Image,
                mime: "image/jpeg".into(),
                input: photo.clone(),
                out_dir: out.clone(),
                image: limits.clone(),
                video: Default::default(),
            };
            rt.block_on(jobs.run(job, Duration::from_secs(60))).unwrap();
        })
    });
    println!(
        "12 MP JPEG ({:.1} MB) → 320 px WebP thumbnail:\n  courier                        {:>7.1} ms  {:>6} B\n  vipsthumbnail, one photo       {:>7.1} ms  {:>6} B\n  vipsthumbnail, each of {BATCH}      {:>7.1} ms\n  ratio (vips work/courier) {:.2}×; courier's whole image job (thumbnail + 1280 px preview + 256 px avatar) {:.1} ms in process, {} in a process forked by a media-job host",
        size(&photo) as f64 / 1e6,
        ms(t_ours),
        ours.len(),
        ms(t_vips),
        size(&vips_out),
        ms(t_vips_each),
        t_vips_each.as_secs_f64() / t_ours.as_secs_f64(),
        ms(t_job),
        t_child.map_or("(no release courier binary beside this one)".into(), |t| format!("{:.1} ms", ms(t))),
    );

    // The image job (which also makes the 256 px avatar, vipsthumbnail does not) against
    // vipsthumbnail making the same two outputs (320 px WebP q75 and
    // 1280 px JPEG q80), per photo over BATCH copies, on the pattern photo and on a camera-like
    // one (sensor noise: ~5 MB, most of its bytes in entropy-coded detail).
    let noisy = d.join("noisy.jpg");
    jpeg_of("testsrc2=size=4000x3000,noise=alls=12:allf=t", &noisy);
    for (name, src) in [("pattern", &photo), ("camera-like", &noisy)] {
        let copies: Vec<_> = (0..BATCH)
            .map(|i| {
                let p = d.join(format!("two{i}.jpg"));
                std::fs::copy(src, &p).unwrap();
                p
            })
            .collect();
        let t_vips_two = time(args.runs, || {
            for (side, out) in [("320", "tn_%s.webp[Q=75]"), ("1280", "pv_%s.jpg[Q=80]")] {
                run(Command::new("vipsthumbnail")
                    .args(&copies)
                    .args(["-s", side, "-o", out]));
            }
        }) / BATCH as u32;
        let t_job = time(args.runs, || {
            process_image(src, &limits).unwrap();
        });
        println!(
            "12 MP {name} JPEG ({:.1} MB) → 320 px WebP + 1280 px JPEG:\n  courier's image job (+ avatar)   {:>7.1} ms\n  vipsthumbnail × 2, each of {BATCH}    {:>7.1} ms   ratio (vips/courier) {:.2}×",
            size(src) as f64 / 1e6,
            ms(t_job),
            ms(t_vips_two),
            t_vips_two.as_secs_f64() / t_job.as_secs_f64(),
        );
    }

    // 3. Stripping the original's metadata at upload.
    let camera = d.join("camera.jpg");
    std::fs::write(
        &camera,
        media_worker::fixtures::camera_jpeg(&std::fs::read(&photo).unwrap(), 6),
    )
    .unwrap();
    let stripped = d.join("stripped.jpg");
    let t_strip = time(args.runs, || {
        let mut input = std::io::BufReader::new(std::fs::File::open(&camera).unwrap());
        let mut out = std::io::BufWriter::new(std::fs::File::create(&stripped).unwrap());
        media_worker::strip::strip("image/jpeg", &mut input, &mut out).unwrap();
    });
    println!(
        "12 MP JPEG with a phone's metadata ({:.1} MB) → stripped original ({:.1} MB):\n  courier        {:>7.1} ms  {:.0} MB/s",
        size(&camera) as f64 / 1e6,
        size(&stripped) as f64 / 1e6,
        ms(t_strip),
        size(&camera) as f64 / 1e6 / t_strip.as_secs_f64(),
    );

    // 2. Clip → 480p preview.
    let clip = d.join("clip.mp4");
    media_worker::fixtures::ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30",
            "-t",
            "10",
            "-c:v",
            "libx264",
            "-preset",
            "fast",
            "-pix_fmt",
            "yuv420p",
        ],
        &clip,
    );
    let vlimits = VideoLimits {
        budget: Duration::from_secs(600),
        ..Default::default()
    };
    let ours = d.join("ours.mp4");
    let t_ours = time(args.runs, || {
        make_preview(&clip, Container::Mp4, &ours, &vlimits).unwrap()
    });
    let t_probe = time(args.runs, || {
        process_video(&clip, Container::Mp4, &vlimits).unwrap();
    });
    let theirs = d.join("ffmpeg.mp4");
    let t_ffmpeg = time(args.runs, || {
        run(Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&clip)
            .args([
                "-vf",
                "scale=-2:480",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-crf",
                "28",
                "-an",
                "-movflags",
                "+faststart",
            ])
            .arg(&theirs))
    });
    println!(
        "1080p 10 s H.264 clip ({:.1} MB) → 480p H.264 preview:\n  courier        {:>7.0} ms  {:>8} B  {:.1}× real time\n  ffmpeg CLI     {:>7.0} ms  {:>8} B  {:.1}× real time\n  probe + poster {:>7.0} ms",
        size(&clip) as f64 / 1e6,
        ms(t_ours),
        size(&ours),
        10.0 / t_ours.as_secs_f64(),
        ms(t_ffmpeg),
        size(&theirs),
        10.0 / t_ffmpeg.as_secs_f64(),
        ms(t_probe),
    );
}
