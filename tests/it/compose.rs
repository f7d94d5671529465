//! docker-compose.yml, the Dockerfile and the EMQX settings stay in step with the code (no
//! Docker engine runs here): every Courier service's flags and `COURIER_*` variables parse
//! with `courier serve`'s own parser into settings its role accepts, everything a service
//! refers to exists, and EMQX calls hooks Courier serves with the fields they read.

use clap::Args;
use courier::settings::{Role, Settings};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Resolves `<<` merge keys (yaml-rust2 resolves aliases but leaves merges to the reader).
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(base) = h.get(&Yaml::String("<<".into())) {
                if let Yaml::Hash(b) = merged(base) {
                    out.extend(b);
                }
            }
            for (k, v) in h {
                if k.as_str() != Some("<<") {
                    out.insert(k.clone(), merged(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

/// `${VAR:-default}` → `default` (what compose substitutes when VAR is unset); `${VAR:?why}`
/// (compose refuses to start while VAR is unset) → a value as an operator's `.env` would give.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${…}") + start;
        let inner = &rest[start + 2..end];
        match (inner.split_once(":-"), inner.split_once(":?")) {
            (Some((_, default)), _) => out.push_str(default),
            (None, Some((var, _))) => {
                out.push_str(&format!("{}-0123456789abcdef", var.to_lowercase()))
            }
            (None, None) => {}
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn scalar(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => interpolate(s),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map_or_else(Vec::new, |v| v.iter().map(scalar).collect())
}

/// `courier serve`'s own argument parser.
fn serve_command() -> clap::Command {
    Settings::augment_args(clap::Command::new("courier").no_binary_name(true))
}

/// A Courier service's command and environment as `courier serve` would read them.
fn settings_of(name: &str, service: &Yaml) -> Settings {
    let cmd = serve_command();
    // Environment variables become the flags that declare them.
    let by_env: BTreeMap<String, String> = cmd
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_owned();
            Some((env, a.get_long()?.to_owned()))
        })
        .collect();
    let mut args = Vec::new();
    if let Some(env) = service["environment"].as_hash() {
        for (k, v) in env {
            let k = k.as_str().unwrap();
            assert!(k.starts_with("COURIER_"), "{name}: unexpected variable {k}");
            let long = by_env
                .get(k)
                .unwrap_or_else(|| panic!("{name}: `courier serve` reads no {k}"));
            args.push(format!("--{long}"));
            args.push(scalar(v));
        }
    }
    let mut command = strings(&service["command"]);
    if !command.is_empty() {
        assert_eq!(command.remove(0), "serve", "{name}: runs `courier serve`");
    }
    args.extend(command);
    let matches = cmd
        .try_get_matches_from(&args)
        .unwrap_or_else(|e| panic!("{name}: {args:?}: {e}"));
    Settings::from_matches(&matches, &[])
}

#[test]
fn compose_file_matches_the_code() {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    // No secret has a default: compose refuses to start until the operator sets it.
    for var in [
        "POSTGRES_PASSWORD",
        "COURIER_SERVICE_SECRET",
        "COURIER_BROKER_HOOK_SECRET",
        "MINIO_ROOT_PASSWORD",
    ] {
        assert!(!text.contains(&format!("{var}:-")), "{var} has a default");
        assert!(
            text.contains(&format!("${{{var}:?")),
            "{var} is not required"
        );
    }
    assert!(!text.contains("change-me"));
    let doc = merged(&YamlLoader::load_from_str(&text).unwrap()[0]);
    let services = doc["services"].as_hash().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Yaml::as_str).collect();
    for wanted in [
        "postgres",
        "redis",
        "minio",
        "emqx",
        "broker",
        "backend-1",
        "backend-2",
        "media-worker-1",
        "media-worker-2",
    ] {
        assert!(names.contains(wanted), "no service {wanted}");
    }

    let mut roles = BTreeMap::new();
    let mut mqtt_aliases = BTreeSet::new();
    for (name, service) in services {
        let name = name.as_str().unwrap();
        for dep in service["depends_on"].as_hash().into_iter().flatten() {
            let dep = dep.0.as_str().unwrap();
            assert!(names.contains(dep), "{name} depends on unknown {dep}");
        }
        let aliases = &service["networks"]["default"]["aliases"];
        if strings(aliases).iter().any(|a| a == "mqtt") {
            mqtt_aliases.insert(name);
        }
        if service["image"].as_str() != Some("courier:latest") {
            continue;
        }
        let s = settings_of(name, service);
        if s.role != Role::All {
            s.check_split_role()
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
        if s.role != Role::Broker {
            let broker = s.broker.clone().unwrap_or_default();
            assert_eq!(
                broker, "mqtt:1883",
                "{name} reaches the broker by its alias"
            );
        }
        assert!(
            s.redis_url.is_some() || s.role == Role::MediaWorker,
            "{name}: Redis"
        );
        assert!(s.s3().is_some(), "{name}: objects in MinIO");
        roles.insert(name, s);
    }
    let count = |r: Role| roles.values().filter(|s| s.role == r).count();
    assert_eq!(count(Role::Backend), 2, "two backends");
    assert_eq!(count(Role::MediaWorker), 2, "two media workers");
    assert_eq!(count(Role::Broker), 1, "Courier's broker profile");
    assert!(
        roles
            .values()
            .filter(|s| s.role == Role::Backend)
            .all(|s| s.media_jobs == 0),
        "backends leave media jobs to the workers"
    );
    assert_eq!(
        mqtt_aliases,
        BTreeSet::from(["broker", "emqx"]),
        "each broker answers as `mqtt`"
    );
    let profiles = |n: &str| strings(&services[&Yaml::String(n.into())]["profiles"]);
    assert_eq!(profiles("emqx"), ["emqx"]);
    assert_eq!(profiles("broker"), ["courier-broker"]);

    // EMQX: its settings file is mounted, and it calls hooks Courier serves, on the backends,
    // with the fields they read and the secret it is given.
    let emqx = &services[&Yaml::String("emqx".into())];
    let volume = strings(&emqx["volumes"])
        .into_iter()
        .find(|v| v.contains("base.hocon"))
        .expect("EMQX settings mounted");
    let local = volume.split(':').next().unwrap();
    let hocon = std::fs::read_to_string(root().join(local)).expect("EMQX settings file");
    let backends: Vec<&&str> = roles
        .iter()
        .filter(|(_, s)| s.role == Role::Backend)
        .map(|(n, _)| n)
        .collect();
    for hook in ["auth", "acl"] {
        for b in &backends {
            let url = format!("http://{b}:8080/v1/broker/{hook}");
            assert!(hocon.contains(&url), "EMQX calls {url}");
        }
    }
    for field in ["clientid", "username", "password", "topic", "action"] {
        assert!(
            hocon.contains(&format!("{field} = \"${{{field}}}\"")),
            "EMQX sends {field}"
        );
    }
    assert!(hocon.contains("${COURIER_BROKER_HOOK_SECRET}"));
    let emqx_env = emqx["environment"].as_hash().unwrap();
    assert!(emqx_env.contains_key(&Yaml::String("COURIER_BROKER_HOOK_SECRET".into())));
    let hook_secret = roles
        .values()
        .find_map(|s| s.broker_hook_secret.clone())
        .unwrap();
    assert_eq!(
        scalar(&emqx_env[&Yaml::String("COURIER_BROKER_HOOK_SECRET".into())]),
        hook_secret,
        "EMQX presents the backends' hook secret"
    );

    // The image the services run: a multi-stage build of the `courier` binary.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage Dockerfile");
    assert!(dockerfile.contains("--bin courier"));
    assert!(dockerfile.contains("ENTRYPOINT [\"courier\"]"));
    assert!(
        dockerfile.contains("curl"),
        "the health checks in docker-compose.yml use curl"
    );
}
