//! A Monitoring API over TLS for tests of the whole binary with Google credentials: a test CA and
//! a certificate for `localhost` made at run time with the `openssl` command, the emulator served
//! with that certificate on a loopback port (recording the headers of every call), and the
//! sidecar started against it with no source of credentials but the ones a test opens.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gcm_emulator::Emulator;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::fake_prometheus::{now_ms, write_gauge_wal};
use super::{Child, free_port, require_binary};

/// The project the sidecar writes to.
pub const PROJECT: &str = "tls-test";
/// Series in the WAL the sidecar reads.
pub const SERIES: usize = 10;
/// Samples of each series in that WAL.
pub const ROUNDS: usize = 3;
/// Points the emulator must accept once the WAL is sent.
pub const POINTS: u64 = (SERIES * ROUNDS) as u64;

/// Runs `openssl` in `dir` with the space-separated `args`, failing the test with its output if
/// it fails.
pub fn openssl(dir: &Path, args: &str) {
    let out = Command::new(require_binary("openssl"))
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA made for one test run and a server certificate it signed.
pub struct TestCa {
    /// The CA's certificate (PEM), the only root that can vouch for the server.
    pub ca: PathBuf,
    /// The server's certificate (for `localhost` and 127.0.0.1) and key, PEM.
    pub server_cert: String,
    pub server_key: String,
}

/// Makes a CA and a server certificate it signs (P-256 keys) in `dir`, for `localhost` and
/// 127.0.0.1.
pub fn make_ca(dir: &Path) -> TestCa {
    make_ca_for(dir, "DNS:localhost,IP:127.0.0.1")
}

/// Makes a CA and a server certificate it signs for the subject alternative names `names`
/// (`DNS:host,IP:address`).
pub fn make_ca_for(dir: &Path, names: &str) -> TestCa {
    let p256 = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    openssl(
        dir,
        &format!(
            "req -x509 {p256} -keyout ca.key -out ca.pem -days 2 -subj /CN=sidecar-test-ca \
             -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ),
    );
    openssl(
        dir,
        &format!("req -new {p256} -keyout server.key -out server.csr -subj /CN=localhost"),
    );
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={names}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 2 \
         -extfile server.ext -out server.pem",
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    TestCa {
        ca: dir.join("ca.pem"),
        server_cert: read("server.pem"),
        server_key: read("server.key"),
    }
}

/// The service account of [`make_service_account`].
pub const CLIENT_EMAIL: &str = "sidecar@tls-test.iam.gserviceaccount.com";
/// Its key's id.
pub const KEY_ID: &str = "test-key-1";

/// Makes in `dir` a service-account key file shaped as the ones the Cloud console hands out,
/// with an RSA key made now; returns the file and the public key (PKCS#1 DER). Its token_uri
/// leads nowhere: a token exchange would fail, so calls can only work with a self-signed JWT.
pub fn make_service_account(dir: &Path) -> (PathBuf, Vec<u8>) {
    openssl(
        dir,
        "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out service-account.pem",
    );
    openssl(
        dir,
        "rsa -in service-account.pem -RSAPublicKey_out -outform DER -out service-account.pub.der",
    );
    let key_file = serde_json::json!({
        "type": "service_account",
        "project_id": "tls-test",
        "private_key_id": KEY_ID,
        "private_key": std::fs::read_to_string(dir.join("service-account.pem")).unwrap(),
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("http://127.0.0.1:{}/token", free_port()),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com"
    });
    let path = dir.join("service-account.json");
    std::fs::write(&path, key_file.to_string()).unwrap();
    (
        path,
        std::fs::read(dir.join("service-account.pub.der")).unwrap(),
    )
}

/// What the server saw of one call: its headers (gRPC metadata) with text values.
#[derive(Clone, Debug)]
pub struct Call {
    headers: BTreeMap<String, String>,
}

impl Call {
    /// The value of the header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The token of the `authorization: Bearer <token>` header, failing the test without one.
    pub fn bearer_token(&self) -> &str {
        let authorization = self
            .header("authorization")
            .unwrap_or_else(|| panic!("no authorization header: {:?}", self.headers));
        authorization
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("not a bearer token: {authorization}"))
    }
}

/// The emulator served over TLS with the test certificate on a loopback port, recording the
/// headers of every call.
pub async fn serve_tls(emulator: &Emulator, ca: &TestCa) -> (SocketAddr, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let record = move |request: tonic::Request<()>| {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
            .collect();
        seen.lock().unwrap().push(Call { headers });
        Ok(request)
    };
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(&ca.server_cert, &ca.server_key));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(InterceptedService::new(emulator.service(), record))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    (addr, calls)
}

