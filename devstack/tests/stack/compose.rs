//! docker-compose.yml and the Dockerfile, checked by their own means: no Docker engine runs
//! here, so the files are parsed and held against the workspace — real images, binaries that
//! exist and are built and copied, command lines the services' own flag parsers accept, the
//! documented ports, dependencies that name services, and a registry config its own loader reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// Public images the topology may pull: they exist on Docker Hub as official images.
const KNOWN_IMAGES: &[&str] = &[
    "postgres:16",
    "rust:1-bookworm",
    "debian:bookworm-slim",
    "nats:2.9",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Compose {
    // No top-level `name` and no `configs`: docker-compose 1.x refuses the first and ignores
    // the second outside a swarm (deny_unknown_fields turns either into a failure here).
    services: BTreeMap<String, Service>,
    #[serde(default)]
    volumes: BTreeMap<String, Option<serde_norway::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    image: Option<String>,
    build: Option<Build>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<String>,
    network_mode: Option<String>,
    #[serde(default)]
    depends_on: BTreeMap<String, DependsOn>,
    #[serde(default)]
    volumes: Vec<String>,
    healthcheck: Option<serde_norway::Value>,
    #[serde(default)]
    profiles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Build {
    context: String,
    #[serde(default = "default_dockerfile")]
    dockerfile: String,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DependsOn {
    condition: String,
}

fn compose() -> Compose {
    let path = root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).expect("docker-compose.yml at the repo root");
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Binary name → package, for every binary of every workspace member.
fn workspace_binaries() -> BTreeMap<String, String> {
    #[derive(Deserialize)]
    struct Root {
        workspace: Workspace,
    }
    #[derive(Deserialize)]
    struct Workspace {
        members: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Manifest {
        package: Package,
        #[serde(default)]
        bin: Vec<Bin>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
    }
    #[derive(Deserialize)]
    struct Bin {
        name: String,
    }
    let root_manifest: Root =
        toml::from_str(&std::fs::read_to_string(root().join("Cargo.toml")).unwrap()).unwrap();
    let mut bins = BTreeMap::new();
    for member in root_manifest.workspace.members {
        let dir = root().join(&member);
        let manifest: Manifest =
            toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        let name = manifest.package.name;
        for bin in &manifest.bin {
            bins.insert(bin.name.clone(), name.clone());
        }
        if manifest.bin.is_empty() && dir.join("src/main.rs").exists() {
            bins.insert(name.clone(), name.clone());
        }
        if let Ok(entries) = std::fs::read_dir(dir.join("src/bin")) {
            for entry in entries.flatten() {
                if let Some(stem) = entry.path().file_stem().and_then(|s| s.to_str()) {
                    bins.insert(stem.to_owned(), name.clone());
                }
            }
        }
    }
    bins
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<std::net::SocketAddr>().unwrap().port()
}

#[test]
fn the_binaries_are_found_in_the_workspace() {
    // The check below is only as good as this list: it must see the real service binaries.
    let bins = workspace_binaries();
    for (bin, package) in [
        ("mock-idp", "mock-idp"),
        ("session-registry", "session-registry"),
        ("devstack", "devstack"),
    ] {
        assert_eq!(bins.get(bin).map(String::as_str), Some(package), "{bins:?}");
    }
}

#[test]
fn every_service_is_a_real_image_or_a_build_of_workspace_binaries() {
    let compose = compose();
    let bins = workspace_binaries();
    assert_eq!(
        compose
            .services
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [
            "mock-idp",
            "nats",
            "postgres",
            "registry-a",
            "registry-b",
            "session-registry"
        ]
    );
    for (name, service) in &compose.services {
        match (&service.image, &service.build) {
            (Some(image), None) => assert!(
                KNOWN_IMAGES.contains(&image.as_str()),
                "{name}: image {image} is not one of {KNOWN_IMAGES:?}"
            ),
            (None, Some(build)) => {
                let context = root().join(&build.context);
                let dockerfile_path = context.join(&build.dockerfile);
                let dockerfile = std::fs::read_to_string(&dockerfile_path).unwrap_or_else(|e| {
                    panic!("{name}: {} is needed: {e}", dockerfile_path.display())
                });
                let steps = instructions(&dockerfile);
                let binary = service
                    .command
                    .first()
                    .unwrap_or_else(|| panic!("{name}: a command naming its binary"));
                let package = bins
                    .get(binary)
                    .unwrap_or_else(|| panic!("{name}: {binary} is not a workspace binary"));
                assert!(
                    steps.iter().any(|s| s.starts_with("RUN cargo build")
                        && s.contains("--release")
                        && s.split_whitespace()
                            .collect::<Vec<_>>()
                            .windows(2)
                            .any(|w| w == ["-p", package.as_str()])),
                    "{name}: the Dockerfile builds package {package}"
                );
                assert!(
                    steps.iter().any(|s| s.starts_with("COPY --from=")
                        && s.contains(&format!("/target/release/{binary} "))
                        && s.ends_with(&format!("/usr/local/bin/{binary}"))),
                    "{name}: the Dockerfile copies {binary} onto the PATH"
                );
            }
            _ => panic!("{name}: exactly one of image and build"),
        }
    }
}

#[test]
fn the_dockerfile_is_a_multi_stage_build_from_real_images() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let steps = instructions(&dockerfile);
    let froms: Vec<Vec<&str>> = steps
        .iter()
        .filter(|s| s.starts_with("FROM "))
        .map(|s| s.split_whitespace().collect())
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert_eq!(froms[0], ["FROM", "rust:1-bookworm", "AS", "build"]);
    assert_eq!(froms[1], ["FROM", "debian:bookworm-slim"]);
    for from in &froms {
        assert!(KNOWN_IMAGES.contains(&from[1]), "{from:?}");
    }
    for step in steps.iter().filter(|s| s.starts_with("COPY --from=")) {
        assert!(step.starts_with("COPY --from=build "), "{step}");
    }
    assert!(
        steps.iter().any(|s| s.contains("--locked")),
        "the build uses the committed Cargo.lock"
    );
    // The context is the workspace: build output (many GB) must stay out of it.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target"), "{ignore}");
    assert!(root().join("Cargo.lock").exists());
}

#[test]
fn dependencies_networks_and_configs_name_what_exists() {
    let compose = compose();
    for (name, service) in &compose.services {
        for (dep, how) in &service.depends_on {
            assert!(
                compose.services.contains_key(dep),
                "{name} depends on {dep}"
            );
            assert!(
                ["service_started", "service_healthy"].contains(&how.condition.as_str()),
                "{name}: {}",
                how.condition
            );
            if how.condition == "service_healthy" {
                assert!(
                    compose.services[dep].healthcheck.is_some(),
                    "{dep} has a healthcheck"
                );
            }
        }
        if let Some(mode) = &service.network_mode {
            let other = mode
                .strip_prefix("service:")
                .unwrap_or_else(|| panic!("{name}: network_mode {mode}"));
            assert!(compose.services.contains_key(other), "{name}: {mode}");
            assert!(service.ports.is_empty(), "{name}: ports belong to {other}");
        }
        for volume in &service.volumes {
            let source = volume.split(':').next().unwrap();
            if let Some(path) = source.strip_prefix("./") {
                // A bind mount of a file in the repository.
                assert!(root().join(path).is_file(), "{name}: {source} exists");
            } else {
                assert!(
                    compose.volumes.contains_key(source),
                    "{name}: volume {source}"
                );
            }
        }
    }
}

#[test]
fn the_ports_and_urls_are_devstacks_documented_ones() {
    let compose = compose();
    let idp_port = port_of(devstack::options::DEFAULT_IDP_BIND);
    let registry_port = port_of(devstack::options::DEFAULT_REGISTRY_BIND);
    assert_eq!((idp_port, registry_port), (8700, 8701));

    let idp = &compose.services["mock-idp"];
    let idp_settings = mock_idp::Settings::try_parse_from(&idp.command)
        .unwrap_or_else(|e| panic!("mock-idp's own flags: {e}"));
    assert_eq!(idp_settings.bind.port(), idp_port);
    let idp_url = idp_settings
        .public_url
        .expect("a public URL: issuers must not say 0.0.0.0")
        .to_string();
    assert_eq!(
        idp_url.trim_end_matches('/'),
        format!("http://127.0.0.1:{idp_port}")
    );

    let registry = &compose.services["session-registry"];
    let registry_settings = session_registry::Settings::try_parse_from(&registry.command)
        .unwrap_or_else(|e| panic!("session-registry's own flags: {e}"));
    assert_eq!(registry_settings.bind.port(), registry_port);
    assert_eq!(
        registry_settings
            .public_url
            .map(|u| u.to_string().trim_end_matches('/').to_owned()),
        Some(format!("http://127.0.0.1:{registry_port}"))
    );
    assert!(registry_settings.migrate, "Postgres is migrated at start");
    // Neither binary has a default admin token off loopback: the file passes both explicitly.
    assert!(
        registry_settings.admin_token.is_some(),
        "the registry's admin token is set in the file"
    );
    assert!(
        idp.command.iter().any(|a| a == "--admin-token"),
        "the IdP's admin token is set in the file: {:?}",
        idp.command
    );

    // The registry runs in the IdP's network namespace, so the IdP publishes both ports, each
    // on the host's loopback at the same number as inside.
    assert_eq!(
        registry.network_mode.as_deref(),
        Some("service:mock-idp"),
        "127.0.0.1 means the same in both containers"
    );
    let published: BTreeSet<String> = idp.ports.iter().cloned().collect();
    assert_eq!(
        published,
        BTreeSet::from([
            format!("127.0.0.1:{idp_port}:{idp_port}"),
            format!("127.0.0.1:{registry_port}:{registry_port}"),
            "127.0.0.1:8711:8711".to_owned(),
            "127.0.0.1:8712:8712".to_owned(),
        ])
    );
    // The IdP's default back-channel logout target is the registry's published address.
    assert_eq!(
        mock_idp::config::DEFAULT_REGISTRY_URL,
        format!("http://127.0.0.1:{registry_port}")
    );
    assert!(
        compose.services["postgres"].ports.is_empty(),
        "Postgres stays internal"
    );
}

#[test]
fn the_registry_uses_the_postgres_service_and_a_config_its_loader_reads() {
    let compose = compose();
    let registry = &compose.services["session-registry"];
    let settings = session_registry::Settings::try_parse_from(&registry.command).unwrap();
    let url = url::Url::parse(&settings.database_url.expect("a database URL")).unwrap();
    assert_eq!(url.scheme(), "postgres");
    let host = url.host_str().unwrap();
    assert!(
        compose.services.contains_key(host),
        "the database host {host} is a service"
    );
    assert_eq!(
        registry.depends_on.get(host).map(|d| d.condition.as_str()),
        Some("service_healthy")
    );
    let pg = &compose.services[host];
    assert_eq!(
        pg.environment.get("POSTGRES_USER").map(String::as_str),
        Some(url.username())
    );
    assert_eq!(
        pg.environment.get("POSTGRES_PASSWORD").map(String::as_str),
        url.password()
    );
    assert_eq!(
        pg.environment.get("POSTGRES_DB").map(String::as_str),
        Some(url.path().trim_start_matches('/'))
    );

    // The mounted config file, read by the registry's own loader, registers what devstack does.
    // A bind mount, which both compose generations honour (docker-compose 1.x ignores
    // `configs` outside a swarm).
    let config_path = settings.config.expect("--config");
    let source = registry
        .volumes
        .iter()
        .find_map(|v| {
            let mut parts = v.split(':');
            let (source, target) = (parts.next()?, parts.next()?);
            (Path::new(target) == config_path).then(|| source.to_owned())
        })
        .expect("the --config file is a mounted file");
    let file = root().join(source.strip_prefix("./").expect("a file in the repository"));
    let config = session_registry::config::RegistryConfig::from_file(&file).unwrap();
    let idp = mock_idp::IdpConfig::defaults();
    let expected = devstack::stack::registry_tenants(&idp, "http://127.0.0.1:8700");
    let summary = |t: &session_registry::config::TenantConfig| {
        use secrecy::ExposeSecret;
        (
            t.slug.clone(),
            t.issuer.clone(),
            t.audiences.clone(),
            t.api_key.as_ref().map(|k| k.expose_secret().to_owned()),
        )
    };
    assert_eq!(
        config.tenants.iter().map(summary).collect::<Vec<_>>(),
        expected.iter().map(summary).collect::<Vec<_>>()
    );
}

#[test]
fn both_services_have_healthchecks_their_binaries_run_and_the_registry_waits_for_them() {
    let compose = compose();
    for (service, binary, path) in [
        ("mock-idp", "mock-idp", "/healthz"),
        ("session-registry", "session-registry", "/readyz"),
    ] {
        let check = compose.services[service]
            .healthcheck
            .as_ref()
            .unwrap_or_else(|| panic!("{service} has a healthcheck"));
        let test: Vec<String> = check["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{service}: healthcheck.test is a list"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        // The image has no shell tools: the service's own binary asks its own endpoint.
        assert_eq!(
            test[..3],
            ["CMD", binary, "healthcheck"],
            "{service}: {test:?}"
        );
        let args = lanyard_service::HealthcheckArgs::try_parse_from(
            std::iter::once(binary.to_owned()).chain(test[3..].iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("{service}: the healthcheck's own flags: {e}"));
        let url = args.url.expect("a URL").to_string();
        assert!(url.ends_with(path), "{service}: {url}");
    }
    let registry = &compose.services["session-registry"];
    for dep in ["postgres", "mock-idp"] {
        assert_eq!(
            registry.depends_on[dep].condition, "service_healthy",
            "the registry starts once {dep} is healthy"
        );
    }
}

#[test]
fn the_scale_profile_runs_two_registry_processes_on_nats_with_shared_keys() {
    let compose = compose();
    let scale: Vec<&str> = compose
        .services
        .iter()
        .filter(|(_, s)| s.profiles.iter().any(|p| p == "scale"))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(scale, ["nats", "registry-a", "registry-b"]);
    let settings: Vec<session_registry::Settings> = ["registry-a", "registry-b"]
        .iter()
        .map(|name| {
            session_registry::Settings::try_parse_from(&compose.services[*name].command)
                .unwrap_or_else(|e| panic!("{name}'s own flags: {e}"))
        })
        .collect();
    let (a, b) = (&settings[0], &settings[1]);
    assert_eq!(
        a.events,
        session_registry::config::EventsSetting::Nats("nats://nats:4222".into())
    );
    assert_eq!(a.events, b.events);
    assert_eq!(a.deployment, b.deployment, "one stream");
    assert_eq!(a.database_url, b.database_url, "one database");
    assert_eq!(a.public_url, b.public_url, "one issuer of session JWTs");
    use secrecy::ExposeSecret;
    let kek = |s: &session_registry::Settings| {
        s.key_encryption_key
            .as_ref()
            .expect("shared signing keys")
            .expose_secret()
            .to_owned()
    };
    assert_eq!(kek(a), kek(b));
    session_registry::shared_keys::KeyEncryptionKey::from_base64(
        a.key_encryption_key.as_ref().unwrap(),
    )
    .expect("a 32-byte key");
    assert_ne!((a.bind.port(), b.bind.port()), (8711, 8711));
    assert!(compose.services["nats"].command.contains(&"-js".to_owned()));
}
