//! The operator's command line for what the admin API and console do: changing, switching off
//! and on and rotating the secret of clients; switching users off and on, setting their roles,
//! listing and ending their sessions. Run as a real process, like tests/it/cli.rs.

use portcullis::store::{self, BrowserSession};
use serde_json::Value;

use crate::cli::{stderr, stdout, Cli};

fn json_of(o: &std::process::Output) -> Value {
    serde_json::from_str(stdout(o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test]
async fn client_update_disable_enable_and_rotate_secret() {
    let cli = Cli::new().await;
    let created = cli.run(&[
        "client",
        "create",
        "--name",
        "demo",
        "--redirect-uri",
        "https://demo.example.com/cb",
        "--grant",
        "authorization_code",
        "--grant",
        "client_credentials",
        "--json",
    ]);
    assert!(created.status.success(), "{}", stderr(&created));
    let created = json_of(&created);
    let id = created["client_id"].as_str().unwrap().to_string();
    let secret = created["client_secret"].as_str().unwrap().to_string();

    // Update: each option replaces that field; the answer names what changed.
    let out = cli.run(&[
        "client",
        "update",
        &id,
        "--name",
        "Demo 2",
        "--redirect-uri",
        "https://demo.example.com/v2/cb",
        "--require-mfa",
        "true",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let updated = json_of(&out);
    assert_eq!(
        updated["changed"],
        serde_json::json!(["name", "redirect_uris", "require_mfa"])
    );
    assert!(updated.get("client_secret").is_none(), "the secret stays");
    let text = cli.run(&["client", "update", &id, "--id-token-alg", "ES256"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).contains("changed: id_token_signed_response_alg"),
        "{}",
        stdout(&text)
    );
    assert!(
        stdout(&text).contains("database.client_cache_secs"),
        "{}",
        stdout(&text)
    );
    let shown = json_of(&cli.run(&["client", "show", &id, "--json"]));
    assert_eq!(shown["name"], "Demo 2");
    assert_eq!(
        shown["redirect_uris"],
        serde_json::json!(["https://demo.example.com/v2/cb"])
    );
    assert_eq!(shown["id_token_signed_response_alg"], "ES256");
    assert_eq!(shown["require_mfa"], true);
    let back = cli.run(&[
        "client",
        "update",
        &id,
        "--id-token-alg",
        "default",
        "--json",
    ]);
    assert_eq!(
        json_of(&back)["changed"],
        serde_json::json!(["id_token_signed_response_alg"])
    );

    // Refused input: exit 2, the words of `client create`, nothing written.
    for (args, words) in [
        (
            vec![
                "client",
                "update",
                &id,
                "--redirect-uri",
                "http://evil.example.com/cb",
            ],
            "http",
        ),
        (
            vec!["client", "update", &id, "--grant", "password"],
            "unknown grant \"password\"",
        ),
        (vec!["client", "update", &id], "nothing to change"),
        (
            vec!["client", "update", "nope", "--name", "x"],
            "portcullis client list",
        ),
        (
            vec!["client", "update", &id, "--require-mfa", "maybe"],
            "maybe",
        ),
        (vec!["client", "disable", "nope"], "portcullis client list"),
        (
            vec!["client", "rotate-secret", "nope"],
            "portcullis client list",
        ),
    ] {
        let out = cli.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(words), "{args:?}: {}", stderr(&out));
    }
    let shown = json_of(&cli.run(&["client", "show", &id, "--json"]));
    assert_eq!(
        shown["redirect_uris"],
        serde_json::json!(["https://demo.example.com/v2/cb"])
    );

    // Disable and enable: list and show say so.
    let out = cli.run(&["client", "disable", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("client enable"), "{}", stdout(&out));
    let list = stdout(&cli.run(&["client", "list"]));
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("disabled"), "{list}");
    assert!(stdout(&cli.run(&["client", "show", &id])).contains("disabled:                   yes"));
    assert_eq!(
        json_of(&cli.run(&["client", "show", &id, "--json"]))["disabled"],
        true
    );
    let out = cli.run(&["client", "enable", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = stdout(&cli.run(&["client", "list"]));
    assert!(list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap()
        .contains("active"));

    // A new secret, printed once; only its hash is stored.
    let out = cli.run(&["client", "rotate-secret", &id, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated = json_of(&out);
    assert_eq!(rotated["client_id"], id.as_str());
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let stored = store::open(&cli.db, 1).await.unwrap();
    let client = stored.get_client(&id).await.unwrap().unwrap();
    assert_eq!(
        client.secret_hash.as_deref(),
        Some(portcullis::random::hash_secret(new_secret).as_str())
    );

    // Every change is audited with the command line as the actor.
    let events = stored
        .query_audit(&portcullis::store::AuditQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    for kind in [
        "client.updated",
        "client.disabled",
        "client.enabled",
        "client.secret_rotated",
    ] {
        let e = events
            .iter()
            .find(|e| e.kind == kind)
            .unwrap_or_else(|| panic!("{kind}"));
        assert_eq!(e.actor.as_deref(), Some("cli"));
        assert_eq!(e.client_id.as_deref(), Some(id.as_str()));
    }

    // A public client has no secret to rotate.
    let public = json_of(&cli.run(&[
        "client",
        "create",
        "--name",
        "spa",
        "--public",
        "--redirect-uri",
        "https://spa.example.com/cb",
        "--json",
    ]));
    let out = cli.run(&[
        "client",
        "rotate-secret",
        public["client_id"].as_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no secret to rotate"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn user_disable_enable_set_roles_and_sessions() {
    let cli = Cli::new().await;
    let out = cli.run_with_stdin(
        &[
            "user",
            "create",
            "--email",
            "ada@example.org",
            "--password-stdin",
        ],
        "correct horse battery staple\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = store::open(&cli.db, 1).await.unwrap();
    let user = stored
        .find_user_by_email(&portcullis::store::User::email_key("ada@example.org"))
        .await
        .unwrap()
        .unwrap();

    // Roles: replaced as a whole, each a configured role.
    let out = cli.run(&[
        "user",
        "set-roles",
        "--email",
        "ada@example.org",
        "--role",
        "admin",
        "--role",
        "expert",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("admin, expert"), "{}", stdout(&out));
    let roles = stored.get_user(user.id).await.unwrap().unwrap().roles;
    assert_eq!(roles, ["admin", "expert"]);
    let out = cli.run(&[
        "user",
        "set-roles",
        "--email",
        "ada@example.org",
        "--role",
        "wizard",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("configured roles"),
        "{}",
        stderr(&out)
    );
    let out = cli.run(&["user", "set-roles", "--email", "ada@example.org"]);
    assert_eq!(out.status.code(), Some(2), "a role or --no-roles is needed");
    let out = cli.run(&[
        "user",
        "set-roles",
        "--email",
        "ada@example.org",
        "--no-roles",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stored
        .get_user(user.id)
        .await
        .unwrap()
        .unwrap()
        .roles
        .is_empty());
    let out = cli.run(&["user", "disable", "--email", "nobody@example.org"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("portcullis user list"),
        "{}",
        stderr(&out)
    );

    // Two browser sessions, as a sign-in would leave them.
    let now = chrono::Utc::now().timestamp();
    for n in 0..2 {
        stored
            .create_session(
                &BrowserSession {
                    id_hash: format!("hash-{n}"),
                    sid: format!("sid-{n}"),
                    user_id: user.id,
                    auth_time: now,
                    amr: vec!["pwd".into()],
                    acr: Some("pwd".into()),
                    user_agent: Some("Firefox".into()),
                    ip: Some("192.0.2.7".into()),
                    created_at: now,
                    last_seen_at: now + n,
                    expires_at: now + 3600,
                    revoked_at: None,
                },
                &[],
            )
            .await
            .unwrap();
    }
    let out = cli.run(&["user", "sessions", "--email", "ada@example.org", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sessions = json_of(&out);
    let ids: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sid-1", "sid-0"], "most recently active first");
    assert!(!stdout(&out).contains("hash-"), "never the cookie's hash");
    let table = stdout(&cli.run(&["user", "sessions", "--email", "ada@example.org"]));
    assert!(
        table.contains("sid-0") && table.contains("192.0.2.7") && table.contains("Firefox"),
        "{table}"
    );

    // Disabling signs the user out everywhere; enabling lets them back in.
    let out = cli.run(&["user", "disable", "--email", "ada@example.org"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("signed out everywhere"),
        "{}",
        stdout(&out)
    );
    assert!(stored.get_user(user.id).await.unwrap().unwrap().disabled);
    assert!(
        stdout(&cli.run(&["user", "sessions", "--email", "ada@example.org"]))
            .contains("no live session")
    );
    let out = cli.run(&["user", "enable", "--email", "ada@example.org"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stored.get_user(user.id).await.unwrap().unwrap().disabled);

    // Ending the sessions of a user one by one, like sign-outs.
    stored
        .create_session(
            &BrowserSession {
                id_hash: "hash-2".into(),
                sid: "sid-2".into(),
                user_id: user.id,
                auth_time: now,
                amr: vec!["pwd".into()],
                acr: None,
                user_agent: None,
                ip: None,
                created_at: now,
                last_seen_at: now,
                expires_at: now + 3600,
                revoked_at: None,
            },
            &[],
        )
        .await
        .unwrap();
    let out = cli.run(&["user", "revoke-sessions", "--email", "ada@example.org"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("ended 1 session(s)"),
        "{}",
        stdout(&out)
    );
    assert!(stored.session_by_sid("sid-2").await.unwrap().is_none());

    let events = stored
        .query_audit(&portcullis::store::AuditQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    let ended = events.iter().find(|e| e.kind == "session.ended").unwrap();
    assert_eq!(ended.actor.as_deref(), Some("cli"));
    assert_eq!(ended.detail["sid"], "sid-2");
    let changed = events
        .iter()
        .find(|e| e.kind == "user.roles_changed")
        .unwrap();
    assert_eq!(changed.actor.as_deref(), Some("cli"));
}
