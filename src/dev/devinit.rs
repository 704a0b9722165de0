//! `plusgate dev-init`: writes a complete development federation into one folder.
//!
//! The folder holds a CA, the federation authority's Ed25519 key (`authority.key`; in
//! production it lives offline) and the `directory.json` it signed, one node per center
//! (certificate, key, Ed25519 signing key `node-signing.key` and `plusgate.toml` with a
//! `[federation]` section), client certificates for each center's agencies and privacy
//! officer, example request bodies, and `manifest.json` indexing all of it (see
//! [`crate::dev::manifest`]). Center `i` of `--centers` listens on `127.0.0.1:(base_port + i)`.
//!
//! Architecture Invariant: `manifest.json` is written last and atomically, so its
//! presence means the federation is complete; [`ensure`] relies on that. This module
//! prints nothing: [`run`] returns the loaded manifest and [`summary`] the text the CLI
//! shows.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use crate::core::directory::{self, DirectoryError, DIRECTORY_FILE};
use crate::core::keys::{KeyError, PublicKey, SigningKey};
use crate::dev::manifest::{
    CenterEntry, ExampleEntry, KeyPairPaths, LoadedManifest, Manifest, ManifestError, MANIFEST_FILE,
};
use crate::dev::pki::{self, CertificateAuthority, IssuedCert, PkiError, Role, Validity};

/// Centers created when `--centers` is not given, in port order.
pub const DEFAULT_CENTERS: &str = "suwon,gangseo,jeongeup";

/// Port of the first center when `--base-port` is not given.
pub const DEFAULT_BASE_PORT: u16 = 7443;

/// Agencies created at every center (client certificates and directory entries).
pub const AGENCIES: [&str; 5] = ["employment", "jobs", "welfare", "saeil", "finance"];

/// Officers created at every center (client certificates and `[[officers]]` entries).
pub const OFFICERS: [&str; 1] = ["privacy-officer"];

/// Message types every development agency may send. `consent` is absent on purpose:
/// consents are not messages and get their own endpoint.
pub const AGENCY_SENDS: [&str; 3] = ["referral", "referral-status", "case-summary"];

/// Message types every development agency accepts (its `receives` in the directory).
pub const AGENCY_RECEIVES: [&str; 3] = ["referral", "referral-status", "case-summary"];

/// File (in the federation folder) holding the federation authority's Ed25519 private key,
/// which signs `directory.json`. A development convenience: in production it lives offline.
pub const AUTHORITY_KEY_FILE: &str = "authority.key";

/// File (in each center's folder) holding the node's Ed25519 private key for receipts and
/// checkpoints.
pub const NODE_SIGNING_KEY_FILE: &str = "node-signing.key";
/// Each center's data key (AES-256), which seals payloads at rest.
pub const DATA_KEY_FILE: &str = "data.key";

/// Version of the directory `dev-init` writes.
pub const DEV_DIRECTORY_VERSION: u64 = 1;

/// How long development certificates are valid.
pub const DEV_CERT_VALIDITY_DAYS: i64 = 365;

/// Common name of the development CA.
pub const CA_COMMON_NAME: &str = "plusgate development CA";

/// Folder (inside the federation folder) holding the example request bodies; no center
/// may take its name.
pub const EXAMPLES_DIR: &str = "examples";

/// Id of the `consent` example (collected by the first center's employment center, naming
/// the welfare teams), which the referral examples cite.
pub const EXAMPLE_CONSENT_ID: &str = "cns-example-0001";

/// Id of the `consent-reply` example (collected by the first center's welfare team, naming
/// its employment center), which the `referral-status` and `case-summary` examples cite:
/// information goes back only under a consent the sending agency collected.
pub const EXAMPLE_REPLY_CONSENT_ID: &str = "cns-example-0002";

/// Id of the `consent-reply-remote` example: the same for the second center's welfare team,
/// for answers to `referral-remote`.
pub const EXAMPLE_REMOTE_REPLY_CONSENT_ID: &str = "cns-example-0003";

/// Envelope id of the `referral` example (also the `referral_id` of `referral-status`).
pub const EXAMPLE_REFERRAL_ID: &str = "ref-example-0001";

/// Envelope id of the `referral-remote` example.
pub const EXAMPLE_REFERRAL_REMOTE_ID: &str = "ref-example-remote-0001";

/// Envelope id of the `referral-status` example.
pub const EXAMPLE_STATUS_ID: &str = "sts-example-0001";

/// Envelope id of the `case-summary` example.
pub const EXAMPLE_CASE_SUMMARY_ID: &str = "cs-example-0001";

/// Payload examples maintained with the schemas, embedded so the binary is self-contained.
mod embedded {
    pub const ENVELOPE: &str = include_str!("../../schemas/examples/envelope.json");
    pub const REFERRAL: &str = include_str!("../../schemas/examples/referral.json");
    pub const REFERRAL_STATUS: &str = include_str!("../../schemas/examples/referral-status.json");
    pub const CASE_SUMMARY: &str = include_str!("../../schemas/examples/case-summary.json");
    pub const CONSENT: &str = include_str!("../../schemas/examples/consent.json");

    /// The centers the embedded examples are written for (first and second center); any
    /// agency id naming them is rewritten to the federation's own centers.
    pub const CENTERS: [&str; 2] = ["suwon", "gangseo"];
}

/// Arguments of `plusgate dev-init`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevInitArgs {
    /// Folder to write the federation into; it must not exist yet or be empty.
    #[arg(long)]
    pub out: PathBuf,
    /// Center ids, comma-separated; center i listens on 127.0.0.1:(base-port + i).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_CENTERS)]
    pub centers: Vec<String>,
    /// Port of the first center.
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    pub base_port: u16,
}

impl DevInitArgs {
    /// Arguments for writing the default federation into `out`.
    pub fn with_defaults(out: impl Into<PathBuf>) -> DevInitArgs {
        DevInitArgs {
            out: out.into(),
            centers: DEFAULT_CENTERS.split(',').map(str::to_owned).collect(),
            base_port: DEFAULT_BASE_PORT,
        }
    }
}

