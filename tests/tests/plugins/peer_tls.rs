//! The peer functions that need a newer nbdkit than Debian 12's, on every nbdkit: with real
//! X.509 client certificates (made with certtool, as nbdkit-tls(1) shows) for `peer_tls_dn` and
//! `peer_tls_issuer_dn`, and on a plain Unix socket for `peer_security_context`. Where the
//! running nbdkit lacks a function (1.32 has none of the three) the plugin gets ENOTSUP naming
//! the function and the version.

use std::path::Path;

use rustshim_tests::*;

/// nbdkit_peer_tls_dn and nbdkit_peer_tls_issuer_dn came in 1.40 (checked in nbdkit's
/// include/nbdkit-common.h), nbdkit_peer_security_context in 1.36.
const TLS_DN_SINCE: [u32; 2] = [1, 40];
const SECURITY_CONTEXT_SINCE: [u32; 2] = [1, 36];

fn not_supported(function: &str) -> String {
    format!(
        "Err(ENOTSUP: nbdkit_{function} is not supported by this nbdkit ({}))",
        nbdkit_version()
    )
}

/// Runs certtool with these arguments, which must succeed; returns what it printed.
fn certtool(args: &[&str]) -> String {
    run(command("certtool").args(args)).ok().stdout
}

/// A CA, a server certificate for `localhost` and a client certificate, all in `dir` under the
/// names nbdkit's `--tls-certificates` and libnbd's `set_tls_certificates` look for.
fn make_certificates(dir: &Path) {
    let path = |name: &str| dir.join(name).display().to_string();
    let templates = [
        ("ca.info", "cn = rustshim test CA\norganization = rustshim\nca\ncert_signing_key\n"),
        (
            "server.info",
            "organization = rustshim\ncn = localhost\ndns_name = localhost\ntls_www_server\nencryption_key\nsigning_key\n",
        ),
        (
            "client.info",
            "country = US\nstate = New York\nlocality = New York\norganization = BigCo\ncn = client.example.com\ntls_www_client\nencryption_key\nsigning_key\n",
        ),
    ];
    for (name, text) in templates {
        std::fs::write(dir.join(name), text).unwrap();
    }
    for key in ["ca-key.pem", "server-key.pem", "client-key.pem"] {
        certtool(&["--generate-privkey", "--outfile", &path(key)]);
    }
    certtool(&[
        "--generate-self-signed",
        "--load-privkey",
        &path("ca-key.pem"),
        "--template",
        &path("ca.info"),
        "--outfile",
        &path("ca-cert.pem"),
    ]);
    for who in ["server", "client"] {
        certtool(&[
            "--generate-certificate",
            "--load-ca-certificate",
            &path("ca-cert.pem"),
            "--load-ca-privkey",
            &path("ca-key.pem"),
            "--load-privkey",
            &path(&format!("{who}-key.pem")),
            "--template",
            &path(&format!("{who}.info")),
            "--outfile",
            &path(&format!("{who}-cert.pem")),
        ]);
    }
}

/// The `Subject:` or `Issuer:` of a certificate as certtool prints it (RFC 4514, the form
/// nbdkit returns).
fn certificate_field(cert: &Path, field: &str) -> String {
    let info = certtool(&[
        "--certificate-info",
        "--infile",
        &cert.display().to_string(),
    ]);
    info.lines()
        .find_map(|line| line.trim().strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in certtool's output:\n{info}"))
        .trim()
        .to_owned()
}

#[test]
fn peer_tls_dn_and_issuer_dn_of_a_real_client_certificate() {
    let t = Trace::new("x509");
    let certs = t.file("certs");
    std::fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    let subject = certificate_field(&certs.join("client-cert.pem"), "Subject:");
    let issuer = certificate_field(&certs.join("client-cert.pem"), "Issuer:");
    assert_eq!(
        subject,
        "CN=client.example.com,O=BigCo,L=New York,ST=New York,C=US"
    );

    let server = serve(
        &[
            "--tls=require",
            &format!("--tls-certificates={}", certs.display()),
            "--tls-verify-peer",
        ],
        &[test_plugin(), t.arg()],
    );
    let out = server
        .client(&format!(
            "h.set_tls(nbd.TLS_REQUIRE)\n\
             h.set_tls_certificates({certs:?})\n\
             # libnbd < 1.22 has no set_tls_hostname, and checks no host name on a Unix socket.\n\
             getattr(h, 'set_tls_hostname', lambda name: None)('localhost')\n\
             h.connect_unix(SOCKET)\n\
             print(h.get_tls_negotiated(), h.pread(4, 0) == bytes(4))\n\
             h.shutdown()",
            certs = certs.display().to_string()
        ))
        .ok();
    assert_eq!(out.stdout.trim(), "True True", "{}", server.log());
    assert_eq!(t.result("is_tls"), "Ok(true)");
    if nbdkit_at_least(&TLS_DN_SINCE) {
        assert_eq!(t.result("peer_tls_dn"), format!("Ok({subject:?})"));
        assert_eq!(t.result("peer_tls_issuer_dn"), format!("Ok({issuer:?})"));
    } else {
        assert_eq!(t.result("peer_tls_dn"), not_supported("peer_tls_dn"));
        assert_eq!(
            t.result("peer_tls_issuer_dn"),
            not_supported("peer_tls_issuer_dn")
        );
    }
}

/// Without TLS there is no DN: nbdkit returns "" ("this is not an error", nbdkit_peer_tls_dn(3)).
/// `peer_security_context` on a Unix socket of a machine without SELinux labels has nothing to
/// return either: nbdkit returns NULL without an error message (getsockopt's ENOPROTOOPT "is not
/// really an error", server/public.c), and the plugin gets ENOPROTOOPT with a message saying so.
#[test]
fn peer_functions_without_tls_or_security_labels() {
    let t = Trace::new("peer-plain");
    let stderr = session(&[], &[test_plugin(), t.arg()], "", "").ok().stderr;
    if nbdkit_at_least(&TLS_DN_SINCE) {
        assert_eq!(t.result("peer_tls_dn"), r#"Ok("")"#);
        assert_eq!(t.result("peer_tls_issuer_dn"), r#"Ok("")"#);
    } else {
        assert_eq!(t.result("peer_tls_dn"), not_supported("peer_tls_dn"));
        assert_eq!(
            t.result("peer_tls_issuer_dn"),
            not_supported("peer_tls_issuer_dn")
        );
    }
    let context = t.result("peer_security_context");
    if nbdkit_at_least(&SECURITY_CONTEXT_SINCE) {
        assert_eq!(
            context,
            "Err(ENOPROTOOPT: nbdkit_peer_security_context: this connection has no security \
             label (getsockopt SO_PEERSEC: Protocol not available))",
            "{stderr}"
        );
    } else {
        assert_eq!(context, not_supported("peer_security_context"));
    }
}
