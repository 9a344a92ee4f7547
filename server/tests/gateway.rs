//! The server behind a real nginx, as a gateway would use it: `auth_request` sends every
//! request's `Authorization` to `GET /verify`, and only what it accepts reaches a small
//! upstream, with the token's id and scopes in headers and never the token itself.
//!
//! nginx is found as `APITOKEN_NGINX`, else `nginx` on the `PATH` or in `/usr/sbin`.
//! Without it the test says loudly that it skipped, unless `APITOKEN_REQUIRE_NGINX=1`
//! (which `.ci/run` sets after installing Debian's `nginx-light`), which makes a missing
//! nginx a failure.

mod support;

use serde_json::{Value, json};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    Server, TempDb, admin_scopes, alice, call_at, env_tokens, environment, issue_first,
    issue_reader, sqlite_store,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn nginx() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("APITOKEN_NGINX") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|path| path.is_file())
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An upstream that answers every request with the headers it was given that a gateway
/// might pass on, as JSON.
async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let header = |name: &str| {
                    head.lines()
                        .find_map(|line| {
                            let (key, value) = line.split_once(':')?;
                            key.eq_ignore_ascii_case(name)
                                .then(|| value.trim().to_owned())
                        })
                        .map_or(Value::Null, Value::String)
                };
                let body = json!({
                    "tokenId": header("x-token-id"),
                    "scopes": header("x-token-scopes"),
                    "authorization": header("authorization"),
                })
                .to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

/// nginx in the foreground on `port`, its files in `dir`: `/` needs a token that reads,
/// `/admin/` one that also writes.
struct Nginx {
    child: Child,
    dir: PathBuf,
}

impl Nginx {
    fn start(
        binary: &PathBuf,
        dir: PathBuf,
        port: u16,
        server: SocketAddr,
        upstream: SocketAddr,
        forwarded: bool,
    ) -> Nginx {
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let d = dir.display();
        // What the server trusts with `--trusted-proxy`: the client's address, appended to
        // what the client sent.
        let xff = if forwarded {
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"
        } else {
            ""
        };
        let config = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_verify_read;
            auth_request_set $token_id $upstream_http_x_token_id;
            auth_request_set $token_scopes $upstream_http_x_token_scopes;
            proxy_set_header X-Token-Id $token_id;
            proxy_set_header X-Token-Scopes $token_scopes;
            proxy_set_header Authorization "";
            proxy_pass http://{upstream};
        }}
        location /admin/ {{
            auth_request /_verify_write;
            auth_request_set $token_id $upstream_http_x_token_id;
            proxy_set_header X-Token-Id $token_id;
            proxy_set_header Authorization "";
            proxy_pass http://{upstream};
        }}
        location = /_verify_read {{
            internal;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            {xff}
            proxy_pass http://{server}/verify?scope=environment.apiTokens.read;
        }}
        location = /_verify_write {{
            internal;
            proxy_method GET;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Required-Scopes "environment.apiTokens.read environment.apiTokens.write";
            {xff}
            proxy_pass http://{server}/verify;
        }}
    }}
}}
"#
        );
        let path = dir.join("nginx.conf");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(config.as_bytes()))
            .unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut nginx = Nginx { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_lets_through_only_what_verify_accepts() {
    let Some(binary) = nginx() else {
        assert!(
            std::env::var("APITOKEN_REQUIRE_NGINX").as_deref() != Ok("1"),
            "APITOKEN_REQUIRE_NGINX=1 but no nginx was found: install it (Debian: apt-get install nginx-light) or set APITOKEN_NGINX"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED nginx_lets_through_only_what_verify_accepts: no nginx (apt-get install nginx-light, or set APITOKEN_NGINX) !!!\n"
        );
        return;
    };
    let db = TempDb::new("gateway");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let reader = issue_reader(store.clone(), alice()).await;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let upstream = upstream().await;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("apitoken-nginx-{}-{port}", std::process::id()));
    let nginx = Nginx::start(&binary, dir, port, server.addr, upstream, false);
    let gateway: SocketAddr = ([127, 0, 0, 1], port).into();
    let get = |path: &'static str, token: Option<String>| {
        let call = call_at(gateway, "GET", path);
        async move {
            match token {
                Some(token) => call.bearer(&token),
                None => call,
            }
            .send()
            .await
        }
    };

    // A token that reads passes, and the upstream learns who it is, never the token.
    let passed = get("/orders", Some(reader.raw.clone())).await;
    assert_eq!(passed.status, 200, "{}\n{}", passed.text(), nginx.log());
    let seen = passed.json();
    assert_eq!(seen["tokenId"], reader.id.as_str(), "{seen}");
    assert_eq!(seen["scopes"], "environment.apiTokens.read", "{seen}");
    assert_eq!(seen["authorization"], Value::Null, "{seen}");
    // Any method: the subrequest is a GET whatever the client sent.
    let posted = call_at(gateway, "POST", "/orders")
        .bearer(&reader.raw)
        .body("{}")
        .send()
        .await;
    assert_eq!(posted.status, 200, "{}", posted.text());

    // No token, a wrong one: 401. A token without the write scope on /admin/: 403.
    assert_eq!(get("/orders", None).await.status, 401);
    let mut wrong = reader.raw.clone();
    wrong.pop();
    wrong.push('x');
    assert_eq!(get("/orders", Some(wrong)).await.status, 401);
    assert_eq!(
        get("/admin/users", Some(reader.raw.clone())).await.status,
        403
    );
    let admitted = get("/admin/users", Some(admin.raw.clone())).await;
    assert_eq!(admitted.status, 200, "{}", admitted.text());
    assert_eq!(admitted.json()["tokenId"], admin.id.as_str());

    // Revoked: refused at the gateway from the moment the revocation returns.
    server
        .call(
            "DELETE",
            &format!("{}/{}", env_tokens(environment()), reader.id),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    assert_eq!(get("/orders", Some(reader.raw.clone())).await.status, 401);

    let log = nginx.log();
    drop(nginx);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("route=\"/verify\" status=401"), "{logs}");
    for raw in [&reader.raw, &admin.raw] {
        assert!(!logs.contains(raw.as_str()) && !log.contains(raw.as_str()));
    }
}

