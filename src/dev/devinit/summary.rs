//! What the CLI shows after `dev-init` (and `serve --dev`): the command that starts each
//! node (the others, when one is running already), and `curl` commands that register the
//! example consent, send the example referral under it and pull it.
//!
//! Invariant kept here: nothing is printed here; every path shown is quoted for a POSIX
//! shell when it needs it.

use std::fmt::Write as _;
use std::path::Path;

use crate::dev::manifest::LoadedManifest;

/// What to try next with a federation: the command that starts each node (`running`: the
/// center whose node the caller is starting, which is then not listed), and `curl` commands
/// that register the example consent, send the example referral under it and pull it from
/// the recipient's inbox. `plusgate` is shown as the path of the running executable, which
/// works whether or not it is on the `PATH`.
pub fn summary(federation: &LoadedManifest, running: Option<&str>) -> String {
    let dir = federation.dir();
    let centers = federation.centers_in_order();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Development federation in {} ({} center{}).",
        dir.display(),
        centers.len(),
        if centers.len() == 1 { "" } else { "s" }
    );
    let exe = std::env::current_exe().map_or_else(|_| "plusgate".to_owned(), |p| quote(&p));
    let others: Vec<_> = centers
        .iter()
        .filter(|(name, _)| Some(*name) != running)
        .collect();
    match (running, others.is_empty()) {
        (Some(center), true) => {
            let _ = writeln!(out, "\nThe node of {center} is starting here.");
        }
        (Some(center), false) => {
            let _ = writeln!(
                out,
                "\nThe node of {center} is starting here; start the others, one terminal each:"
            );
        }
        (None, _) => {
            let _ = writeln!(out, "\nStart each node (one terminal each):");
        }
    }
    for (_, center) in others {
        let config = federation.resolve(&center.config);
        let _ = writeln!(out, "  {exe} serve --config {}", quote(&config));
    }

    let ca = quote(&federation.ca_path());
    let Ok((body, sender)) = federation.example("referral") else {
        return out;
    };
    let (Ok((cert, key)), Ok(url)) = (
        federation.agency_identity(sender),
        federation.url_of(sender),
    ) else {
        return out;
    };
    // The referral travels only under a consent its sender registered first.
    if let Ok((consent, collector)) = federation.example("consent") {
        if let Ok((ccert, ckey)) = federation.agency_identity(collector) {
            let _ = writeln!(
                out,
                "\nRegister the example consent as {collector} (once; the same again is 200):"
            );
            let _ = writeln!(
                out,
                "  curl --cacert {ca} --cert {} --key {} \\\n    -H 'content-type: application/json' --data-binary @{} \\\n    {url}/v1/consents",
                quote(&ccert),
                quote(&ckey),
                quote(&consent),
            );
        }
    }
    let _ = writeln!(out, "\nSend the example referral as {sender}:");
    let _ = writeln!(
        out,
        "  curl --cacert {ca} --cert {} --key {} \\\n    -H 'content-type: application/json' --data-binary @{} \\\n    {url}/v1/messages",
        quote(&cert),
        quote(&key),
        quote(&body),
    );

    let center = sender.split_once('/').map_or(sender, |(center, _)| center);
    let recipient = format!("{center}/welfare");
    if let Ok((cert, key)) = federation.agency_identity(&recipient) {
        let _ = writeln!(out, "\nPull it from the inbox of {recipient}:");
        let _ = writeln!(
            out,
            "  curl --cacert {ca} --cert {} --key {} \\\n    '{url}/v1/inbox?max=10&wait=5'",
            quote(&cert),
            quote(&key),
        );
    }
    out
}

/// Quotes a path for a POSIX shell when it holds anything beyond a safe alphabet.
pub(super) fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@=,".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
