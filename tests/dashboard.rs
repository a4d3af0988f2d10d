//! The dashboard: its files served locked down on the one port, the grpc-web calls it
//! makes allowed from its own origin and refused from any other, `GetCaller` (how it learns
//! its key's role), and the page itself in headless Chromium against a real server with the
//! simulated agent (`clients/web/test/browser.mjs`: live workflow nodes, a task submitted
//! from the form, an approval allowed from the inbox, a cancel, a server restart, keys).

mod common;

use std::{path::Path, process::Command};

use claude_swarm::{
    api::{
        auth::{ApiKey, Keys},
        dashboard::CONTENT_SECURITY_POLICY,
        server::ServerOptions,
    },
    pb::{self, caller_service_client::CallerServiceClient},
};
use common::{BIN, TestServer, config, simulated_agent};
use prost::Message as _;
use reqwest::{Client, StatusCode, header};
use tonic::Request;

const READER: &str = "reader-key-0123456789abcdef";
const OPERATOR: &str = "operator-key-0123456789abcdef";

fn with_keys() -> ServerOptions {
    ServerOptions {
        keys: Keys::new([
            ApiKey::from_entry(&format!("reader:read:{READER}")).unwrap(),
            ApiKey::from_entry(&format!("ops:operate:{OPERATOR}")).unwrap(),
        ])
        .unwrap(),
        allowed_hosts: vec!["swarm.lan".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn the_page_is_served_to_anyone_with_headers_that_lock_it_down() {
    let server = TestServer::start_with_options(config(1), simulated_agent(), with_keys()).await;
    let http = Client::new();
    for (path, content_type, needle) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<script type=\"module\" src=\"/assets/app.js\">",
        ),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "claude-swarm.key",
        ),
        ("/assets/app.css", "text/css; charset=utf-8", "--completed"),
    ] {
        // No key: the page holds no data, and asks for a key itself.
        let response = http
            .get(format!("http://{}{path}", server.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        let body = response.text().await.unwrap();
        assert!(body.contains(needle), "{path} holds {needle}");
    }
    // Scripts only from the page's origin, never inline or eval'd; never framed.
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "connect-src 'self'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    // The page itself runs no inline script.
    let page = include_str!("../clients/web/dist/index.html");
    assert_eq!(page.matches("<script").count(), 1);
    assert!(!page.contains("onclick=") && !page.contains("style="));
    // Only those three are open: any other path still needs a key, and is not there.
    let other = format!("http://{}/assets/other.js", server.addr);
    let refused = http.get(&other).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let missing = http.get(&other).bearer_auth(READER).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

/// A grpc-web frame: flag, length, message.
fn frame(message: &impl prost::Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    framed.extend_from_slice(&bytes);
    framed
}

/// `GetCaller` over grpc-web as a browser sends it: the answer, or the HTTP status and
/// gRPC status of the refusal.
async fn get_caller_as_a_page(
    server: &TestServer,
    host: &str,
    origin: &str,
    key: &str,
) -> Result<pb::GetCallerResponse, (StatusCode, String)> {
    let response = Client::new()
        .post(format!(
            "http://{}/claude_swarm.v1.CallerService/GetCaller",
            server.addr
        ))
        .header(header::HOST, host)
        .header(header::ORIGIN, origin)
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .bearer_auth(key)
        .body(frame(&pb::GetCallerRequest {}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.bytes().await.unwrap();
    // A data frame (flag 0) holds the answer; the trailers frame (flag 0x80) follows it.
    if status == StatusCode::OK && grpc_status.is_none() && body.first() == Some(&0) {
        let length = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        return Ok(pb::GetCallerResponse::decode(&body[5..5 + length]).unwrap());
    }
    Err((status, grpc_status.unwrap_or_default()))
}

#[tokio::test]
async fn the_page_calls_grpc_web_from_its_own_origin_and_a_foreign_page_cannot() {
    let server = TestServer::start_with_options(config(1), simulated_agent(), with_keys()).await;
    let port = server.addr.port();
    let own = format!("127.0.0.1:{port}");
    // The page as served on the loopback address, and under an allowed host name.
    let caller = get_caller_as_a_page(&server, &own, &format!("http://{own}"), READER)
        .await
        .unwrap();
    assert_eq!(
        (caller.name.as_str(), caller.role.as_str()),
        ("reader", "read")
    );
    assert!(caller.keys_required);
    let lan = format!("swarm.lan:{port}");
    let caller = get_caller_as_a_page(&server, &lan, &format!("http://{lan}"), OPERATOR)
        .await
        .unwrap();
    assert_eq!(caller.role, "operate");
    // A page on another origin, with a key it somehow has, or on a rebound domain.
    for (host, origin) in [
        (own.as_str(), "http://evil.example"),
        (own.as_str(), "http://swarm.lan.evil.example"),
        (lan.as_str(), "http://evil.example"),
    ] {
        let refused = get_caller_as_a_page(&server, host, origin, OPERATOR)
            .await
            .unwrap_err();
        assert_eq!(refused.1, "7", "PERMISSION_DENIED for {origin} on {host}");
    }
    let rebound = get_caller_as_a_page(
        &server,
        "rebound.example",
        "http://rebound.example",
        OPERATOR,
    )
    .await
    .unwrap_err();
    assert_eq!(rebound.1, "7");
    server.stop().await;
}

#[tokio::test]
async fn get_caller_names_the_key_and_its_role() {
    let server = TestServer::start_with_options(config(1), simulated_agent(), with_keys()).await;
    let ask = |key: Option<&'static str>| {
        let channel = server.channel.clone();
        async move {
            let mut request = Request::new(pb::GetCallerRequest {});
            if let Some(key) = key {
                let value = format!("Bearer {key}").parse().unwrap();
                request.metadata_mut().insert("authorization", value);
            }
            CallerServiceClient::new(channel).get_caller(request).await
        }
    };
    let reader = ask(Some(READER)).await.unwrap().into_inner();
    assert_eq!(
        (reader.name.as_str(), reader.role.as_str()),
        ("reader", "read")
    );
    assert_eq!(
        ask(Some(OPERATOR)).await.unwrap().into_inner().role,
        "operate"
    );
    for key in [None, Some("not-a-key-0123456789abcdef")] {
        let refused = ask(key).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{key:?}");
    }
    server.stop().await;

    // Without keys, everyone may do everything, and is told so.
    let open = TestServer::start(config(1)).await;
    let caller = CallerServiceClient::new(open.channel.clone())
        .get_caller(pb::GetCallerRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            caller.name.as_str(),
            caller.role.as_str(),
            caller.keys_required
        ),
        ("anonymous", "admin", false)
    );
    open.stop().await;
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tools(web: &Path) -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!("no Chromium at {chromium}"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node on PATH".into());
    }
    if !web.join("node_modules/playwright-core").exists() {
        return Some("clients/web/node_modules has no playwright-core".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("clients/web");
    if let Some(missing) = missing_tools(&web) {
        // In CI a missing browser is a failure; elsewhere a skip that says why.
        assert!(
            std::env::var_os("CI").is_none(),
            "the browser test cannot run: {missing} (run scripts/setup)"
        );
        eprintln!("skipped: the browser test needs {missing}; run scripts/setup");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let shots = root.join("target/dashboard-screenshots");
    let mut node = tokio::process::Command::new("node");
    node.arg("test/browser.mjs")
        .current_dir(&web)
        .env("SWARM_BIN", BIN)
        .env("SWARM_DATA", data.path())
        .env("SCREENSHOTS", &shots)
        .kill_on_drop(true);
    // The README's screenshot: made by this run when it is missing, or when asked for
    // (UPDATE_SCREENSHOT=1), so that a test run does not change a committed file.
    let docs = root.join("docs/dashboard.png");
    if !docs.exists() || std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        node.env("DOCS_PNG", docs);
    }
    let output = node.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(" passed, 0 failed"),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
}
