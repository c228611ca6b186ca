//! SIGTERM drains the registry binary: open event streams end cleanly (their clients resume with
//! `Last-Event-ID` elsewhere) instead of being cut when the shutdown timeout runs out, a request
//! already in flight still gets its whole answer, and the process exits 0.

use std::time::Duration;

use serde_json::{json, Value};
use test_harness::{ChildService, TestIdp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::event_stream::{EventStream, Next};
use crate::helpers::write_acme_config;

/// Reads one response head (up to the blank line) from `tcp`.
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut byte))
            .await
            .expect("the server answers the head in time")
            .unwrap();
        assert_eq!(n, 1, "connection closed inside a response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn sigterm_ends_streams_cleanly_finishes_requests_in_flight_and_exits_zero() {
    let idp = TestIdp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_acme_config(dir.path(), &idp);
    let url = format!("sqlite://{}/r.db", dir.path().display());
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_session-registry"));
    let mut svc = ChildService::start(
        bin,
        &[
            "--bind",
            "127.0.0.1:0",
            "--database-url",
            &url,
            "--config",
            config.to_str().unwrap(),
        ],
        "session-registry",
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let res = http
        .post(format!("{}/v1/sessions", svc.base_url))
        .json(&json!({"id_token": tokens["id_token"], "device": {"id": "laptop", "name": "Laptop", "platform": "linux"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let token = created["session_token"].as_str().unwrap().to_owned();

    // An open event stream...
    let res = http
        .get(format!("{}/v1/events", svc.base_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut stream = EventStream::new(res);
    // ...and a request in flight: the server has read its head (it answered `100 Continue`) and
    // has half its body when the signal comes.
    let body = json!({ "session_token": token }).to_string();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut tcp = TcpStream::connect(svc.addr).await.unwrap();
    tcp.write_all(
        format!(
            "POST /v1/sessions/authenticate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            svc.addr,
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 100 Continue"), "{head}");
    tcp.write_all(first_half.as_bytes()).await.unwrap();

    let pid = svc.child.id().expect("the registry is running").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());

    // The stream ends as a complete response, well before the 10 s shutdown timeout would cut it.
    match stream.next(Duration::from_secs(30)).await {
        Some(Next::Ended) => {}
        other => panic!("the event stream was not ended cleanly on SIGTERM: {other:?}"),
    }
    // The request in flight is answered in full.
    tcp.write_all(second_half.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut raw))
        .await
        .expect("the in-flight request is answered in time")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, json_body) = raw.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{raw}");
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a content-length");
    assert_eq!(json_body.len(), length, "the whole body arrived: {raw}");
    let answer: Value = serde_json::from_str(json_body).unwrap();
    assert_eq!(
        answer["session"]["session_id"],
        created["session"]["session_id"]
    );

    let status = tokio::time::timeout(Duration::from_secs(30), svc.child.wait())
        .await
        .expect("the registry exits after draining")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