/// Writes a development federation as described by `args` and returns its manifest.
///
/// Checks the arguments and that `args.out` is absent or empty before writing anything.
/// If writing fails half-way, the folder is left without `manifest.json` and the error
/// ([`DevInitError::Incomplete`]) says to delete it.
pub fn run(args: &DevInitArgs) -> Result<LoadedManifest, DevInitError> {
    let centers = plan_centers(&args.centers, args.base_port)?;
    prepare_out_dir(&args.out)?;
    write_federation(&args.out, &centers).map_err(|source| DevInitError::Incomplete {
        path: args.out.clone(),
        source: Box::new(source),
    })
}

/// Loads the federation in `dir`, writing a default one first if `dir/manifest.json`
/// does not exist (what `serve --dev` uses).
pub fn ensure(dir: &Path) -> Result<LoadedManifest, DevInitError> {
    let manifest = dir.join(MANIFEST_FILE);
    if manifest.is_file() {
        return Manifest::load(manifest).map_err(|source| match source {
            // Most likely written by an older plusgate (e.g. before the signed directory).
            ManifestError::Parse { .. } => DevInitError::Outdated {
                path: dir.to_owned(),
                source,
            },
            other => other.into(),
        });
    }
    run(&DevInitArgs::with_defaults(dir))
}