/// `dir/home`, made if missing: the sidecar's home directory, where a test may put a gcloud
/// credentials file.
pub fn home_dir(dir: &Path) -> PathBuf {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// The environment that closes every source of Google credentials: no
/// `GOOGLE_APPLICATION_CREDENTIALS` and no quota project, `HOME` at `home` (where gcloud's file
/// is looked for), and the metadata server at `127.0.0.1:1`, which refuses connections.
pub fn no_credentials(home: &str) -> Vec<(&'static str, Option<&str>)> {
    vec![
        ("GOOGLE_APPLICATION_CREDENTIALS", None),
        ("GOOGLE_CLOUD_QUOTA_PROJECT", None),
        ("HOME", Some(home)),
        ("GCE_METADATA_HOST", Some("127.0.0.1:1")),
    ]
}

/// Starts the sidecar on a WAL in `dir/wal` holding [`SERIES`] gauges `metric` of [`ROUNDS`]
/// samples each, sending to `https://localhost:<port>/`, with `SSL_CERT_FILE` set to `ca` when
/// given. Every source of Google credentials is closed (see [`no_credentials`]; `HOME` is
/// [`home_dir`]) unless `env` opens it: `env` is applied last, `Some` setting a variable and
/// `None` removing it. Logs to `dir/sidecar.log`.
pub fn sidecar_over_tls(
    dir: &Path,
    port: u16,
    prometheus: &str,
    metric: &str,
    ca: Option<&Path>,
    env: &[(&str, Option<&str>)],
) -> Child {
    let wal = dir.join("wal");
    std::fs::create_dir(&wal).unwrap();
    write_gauge_wal(&wal, metric, SERIES, ROUNDS, now_ms() - 600_000);
    let home = home_dir(dir).to_str().unwrap().to_string();
    let mut all_env = no_credentials(&home);
    all_env.extend([
        ("SSL_CERT_FILE", ca.map(|p| p.to_str().unwrap())),
        ("SSL_CERT_DIR", None),
    ]);
    all_env.extend_from_slice(env);
    Child::spawn_with_env(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            &format!("--stackdriver.project-id={PROJECT}"),
            &format!("--stackdriver.api-address=https://localhost:{port}/"),
            "--stackdriver.generic.location=here",
            "--stackdriver.generic.namespace=tls",
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address={prometheus}/"),
            &format!("--web.listen-address=127.0.0.1:{}", free_port()),
            "--log.level=debug",
        ],
        &all_env,
        &dir.join("sidecar.log"),
    )
}

/// Waits up to a minute for the emulator to have accepted [`POINTS`] points, then checks that it
/// accepted no more and refused none; fails at once if the sidecar exits meanwhile. Failures
/// show the end of the sidecar's log.
pub async fn wait_for_all_points(emulator: &Emulator, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while emulator.store().stats().points_accepted < POINTS {
        if let Some(status) = child.wait(Duration::ZERO) {
            panic!("the sidecar exited with {status}:\n{}", child.log_tail(30));
        }
        assert!(
            Instant::now() < deadline,
            "not every point arrived:\n{}",
            child.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = emulator.store().stats();
    assert_eq!(stats.points_accepted, POINTS, "{}", child.log_tail(20));
    assert!(stats.rejected_by_reason.is_empty(), "{stats:?}");
}

/// Runs the sidecar until it exits, which must happen within 20 s, against an API address where
/// nothing listens, with the same closed credentials sources as [`sidecar_over_tls`] opened by
/// `env`: returns its exit status and everything it logged. For start-up failures, which come
/// before anything is sent.
pub fn run_until_start_up_fails(dir: &Path, env: &[(&str, Option<&str>)]) -> (Option<i32>, String) {
    let wal = dir.join("wal");
    std::fs::create_dir_all(&wal).unwrap();
    let home = home_dir(dir).to_str().unwrap().to_string();
    let mut all_env = no_credentials(&home);
    all_env.extend_from_slice(env);
    let log = dir.join("sidecar.log");
    let mut child = Child::spawn_with_env(
        Path::new(env!("CARGO_BIN_EXE_stackdriver-prometheus-sidecar")),
        &[
            &format!("--stackdriver.project-id={PROJECT}"),
            &format!(
                "--stackdriver.api-address=https://localhost:{}/",
                free_port()
            ),
            &format!("--prometheus.wal-directory={}", wal.display()),
            &format!("--prometheus.api-address=http://127.0.0.1:{}/", free_port()),
            &format!("--web.listen-address=127.0.0.1:{}", free_port()),
        ],
        &all_env,
        &log,
    );
    let status = child.wait(Duration::from_secs(20));
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}
