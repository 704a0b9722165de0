//! Unit tests of `cli::export`.

use super::*;

const AT: &str = "2026-11-23T12:00:00Z";

use crate::core::audit::test_event as event;
use crate::core::audit::Prev;

/// A node's chain of ten entries, its stored checkpoints for 4 and 8 entries, its key,
/// and a directory listing it (and `gangseo`, with another key).
struct Node {
    key: SigningKey,
    other: SigningKey,
    entries: Vec<AuditEntry>,
    stored: Vec<Checkpoint>,
    directory: Directory,
}

fn node() -> Node {
    let key = SigningKey::generate().expect("key").0;
    let other = SigningKey::generate().expect("key").0;
    let mut head = Head::GENESIS;
    let mut entries = Vec::new();
    let mut stored = Vec::new();
    for n in 0..10 {
        entries.push(head.append(event(n)));
        if head.next_seq % 4 == 0 {
            let at = format!("2026-11-23T11:00:{n:02}Z");
            let prev = stored.last().map_or_else(Prev::genesis, Prev::of);
            stored.push(Checkpoint::sign(&key, "suwon", &head, &at, prev));
        }
    }
    let center = |name: &str, port: u16, key: &SigningKey| {
        serde_json::json!({
            "url": format!("https://127.0.0.1:{port}"),
            "node": format!("urn:plusgate:node:{name}"),
            "signing_key": key.public_key().to_hex(),
            "agencies": {}
        })
    };
    let unsigned = serde_json::json!({
        "version": 1,
        "issued_at": "2026-11-01T00:00:00Z",
        "centers": {"suwon": center("suwon", 7443, &key), "gangseo": center("gangseo", 7444, &other)}
    });
    let authority = SigningKey::generate().expect("key").0;
    let signed = crate::core::directory::sign(unsigned.to_string().as_bytes(), &authority)
        .expect("sign directory");
    let directory =
        Directory::from_signed_bytes(&signed, &authority.public_key()).expect("directory verifies");
    Node {
        key,
        other,
        entries,
        stored,
        directory,
    }
}

impl Node {
    /// The export from `since`, as lines without their newlines.
    fn export(&self, since: u64) -> Vec<String> {
        let mut out = Vec::new();
        let closing = Closing {
            key: &self.key,
            node: "suwon",
            at: AT,
        };
        write(
            self.entries.iter().cloned().map(Ok::<_, String>),
            self.stored.iter().cloned().map(Ok::<_, String>),
            since,
            Some(&closing),
            &mut out,
        )
        .expect("export");
        let text = String::from_utf8(out).expect("utf-8");
        assert!(text.ends_with('\n'));
        text.lines().map(str::to_owned).collect()
    }

    fn verify(&self, lines: &[String]) -> Result<Summary, ExportError> {
        let mut text = lines.join("\n");
        text.push('\n');
        verify(text.as_bytes(), &self.directory)
    }