/// `GET path` with `token`, from the loopback address `from`, with `X-Forwarded-For`
/// lines as the client sends them: the answer's status.
async fn status_from(
    from: [u8; 4],
    to: SocketAddr,
    path: &str,
    token: &str,
    forwarded: &[&str],
) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(to).await.unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\nconnection: close\r\n"
    );
    for line in forwarded {
        request.push_str(&format!("x-forwarded-for: {line}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

/// Behind nginx, with the server trusting it (`--trusted-proxy 127.0.0.1/32`, the address
/// nginx connects from): a token with allowed ranges is judged by the address nginx saw,
/// which nginx appends to `X-Forwarded-For`; what a client writes in that header itself
/// does not move it anywhere, through nginx or straight to the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_allowed_ranges_see_the_clients_address() {
    let Some(binary) = nginx() else {
        assert!(
            std::env::var("APITOKEN_REQUIRE_NGINX").as_deref() != Ok("1"),
            "APITOKEN_REQUIRE_NGINX=1 but no nginx was found: install it (Debian: apt-get install nginx-light) or set APITOKEN_NGINX"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n!!! SKIPPED behind_nginx_allowed_ranges_see_the_clients_address: no nginx (apt-get install nginx-light, or set APITOKEN_NGINX) !!!\n"
        );
        return;
    };
    let db = TempDb::new("gateway_cidr");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--trusted-proxy",
            "127.0.0.1/32",
        ],
        &[],
    );
    let create = |ranges: Value| {
        let call = server
            .call("POST", &env_tokens(environment()))
            .bearer(&admin.raw)
            .json(&json!({ "note": "ranged", "scopes": ["environment.apiTokens.read"], "allowedCidrs": ranges }));
        async move {
            let created = call.send().await.expect(201).json();
            created["token"]["rawToken"].as_str().unwrap().to_owned()
        }
    };
    let near = create(json!(["127.0.0.5"])).await;
    let office = create(json!(["10.0.0.0/8"])).await;
    let upstream = upstream().await;
    let port = free_port();
    let dir =
        std::env::temp_dir().join(format!("apitoken-nginx-cidr-{}-{port}", std::process::id()));
    let nginx = Nginx::start(&binary, dir, port, server.addr, upstream, true);
    let gateway: SocketAddr = ([127, 0, 0, 1], port).into();
    let client = [127, 0, 0, 5];

    assert_eq!(
        status_from(client, gateway, "/orders", &near, &[]).await,
        200,
        "{}",
        nginx.log()
    );
    assert_eq!(
        status_from(client, gateway, "/orders", &office, &[]).await,
        403
    );
    // nginx appends 127.0.0.5 to what the client claims: the claim is left of an
    // untrusted entry, and counts for nothing.
    assert_eq!(
        status_from(client, gateway, "/orders", &office, &["10.1.2.3"]).await,
        403
    );
    // Straight to the server, the client is no trusted proxy: its header is ignored.
    assert_eq!(
        status_from(client, server.addr, "/verify", &office, &["10.1.2.3"]).await,
        403
    );
    assert_eq!(
        status_from(client, server.addr, "/verify", &near, &["10.1.2.3"]).await,
        200
    );
    // A client on a trusted address (127.0.0.1) is a trusted hop too: past it, the next
    // entry to the left is the client.
    assert_eq!(
        status_from([127, 0, 0, 1], gateway, "/orders", &office, &["10.1.2.3"]).await,
        200
    );

    drop(nginx);
    let listed = server
        .call("GET", &env_tokens(environment()))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    let last_ips: Vec<&Value> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["lastUsedIp"])
        .collect();
    assert!(last_ips.contains(&&json!("127.0.0.5")), "{listed}");
    assert!(last_ips.contains(&&json!("10.1.2.3")), "{listed}");
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    for raw in [&near, &office] {
        assert!(!logs.contains(raw.as_str()), "{logs}");
    }
}
