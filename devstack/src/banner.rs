//! The banner printed on stderr once the stack is ready: where everything is, who can log in,
//! which tokens open the admin APIs, and what to run next. Stdout carries only readiness lines.

use std::fmt::Write;

use crate::options::Database;
use crate::stack::{tenant_api_key, Devstack};

/// Width of the label column.
const LABEL: usize = 20;

pub fn render(stack: &Devstack) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_banner(&mut out, stack);
    out
}

fn row(out: &mut String, label: &str, value: &str) -> std::fmt::Result {
    writeln!(out, "{label:<LABEL$}{value}")
}

fn write_banner(out: &mut String, stack: &Devstack) -> std::fmt::Result {
    let idp = stack.idp_url();
    let registry = stack.registry_url();
    let slugs: Vec<&str> = stack.tenants().iter().map(|t| t.slug.as_str()).collect();

    writeln!(out)?;
    writeln!(out, "Lanyard devstack is ready.")?;
    writeln!(out)?;
    row(out, "  mock IdP", idp)?;
    for (i, slug) in slugs.iter().enumerate() {
        let label = if i == 0 { "    issuers" } else { "" };
        row(out, label, &stack.issuer(slug))?;
    }
    row(out, "    admin token", mock_idp::config::DEV_ADMIN_TOKEN)?;
    row(out, "  session registry", registry)?;
    row(
        out,
        "    admin token",
        session_registry::config::DEV_ADMIN_TOKEN,
    )?;
    for (i, slug) in slugs.iter().enumerate() {
        let label = if i == 0 { "    tenant API keys" } else { "" };
        row(out, label, &format!("{slug}: {}", tenant_api_key(slug)))?;
    }
    let database = match stack.database() {
        Database::Sqlite(path) => format!("SQLite, {}", path.display()),
        Database::Postgres(url) => format!("Postgres, {url}"),
    };
    row(out, "    database", &database)?;
    row(
        out,
        "  data folder",
        &format!(
            "{} (signing keys, database; delete it to start afresh)",
            stack.data_dir().display()
        ),
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "  Dev users, password `{}`:",
        mock_idp::config::DEV_PASSWORD
    )?;
    for tenant in stack.tenants() {
        let users: Vec<&str> = tenant.users.iter().map(|u| u.username.as_str()).collect();
        row(
            out,
            &format!("    {}", tenant.slug.as_str()),
            &users.join(", "),
        )?;
    }
    writeln!(
        out,
        "    (the same username in two tenants is two different accounts)"
    )?;
    writeln!(
        out,
        "  Clients: `lanyard-cli` (public, PKCE S256), `lanyard-registry` (secret `{}`)",
        mock_idp::config::DEV_REGISTRY_SECRET
    )?;
    writeln!(out)?;
    writeln!(out, "  Try:")?;
    for slug in &slugs {
        writeln!(out, "    lanyard login --tenant {slug}")?;
    }
    writeln!(out, "    curl {idp}/acme/.well-known/openid-configuration")?;
    writeln!(out, "    curl {registry}/readyz")?;
    writeln!(
        out,
        "    curl -H 'Authorization: Bearer {}' {registry}/v1/admin/tenants/acme/sessions",
        tenant_api_key("acme")
    )?;
    writeln!(out, "    cargo nextest run --workspace")?;
    writeln!(out)?;
    writeln!(out, "  Ctrl-C stops both.")?;
    Ok(())
}