    /// Asserts the export is refused at `line` (from 1) with `needle` in the problem.
    #[track_caller]
    fn refused(&self, lines: &[String], line: u64, needle: &str) -> ExportError {
        let err = self.verify(lines).expect_err("must be refused");
        assert_eq!(err.place.line(), Some(line), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        err
    }

    /// The head after the first `length` entries.
    fn head(&self, length: usize) -> Head {
        if length == 0 {
            return Head::GENESIS;
        }
        Head::after(&self.entries[length - 1]).expect("entry")
    }
}

/// The good export from 0, line by line:
/// 1–4 entries 0–3, 5 checkpoint(4), 6–9 entries 4–7, 10 checkpoint(8), 11–12 entries
/// 8–9, 13 the closing checkpoint(10).
#[test]
fn a_good_export_verifies() {
    let node = node();
    let lines = node.export(0);
    assert_eq!(lines.len(), 13);
    assert!(lines[4].starts_with("{\"checkpoint\":{\"node\":\"suwon\",\"length\":4,"));
    assert!(lines[12].starts_with("{\"checkpoint\":{\"node\":\"suwon\",\"length\":10,"));
    assert!(lines[0].starts_with("{\"entry\":{\"seq\":0,"));
    let summary = node.verify(&lines).expect("verifies");
    assert_eq!(
        summary,
        Summary {
            node: "suwon".into(),
            first_seq: 0,
            entries: 10,
            checkpoints: 3,
            length: 10,
            head: node.entries[9].hash.clone(),
            signed_at: AT.into(),
        }
    );
    assert!(
        summary
            .to_string()
            .starts_with("audit export ok: 10 entries (seq 0 to 9) of node suwon, 3 checkpoints"),
        "{summary}"
    );
    // Windows line ends do not matter.
    let crlf = lines.join("\r\n") + "\r\n";
    assert_eq!(verify(crlf.as_bytes(), &node.directory), Ok(summary));
}

#[test]
fn the_writer_counts_and_places_what_it_writes() {
    let node = node();
    let mut out = Vec::new();
    let written = write(
        node.entries.iter().cloned().map(Ok::<_, String>),
        node.stored.iter().cloned().map(Ok::<_, String>),
        5,
        None,
        &mut out,
    )
    .expect("export");
    assert_eq!(
        written,
        Written {
            entries: 5,
            checkpoints: 1,
            since: 5,
            length: 10,
            closed: false
        }
    );
    // Without a closing checkpoint the end is not vouched for.
    let text = String::from_utf8(out).expect("utf-8");
    let err = verify(text.as_bytes(), &node.directory).expect_err("uncovered");
    assert_eq!(err.place, Place::Entry { line: 5, seq: 8 });
    assert!(
        err.problem
            .starts_with("entries after 7 are not covered by a signed checkpoint"),
        "{err}"
    );
}

#[test]
fn an_export_from_a_later_entry_verifies_with_or_without_an_anchor() {
    let node = node();
    // From 4: the stored checkpoint for 4 entries comes first, as the anchor.
    let lines = node.export(4);
    assert!(lines[0].starts_with("{\"checkpoint\":{\"node\":\"suwon\",\"length\":4,"));
    assert!(lines[1].starts_with("{\"entry\":{\"seq\":4,"));
    let summary = node.verify(&lines).expect("verifies");
    assert_eq!((summary.first_seq, summary.entries), (4, 6));
    assert_eq!(summary.checkpoints, 3);

    // From 5: no anchor; the checkpoint for 8 entries vouches for entry 5's `prev`.
    let lines = node.export(5);
    assert!(lines[0].starts_with("{\"entry\":{\"seq\":5,"));
    let summary = node.verify(&lines).expect("verifies");
    assert_eq!(
        (summary.first_seq, summary.entries, summary.length),
        (5, 5, 10)
    );

    // From the end: only the closing checkpoint.
    let lines = node.export(10);
    assert_eq!(lines.len(), 1);
    let summary = node.verify(&lines).expect("verifies");
    assert_eq!((summary.entries, summary.length), (0, 10));
    assert!(summary
        .to_string()
        .contains("no entries after the first 10"));

    // Beyond the end: refused.
    let err = write(
        node.entries.iter().cloned().map(Ok::<_, String>),
        node.stored.iter().cloned().map(Ok::<_, String>),
        11,
        None,
        &mut Vec::new(),
    )
    .expect_err("beyond the end");
    assert!(matches!(
        err,
        WriteError::SinceBeyondEnd {
            since: 11,
            length: 10
        }
    ));

    // The first entry must be the one the anchor names, and link to its head.
    let mut lines = node.export(4);
    lines.remove(1);
    node.refused(
        &lines,
        2,
        "should be seq 4, as the checkpoint on line 1 says",
    );
    let mut lines = node.export(4);
    let forged = Checkpoint::sign_unchained(
        &node.key,
        "suwon",
        &Head {
            next_seq: 4,
            hash: [9; 32],
        },
        AT,
    );
    lines[0] = Line::Checkpoint(forged).to_json();
    node.refused(&lines, 2, "does not link to the checkpoint on line 1");
}

#[test]
fn a_flipped_byte_anywhere_in_an_entry_or_checkpoint_is_named_at_its_line() {
    let node = node();
    let good = node.export(0);
    // Line 7 is entry 5, line 10 the checkpoint for 8 entries.
    for (index, line) in [(6, 7), (9, 10)] {
        for position in 0..good[index].len() {
            for mask in [0x01u8, 0x20] {
                let mut bytes = good[index].clone().into_bytes();
                bytes[position] ^= mask;
                let mut text = good.join("\n").into_bytes();
                let start: usize = good[..index].iter().map(|l| l.len() + 1).sum();
                text[start..start + bytes.len()].copy_from_slice(&bytes);
                text.push(b'\n');
                let err = verify(text.as_slice(), &node.directory).expect_err("detected");
                assert_eq!(
                    err.place.line(),
                    Some(line),
                    "byte {position} ^ {mask:#x}: {err}"
                );
            }
        }
    }
    // A changed value names the entry and says what is wrong with it.
    let mut lines = good.clone();
    lines[6] = lines[6].replace("suwon/welfare", "suwon/welfarf");
    let err = node.refused(&lines, 7, "content does not match its hash (altered)");
    assert_eq!(err.place, Place::Entry { line: 7, seq: 5 });
    // A broken line is named as a line.
    let mut lines = good.clone();
    lines[6] = lines[6].replacen('"', "#", 3);
    let err = node.refused(&lines, 7, "not an export line");
    assert_eq!(
        err.place,
        Place::Line {
            line: 7,
            after: Some(4)
        }
    );
    // The same value written differently (a tool reformatted it) is not the export.
    let mut lines = good;
    lines[6] = lines[6].replacen(",", ", ", 1);
    node.refused(&lines, 7, "not byte for byte");
}

#[test]
fn a_removed_entry_is_named() {
    let node = node();
    let mut lines = node.export(0);
    lines.remove(6); // entry 5
    let err = node.refused(&lines, 7, "out of order");
    assert_eq!(err.place, Place::Entry { line: 7, seq: 6 });
    assert!(err.problem.ends_with("expected seq 5"), "{err}");

    // The entry right before a checkpoint: the checkpoint now stands after entry 2.
    let mut lines = node.export(0);
    lines.remove(3); // entry 3
    let err = node.refused(&lines, 4, "entries 3 to 3 missing");
    assert_eq!(err.place, Place::Checkpoint { line: 4, length: 4 });

    // A removed checkpoint leaves a verifiable export (the next one covers more).
    let mut lines = node.export(0);
    lines.remove(4);
    assert_eq!(node.verify(&lines).expect("verifies").checkpoints, 2);
}

#[test]
fn an_inserted_entry_is_named() {
    let node = node();
    // A copy of entry 5 after itself.
    let mut lines = node.export(0);
    lines.insert(7, lines[6].clone());
    let err = node.refused(&lines, 8, "out of order");
    assert_eq!(err.place, Place::Entry { line: 8, seq: 5 });

    // A forged entry that links to entry 5 and hashes right: the break is at the next
    // entry, whose seq and prev no longer fit.
    let mut head = node.head(6);
    let forged = head.append(event(99));
    let mut lines = node.export(0);
    lines.insert(7, Line::Entry(forged).to_json());
    let err = node.refused(&lines, 9, "out of order");
    assert_eq!(err.place, Place::Entry { line: 9, seq: 6 });
}

#[test]
fn swapped_lines_are_named() {
    let node = node();
    let mut lines = node.export(0);
    lines.swap(5, 6); // entries 4 and 5
    let err = node.refused(&lines, 6, "out of order");
    assert_eq!(err.place, Place::Entry { line: 6, seq: 5 });
    assert!(err.problem.ends_with("expected seq 4"), "{err}");

    // A checkpoint swapped with the entry before it.
    let mut lines = node.export(0);
    lines.swap(3, 4);
    let err = node.refused(&lines, 4, "or the checkpoint was moved");
    assert_eq!(err.place, Place::Checkpoint { line: 4, length: 4 });

    // … and with the entry after it.
    let mut lines = node.export(0);
    lines.swap(4, 5);
    node.refused(
        &lines,
        6,
        "belongs right after entry seq 3, but comes after entry seq 4",
    );
}

#[test]
fn a_truncated_tail_is_named() {
    let node = node();
    // The last two entries cut, the closing checkpoint kept.
    let mut lines = node.export(0);
    lines.drain(10..12);
    let err = node.refused(
        &lines,
        11,
        "checkpoint signed for 10 entries, export ends after 7: entries 8 to 9 are missing",
    );
    assert_eq!(
        err.place,
        Place::Checkpoint {
            line: 11,
            length: 10
        }
    );

    // The closing checkpoint cut too (and with it any proof of the end).
    let mut lines = node.export(0);
    lines.truncate(12);
    let err = node.refused(
        &lines,
        11,
        "entries after 7 are not covered by a signed checkpoint",
    );
    assert_eq!(err.place, Place::Entry { line: 11, seq: 8 });
    let mut lines = node.export(0);
    lines.truncate(11);
    node.refused(&lines, 11, "entries after 7 are not covered");

    // Cut right after a stored checkpoint, an export cannot tell it was longer: it
    // verifies, and the summary says how far it is vouched for, and since when.
    let mut lines = node.export(0);
    lines.truncate(10);
    let summary = node.verify(&lines).expect("looks like an older export");
    assert_eq!(summary.length, 8);
    assert_eq!(summary.signed_at, "2026-11-23T11:00:07Z");

    // Nothing left at all.
    let err = verify(&b""[..], &node.directory).expect_err("empty");
    assert_eq!(
        err.to_string(),
        "the export: is empty: no entries and no checkpoints"
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_named() {
    let node = node();
    let mut lines = node.export(0);
    lines[4] = Line::Checkpoint(Checkpoint::sign_unchained(
        &node.other,
        "suwon",
        &node.head(4),
        AT,
    ))
    .to_json();
    let err = node.refused(
        &lines,
        5,
        "signature does not verify against node suwon's signing key in the directory",
    );
    assert_eq!(err.place, Place::Checkpoint { line: 5, length: 4 });

    // The closing one, too.
    let mut lines = node.export(0);
    lines[12] = Line::Checkpoint(Checkpoint::sign_unchained(
        &node.other,
        "suwon",
        &node.head(10),
        AT,
    ))
    .to_json();
    node.refused(&lines, 13, "signature does not verify");

    // Signed as another node of the directory, with that node's key: not this chain's.
    let mut lines = node.export(0);
    lines[9] = Line::Checkpoint(Checkpoint::sign_unchained(
        &node.other,
        "gangseo",
        &node.head(8),
        AT,
    ))
    .to_json();
    node.refused(&lines, 10, "is signed as node `gangseo`");

    // A node the directory does not list.
    let mut lines = node.export(0);
    let stranger = Checkpoint::sign_unchained(&node.key, "jeongeup", &node.head(4), AT);
    lines[4] = Line::Checkpoint(stranger).to_json();
    node.refused(
        &lines,
        5,
        "names node `jeongeup`, which the directory (version 1)",
    );
}

#[test]
fn a_checkpoint_whose_head_does_not_match_is_named() {
    let node = node();
    let wrong = Head {
        next_seq: 4,
        hash: [7; 32],
    };
    let mut lines = node.export(0);
    lines[4] =
        Line::Checkpoint(Checkpoint::sign_unchained(&node.key, "suwon", &wrong, AT)).to_json();
    let err = node.refused(&lines, 5, "but that entry as exported hashes to");
    assert_eq!(err.place, Place::Checkpoint { line: 5, length: 4 });

    // Entries rewritten consistently from entry 2 on, without the node's key: every
    // entry links and hashes, but the first checkpoint after the rewrite no longer fits.
    let mut head = node.head(2);
    let mut lines = node.export(0);
    for (seq, index) in [(2, 2), (3, 3)] {
        let mut event = event(seq);
        event.to = "suwon/finance".into();
        lines[index] = Line::Entry(head.append(event)).to_json();
    }
    node.refused(&lines, 5, "signs head");
}

#[test]
fn a_rolled_back_checkpoint_is_named() {
    let node = node();
    let mut lines = node.export(0);
    let old = lines[4].clone();
    lines.insert(12, old); // checkpoint(4) again after entry 9
    node.refused(&lines, 13, "rolled back");
    // The same checkpoint twice in a row is harmless.
    let mut lines = node.export(0);
    lines.insert(5, lines[4].clone());
    node.verify(&lines).expect("a repeated checkpoint");
}

#[test]
fn the_writer_refuses_a_broken_chain_and_checkpoints_that_do_not_fit() {
    let node = node();
    let closing = Closing {
        key: &node.key,
        node: "suwon",
        at: AT,
    };
    let run = |entries: Vec<AuditEntry>, stored: Vec<Checkpoint>| {
        write(
            entries.into_iter().map(Ok::<_, String>),
            stored.into_iter().map(Ok::<_, String>),
            0,
            Some(&closing),
            &mut Vec::new(),
        )
    };
    let mut altered = node.entries.clone();
    altered[3].to = "suwon/finance".into();
    let err = run(altered, node.stored.clone()).expect_err("broken chain");
    assert!(
        matches!(err, WriteError::Chain(ChainError { seq: 3, .. })),
        "{err}"
    );

    let mut stored = node.stored.clone();
    stored[0] = Checkpoint::sign_unchained(
        &node.key,
        "suwon",
        &Head {
            next_seq: 4,
            hash: [1; 32],
        },
        AT,
    );
    let err = run(node.entries.clone(), stored).expect_err("rewritten");
    assert!(
        err.to_string().contains("rewritten after it was signed"),
        "{err}"
    );

    let err = run(node.entries[..6].to_vec(), node.stored.clone()).expect_err("cut");
    assert!(
        err.to_string()
            .contains("checkpoint for 8 entries, but its audit chain now has only 6"),
        "{err}"
    );

    let err = write(
        node.entries.iter().cloned().map(Ok),
        std::iter::once(Err("checksum mismatch")),
        0,
        None,
        &mut Vec::new(),
    )
    .expect_err("unreadable checkpoint");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn load_unverified_reads_a_directory_whose_signature_it_cannot_check() {
    let node = node();
    let folder = tempfile::tempdir().expect("tempdir");
    let path = folder.path().join("directory.json");
    let authority = SigningKey::generate().expect("key").0;
    let unsigned = serde_json::json!({
        "version": 2,
        "issued_at": "2026-11-01T00:00:00Z",
        "centers": {"suwon": {
            "url": "https://127.0.0.1:7443",
            "node": "urn:plusgate:node:suwon",
            "signing_key": node.key.public_key().to_hex(),
            "agencies": {}
        }}
    });
    let signed =
        crate::core::directory::sign(unsigned.to_string().as_bytes(), &authority).expect("sign");
    std::fs::write(&path, &signed).expect("write");
    let checked = Directory::load(&path, &authority.public_key()).expect("verifies");
    assert_eq!(Directory::load_unverified(&path).expect("loads"), checked);

    // With another authority's signature `load` refuses it; `load_unverified` does not
    // look (which is why the CLI says so).
    let stranger = SigningKey::generate().expect("key").0;
    std::fs::write(
        &path,
        crate::core::directory::sign(unsigned.to_string().as_bytes(), &stranger).expect("sign"),
    )
    .expect("write");
    assert!(Directory::load(&path, &authority.public_key()).is_err());
    let unverified = Directory::load_unverified(&path).expect("loads");
    assert_eq!(unverified.version, 2);

    // Its content is still validated, and errors name the file.
    let invalid = String::from_utf8(
        crate::core::directory::sign(unsigned.to_string().as_bytes(), &stranger).expect("sign"),
    )
    .expect("utf-8")
    .replace("https://127.0.0.1:7443", "http://nowhere");
    std::fs::write(&path, invalid).expect("write");
    let err = Directory::load_unverified(&path).expect_err("invalid url");
    assert!(err.to_string().contains("directory.json"), "{err}");
    assert!(err.to_string().contains("centers.suwon.url"), "{err}");
    std::fs::write(&path, "{").expect("write");
    assert!(Directory::load_unverified(&path).is_err());
}
