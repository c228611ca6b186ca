//! The shell's side of `lanyard`: `prompt` (the account a directory would use, for PS1), the
//! completion that knows account names, and the manual pages. `prompt` and completion read the
//! profile's on-disk index only; these tests run them with every secret store out of reach.

use std::path::Path;

use serde_json::Value;

use super::profile_dir;
use crate::common::{bin, stack, stderr, Stack};

impl Stack {
    /// `lanyard --profile PROFILE ARGS` in `dir` with no secret store within reach: no vault
    /// passphrase, the Secret Service forced but its bus address pointing nowhere.
    fn without_secrets(&self, profile: &str, dir: &Path, args: &[&str]) -> tokio::process::Command {
        let mut c = self.cmd(profile, args);
        c.current_dir(dir)
            .env("LANYARD_STORE_BACKEND", "secret-service")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                "unix:path=/nonexistent/lanyard-test-bus",
            )
            .env_remove("LANYARD_VAULT_PASSPHRASE");
        c
    }

    async fn prompt_in(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
        let mut all = vec!["prompt"];
        all.extend_from_slice(args);
        let mut c = self.without_secrets("default", dir, &all);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(out.stderr.is_empty(), "{args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }
}

#[tokio::test]
async fn prompt_names_the_account_by_the_rules_of_every_command_without_any_secret_store() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "acme", "bob").await;
    let home = s.home.path();
    let project = home.join("project");
    let deep = project.join("src").join("deep");
    std::fs::create_dir_all(&deep).unwrap();

    // The active account, as `switch` (any process of the profile) last left it.
    let out = s.run("default", &["switch", "alice@acme"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.prompt_in(home, &[], &[]).await, "alice@acme\n");
    let out = s.run("default", &["switch", "bob@acme"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(s.prompt_in(&deep, &[], &[]).await, "bob@acme\n");
    let mut pin = s.cmd("default", &["pin", "alice@acme"]);
    let out = pin.current_dir(&project).output().await.unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // From here no command that opens the store or reads the config can run: the vault is
    // garbage and the config file does not parse. `prompt` needs neither.
    std::fs::write(profile_dir(home).join("vault.bin"), b"not a vault").unwrap();
    std::fs::write(home.join("config.toml"), "no_such_key = 1\n").unwrap();
    let out = s
        .without_secrets("default", &deep, &["token"])
        .output()
        .await
        .unwrap();
    assert_ne!(
        out.status.code(),
        Some(0),
        "the control: `token` cannot run here"
    );

    // A pin in a parent directory wins over the active account…
    assert_eq!(s.prompt_in(&deep, &[], &[]).await, "alice@acme\n");
    assert_eq!(
        s.prompt_in(
            &deep,
            &[
                "--format",
                "{user} in {tenant} ({chosen_by}, {profile}) {{x}}"
            ],
            &[]
        )
        .await,
        "alice in acme (pin, default) {x}\n"
    );
    // …LANYARD_ACCOUNT over the pin, and --account over both (an index or prefix as anywhere).
    assert_eq!(
        s.prompt_in(
            &deep,
            &["--format", "{account} {chosen_by}"],
            &[("LANYARD_ACCOUNT", "bob@acme")]
        )
        .await,
        "bob@acme flag\n"
    );
    assert_eq!(
        s.prompt_in(
            &deep,
            &["--account", "bo"],
            &[("LANYARD_ACCOUNT", "alice@acme")]
        )
        .await,
        "bob@acme\n"
    );
    // Outside the pinned tree: the active account.
    assert_eq!(
        s.prompt_in(home, &["--format", "{email}"], &[]).await,
        "bob@acme.example\n"
    );
    let json: Value = serde_json::from_str(&s.prompt_in(&deep, &["--json"], &[]).await).unwrap();
    assert_eq!(json["account"], "alice@acme");
    assert_eq!(json["chosen_by"], "pin");

    // An account the profile does not have is nothing at all (and exit 0), as is a bad
    // LANYARD_* value; --verbose says why, on stderr only.
    assert_eq!(
        s.prompt_in(&deep, &[], &[("LANYARD_ACCOUNT", "zed")]).await,
        ""
    );
    assert_eq!(
        s.prompt_in(&deep, &[], &[("LANYARD_REFRESH_MARGIN_SECS", "soon")])
            .await,
        ""
    );
    let out = s
        .without_secrets("default", &deep, &["prompt", "--verbose"])
        .env("LANYARD_ACCOUNT", "zed")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("no account matches 'zed'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn prompt_prints_nothing_and_exits_0_without_an_account_or_with_a_damaged_index() {
    let home = tempfile::tempdir().unwrap();
    let prompt = |args: &[&str]| {
        let mut c = assert_cmd::Command::new(bin());
        c.arg("prompt")
            .args(args)
            .current_dir(home.path())
            .env("LANYARD_HOME", home.path())
            .env("LANYARD_STORE_BACKEND", "vault")
            .env_remove("LANYARD_VAULT_PASSPHRASE")
            .env_remove("LANYARD_ACCOUNT")
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        c
    };
    // A profile that never signed in.
    prompt(&[]).assert().success().stdout("").stderr("");
    prompt(&["--json"])
        .assert()
        .success()
        .stdout("null\n")
        .stderr("");
    let verbose = prompt(&["--verbose"]).assert().success().stdout("");
    let said = String::from_utf8_lossy(&verbose.get_output().stderr).into_owned();
    assert!(said.contains("no account is signed in"), "{said}");
    // An index that does not parse, and a profile name that is not one.
    let dir = home.path().join("data/profiles/default");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("accounts.json"), "{ not json").unwrap();
    prompt(&[]).assert().success().stdout("").stderr("");
    prompt(&["--profile", "../etc"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    // A format with an unknown placeholder is a mistake made once, while writing the prompt:
    // --verbose shows it.
    prompt(&["--format", "{acount}"])
        .assert()
        .success()
        .stdout("")
        .stderr("");
    let verbose = prompt(&["--format", "{acount}", "--verbose"])
        .assert()
        .code(2);
    let said = String::from_utf8_lossy(&verbose.get_output().stderr).into_owned();
    assert!(said.contains("{account}"), "{said}");
}

/// `COMPLETE=SHELL lanyard -- lanyard WORDS`, the call a completion script makes on Tab, with no
/// secret store within reach; its stdout.
async fn complete_raw(s: &Stack, shell: &str, words: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = tokio::process::Command::new(bin());
    c.args(["--", "lanyard"]).args(words);
    s.isolate(&mut c)
        .env("COMPLETE", shell)
        .env("LANYARD_STORE_BACKEND", "secret-service")
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/lanyard-test-bus",
        )
        .env_remove("LANYARD_VAULT_PASSPHRASE");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().await.unwrap();
    assert!(out.status.success(), "{words:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The candidates alone, flags left out (fish writes `value\thelp`, bash one value a line).
async fn complete(s: &Stack, shell: &str, words: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    complete_raw(s, shell, words, env)
        .await
        .lines()
        .map(|l| l.split('\t').next().unwrap_or("").to_owned())
        // An empty word is also offered the flags: the tests look at values.
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .collect()
}

#[tokio::test]
async fn completion_offers_the_profiles_account_names_from_its_index_alone() {
    let s = stack().await;
    s.login("default", "acme", "alice").await;
    s.login("default", "globex", "carol").await;
    s.login("work", "acme", "bob").await;
    std::fs::write(profile_dir(s.home.path()).join("vault.bin"), b"not a vault").unwrap();

    assert_eq!(
        complete(&s, "fish", &["switch", "a"], &[]).await,
        ["alice@acme"]
    );
    assert_eq!(
        complete(&s, "fish", &["pin", ""], &[]).await,
        ["alice@acme", "carol@globex"]
    );
    assert_eq!(
        complete(
            &s,
            "bash",
            &["token", "--account", "c"],
            &[("_CLAP_COMPLETE_INDEX", "3")]
        )
        .await,
        ["carol@globex"]
    );
    // The profile named on the line being completed, or in LANYARD_PROFILE.
    assert_eq!(
        complete(
            &s,
            "fish",
            &["--profile", "work", "logout", "--account", ""],
            &[]
        )
        .await,
        ["bob@acme"]
    );
    assert_eq!(
        complete(
            &s,
            "fish",
            &["status", "--account", ""],
            &[("LANYARD_PROFILE", "work")]
        )
        .await,
        ["bob@acme"]
    );
    // Subcommands come from the same definition.
    let subcommands = complete(&s, "fish", &["pr"], &[]).await;
    assert_eq!(subcommands, ["prompt"]);
    // The help beside a name is its email, and says which is active.
    let text = complete_raw(&s, "fish", &["switch", ""], &[]).await;
    assert!(
        text.contains("carol@globex\tcarol@globex.example (active)"),
        "{text}"
    );

    // A real bash, with the script `lanyard completions bash` prints, completing `switch c`.
    let out = s.run("default", &["completions", "bash"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let script = String::from_utf8(out.stdout).unwrap();
    let script_file = s.home.path().join("lanyard.bash");
    std::fs::write(&script_file, &script).unwrap();
    let function = script
        .lines()
        .find_map(|l| {
            l.strip_prefix("_clap_complete_")
                .map(|f| f.split('(').next().unwrap_or(""))
        })
        .map(|f| format!("_clap_complete_{f}"))
        .unwrap_or_else(|| panic!("no completion function in:\n{script}"));
    let mut c = tokio::process::Command::new("bash");
    c.arg("-c").arg(format!(
        "source '{}'; COMP_WORDS=(lanyard switch c); COMP_CWORD=2; COMP_LINE='lanyard switch c'; \
         COMP_POINT=${{#COMP_LINE}}; COMP_TYPE=9; {function} lanyard c switch; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script_file.display()
    ));
    let out = s
        .isolate(&mut c)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin().parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "carol@globex",
        "{}",
        stderr(&out)
    );
    // The self-contained script is still there for those who want a file.
    let out = s.run("default", &["completions", "zsh", "--static"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("#compdef lanyard"));
}

#[tokio::test]
async fn man_prints_the_page_or_writes_one_per_subcommand() {
    let s = stack().await;
    let out = s.run("default", &["man"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains(".TH lanyard 1"), "{page}");
    for sub in [
        "login",
        "switch",
        "prompt",
        "pin",
        "exec",
        "completions",
        "man",
    ] {
        // The SUBCOMMANDS section names each page (roff escapes the hyphen).
        assert!(
            page.contains(&format!("lanyard\\-{sub}(1)")),
            "{sub}: {page}"
        );
    }
    assert!(
        page.contains("Exit status"),
        "the exit codes are in the page"
    );
    let dir = s.home.path().join("man1");
    let out = s
        .run("default", &["man", "--dir", dir.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "lanyard.1",
        "lanyard-prompt.1",
        "lanyard-switch.1",
        "lanyard-config-get.1",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let prompt_page = std::fs::read_to_string(dir.join("lanyard-prompt.1")).unwrap();
    assert!(prompt_page.contains("LANYARD_ACCOUNT"), "{prompt_page}");
}