/// What to try next with a federation: the command that starts each node, and `curl`
/// commands that send the example referral and pull it from the recipient's inbox.
pub fn summary(federation: &LoadedManifest) -> String {
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
    let _ = writeln!(out, "\nStart each node (one terminal each):");
    for (_, center) in &centers {
        let config = federation.resolve(&center.config);
        let _ = writeln!(out, "  plusgate serve --config {}", quote(&config));
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
    let _ = writeln!(out, "\nSend the example referral as {sender}:");
    let _ = writeln!(
        out,
        "  curl --cacert {ca} --cert {} --key {} \\\n    -H 'content-type: application/json' --data @{} \\\n    {url}/v1/messages",
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
fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:@=,".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// One center of the federation about to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedCenter {
    id: String,
    port: u16,
}

/// Checks the center list and assigns ports.
fn plan_centers(centers: &[String], base_port: u16) -> Result<Vec<PlannedCenter>, DevInitError> {
    if centers.is_empty() {
        return Err(DevInitError::NoCenters);
    }
    if base_port == 0 {
        return Err(DevInitError::PortZero);
    }
    let mut seen = HashSet::new();
    let mut planned = Vec::with_capacity(centers.len());
    for (i, id) in centers.iter().enumerate() {
        if !pki::is_valid_name(id) {
            return Err(DevInitError::InvalidCenterName { name: id.clone() });
        }
        if id == EXAMPLES_DIR {
            return Err(DevInitError::ReservedCenterName { name: id.clone() });
        }
        if !seen.insert(id.as_str()) {
            return Err(DevInitError::DuplicateCenter { name: id.clone() });
        }
        let port =
            u16::try_from(usize::from(base_port) + i).map_err(|_| DevInitError::PortOverflow {
                base_port,
                count: centers.len(),
            })?;
        planned.push(PlannedCenter {
            id: id.clone(),
            port,
        });
    }
    Ok(planned)
}

/// Creates `out` if needed; refuses anything but an absent or empty folder.
fn prepare_out_dir(out: &Path) -> Result<(), DevInitError> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(DevInitError::OutNotEmpty {
                    path: out.to_owned(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create_dir(out),
        Err(_) if out.exists() && !out.is_dir() => Err(DevInitError::OutNotDirectory {
            path: out.to_owned(),
        }),
        Err(source) => Err(DevInitError::Io {
            path: out.to_owned(),
            source,
        }),
    }
}

fn write_federation(out: &Path, centers: &[PlannedCenter]) -> Result<LoadedManifest, DevInitError> {
    let validity = Validity::days_from_now(DEV_CERT_VALIDITY_DAYS);
    let ca = CertificateAuthority::generate(CA_COMMON_NAME, validity).map_err(|source| {
        DevInitError::Pki {
            what: "the CA".into(),
            source,
        }
    })?;
    write_pair(out, "ca", &ca.pem_pair(), "the CA")?;
    let authority = write_signing_key(&out.join(AUTHORITY_KEY_FILE), "the federation authority")?;

    let mut center_entries = BTreeMap::new();
    let mut directory_centers = BTreeMap::new();
    for center in centers {
        let (entry, signing_key) =
            write_center(out, &ca, &authority.public_key(), center, validity)?;
        directory_centers.insert(
            center.id.clone(),
            directory_center(&center.id, &entry.url, &signing_key),
        );
        center_entries.insert(center.id.clone(), entry);
    }
    write_directory(&out.join(DIRECTORY_FILE), directory_centers, &authority)?;
    let ids: Vec<&str> = centers.iter().map(|c| c.id.as_str()).collect();
    let examples = write_examples(out, &ids)?;

    let manifest = Manifest {
        ca_cert: "ca.crt".into(),
        directory: DIRECTORY_FILE.into(),
        centers: center_entries,
        examples,
    };
    let path = manifest.write(out)?;
    // Read back what was written, so a manifest that does not load is caught here.
    Ok(Manifest::load(path)?)
}

/// Writes one center's folder; returns its manifest entry and its node's signing key.
fn write_center(
    out: &Path,
    ca: &CertificateAuthority,
    authority: &PublicKey,
    center: &PlannedCenter,
    validity: Validity,
) -> Result<(CenterEntry, PublicKey), DevInitError> {
    let id = &center.id;
    let center_dir = out.join(id);
    create_dir(&center_dir)?;
    create_dir(&center_dir.join("agencies"))?;
    create_dir(&center_dir.join("officers"))?;

    let node = Role::Node { center: id.clone() };
    write_pair(&center_dir, "node", &issue(ca, &node, validity)?, &node)?;
    let signing_key =
        write_signing_key(&center_dir.join(NODE_SIGNING_KEY_FILE), &node)?.public_key();
    let data_key = crate::core::vault::generate_key_text().map_err(|e| DevInitError::Io {
        path: center_dir.join(DATA_KEY_FILE),
        source: io::Error::other(e.to_string()),
    })?;
    write_private(&center_dir.join(DATA_KEY_FILE), &data_key)?;

    let mut agencies = BTreeMap::new();
    for agency in AGENCIES {
        let role = Role::Agency {
            center: id.clone(),
            agency: agency.into(),
        };
        write_pair(
            &center_dir.join("agencies"),
            agency,
            &issue(ca, &role, validity)?,
            &role,
        )?;
        agencies.insert(role.id(), pair_paths(&format!("{id}/agencies/{agency}")));
    }
    let mut officers = BTreeMap::new();
    for officer in OFFICERS {
        let role = Role::Officer {
            center: id.clone(),
            name: officer.into(),
        };
        write_pair(
            &center_dir.join("officers"),
            officer,
            &issue(ca, &role, validity)?,
            &role,
        )?;
        officers.insert(role.id(), pair_paths(&format!("{id}/officers/{officer}")));
    }

    let config_path = center_dir.join("plusgate.toml");
    write_file(
        &config_path,
        config_toml(id, center.port, authority).as_bytes(),
    )?;
    let entry = CenterEntry {
        config: format!("{id}/plusgate.toml"),
        url: format!("https://127.0.0.1:{}", center.port),
        agencies,
        officers,
    };
    Ok((entry, signing_key))
}

/// The bare directory object as `dev-init` writes it (field order as documented).
#[derive(Serialize)]
struct UnsignedDirectory {
    version: u64,
    issued_at: String,
    centers: BTreeMap<String, DirectoryCenter>,
}

#[derive(Serialize)]
struct DirectoryCenter {
    url: String,
    node: String,
    signing_key: String,
    agencies: BTreeMap<String, DirectoryAgency>,
}

#[derive(Serialize)]
struct DirectoryAgency {
    sends: Vec<&'static str>,
    receives: Vec<&'static str>,
}

/// The directory entry of one development center: every agency of [`AGENCIES`].
fn directory_center(id: &str, url: &str, signing_key: &PublicKey) -> DirectoryCenter {
    DirectoryCenter {
        url: url.to_owned(),
        node: format!("urn:plusgate:node:{id}"),
        signing_key: signing_key.to_hex(),
        agencies: AGENCIES
            .iter()
            .map(|agency| {
                let entry = DirectoryAgency {
                    sends: AGENCY_SENDS.to_vec(),
                    receives: AGENCY_RECEIVES.to_vec(),
                };
                (format!("{id}/{agency}"), entry)
            })
            .collect(),
    }
}

/// Signs the directory listing `centers` with the authority's key and writes it to `path`.
fn write_directory(
    path: &Path,
    centers: BTreeMap<String, DirectoryCenter>,
    authority: &SigningKey,
) -> Result<(), DevInitError> {
    let now = time::OffsetDateTime::now_utc();
    let issued_at = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| DevInitError::Directory {
            source: DirectoryError::Malformed(format!("cannot format the issue time: {e}")),
        })?;
    let unsigned = UnsignedDirectory {
        version: DEV_DIRECTORY_VERSION,
        issued_at,
        centers,
    };
    let text = serde_json::to_string_pretty(&unsigned).map_err(|e| DevInitError::Directory {
        source: DirectoryError::Malformed(e.to_string()),
    })?;
    // Indented one level more, so it lines up under "directory" in the signed file. JSON
    // strings hold no raw newlines, so this changes only whitespace between tokens.
    let text = text.replace('\n', "\n  ");
    let signed = directory::sign(text.as_bytes(), authority)
        .map_err(|source| DevInitError::Directory { source })?;
    write_file(path, &signed)
}

/// Generates an Ed25519 key and writes it as PKCS#8 PEM to a new file only its owner can
/// read.
fn write_signing_key(path: &Path, whose: impl ToString) -> Result<SigningKey, DevInitError> {
    let (key, pem) = SigningKey::generate().map_err(|source| DevInitError::Key {
        what: whose.to_string(),
        source,
    })?;
    write_private(path, &pem)?;
    Ok(key)
}

/// Writes a new file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), DevInitError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = options
        .open(path)
        .and_then(|mut file| io::Write::write_all(&mut file, text.as_bytes()));
    result.map_err(|source| DevInitError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The node configuration of one development center, in the documented format.
fn config_toml(center: &str, port: u16, authority: &PublicKey) -> String {
    // Names were checked against `[a-z0-9][a-z0-9-]*`, so they need no TOML escaping.
    let mut toml = format!(
        r#"# plusgate node configuration for center "{center}", written by `plusgate dev-init`.
# Relative paths are relative to this file's folder.

[node]
id = "{center}"                     # center id
listen = "127.0.0.1:{port}"
data_dir = "data"

[tls]
cert = "node.crt"                # node's server certificate chain (PEM)
key = "node.key"                 # PKCS#8 PEM
client_ca = "../ca.crt"          # CA bundle that client certificates must chain to

[limits]                          # every key optional; defaults shown
body_bytes_max = 1048576
connections_max = 4096
inbox_lease_ms = 30000
inbox_wait_s_max = 30
inbox_pull_max = 100

[federation]                      # agencies come from the signed directory
directory = "../directory.json"   # signed by the federation authority, whose
                                  # Ed25519 public key is pinned here:
authority_key = "{authority}"
signing_key = "node-signing.key"  # this node's Ed25519 key (PKCS#8 PEM)
outbox_max = 100000               # optional keys from here on; defaults shown
retry_initial_ms = 200
retry_max_ms = 60000
message_ttl_s = 86400
batch_max = 1000
checkpoint_every = 1000           # a signed checkpoint of the audit chain every N entries
checkpoint_interval_s = 60        # … and at least this often while it grows

[storage]
data_key = "data.key"             # AES-256 key sealing payloads at rest (64 hex digits)
old_data_keys = []                # earlier keys, kept to open older payloads
"#
    );
    for officer in OFFICERS {
        let _ = write!(toml, "\n[[officers]]\nid = \"{center}/{officer}\"\n");
    }
    toml
}

/// Builds the example request bodies for `centers` (at least one), keyed by example name,
/// each with the agency id that sends it.
fn build_examples(
    centers: &[&str],
) -> Result<BTreeMap<&'static str, (String, Value)>, DevInitError> {
    let c0 = centers[0];
    let c1 = centers.get(1).copied();
    let employment = format!("{c0}/employment");
    let welfare = format!("{c0}/welfare");

    let renames: Vec<(&str, &str)> = embedded::CENTERS
        .iter()
        .copied()
        .zip(centers.iter().copied())
        .collect();
    let parse = |example: &'static str, text: &str| -> Result<Value, DevInitError> {
        let mut doc: Value = serde_json::from_str(text).map_err(|e| DevInitError::Example {
            example,
            detail: e.to_string(),
        })?;
        rename_centers(&mut doc, &renames);
        Ok(doc)
    };
    let envelope_template = parse("envelope", embedded::ENVELOPE)?;
    let subject = envelope_template
        .get("subject")
        .cloned()
        .ok_or(DevInitError::Example {
            example: "envelope",
            detail: "no field at /subject".into(),
        })?;
    let envelope = |id: &str, kind: &str, to: &str, consent: &str, payload: Value| {
        json!({
            "id": id,
            "type": kind,
            "version": 1,
            "to": to,
            "subject": subject,
            "consent_id": consent,
            "payload": payload,
        })
    };

    let mut examples = BTreeMap::new();

    let mut referral = parse("referral", embedded::REFERRAL)?;
    set(
        &mut referral,
        "referral",
        "/referrer/agency",
        employment.as_str(),
    )?;
    set(
        &mut referral,
        "referral",
        "/recipient/agency",
        welfare.as_str(),
    )?;
    if let Some(c1) = c1 {
        let remote_welfare = format!("{c1}/welfare");
        let mut remote = referral.clone();
        set(
            &mut remote,
            "referral-remote",
            "/recipient/agency",
            remote_welfare.as_str(),
        )?;
        let body = envelope(
            EXAMPLE_REFERRAL_REMOTE_ID,
            "referral",
            &remote_welfare,
            EXAMPLE_CONSENT_ID,
            remote,
        );
        examples.insert("referral-remote", (employment.clone(), body));
    }
    let body = envelope(
        EXAMPLE_REFERRAL_ID,
        "referral",
        &welfare,
        EXAMPLE_CONSENT_ID,
        referral,
    );
    examples.insert("referral", (employment.clone(), body));

    let mut status = parse("referral-status", embedded::REFERRAL_STATUS)?;
    set(
        &mut status,
        "referral-status",
        "/referral_id",
        EXAMPLE_REFERRAL_ID,
    )?;
    set(
        &mut status,
        "referral-status",
        "/changed_by/agency",
        welfare.as_str(),
    )?;
    let body = envelope(
        EXAMPLE_STATUS_ID,
        "referral-status",
        &employment,
        EXAMPLE_REPLY_CONSENT_ID,
        status,
    );
    examples.insert("referral-status", (welfare.clone(), body));

    let mut case_summary = parse("case-summary", embedded::CASE_SUMMARY)?;
    set(
        &mut case_summary,
        "case-summary",
        "/author/agency",
        welfare.as_str(),
    )?;
    let body = envelope(
        EXAMPLE_CASE_SUMMARY_ID,
        "case-summary",
        &employment,
        EXAMPLE_REPLY_CONSENT_ID,
        case_summary,
    );
    examples.insert("case-summary", (welfare.clone(), body));

    // Valid from yesterday for a year, like the development certificates, so the examples
    // pass the consent check whenever the federation is made.
    let now = time::OffsetDateTime::now_utc();
    let stamp = |t: time::OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap_or(t)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let from = stamp(now - time::Duration::days(1));
    let until = stamp(now + time::Duration::days(DEV_CERT_VALIDITY_DAYS));
    let template = parse("consent", embedded::CONSENT)?;
    let consent_example = |id: &str,
                           collector: &str,
                           recipients: Vec<Value>,
                           items: &[(&str, bool)]|
     -> Result<Value, DevInitError> {
        let mut c = template.clone();
        set(&mut c, "consent", "/id", id)?;
        set(&mut c, "consent", "/subject", subject.clone())?;
        set(&mut c, "consent", "/collected_by/agency", collector)?;
        set(&mut c, "consent", "/recipients", recipients)?;
        let items: Vec<Value> = items
            .iter()
            .map(|(item, sensitive)| {
                json!({"item": item, "sensitive": sensitive, "unique_identifier": false})
            })
            .collect();
        set(&mut c, "consent", "/items", items)?;
        for pointer in [
            "/valid_from",
            "/notice/shown_at",
            "/collection/collected_at",
        ] {
            set(&mut c, "consent", pointer, from.as_str())?;
        }
        set(&mut c, "consent", "/valid_until", until.as_str())?;
        set(
            &mut c,
            "consent",
            "/status_history",
            json!([{"status": "granted", "at": from, "by": collector}]),
        )?;
        Ok(c)
    };
    // What a referral carries; what a status and a case summary carry back.
    let referral_items = [
        ("household", true),
        ("needs", true),
        ("urgency", false),
        ("summary", true),
        ("tried", false),
        ("contact_preferences", false),
        ("requested_response_by", false),
    ];
    let reply_items = [
        ("reason", false),
        ("outcome", true),
        ("next_contact_at", false),
        ("case_opened_on", false),
        ("needs_assessment", true),
        ("services_received", true),
        ("plan", false),
        ("conference", false),
        ("summary", true),
    ];
    // The agencies of an integrated case-management network: the first center's welfare
    // and jobs teams, and every other center's welfare team.
    let mut recipients = vec![
        Value::from(welfare.as_str()),
        Value::from(format!("{c0}/jobs")),
    ];
    recipients.extend(
        centers[1..]
            .iter()
            .map(|c| Value::from(format!("{c}/welfare"))),
    );
    let consent = consent_example(EXAMPLE_CONSENT_ID, &employment, recipients, &referral_items)?;
    examples.insert("consent", (employment.clone(), consent));
    let reply = consent_example(
        EXAMPLE_REPLY_CONSENT_ID,
        &welfare,
        vec![Value::from(employment.as_str())],
        &reply_items,
    )?;
    examples.insert("consent-reply", (welfare.clone(), reply));
    if let Some(c1) = c1 {
        let remote_welfare = format!("{c1}/welfare");
        let reply = consent_example(
            EXAMPLE_REMOTE_REPLY_CONSENT_ID,
            &remote_welfare,
            vec![Value::from(employment.as_str())],
            &reply_items,
        )?;
        examples.insert("consent-reply-remote", (remote_welfare, reply));
    }

    Ok(examples)
}

/// Replaces the value at `pointer`, which the embedded example must have.
fn set(
    doc: &mut Value,
    example: &'static str,
    pointer: &str,
    value: impl Into<Value>,
) -> Result<(), DevInitError> {
    let slot = doc
        .pointer_mut(pointer)
        .ok_or_else(|| DevInitError::Example {
            example,
            detail: format!("no field at {pointer}"),
        })?;
    *slot = value.into();
    Ok(())
}

/// Rewrites every string of the form `<from>/<name>` to `<to>/<name>`, so agency ids
/// mentioned anywhere in an example (plans, participants, status history) name the
/// federation's own centers.
fn rename_centers(doc: &mut Value, renames: &[(&str, &str)]) {
    match doc {
        Value::String(text) => {
            let renamed = text.split_once('/').and_then(|(center, name)| {
                let (_, to) = renames.iter().find(|(from, _)| *from == center)?;
                pki::is_valid_name(name).then(|| format!("{to}/{name}"))
            });
            if let Some(renamed) = renamed {
                *text = renamed;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_centers(v, renames)),
        Value::Object(fields) => fields.values_mut().for_each(|v| rename_centers(v, renames)),
        _ => {}
    }
}

fn write_examples(
    out: &Path,
    centers: &[&str],
) -> Result<BTreeMap<String, ExampleEntry>, DevInitError> {
    let dir = out.join(EXAMPLES_DIR);
    create_dir(&dir)?;
    let mut entries = BTreeMap::new();
    for (name, (sender, body)) in build_examples(centers)? {
        let file = format!("{EXAMPLES_DIR}/{name}.json");
        let mut text = serde_json::to_string_pretty(&body).map_err(|e| DevInitError::Example {
            example: name,
            detail: e.to_string(),
        })?;
        text.push('\n');
        write_file(&out.join(&file), text.as_bytes())?;
        entries.insert(name.to_owned(), ExampleEntry { file, sender });
    }
    Ok(entries)
}

fn issue(
    ca: &CertificateAuthority,
    role: &Role,
    validity: Validity,
) -> Result<IssuedCert, DevInitError> {
    ca.issue(role, validity)
        .map_err(|source| DevInitError::Pki {
            what: role.to_string(),
            source,
        })
}

fn write_pair(
    dir: &Path,
    stem: &str,
    pair: &IssuedCert,
    what: impl ToString,
) -> Result<(), DevInitError> {
    pki::write_pem_pair(dir, stem, pair)
        .map(|_| ())
        .map_err(|source| DevInitError::Pki {
            what: what.to_string(),
            source,
        })
}

fn pair_paths(stem: &str) -> KeyPairPaths {
    KeyPairPaths {
        cert: format!("{stem}.crt"),
        key: format!("{stem}.key"),
    }
}

fn create_dir(path: &Path) -> Result<(), DevInitError> {
    fs::create_dir_all(path).map_err(|source| DevInitError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &[u8]) -> Result<(), DevInitError> {
    fs::write(path, contents).map_err(|source| DevInitError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Why `dev-init` refused or failed. Variants up to [`DevInitError::OutNotDirectory`] are
/// mistakes in the command line and leave the disk untouched.
#[derive(Debug, thiserror::Error)]
pub enum DevInitError {
    /// `--centers` was empty.
    #[error("no centers given: --centers needs at least one center id")]
    NoCenters,
    /// A center id is outside the allowed alphabet.
    #[error("invalid center id {name:?}: center ids must match [a-z0-9][a-z0-9-]{{0,62}}")]
    InvalidCenterName {
        /// The rejected id.
        name: String,
    },
    /// A center id collides with a folder dev-init itself writes.
    #[error(
        "center id {name:?} is reserved: the federation folder uses it for the example bodies"
    )]
    ReservedCenterName {
        /// The rejected id.
        name: String,
    },
    /// A center id was given twice.
    #[error("center id {name:?} is given more than once in --centers")]
    DuplicateCenter {
        /// The repeated id.
        name: String,
    },
    /// `--base-port 0` would give every node an ephemeral port the manifest cannot name.
    #[error("--base-port must be between 1 and 65535")]
    PortZero,
    /// The last center's port would exceed 65535.
    #[error("--base-port {base_port} leaves no room for {count} centers: ports base-port..base-port+{count}-1 must all be at most 65535")]
    PortOverflow {
        /// The requested first port.
        base_port: u16,
        /// Number of centers.
        count: usize,
    },
    /// The output folder already has files in it.
    #[error("refusing to write into {path}: the folder is not empty; choose another --out or delete it first")]
    OutNotEmpty {
        /// The output folder.
        path: PathBuf,
    },
    /// The output path exists and is not a folder.
    #[error("refusing to write into {path}: it exists and is not a folder; choose another --out")]
    OutNotDirectory {
        /// The output path.
        path: PathBuf,
    },
    /// A file or folder could not be created.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A certificate could not be generated or written.
    #[error("cannot create the certificate of {what}: {source}")]
    Pki {
        /// Whose certificate, e.g. `agency suwon/employment`.
        what: String,
        /// The underlying error.
        source: PkiError,
    },
    /// An embedded payload example lacks a field dev-init patches (schemas/examples is out
    /// of step with this module: a bug in plusgate).
    #[error("embedded example {example:?} cannot be used: {detail}")]
    Example {
        /// Which example.
        example: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// An Ed25519 signing key could not be generated.
    #[error("cannot create the signing key of {what}: {source}")]
    Key {
        /// Whose key, e.g. `the federation authority`.
        what: String,
        /// The underlying error.
        source: KeyError,
    },
    /// The federation directory could not be built or signed (a bug in plusgate).
    #[error("cannot create the federation directory: {source}")]
    Directory {
        /// The underlying error.
        source: DirectoryError,
    },
    /// The manifest could not be written or read back.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The folder holds a federation whose manifest this version cannot read (written by an
    /// older plusgate); it has to be recreated.
    #[error("{path} holds a development federation this version of plusgate cannot use; delete the folder and run again to recreate it ({source})")]
    Outdated {
        /// The federation folder.
        path: PathBuf,
        /// Why its manifest does not load.
        source: ManifestError,
    },
    /// Writing failed half-way; the folder has no manifest and should be deleted.
    #[error("dev-init failed, leaving {path} incomplete (it has no manifest.json; delete it before retrying): {source}")]
    Incomplete {
        /// The output folder.
        path: PathBuf,
        /// What failed.
        source: Box<DevInitError>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centers(list: &str) -> Vec<String> {
        list.split(',').map(str::to_owned).collect()
    }

    fn init(dir: &Path, list: &str, base_port: u16) -> LoadedManifest {
        let args = DevInitArgs {
            out: dir.join("fed"),
            centers: centers(list),
            base_port,
        };
        run(&args).expect("dev-init")
    }

    fn read_json(path: &Path) -> Value {
        let text = fs::read_to_string(path).expect("read example");
        serde_json::from_str(&text).expect("example is JSON")
    }

    fn example(m: &LoadedManifest, name: &str) -> Value {
        read_json(&m.example(name).expect("example listed").0)
    }

    #[test]
    fn default_federation_is_complete_and_follows_the_layout() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), DEFAULT_CENTERS, DEFAULT_BASE_PORT);
        assert_eq!(m.missing_files(), Vec::<PathBuf>::new());
        let fed = tmp.path().join("fed");
        for file in [
            "ca.crt",
            "ca.key",
            "suwon/node.crt",
            "suwon/node.key",
            "jeongeup/agencies/saeil.key",
            "gangseo/officers/privacy-officer.crt",
            "examples/referral-remote.json",
            "authority.key",
            "directory.json",
            "suwon/node-signing.key",
            "jeongeup/node-signing.key",
        ] {
            assert!(fed.join(file).is_file(), "{file} missing");
        }
        let manifest = m.manifest();
        assert_eq!(manifest.ca_cert, "ca.crt");
        assert_eq!(manifest.directory, "directory.json");
        assert_eq!(m.directory_path(), fed.join("directory.json"));
        assert_eq!(manifest.centers.len(), 3);
        let suwon = m.center("suwon").expect("suwon");
        assert_eq!(suwon.config, "suwon/plusgate.toml");
        assert_eq!(suwon.agencies.len(), AGENCIES.len());
        assert_eq!(
            suwon.agencies["suwon/employment"],
            KeyPairPaths {
                cert: "suwon/agencies/employment.crt".into(),
                key: "suwon/agencies/employment.key".into(),
            }
        );
        assert!(suwon.officers.contains_key("suwon/privacy-officer"));
        let names: Vec<&str> = manifest.examples.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "case-summary",
                "consent",
                "consent-reply",
                "consent-reply-remote",
                "referral",
                "referral-remote",
                "referral-status"
            ]
        );
        // Whatever the manifest says is also what is on disk, after a fresh load.
        assert_eq!(
            &Manifest::load(fed.join(MANIFEST_FILE)).expect("reload"),
            &m
        );
    }

    #[test]
    fn ports_follow_base_port_in_center_order() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "zeta,alpha", 9000);
        let order: Vec<(&str, &str)> = m
            .centers_in_order()
            .into_iter()
            .map(|(id, c)| (id, c.url.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("zeta", "https://127.0.0.1:9000"),
                ("alpha", "https://127.0.0.1:9001")
            ]
        );
        let config =
            fs::read_to_string(tmp.path().join("fed/alpha/plusgate.toml")).expect("config");
        assert!(config.contains("listen = \"127.0.0.1:9001\""));
    }

    #[test]
    fn configs_parse_as_toml_and_name_the_federation_instead_of_agencies() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "suwon,gangseo", 7443);
        for (id, center) in m.centers_in_order() {
            let text = fs::read_to_string(m.resolve(&center.config)).expect("config");
            let config: toml::Table = toml::from_str(&text).expect("config is TOML");
            assert_eq!(config["node"]["id"].as_str(), Some(id));
            assert_eq!(config["node"]["data_dir"].as_str(), Some("data"));
            assert_eq!(config["tls"]["client_ca"].as_str(), Some("../ca.crt"));
            assert_eq!(config["tls"]["cert"].as_str(), Some("node.crt"));
            assert!(
                config.get("agencies").is_none(),
                "agencies come from the directory"
            );
            let federation = &config["federation"];
            assert_eq!(federation["directory"].as_str(), Some("../directory.json"));
            assert_eq!(federation["signing_key"].as_str(), Some("node-signing.key"));
            let authority = SigningKey::load(&m.resolve(AUTHORITY_KEY_FILE)).expect("authority");
            assert_eq!(
                federation["authority_key"].as_str(),
                Some(authority.public_key().to_hex().as_str())
            );
            let officers = config["officers"].as_array().expect("officers");
            assert_eq!(
                officers[0]["id"].as_str(),
                Some(format!("{id}/privacy-officer").as_str())
            );
            // The config's relative paths point at the files dev-init wrote.
            let center_dir = m.resolve(id);
            assert!(center_dir.join("node.key").is_file());
            assert!(center_dir.join("../ca.crt").is_file());
            assert!(center_dir.join("../directory.json").is_file());
            assert!(center_dir.join("node-signing.key").is_file());
        }
    }

    #[test]
    fn configs_load_as_node_configs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "suwon,gangseo", 7443);
        for (id, center) in m.centers_in_order() {
            let path = m.resolve(&center.config);
            let config = match crate::config::Config::load(&path) {
                Ok(c) => c,
                Err(e) => panic!("config of {id} does not load: {e}"),
            };
            assert!(config.directory.agencies.is_empty());
            assert_eq!(config.directory.officers.len(), OFFICERS.len());
            // What the node will do at start: load its key and the directory it points at.
            let federation = config.federation.expect("[federation]");
            assert_eq!(federation.batch_max, 1000);
            let key = SigningKey::load(&federation.signing_key).expect("node signing key");
            let directory = crate::core::directory::Directory::load(
                &federation.directory,
                &federation.authority_key,
            )
            .expect("directory verifies against the pinned authority key");
            let center_id = crate::core::identity::CenterId::parse(id).expect("center id");
            let entry = directory.center(&center_id).expect("center listed");
            assert_eq!(entry.signing_key, key.public_key());
            assert_eq!(entry.url, center.url);
            assert_eq!(directory.local_agencies(&center_id).len(), AGENCIES.len());
        }
    }

    #[test]
    fn the_directory_lists_every_center_and_agency_signed_by_the_authority() {
        use crate::core::directory::Directory;
        use crate::core::identity::{AgencyId, CenterId};
        use crate::core::message::MessageType;

        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "north,south,east", 9000);
        let authority = SigningKey::load(&m.resolve(AUTHORITY_KEY_FILE)).expect("authority");
        let directory =
            Directory::load(&m.directory_path(), &authority.public_key()).expect("verifies");
        assert_eq!(directory.version, DEV_DIRECTORY_VERSION);
        assert!(
            directory.issued_at.ends_with('Z'),
            "{}",
            directory.issued_at
        );
        assert_eq!(directory.centers.len(), 3);
        let all = [
            MessageType::Referral,
            MessageType::ReferralStatus,
            MessageType::CaseSummary,
        ];
        for (id, center) in m.centers_in_order() {
            let entry = directory
                .center(&CenterId::parse(id).expect("id"))
                .expect("listed");
            assert_eq!(entry.url, center.url);
            let node_key = SigningKey::load(&m.resolve(&format!("{id}/{NODE_SIGNING_KEY_FILE}")))
                .expect("node key");
            assert_eq!(entry.signing_key, node_key.public_key());
            assert_eq!(entry.agencies.len(), AGENCIES.len());
            for agency in AGENCIES {
                let a = directory
                    .agency(&AgencyId::from_parts(id, agency).expect("agency id"))
                    .expect("agency listed");
                assert_eq!(a.sends, all);
                assert_eq!(a.receives, all);
            }
        }
        // Every node signs with its own key, and none with the authority's.
        let keys: HashSet<String> = directory
            .centers
            .values()
            .map(|c| c.signing_key.to_hex())
            .chain([authority.public_key().to_hex()])
            .collect();
        assert_eq!(keys.len(), 4);

        // Readable: the directory is indented under its member, and the file ends in a newline.
        let text = fs::read_to_string(m.directory_path()).expect("read");
        assert!(
            text.starts_with("{\n  \"directory\": {\n    \"version\": 1,\n    \"issued_at\": "),
            "{text}"
        );
        assert!(text.ends_with("\"\n}\n"), "{text}");
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "suwon", 7443);
        for file in [
            AUTHORITY_KEY_FILE,
            "suwon/node-signing.key",
            "suwon/node.key",
        ] {
            let mode = fs::metadata(m.resolve(file))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn running_twice_into_the_same_folder_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        init(tmp.path(), "suwon", 7443);
        let err = run(&DevInitArgs::with_defaults(tmp.path().join("fed"))).expect_err("second run");
        assert!(matches!(err, DevInitError::OutNotEmpty { .. }));
        let text = err.to_string();
        assert!(
            text.contains("not empty") && text.contains("--out") && text.contains("delete"),
            "{text}"
        );
    }

    #[test]
    fn an_existing_empty_folder_is_used_and_a_file_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        run(&DevInitArgs::with_defaults(tmp.path())).expect("empty folder is fine");
        let file = tmp.path().join("ca.crt");
        let err = run(&DevInitArgs::with_defaults(&file)).expect_err("a file");
        assert!(matches!(err, DevInitError::OutNotDirectory { .. }), "{err}");
    }

    #[test]
    fn bad_arguments_are_refused_before_writing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("fed");
        let check = |list: &[&str], base_port: u16| {
            let args = DevInitArgs {
                out: out.clone(),
                centers: list.iter().map(|s| s.to_string()).collect(),
                base_port,
            };
            run(&args).expect_err("refused")
        };
        assert!(matches!(check(&[], 7443), DevInitError::NoCenters));
        for bad in ["Suwon", "", "-x", "su won", "a/b", "수원"] {
            let err = check(&["suwon", bad], 7443);
            assert!(
                matches!(err, DevInitError::InvalidCenterName { ref name } if name == bad),
                "{err}"
            );
        }
        assert!(matches!(
            check(&["examples"], 7443),
            DevInitError::ReservedCenterName { .. }
        ));
        assert!(matches!(
            check(&["a", "b", "a"], 7443),
            DevInitError::DuplicateCenter { .. }
        ));
        assert!(matches!(check(&["a"], 0), DevInitError::PortZero));
        assert!(matches!(
            check(&["a", "b"], 65535),
            DevInitError::PortOverflow { .. }
        ));
        assert!(
            !out.exists(),
            "nothing may be written for refused arguments"
        );
        // The last port may be exactly 65535.
        assert_eq!(
            plan_centers(&centers("a,b"), 65534).expect("fits")[1].port,
            65535
        );
    }

    #[test]
    fn examples_are_consistent_with_each_other_and_the_centers() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "north,south,east", 7443);
        let senders: BTreeMap<&str, &str> = m
            .manifest()
            .examples
            .iter()
            .map(|(name, e)| (name.as_str(), e.sender.as_str()))
            .collect();
        assert_eq!(senders["referral"], "north/employment");
        assert_eq!(senders["referral-remote"], "north/employment");
        assert_eq!(senders["referral-status"], "north/welfare");
        assert_eq!(senders["case-summary"], "north/welfare");
        assert_eq!(senders["consent"], "north/employment");

        let referral = example(&m, "referral");
        assert_eq!(referral["id"], EXAMPLE_REFERRAL_ID);
        assert_eq!(referral["type"], "referral");
        assert_eq!(referral["version"], 1);
        assert_eq!(referral["to"], "north/welfare");
        assert_eq!(referral["consent_id"], EXAMPLE_CONSENT_ID);
        assert_eq!(
            referral["payload"]["referrer"]["agency"],
            "north/employment"
        );
        assert_eq!(referral["payload"]["recipient"]["agency"], "north/welfare");
        let subject = referral["subject"].as_str().expect("subject");
        assert!(subject.starts_with("ps-"));

        let remote = example(&m, "referral-remote");
        assert_eq!(remote["id"], EXAMPLE_REFERRAL_REMOTE_ID);
        assert_eq!(remote["to"], "south/welfare");
        assert_eq!(remote["payload"]["recipient"]["agency"], "south/welfare");
        assert_eq!(remote["payload"]["referrer"]["agency"], "north/employment");

        let status = example(&m, "referral-status");
        assert_eq!(status["id"], EXAMPLE_STATUS_ID);
        assert_eq!(status["to"], "north/employment");
        assert_eq!(status["payload"]["referral_id"], EXAMPLE_REFERRAL_ID);
        assert_eq!(status["payload"]["changed_by"]["agency"], "north/welfare");

        let summary = example(&m, "case-summary");
        assert_eq!(summary["id"], EXAMPLE_CASE_SUMMARY_ID);
        assert_eq!(summary["to"], "north/employment");
        assert_eq!(summary["payload"]["author"]["agency"], "north/welfare");

        let consent = example(&m, "consent");
        assert_eq!(consent["id"], EXAMPLE_CONSENT_ID);
        assert_eq!(consent["subject"], subject);
        assert_eq!(
            consent["recipients"],
            json!([
                "north/welfare",
                "north/jobs",
                "south/welfare",
                "east/welfare"
            ])
        );
        assert_eq!(consent["collected_by"]["agency"], "north/employment");
        // Answers go back under consents their senders collected.
        assert_eq!(status["consent_id"], EXAMPLE_REPLY_CONSENT_ID);
        assert_eq!(summary["consent_id"], EXAMPLE_REPLY_CONSENT_ID);
        let reply = example(&m, "consent-reply");
        assert_eq!(reply["id"], EXAMPLE_REPLY_CONSENT_ID);
        assert_eq!(reply["collected_by"]["agency"], "north/welfare");
        assert_eq!(reply["recipients"], json!(["north/employment"]));
        let remote_reply = example(&m, "consent-reply-remote");
        assert_eq!(remote_reply["collected_by"]["agency"], "south/welfare");
        assert_eq!(senders["consent-reply-remote"], "south/welfare");
        assert!(
            consent.get("payload").is_none(),
            "the consent example is a bare document"
        );

        // No agency id of the centers the embedded examples were written for survives.
        for name in m.manifest().examples.keys() {
            let text = fs::read_to_string(m.example(name).expect("listed").0).expect("read");
            assert!(
                !text.contains("suwon/") && !text.contains("gangseo/"),
                "{name}: {text}"
            );
        }
    }

    #[test]
    fn examples_validate_against_the_embedded_schemas() {
        use crate::core::message::MessageType;
        use crate::core::schema::Schemas;

        let schemas = Schemas::embedded().expect("schemas compile");
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "north,south", 7443);
        for name in m.manifest().examples.keys() {
            let body = example(&m, name);
            let result = if name.starts_with("consent") {
                schemas.validate_payload(MessageType::Consent, 1, &body)
            } else {
                schemas.validate(&body)
            };
            if let Err(violations) = result {
                panic!("example {name} is invalid: {violations:?}");
            }
        }
    }

    #[test]
    fn one_center_has_no_remote_referral_and_a_single_recipient() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "solo", 7443);
        assert!(m.example("referral-remote").is_err());
        assert_eq!(
            example(&m, "consent")["recipients"],
            json!(["solo/welfare", "solo/jobs"])
        );
        assert_eq!(m.missing_files(), Vec::<PathBuf>::new());
    }

    #[test]
    fn ensure_creates_once_then_loads() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("dev");
        let first = ensure(&dir).expect("create");
        assert_eq!(first.manifest().centers.len(), 3);
        let files = [
            "ca.crt",
            "authority.key",
            "directory.json",
            "suwon/node-signing.key",
        ];
        let before: Vec<Vec<u8>> = files
            .iter()
            .map(|f| fs::read(dir.join(f)).expect("file"))
            .collect();
        let second = ensure(&dir).expect("load");
        assert_eq!(first, second);
        for (file, contents) in files.iter().zip(&before) {
            assert_eq!(
                &fs::read(dir.join(file)).expect("file"),
                contents,
                "{file} must not be regenerated"
            );
        }
    }

    #[test]
    fn ensure_refuses_a_federation_written_before_the_signed_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("dev");
        ensure(&dir).expect("create");
        let path = dir.join(MANIFEST_FILE);
        let mut old: Value = read_json(&path);
        old.as_object_mut().expect("object").remove("directory");
        fs::write(&path, old.to_string()).expect("write");
        let err = ensure(&dir).expect_err("old manifest");
        assert!(matches!(err, DevInitError::Outdated { .. }), "{err}");
        assert!(err.to_string().contains("delete the folder"), "{err}");
    }

    #[test]
    fn ensure_refuses_a_folder_left_incomplete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("ca.crt"), "partial").expect("write");
        assert!(matches!(
            ensure(tmp.path()),
            Err(DevInitError::OutNotEmpty { .. })
        ));
    }

    #[test]
    fn summary_shows_serve_and_curl_commands() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = init(tmp.path(), "suwon,gangseo", 7443);
        let text = summary(&m);
        let fed = tmp.path().join("fed");
        for center in ["suwon", "gangseo"] {
            let config = fed.join(center).join("plusgate.toml");
            assert!(
                text.contains(&format!("plusgate serve --config {}", quote(&config))),
                "{text}"
            );
        }
        assert!(text.contains(&format!("--cacert {}", quote(&fed.join("ca.crt")))));
        assert!(text.contains(&quote(&fed.join("suwon/agencies/employment.crt"))));
        assert!(text.contains(&format!(
            "--data @{}",
            quote(&fed.join("examples/referral.json"))
        )));
        assert!(text.contains("https://127.0.0.1:7443/v1/messages"));
        assert!(text.contains(&quote(&fed.join("suwon/agencies/welfare.key"))));
        assert!(text.contains("https://127.0.0.1:7443/v1/inbox?max=10&wait=5"));
    }

    #[test]
    fn command_line_defaults_and_comma_lists() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: DevInitArgs,
        }
        let cli = Cli::try_parse_from(["dev-init", "--out", "x"]).expect("defaults");
        assert_eq!(cli.args.centers, centers(DEFAULT_CENTERS));
        assert_eq!(cli.args.base_port, DEFAULT_BASE_PORT);
        let cli = Cli::try_parse_from([
            "dev-init",
            "--out",
            "x",
            "--centers",
            "a,b",
            "--base-port",
            "9000",
        ])
        .expect("explicit");
        assert_eq!(cli.args.centers, ["a", "b"]);
        assert_eq!(cli.args.base_port, 9000);
        assert!(
            Cli::try_parse_from(["dev-init"]).is_err(),
            "--out is required"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(Path::new("/tmp/fed/ca.crt")), "/tmp/fed/ca.crt");
        assert_eq!(
            quote(Path::new("/tmp/my fed/ca.crt")),
            "'/tmp/my fed/ca.crt'"
        );
        assert_eq!(quote(Path::new("it's")), r"'it'\''s'");
    }
}
