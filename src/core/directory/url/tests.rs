//! The node URL grammar, case by case: `check(url, expected)` with the host and port it
//! must give (written back as `https://HOST:PORT`), or the words its refusal must contain.

use super::*;

#[track_caller]
fn check(url: &str, expected: Result<&str, &str>) {
    match (parse_https_url(url), expected) {
        (Ok(parsed), Ok(want)) => assert_eq!(parsed.to_string(), want, "{url}"),
        (Err(e), Err(words)) => {
            assert_eq!(e.url, url);
            assert!(e.reason.contains(words), "{url}: {e} should say {words:?}");
        }
        (got, want) => panic!("{url}: got {got:?}, expected {want:?}"),
    }
}

#[test]
fn ip_addresses() {
    check("https://127.0.0.1:7443", Ok("https://127.0.0.1:7443"));
    check("https://127.0.0.1:7443/", Ok("https://127.0.0.1:7443"));
    check("https://10.20.0.5", Ok("https://10.20.0.5:443"));
    check("HTTPS://10.20.0.5:1", Ok("https://10.20.0.5:1"));
    check("https://[::1]:7443", Ok("https://[::1]:7443"));
    check(
        "https://[2001:DB8::5]:7443",
        Ok("https://[2001:db8::5]:7443"),
    );
    check(
        "https://[::ffff:10.0.0.1]",
        Ok("https://[::ffff:10.0.0.1]:443"),
    );
}

#[test]
fn host_names() {
    check("https://localhost:7443", Ok("https://localhost:7443"));
    check(
        "https://Node-1.Suwon.example:7443",
        Ok("https://node-1.suwon.example:7443"),
    );
    check(
        "https://xn--h32b13v.kr:7443",
        Ok("https://xn--h32b13v.kr:7443"),
    );
    check("https://a.b1", Ok("https://a.b1:443"));
    check("https://9gag.com:1", Ok("https://9gag.com:1"));
    let longest = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    assert_eq!(longest.len(), 253);
    check(
        &format!("https://{longest}:1"),
        Ok(&format!("https://{longest}:1")),
    );
    check(&format!("https://{longest}e:1"), Err("longer than 253"));
    check(
        &format!("https://{}.kr:1", "a".repeat(64)),
        Err("longer than 63"),
    );
}

#[test]
fn bad_host_names() {
    check("https://node_1.example:7443", Err("letters, digits"));
    check("https://노드.example:7443", Err("letters, digits"));
    check("https://node.example.:7443", Err("empty label"));
    check("https://.example:7443", Err("empty label"));
    check("https://a..b:7443", Err("empty label"));
    check("https://-node.example:7443", Err("starts or ends with '-'"));
    check("https://node-.example:7443", Err("starts or ends with '-'"));
    check("https://node.example%2f:7443", Err("letters, digits"));
    check("https://node example:7443", Err("letters, digits"));
    check("https://:7443", Err("missing host"));
    check("https://", Err("missing host"));
}

#[test]
fn bad_addresses() {
    check("https://10.0.0.256:7443", Err("not an IPv4 address"));
    check("https://10.0.0:7443", Err("not an IPv4 address"));
    check("https://010.0.0.1:7443", Err("not an IPv4 address"));
    check("https://1234:7443", Err("not an IPv4 address"));
    check("https://::1:7443", Err("in brackets"));
    check("https://[::1:7443", Err("closed with ]"));
    check("https://[::1]x:7443", Err("only :PORT"));
    check("https://[10.0.0.1]:7443", Err("not an IPv6 address"));
    check("https://[fe80::1%eth0]:7443", Err("not an IPv6 address"));
    check("https://[nope]:7443", Err("not an IPv6 address"));
}

#[test]
fn ports() {
    check("https://10.0.0.1:65535", Ok("https://10.0.0.1:65535"));
    check("https://10.0.0.1:65536", Err("above 65535"));
    check("https://10.0.0.1:0", Err("port 0"));
    check("https://10.0.0.1:", Err("must be a number"));
    check("https://10.0.0.1:+1", Err("must be a number"));
    check("https://node.example:x", Err("must be a number"));
    check("https://[::1]:", Err("must be a number"));
}

#[test]
fn nothing_but_scheme_host_and_port() {
    check("http://127.0.0.1:7443", Err("scheme must be https"));
    check("ftp://node.example", Err("scheme must be https"));
    check("127.0.0.1:7443", Err("not a URL"));
    check("", Err("not a URL"));
    check("https://127.0.0.1:7443/v1", Err("path"));
    check("https://127.0.0.1:7443//", Err("path"));
    check("https://127.0.0.1:7443/?a=b", Err("path"));
    check("https://127.0.0.1:7443?a=b", Err("path"));
    check("https://node.example:7443#top", Err("path"));
    check("https://user@127.0.0.1:7443", Err("user information"));
    check("https://user:pw@node.example:7443", Err("user information"));
}

#[test]
fn what_a_client_connects_to() {
    let ip = parse_https_url("https://[::1]:7443").expect("ok");
    assert_eq!(ip.socket_addr(), Some("[::1]:7443".parse().expect("addr")));
    assert_eq!(ip.server_name(), "::1");
    let name = parse_https_url("https://Node.Example").expect("ok");
    assert_eq!(name.socket_addr(), None);
    assert_eq!(name.server_name(), "node.example");
    assert_eq!(name.port(), 443);
    assert_eq!(name.explicit_port, None);
}
