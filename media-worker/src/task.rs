//! One unit of processing — a [`Task`] over one input file — and what it leaves behind: files
//! in an output directory (named by [`Task::outputs`]) and a few facts ([`Facts`]).
//!
//! A task is plain data so that it can run on a thread of this process or, serialised, in a
//! child process under OS limits (see [`crate::isolate`]); [`execute`] is the same code either
//! way.

use crate::image::{process_image, ImageLimits};
use crate::video::{make_preview, probe_audio, process_video, Container, VideoLimits};
use crate::MediaError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What to make of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Dimensions, `thumb.webp`, `preview.jpg` and `avatar.webp`.
    Image,
    /// Dimensions, duration and `poster.jpg`.
    Video,
    /// `preview.mp4`, the 480p H.264 preview of a video.
    VideoPreview,
    /// Duration.
    Audio,
    /// Tries every way out of the job's sandbox and writes what worked to `report.json`
    /// ([`crate::sandbox::probe`]); the input lists more paths and `tcp:` targets to try.
    SandboxCheck,
}

impl Task {
    /// The files the task writes into its output directory, with their content types.
    pub fn outputs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Task::Image => &[
                ("thumb.webp", "image/webp"),
                ("preview.jpg", "image/jpeg"),
                ("avatar.webp", "image/webp"),
            ],
            Task::Video => &[("poster.jpg", "image/jpeg")],
            Task::VideoPreview => &[("preview.mp4", "video/mp4")],
            Task::Audio => &[],
            Task::SandboxCheck => &[("report.json", "application/json")],
        }
    }
}

/// A task with its input, where its outputs go, and the decoding limits it runs under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub task: Task,
    /// The input's type as sniffed at upload: the only format it is read as.
    pub mime: String,
    pub input: PathBuf,
    pub out_dir: PathBuf,
    pub image: ImageLimits,
    pub video: VideoLimits,
}

/// What a task learnt about the file, besides the files it wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// As displayed (orientation or rotation applied).
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub duration_ms: Option<i64>,
}

/// Runs `job` here, on the calling thread (which it blocks).
pub fn execute(job: &Job) -> Result<Facts, MediaError> {
    let out = |name: &str| job.out_dir.join(name);
    let container = || {
        Container::of_mime(&job.mime).ok_or_else(|| {
            MediaError::Corrupt(format!("{} files are not read as audio or video", job.mime))
        })
    };
    match job.task {
        Task::Image => {
            let made = process_image(&job.input, &job.image)?;
            write(&out("thumb.webp"), &made.thumb)?;
            write(&out("preview.jpg"), &made.preview)?;
            write(&out("avatar.webp"), &made.avatar)?;
            Ok(Facts {
                width: Some(made.width),
                height: Some(made.height),
                duration_ms: None,
            })
        }
        Task::Video => {
            let made = process_video(&job.input, container()?, &job.video)?;
            write(&out("poster.jpg"), &made.poster)?;
            Ok(Facts {
                width: Some(made.width),
                height: Some(made.height),
                duration_ms: Some(made.duration_ms),
            })
        }
        Task::VideoPreview => {
            make_preview(&job.input, container()?, &out("preview.mp4"), &job.video)?;
            Ok(Facts::default())
        }
        Task::Audio => Ok(Facts {
            duration_ms: Some(probe_audio(&job.input, container()?, &job.video)?),
            ..Default::default()
        }),
        Task::SandboxCheck => {
            let report = crate::sandbox::probe(&job.input, &job.out_dir);
            let json = serde_json::to_vec(&report).expect("a report serialises");
            write(&out("report.json"), &json)?;
            Ok(Facts::default())
        }
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), MediaError> {
    std::fs::write(path, bytes).map_err(MediaError::Io)
}
