//! Fuzz target: stored-record decoding (`node::store::record::decode`) for every record
//! type the store keeps. The input is tried twice: as the stored bytes (header and
//! checksum as given) and as a body sealed with a correct header, so the fuzzer reaches the
//! JSON decoding past the checksum. Whatever decodes must encode and decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plusgate::core::audit::{AuditEntry, Checkpoint};
use plusgate::core::consent::ConsentRecord;
use plusgate::node::store::record::{decode, encode, FORMAT_VERSION};
use plusgate::node::store::{
    DeliveryRecord, DeliveryState, DirectorySeen, Erasure, Lifecycle, MessageRecord, Pickup,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    if let Ok(value) = decode::<T>(bytes) {
        let again = encode(&value);
        if let Err(e) = decode::<T>(&again) {
            panic!(
                "{} decoded but its re-encoding does not: {e}",
                std::any::type_name::<T>()
            );
        }
    }
}

fn every_type(bytes: &[u8]) {
    round_trip::<MessageRecord>(bytes);
    round_trip::<DeliveryRecord>(bytes);
    round_trip::<DeliveryState>(bytes);
    round_trip::<Lifecycle>(bytes);
    round_trip::<Erasure>(bytes);
    round_trip::<Pickup>(bytes);
    round_trip::<DirectorySeen>(bytes);
    round_trip::<ConsentRecord>(bytes);
    round_trip::<AuditEntry>(bytes);
    round_trip::<Checkpoint>(bytes);
}

fuzz_target!(|data: &[u8]| {
    every_type(data);
    let mut sealed = vec![FORMAT_VERSION];
    sealed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    sealed.extend_from_slice(data);
    every_type(&sealed);
});
