//! Builds the web app into the binary: the page's own files (`web/app/`), the JS SDK it is
//! built on (`sdk/js/courier.js`, served as `courier.js`) and the browser builds of the npm
//! libraries it loads (`web/package-lock.json`: MQTT.js, tus-js-client),
//! installed with `npm ci` into this build's output directory. The page never loads anything
//! from elsewhere at run time.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files the page loads from npm packages: (served name, path inside node_modules).
const VENDORED: &[(&str, &str)] = &[
    ("mqtt.esm.js", "mqtt/dist/mqtt.esm.js"),
    ("tus.min.js", "tus-js-client/dist/tus.min.js"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let web = manifest.join("../web");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", web.join("app").display());
    let sdk = manifest.join("../sdk/js/courier.js");
    println!("cargo:rerun-if-changed={}", sdk.display());
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package.json").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package-lock.json").display()
    );

    let modules = npm_install(&web, &out.join("npm"));
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(web.join("app"))
        .expect("web/app")
        .map(|e| e.expect("web/app entry").path())
        .filter(|p| p.is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.push(("courier.js".into(), sdk));
    for (name, inside) in VENDORED {
        files.push((name.to_string(), modules.join(inside)));
    }
    files.sort();

    let mut code = String::from("/// The web app's files: (name, content type, ETag, bytes).\n");
    code.push_str("pub static ASSETS: &[(&str, &str, &str, &[u8])] = &[\n");
    for (name, path) in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        code.push_str(&format!(
            "    ({name:?}, {:?}, \"\\\"{:016x}\\\"\", include_bytes!({:?})),\n",
            content_type(name),
            h.finish(),
            path.canonicalize().unwrap()
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("web_assets.rs"), code).unwrap();
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// `npm ci` of the page's runtime packages into `dir` (once per lock file); their
/// node_modules.
fn npm_install(web: &Path, dir: &Path) -> PathBuf {
    let lock = std::fs::read(web.join("package-lock.json")).expect("web/package-lock.json");
    let stamp = dir.join("installed.lock");
    let modules = dir.join("node_modules");
    if std::fs::read(&stamp).ok().as_deref() == Some(&lock[..])
        && VENDORED.iter().all(|(_, p)| modules.join(p).is_file())
    {
        return modules;
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(web.join("package.json"), dir.join("package.json")).unwrap();
    std::fs::write(dir.join("package-lock.json"), &lock).unwrap();
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let status = Command::new(npm)
        .args([
            "ci",
            "--omit=dev",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
        ])
        .current_dir(dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci` for the web app's libraries failed ({s}); it needs the npm registry \
             (see its output above)"
        ),
        Err(e) => panic!(
            "the web app's libraries (MQTT.js, tus-js-client) come from npm at build time, \
             and npm could not be run: {e}. Install Node.js and npm (Debian: apt install npm)"
        ),
    }
    std::fs::write(&stamp, &lock).unwrap();
    modules
}
